//! The record store and bundles through the real `kmlink` binary, on the
//! pinned kernels: `db add`, `db show` (every KERNEL-ABI.md value), `db
//! verify`, slim signed bundle export / install into another store, rejects
//! (untrusted, truncated) that install nothing, and `build --record` from a
//! record read back out of the second store.
//!
//! `cargo build --bin kmlink && cargo test -p kmlink-tests --test db_real -- --ignored`

use std::path::Path;

use kmlink_tests::{kmlink, kmlink_ok};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Lines `kmlink db show` must print for each pinned kernel (KERNEL-ABI.md).
fn expected(release: &str) -> Vec<&'static str> {
    match release {
        "6.1.0-47-amd64" => vec![
            "this_module  size=896 (0x380) name=0x18[56] init=0x138 exit=0x350",
            "layout       offsetof:task_struct.pid = 2416",
            "layout       offsetof:task_struct.comm = 2976",
            "layout       percpu:current_task = 0",
            "export       register_kprobe crc=0xfcca5424 gpl=true",
            "export       _printk crc=0x92997ed8 gpl=false",
            "export       module_layout crc=0x160c03af",
            "export       current_task crc=0xe0a683ed",
            "conventions  modversions=true",
            "exports      10488 (10488 with CRC)",
        ],
        "6.12.107+deb13-amd64" => vec![
            "this_module  size=1280 (0x500) name=0x18[56] init=0x138 exit=0x4b0",
            "layout       offsetof:task_struct.pid = 2432",
            "layout       offsetof:task_struct.comm = 2976",
            "layout       percpu:pcpu_hot = 0",
            "layout       offsetof:pcpu_hot.current_task = 0",
            "conventions  modversions=true",
        ],
        // BTF without per-CPU variables: current_task from the export table.
        "5.10.0-46-amd64" => vec![
            "this_module  size=960 (0x3c0) name=0x18[56] init=0x150 exit=0x380",
            "layout       offsetof:task_struct.pid = 2232",
            "layout       offsetof:task_struct.comm = 2736",
            "layout       percpu:current_task = 0",
            "layout       offsetof:page.slab_cache = 24",
            "layout       offsetof:kretprobe_instance.ret_addr = 24",
            "vermagic     \"5.10.0-46-amd64 SMP mod_unload modversions \"",
            "exports      9842 (9842 with CRC)",
        ],
        "7.3.4+deb13-amd64" => vec![
            "this_module  size=1280 (0x500) name=0x18[56] init=0x130 exit=0x4b8",
            "layout       percpu:current_task = 0",
            "export       current_task crc=- gpl=false",
            "vermagic     \"7.3.4+deb13-amd64 SMP preempt mod_unload \"",
            "conventions  modversions=false",
            "with CRC)",
        ],
        _ => vec![],
    }
}

fn show(db: &Path, release: &str) -> String {
    kmlink_ok(&[
        "db",
        "show",
        release,
        "--db",
        s(db),
        "--export",
        "register_kprobe",
        "--export",
        "_printk",
        "--export",
        "module_layout",
        "--export",
        "current_task",
    ])
    .expect("db show")
}

#[test]
#[ignore = "needs the pinned kernels (downloads ~300 MB if not cached)"]
fn db_and_bundles_through_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, db2) = (
        dir.path().join("a/records.db"),
        dir.path().join("b/records.db"),
    );
    let releases = kmlink_tests::pinned_releases().expect("pins");
    for rel in &releases {
        let out = kmlink_ok(&["db", "add", rel, "--db", s(&db)]).expect("db add");
        assert!(out.contains("stored"), "{out}");
        let text = show(&db, rel);
        for want in expected(rel) {
            assert!(text.contains(want), "{rel}: expected {want:?} in\n{text}");
        }
        // 7.3.4: no CRC at all.
        if rel.starts_with("7.") {
            assert!(text.contains("(0 with CRC)"), "{text}");
        }
    }
    let list = kmlink_ok(&["db", "list", "--db", s(&db)]).expect("list");
    assert_eq!(list.lines().count(), releases.len() + 1, "{list}");
    kmlink_ok(&["db", "verify", "--db", s(&db)]).expect("verify");
    let again = kmlink_ok(&["db", "add", &releases[0], "--db", s(&db)]).expect("again");
    assert!(again.contains("unchanged"), "{again}");

    // A signed slim bundle into a second store.
    let key = dir.path().join("publisher.key");
    let other_key = dir.path().join("other.key");
    kmlink_ok(&["bundle", "keygen", "-o", s(&key)]).expect("keygen");
    kmlink_ok(&["bundle", "keygen", "-o", s(&other_key)]).expect("keygen");
    let kmb = dir.path().join("slim.kmb");
    kmlink_ok(&[
        "bundle",
        "export",
        "-o",
        s(&kmb),
        "--slim",
        "--sign-key",
        s(&key),
        "--db",
        s(&db),
    ])
    .expect("export");
    let size = std::fs::metadata(&kmb).expect("meta").len();
    assert!(size <= 2048 * releases.len() as u64, "{size} bytes");

    // Rejected whole: untrusted key, truncated file. Nothing installed.
    let out = kmlink(&[
        "bundle",
        "install",
        s(&kmb),
        "--trust",
        &format!("{}.pub", s(&other_key)),
        "--db",
        s(&db2),
    ])
    .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not said you trust") && err.contains("nothing was installed"),
        "{err}"
    );
    let bytes = std::fs::read(&kmb).expect("read");
    let cut = dir.path().join("cut.kmb");
    std::fs::write(&cut, &bytes[..bytes.len() - 70]).expect("write");
    let out = kmlink(&[
        "bundle",
        "install",
        s(&cut),
        "--trust",
        &format!("{}.pub", s(&key)),
        "--db",
        s(&db2),
    ])
    .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated") || err.contains("damaged"),
        "{err}"
    );
    let list2 = kmlink(&["db", "list", "--db", s(&db2)]).expect("list");
    assert!(String::from_utf8_lossy(&list2.stdout).trim().is_empty());

    let out = kmlink_ok(&[
        "bundle",
        "install",
        s(&kmb),
        "--trust",
        &format!("{}.pub", s(&key)),
        "--db",
        s(&db2),
    ])
    .expect("install");
    assert!(out.contains(&format!("{} added", releases.len())), "{out}");
    kmlink_ok(&["db", "verify", "--db", s(&db2)]).expect("verify");
    for rel in &releases {
        let text = show(&db2, rel);
        assert!(text.contains("kind         slim"), "{text}");
        for want in expected(rel) {
            if want.contains("register_kprobe") || want.starts_with("exports") {
                continue; // cut away by --slim: the core does not import it
            }
            assert!(
                text.contains(want),
                "{rel} (slim): expected {want:?} in\n{text}"
            );
        }
        // The slim record read back links.
        let json = kmlink_ok(&["db", "show", rel, "--json", "--db", s(&db2)]).expect("json");
        let rec = dir.path().join(format!("{rel}.json"));
        std::fs::write(&rec, json).expect("write");
        let out = kmlink_ok(&["build", "--kernel", rel, "--record", s(&rec), "--check"])
            .expect("build --check from the slim record");
        assert!(out.contains("ok") || out.contains(rel), "{out}");
    }
}
