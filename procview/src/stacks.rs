//! `/proc/kmlink/stacks`: the kernel stacks of sampled allocations (a
//! monitor linked with `--set stacks=N`).
//!
//! ```text
//! # stacks: sample_every 64 slots 2048 depth 32 sampled 9210 dropped 0 available 1
//!
//! stack 5d1c0e8a9f00b3c7 allocs 812 bytes 207872 frames 14
//!  kml_on_alloc+0x2f6/0x310 [kmlink]
//!  __kmalloc_noprof+0x2a9/0x420
//!  seq_read_iter+0x…/0x…
//! ```
//!
//! A header of key-value pairs, then per distinct stack a `stack` line (its
//! hash, then key-value pairs) and its frames, innermost first, one per line
//! indented by one space (the kernel's `%pS`, which may end in ` [module]`).
//! Unknown keys are kept or ignored; malformed lines are errors naming the
//! line.

use std::collections::BTreeMap;

use crate::table::ParseError;

/// A parsed `/proc/kmlink/stacks`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stacks {
    /// One allocation in this many has its stack saved; 0: stacks are off
    /// (the monitor was linked without `--set stacks=N`, or the kernel lacks
    /// `stack_trace_save`: see [`Stacks::info`] `available`).
    pub sample_every: u64,
    /// The header's other keys (`slots`, `depth`, `sampled`, `dropped`,
    /// `available`, …) with their numbers.
    pub info: BTreeMap<String, u64>,
    /// The distinct stacks, in file order; equal frame lists are summed.
    pub stacks: Vec<Stack>,
}

/// One distinct stack and what was sampled on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// Sampled allocations with this stack.
    pub allocs: u64,
    /// Their bytes allocated.
    pub bytes: u64,
    /// The frames, innermost (the allocator) first, as the kernel printed
    /// them (`function+0xoff/0xsize [module]`).
    pub frames: Vec<String>,
}

