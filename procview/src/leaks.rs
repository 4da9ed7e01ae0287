//! `kmlink leaks`: outstanding memory by allocating call site, from the
//! monitor's `callsite` table, oldest or largest first.
//!
//! The monitor keeps, per call site, the bytes and objects allocated there
//! and not freed since it was loaded, and the age of the oldest such object
//! (docs/operator.md, "The callsite table"). A call site whose oldest object
//! is older than `--age` is a leak candidate: its objects outlive what the
//! code usually keeps.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::stacks::Stacks;
use crate::stats::{SiteKey, SiteRow, Stats};

/// The value of `format` in `kmlink leaks --json`.
pub const LEAKS_FORMAT: &str = "kmlink-leaks/1";

/// The order of `kmlink leaks`' rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeakSort {
    /// The oldest outstanding object first.
    #[default]
    Age,
    /// The most outstanding bytes first.
    Bytes,
    /// The most outstanding objects first.
    Objects,
}

impl LeakSort {
    /// Parses `age`, `bytes` or `objects` (for clap's `value_parser`).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "age" | "oldest" => Ok(LeakSort::Age),
            "bytes" | "outstanding" => Ok(LeakSort::Bytes),
            "objects" | "count" => Ok(LeakSort::Objects),
            other => Err(format!(
                "unknown sort {other:?}: one of age, bytes, objects"
            )),
        }
    }
}

/// What to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeakQuery {
    /// Only call sites whose oldest outstanding object is at least this old.
    pub min_age: Duration,
    /// At most this many rows (`None`: all).
    pub top: Option<usize>,
    /// Row order.
    pub sort: LeakSort,
}

/// One call site with memory outstanding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The call site's address, when the reader may see addresses.
    pub addr: Option<u64>,
    /// The symbolized call site (`function+0xoff/0xsize [module]`).
    pub caller: String,
    /// Objects allocated there and still outstanding.
    pub objects: u64,
    /// Bytes allocated there and still outstanding.
    pub bytes: u64,
    /// Age of the oldest of those objects.
    pub oldest: Duration,
    /// All allocations made there since load.
    pub allocs: u64,
    /// Frees of objects allocated there.
    pub frees: u64,
    /// The sampled stacks through this call site ([`attach_stacks`]); empty
    /// until attached, or when no sampled stack passed through it.
    pub stacks: Vec<SitePath>,
}

/// The sampled stacks that went through one call site, cut at it: the
/// frame that is the call site, then the frames of its callers outward.
/// Stacks that agree from the call site outward are summed (they differ
/// only inside the allocator or the monitor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SitePath {
    /// Sampled allocations on this path (all sampled allocations, freed or
    /// not: the monitor samples stacks when an object is allocated).
    pub allocs: u64,
    /// Their bytes allocated.
    pub bytes: u64,
    /// The call site's frame first, then its callers, as the kernel printed
    /// them (`function+0xoff/0xsize [module]`).
    pub frames: Vec<String>,
}

/// The call sites of `stats` with memory outstanding for at least
/// `q.min_age`, ordered and cut as `q` says. Ties are broken by bytes, then
/// by caller, so the output is stable.
pub fn leaks(stats: &Stats, q: &LeakQuery) -> Vec<Leak> {
    let mut out: Vec<Leak> = stats
        .callsites
        .iter()
        .filter_map(|r| leak(r, q.min_age))
        .collect();
    out.sort_by(|a, b| {
        let primary = match q.sort {
            LeakSort::Age => b.oldest.cmp(&a.oldest),
            LeakSort::Bytes => b.bytes.cmp(&a.bytes),
            LeakSort::Objects => b.objects.cmp(&a.objects),
        };
        primary
            .then(b.bytes.cmp(&a.bytes))
            .then_with(|| a.caller.cmp(&b.caller))
    });
    if let Some(n) = q.top {
        out.truncate(n);
    }
    out
}

