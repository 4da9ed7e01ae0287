//! The linker refuses, before anything is written, every disagreement
//! between the sources of truth. Each test mutates one fact of a fixture
//! record (or brings a donor from elsewhere) and checks the refusal names
//! the field or symbol and each source's value.

mod common;

use kmlink_core_module::CORE_OBJECT;
use kmlink_linker::check::{Facts, Status, Verdict};
use kmlink_linker::host::HostIdentity;
use kmlink_metadata_db::record::KernelRecord;

const R61: &str = "6.1.0-47-amd64";
const R612: &str = "6.12.107+deb13-amd64";
const R73: &str = "7.3.4+deb13-amd64";

/// The verdict refuses, and the named check failed with all of `words` in
/// its detail.
fn refused(v: Result<Verdict, Verdict>, check: &str, words: &[&str]) -> Verdict {
    let v = match v {
        Ok(v) => panic!("expected a refusal in {check}, got a module:\n{v}"),
        Err(v) => v,
    };
    let c = v
        .get(check)
        .unwrap_or_else(|| panic!("no {check} check:\n{v}"));
    assert_eq!(c.status, Status::Fail, "{check} should fail:\n{v}");
    assert!(c.fix.is_some(), "a failure says what to do next:\n{v}");
    for w in words {
        assert!(
            c.detail.contains(w),
            "{check}: {w:?} missing from {:?}\n{v}",
            c.detail
        );
    }
    let text = v.to_string();
    assert!(text.contains("REFUSED"), "{text}");
    assert!(text.contains("✗"), "{text}");
    v
}

#[test]
fn wrong_crc_against_donor() {
    let mut r = common::record(R61);
    let good = r.exports["_printk"].crc.expect("crc");
    r.exports.get_mut("_printk").expect("_printk").crc = Some(good ^ 1);
    let donor = common::donor(R61);
    refused(
        common::verdict(&r, Some(&donor)),
        "crcs",
        &[
            "_printk",
            &format!("{:#010x}", good ^ 1),
            &format!("{good:#010x}"),
            "donor",
        ],
    );
}

#[test]
fn wrong_crc_without_donor_is_not_caught_by_the_record_alone() {
    // Documented limit: with nothing to compare against, a self-consistent
    // record is believed; the checks say so instead of claiming a match.
    let mut r = common::record(R61);
    let good = r.exports["_printk"].crc.expect("crc");
    r.exports.get_mut("_printk").expect("_printk").crc = Some(good ^ 1);
    let v = common::verdict(&r, None).expect("believed");
    assert!(
        v.get("crcs").expect("crcs").detail.contains("no donor"),
        "{v}"
    );
}

#[test]
fn wrong_this_module_size() {
    for release in [R61, R612] {
        let mut r = common::record(release);
        let real = r.this_module.size;
        r.this_module.size = real + 64;
        let donor = common::donor(release);
        refused(
            common::verdict(&r, Some(&donor)),
            "this_module",
            &[
                "sizeof(struct module)",
                &format!("{:#x}", real + 64),
                &format!("{real:#x}"),
            ],
        );
    }
}

#[test]
fn wrong_init_offset_with_right_size() {
    // 7.3 moved init to 0x130 (6.x: 0x138) and kept the size 1280 of 6.12:
    // the size alone proves nothing.
    let mut r = common::record(R73);
    assert_eq!(r.this_module.init_offset, 0x130);
    r.this_module.init_offset = 0x138;
    let donor = common::donor(R73);
    refused(
        common::verdict(&r, Some(&donor)),
        "this_module",
        &["offsetof(struct module, init)", "0x138", "0x130"],
    );
    // A 6.12 record's layout with a 7.3 donor: same size, other offsets.
    let mut r = common::record(R73);
    r.this_module = common::record(R612).this_module;
    refused(
        common::verdict(&r, Some(&donor)),
        "this_module",
        &["init", "exit", "0x4b0", "0x4b8"],
    );
}

#[test]
fn wrong_vermagic() {
    let mut r = common::record(R61);
    r.vermagic = format!("{R61} SMP mod_unload modversions ");
    let donor = common::donor(R61);
    refused(
        common::verdict(&r, Some(&donor)),
        "vermagic",
        &[
            "SMP mod_unload modversions",
            "SMP preempt mod_unload modversions",
        ],
    );
    // Unversioned 7.3: the whole string matters, a missing trailing space too.
    let mut r = common::record(R73);
    r.vermagic = r.vermagic.trim_end().to_string();
    let donor = common::donor(R73);
    refused(common::verdict(&r, Some(&donor)), "vermagic", &["disagree"]);
}

