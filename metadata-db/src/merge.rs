//! Combining bundles: the shards of a parallel crawl (`kmlink crawler
//! refresh --shard I/N --bundle-out F`) into one bundle (`kmlink bundle
//! merge`), or several bundles into a store at once.
//!
//! Every input is checked as [`bundle::read`] checks it (hashes, and the
//! signature against the trusted keys, required when keys are given), and
//! every record as the store checks it ([`KernelRecord::validate`]: e.g. a
//! record whose architecture contradicts its release). Records are keyed
//! by their identity ([`RecordKey`]: release, `uname -v`, BTF hash): the
//! same record in several inputs is kept once; two different records of
//! one identity are a conflict, refused whole and named (kernel, the two
//! inputs, the facts that differ), never resolved by input order. Records
//! of one release with different identities (two builds of it) are both
//! kept, as the store keeps them. All inputs must be of one kind: full
//! records, or slim records cut for the same core.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;

use crate::bundle::{self, BundleError, Trust};
use crate::image::RecordKey;
use crate::record::{KernelRecord, RecordInvalid};
use crate::store::{PutReport, Store};

/// One input: a name for messages (its file name) and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// What messages call it.
    pub name: &'a str,
    /// The bundle.
    pub bytes: &'a [u8],
}

/// What one input contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSummary {
    /// Its name.
    pub name: String,
    /// Records it holds.
    pub records: usize,
    /// Of those, records another input held already (identical).
    pub duplicates: usize,
    /// Fingerprint of its signer, if signed.
    pub signer: Option<String>,
}

/// The checked union of the inputs.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Every distinct record, ordered by identity.
    pub records: Vec<KernelRecord>,
    /// Fingerprint of the core the records were cut for, when slim.
    pub slim_core: Option<String>,
    /// Per input, in the order given.
    pub inputs: Vec<InputSummary>,
}

impl Merged {
    /// Records held by more than one input (kept once).
    pub fn duplicates(&self) -> usize {
        self.inputs.iter().map(|i| i.duplicates).sum()
    }
}

/// Why bundles could not be merged. Nothing is written in any case.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No input at all.
    #[error("no bundle to merge")]
    NoInputs,
    /// An input fails its own checks.
    #[error("{name}")]
    Input {
        /// The input.
        name: String,
        /// Why it was rejected.
        #[source]
        source: BundleError,
    },
    /// An input holds a record no store would accept.
    #[error("{name}: record of {key}")]
    Invalid {
        /// The input.
        name: String,
        /// The record.
        key: Box<RecordKey>,
        /// What is impossible about it.
        #[source]
        source: RecordInvalid,
    },
    /// Inputs of different kinds (full and slim, or slim for two cores).
    #[error("{name} holds {kind}, but {first} holds {first_kind}; merge bundles of one kind (export them all with or all without --slim, from one kmlink)")]
    Kind {
        /// The first input.
        first: String,
        /// What it holds.
        first_kind: String,
        /// The input that differs.
        name: String,
        /// What it holds.
        kind: String,
    },
    /// Two inputs hold different records of one kernel build.
    #[error("conflicting records of kernel {key}: {first} and {second} hold different records of it (they differ in {differ}); nothing was merged — find out which crawl is wrong (e.g. the archive changed between shards: crawl that kernel again) and leave the other bundle out")]
    Conflict {
        /// The kernel.
        key: Box<RecordKey>,
        /// The input holding it first.
        first: String,
        /// The input holding another record of it.
        second: String,
        /// The groups of facts that differ (`layouts`, `identity.packages`, ...).
        differ: String,
    },
    /// Encoding or storing the result failed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

fn kind(slim_core: &Option<String>) -> String {
    match slim_core {
        Some(core) => format!("slim records for core {core}"),
        None => "full records".into(),
    }
}

