//! Resolution: everything the core's manifest asks, answered from one kernel
//! record, before a single byte is written. Any question without a proven
//! answer is a [`LinkError`] naming the symbol or field.

use std::collections::BTreeMap;

use kmlink_core_module::{fnarg_key, fnarg_size_key, function_key, Manifest, SlotKind};
use kmlink_metadata_db::record::KernelRecord;

use crate::LinkError;

/// How one slot of the layout table is filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotValue {
    /// A constant written into the slot.
    Const(u64),
    /// A relocation `R_X86_64_64` against the kernel symbol, plus addend.
    Symbol {
        /// Exported kernel symbol.
        name: String,
        /// Added to its address.
        addend: i64,
    },
}

/// One bound import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Symbol in the core object.
    pub symbol: String,
    /// Kernel symbol it is bound to (for an absent weak import: the first
    /// candidate, which the loader then resolves to 0).
    pub kernel_name: String,
    /// Whether the kernel exports it.
    pub present: bool,
    /// Whether the reference is weak.
    pub weak: bool,
}

/// The answers for one kernel.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Imports by core symbol name.
    pub bindings: BTreeMap<String, Binding>,
    /// Slot values by slot symbol name.
    pub slots: BTreeMap<String, SlotValue>,
}

impl Plan {
    /// Resolves the manifest against a record.
    pub fn resolve(manifest: &Manifest, record: &KernelRecord) -> Result<Self, LinkError> {
        let release = &record.identity.release;
        let mut plan = Plan::default();
        for import in &manifest.imports {
            let found = import
                .candidates
                .iter()
                .find(|c| record.exports.contains_key(*c));
            let binding = match found {
                Some(name) => Binding {
                    symbol: import.symbol.clone(),
                    kernel_name: name.clone(),
                    present: true,
                    weak: import.weak,
                },
                None if import.weak => Binding {
                    symbol: import.symbol.clone(),
                    kernel_name: import.candidates[0].clone(),
                    present: false,
                    weak: true,
                },
                None => {
                    return Err(LinkError::MissingExport {
                        release: release.clone(),
                        wanted: import.candidates.join(" or "),
                        by: import.symbol.clone(),
                    })
                }
            };
            plan.bindings.insert(import.symbol.clone(), binding);
        }
        for slot in &manifest.slots {
            let value = resolve_slot(manifest, record, &slot.symbol, &slot.kind)?;
            plan.slots.insert(slot.symbol.clone(), value);
        }
        Ok(plan)
    }
}

fn layout(record: &KernelRecord, key: &str, slot: &str) -> Result<u64, LinkError> {
    record
        .layouts
        .get(key)
        .copied()
        .ok_or_else(|| LinkError::MissingLayout {
            release: record.identity.release.clone(),
            key: key.to_string(),
            slot: slot.to_string(),
        })
}

