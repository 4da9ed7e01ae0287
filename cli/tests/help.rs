//! Every subcommand's `--help` shows its examples, one per line, run as a
//! user runs it; new subcommands are covered as clap lists them.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Output;

mod common;

fn kmlink(args: &[&str]) -> Output {
    common::run(args)
}

/// The subcommand names listed under `Commands:` in a help text (not `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // An entry is indented by two; a wrapped description by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

/// Every subcommand path clap reports, depth first.
fn all_subcommands(path: &[String], out: &mut Vec<Vec<String>>) {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let o = kmlink(&args);
    assert!(o.status.success(), "kmlink {args:?} failed");
    for name in subcommands(&String::from_utf8(o.stdout).unwrap()) {
        let mut p = path.to_vec();
        p.push(name);
        out.push(p.clone());
        all_subcommands(&p, out);
    }
}

#[test]
fn every_subcommand_shows_its_examples_one_per_line() {
    let mut commands = Vec::new();
    all_subcommands(&[], &mut commands);
    // The ones this test was written against; new ones are checked too.
    for known in [
        "build", "load", "unload", "doctor", "crawler", "db", "bundle", "top",
    ] {
        assert!(
            commands.iter().any(|c| c == &[known.to_string()]),
            "`kmlink --help` lists no {known}: {commands:?}"
        );
    }
    let mut problems = Vec::new();
    for path in &commands {
        let name = format!("kmlink {}", path.join(" "));
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = String::from_utf8(kmlink(&args).stdout).unwrap();
        let lines: Vec<&str> = help.lines().collect();
        // "Examples:" alone on its line, then one example per line up to a
        // blank line, each starting with the command itself.
        let Some(at) = lines.iter().position(|l| l.trim() == "Examples:") else {
            problems.push(format!(
                "{name} --help has no \"Examples:\" line of its own:\n{help}"
            ));
            continue;
        };
        let examples: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.trim())
            .collect();
        if examples.is_empty() {
            problems.push(format!("{name} --help: no example under \"Examples:\""));
        }
        for e in &examples {
            if !e.starts_with(&format!("{name} ")) && *e != name {
                problems.push(format!(
                    "{name} --help: this example line does not start with `{name}`: {e:?}"
                ));
            }
        }
        // Nowhere may an example run on after other text on its line.
        for l in &lines {
            let t = l.trim_start();
            if let Some(i) = t.find("kmlink ") {
                let before = &t[..i];
                if before.trim_end().ends_with("Examples:") {
                    problems.push(format!("{name} --help: examples run together: {l:?}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
