//! Soundness of the checks, measured (issue #16): every fact of a real
//! record that the core uses is mutated, one at a time, and the module is
//! built in-process the way `kmlink build --btf VMLINUZ --donor KO` builds
//! it: the target's own image as BTF (and export table) and a real module of
//! the kernel as donor. A mutation must be refused unless the module it
//! gives is byte-identical to the true record's (the fact does not reach
//! the module). The figure per fact class is printed and kept in
//! docs/soundness.md.
//!
//! The same mutations are also built with the donor alone (no BTF): what
//! the linker claims to prove without BTF (vermagic, conventions,
//! `struct module`, the CRCs the donor carries) must be refused there too.
//!
//! Needs the pinned kernels unpacked under the cache
//! (`cargo test -p kmlink-metadata-db --test real -- --ignored` unpacks them);
//! without them the test fails under CI=true and says so otherwise.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_linker::check::Facts;
use kmlink_linker::donor::Donor;
use kmlink_linker::host::{self, ImageExports, LiveBtf};
use kmlink_metadata_db::record::KernelRecord;
use kmlink_metadata_db::slim;

/// One pair of real kernels: versioned 6.1 (CRCs, `module_layout`) and
/// unversioned 7.3 (the whole vermagic, no CRCs).
const KERNELS: &[&str] = &["6.1.0-47-amd64", "7.3.4+deb13-amd64"];

fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("KMLINK_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache/kmlink"),
        None => std::env::temp_dir().join("kmlink-cache"),
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The target's sources as the pinned kernel's unpacked packages give them.
struct Target {
    record: KernelRecord,
    donor: Donor,
    btf: LiveBtf,
    image: Option<ImageExports>,
}

