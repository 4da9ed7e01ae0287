//! Golden dumps of the module linked for each fixture record: sections,
//! symbols, relocations, modinfo, versions, the `struct module` section.
//! They link the core object checked in under `tests/fixtures/core/`, not
//! the one this build's gcc compiled, so another gcc leaves them alone and a
//! difference is the linker's (docs/linker.md, "Golden tests").
//! `KMLINK_UPDATE_GOLDEN=1 cargo test -p kmlink-linker --test golden`
//! rewrites them after a linker change; `scripts/golden-core` refreshes the
//! object and then them after a core change (review the diff).
//! Every module is parsed back and compared with what went into it.

mod common;

use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_donor::ko;

/// The checked-in core object the goldens link.
fn golden_core() -> Vec<u8> {
    let path = common::dir("fixtures").join("core/kmlink-core.o");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; scripts/golden-core writes it", path.display()))
}

fn golden(release: &str) {
    let record = common::record(release);
    let core = golden_core();
    let manifest = Manifest::from_object(&core).expect("the checked-in core's manifest");
    let linked = kmlink_linker::link(&core, &manifest, &record).unwrap_or_else(|e| {
        panic!(
            "{release}: the checked-in core does not link with the fixture record ({e}); \
             after a core or fixture change run scripts/golden-core"
        )
    });
    let text = kmlink_linker::dump::dump(&linked.ko).expect("dump parses the module back");
    let path = common::dir("golden").join(format!("{release}.txt"));
    if std::env::var_os("KMLINK_UPDATE_GOLDEN").is_some_and(|v| !v.is_empty()) {
        std::fs::write(&path, &text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run KMLINK_UPDATE_GOLDEN=1 cargo test -p kmlink-linker --test golden",
            path.display()
        )
    });
    if want != text {
        let mut diff = String::new();
        for (i, (w, h)) in want.lines().zip(text.lines()).enumerate() {
            if w != h {
                diff.push_str(&format!("line {}:\n  golden: {w}\n  actual: {h}\n", i + 1));
                if diff.len() > 4000 {
                    break;
                }
            }
        }
        panic!(
            "{release}: the module differs from {} ({} vs {} lines)\n{diff}\
             If the change is intended: KMLINK_UPDATE_GOLDEN=1 cargo test -p kmlink-linker --test golden \
             (after a core change: scripts/golden-core)",
            path.display(),
            want.lines().count(),
            text.lines().count()
        );
    }
}

#[test]
fn golden_6_1() {
    golden("6.1.0-47-amd64");
}

#[test]
fn golden_6_12() {
    golden("6.12.107+deb13-amd64");
}

#[test]
fn golden_7_3() {
    golden("7.3.4+deb13-amd64");
}

/// What the module says, read back, is what the record says.
#[test]
fn modules_parse_back_to_their_record() {
    for release in common::RELEASES {
        let record = common::record(release);
        let linked = kmlink_linker::link(CORE_OBJECT, &common::manifest(), &record).expect("links");
        let f = ko::read(&linked.ko).expect("module parses");
        assert_eq!(
            f.vermagic.as_deref(),
            Some(record.vermagic.as_str()),
            "{release}"
        );
        assert_eq!(f.name.as_deref(), Some("kmlink"), "{release}");
        assert_eq!(f.modinfo_get("license"), Some("GPL"), "{release}");
        let t = record.this_module;
        assert_eq!(f.this_module_size, Some(t.size), "{release}");
        assert_eq!(f.this_module_name_offset, Some(t.name_offset), "{release}");
        assert_eq!(
            f.this_module_relocs,
            vec![
                (t.init_offset, "init_module".to_string()),
                (t.exit_offset, "cleanup_module".to_string())
            ],
            "{release}"
        );
        assert_eq!(f.versions, linked.report.versions, "{release}");
        if record.conventions.modversions {
            assert_eq!(f.versions[0].0, "module_layout", "{release}");
            for (name, crc) in &f.versions {
                assert_eq!(record.exports[name].crc, Some(*crc), "{release} {name}");
            }
            assert!(f.sections.iter().any(|s| s == "__versions"));
        } else {
            assert!(f.versions.is_empty(), "{release}: unversioned kernel");
            assert!(!f.sections.iter().any(|s| s == "__versions"));
        }
        let info: Vec<String> = f.modinfo.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(info, linked.report.modinfo, "{release}");
        // Every undefined symbol is a kernel export (or an absent weak one).
        for u in &f.undefined {
            let weak_absent = linked
                .report
                .bindings
                .iter()
                .any(|b| !b.present && &b.kernel_name == u);
            assert!(
                record.exports.contains_key(u) || weak_absent,
                "{release}: {u} is neither exported nor weak"
            );
        }
        assert_eq!(
            f.sections.iter().any(|s| s == ".return_sites"),
            record.conventions.return_sites && linked.report.return_sites > 0
        );
        // The manifest and the compiler's leftovers are gone.
        for gone in [".kmlink.manifest", ".comment", ".note.GNU-stack"] {
            assert!(!f.sections.iter().any(|s| s == gone), "{release}: {gone}");
        }
    }
}

/// Same inputs, same bytes: twice in a row, and from the record after a
/// JSON round trip.
#[test]
fn linking_is_deterministic() {
    for release in common::RELEASES {
        let record = common::record(release);
        let a = common::link(&record);
        let b = common::link(&record);
        assert!(a == b, "{release}: two links differ");
        let again: kmlink_metadata_db::record::KernelRecord =
            serde_json::from_str(&serde_json::to_string(&record).expect("ser")).expect("de");
        assert!(
            common::link(&again) == a,
            "{release}: JSON round trip changes the module"
        );
        assert_eq!(
            kmlink_linker::content_hash(CORE_OBJECT, &record),
            kmlink_linker::content_hash(CORE_OBJECT, &again)
        );
    }
}

/// A correctly linked module is a donor the checks accept.
#[test]
fn build_with_matching_donor_passes_every_check() {
    for release in common::RELEASES {
        let record = common::record(release);
        let donor = common::donor(release);
        let v = common::verdict(&record, Some(&donor)).unwrap_or_else(|v| panic!("{v}"));
        let text = v.to_string();
        for name in [
            "identity",
            "vermagic",
            "conventions",
            "imports",
            "crcs",
            "licence",
            "namespaces",
            "this_module",
            "layouts",
        ] {
            assert!(v.get(name).is_some(), "{release}: no {name} check\n{text}");
        }
        assert!(
            v.get("vermagic")
                .is_some_and(|c| c.detail.contains("byte-identical")),
            "{text}"
        );
        assert!(
            v.get("this_module")
                .is_some_and(|c| c.detail.contains("donor")),
            "{text}"
        );
        assert!(text.contains("all 9 checks agree"), "{text}");
    }
}
