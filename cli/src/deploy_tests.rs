//! The example manifests under `deploy/` (a Kubernetes Indexed Job and a
//! CI matrix running `kmlink crawler refresh --shard I/N`), parsed as YAML
//! and their kmlink command lines parsed with kmlink's own clap
//! definitions: the shards the jobs take are exactly 0..N-1 of one N, each
//! writes its own bundle, and the merge step reads exactly those.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Parser;
use serde_yaml::Value;

use crate::cmd::bundle::BundleCommand;
use crate::cmd::crawler::{CrawlerCommand, RefreshArgs};
use crate::{Cli, Command};

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

fn yaml(rel: &str) -> Value {
    let path = deploy(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| {
        v.get(*k)
            .unwrap_or_else(|| panic!("no {k:?} in {path:?} of {v:?}"))
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            x => panic!("not a string: {x:?}"),
        })
        .collect()
}

fn parse(argv: &[String]) -> Command {
    Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{argv:?} does not parse: {e}"))
        .command
}

fn refresh(argv: &[String]) -> RefreshArgs {
    match parse(argv) {
        Command::Crawler(c) => match c.command {
            CrawlerCommand::Refresh(r) => r,
            other => panic!("{argv:?} is not crawler refresh: {other:?}"),
        },
        _ => panic!("{argv:?} is not a crawler command"),
    }
}

/// The argv of a container: `command` then `args`, with `$(VAR)` set.
fn container_argv(c: &Value, var: &str, value: &str) -> Vec<String> {
    let mut argv = strings(at(c, &["command"]));
    argv.extend(strings(at(c, &["args"])));
    argv.iter()
        .map(|a| a.replace(&format!("$({var})"), value))
        .collect()
}

#[test]
fn kubernetes_indexed_job_covers_every_shard_once_and_merge_reads_them() {
    let job = yaml("kubernetes/crawl-job.yaml");
    assert_eq!(at(&job, &["kind"]).as_str(), Some("Job"));
    let spec = at(&job, &["spec"]);
    assert_eq!(at(spec, &["completionMode"]).as_str(), Some("Indexed"));
    let completions = at(spec, &["completions"]).as_u64().expect("completions");
    let containers = at(spec, &["template", "spec", "containers"])
        .as_sequence()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    let mut shards = BTreeSet::new();
    let mut bundles = BTreeSet::new();
    for index in 0..completions {
        let argv = container_argv(&containers[0], "JOB_COMPLETION_INDEX", &index.to_string());
        let r = refresh(&argv);
        let shard = r.shard.expect("--shard");
        assert_eq!(
            u64::from(shard.count),
            completions,
            "--shard's N is the Job's completions"
        );
        assert_eq!(
            u64::from(shard.index),
            index,
            "index {index} takes shard {index}"
        );
        assert!(shards.insert(shard.index));
        let out = r.bundle_out.expect("--bundle-out");
        assert!(bundles.insert(out), "each index writes its own bundle");
        assert!(r.sign_key.is_some(), "the shards are signed");
    }
    assert_eq!(shards, (0..completions as u32).collect());
    // Outside the Job (no index set), the argument must not parse as a shard.
    let raw = container_argv(&containers[0], "NO_SUCH_VAR", "");
    assert!(Cli::try_parse_from(&raw).is_err(), "{raw:?}");

    let merge = yaml("kubernetes/merge-job.yaml");
    let c = &at(&merge, &["spec", "template", "spec", "containers"])
        .as_sequence()
        .expect("containers")[0];
    let argv = container_argv(c, "", "");
    match parse(&argv) {
        Command::Bundle(b) => match b.command {
            BundleCommand::Merge { inputs, trust, .. } => {
                assert_eq!(
                    inputs.into_iter().collect::<BTreeSet<_>>(),
                    bundles,
                    "the merge reads exactly the shards' bundles"
                );
                assert!(
                    !trust.is_empty(),
                    "the merge verifies the shards' signatures"
                );
            }
            other => panic!("not bundle merge: {other:?}"),
        },
        _ => panic!("not a bundle command: {argv:?}"),
    }
}

/// Every combination of a matrix's values.
fn combinations(matrix: &Value) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![BTreeMap::new()];
    for (k, v) in matrix.as_mapping().expect("matrix") {
        let k = k.as_str().expect("matrix key").to_owned();
        let values = strings(v);
        out = out
            .into_iter()
            .flat_map(|m| {
                let k = &k;
                values.iter().map(move |x| {
                    let mut m = m.clone();
                    m.insert(k.clone(), x.clone());
                    m
                })
            })
            .collect();
    }
    out
}

/// The kmlink command lines of a job's `run:` steps, `${{ matrix.K }}`
/// set from `m`, split as the shell would (a line per command).
fn kmlink_lines(job: &Value, m: &BTreeMap<String, String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for step in at(job, &["steps"]).as_sequence().expect("steps") {
        let Some(run) = step.get("run").and_then(Value::as_str) else {
            continue;
        };
        for line in run.lines() {
            let mut line = line.to_owned();
            for (k, v) in m {
                line = line.replace(&format!("${{{{ matrix.{k} }}}}"), v);
            }
            assert!(
                !line.contains("${{ matrix."),
                "unset matrix value in {line}"
            );
            let words = shlex::split(&line).unwrap_or_else(|| panic!("unbalanced quotes: {line}"));
            if let Some(i) = words
                .iter()
                .position(|w| w.ends_with("kmlink") && !w.contains(' '))
            {
                if words.first().is_some_and(|w| w == "chmod") {
                    continue;
                }
                out.push(words[i..].to_vec());
            }
        }
    }
    out
}

#[test]
fn ci_matrix_covers_every_shard_once_per_arch_and_parses() {
    let wf = yaml("github-actions/crawl.yml");
    let jobs = at(&wf, &["jobs"]);
    let crawl = at(jobs, &["crawl"]);
    let matrix = at(crawl, &["strategy", "matrix"]);
    let mut per_arch: BTreeMap<String, (u32, BTreeSet<u32>)> = BTreeMap::new();
    let mut bundles = BTreeSet::new();
    let combos = combinations(matrix);
    assert!(combos.len() > 1);
    for m in &combos {
        let lines = kmlink_lines(crawl, m);
        assert_eq!(lines.len(), 1, "one kmlink command per job: {lines:?}");
        let r = refresh(&lines[0]);
        let shard = r.shard.expect("--shard");
        let arch = r.source.arch.expect("--arch").to_string();
        let entry = per_arch
            .entry(arch.clone())
            .or_insert((shard.count, BTreeSet::new()));
        assert_eq!(entry.0, shard.count, "one N per architecture");
        assert!(entry.1.insert(shard.index), "{arch} shard {shard} twice");
        assert!(bundles.insert(r.bundle_out.expect("--bundle-out")));
    }
    assert_eq!(per_arch.len(), 2, "both architectures: {per_arch:?}");
    for (arch, (n, got)) in &per_arch {
        assert_eq!(*got, (0..*n).collect::<BTreeSet<u32>>(), "{arch}");
    }

    let merge = kmlink_lines(at(jobs, &["merge"]), &BTreeMap::new());
    assert_eq!(merge.len(), 1, "{merge:?}");
    assert!(matches!(
        parse(&merge[0]),
        Command::Bundle(b) if matches!(b.command, BundleCommand::Merge { .. })
    ));
}
