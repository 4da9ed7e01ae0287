//! How `kmlink build` writes its output, run as a user (root) runs it: a
//! FIFO given to `-o` is written into, not replaced (nor would a device
//! be: `-o /dev/null` must not turn /dev/null into a file); a symlink
//! planted where the old temporary name was predictable is not followed;
//! `-o -` is stdout.
#![allow(clippy::unwrap_used, missing_docs)]

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Output};

const KERNEL: &str = "6.1.0-47-amd64";

/// `kmlink` (or `sh -c SCRIPT` with `$KMLINK` set) in `dir`, with a store of
/// its own there (the record comes from the bundle built into kmlink).
fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("KMLINK", env!("CARGO_BIN_EXE_kmlink"))
        .env("KMLINK_DB", dir.join("records.db"))
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_fifo_output_is_written_into_not_replaced() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("out.ko");
    ok(&Command::new("mkfifo").arg(&fifo).output().unwrap());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = run(
        d.path(),
        env!("CARGO_BIN_EXE_kmlink"),
        &["build", "--kernel", KERNEL, "-o", "out.ko"],
    );
    ok(&o);
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(
        kind.is_fifo(),
        "kmlink build -o FIFO replaced the FIFO with {kind:?}"
    );
    let module = reader.join().unwrap();
    assert!(module.starts_with(b"\x7fELF"), "the reader got no module");
}

#[test]
fn a_symlink_at_the_old_temporary_name_is_not_followed() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("victim"), b"precious").unwrap();
    // The name the old writer used: .NAME.tmp<pid>, pid known to a shell
    // that execs kmlink.
    let o = run(
        d.path(),
        "sh",
        &[
            "-c",
            &format!(
                "ln -s victim .out.ko.tmp$$ && exec \"$KMLINK\" build --kernel {KERNEL} -o out.ko"
            ),
        ],
    );
    ok(&o);
    assert_eq!(
        std::fs::read(d.path().join("victim")).unwrap(),
        b"precious",
        "the module was written through a planted symlink"
    );
    assert!(std::fs::read(d.path().join("out.ko"))
        .unwrap()
        .starts_with(b"\x7fELF"));
}

#[test]
fn dash_writes_the_module_to_stdout() {
    let d = tempfile::tempdir().unwrap();
    let o = run(
        d.path(),
        env!("CARGO_BIN_EXE_kmlink"),
        &["build", "--kernel", KERNEL, "-o", "-"],
    );
    ok(&o);
    assert!(o.stdout.starts_with(b"\x7fELF"), "stdout is not the module");
    assert!(!d.path().join("-").exists(), "a file named - was written");
}
