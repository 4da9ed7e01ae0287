//! Computes, once at compile time, the key (`core <fingerprint>`) and the
//! wanted exports of the core object this crate's users embed: both are
//! pure functions of that object, and deriving them cost every `kmlink
//! build` about 0.2 ms. `slim.rs` includes the result; its tests check it
//! against a run-time derivation.

use std::path::PathBuf;

use kmlink_core_module::{needs, Manifest, CORE_OBJECT};

fn main() {
    let manifest = Manifest::core()
        .unwrap_or_else(|e| panic!("the embedded core's manifest is unreadable: {e}"));
    let wanted = needs::wanted_exports(&manifest, CORE_OBJECT);
    let key = needs::core_key(&manifest, &wanted);
    let names: String = wanted.iter().map(|n| format!("    {n:?},\n")).collect();
    let out = format!(
        "/// `core <fingerprint>` of the embedded core.\n\
         const BUILTIN_CORE_KEY: &str = {key:?};\n\
         /// The exports the embedded core may bind, sorted (see [`wanted_exports`]).\n\
         const BUILTIN_WANTED: &[&str] = &[\n{names}];\n"
    );
    let dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(dir.join("builtin_core.rs"), out).expect("writing builtin_core.rs");
}
