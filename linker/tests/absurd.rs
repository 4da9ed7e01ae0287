//! A cross-build (no `--btf`, no host) must not link a record whose facts
//! no kernel can have: each absurd value the hostile-input run linked, and
//! a fixed-seed set of random absurd mutations of a real record, is refused
//! by the bare linker and by the checks, naming the fact.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use kmlink_core_module::CORE_OBJECT;
use kmlink_metadata_db::record::KernelRecord;

const R61: &str = "6.1.0-47-amd64";

/// Refused by `link` and by `build` (the verdict fails, naming `words`).
fn refused(r: &KernelRecord, words: &[&str]) {
    let m = common::manifest();
    let e = kmlink_linker::link(CORE_OBJECT, &m, r)
        .err()
        .unwrap_or_else(|| panic!("linked an absurd record ({words:?})"));
    let text = e.to_string();
    for w in words {
        assert!(text.contains(w), "link error lacks {w:?}: {text}");
    }
    let donor = common::donor(R61);
    let v = match common::verdict(r, Some(&donor)) {
        Ok(v) => panic!("built with an absurd record ({words:?}): {v:?}"),
        Err(v) => v,
    };
    let failed: Vec<String> = v.failures().map(|c| c.detail.clone()).collect();
    assert!(
        failed.iter().any(|c| words.iter().all(|w| c.contains(w))),
        "no failed check names {words:?}: {failed:?}"
    );
}

#[test]
fn the_real_record_links() {
    let r = common::record(R61);
    r.validate().expect("real record is possible");
    let donor = common::donor(R61);
    assert!(common::verdict(&r, Some(&donor)).is_ok());
}

#[test]
fn each_absurd_value_of_the_issue_is_refused() {
    let base = common::record(R61);
    let set = |key: &str, v: u64| {
        let mut r = base.clone();
        r.layouts.insert(key.into(), v);
        r
    };
    refused(
        &set("offsetof:task_struct.pid", u64::MAX),
        &["offsetof:task_struct.pid = 0xffffffffffffffff", "outside"],
    );
    refused(
        &set("offsetof:task_struct.comm", 4_000_000_000),
        &["offsetof:task_struct.comm", "outside struct task_struct"],
    );
    refused(&set("sizeof:kprobe", 0), &["sizeof:kprobe = 0x0"]);
    refused(
        &set("percpu:current_task", 1 << 62),
        &["percpu:current_task"],
    );
    let mut r = base.clone();
    r.schema = 999;
    refused(&r, &["schema = 999"]);
    let mut r = base.clone();
    r.identity.arch = "riscv64".into();
    refused(
        &r,
        &["arch = \"riscv64\"", "not an architecture kmlink links"],
    );
    // An amd64 release said to be aarch64: the record contradicts itself
    // (a real aarch64 record with the x86 core: tests/arm64.rs).
    let mut r = base.clone();
    r.identity.arch = "aarch64".into();
    refused(
        &r,
        &[
            "arch = \"aarch64\"",
            "contradicts the release 6.1.0-47-amd64, whose flavour names amd64",
        ],
    );
}

/// xorshift64*: a fixed sequence, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_absurd_mutations_of_a_real_record_are_all_refused() {
    let base = common::record(R61);
    let keys: Vec<String> = base.layouts.keys().cloned().collect();
    let mut rng = Rng(0x6b6d_6c69_6e6b_0016);
    let mut tried = 0;
    for _ in 0..300 {
        let mut r = base.clone();
        let what;
        match rng.below(6) {
            0 => {
                let k = &keys[rng.below(keys.len() as u64) as usize];
                // Absurd for its kind: beyond any structure, a per-CPU
                // marker that is not 0, a size of 0, a position past 64.
                let v = if k.starts_with("sizeof:") || k.starts_with("fnargsize:") {
                    if rng.below(2) == 0 {
                        0
                    } else {
                        (1 << 20) + rng.below(1 << 40)
                    }
                } else if k.starts_with("fnarg:") {
                    if rng.below(2) == 0 {
                        0
                    } else {
                        65 + rng.below(1 << 30)
                    }
                } else if k.starts_with("fn:") {
                    65 + rng.below(u64::MAX - 65)
                } else {
                    (1 << 20) + rng.below(u64::MAX - (1 << 20))
                };
                what = format!("{k} = {v:#x}");
                r.layouts.insert(k.clone(), v);
            }
            1 => {
                let v = (1 << 20) + rng.below(u64::MAX - (1 << 20));
                match rng.below(4) {
                    0 => r.this_module.size = if rng.below(2) == 0 { 0 } else { v },
                    1 => r.this_module.name_offset = v,
                    2 => r.this_module.init_offset = v,
                    _ => r.this_module.exit_offset = v,
                }
                what = format!("this_module {:?}", r.this_module);
            }
            2 => {
                r.schema = loop {
                    let s = rng.next() as u32;
                    if s != base.schema {
                        break s;
                    }
                };
                what = format!("schema {}", r.schema);
            }
            3 => {
                let arches = ["aarch64", "arm", "riscv64", "i686", "s390x", "ppc64le", ""];
                r.identity.arch = arches[rng.below(arches.len() as u64) as usize].into();
                what = format!("arch {:?}", r.identity.arch);
            }
            4 => {
                let tps: Vec<String> = r.tracepoints.keys().cloned().collect();
                let tp = &tps[rng.below(tps.len() as u64) as usize];
                let ps = r.tracepoints.get_mut(tp).unwrap();
                let i = rng.below(ps.len() as u64) as usize;
                ps[i].size = if rng.below(2) == 0 {
                    0
                } else {
                    257 + rng.below(1 << 40)
                };
                what = format!("tracepoint {tp} param {i} size {}", ps[i].size);
            }
            _ => {
                let bad = ["", "../../etc", "6.1.0 47", "a/b", "x\n"];
                r.identity.release = bad[rng.below(bad.len() as u64) as usize].into();
                what = format!("release {:?}", r.identity.release);
            }
        }
        tried += 1;
        assert!(r.validate().is_err(), "mutation accepted: {what}");
        assert!(
            kmlink_linker::link(CORE_OBJECT, &common::manifest(), &r).is_err(),
            "linked: {what}"
        );
    }
    assert_eq!(tried, 300);
}
