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

use kmlink_core_module::needs::core_key;
use kmlink_core_module::Manifest;

use crate::record::KernelRecord;

/// Provenance key marking a slim record; its value names the core.
pub const SLIM_KEY: &str = "slim";

pub use kmlink_core_module::needs::{fingerprint, wanted_exports};

// The built-in core's key and wanted exports, computed by build.rs from the
// same embedded object (`BUILTIN_CORE_KEY`, `BUILTIN_WANTED`, sorted).
include!(concat!(env!("OUT_DIR"), "/builtin_core.rs"));

/// Whether `record` is slim.
pub fn is_slim(record: &KernelRecord) -> bool {
    record.provenance.contains_key(SLIM_KEY)
}

fn keep_export(wanted: &BTreeSet<String>, name: &str) -> bool {
    kmlink_core_module::needs::may_bind(|n| wanted.contains(n), name)
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
    r.provenance = BTreeMap::from([(SLIM_KEY.to_string(), core_key(manifest, &wanted))]);
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
    let wanted = wanted_exports(manifest, core_object);
    if *cut_for == core_key(manifest, &wanted) {
        return Ok(());
    }
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

/// The built-in core's manifest, read once per process (`None` if it is
/// unreadable: call [`Manifest::core`] for the error).
pub fn builtin_manifest() -> Option<&'static Manifest> {
    static MANIFEST: std::sync::OnceLock<Option<Manifest>> = std::sync::OnceLock::new();
    MANIFEST.get_or_init(|| Manifest::core().ok()).as_ref()
}

/// `core <fingerprint>` of the core built into this binary: the key of the
/// projections a store keeps for it. Computed at compile time (build.rs
/// reads the same embedded object; a test checks it against a run-time
/// computation), so `kmlink build` does not re-derive it on every run.
pub fn builtin_core_key() -> &'static str {
    BUILTIN_CORE_KEY
}

fn builtin_may_bind(name: &str) -> bool {
    kmlink_core_module::needs::may_bind(|n| BUILTIN_WANTED.binary_search(&n).is_ok(), name)
}

/// The projection of `record` for the core built into this binary, with
/// that core's key: the record with only the exports the core may bind
/// (everything else, provenance included, as it is), marked slim for that
/// core so it never passes for a full record. A slim record serves as its
/// own projection when it was cut for this core; one cut for another core
/// has none.
pub fn project_for_builtin_core(record: &KernelRecord) -> Option<(String, KernelRecord)> {
    let key = BUILTIN_CORE_KEY.to_string();
    if let Some(cut_for) = record.provenance.get(SLIM_KEY) {
        return (*cut_for == key).then(|| (key, record.clone()));
    }
    let mut r = record.clone();
    r.exports.retain(|name, _| builtin_may_bind(name));
    r.provenance.insert(SLIM_KEY.to_string(), key.clone());
    Some((key, r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmlink_core_module::CORE_OBJECT;

    #[test]
    fn compile_time_key_and_wanted_exports_match_a_run_time_derivation() {
        let manifest = Manifest::core().expect("the embedded manifest reads");
        let wanted = wanted_exports(&manifest, CORE_OBJECT);
        assert_eq!(
            builtin_core_key(),
            format!("core {}", fingerprint(&manifest, CORE_OBJECT))
        );
        assert_eq!(builtin_core_key(), core_key(&manifest, &wanted));
        let listed: Vec<&str> = wanted.iter().map(String::as_str).collect();
        assert_eq!(BUILTIN_WANTED, listed.as_slice());
        assert!(
            BUILTIN_WANTED.windows(2).all(|w| w[0] < w[1]),
            "sorted for binary search"
        );
        assert!(builtin_may_bind("__x86_indirect_thunk_rax"));
        assert!(BUILTIN_WANTED.iter().all(|n| builtin_may_bind(n)));
        assert!(builtin_may_bind("module_layout"));
        assert!(!builtin_may_bind("not_a_symbol_the_core_uses"));
    }
}
