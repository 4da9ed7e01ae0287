//! The checks that stand between the facts and a written module.
//!
//! Every fact the module depends on has at least one source (the kernel
//! record) and, on a live host, more: a donor module of the kernel, the
//! running kernel's BTF, its build string, its `/boot/vmlinuz` export table.
//! [`verify`] compares every fact across every source it was given and
//! returns a [`Verdict`]: one [`Check`] per subject, each naming its sources
//! and their values, and for a failure the next step. `kmlink build`,
//! `kmlink load` and `kmlink doctor` all print the same verdict.

use std::collections::BTreeMap;
use std::fmt;

use kmlink_core_module::Manifest;
use kmlink_errors::{chain, Chain};
use kmlink_metadata_db::record::KernelRecord;

use crate::donor::Donor;
use crate::host::{HostIdentity, ImageExports, LiveBtf};
use crate::{LinkError, Linked};

/// Licences the kernel treats as GPL-compatible (`license_is_gpl_compatible`).
pub const GPL_COMPATIBLE: &[&str] = &[
    "GPL",
    "GPL v2",
    "GPL and additional rights",
    "Dual BSD/GPL",
    "Dual MIT/GPL",
    "Dual MPL/GPL",
];

/// One source of a fact and the value it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Where the value comes from (`record (vmlinux .BTF)`, `donor crc7.ko`,
    /// `live BTF /sys/kernel/btf/vmlinux`).
    pub name: String,
    /// The value it gives, as text.
    pub value: String,
}

impl Source {
    /// A source and its value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every source agrees.
    Pass,
    /// A source disagrees or a fact is missing: the module must not be written.
    Fail,
    /// Not applicable with the sources at hand (e.g. no live BTF on a
    /// cross-build): said, not silently passed.
    Skip,
}

/// One check: a subject, its sources, the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name: `identity`, `vermagic`, `imports`, …
    pub name: String,
    /// Whether it passed (or was skipped: a skipped check does not block).
    pub ok: bool,
    /// Pass, fail or skip.
    pub status: Status,
    /// What was compared, or what disagrees (naming the symbol or field).
    pub detail: String,
    /// Each source consulted and its value.
    pub sources: Vec<Source>,
    /// On failure: the next step.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &str, detail: impl Into<String>, sources: Vec<Source>) -> Self {
        Check {
            name: name.into(),
            ok: true,
            status: Status::Pass,
            detail: detail.into(),
            sources,
            fix: None,
        }
    }

    fn fail(
        name: &str,
        detail: impl Into<String>,
        sources: Vec<Source>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            ok: false,
            status: Status::Fail,
            detail: detail.into(),
            sources,
            fix: Some(fix.into()),
        }
    }

    fn skip(name: &str, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok: true,
            status: Status::Skip,
            detail: detail.into(),
            sources: Vec::new(),
            fix: None,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.status {
            Status::Pass => "✓",
            Status::Fail => "✗",
            Status::Skip => "-",
        };
        write!(f, "{mark} {:<12} {}", self.name, self.detail)?;
        if !self.sources.is_empty() {
            let s: Vec<String> = self
                .sources
                .iter()
                .map(|s| format!("{}: {}", s.name, s.value))
                .collect();
            write!(f, " [{}]", s.join("; "))?;
        }
        if let Some(fix) = &self.fix {
            write!(f, "\n  → {fix}")?;
        }
        Ok(())
    }
}

/// All checks for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Kernel release.
    pub release: String,
    /// The checks, in a fixed order.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Whether nothing failed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// The check of this name.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            writeln!(f, "{c}")?;
        }
        let failed = self.failures().count();
        if failed == 0 {
            write!(
                f,
                "verdict for {}: all {} checks agree",
                self.release,
                self.checks.len()
            )
        } else {
            write!(
                f,
                "verdict for {}: REFUSED, {failed} of {} checks failed",
                self.release,
                self.checks.len()
            )
        }
    }
}