fn leak(r: &SiteRow, min_age: Duration) -> Option<Leak> {
    let SiteKey::Site { addr, caller } = &r.key else {
        return None;
    };
    let oldest = Duration::from_nanos(r.oldest_age_ns);
    if r.objects == 0 || r.outstanding == 0 || oldest < min_age {
        return None;
    }
    Some(Leak {
        addr: *addr,
        caller: caller.clone(),
        objects: r.objects,
        bytes: r.outstanding,
        oldest,
        allocs: r.allocs,
        frees: r.frees,
        stacks: Vec::new(),
    })
}

/// Fills each row's [`Leak::stacks`] from the sampled stacks: those with a
/// frame equal to the row's call site as the kernel printed it (both are
/// `%pS` of the same return address). Call it before [`symbolize`], which
/// renames rows the kernel left as bare addresses. Paths are ordered by
/// sampled allocations, most first, then by frames.
pub fn attach_stacks(leaks: &mut [Leak], stacks: &Stacks) {
    for l in leaks.iter_mut() {
        let mut paths: BTreeMap<&[String], (u64, u64)> = BTreeMap::new();
        for s in &stacks.stacks {
            let Some(at) = s.frames.iter().position(|f| *f == l.caller) else {
                continue;
            };
            let e = paths.entry(&s.frames[at..]).or_insert((0, 0));
            e.0 = e.0.saturating_add(s.allocs);
            e.1 = e.1.saturating_add(s.bytes);
        }
        let mut out: Vec<SitePath> = paths
            .into_iter()
            .map(|(frames, (allocs, bytes))| SitePath {
                allocs,
                bytes,
                frames: frames.to_vec(),
            })
            .collect();
        out.sort_by(|a, b| {
            b.allocs
                .cmp(&a.allocs)
                .then_with(|| a.frames.cmp(&b.frames))
        });
        l.stacks = out;
    }
}

/// `kmlink leaks --json`: one document, described by `$defs/leaks` of
/// `docs/stats.schema.json`.
#[derive(Debug, Serialize)]
pub struct JsonLeaks {
    /// Always [`LEAKS_FORMAT`].
    pub format: &'static str,
    /// The `--age` asked for, in seconds.
    pub min_age_s: f64,
    /// The row order asked for: `age`, `bytes` or `objects`.
    pub sort: &'static str,
    /// The monitor's uptime (`uptime_ns` of its `# monitor:` table), when
    /// it writes one.
    pub uptime_ns: Option<u64>,
    /// Objects outstanding over the listed call sites.
    pub objects: u64,
    /// Bytes outstanding over the listed call sites.
    pub bytes: u64,
    /// What the stack table says, when stacks were asked for (`--stacks`).
    pub stacks: Option<JsonStackInfo>,
    /// The call sites, in the order asked for.
    pub callsites: Vec<JsonLeak>,
}

/// The stack table's header, in `kmlink leaks --json --stacks`.
#[derive(Debug, Serialize)]
pub struct JsonStackInfo {
    /// One allocation in this many has its stack saved; 0: stacks are off.
    pub sample_every: u64,
    /// Stacks saved since load or clear (`null` when not written).
    pub sampled: Option<u64>,
    /// Saved stacks that found no slot (`null` when not written).
    pub dropped: Option<u64>,
}

/// One call site in `kmlink leaks --json`.
#[derive(Debug, Serialize)]
pub struct JsonLeak {
    /// The call site's address, `0x…`; `null` for readers not shown
    /// addresses.
    pub call_site: Option<String>,
    /// The symbolized call site.
    pub caller: String,
    /// Objects outstanding.
    pub objects: u64,
    /// Bytes outstanding.
    pub bytes: u64,
    /// Age of the oldest outstanding object, in nanoseconds.
    pub oldest_age_ns: u64,
    /// Allocations there since load.
    pub allocs: u64,
    /// Frees of objects allocated there.
    pub frees: u64,
    /// The sampled stacks through the call site (`--stacks`), else `null`.
    pub stacks: Option<Vec<SitePath>>,
}

