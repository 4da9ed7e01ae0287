//! What a core asks of a kernel, as names: the exports it may bind, and a
//! short fingerprint of everything it asks (exports, layout keys,
//! tracepoints). Records cut for a core ("slim" records, store
//! projections) are keyed by that fingerprint, so it must not change unless
//! what the core asks changes.
//!
//! This lives beside the manifest (not in the record store) so that a build
//! script can compute the embedded core's key once, at compile time.

use std::collections::BTreeSet;

use object::{Object, ObjectSymbol};
use sha2::{Digest, Sha256};

use crate::{Manifest, SlotKind};

/// Exports every core may bind whatever its manifest says.
pub const ALWAYS: &[&str] = &["module_layout", "__x86_return_thunk"];
/// Prefixes of exports every core may bind.
pub const ALWAYS_PREFIX: &[&str] = &["__x86_indirect_thunk_", "__x86_indirect_call_thunk_"];

/// The kernel exports a core may bind to: every import candidate, every
/// per-CPU candidate variable, every other undefined symbol of the object
/// (`__x86_return_thunk`…) and [`ALWAYS`].
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

/// Whether a core with `wanted` exports may bind the export `name`.
pub fn may_bind(wanted: impl Fn(&str) -> bool, name: &str) -> bool {
    wanted(name) || ALWAYS_PREFIX.iter().any(|p| name.starts_with(p))
}

/// The key records cut for a core carry: `core <fingerprint>`.
pub fn core_key(manifest: &Manifest, wanted: &BTreeSet<String>) -> String {
    format!("core {}", fingerprint_of(manifest, wanted))
}

/// A short fingerprint (16 hex digits) of what a core asks of a kernel.
pub fn fingerprint(manifest: &Manifest, core_object: &[u8]) -> String {
    fingerprint_of(manifest, &wanted_exports(manifest, core_object))
}

/// [`fingerprint`], with the core's [`wanted_exports`] at hand.
pub fn fingerprint_of(manifest: &Manifest, wanted: &BTreeSet<String>) -> String {
    let mut h = Sha256::new();
    for e in wanted {
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
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}