/// The sources of truth about the target kernel at hand.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The kernel record (DB, packages, a JSON file, or the host itself).
    pub record: &'a KernelRecord,
    /// What the core asks.
    pub manifest: &'a Manifest,
    /// A module of the target kernel, if one was found or given.
    pub donor: Option<&'a Donor>,
    /// The target kernel's BTF (`--btf`, or the running kernel's).
    pub btf: Option<&'a LiveBtf>,
    /// The running kernel, when it is the target.
    pub host: Option<&'a HostIdentity>,
    /// The target kernel's image export table: the running kernel's image
    /// when it is the target, or the image given as `--btf` on a
    /// cross-build ([`crate::host::read_btf_source`]).
    pub image: Option<&'a ImageExports>,
}

fn record_source(record: &KernelRecord, key: &str) -> String {
    match record.provenance.get(key) {
        Some(p) => format!("record ({})", short(p)),
        None => "record".to_string(),
    }
}

/// The last two path components of any path-like words in `s`.
fn short(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            if w.matches('/').count() > 2 {
                let parts: Vec<&str> = w.rsplitn(3, '/').collect();
                format!("…/{}/{}", parts[1], parts[0])
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn donor_source(d: &Donor) -> String {
    let name = d
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("donor {name}")
}

/// Runs every check on `facts` and the in-memory link result.
pub fn verify(facts: &Facts<'_>, link: &Result<Linked, LinkError>) -> Verdict {
    let release = facts.record.identity.release.clone();
    let mut checks = vec![
        identity(facts),
        vermagic(facts),
        conventions(facts),
        imports(facts, link),
        crcs(facts, link),
        licence(facts, link),
        namespaces(facts, link),
        this_module(facts),
        layouts(facts),
    ];
    // A record of another architecture than the core: no module.
    if let Err(e @ LinkError::ArchMismatch { record_arch, .. }) = link {
        if let Some(c) = checks.iter_mut().find(|c| c.name == "identity") {
            *c = Check::fail(
                "identity",
                e.to_string(),
                vec![Source::new(
                    "record",
                    format!("{release} arch {record_arch}"),
                )],
                "link with the core object and the record of the same architecture".to_string(),
            );
        }
    }
    // A fact no kernel can have fails its check whatever else is at hand:
    // without a donor or BTF the other sources cannot catch it.
    if let Err(e) = facts.record.validate() {
        if let Some(c) = checks.iter_mut().find(|c| c.name == e.group) {
            *c = Check::fail(
                e.group,
                e.reason(),
                vec![Source::new(record_source(facts.record, e.group), e.fact.clone())],
                format!(
                    "do not load this; the record for {release} is damaged or forged: re-extract it from the kernel's packages"
                ),
            );
        }
    }
    Verdict { release, checks }
}

fn identity(f: &Facts<'_>) -> Check {
    const NAME: &str = "identity";
    let id = &f.record.identity;
    let mut sources = vec![Source::new(
        "record",
        format!(
            "{} {:?} btf {}",
            id.release,
            id.build_string,
            abbrev(&id.btf_sha256)
        ),
    )];
    let mut problems = Vec::new();
    if let Some(h) = f.host {
        sources.push(Source::new(
            "running kernel (/proc/sys/kernel/{osrelease,version})",
            format!("{} {:?}", h.release, h.build_string),
        ));
        if h.release != id.release {
            problems.push(format!(
                "release: record {}, running kernel {}",
                id.release, h.release
            ));
        }
        if h.build_string != id.build_string {
            problems.push(format!(
                "build string: record {:?}, running kernel {:?}",
                id.build_string, h.build_string
            ));
        }
    }
    if let Some(b) = f.btf {
        sources.push(Source::new(
            format!("BTF {}", b.path.display()),
            abbrev(&b.sha256),
        ));
        if !id.btf_sha256.is_empty() && b.sha256 != id.btf_sha256 {
            problems.push(format!(
                "BTF sha256: record {}, {} {}",
                abbrev(&id.btf_sha256),
                b.path.display(),
                abbrev(&b.sha256)
            ));
        }
    }
    if let Some(img) = f.image {
        sources.push(Source::new(
            format!("image {}", img.path.display()),
            format!("{:?} btf {}", img.build_string, abbrev(&img.btf_sha256)),
        ));
        if img.release != id.release {
            problems.push(format!(
                "release: record {}, {} {}",
                id.release,
                img.path.display(),
                img.release
            ));
        }
        if let Some(h) = f.host {
            if img.build_string != h.build_string {
                problems.push(format!(
                    "{} is build {:?}, the running kernel is {:?}",
                    img.path.display(),
                    img.build_string,
                    h.build_string
                ));
            }
        }
        if !img.btf_sha256.is_empty() && img.btf_sha256 != id.btf_sha256 {
            problems.push(format!(
                "BTF sha256: record {}, {} {}",
                abbrev(&id.btf_sha256),
                img.path.display(),
                abbrev(&img.btf_sha256)
            ));
        }
    }
    if f.host.is_none() && f.btf.is_none() && f.image.is_none() {
        return Check::skip(
            NAME,
            format!(
                "cross-build for {}: no running kernel or BTF to compare the record with",
                id.release
            ),
        );
    }
    if problems.is_empty() {
        Check::pass(
            NAME,
            "the record describes this exact kernel build",
            sources,
        )
    } else {
        Check::fail(
            NAME,
            format!("the record is for another build: {}", problems.join("; ")),
            sources,
            format!(
                "the record for {} was made from a different build of that release; \
                 refresh it (kmlink crawler refresh --release {}) or build from the host's own facts \
                 (kmlink build --kernel {} with no --record/--db)",
                id.release, id.release, id.release
            ),
        )
    }
}

fn abbrev(hash: &str) -> String {
    if hash.is_empty() {
        "(none)".into()
    } else {
        hash.chars().take(16).collect()
    }
}

fn vermagic(f: &Facts<'_>) -> Check {
    const NAME: &str = "vermagic";
    let r = f.record;
    let release = &r.identity.release;
    let vm = &r.vermagic;
    let mut sources = vec![Source::new(record_source(r, "vermagic"), format!("{vm:?}"))];
    let fix_record = format!(
        "re-extract the record for {release} (kmlink build --kernel {release} --from-packages)"
    );
    if !vm.starts_with(&format!("{release} ")) {
        return Check::fail(
            NAME,
            format!("the record's vermagic {vm:?} does not start with release {release}"),
            sources,
            fix_record,
        );
    }
    let has_mv = vm.split_whitespace().any(|w| w == "modversions");
    if has_mv != r.conventions.modversions {
        return Check::fail(
            NAME,
            format!(
                "vermagic {} \"modversions\" but the record says symbol versions are {}",
                if has_mv { "has" } else { "lacks" },
                if r.conventions.modversions {
                    "on"
                } else {
                    "off"
                }
            ),
            sources,
            fix_record,
        );
    }
    let Some(d) = f.donor else {
        return Check::pass(
            NAME,
            format!(
                "{vm:?} (record only: no donor module to compare with{})",
                if has_mv {
                    ""
                } else {
                    "; unversioned kernel: the whole string must match"
                }
            ),
            sources,
        );
    };
    let dv = d.facts.vermagic.clone().unwrap_or_default();
    sources.push(Source::new(donor_source(d), format!("{dv:?}")));
    if dv == *vm {
        return Check::pass(
            NAME,
            format!(
                "byte-identical in record and donor{}",
                if has_mv {
                    ""
                } else {
                    " (unversioned kernel: the kernel compares the whole string)"
                }
            ),
            sources,
        );
    }
    let donor_release = dv.split(' ').next().unwrap_or_default();
    if donor_release != release {
        return Check::fail(
            NAME,
            format!(
                "donor {} is from another kernel: its vermagic is {dv:?}, the target's is {vm:?}",
                d.path.display()
            ),
            sources,
            format!(
                "use a module of {release} as donor (under /lib/modules/{release} or /usr/lib/modules/{release}), or omit --donor"
            ),
        );
    }
    Check::fail(
        NAME,
        format!("record and donor disagree: record {vm:?}, donor {dv:?}"),
        sources,
        format!("the record's vermagic is stale or wrong; {fix_record}"),
    )
}

fn conventions(f: &Facts<'_>) -> Check {
    const NAME: &str = "conventions";
    let c = &f.record.conventions;
    let summary = format!(
        "modversions={} return_sites={} retpoline={}",
        c.modversions, c.return_sites, c.retpoline
    );
    let mut sources = vec![Source::new(
        record_source(f.record, "conventions"),
        &summary,
    )];
    let Some(d) = f.donor else {
        return Check::pass(NAME, format!("{summary} (record only)"), sources);
    };
    let donor_versions = d.facts.sections.iter().any(|s| s == "__versions");
    let donor_retpoline = d.facts.modinfo_get("retpoline") == Some("Y");
    let donor_returns = d.facts.sections.iter().any(|s| s == ".return_sites");
    sources.push(Source::new(
        donor_source(d),
        format!(
            "__versions {donor_versions}, retpoline=Y {donor_retpoline}, .return_sites {donor_returns}"
        ),
    ));
    let mut problems = Vec::new();
    if donor_versions != c.modversions {
        problems.push(format!(
            "symbol versions: record {}, donor {} __versions",
            c.modversions,
            if donor_versions { "has" } else { "has no" }
        ));
    }
    if donor_retpoline && !c.retpoline {
        problems.push(
            "donor says retpoline=Y, the record does not (the kernel would warn \"not compiled with retpoline\")"
                .into(),
        );
    }
    if donor_returns && !c.return_sites {
        problems.push(
            "donor carries .return_sites, the record says the kernel has no return thunks".into(),
        );
    }
    if problems.is_empty() {
        Check::pass(NAME, format!("{summary}: record and donor agree"), sources)
    } else {
        let release = &f.record.identity.release;
        Check::fail(
            NAME,
            problems.join("; "),
            sources,
            format!("re-extract the record for {release} (kmlink build --kernel {release} --from-packages)"),
        )
    }
}

fn link_failed(name: &str, e: &LinkError, release: &str) -> Check {
    let fix = match e {
        LinkError::MissingExport { .. } | LinkError::UnknownSymbol { .. } => format!(
            "this core cannot run on {release} as is: the kernel does not export what it needs"
        ),
        LinkError::MissingCrc { .. } => format!(
            "the record lacks CRCs: re-extract it from the kernel image (kmlink build --kernel {release} --from-packages)"
        ),
        _ => format!("re-extract the record for {release}"),
    };
    Check::fail(name, chain(e), Vec::new(), fix)
}

fn imports(f: &Facts<'_>, link: &Result<Linked, LinkError>) -> Check {
    const NAME: &str = "imports";
    let release = &f.record.identity.release;
    let linked = match link {
        Ok(l) => l,
        // Said once, by the check its fact belongs to.
        Err(LinkError::Invalid(e)) => {
            return Check::skip(
                NAME,
                format!("nothing linked: the record is impossible (see {})", e.group),
            )
        }
        Err(LinkError::ArchMismatch { .. }) => {
            return Check::skip(NAME, "nothing linked: see identity")
        }
        Err(e) => return link_failed(NAME, e, release),
    };
    let r = &linked.report;
    let absent: Vec<&str> = r
        .bindings
        .iter()
        .filter(|b| !b.present)
        .map(|b| b.kernel_name.as_str())
        .collect();
    let versioned = f.record.conventions.modversions;
    let sources = vec![Source::new(
        record_source(f.record, "exports"),
        match f.record.provenance.get(kmlink_metadata_db::slim::SLIM_KEY) {
            Some(core) => format!("{} exports (those {core} may bind)", f.record.exports.len()),
            None => format!("{} exports", f.record.exports.len()),
        },
    )];
    if let Some(img) = f.image {
        let problems = imports_against_image(f, linked, img);
        let mut sources = sources;
        sources.push(Source::new(
            format!("image {}", img.path.display()),
            format!("{} exports", img.exports.len()),
        ));
        if !problems.is_empty() {
            return Check::fail(
                NAME,
                format!(
                    "the record's exports are not the kernel's: {}",
                    problems.join("; ")
                ),
                sources,
                format!(
                    "the record's export list is not {release}'s; re-extract the record for {release} or build from the host's facts"
                ),
            );
        }
        let mut detail = format!(
            "{} imports bound, each the kernel image's own choice and namespace",
            r.bindings.len() - absent.len()
        );
        if !absent.is_empty() {
            detail.push_str(&format!("; weak, absent here: {}", absent.join(", ")));
        }
        return Check::pass(NAME, detail, sources);
    }
    let mut detail = format!(
        "{} imports bound, every one exported{}",
        r.bindings.len() - absent.len(),
        if versioned {
            format!(" with a CRC ({} __versions entries)", r.versions.len())
        } else {
            " (unversioned kernel: no CRCs)".to_string()
        }
    );
    if !absent.is_empty() {
        detail.push_str(&format!("; weak, absent here: {}", absent.join(", ")));
    }
    Check::pass(NAME, detail, sources)
}

/// Each import bound as the kernel image binds it: the first candidate the
/// image exports (an export the record says a module owns is taken on the
/// record's word: the image cannot show it), present or absent alike, and
/// in the image's symbol namespace (the module's `import_ns=` follows it).
fn imports_against_image(f: &Facts<'_>, linked: &Linked, img: &ImageExports) -> Vec<String> {
    let exported = |name: &str| {
        img.exports.contains_key(name)
            || f.record
                .exports
                .get(name)
                .is_some_and(|e| e.owner != "vmlinux")
    };
    let mut problems = Vec::new();
    for b in &linked.report.bindings {
        let Some(import) = f.manifest.imports.iter().find(|i| i.symbol == b.symbol) else {
            continue;
        };
        let theirs = import.candidates.iter().find(|c| exported(c));
        match (b.present, theirs) {
            (true, Some(c)) if *c == b.kernel_name => {}
            (false, None) => {}
            (true, Some(c)) => problems.push(format!(
                "{}: bound to {}, the image exports {c} first",
                b.symbol, b.kernel_name
            )),
            (true, None) => problems.push(format!(
                "{}: bound to {}, which {} does not export",
                b.symbol,
                b.kernel_name,
                img.path.display()
            )),
            (false, Some(c)) => problems.push(format!(
                "{}: the record has none of {}, the image exports {c}",
                b.symbol,
                import.candidates.join(" or ")
            )),
        }
    }
    // Every symbol the module references is imported in the image's
    // namespace (the module's `import_ns=` lines follow the record's).
    for name in &linked.report.undefined {
        let Some(e) = img.exports.get(name) else {
            continue;
        };
        let ours = f
            .record
            .exports
            .get(name)
            .and_then(|e| e.namespace.as_deref());
        if ours != e.namespace.as_deref() {
            problems.push(format!(
                "{name}: namespace: record {ours:?}, image {:?}",
                e.namespace
            ));
        }
    }
    // A versioned kernel checks its own struct module version first.
    if f.record.conventions.modversions
        && img.exports.contains_key("module_layout")
        && !f.record.exports.contains_key("module_layout")
    {
        problems.push(format!(
            "module_layout: {} exports it (its CRC is struct module's version), the record does not",
            img.path.display()
        ));
    }
    // Per-CPU slots choose the first candidate variable that is exported
    // and per-CPU (the latter is compared with BTF under layouts).
    for slot in &f.manifest.slots {
        let kmlink_core_module::SlotKind::Percpu { candidates } = &slot.kind else {
            continue;
        };
        let ours = match linked.report.slots.get(&slot.symbol) {
            Some(crate::SlotValue::Symbol { name, .. }) => Some(name.as_str()),
            _ => None,
        };
        let theirs = candidates
            .iter()
            .find(|c| {
                exported(&c.var)
                    && f.record.layouts.contains_key(&format!("percpu:{}", c.var))
                    && c.offset_key()
                        .is_none_or(|k| f.record.layouts.contains_key(&k))
            })
            .map(|c| c.var.as_str());
        if ours != theirs {
            problems.push(format!(
                "{}: per-CPU variable {}, the image's choice {}",
                slot.symbol,
                ours.unwrap_or("none"),
                theirs.unwrap_or("none")
            ));
        }
    }
    problems
}

fn crcs(f: &Facts<'_>, link: &Result<Linked, LinkError>) -> Check {
    const NAME: &str = "crcs";
    let Ok(linked) = link else {
        return Check::skip(NAME, "nothing linked (see imports)");
    };
    let ours = &linked.report.versions;
    if !f.record.conventions.modversions {
        return Check::skip(
            NAME,
            "unversioned kernel: the loader checks no CRCs (the whole vermagic instead)",
        );
    }
    let mut sources = vec![Source::new(
        record_source(f.record, "exports"),
        format!("{} CRCs written", ours.len()),
    )];
    let mut problems = Vec::new();
    let mut compared = Vec::new();
    if let Some(d) = f.donor {
        let theirs: BTreeMap<&str, u32> = d
            .facts
            .versions
            .iter()
            .chain(d.facts.ext_versions.iter())
            .map(|(n, c)| (n.as_str(), *c))
            .collect();
        let mut n = 0;
        for (name, crc) in ours {
            if let Some(&c) = theirs.get(name.as_str()) {
                n += 1;
                if c != *crc {
                    problems.push(format!(
                        "{name}: record {crc:#010x}, {} {c:#010x}",
                        donor_source(d)
                    ));
                }
            }
        }
        // Every stock module of a kernel that exports it versions
        // module_layout (struct module's own version) first.
        if theirs.contains_key("module_layout") && !ours.iter().any(|(n, _)| n == "module_layout") {
            problems.push(format!(
                "module_layout: {} versions it (struct module's version), the record has no module_layout",
                donor_source(d)
            ));
        }
        sources.push(Source::new(
            donor_source(d),
            format!("{n} of them in its __versions"),
        ));
        compared.push(format!("{n} against the donor"));
    }
    if let Some(img) = f.image {
        let mut n = 0;
        for (name, crc) in ours {
            match img.exports.get(name) {
                Some(e) => {
                    n += 1;
                    if e.crc != Some(*crc) {
                        problems.push(format!(
                            "{name}: record {crc:#010x}, {} {}",
                            img.path.display(),
                            e.crc.map(|c| format!("{c:#010x}")).unwrap_or("none".into())
                        ));
                    }
                }
                None => problems.push(format!("{name}: {} does not export it", img.path.display())),
            }
        }
        sources.push(Source::new(
            format!("image {}", img.path.display()),
            format!("{n} compared"),
        ));
        compared.push(format!("{n} against the kernel image"));
    }
    if compared.is_empty() {
        return Check::pass(
            NAME,
            format!(
                "{} CRCs from the record (no donor or image to compare with)",
                ours.len()
            ),
            sources,
        );
    }
    if problems.is_empty() {
        Check::pass(
            NAME,
            format!("{} CRCs; equal: {}", ours.len(), compared.join(", ")),
            sources,
        )
    } else {
        let release = &f.record.identity.release;
        Check::fail(
            NAME,
            format!(
                "symbol versions disagree (the kernel would say \"disagrees about version of symbol\"): {}",
                problems.join("; ")
            ),
            sources,
            format!("the record's CRCs are not this build's; re-extract the record for {release} or build from the host's facts"),
        )
    }
}

fn modinfo_values<'l>(linked: &'l Linked, key: &str) -> Vec<&'l str> {
    linked
        .report
        .modinfo
        .iter()
        .filter_map(|m| m.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .collect()
}

fn licence(f: &Facts<'_>, link: &Result<Linked, LinkError>) -> Check {
    const NAME: &str = "licence";
    let Ok(linked) = link else {
        return Check::skip(NAME, "nothing linked (see imports)");
    };
    let licence = modinfo_values(linked, "license")
        .first()
        .copied()
        .unwrap_or("")
        .to_string();
    let gpl_only: Vec<&str> = linked
        .report
        .bindings
        .iter()
        .filter(|b| b.present)
        .filter(|b| f.record.exports.get(&b.kernel_name).is_some_and(|e| e.gpl))
        .map(|b| b.kernel_name.as_str())
        .collect();
    let sources = vec![
        Source::new("module .modinfo", format!("license={licence}")),
        Source::new(
            record_source(f.record, "exports"),
            format!("{} GPL-only imports", gpl_only.len()),
        ),
    ];
    if gpl_only.is_empty() || GPL_COMPATIBLE.contains(&licence.as_str()) {
        Check::pass(
            NAME,
            format!(
                "licence {licence:?} may use the {} GPL-only exports it imports",
                gpl_only.len()
            ),
            sources,
        )
    } else {
        Check::fail(
            NAME,
            format!(
                "licence {licence:?} is not GPL-compatible, yet imports GPL-only {}",
                gpl_only.join(", ")
            ),
            sources,
            "the kernel would refuse the GPL-only symbols: the module's licence must be GPL-compatible",
        )
    }
}

fn namespaces(f: &Facts<'_>, link: &Result<Linked, LinkError>) -> Check {
    const NAME: &str = "namespaces";
    let Ok(linked) = link else {
        return Check::skip(NAME, "nothing linked (see imports)");
    };
    let imported = modinfo_values(linked, "import_ns");
    let mut needed = Vec::new();
    let mut missing = Vec::new();
    for b in linked.report.bindings.iter().filter(|b| b.present) {
        if let Some(ns) = f
            .record
            .exports
            .get(&b.kernel_name)
            .and_then(|e| e.namespace.as_deref())
        {
            needed.push(format!("{} ({ns})", b.kernel_name));
            if !imported.contains(&ns) {
                missing.push(format!("{} needs {ns}", b.kernel_name));
            }
        }
    }
    let sources = vec![Source::new(
        "module .modinfo",
        if imported.is_empty() {
            "no import_ns".to_string()
        } else {
            format!("import_ns={}", imported.join(","))
        },
    )];
    if !missing.is_empty() {
        return Check::fail(
            NAME,
            format!("namespaces not imported: {}", missing.join("; ")),
            sources,
            "a linker bug: report it with the record",
        );
    }
    if needed.is_empty() {
        Check::pass(NAME, "no import is in a symbol namespace", sources)
    } else {
        Check::pass(NAME, format!("imported for {}", needed.join(", ")), sources)
    }
}

fn this_module(f: &Facts<'_>) -> Check {
    const NAME: &str = "this_module";
    let t = f.record.this_module;
    let release = &f.record.identity.release;
    let fmt_layout = |size: u64, name: Option<u64>, init: Option<u64>, exit: Option<u64>| {
        let o = |v: Option<u64>| v.map(|v| format!("{v:#x}")).unwrap_or("?".into());
        format!(
            "size {size:#x} ({size}), name {}, init {}, exit {}",
            o(name),
            o(init),
            o(exit)
        )
    };
    let mut sources = vec![Source::new(
        record_source(f.record, "this_module"),
        fmt_layout(
            t.size,
            Some(t.name_offset),
            Some(t.init_offset),
            Some(t.exit_offset),
        ),
    )];
    let mut problems = Vec::new();
    if let Err(e) = crate::check_this_module(f.record) {
        problems.push(chain(&e));
    }
    let mut compared = Vec::new();
    if let Some(d) = f.donor {
        let df = &d.facts;
        let reloc = |func: &str| -> Option<u64> {
            df.this_module_relocs
                .iter()
                .find(|(_, s)| s == func)
                .map(|(o, _)| *o)
        };
        let (init, exit) = (reloc("init_module"), reloc("cleanup_module"));
        sources.push(Source::new(
            donor_source(d),
            match df.this_module_size {
                Some(size) => fmt_layout(size, df.this_module_name_offset, init, exit),
                None => "no .gnu.linkonce.this_module".into(),
            },
        ));
        let src = donor_source(d);
        let c = kmlink_metadata_db::this_module::compare(&t, df);
        problems.extend(c.mismatches.iter().map(|m| m.describe("record", &src)));
        compared.push("donor");
    }
    if let Some(b) = f.btf {
        use kmlink_metadata_db::this_module::{btf_facts, compare_btf};
        let bf = btf_facts(&b.btf);
        let bsrc = format!("BTF {}", b.path.display());
        if let Some(size) = bf.size {
            sources.push(Source::new(
                &bsrc,
                fmt_layout(size, bf.name_offset, bf.init_offset, bf.exit_offset),
            ));
            compared.push("BTF");
        }
        problems.extend(
            compare_btf(&t, &bf)
                .iter()
                .map(|m| m.describe("record", &bsrc)),
        );
    }
    if !problems.is_empty() {
        return Check::fail(
            NAME,
            format!(
                "struct module layout disagrees: {} (6.1 would load a wrong layout silently and corrupt memory)",
                problems.join("; ")
            ),
            sources,
            format!(
                "do not load this; the record's this_module layout is not {release}'s: re-extract it, or build from the host's facts"
            ),
        );
    }
    let detail = if compared.is_empty() {
        "record only (no donor or BTF to compare with)".to_string()
    } else {
        format!("record agrees with {}", compared.join(" and "))
    };
    Check::pass(NAME, detail, sources)
}

fn layouts(f: &Facts<'_>) -> Check {
    const NAME: &str = "layouts";
    let Some(b) = f.btf else {
        return Check::skip(
            NAME,
            format!(
                "{} layout facts from the record only (no BTF of the target at hand; pass --btf to compare)",
                f.record.layouts.len()
            ),
        );
    };
    let bsrc = format!("BTF {}", b.path.display());
    let live = match kmlink_metadata_db::extract::btf_layouts(&b.btf, f.manifest) {
        Ok(l) => l,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("reading {bsrc}: {}", Chain(&e)),
                Vec::new(),
                "the BTF is unreadable; check the file",
            )
        }
    };
    let mut problems = Vec::new();
    let mut n = 0;
    // BTF without a `.data..percpu` DATASEC (Debian 5.10) cannot say which
    // variables are per-CPU; the record took those from the image.
    let no_percpu = !b.btf.has_percpu_datasec();
    for key in f.manifest.layout_keys() {
        if no_percpu && key.starts_with("percpu:") {
            continue;
        }
        let (r, l) = (f.record.layouts.get(&key), live.get(&key));
        n += 1;
        if r != l {
            let v = |x: Option<&u64>| x.map(|v| format!("{v:#x}")).unwrap_or("absent".into());
            problems.push(format!("{key}: record {}, {bsrc} {}", v(r), v(l)));
        }
    }
    let mut tps = 0;
    for tp in f.manifest.tracepoints() {
        let live = match b.btf.tracepoint_params(&tp) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("tracepoint {tp}: {bsrc}: {}", Chain(&e)));
                continue;
            }
        };
        let live: Option<Vec<(String, u64)>> =
            live.map(|ps| ps.into_iter().map(|p| (p.name, p.size)).collect());
        let rec: Option<Vec<(String, u64)>> = f
            .record
            .tracepoints
            .get(&tp)
            .map(|ps| ps.iter().map(|p| (p.name.clone(), p.size)).collect());
        tps += 1;
        if live != rec {
            problems.push(format!(
                "tracepoint {tp} prototype: record {rec:?}, {bsrc} {live:?}"
            ));
        }
    }
    let sources = vec![
        Source::new(
            record_source(f.record, "layouts"),
            format!("{} facts", f.record.layouts.len()),
        ),
        Source::new(&bsrc, format!("{} facts", live.len())),
    ];
    if problems.is_empty() {
        Check::pass(
            NAME,
            format!("{n} layout facts and {tps} tracepoint prototypes equal in record and BTF"),
            sources,
        )
    } else {
        let release = &f.record.identity.release;
        Check::fail(
            NAME,
            format!("layouts disagree: {}", problems.join("; ")),
            sources,
            format!(
                "the record's layouts are not this kernel's; re-extract the record for {release}, or build from the host's facts"
            ),
        )
    }
}