impl LeakSort {
    /// The name `--sort` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakSort::Age => "age",
            LeakSort::Bytes => "bytes",
            LeakSort::Objects => "objects",
        }
    }
}

/// The JSON document of `rows` (from [`leaks`], perhaps with
/// [`attach_stacks`] and [`symbolize`] applied). `stacks` is the stack
/// table the rows' stacks came from, when stacks were asked for: then every
/// row carries a `stacks` array (perhaps empty), else `null`.
pub fn leaks_json(
    stats: &Stats,
    q: &LeakQuery,
    rows: &[Leak],
    stacks: Option<&Stacks>,
) -> JsonLeaks {
    JsonLeaks {
        format: LEAKS_FORMAT,
        min_age_s: q.min_age.as_secs_f64(),
        sort: q.sort.as_str(),
        uptime_ns: stats.monitor.as_ref().and_then(|m| m.uptime_ns),
        objects: rows.iter().fold(0u64, |a, l| a.saturating_add(l.objects)),
        bytes: rows.iter().fold(0u64, |a, l| a.saturating_add(l.bytes)),
        stacks: stacks.map(|s| JsonStackInfo {
            sample_every: s.sample_every,
            sampled: s.info.get("sampled").copied(),
            dropped: s.info.get("dropped").copied(),
        }),
        callsites: rows
            .iter()
            .map(|l| JsonLeak {
                call_site: l.addr.map(|a| format!("{a:#x}")),
                caller: l.caller.clone(),
                objects: l.objects,
                bytes: l.bytes,
                oldest_age_ns: u64::try_from(l.oldest.as_nanos()).unwrap_or(u64::MAX),
                allocs: l.allocs,
                frees: l.frees,
                stacks: stacks.map(|_| l.stacks.clone()),
            })
            .collect(),
    }
}

/// Kernel symbols from `/proc/kallsyms` (as root; unprivileged readers see
/// zero addresses), to name call sites the kernel printed as bare addresses.
#[derive(Debug, Default)]
pub struct Kallsyms {
    /// start address → (name, module)
    syms: BTreeMap<u64, (String, Option<String>)>,
}

impl Kallsyms {
    /// Parses the text of `/proc/kallsyms`; lines that are not `ADDR TYPE
    /// NAME [MODULE]` and zero addresses are skipped.
    pub fn parse(text: &str) -> Self {
        let mut syms = BTreeMap::new();
        for line in text.lines() {
            let mut w = line.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (w.next(), w.next(), w.next()) else {
                continue;
            };
            // Text symbols only: call sites are in code.
            if !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr == 0 {
                continue;
            }
            let module = w
                .next()
                .map(|m| m.trim_matches(|c| c == '[' || c == ']').to_string());
            syms.insert(addr, (name.to_string(), module));
        }
        Kallsyms { syms }
    }

    /// Whether any symbol was read (false for an unprivileged reader).
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// `function+0xoff [module]` for `addr` (the size is not in kallsyms).
    pub fn symbolize(&self, addr: u64) -> Option<String> {
        let (start, (name, module)) = self.syms.range(..=addr).next_back()?;
        let off = addr - start;
        Some(match module {
            Some(m) => format!("{name}+{off:#x} [{m}]"),
            None => format!("{name}+{off:#x}"),
        })
    }
}

