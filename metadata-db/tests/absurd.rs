//! Issue #16, item 2: a record whose facts no kernel can have enters
//! through no door: not `Store::put` (`db import`, `db add`), not a bundle
//! (`bundle install`, signed or not), not a store file written by anything
//! else; each refusal names the impossible fact.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::fixture;
use kmlink_metadata_db::bundle::{self, Trust};
use kmlink_metadata_db::image::Image;
use kmlink_metadata_db::record::KernelRecord;
use kmlink_metadata_db::{DbError, Store};

const R: &str = "6.1.0-47-amd64";

fn absurd() -> Vec<(KernelRecord, &'static str)> {
    let base = fixture(R, 1, 50, |_| true);
    let layout = |k: &str, v: u64| {
        let mut r = base.clone();
        r.layouts.insert(k.into(), v);
        r
    };
    let mut schema = base.clone();
    schema.schema = 999;
    let mut arch = base.clone();
    arch.identity.arch = "riscv64".into();
    vec![
        (
            layout("offsetof:task_struct.pid", u64::MAX),
            "offsetof:task_struct.pid = 0xffffffffffffffff",
        ),
        (
            layout("offsetof:task_struct.comm", 4_000_000_000),
            "offsetof:task_struct.comm = 0xee6b2800",
        ),
        (layout("sizeof:kprobe", 0), "sizeof:kprobe = 0x0"),
        (
            layout("percpu:current_task", 1 << 62),
            "percpu:current_task = 0x4000000000000000",
        ),
        (schema, "schema = 999"),
        (
            arch,
            "arch = \"riscv64\" is not an architecture kmlink links modules for (x86_64, aarch64)",
        ),
    ]
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("records.db")).unwrap();
    (dir, s)
}

#[test]
fn the_fixture_itself_is_possible() {
    fixture(R, 1, 50, |_| true).validate().unwrap();
}

#[test]
fn store_put_refuses_each_absurd_value() {
    let (_d, s) = store();
    for (r, words) in absurd() {
        let e = s.put(&r).expect_err(words);
        assert!(matches!(e, DbError::Invalid(_)), "{e:?}");
        assert!(e.to_string().contains(words), "{e}");
        assert!(s.list().unwrap().is_empty(), "stored: {words}");
    }
}

#[test]
fn bundle_install_refuses_each_absurd_value() {
    let (_d, s) = store();
    let trust = Trust {
        keys: Vec::new(),
        require_signature: false,
    };
    for (r, words) in absurd() {
        let bytes = match bundle::export(std::slice::from_ref(&r), None, None) {
            Ok(b) => b,
            // Refused on the way out is fine too (schema in the header).
            Err(e) => {
                assert!(e.to_string().contains("schema"), "{e}");
                continue;
            }
        };
        let e = bundle::install(&s, &bytes, &trust).expect_err(words);
        let text = format!("{e}: {:?}", e);
        assert!(
            text.contains(words) || (words.starts_with("schema") && text.contains("999")),
            "{words}: {text}"
        );
        assert!(s.list().unwrap().is_empty(), "stored: {words}");
    }
}

#[test]
fn a_store_file_holding_an_absurd_record_does_not_serve_it() {
    for (r, words) in absurd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.db");
        let mut image = Image::new();
        image.push(&r).unwrap();
        std::fs::write(&path, image.encode_store()).unwrap();
        let s = Store::open(&path).unwrap();
        match s.get(R) {
            Ok(rs) => panic!("served {} record(s) with {words}", rs.len()),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(words), "{words}: {text}");
            }
        }
    }
}
