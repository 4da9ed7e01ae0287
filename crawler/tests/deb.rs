//! `deb::extract` / `deb::control` on tiny packages built here.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;

use common::{ar_bytes, compress, deb_bytes, tar_bytes, write_deb, Ent};

use kmlink_crawler::{deb, Error};

const GOOD: &[Ent] = &[
    Ent::Dir("./"),
    Ent::Dir("./boot/"),
    Ent::File("./boot/vmlinuz-9.9.9-1-amd64", b"kernel image"),
    Ent::File("./boot/config-9.9.9-1-amd64", b"CONFIG_X=y\n"),
    Ent::Dir("./usr/lib/modules/9.9.9-1-amd64/kernel/fs/"),
    Ent::File(
        "./usr/lib/modules/9.9.9-1-amd64/kernel/fs/a.ko.xz",
        b"module",
    ),
    Ent::Link(
        "./usr/lib/modules/9.9.9-1-amd64/kernel/fs/b.ko.xz",
        "a.ko.xz",
    ),
    Ent::Link(
        "./usr/lib/modules/9.9.9-1-amd64/up",
        "../9.9.9-1-amd64/kernel",
    ),
    Ent::File("./usr/share/doc/x/changelog", b"not selected"),
];

fn check_good(ext: &str) {
    let d = tempfile::tempdir().unwrap();
    let deb_path = write_deb(d.path(), &format!("good-{ext}.deb"), &deb_bytes(ext, GOOD));
    let dest = d.path().join("out");
    let mut asked = Vec::new();
    let got = deb::extract(&deb_path, &dest, &mut |p| {
        asked.push(p.to_owned());
        !p.starts_with("usr/share/")
    })
    .unwrap();
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(
        asked.contains(&"boot/vmlinuz-9.9.9-1-amd64".to_owned()),
        "{asked:?}"
    );
    assert!(asked.iter().all(|p| !p.starts_with("./")), "{asked:?}");
    assert_eq!(
        std::fs::read(dest.join("boot/vmlinuz-9.9.9-1-amd64")).unwrap(),
        b"kernel image"
    );
    let m = dest.join("usr/lib/modules/9.9.9-1-amd64/kernel/fs");
    assert_eq!(std::fs::read(m.join("b.ko.xz")).unwrap(), b"module");
    assert_eq!(
        std::fs::read_link(m.join("b.ko.xz")).unwrap(),
        Path::new("a.ko.xz")
    );
    assert!(!dest.join("usr/share").exists());
    // Extracting again over the same tree replaces files.
    deb::extract(&deb_path, &dest, &mut |_| true).unwrap();
    let c = deb::control(&deb_path).unwrap();
    assert_eq!(
        c[0],
        ("Package".to_owned(), "linux-image-9.9.9-1-amd64".to_owned())
    );
    assert_eq!(c[3].1, "test kernel\nmore lines");
}

#[test]
fn extracts_xz() {
    check_good("xz");
}

#[test]
fn extracts_zst() {
    check_good("zst");
}

#[test]
fn extracts_gz() {
    check_good("gz");
}

fn refused(entries: &[Ent], select_all: bool) -> Error {
    let d = tempfile::tempdir().unwrap();
    let deb_path = write_deb(d.path(), "evil.deb", &deb_bytes("xz", entries));
    let dest = d.path().join("out");
    let e = deb::extract(&deb_path, &dest, &mut |_| select_all).unwrap_err();
    assert!(e.to_string().contains("evil.deb"), "{e}");
    assert!(e.to_string().contains("data.tar.xz"), "{e}");
    assert!(!d.path().join("etc").exists());
    e
}

#[test]
fn refuses_dotdot_escape() {
    let e = refused(
        &[Ent::File("./ok", b"1"), Ent::File("../../etc/x", b"evil")],
        true,
    );
    assert!(matches!(e, Error::UnsafeEntry { .. }), "{e:?}");
    assert!(e.to_string().contains("../../etc/x"), "{e}");
    // Refused even when not selected.
    let e = refused(&[Ent::File("./a/../../etc/x", b"evil")], false);
    assert!(e.to_string().contains("./a/../../etc/x"), "{e}");
}

#[test]
fn refuses_absolute_path() {
    let e = refused(&[Ent::File("/etc/x", b"evil")], true);
    assert!(matches!(e, Error::UnsafeEntry { .. }), "{e:?}");
    assert!(e.to_string().contains("\"/etc/x\""), "{e}");
    assert!(e.to_string().contains("absolute"), "{e}");
}

