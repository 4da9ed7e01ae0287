//! Regenerate `tests/kernels.toml` from the live `Packages` indexes.
//!
//! ```text
//! cargo run -p kmlink-crawler --example pin > tests/kernels.toml
//! cargo run -p kmlink-crawler --example pin -- --mirror URL [--security-mirror URL]
//! cargo run -p kmlink-crawler --example pin -- --secureboot > tests/kernels-secureboot.toml
//! cargo run -p kmlink-crawler --example pin -- --secureboot --all > signed.toml
//! ```
//!
//! `--secureboot` pins Debian's **signed** kernel images instead (the
//! Secure Boot VM tests boot them through shim and GRUB). The archive keeps
//! a signed image only while its ABI is current, so these pins age faster.
//! `--secureboot --all` pins every signed amd64 image in every Debian suite
//! (scripts/matrix-secureboot).
//!
//! Mirrors come from the host's apt sources unless given. The pinned set
//! (release, suite, package names) is the list below; the exact fields
//! (version, filename, size, SHA256, depends) are read from the index.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::process::ExitCode;

use kmlink_crawler::index::{self, PackageEntry};
use kmlink_crawler::kernel_tree::{self, PinnedKernel};
use kmlink_crawler::sources::{self, Mirrors};
use kmlink_crawler::{version, Error, Http};

/// (release, suite, archive kind, package names).
const PINS: &[(&str, &str, &str, &[&str])] = &[
    (
        "6.1.0-47-amd64",
        "bookworm",
        "archive",
        &[
            "linux-image-6.1.0-47-amd64-unsigned",
            "linux-headers-6.1.0-47-amd64",
        ],
    ),
    (
        "6.12.107+deb13-amd64",
        "trixie",
        "archive",
        &[
            "linux-image-6.12.107+deb13-amd64-unsigned",
            "linux-headers-6.12.107+deb13-amd64",
        ],
    ),
    (
        "7.3.4+deb13-amd64",
        "trixie-backports",
        "archive",
        // linux-base-* carries usr/lib/modules/<rel>/config and System.map.
        &[
            "linux-binary-7.3.4+deb13-amd64",
            "linux-modules-7.3.4+deb13-amd64",
            "linux-base-7.3.4+deb13-amd64",
            "linux-headers-7.3.4+deb13-amd64",
        ],
    ),
    (
        // PREEMPT_RT: the monitor must stay correct with preemptible probes.
        "6.12.107+deb13-rt-amd64",
        "trixie",
        "archive",
        &[
            "linux-image-6.12.107+deb13-rt-amd64-unsigned",
            "linux-headers-6.12.107+deb13-rt-amd64",
        ],
    ),
    (
        // Debian 11: kmem events without a cache pointer, separate _node
        // events, BTF without per-CPU variables or __bpf_trace_* names.
        "5.10.0-46-amd64",
        "bullseye-security",
        "security",
        &[
            "linux-image-5.10.0-46-amd64-unsigned",
            "linux-headers-5.10.0-46-amd64",
        ],
    ),
];

/// Debian's signed images (Authenticode-signed vmlinuz, signed modules) for
/// the Secure Boot tests: `linux-image-<rel>` up to 6.18, the vmlinuz
/// package `linux-binary-<rel>` from 6.19 on.
const SECUREBOOT_PINS: &[(&str, &str, &str, &[&str])] = &[
    (
        "6.1.0-47-amd64",
        "bookworm",
        "archive",
        &["linux-image-6.1.0-47-amd64"],
    ),
    (
        "6.12.107+deb13-amd64",
        "trixie",
        "archive",
        &["linux-image-6.12.107+deb13-amd64"],
    ),
    (
        "7.3.4+deb13-amd64",
        "trixie-backports",
        "archive",
        &["linux-binary-7.3.4+deb13-amd64"],
    ),
];

fn secureboot() -> bool {
    std::env::args().skip(1).any(|a| a == "--secureboot")
}

fn all() -> bool {
    std::env::args().skip(1).any(|a| a == "--all")
}

/// Whether a Depends field names `name` (any alternative).
fn names(depends: &str, name: &str) -> bool {
    depends
        .split([',', '|'])
        .any(|d| d.split_whitespace().next() == Some(name))
}