/// Whether the kernel left `caller` unsymbolized (`%pS` of an address it
/// has no symbol for prints the address).
pub fn is_bare_address(caller: &str) -> bool {
    caller
        .strip_prefix("0x")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Names the rows the kernel could not symbolize from `syms`.
pub fn symbolize(leaks: &mut [Leak], syms: &Kallsyms) {
    for l in leaks.iter_mut() {
        if !is_bare_address(&l.caller) {
            continue;
        }
        if let Some(name) = l.addr.and_then(|a| syms.symbolize(a)) {
            l.caller = name;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::parse_stats;

    const STATS: &str = "\
# callsite: call_site allocs frees bytes outstanding objects oldest_age_ns caller
0xffffffff81301234 100 3 19200 18624 97 5000000000 alloc_pipe_info+0x3e/0x1c0
0xffffffff81301260 100 3 102400 99328 97 4900000000 alloc_pipe_info+0x6a/0x1c0
0xffffffffc0401000 10 10 640 0 0 0 ext4_find_extent+0x1f/0x2d0 [ext4]
0xffffffffc0402000 4 0 4096 4096 4 200000000 jbd2_alloc+0x10/0x40 [jbd2]
0xffffffff81999999 1 0 64 64 1 9000000000 0xffffffff81999999
(other) 5 1 320 256 4 10000000000 -
";

    #[test]
    fn filters_by_age_and_sorts() {
        let s = parse_stats(STATS).unwrap();
        assert_eq!(s.callsites.len(), 6);
        let q = LeakQuery {
            min_age: Duration::from_secs(1),
            top: None,
            sort: LeakSort::Age,
        };
        let l = leaks(&s, &q);
        let callers: Vec<&str> = l.iter().map(|l| l.caller.as_str()).collect();
        // (other) is not a call site; jbd2 is too young; ext4 has nothing left.
        assert_eq!(
            callers,
            [
                "0xffffffff81999999",
                "alloc_pipe_info+0x3e/0x1c0",
                "alloc_pipe_info+0x6a/0x1c0"
            ]
        );
        assert_eq!((l[1].objects, l[1].bytes), (97, 18624));
        let by_bytes = leaks(
            &s,
            &LeakQuery {
                sort: LeakSort::Bytes,
                top: Some(2),
                ..q
            },
        );
        assert_eq!(by_bytes[0].caller, "alloc_pipe_info+0x6a/0x1c0");
        assert_eq!(by_bytes.len(), 2);
        let all = leaks(&s, &LeakQuery::default());
        assert!(all
            .iter()
            .any(|l| l.caller == "jbd2_alloc+0x10/0x40 [jbd2]"));
    }

    #[test]
    fn kallsyms_names_bare_addresses() {
        let syms = Kallsyms::parse(
            "ffffffff81999900 T some_fn\nffffffff81999a00 t other_fn\n\
             ffffffffc0400000 t mod_fn\t[mymod]\n0000000000000000 T hidden\nffffffff82000000 D data\n",
        );
        assert_eq!(
            syms.symbolize(0xffffffff81999999).as_deref(),
            Some("some_fn+0x99")
        );
        assert_eq!(
            syms.symbolize(0xffffffffc0400010).as_deref(),
            Some("mod_fn+0x10 [mymod]")
        );
        let s = parse_stats(STATS).unwrap();
        let mut l = leaks(&s, &LeakQuery::default());
        symbolize(&mut l, &syms);
        assert!(l.iter().any(|l| l.caller == "some_fn+0x99"));
        assert!(!is_bare_address("alloc_pipe_info+0x3e/0x1c0"));
        assert!(Kallsyms::parse("0000000000000000 T x\n").is_empty());
    }

    const STACKS: &str = "\
# stacks: sample_every 8 slots 2048 depth 32 sampled 40 dropped 2 available 1

stack 1 allocs 6 bytes 1152 frames 5
 kml_on_alloc+0x2f6/0x310 [kmlink]
 __kmalloc_cache_noprof+0x1f4/0x2b0
 alloc_pipe_info+0x3e/0x1c0
 do_pipe2+0x2e/0xe0
 do_syscall_64+0x82/0x190

stack 2 allocs 3 bytes 576 frames 6
 kml_on_alloc+0x2f6/0x310 [kmlink]
 kml_kretprobe_ret+0x10/0x20 [kmlink]
 arch_rethook_trampoline+0x2c/0x60
 alloc_pipe_info+0x3e/0x1c0
 do_pipe2+0x2e/0xe0
 do_syscall_64+0x82/0x190

stack 3 allocs 9 bytes 9216 frames 4
 __kmalloc_noprof+0x2a9/0x420
 alloc_pipe_info+0x6a/0x1c0
 do_pipe2+0x2e/0xe0
 do_syscall_64+0x82/0x190

stack 4 allocs 20 bytes 1280 frames 3
 __kmalloc_noprof+0x2a9/0x420
 seq_read_iter+0x11c/0x4b0
 do_syscall_64+0x82/0x190

stack 5 allocs 1 bytes 64 frames 3
 __kmalloc_noprof+0x2a9/0x420
 0xffffffff81999999
 do_syscall_64+0x82/0x190
";

    #[test]
    fn stacks_are_cut_at_their_call_site_and_summed() {
        let s = parse_stats(STATS).unwrap();
        let st = crate::parse_stacks(STACKS).unwrap();
        let mut l = leaks(&s, &LeakQuery::default());
        attach_stacks(&mut l, &st);
        let by = |c: &str| l.iter().find(|l| l.caller == c).unwrap();
        // Stacks 1 and 2 differ only inside the allocator and the monitor.
        let a = by("alloc_pipe_info+0x3e/0x1c0");
        assert_eq!(
            a.stacks,
            [SitePath {
                allocs: 9,
                bytes: 1728,
                frames: vec![
                    "alloc_pipe_info+0x3e/0x1c0".into(),
                    "do_pipe2+0x2e/0xe0".into(),
                    "do_syscall_64+0x82/0x190".into()
                ],
            }]
        );
        assert_eq!(by("alloc_pipe_info+0x6a/0x1c0").stacks[0].allocs, 9);
        // No sampled stack went through jbd2_alloc.
        assert!(by("jbd2_alloc+0x10/0x40 [jbd2]").stacks.is_empty());
        // A bare address matches the frame printed the same way; naming it
        // afterwards keeps its stacks.
        assert_eq!(by("0xffffffff81999999").stacks.len(), 1);
        symbolize(&mut l, &Kallsyms::parse("ffffffff81999900 T some_fn\n"));
        let named = l.iter().find(|l| l.caller == "some_fn+0x99").unwrap();
        assert_eq!(named.stacks[0].frames[0], "0xffffffff81999999");
    }

    #[test]
    fn json_document() {
        let s = parse_stats(STATS).unwrap();
        let st = crate::parse_stacks(STACKS).unwrap();
        let q = LeakQuery {
            min_age: Duration::from_millis(1500),
            top: Some(2),
            sort: LeakSort::Bytes,
        };
        let mut l = leaks(&s, &q);
        let plain = serde_json::to_value(leaks_json(&s, &q, &l, None)).unwrap();
        assert_eq!(plain["format"], LEAKS_FORMAT);
        assert_eq!(plain["min_age_s"], 1.5);
        assert_eq!(plain["sort"], "bytes");
        assert!(plain["stacks"].is_null());
        assert!(plain["callsites"][0]["stacks"].is_null());
        assert_eq!(plain["callsites"][0]["call_site"], "0xffffffff81301260");
        assert_eq!(plain["callsites"][0]["oldest_age_ns"], 4_900_000_000u64);
        assert_eq!(plain["bytes"], 99328 + 18624);
        attach_stacks(&mut l, &st);
        let doc = serde_json::to_value(leaks_json(&s, &q, &l, Some(&st))).unwrap();
        assert_eq!(doc["stacks"]["sample_every"], 8);
        assert_eq!(doc["stacks"]["dropped"], 2);
        assert_eq!(doc["callsites"][1]["stacks"][0]["allocs"], 9);
        assert_eq!(
            doc["callsites"][1]["stacks"][0]["frames"][1],
            "do_pipe2+0x2e/0xe0"
        );
    }

    #[test]
    fn sort_names() {
        assert_eq!(LeakSort::parse("bytes"), Ok(LeakSort::Bytes));
        assert!(LeakSort::parse("size").is_err());
    }
}