#[test]
fn refuses_escaping_symlinks() {
    let e = refused(&[Ent::Link("./usr/evil", "../../etc/passwd")], true);
    assert!(e.to_string().contains("./usr/evil"), "{e}");
    assert!(e.to_string().contains("outside"), "{e}");
    let e = refused(&[Ent::Link("./usr/evil", "/etc/passwd")], true);
    assert!(e.to_string().contains("./usr/evil"), "{e}");
    // A symlinked parent directory would let a lexically safe target escape.
    let e = refused(
        &[
            Ent::Link("./d", "."),
            Ent::Link("./d/l", "../etc"),
            Ent::File("./l/x", b"evil"),
        ],
        true,
    );
    assert!(e.to_string().contains("./d/l"), "{e}");
    assert!(e.to_string().contains("symlink"), "{e}");
}

#[test]
fn truncated_deb_names_file() {
    let d = tempfile::tempdir().unwrap();
    let bytes = deb_bytes("xz", GOOD);
    for cut in [bytes.len() - 40, bytes.len() / 2, 70, 10] {
        let p = write_deb(d.path(), &format!("cut{cut}.deb"), &bytes[..cut]);
        let e = deb::extract(&p, &d.path().join("out"), &mut |_| true).unwrap_err();
        assert!(matches!(e, Error::Deb { .. }), "{e:?}");
        assert!(e.to_string().contains(&format!("cut{cut}.deb")), "{e}");
    }
}

#[test]
fn corrupt_member_names_file_and_member() {
    let d = tempfile::tempdir().unwrap();
    let data = compress("xz", &tar_bytes(GOOD));
    let mut garbage = data.clone();
    let mid = garbage.len() / 2;
    for b in &mut garbage[mid..mid + 16] {
        *b ^= 0x5a;
    }
    for (name, member) in [
        ("corrupt.deb", garbage),
        ("notxz.deb", b"plain text, not xz".to_vec()),
    ] {
        let bytes = ar_bytes(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("data.tar.xz", member),
        ]);
        let p = write_deb(d.path(), name, &bytes);
        let e = deb::extract(&p, &d.path().join("out"), &mut |_| true).unwrap_err();
        let s = e.to_string();
        assert!(s.contains(name) && s.contains("data.tar.xz"), "{s}");
    }
}

#[test]
fn malformed_containers() {
    let d = tempfile::tempdir().unwrap();
    let data = compress("xz", &tar_bytes(GOOD));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("notar.deb", b"hello world".to_vec(), "bad ar archive"),
        (
            "nodata.deb",
            ar_bytes(&[("debian-binary", b"2.0\n".to_vec())]),
            "no data.tar member",
        ),
        (
            "twodata.deb",
            ar_bytes(&[
                ("debian-binary", b"2.0\n".to_vec()),
                ("data.tar.xz", data.clone()),
                ("data.tar.zst", data.clone()),
            ]),
            "second data member",
        ),
        (
            "badver.deb",
            ar_bytes(&[
                ("debian-binary", b"3.0\n".to_vec()),
                ("data.tar.xz", data.clone()),
            ]),
            "format version",
        ),
        (
            "nobin.deb",
            ar_bytes(&[("data.tar.xz", data.clone())]),
            "not debian-binary",
        ),
        (
            "bz.deb",
            ar_bytes(&[("debian-binary", b"2.0\n".to_vec()), ("data.tar.bz2", data)]),
            "unsupported compression",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = write_deb(d.path(), name, &bytes);
        let e = deb::extract(&p, &d.path().join("out"), &mut |_| true).unwrap_err();
        let s = e.to_string();
        assert!(s.contains(name) && s.contains(want), "{name}: {s}");
    }
    let missing = d.path().join("missing.deb");
    assert!(deb::extract(&missing, d.path(), &mut |_| true)
        .unwrap_err()
        .to_string()
        .contains("missing.deb"));
    let p = write_deb(
        d.path(),
        "nocontrol.deb",
        &ar_bytes(&[("debian-binary", b"2.0\n".to_vec())]),
    );
    assert!(deb::control(&p)
        .unwrap_err()
        .to_string()
        .contains("no control file"));
}

#[test]
fn normalise_paths() {
    assert_eq!(deb::normalise("./a/./b//c").unwrap(), "a/b/c");
    assert_eq!(deb::normalise("./").unwrap(), "");
    assert_eq!(deb::normalise("a/../b").unwrap(), "b");
    assert!(deb::normalise("a/../../b").is_err());
    assert!(deb::normalise("/a").is_err());
}

