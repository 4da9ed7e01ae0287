//! `kmlink build` as a user runs it, against the real artifacts of the pinned
//! kernels: a stock module of each as donor, each kernel's own image as BTF.
//! The checks pass when every source is the kernel's own, and the refusal
//! names the field and both values when one is not.
//!
//! Needs the pinned kernels (fetched and cached on first use):
//! `cargo test -p kmlink-tests --test linker_cli`.

use std::path::{Path, PathBuf};

use kmlink_tests::{kernel, kmlink, module_with_init_exit, workspace};

const R61: &str = "6.1.0-47-amd64";
const R612: &str = "6.12.107+deb13-amd64";
const R73: &str = "7.3.4+deb13-amd64";

fn fixture(release: &str) -> PathBuf {
    workspace()
        .join("linker/tests/fixtures")
        .join(format!("{release}.json"))
}

/// A stock module of the kernel with init and exit functions.
fn stock_donor(release: &str) -> PathBuf {
    let tree = kernel(release).expect("pinned kernel");
    module_with_init_exit(&tree.modules_dir)
        .map(|(p, _, _)| p)
        .unwrap_or_else(|| panic!("{release}: no stock module with init and exit"))
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = kmlink(args).expect("kmlink runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The fixture record with `this_module.size` replaced.
fn with_size(release: &str, from: u64, to: u64, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixture(release)).expect("fixture");
    let at = text.find("\"this_module\"").expect("this_module");
    let (head, tail) = text.split_at(at);
    let old = format!("\"size\":{from}");
    assert!(
        tail.starts_with(&format!("\"this_module\":{{{old}")),
        "fixture layout"
    );
    let tail = tail.replacen(&old, &format!("\"size\":{to}"), 1);
    let path = dir.join(format!("{release}-size{to}.json"));
    std::fs::write(&path, format!("{head}{tail}")).expect("write");
    path
}

#[test]
fn every_source_agrees_for_each_pinned_kernel() {
    for release in [R61, R612, R73] {
        let tree = kernel(release).expect("pinned kernel");
        let donor = stock_donor(release);
        let r = run(&[
            "build",
            "--kernel",
            release,
            "--record",
            s(&fixture(release)),
            "--donor",
            s(&donor),
            "--btf",
            s(&tree.vmlinuz),
            "--check",
        ]);
        assert_eq!(r.code, Some(0), "{release}\n{}\n{}", r.stdout, r.stderr);
        for want in [
            "✓ identity",
            "✓ vermagic     byte-identical in record and donor",
            "✓ this_module  record agrees with donor and BTF",
            "✓ layouts",
            "all 9 checks agree",
        ] {
            assert!(
                r.stdout.contains(want),
                "{release}: {want:?} missing\n{}",
                r.stdout
            );
        }
        if release != R73 {
            assert!(r.stdout.contains("✓ crcs"), "{}", r.stdout);
        } else {
            assert!(
                r.stdout.contains("- crcs         unversioned kernel"),
                "{}",
                r.stdout
            );
        }
    }
}

#[test]
fn wrong_struct_module_size_is_refused_naming_both_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = with_size(R61, 896, 960, dir.path());
    let out = dir.path().join("x.ko");
    let r = run(&[
        "build",
        "--kernel",
        R61,
        "--record",
        s(&bad),
        "--donor",
        s(&stock_donor(R61)),
        "-o",
        s(&out),
    ]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(!out.exists(), "a refused module must not be written");
    for want in [
        "✗ this_module",
        "sizeof(struct module)",
        "0x3c0",
        "0x380",
        "REFUSED",
        "→ ",
    ] {
        assert!(r.stderr.contains(want), "{want:?} missing\n{}", r.stderr);
    }
}

#[test]
fn donor_from_another_kernel_is_refused_naming_both_vermagics() {
    let r = run(&[
        "build",
        "--kernel",
        R61,
        "--record",
        s(&fixture(R61)),
        "--donor",
        s(&stock_donor(R612)),
        "--check",
    ]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("✗ vermagic"), "{}", r.stdout);
    assert!(r.stdout.contains("from another kernel"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("\"{R612} SMP preempt mod_unload modversions \""))
            && r.stdout
                .contains(&format!("\"{R61} SMP preempt mod_unload modversions \"")),
        "{}",
        r.stdout
    );
}

#[test]
fn btf_of_another_kernel_is_refused_on_identity_and_layouts() {
    let other = kernel(R612).expect("pinned kernel");
    let r = run(&[
        "build",
        "--kernel",
        R61,
        "--record",
        s(&fixture(R61)),
        "--btf",
        s(&other.vmlinuz),
        "--check",
    ]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    for want in [
        "✗ identity",
        "BTF sha256",
        "✗ layouts",
        "✗ this_module",
        "0x500",
    ] {
        assert!(r.stdout.contains(want), "{want:?} missing\n{}", r.stdout);
    }
}

/// The fixture record with `edit` applied to its JSON, written into `dir`.
fn edited(release: &str, dir: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let text = std::fs::read_to_string(fixture(release)).expect("fixture");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("fixture parses");
    edit(&mut v);
    let path = dir.join(format!("{release}-{name}.json"));
    std::fs::write(&path, serde_json::to_vec(&v).expect("json")).expect("write");
    path
}

/// `--btf VMLINUZ` on a cross-build also reads the image's export table:
/// a CRC the donor does not carry, a namespace, or a dropped export that
/// moves an import to another candidate are caught by the image alone
/// (docs/soundness.md: holes of the mutation measurement before this).
#[test]
fn btf_image_checks_exports_and_crcs_the_donor_cannot() {
    let tree = kernel(R61).expect("pinned kernel");
    let donor = stock_donor(R61);
    let dir = tempfile::tempdir().expect("tempdir");
    // (name, refusal, whether the donor alone refuses it too, edit)
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: [(&str, &str, bool, Edit); 3] = [
        (
            "crc",
            "✗ crcs",
            false,
            Box::new(|v| {
                let crc = &mut v["exports"]["proc_create"]["crc"];
                *crc = serde_json::json!(crc.as_u64().expect("crc") ^ 1);
            }),
        ),
        (
            "namespace",
            "namespace: record Some(\"KMLINK_TEST\"), image None",
            false,
            Box::new(|v| {
                v["exports"]["proc_create"]["namespace"] = serde_json::json!("KMLINK_TEST")
            }),
        ),
        (
            "module_layout",
            "module_layout",
            true,
            Box::new(|v| {
                v["exports"]
                    .as_object_mut()
                    .expect("exports")
                    .remove("module_layout");
            }),
        ),
    ];
    for (name, want, donor_sees, edit) in cases {
        let record = edited(R61, dir.path(), name, edit);
        let args = [
            "build",
            "--kernel",
            R61,
            "--record",
            s(&record),
            "--donor",
            s(&donor),
            "--btf",
            s(&tree.vmlinuz),
            "--check",
        ];
        let r = run(&args);
        assert_eq!(r.code, Some(1), "{name}\n{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains(want),
            "{name}: {want:?} missing\n{}",
            r.stdout
        );
        // Without the image only the donor's own __versions can tell.
        let mut no_btf = args[..args.len() - 3].to_vec();
        no_btf.push("--check");
        let r = run(&no_btf);
        let code = if donor_sees { 1 } else { 0 };
        assert_eq!(
            r.code,
            Some(code),
            "{name} without --btf\n{}\n{}",
            r.stdout,
            r.stderr
        );
    }
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for release in [R61, R73] {
        let a = dir.path().join("a.ko");
        let b = dir.path().join("b.ko");
        for out in [&a, &b] {
            let r = run(&[
                "build",
                "--kernel",
                release,
                "--record",
                s(&fixture(release)),
                "-o",
                s(out),
            ]);
            assert_eq!(r.code, Some(0), "{}", r.stderr);
        }
        let (a, b) = (std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
        assert!(a == b, "{release}: two builds differ");
        let f = kmlink_donor::ko::read(&a).expect("parses");
        assert_eq!(f.name.as_deref(), Some("kmlink"));
    }
}

/// `load` and `unload` refuse with the reason on a host where they cannot
/// run: this build machine's kernel has no module support (then doctor
/// says so too), or the test is not root. A root test on a host that can
/// load modules would insert one into the host itself: that host lacks this
/// test's prerequisite (`load_vm.rs` loads in a guest).
#[test]
fn a_host_that_cannot_load_modules_is_told_why() {
    let d = run(&["doctor"]);
    assert!(d.stdout.contains("kernel"), "{}\n{}", d.stdout, d.stderr);
    let modules = Path::new("/proc/modules").exists();
    let root = rustix_root();
    if modules && root {
        return kmlink_testkit::missing(
            "a host where kmlink load must refuse: this one has module support and the test runs as root",
        );
    }
    if !modules {
        assert_eq!(d.code, Some(1), "{}", d.stdout);
        assert!(d.stdout.contains("✗ modules"), "{}", d.stdout);
        assert!(d.stdout.contains("CONFIG_MODULES"), "{}", d.stdout);
    }
    let l = run(&["load"]);
    assert_ne!(l.code, Some(0));
    let expect = if root {
        "no loadable-module support"
    } else {
        "needs root"
    };
    assert!(l.stderr.contains(expect), "{}", l.stderr);
    let u = run(&["unload"]);
    assert_ne!(u.code, Some(0));
    let expect = if root { "ENOSYS" } else { "needs root" };
    assert!(u.stderr.contains(expect), "{}", u.stderr);
}

fn rustix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
