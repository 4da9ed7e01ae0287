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

use crate::stats::{SiteKey, SiteRow, Stats};

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
    })
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

    #[test]
    fn sort_names() {
        assert_eq!(LeakSort::parse("bytes"), Ok(LeakSort::Bytes));
        assert!(LeakSort::parse("size").is_err());
    }
}