/// Which top-level fields (and identity fields) of two records differ.
fn differing_fields(a: &KernelRecord, b: &KernelRecord) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return "their content".into();
    };
    let mut out = Vec::new();
    for (k, va) in &a {
        let vb = b.get(k);
        if vb == Some(va) {
            continue;
        }
        match (va, vb) {
            (serde_json::Value::Object(ia), Some(serde_json::Value::Object(ib)))
                if k == "identity" =>
            {
                for (ik, iva) in ia {
                    if ib.get(ik) != Some(iva) {
                        out.push(format!("identity.{ik}"));
                    }
                }
            }
            _ => out.push(k.clone()),
        }
    }
    if out.is_empty() {
        "their content".into()
    } else {
        out.join(", ")
    }
}

/// Checks every input and returns the union of their records (see the
/// module documentation).
pub fn merge(inputs: &[Input<'_>], trust: &Trust) -> Result<Merged, MergeError> {
    if inputs.is_empty() {
        return Err(MergeError::NoInputs);
    }
    // Identity → (record, its hash, the input that brought it).
    let mut by_key: BTreeMap<RecordKey, (KernelRecord, String, usize)> = BTreeMap::new();
    let mut summaries = Vec::with_capacity(inputs.len());
    let mut slim_core: Option<Option<String>> = None;
    for (n, input) in inputs.iter().enumerate() {
        let v = bundle::read(input.bytes, trust).map_err(|source| MergeError::Input {
            name: input.name.to_owned(),
            source,
        })?;
        let this_kind = if v.header.slim {
            Some(v.header.core.clone().unwrap_or_default())
        } else {
            None
        };
        match &slim_core {
            None => slim_core = Some(this_kind),
            Some(k) if *k == this_kind => {}
            Some(k) => {
                return Err(MergeError::Kind {
                    first: inputs[0].name.to_owned(),
                    first_kind: kind(k),
                    name: input.name.to_owned(),
                    kind: kind(&this_kind),
                })
            }
        }
        let mut summary = InputSummary {
            name: input.name.to_owned(),
            records: v.records.len(),
            duplicates: 0,
            signer: v.signer,
        };
        for record in v.records {
            let key = RecordKey::of(&record);
            record.validate().map_err(|source| MergeError::Invalid {
                name: input.name.to_owned(),
                key: Box::new(key.clone()),
                source,
            })?;
            let sha = record.sha256();
            match by_key.get(&key) {
                Some((_, have, _)) if *have == sha => summary.duplicates += 1,
                Some((other, _, from)) => {
                    return Err(MergeError::Conflict {
                        differ: differing_fields(other, &record),
                        key: Box::new(key),
                        first: inputs[*from].name.to_owned(),
                        second: input.name.to_owned(),
                    })
                }
                None => {
                    by_key.insert(key, (record, sha, n));
                }
            }
        }
        summaries.push(summary);
    }
    Ok(Merged {
        records: by_key.into_values().map(|(r, _, _)| r).collect(),
        slim_core: slim_core.flatten(),
        inputs: summaries,
    })
}

/// The merged bundle: the records as they are (slim ones stay slim, for
/// the same core), signed with `sign` if given. Deterministic: the same
/// inputs in any order give the same bytes.
pub fn to_bundle(merged: &Merged, sign: Option<&SigningKey>) -> Result<Vec<u8>, BundleError> {
    bundle::encode(merged.records.clone(), merged.slim_core.clone(), sign)
}

/// Checks and merges `inputs`, then stores every record in one atomic
/// write: all of them, or nothing (a conflict between two inputs, or any
/// input failing its checks, stores nothing).
pub fn install(
    store: &Store,
    inputs: &[Input<'_>],
    trust: &Trust,
) -> Result<(Merged, PutReport), MergeError> {
    let merged = merge(inputs, trust)?;
    let put = store
        .put_many(&merged.records)
        .map_err(|e| MergeError::Bundle(BundleError::Store(Box::new(e))))?;
    Ok((merged, put))
}