#[test]
fn extract_paths_stops_once_everything_is_found() {
    let d = tempfile::tempdir().unwrap();
    // A data member cut short after the wanted entries: the full walk fails
    // on it, the targeted one never reads that far.
    let data = compress(
        "",
        &tar_bytes(&[
            Ent::File("./boot/vmlinuz-9.9.9-1-amd64", b"kernel image"),
            Ent::File("./boot/config-9.9.9-1-amd64", b"CONFIG_X=y\n"),
            Ent::File("./lib/modules/9.9.9-1-amd64/kernel/a.ko", b"module"),
            Ent::File("./usr/share/doc/x/changelog", &[b'x'; 4096]),
        ]),
    );
    let cut = &data[..data.len() - 3000];
    let bytes = ar_bytes(&[
        ("debian-binary", b"2.0\n".to_vec()),
        (
            "control.tar",
            tar_bytes(&[Ent::File("./control", b"Package: x\n")]),
        ),
        ("data.tar", cut.to_vec()),
    ]);
    let deb_path = write_deb(d.path(), "cut.deb", &bytes);
    let wanted = [
        "boot/vmlinuz-9.9.9-1-amd64",
        "lib/modules/9.9.9-1-amd64/kernel/a.ko",
        "boot/config-9.9.9-1-amd64",
    ];
    let got = deb::extract_paths(&deb_path, &d.path().join("a"), &wanted).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(
        std::fs::read(d.path().join("a/lib/modules/9.9.9-1-amd64/kernel/a.ko")).unwrap(),
        b"module"
    );
    let e = deb::extract(&deb_path, &d.path().join("b"), &mut |_| true).unwrap_err();
    assert!(e.to_string().contains("cut.deb"), "{e}");
    // Absent paths are simply not returned (the whole member is read).
    let good = write_deb(d.path(), "good.deb", &deb_bytes("xz", GOOD));
    let got = deb::extract_paths(
        &good,
        &d.path().join("c"),
        &["boot/config-9.9.9-1-amd64", "boot/nothing"],
    )
    .unwrap();
    assert_eq!(got.len(), 1);
}

/// Issue #16, item 4: an intermediate link (`x/y -> ..`) made a later,
/// lexically safe link (`a -> x/y/../../etc`) point out of the tree, in
/// either order; kmlink then read the host's files through it.
#[test]
fn refuses_links_that_leave_the_root_through_another_link() {
    for entries in [
        &[
            Ent::Dir("./x/"),
            Ent::Link("./x/y", ".."),
            Ent::Link("./a", "x/y/../../etc"),
        ][..],
        &[
            Ent::Dir("./x/"),
            Ent::Link("./a", "x/y/../../etc"),
            Ent::Link("./x/y", ".."),
        ][..],
        &[
            Ent::Dir("./usr/lib/modules/9.9.9-1-amd64/"),
            Ent::Link("./usr/lib/modules/9.9.9-1-amd64/up", "../../../.."),
            Ent::Link(
                "./usr/lib/modules/9.9.9-1-amd64/config",
                "up/x/../../etc/hostname",
            ),
        ][..],
    ] {
        let d = tempfile::tempdir().unwrap();
        let deb_path = write_deb(d.path(), "evil.deb", &deb_bytes("xz", entries));
        let dest = d.path().join("root").join("out");
        let r = deb::extract(&deb_path, &dest, &mut |_| true);
        // Whatever was written resolves inside the destination.
        for p in walk(&dest) {
            if let Ok(c) = std::fs::canonicalize(&p) {
                assert!(
                    c.starts_with(std::fs::canonicalize(&dest).unwrap()),
                    "{} resolves to {} outside the destination",
                    p.display(),
                    c.display()
                );
            }
        }
        let e = r.expect_err("escaping link chain accepted");
        assert!(matches!(e, Error::UnsafeEntry { .. }), "{e:?}");
        assert!(e.to_string().contains("outside the destination"), "{e}");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Issue #16, item 4: modes from a package are not kept when dangerous
/// (setuid, setgid, sticky, group- or world-writable).
#[test]
fn never_keeps_setuid_setgid_or_writable_modes() {
    let mut b = tar::Builder::new(Vec::new());
    for (name, mode) in [
        ("./suid", 0o4755),
        ("./sgid", 0o2755),
        ("./world", 0o777),
        ("./sticky", 0o1666),
        ("./plain", 0o644),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(mode);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
    }
    let data = b.into_inner().unwrap();
    let control = tar_bytes(&[Ent::Dir("./"), Ent::File("./control", b"Package: p\n")]);
    let deb_bytes = ar_bytes(&[
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar.xz", compress("xz", &control)),
        ("data.tar.xz", compress("xz", &data)),
    ]);
    let d = tempfile::tempdir().unwrap();
    let deb_path = write_deb(d.path(), "modes.deb", &deb_bytes);
    let dest = d.path().join("out");
    deb::extract(&deb_path, &dest, &mut |_| true).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for name in ["suid", "sgid", "world", "sticky", "plain"] {
        let mode = std::fs::metadata(dest.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode & 0o7022, 0, "{name} kept mode {mode:o}");
    }
    let plain = std::fs::metadata(dest.join("plain"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(plain & 0o777, 0o644, "a harmless mode is kept");
}