impl Stacks {
    /// Stacks in "folded" form (flamegraph.pl, speedscope, inferno): one
    /// line per stack, frames outermost first joined by `;`, a space and the
    /// weight (bytes when `by_bytes`, else allocations). Frames are reduced
    /// to their function (offsets and module dropped) unless `offsets`.
    /// Stacks that fold to the same line are summed; lines are sorted.
    pub fn folded(&self, by_bytes: bool, offsets: bool) -> String {
        let mut lines: BTreeMap<String, u64> = BTreeMap::new();
        for s in &self.stacks {
            let key = s
                .frames
                .iter()
                .rev()
                .map(|f| {
                    if offsets {
                        f.replace(';', ":")
                    } else {
                        function(f).to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(";");
            let w = if by_bytes { s.bytes } else { s.allocs };
            let e = lines.entry(key).or_insert(0);
            *e = e.saturating_add(w);
        }
        lines
            .into_iter()
            .filter(|(k, w)| *w > 0 && !k.is_empty())
            .map(|(k, w)| format!("{k} {w}\n"))
            .collect()
    }
}

impl Stacks {
    /// Whether every stack stops at the kretprobe trampoline: the kprobe
    /// backend on kernels before rethook (5.x), whose unwinder does not get
    /// past `kretprobe_trampoline` from a return handler, so no stack shows
    /// who called the allocator (docs/core-module.md). False when empty.
    pub fn cut_at_kretprobe_trampoline(&self) -> bool {
        !self.stacks.is_empty()
            && self.stacks.iter().all(|s| {
                s.frames
                    .last()
                    .is_some_and(|f| function(f) == "kretprobe_trampoline")
            })
    }
}

/// `func+0x1a/0x40 [mod]` → `func`; `0xffffffffc0001234` stays as is.
pub fn function(frame: &str) -> &str {
    let f = frame.split_ascii_whitespace().next().unwrap_or(frame);
    match f.split_once('+') {
        Some((name, _)) if !name.is_empty() => name,
        _ => f,
    }
}

/// Parses the text of `/proc/kmlink/stacks`.
pub fn parse_stacks(text: &str) -> Result<Stacks, ParseError> {
    let mut out = Stacks::default();
    let mut at: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    // The stack being read: counts, and its frames so far.
    let mut cur: Option<(u64, u64, Vec<String>)> = None;
    let err = |line: usize, text: &str, reason: String| ParseError {
        line,
        text: text.to_string(),
        reason,
    };
    let mut finish = |cur: &mut Option<(u64, u64, Vec<String>)>, out: &mut Stacks| {
        if let Some((allocs, bytes, frames)) = cur.take() {
            match at.get(&frames) {
                Some(&i) => {
                    let s = &mut out.stacks[i];
                    s.allocs = s.allocs.saturating_add(allocs);
                    s.bytes = s.bytes.saturating_add(bytes);
                }
                None => {
                    at.insert(frames.clone(), out.stacks.len());
                    out.stacks.push(Stack {
                        allocs,
                        bytes,
                        frames,
                    });
                }
            }
        }
    };
    let mut seen_header = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_end();
        if l.is_empty() {
            finish(&mut cur, &mut out);
            continue;
        }
        if let Some(rest) = l.strip_prefix("# stacks:") {
            let kv = pairs(rest).map_err(|r| err(line, l, r))?;
            for (k, v) in kv {
                if k == "sample_every" {
                    out.sample_every = v;
                } else {
                    out.info.insert(k.to_string(), v);
                }
            }
            seen_header = true;
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        if let Some(frame) = l.strip_prefix(' ') {
            let Some((_, _, frames)) = cur.as_mut() else {
                return Err(err(line, l, "a frame outside any stack".to_string()));
            };
            frames.push(frame.trim().to_string());
            continue;
        }
        if let Some(rest) = l.strip_prefix("stack ") {
            if !seen_header {
                return Err(err(line, l, "a stack before the `# stacks:` header".into()));
            }
            finish(&mut cur, &mut out);
            let (id, kv) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
            if u64::from_str_radix(id, 16).is_err() {
                return Err(err(line, l, format!("stack id {id:?} is not hex")));
            }
            let kv = pairs(kv).map_err(|r| err(line, l, r))?;
            let get = |k: &str| kv.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            let (Some(allocs), Some(bytes)) = (get("allocs"), get("bytes")) else {
                return Err(err(line, l, "a stack line needs `allocs N bytes N`".into()));
            };
            cur = Some((allocs, bytes, Vec::new()));
            continue;
        }
        return Err(err(
            line,
            l,
            "expected a `stack` line, a frame (indented) or a blank line".into(),
        ));
    }
    finish(&mut cur, &mut out);
    Ok(out)
}

/// `k v k v …` with numeric values.
fn pairs(text: &str) -> Result<Vec<(&str, u64)>, String> {
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    if !words.len().is_multiple_of(2) {
        return Err("expected `key value` pairs".to_string());
    }
    words
        .chunks(2)
        .map(|kv| {
            kv[1]
                .parse::<u64>()
                .map(|v| (kv[0], v))
                .map_err(|_| format!("`{}` is {:?}, not an unsigned number", kv[0], kv[1]))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# stacks: sample_every 64 slots 2048 depth 32 sampled 30 dropped 1 available 1

stack 5d1c0e8a9f00b3c7 allocs 20 bytes 5120 frames 4
 kml_on_alloc+0x2f6/0x310 [kmlink]
 __kmalloc_noprof+0x2a9/0x420
 seq_read_iter+0x11c/0x4b0
 do_syscall_64+0x82/0x190

stack 1 allocs 6 bytes 384 frames 3
 kmem_cache_alloc_noprof+0x10/0x200
 alloc_pipe_info+0x40/0x1f0
 do_syscall_64+0x82/0x190

stack 2 allocs 4 bytes 1024 frames 4
 kml_on_alloc+0x2f6/0x310 [kmlink]
 __kmalloc_noprof+0x2a9/0x420
 seq_read_iter+0x11c/0x4b0
 do_syscall_64+0x82/0x190
";

    #[test]
    fn parses_and_sums_equal_stacks() {
        let s = parse_stacks(SAMPLE).unwrap();
        assert_eq!(s.sample_every, 64);
        assert_eq!(s.info["dropped"], 1);
        assert_eq!(s.info["available"], 1);
        assert_eq!(s.stacks.len(), 2);
        assert_eq!((s.stacks[0].allocs, s.stacks[0].bytes), (24, 6144));
        assert_eq!(s.stacks[0].frames[0], "kml_on_alloc+0x2f6/0x310 [kmlink]");
        assert_eq!(s.stacks[1].frames.len(), 3);
    }

    #[test]
    fn folded_outermost_first() {
        let s = parse_stacks(SAMPLE).unwrap();
        assert_eq!(
            s.folded(false, false),
            "do_syscall_64;alloc_pipe_info;kmem_cache_alloc_noprof 6\n\
             do_syscall_64;seq_read_iter;__kmalloc_noprof;kml_on_alloc 24\n"
        );
        assert!(s
            .folded(true, true)
            .contains("do_syscall_64+0x82/0x190;alloc_pipe_info+0x40/0x1f0;kmem_cache_alloc_noprof+0x10/0x200 384\n"));
    }

    #[test]
    fn off_and_empty() {
        let s = parse_stacks(
            "# stacks: sample_every 0 slots 2048 depth 32 sampled 0 dropped 0 available 1\n",
        )
        .unwrap();
        assert_eq!(s.sample_every, 0);
        assert!(s.stacks.is_empty());
        assert_eq!(s.folded(false, false), "");
        assert_eq!(parse_stacks("").unwrap(), Stacks::default());
    }

    #[test]
    fn malformed_lines_name_the_line() {
        for (text, line, why) in [
            (" frame\n", 1, "outside any stack"),
            (
                "stack 1 allocs 1 bytes 1\n",
                1,
                "before the `# stacks:` header",
            ),
            ("# stacks: a 1\nstack zz allocs 1 bytes 1\n", 2, "not hex"),
            (
                "# stacks: a 1\nstack 1 allocs x bytes 1\n",
                2,
                "not an unsigned number",
            ),
            (
                "# stacks: a 1\nstack 1 allocs 1\n",
                2,
                "needs `allocs N bytes N`",
            ),
            ("# stacks: a\n", 1, "pairs"),
            ("# stacks: a 1\nhello\n", 2, "expected a `stack` line"),
        ] {
            let e = parse_stacks(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn kretprobe_trampoline_cuts() {
        let cut = parse_stacks(
            "# stacks: sample_every 8 slots 2048 depth 32 sampled 429 dropped 0 available 1\n\n\
             stack c1ae1821b46ec5d1 allocs 429 bytes 111224 frames 5\n\
             \x20kml_on_alloc+0x263/0x420 [kmlink]\n\
             \x20kml_kp_return+0x184/0x230 [kmlink]\n\
             \x20__kretprobe_trampoline_handler+0xfe/0x190\n\
             \x20trampoline_handler+0x44/0x60\n\
             \x20kretprobe_trampoline+0x25/0x50\n",
        )
        .unwrap();
        assert!(cut.cut_at_kretprobe_trampoline());
        assert!(!parse_stacks(SAMPLE).unwrap().cut_at_kretprobe_trampoline());
        assert!(!Stacks::default().cut_at_kretprobe_trampoline());
    }

    #[test]
    fn function_names() {
        assert_eq!(
            function("kml_on_alloc+0x2f6/0x310 [kmlink]"),
            "kml_on_alloc"
        );
        assert_eq!(function("0xffffffffc0001234"), "0xffffffffc0001234");
        assert_eq!(function("+0x1/0x2"), "+0x1/0x2");
    }
}