/// Every signed amd64 image in every Debian suite: `linux-image-<rel>` that
/// carries a vmlinuz (not the 6.19+ meta package naming `linux-binary-<rel>`),
/// and `linux-binary-<rel>`. The newest version of a release wins; a
/// release in several suites is pinned from the first (suite order).
fn all_signed(mirrors: &Mirrors, http: &Http) -> Result<Vec<PinnedKernel>, String> {
    use kmlink_crawler::discover::{self, Distro, Origin, Role};
    let mut found: Vec<PinnedKernel> = Vec::new();
    for suite in discover::DEBIAN_SUITES {
        let kind = Origin::kind_of(suite);
        let mut idx = None;
        for base in mirrors.for_kind(kind).unwrap_or(&[]) {
            eprintln!("fetching the {suite} index from {base}");
            match index::fetch_packages(http, base, suite, "amd64") {
                Ok(i) => {
                    idx = Some(i);
                    break;
                }
                Err(e) => eprintln!("pin: {suite}: {e}"),
            }
        }
        let Some(idx) = idx else { continue };
        let mut best: HashMap<String, PackageEntry> = HashMap::new();
        for e in &idx {
            let Some((rel, role)) = discover::classify(Distro::Debian, &e.package) else {
                continue;
            };
            let signed = match role {
                Role::Image => !names(&e.depends, &format!("linux-binary-{rel}")),
                Role::Binary => true,
                _ => false,
            };
            if !signed || !rel.ends_with("amd64") {
                continue;
            }
            match best.entry(rel) {
                Entry::Occupied(mut o) => {
                    if version::compare(&e.version, &o.get().version).is_gt() {
                        o.insert(e.clone());
                    }
                }
                Entry::Vacant(v) => {
                    v.insert(e.clone());
                }
            }
        }
        for (rel, e) in best {
            if found.iter().any(|k| k.release == rel) {
                continue;
            }
            found.push(PinnedKernel {
                release: rel,
                suite: (*suite).into(),
                archive: kind.into(),
                packages: vec![e],
                fallbacks: Vec::new(),
            });
        }
    }
    found.sort_by(|a, b| discover::release_order(&a.release, &b.release));
    Ok(found)
}

fn mirrors() -> Result<Mirrors, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut mirror = None;
    let mut security = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mirror" => mirror = it.next().cloned(),
            "--security-mirror" => security = it.next().cloned(),
            "--secureboot" | "--all" => {}
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --mirror URL, --security-mirror URL)"
                ))
            }
        }
    }
    Ok(match mirror {
        Some(m) => Mirrors::explicit(&m, security.as_deref()),
        None => {
            let s = sources::host_sources(std::path::Path::new("/")).map_err(|e| e.to_string())?;
            sources::debian_mirrors(&s)
        }
    })
}

fn run() -> Result<String, String> {
    let mirrors = mirrors()?;
    let http = Http::new().map_err(|e| e.to_string())?;
    let mut indexes: HashMap<(&str, &str, &str), Vec<PackageEntry>> = HashMap::new();
    let mut kernels = Vec::new();
    if secureboot() && all() {
        let body =
            kernel_tree::to_toml(&all_signed(&mirrors, &http)?).map_err(|e| e.to_string())?;
        return Ok(format!(
            "# Every signed Debian amd64 kernel image in the archive, generated by\n# `cargo run -p kmlink-crawler --example pin -- --secureboot --all`.\n\n{body}"
        ));
    }
    let (pins, header) = if secureboot() {
        (
            SECUREBOOT_PINS,
            "# Debian's signed kernel images for the Secure Boot VM tests (tests/tests/secureboot.rs).\n# Generated by `cargo run -p kmlink-crawler --example pin -- --secureboot > tests/kernels-secureboot.toml`\n# from the live Packages indexes; edit the list in crawler/examples/pin.rs.\n",
        )
    } else {
        (
            PINS,
            "# Pinned test kernels (the default VM test suite uses them).\n# Generated by `cargo run -p kmlink-crawler --example pin > tests/kernels.toml`\n# from the live Packages indexes; edit the list in crawler/examples/pin.rs.\n",
        )
    };
    for &(release, suite, kind, names) in pins {
        let bases = mirrors.for_kind(kind).unwrap_or(&[]);
        let arch = kmlink_crawler::discover::release_arch(release)
            .ok_or_else(|| format!("{release}: no architecture in its flavour"))?
            .debian();
        let idx = match indexes.entry((suite, kind, arch)) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let mut last = Err(format!("no {kind} mirror"));
                for base in bases {
                    eprintln!("fetching the {suite} {arch} index from {base}");
                    last = index::fetch_packages(&http, base, suite, arch)
                        .map_err(|e: Error| e.to_string());
                    if last.is_ok() {
                        break;
                    }
                }
                v.insert(last?)
            }
        };
        let mut packages = Vec::new();
        for name in names {
            let e = idx
                .iter()
                .filter(|e| e.package == *name)
                .max_by(|a, b| version::compare(&a.version, &b.version))
                .ok_or_else(|| format!("{name} is not in the {suite} index"))?;
            packages.push(e.clone());
        }
        kernels.push(PinnedKernel {
            release: release.into(),
            suite: suite.into(),
            archive: kind.into(),
            packages,
            fallbacks: Vec::new(),
        });
    }
    let body = kernel_tree::to_toml(&kernels).map_err(|e| e.to_string())?;
    Ok(format!("{header}\n{body}"))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run() {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pin: {e}");
            ExitCode::FAILURE
        }
    }
}
