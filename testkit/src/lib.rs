//! Test support shared by kmlink's crates (a dev-dependency only).
//!
//! A test that cannot run here — a tool is not installed, a kernel is not
//! unpacked, the host is of the wrong kind — must not pass silently: under
//! CI (`CI=true`, as CI services set it) it fails; on a developer's machine
//! it says loudly on stderr that it was skipped and why, and returns.

/// Whether this is a CI run: `CI` is set to anything but empty, `0` or
/// `false` (case-insensitive).
pub fn under_ci() -> bool {
    means_ci(std::env::var("CI").ok().as_deref())
}

fn means_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

/// The calling test lacks `prerequisite` (say what is missing and how to
/// get it). Under CI this panics, failing the test; otherwise it prints
/// `SKIPPED <test> (<file:line>): …` to stderr, and the caller returns:
///
/// ```no_run
/// fn a_test_needing_cpio() {
///     if std::process::Command::new("cpio").arg("--version").output().is_err() {
///         return kmlink_testkit::missing("cpio(1) (apt-get install cpio)");
///     }
///     // ... the test proper
/// }
/// ```
#[track_caller]
pub fn missing(prerequisite: &str) {
    missing_in(under_ci(), prerequisite, &mut std::io::stderr());
}

#[track_caller]
fn missing_in(ci: bool, prerequisite: &str, out: &mut dyn std::io::Write) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let at = std::panic::Location::caller();
    if ci {
        panic!("{test} ({at}): prerequisite missing under CI: {prerequisite}");
    }
    // Straight to the file descriptor: libtest captures `eprintln!`, and a
    // skip nobody sees is the silent pass this exists to prevent.
    let _ = writeln!(
        out,
        "SKIPPED {test} ({at}): prerequisite missing: {prerequisite} (under CI=true this fails)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_ci() {
        for v in ["true", "1", "yes", "TRUE"] {
            assert!(means_ci(Some(v)), "{v:?}");
        }
        for v in [None, Some(""), Some("0"), Some("false"), Some("False")] {
            assert!(!means_ci(v), "{v:?}");
        }
    }

    #[test]
    fn missing_fails_under_ci_and_returns_otherwise() {
        let mut said = Vec::new();
        assert!(
            std::panic::catch_unwind(move || missing_in(true, "cpio", &mut Vec::new())).is_err()
        );
        missing_in(false, "cpio", &mut said);
        let said = String::from_utf8(said).unwrap_or_default();
        assert!(
            said.starts_with("SKIPPED ") && said.contains("prerequisite missing: cpio"),
            "{said}"
        );
    }
}