/// The unpacked tree of `release`: its image and a stock module under
/// `kernel/lib` with `init` and `exit` relocations (a complete donor).
fn target(release: &'static str) -> Result<Target, String> {
    let root = cache_root().join("kernels").join(release);
    let modules = [
        root.join("lib/modules").join(release),
        root.join("usr/lib/modules").join(release),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .ok_or_else(|| format!("{release} is not unpacked under {}", root.display()))?;
    let vmlinuz = [
        root.join(format!("boot/vmlinuz-{release}")),
        modules.join("vmlinuz"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| format!("no vmlinuz of {release} under {}", root.display()))?;
    let mut files = Vec::new();
    files_under(&modules.join("kernel/lib"), &mut files);
    let donor = files
        .iter()
        .filter(|p| p.to_string_lossy().contains(".ko"))
        .find_map(|p| Donor::open(p).ok().filter(Donor::complete))
        .ok_or_else(|| format!("no complete donor module under {}", modules.display()))?;
    let (btf, image) = host::read_btf_source(&vmlinuz).map_err(|e| format!("{e}"))?;
    Ok(Target {
        record: slim::slim(&common::record(release), &common::manifest(), CORE_OBJECT),
        donor,
        btf,
        image,
    })
}

/// One mutation: its fact class, the fact, how it was changed, the edit.
struct Mutation {
    class: &'static str,
    fact: String,
    how: &'static str,
    edit: Box<dyn Fn(&mut KernelRecord) + Send + Sync>,
}

fn mutation(
    out: &mut Vec<Mutation>,
    class: &'static str,
    fact: impl Into<String>,
    how: &'static str,
    edit: impl Fn(&mut KernelRecord) + Send + Sync + 'static,
) {
    out.push(Mutation {
        class,
        fact: fact.into(),
        how,
        edit: Box::new(edit),
    });
}

/// The layout key's class and the step of a "+delta" mutation.
fn layout_class(key: &str) -> (&'static str, u64) {
    match key.split(':').next().unwrap_or_default() {
        "offsetof" | "sizeof" => ("layout offsetof/sizeof", 8),
        "percpu" => ("per-CPU variable", 8),
        "fnargsize" => ("kprobe fn/fnarg", 8),
        "fn" | "fnarg" => ("kprobe fn/fnarg", 1),
        _ => ("layout (other)", 1),
    }
}

/// Every mutation of `base` (linked to `names`: the exports the true module
/// binds or versions).
fn mutations(
    base: &KernelRecord,
    manifest: &Manifest,
    bound: &[String],
    donor: &Donor,
) -> Vec<Mutation> {
    let mut out = Vec::new();

    // Layouts: every fact the core asked for, +delta, -delta, another
    // fact's value of the same kind, dropped; and facts the kernel lacks,
    // claimed.
    let keys: Vec<(String, u64)> = base.layouts.iter().map(|(k, v)| (k.clone(), *v)).collect();
    for (i, (key, v)) in keys.iter().enumerate() {
        let (class, d) = layout_class(key);
        let v = *v;
        let k = key.clone();
        mutation(&mut out, class, key, "+delta", move |r| {
            r.layouts.insert(k.clone(), v + d);
        });
        let kind = key.split(':').next().unwrap_or_default();
        let other = keys
            .iter()
            .cycle()
            .skip(i + 1)
            .take(keys.len())
            .find(|(k2, v2)| k2.split(':').next() == Some(kind) && *v2 != v)
            .map(|(_, v2)| *v2);
        if let Some(o) = other {
            let k = key.clone();
            mutation(&mut out, class, key, "another fact's value", move |r| {
                r.layouts.insert(k.clone(), o);
            });
        }
        let k = key.clone();
        mutation(&mut out, class, key, "dropped", move |r| {
            r.layouts.remove(&k);
        });
    }
    for key in manifest.layout_keys() {
        if base.layouts.contains_key(&key) {
            continue;
        }
        let (class, _) = layout_class(&key);
        let v = match key.split(':').next().unwrap_or_default() {
            "percpu" => 0,
            "fn" => 3,
            "fnarg" => 1,
            "fnargsize" => 8,
            "sizeof" => 64,
            _ => 8,
        };
        let k = key.clone();
        mutation(
            &mut out,
            class,
            &key,
            "claimed (absent in the kernel)",
            move |r| {
                r.layouts.insert(k.clone(), v);
            },
        );
    }

    // Tracepoint prototypes.
    for (tp, params) in &base.tracepoints {
        let t = tp.clone();
        mutation(&mut out, "tracepoint", tp, "dropped", move |r| {
            r.tracepoints.remove(&t);
        });
        for (i, p) in params.iter().enumerate() {
            let fact = format!("{tp}.{}", p.name);
            let t = tp.clone();
            mutation(&mut out, "tracepoint", &fact, "param renamed", move |r| {
                let q = &mut r.tracepoints.get_mut(&t).unwrap()[i];
                q.name.push_str("_x");
            });
            let t = tp.clone();
            mutation(
                &mut out,
                "tracepoint",
                &fact,
                "param size +delta",
                move |r| {
                    r.tracepoints.get_mut(&t).unwrap()[i].size += 8;
                },
            );
            let t = tp.clone();
            mutation(&mut out, "tracepoint", &fact, "param dropped", move |r| {
                r.tracepoints.get_mut(&t).unwrap().remove(i);
            });
            if i + 1 < params.len() {
                let t = tp.clone();
                mutation(
                    &mut out,
                    "tracepoint",
                    &fact,
                    "swapped with next",
                    move |r| {
                        r.tracepoints.get_mut(&t).unwrap().swap(i, i + 1);
                    },
                );
            }
            let t = tp.clone();
            mutation(
                &mut out,
                "tracepoint type text",
                &fact,
                "type text changed",
                move |r| {
                    r.tracepoints.get_mut(&t).unwrap()[i].type_name = "long".into();
                },
            );
        }
    }
    for tp in manifest.tracepoints() {
        if base.tracepoints.contains_key(&tp) {
            continue;
        }
        let Some(like) = base.tracepoints.values().next().cloned() else {
            continue;
        };
        let t = tp.clone();
        mutation(
            &mut out,
            "tracepoint",
            &tp,
            "claimed (absent in the kernel)",
            move |r| {
                r.tracepoints.insert(t.clone(), like.clone());
            },
        );
    }

    // struct module.
    type Field = fn(&mut KernelRecord) -> &mut u64;
    let fields: [(&str, Field); 5] = [
        ("size", |r| &mut r.this_module.size),
        ("name_offset", |r| &mut r.this_module.name_offset),
        ("name_len", |r| &mut r.this_module.name_len),
        ("init_offset", |r| &mut r.this_module.init_offset),
        ("exit_offset", |r| &mut r.this_module.exit_offset),
    ];
    let mut b = base.clone();
    let values: Vec<u64> = fields.iter().map(|(_, f)| *f(&mut b)).collect();
    for (i, (name, f)) in fields.iter().enumerate() {
        let f = *f;
        let v = values[i];
        let fact = format!("this_module.{name}");
        mutation(&mut out, "struct module", &fact, "+delta", move |r| {
            *f(r) = v + 8
        });
        if v >= 8 {
            mutation(&mut out, "struct module", &fact, "-delta", move |r| {
                *f(r) = v - 8
            });
        }
        if let Some(&o) = values.iter().find(|&&o| o != v) {
            mutation(
                &mut out,
                "struct module",
                &fact,
                "another field's value",
                move |r| *f(r) = o,
            );
        }
        mutation(&mut out, "struct module", &fact, "dropped (0)", move |r| {
            *f(r) = 0
        });
    }

    // vermagic.
    mutation(&mut out, "vermagic", "vermagic", "a word changed", |r| {
        r.vermagic = r.vermagic.replacen("SMP", "smp", 1);
    });
    mutation(&mut out, "vermagic", "vermagic", "a word added", |r| {
        r.vermagic.push_str("gcc-99 ");
    });
    mutation(&mut out, "vermagic", "vermagic", "last word dropped", |r| {
        let mut w: Vec<&str> = r.vermagic.split_whitespace().collect();
        w.pop();
        r.vermagic = format!("{} ", w.join(" "));
    });
    mutation(
        &mut out,
        "vermagic",
        "vermagic",
        "trailing space dropped",
        |r| {
            r.vermagic = r.vermagic.trim_end().to_string();
        },
    );
    mutation(&mut out, "vermagic", "vermagic", "another release", |r| {
        r.vermagic = r
            .vermagic
            .replacen(&r.identity.release, "6.1.0-50-amd64", 1);
    });
    mutation(&mut out, "vermagic", "vermagic", "dropped (empty)", |r| {
        r.vermagic.clear();
    });

    // Conventions.
    type Flag = fn(&mut KernelRecord) -> &mut bool;
    let flags: [(&str, Flag); 5] = [
        ("modversions", |r| &mut r.conventions.modversions),
        ("ext_modversions", |r| &mut r.conventions.ext_modversions),
        ("return_sites", |r| &mut r.conventions.return_sites),
        ("retpoline", |r| &mut r.conventions.retpoline),
        ("ibt", |r| &mut r.conventions.ibt),
    ];
    for (name, f) in flags {
        mutation(
            &mut out,
            "conventions",
            format!("conventions.{name}"),
            "toggled",
            move |r| {
                let x = f(r);
                *x = !*x;
            },
        );
    }
    mutation(
        &mut out,
        "conventions",
        "conventions.stock_modinfo_keys",
        "dropped",
        |r| r.conventions.stock_modinfo_keys.clear(),
    );

    // The exports the module binds: CRC flipped, another's CRC, CRC
    // dropped, export dropped, GPL and namespace changed.
    for name in bound {
        let Some(e) = base.exports.get(name) else {
            continue;
        };
        // The CRCs the donor carries too are checked without BTF.
        let in_donor = donor
            .facts
            .versions
            .iter()
            .chain(&donor.facts.ext_versions)
            .any(|(n, _)| n == name);
        let crc_class = if in_donor {
            "CRC (in the donor)"
        } else {
            "CRC"
        };
        if let Some(crc) = e.crc {
            let n = name.clone();
            mutation(&mut out, crc_class, name, "one bit flipped", move |r| {
                r.exports.get_mut(&n).unwrap().crc = Some(crc ^ 1);
            });
            let other = bound
                .iter()
                .filter_map(|o| base.exports.get(o).and_then(|e| e.crc))
                .find(|&c| c != crc);
            if let Some(o) = other {
                let n = name.clone();
                mutation(
                    &mut out,
                    crc_class,
                    name,
                    "another symbol's CRC",
                    move |r| {
                        r.exports.get_mut(&n).unwrap().crc = Some(o);
                    },
                );
            }
            let n = name.clone();
            mutation(&mut out, crc_class, name, "dropped", move |r| {
                r.exports.get_mut(&n).unwrap().crc = None;
            });
        } else {
            let n = name.clone();
            mutation(
                &mut out,
                crc_class,
                name,
                "claimed (unversioned)",
                move |r| {
                    r.exports.get_mut(&n).unwrap().crc = Some(0x1234_5678);
                },
            );
        }
        let n = name.clone();
        mutation(&mut out, "export", name, "dropped", move |r| {
            r.exports.remove(&n);
        });
        let n = name.clone();
        mutation(&mut out, "export", name, "GPL-only toggled", move |r| {
            let e = r.exports.get_mut(&n).unwrap();
            e.gpl = !e.gpl;
        });
        let n = name.clone();
        mutation(&mut out, "export", name, "namespace changed", move |r| {
            let e = r.exports.get_mut(&n).unwrap();
            e.namespace = match e.namespace {
                Some(_) => None,
                None => Some("KMLINK_TEST".into()),
            };
        });
    }
    // Import candidates the kernel does not export, claimed.
    for import in &manifest.imports {
        for cand in &import.candidates {
            if base.exports.contains_key(cand) {
                continue;
            }
            let c = cand.clone();
            let like = base.exports.values().next().cloned();
            mutation(
                &mut out,
                "export",
                cand,
                "claimed (not exported)",
                move |r| {
                    let mut e = like.clone().unwrap();
                    e.crc = e.crc.map(|_| 0x1234_5678);
                    r.exports.insert(c.clone(), e);
                },
            );
        }
    }
    // Exports the module does not bind.
    for name in base.exports.keys().filter(|n| !bound.contains(n)).take(3) {
        let n = name.clone();
        mutation(&mut out, "unbound export", name, "CRC flipped", move |r| {
            let e = r.exports.get_mut(&n).unwrap();
            e.crc = e.crc.map(|c| c ^ 1);
        });
        let n = name.clone();
        mutation(&mut out, "unbound export", name, "dropped", move |r| {
            r.exports.remove(&n);
        });
    }

    // Identity and the rest.
    mutation(&mut out, "identity", "identity.release", "changed", |r| {
        r.identity.release.push('x');
    });
    mutation(
        &mut out,
        "identity",
        "identity.btf_sha256",
        "changed",
        |r| {
            r.identity.btf_sha256 = r.identity.btf_sha256.replacen('a', "b", 1);
        },
    );
    mutation(&mut out, "identity", "identity.arch", "changed", |r| {
        r.identity.arch = "aarch64".into();
    });
    mutation(&mut out, "identity", "schema", "+1", |r| r.schema += 1);
    mutation(
        &mut out,
        "identity (text)",
        "identity.build_string",
        "changed",
        |r| {
            r.identity.build_string.push('x');
        },
    );
    mutation(
        &mut out,
        "identity (text)",
        "identity.suite",
        "changed",
        |r| {
            r.identity.suite.push('x');
        },
    );
    mutation(
        &mut out,
        "identity (text)",
        "identity.packages",
        "dropped",
        |r| {
            r.identity.packages.clear();
        },
    );
    mutation(&mut out, "config", "config", "dropped", |r| {
        r.config.clear()
    });
    mutation(&mut out, "functions list", "functions", "dropped", |r| {
        r.functions.clear();
    });
    mutation(&mut out, "provenance", "provenance", "dropped", |r| {
        r.provenance.clear();
    });
    out
}

#[derive(Default)]
struct Tally {
    tried: usize,
    refused: usize,
    /// Built, the module byte-identical to the true record's.
    identical: Vec<String>,
    /// Built, a different module: a soundness hole.
    holes: Vec<String>,
}

enum Outcome {
    Refused,
    Identical,
    Hole,
}

/// Builds every mutation with the donor and, `with_btf`, the target's BTF
/// and image export table; the tally per fact class. The mutations are
/// shared out over the machine's cores.
fn measure(
    t: &Target,
    manifest: &Manifest,
    muts: &[Mutation],
    with_btf: bool,
    baseline: &[u8],
) -> BTreeMap<&'static str, Tally> {
    let run = |m: &Mutation| {
        let mut r = t.record.clone();
        (m.edit)(&mut r);
        let facts = Facts {
            record: &r,
            manifest,
            donor: Some(&t.donor),
            btf: with_btf.then_some(&t.btf),
            host: None,
            image: if with_btf { t.image.as_ref() } else { None },
        };
        match kmlink_linker::build(CORE_OBJECT, &facts) {
            Err(_) => Outcome::Refused,
            Ok(b) if b.linked.ko == baseline => Outcome::Identical,
            Ok(_) => Outcome::Hole,
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut outcomes: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let run = &run;
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || {
                    muts.iter()
                        .enumerate()
                        .filter(|(i, _)| i % threads == k)
                        .map(|(i, m)| (i, run(m)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    outcomes.sort_by_key(|(i, _)| *i);
    let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
    for (i, outcome) in outcomes {
        let m = &muts[i];
        let tally = tallies.entry(m.class).or_default();
        tally.tried += 1;
        let what = format!("{} {}", m.fact, m.how);
        match outcome {
            Outcome::Refused => tally.refused += 1,
            Outcome::Identical => tally.identical.push(what),
            Outcome::Hole => tally.holes.push(what),
        }
    }
    tallies
}

fn table(release: &str, label: &str, tallies: &BTreeMap<&'static str, Tally>) -> String {
    let mut s = format!("{release}, {label}:\n");
    let (mut tried, mut refused, mut same, mut holes) = (0, 0, 0, 0);
    for (class, t) in tallies {
        s.push_str(&format!(
            "  {class:<26} tried {:>4}  refused {:>4}  identical module {:>3}  holes {:>3}\n",
            t.tried,
            t.refused,
            t.identical.len(),
            t.holes.len()
        ));
        tried += t.tried;
        refused += t.refused;
        same += t.identical.len();
        holes += t.holes.len();
    }
    s.push_str(&format!(
        "  {:<26} tried {tried:>4}  refused {refused:>4}  identical module {same:>3}  holes {holes:>3}\n",
        "total"
    ));
    s
}

/// Fact classes that never reach the module: unrefused mutations of them
/// must leave it byte-identical (docs/soundness.md says why each is unused).
const UNUSED: &[&str] = &[
    "tracepoint type text",
    "identity (text)",
    "config",
    "functions list",
    "provenance",
    "unbound export",
];

/// What `kmlink build --donor` claims without BTF: every mutation of these
/// classes that changes the module is refused by the donor alone.
const PROVABLE_WITHOUT_BTF: &[&str] = &[
    "vermagic",
    "conventions",
    "struct module",
    "CRC (in the donor)",
];

#[test]
#[ignore = "reads the pinned kernels' unpacked trees (scripts/test runs it after the VM suite has unpacked them)"]
fn every_mutation_of_a_used_fact_is_refused() {
    let manifest = common::manifest();
    let mut report = String::new();
    let mut failures = Vec::new();
    for &release in KERNELS {
        let t = match target(release) {
            Ok(t) => t,
            Err(why) => {
                return kmlink_testkit::missing(&format!(
                    "{why} (cargo test -p kmlink-metadata-db --test real -- --ignored unpacks the pinned kernels)"
                ))
            }
        };
        let facts = Facts {
            record: &t.record,
            manifest: &manifest,
            donor: Some(&t.donor),
            btf: Some(&t.btf),
            host: None,
            image: t.image.as_ref(),
        };
        let built = kmlink_linker::build(CORE_OBJECT, &facts)
            .unwrap_or_else(|r| panic!("{release}: the true record is refused:\n{}", r.verdict));
        // Every check ran on something: none skipped but the host's.
        for c in &built.verdict.checks {
            assert!(
                c.status != kmlink_linker::check::Status::Skip
                    || c.name == "crcs" && !t.record.conventions.modversions,
                "{release}: check {} skipped: {}",
                c.name,
                c.detail
            );
        }
        let baseline = built.linked.ko.clone();
        let mut bound: Vec<String> = built
            .linked
            .report
            .bindings
            .iter()
            .filter(|b| b.present)
            .map(|b| b.kernel_name.clone())
            .chain(built.linked.report.versions.iter().map(|(n, _)| n.clone()))
            .chain(built.linked.report.slots.values().filter_map(|s| match s {
                kmlink_linker::SlotValue::Symbol { name, .. } => Some(name.clone()),
                _ => None,
            }))
            .collect();
        bound.sort();
        bound.dedup();
        let muts = mutations(&t.record, &manifest, &bound, &t.donor);

        let full = measure(&t, &manifest, &muts, true, &baseline);
        report.push_str(&table(
            release,
            &format!(
                "--btf {} (and its export table) --donor {}",
                t.btf.path.file_name().unwrap_or_default().to_string_lossy(),
                t.donor
                    .path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            ),
            &full,
        ));
        for (class, tally) in &full {
            for h in &tally.holes {
                failures.push(format!("{release} with BTF: {class}: {h} was linked"));
            }
            if !UNUSED.contains(class) && !tally.identical.is_empty() {
                report.push_str(&format!(
                    "  {class}: unrefused, module identical: {}\n",
                    tally.identical.join("; ")
                ));
            }
        }

        let donor_only = measure(&t, &manifest, &muts, false, &baseline);
        report.push_str(&table(release, "--donor only (no --btf)", &donor_only));
        for (class, tally) in &donor_only {
            if PROVABLE_WITHOUT_BTF.contains(class) {
                for h in &tally.holes {
                    failures.push(format!("{release} donor only: {class}: {h} was linked"));
                }
            } else if !tally.holes.is_empty() {
                report.push_str(&format!(
                    "  {class}: not provable without BTF: {}\n",
                    tally.holes.join("; ")
                ));
            }
        }
    }
    // The figure, for docs/soundness.md.
    eprintln!("{report}");
    if let Ok(path) = std::env::var("KMLINK_SOUNDNESS_REPORT") {
        std::fs::write(path, &report).unwrap();
    }
    assert!(
        failures.is_empty(),
        "soundness holes:\n{}",
        failures.join("\n")
    );
}
