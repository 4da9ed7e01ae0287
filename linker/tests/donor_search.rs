//! Choosing a donor on a host: a module of the running release whose
//! vermagic fits, loaded ones first, in-tree next; another kernel's module
//! is passed over and named when nothing fits.

mod common;

use std::path::Path;

use kmlink_linker::donor::{DonorError, DonorSearch};

const R61: &str = "6.1.0-47-amd64";

fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, bytes).expect("write");
}

#[test]
fn picks_a_fitting_module_preferring_loaded_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let good = common::link(&common::record(R61));
    let other = common::link(&common::record("6.12.107+deb13-amd64"));
    let base = format!("lib/modules/{R61}");
    put(root, &format!("{base}/kernel/lib/aaa_other.ko"), &other);
    put(root, &format!("{base}/kernel/lib/bbb.ko"), &good);
    put(root, &format!("{base}/kernel/lib/ccc-loaded.ko"), &good);
    put(root, &format!("{base}/updates/dkms/zzz.ko"), &good);
    put(root, "proc/modules", b"ccc_loaded 16384 0 - Live 0x0\n");

    let d = DonorSearch::for_host(root, R61).find(None).expect("donor");
    assert!(d.path.ends_with("ccc-loaded.ko"), "{}", d.describe());
    assert!(d.loaded && d.complete());
    assert!(d.describe().contains("loaded"));

    std::fs::write(root.join("proc/modules"), "").expect("write");
    let d = DonorSearch::for_host(root, R61).find(None).expect("donor");
    assert!(d.path.ends_with("bbb.ko"), "{}", d.describe());

    // Wanting a vermagic nobody has: refused, naming one that did not fit.
    let e = DonorSearch::for_host(root, R61)
        .find(Some("6.1.0-47-amd64 SMP mod_unload "))
        .expect_err("none fits");
    let msg = e.to_string();
    assert!(matches!(e, DonorError::NoneFits { .. }), "{msg}");
    assert!(msg.contains("--donor"), "{msg}");
    assert!(msg.contains("says vermagic"), "{msg}");
}

#[test]
fn no_module_directory_says_what_to_install() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = DonorSearch::for_host(dir.path(), R61)
        .find(None)
        .expect_err("nothing there");
    let msg = e.to_string();
    assert!(msg.contains(&format!("lib/modules/{R61}")), "{msg}");
    assert!(msg.contains("--donor"), "{msg}");
}