fn resolve_slot(
    manifest: &Manifest,
    record: &KernelRecord,
    symbol: &str,
    kind: &SlotKind,
) -> Result<SlotValue, LinkError> {
    let release = &record.identity.release;
    match kind {
        SlotKind::Offsetof { optional, .. } | SlotKind::Sizeof { optional, .. } => {
            // The first candidate the kernel has.
            let keys = kind.layout_keys();
            match keys.iter().find_map(|k| record.layouts.get(k)) {
                Some(v) => Ok(SlotValue::Const(*v)),
                None if *optional => Ok(SlotValue::Const(0)),
                None => Ok(SlotValue::Const(layout(record, &keys.join("|"), symbol)?)),
            }
        }
        SlotKind::Percpu { candidates } => {
            for cand in candidates {
                if !record.exports.contains_key(&cand.var) {
                    continue;
                }
                let percpu_key = format!("percpu:{}", cand.var);
                if !record.layouts.contains_key(&percpu_key) {
                    // Exported, but BTF does not place it in the per-CPU area.
                    continue;
                }
                let addend = match cand.offset_key() {
                    Some(key) => match record.layouts.get(&key) {
                        Some(off) => *off,
                        None => continue,
                    },
                    None => 0,
                };
                let addend = i64::try_from(addend).map_err(|_| LinkError::Inconsistent {
                    release: release.clone(),
                    what: format!("per-CPU offset of {} in slot {symbol}", cand.var),
                })?;
                return Ok(SlotValue::Symbol {
                    name: cand.var.clone(),
                    addend,
                });
            }
            let wanted: Vec<String> = candidates
                .iter()
                .map(|c| match &c.member {
                    Some(m) => format!("{}.{}", c.var, m),
                    None => c.var.clone(),
                })
                .collect();
            Err(LinkError::MissingExport {
                release: release.clone(),
                wanted: format!("per-CPU {}", wanted.join(" or ")),
                by: symbol.to_string(),
            })
        }
        SlotKind::TpArg {
            tp,
            param,
            size,
            optional,
        } => {
            let params = match record.tracepoints.get(tp) {
                Some(p) => p,
                // An optional argument of a tracepoint the kernel lacks
                // (kmalloc_node after 5.x): its probe is never registered.
                None if *optional => return Ok(SlotValue::Const(0)),
                None => {
                    return Err(LinkError::MissingTracepoint {
                        release: release.clone(),
                        tracepoint: tp.clone(),
                    })
                }
            };
            let Some(pos) = params.iter().position(|p| &p.name == param) else {
                if *optional {
                    return Ok(SlotValue::Const(0));
                }
                let have: Vec<String> = params
                    .iter()
                    .map(|p| format!("{} {}", p.type_name, p.name))
                    .collect();
                return Err(LinkError::TracepointMismatch {
                    release: release.clone(),
                    tracepoint: tp.clone(),
                    reason: format!(
                        "no parameter named {param}; the kernel's prototype is ({})",
                        have.join(", ")
                    ),
                });
            };
            let p = &params[pos];
            if p.size != *size {
                return Err(LinkError::TracepointMismatch {
                    release: release.clone(),
                    tracepoint: tp.clone(),
                    reason: format!(
                        "parameter {param} is {} ({} bytes), the core reads {size} bytes",
                        p.type_name, p.size
                    ),
                });
            }
            let position = pos as u64 + 1;
            let arity = manifest.probes.get(tp).copied().unwrap_or(0) as u64;
            if position > arity {
                return Err(LinkError::TracepointMismatch {
                    release: release.clone(),
                    tracepoint: tp.clone(),
                    reason: format!(
                        "parameter {param} is argument {position}, but the core's probe takes {arity}"
                    ),
                });
            }
            Ok(SlotValue::Const(position))
        }
        SlotKind::Function {
            candidates,
            optional,
        } => match chosen_function(record, candidates) {
            Some(i) => Ok(SlotValue::Const(i as u64 + 1)),
            None if *optional => Ok(SlotValue::Const(0)),
            None => Err(LinkError::FunctionMismatch {
                release: release.clone(),
                function: candidates.join(" or "),
                reason: format!("the kernel has none of them (needed by {symbol})"),
            }),
        },
        SlotKind::FnArg {
            functions,
            params,
            size,
            optional,
        } => {
            let Some(i) = chosen_function(record, functions) else {
                return Ok(SlotValue::Const(0));
            };
            let f = &functions[i];
            let found = params.iter().find_map(|p| {
                record
                    .layouts
                    .get(&fnarg_key(f, p))
                    .map(|pos| (p, *pos, record.layouts.get(&fnarg_size_key(f, p))))
            });
            let Some((p, pos, psize)) = found else {
                if *optional {
                    return Ok(SlotValue::Const(0));
                }
                return Err(LinkError::FunctionMismatch {
                    release: release.clone(),
                    function: f.clone(),
                    reason: format!(
                        "no parameter named {} (needed by {symbol})",
                        params.join(" or ")
                    ),
                });
            };
            if psize != Some(size) {
                return Err(LinkError::FunctionMismatch {
                    release: release.clone(),
                    function: f.clone(),
                    reason: format!(
                        "parameter {p} is {} bytes, the core reads {size}",
                        psize.map_or("of unknown size".to_string(), |s| s.to_string())
                    ),
                });
            }
            // x86-64 passes the first six integer arguments in registers;
            // the core reads only those.
            if !(1..=6).contains(&pos) {
                return Err(LinkError::FunctionMismatch {
                    release: release.clone(),
                    function: f.clone(),
                    reason: format!(
                        "parameter {p} is argument {pos}, not one of the six passed in registers"
                    ),
                });
            }
            Ok(SlotValue::Const(pos))
        }
    }
}

/// Index of the first candidate function the record says the kernel has.
fn chosen_function(record: &KernelRecord, candidates: &[String]) -> Option<usize> {
    candidates
        .iter()
        .position(|f| record.layouts.contains_key(&function_key(f)))
}
