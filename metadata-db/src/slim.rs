//! Slim records: only what one core (its manifest and object) needs from a
//! kernel, for the embedded default bundle and `kmlink bundle export --slim`.
//!
//! A slim record keeps the identity, vermagic, conventions, config, `struct
//! module` layout, the layouts and tracepoints the manifest asks for, and of
//! the exports only those the core can bind: every import candidate, every
//! per-CPU candidate variable, every other undefined symbol of the object
//! (`__x86_return_thunk`…), `module_layout` and the retpoline thunks. It is
//! marked with [`SLIM_KEY`] in its provenance, naming the core it was cut
//! for; [`covers`] says whether it still serves another core.

use std::collections::{BTreeMap, BTreeSet};

use kmlink_core_module::{Manifest, SlotKind};
use object::{Object, ObjectSymbol};
use sha2::{Digest, Sha256};

use crate::record::KernelRecord;

/// Provenance key marking a slim record; its value names the core.
pub const SLIM_KEY: &str = "slim";

/// Exports kept in every slim record whatever the core references.
const ALWAYS: &[&str] = &["module_layout", "__x86_return_thunk"];
/// Prefixes of exports kept in every slim record.
const ALWAYS_PREFIX: &[&str] = &["__x86_indirect_thunk_", "__x86_indirect_call_thunk_"];

/// The kernel exports a core may bind to.
pub fn wanted_exports(manifest: &Manifest, core_object: &[u8]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = ALWAYS.iter().map(|s| s.to_string()).collect();
    let abstract_syms: BTreeSet<&str> =
        manifest.imports.iter().map(|i| i.symbol.as_str()).collect();
    for import in &manifest.imports {
        out.extend(import.candidates.iter().cloned());
    }
    for slot in &manifest.slots {
        if let SlotKind::Percpu { candidates } = &slot.kind {
            out.extend(candidates.iter().map(|c| c.var.clone()));
        }
    }
    if let Ok(file) = object::File::parse(core_object) {
        for sym in file.symbols() {
            if sym.is_undefined() {
                if let Ok(name) = sym.name() {
                    if !name.is_empty() && !abstract_syms.contains(name) {
                        out.insert(name.to_string());
                    }
                }
            }
        }
    }
    out
}

/// A short fingerprint of what a core asks of a kernel (exports, layout
/// keys, tracepoints).
pub fn fingerprint(manifest: &Manifest, core_object: &[u8]) -> String {
    let mut h = Sha256::new();
    for e in wanted_exports(manifest, core_object) {
        h.update(b"e:");
        h.update(e.as_bytes());
        h.update(b"\n");
    }
    for k in manifest.layout_keys() {
        h.update(b"l:");
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    for t in manifest.tracepoints() {
        h.update(b"t:");
        h.update(t.as_bytes());
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..8])
}

/// Whether `record` is slim.
pub fn is_slim(record: &KernelRecord) -> bool {
    record.provenance.contains_key(SLIM_KEY)
}

fn keep_export(wanted: &BTreeSet<String>, name: &str) -> bool {
    wanted.contains(name) || ALWAYS_PREFIX.iter().any(|p| name.starts_with(p))
}

/// The slim form of `record` for this core.
pub fn slim(record: &KernelRecord, manifest: &Manifest, core_object: &[u8]) -> KernelRecord {
    let wanted = wanted_exports(manifest, core_object);
    let layout_keys: BTreeSet<String> = manifest.layout_keys().into_iter().collect();
    let tracepoints: BTreeSet<String> = manifest.tracepoints().into_iter().collect();
    let mut r = record.clone();
    r.exports.retain(|name, _| keep_export(&wanted, name));
    r.layouts.retain(|k, _| layout_keys.contains(k));
    r.tracepoints.retain(|k, _| tracepoints.contains(k));
    r.provenance = BTreeMap::from([(
        SLIM_KEY.to_string(),
        format!("core {}", fingerprint(manifest, core_object)),
    )]);
    r
}

/// Whether a record has every fact this core could ask for: a full record
/// always does; a slim one when it was cut for this core, or when every
/// export, layout key and tracepoint the core names is present in it (an
/// absent one may only have been cut away).
pub fn covers(
    record: &KernelRecord,
    manifest: &Manifest,
    core_object: &[u8],
) -> Result<(), String> {
    let Some(cut_for) = record.provenance.get(SLIM_KEY) else {
        return Ok(());
    };
    if *cut_for == format!("core {}", fingerprint(manifest, core_object)) {
        return Ok(());
    }
    let wanted = wanted_exports(manifest, core_object);
    let missing: Vec<String> = wanted
        .iter()
        .filter(|e| !record.exports.contains_key(*e))
        .cloned()
        .chain(
            manifest
                .layout_keys()
                .into_iter()
                .filter(|k| !record.layouts.contains_key(k)),
        )
        .chain(
            manifest
                .tracepoints()
                .into_iter()
                .filter(|t| !record.tracepoints.contains_key(t)),
        )
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the slim record of {} was cut for {cut_for}, and lacks what this core may need: {}",
            record.identity.release,
            missing.join(", ")
        ))
    }
}

/// The built-in core's manifest, its wanted exports and its key
/// (`core <fingerprint>`), computed once per process; `None` if its
/// manifest is unreadable (a build problem, reported where it is used).
fn builtin_core() -> Option<&'static (Manifest, BTreeSet<String>, String)> {
    static CORE: std::sync::OnceLock<Option<(Manifest, BTreeSet<String>, String)>> =
        std::sync::OnceLock::new();
    CORE.get_or_init(|| {
        let manifest = Manifest::core().ok()?;
        let object = kmlink_core_module::CORE_OBJECT;
        let wanted = wanted_exports(&manifest, object);
        let key = format!("core {}", fingerprint(&manifest, object));
        Some((manifest, wanted, key))
    })
    .as_ref()
}

/// The built-in core's manifest, read once per process (`None` if it is
/// unreadable: call [`Manifest::core`] for the error).
pub fn builtin_manifest() -> Option<&'static Manifest> {
    builtin_core().map(|(manifest, _, _)| manifest)
}

/// `core <fingerprint>` of the core built into this binary: the key of the
/// projections a store keeps for it.
pub fn builtin_core_key() -> Option<&'static str> {
    builtin_core().map(|(_, _, key)| key.as_str())
}

/// The projection of `record` for the core built into this binary, with
/// that core's key: the record with only the exports the core may bind
/// (everything else, provenance included, as it is), marked slim for that
/// core so it never passes for a full record. A slim record serves as its
/// own projection when it was cut for this core; one cut for another core
/// has none.
pub fn project_for_builtin_core(record: &KernelRecord) -> Option<(String, KernelRecord)> {
    let (_, wanted, key) = builtin_core()?;
    if let Some(cut_for) = record.provenance.get(SLIM_KEY) {
        return (cut_for == key).then(|| (key.clone(), record.clone()));
    }
    let mut r = record.clone();
    r.exports.retain(|name, _| keep_export(wanted, name));
    r.provenance.insert(SLIM_KEY.to_string(), key.clone());
    Some((key.clone(), r))
}