#[test]
fn vermagic_that_contradicts_the_record_itself() {
    let mut r = common::record(R73);
    r.vermagic = format!("{R73} SMP preempt mod_unload modversions ");
    refused(common::verdict(&r, None), "vermagic", &["modversions"]);
    let mut r = common::record(R61);
    r.vermagic = "6.1.0-50-amd64 SMP preempt mod_unload modversions ".into();
    refused(
        common::verdict(&r, None),
        "vermagic",
        &["does not start with"],
    );
}

#[test]
fn missing_export() {
    let mut r = common::record(R612);
    r.exports.remove("proc_create");
    refused(
        common::verdict(&r, None),
        "imports",
        &["proc_create", "kml_proc_create"],
    );
}

#[test]
fn missing_crc_on_a_versioned_kernel() {
    let mut r = common::record(R61);
    r.exports.get_mut("seq_printf").expect("seq_printf").crc = None;
    refused(
        common::verdict(&r, None),
        "imports",
        &["no CRC", "seq_printf"],
    );
}

#[test]
fn mismatched_identity() {
    let r = common::record(R61);
    let m = common::manifest();
    let host = HostIdentity {
        release: R61.into(),
        build_string: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)".into(),
    };
    let facts = Facts {
        record: &r,
        manifest: &m,
        donor: None,
        btf: None,
        host: Some(&host),
        image: None,
    };
    let v = kmlink_linker::build(CORE_OBJECT, &facts)
        .map(|b| b.verdict)
        .map_err(|e| e.verdict);
    refused(v, "identity", &["build string", "6.1.170-3", "6.1.158-1"]);
    let host = HostIdentity {
        release: "6.1.0-50-amd64".into(),
        build_string: r.identity.build_string.clone(),
    };
    let facts = Facts {
        host: Some(&host),
        ..facts
    };
    let v = kmlink_linker::build(CORE_OBJECT, &facts)
        .map(|b| b.verdict)
        .map_err(|e| e.verdict);
    refused(v, "identity", &["release", "6.1.0-50-amd64"]);
}

#[test]
fn donor_from_another_kernel() {
    let r = common::record(R61);
    let donor = common::donor(R612);
    let v = refused(
        common::verdict(&r, Some(&donor)),
        "vermagic",
        &["another kernel", R61, R612],
    );
    // It is also caught on the layout and the CRCs it disagrees about.
    assert_eq!(
        v.get("this_module").expect("this_module").status,
        Status::Fail
    );
}

#[test]
fn donor_without_versions_on_a_versioned_kernel() {
    let r = common::record(R61);
    let mut donor = common::donor(R61);
    donor.facts.sections.retain(|s| s != "__versions");
    donor.facts.versions.clear();
    refused(
        common::verdict(&r, Some(&donor)),
        "conventions",
        &["symbol versions"],
    );
}

#[test]
fn gpl_only_imports_need_a_gpl_licence() {
    let r: KernelRecord = common::record(R61);
    let m = common::manifest();
    let mut linked = kmlink_linker::link(CORE_OBJECT, &m, &r).expect("links");
    for i in linked.report.modinfo.iter_mut() {
        if i.starts_with("license=") {
            *i = "license=Proprietary".into();
        }
    }
    let facts = Facts {
        record: &r,
        manifest: &m,
        donor: None,
        btf: None,
        host: None,
        image: None,
    };
    let v = kmlink_linker::check::verify(&facts, &Ok(linked));
    refused(
        Err(v),
        "licence",
        &["Proprietary", "tracepoint_probe_register"],
    );
}

#[test]
fn implausible_record_layout_is_refused_without_any_other_source() {
    let mut r = common::record(R612);
    r.this_module.exit_offset = r.this_module.size;
    refused(common::verdict(&r, None), "this_module", &["exit"]);
}

#[test]
fn refusal_is_an_error_naming_the_kernel() {
    let mut r = common::record(R61);
    r.this_module.size += 8;
    let donor = common::donor(R61);
    let m = common::manifest();
    let facts = Facts {
        record: &r,
        manifest: &m,
        donor: Some(&donor),
        btf: None,
        host: None,
        image: None,
    };
    let e = kmlink_linker::build(CORE_OBJECT, &facts).expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("refusing to build a module for {R61}")),
        "{msg}"
    );
    assert!(msg.contains("this_module"), "{msg}");
}
