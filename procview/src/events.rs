//! `/proc/kmlink/events`: a header line `# time_ns cpu pid tid comm event …`,
//! then one event per line, oldest first, `-` for a missing field.

use std::fmt;

use crate::name::Name;
use crate::table::{Columns, ParseError, Row};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `kmalloc`.
    Kmalloc,
    /// `kmem_cache_alloc`.
    KmemCacheAlloc,
    /// `kfree`.
    Kfree,
    /// `kmem_cache_free`.
    KmemCacheFree,
    /// `mm_page_alloc`.
    MmPageAlloc,
    /// `mm_page_free`.
    MmPageFree,
    /// A kind this version does not know, as written.
    Other(String),
}

impl EventKind {
    /// From the `event` field.
    pub fn parse(s: &str) -> Self {
        match s {
            "kmalloc" => EventKind::Kmalloc,
            "kmem_cache_alloc" => EventKind::KmemCacheAlloc,
            "kfree" => EventKind::Kfree,
            "kmem_cache_free" => EventKind::KmemCacheFree,
            "mm_page_alloc" => EventKind::MmPageAlloc,
            "mm_page_free" => EventKind::MmPageFree,
            s => EventKind::Other(s.to_string()),
        }
    }

    /// The name as written in the file.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Kmalloc => "kmalloc",
            EventKind::KmemCacheAlloc => "kmem_cache_alloc",
            EventKind::Kfree => "kfree",
            EventKind::KmemCacheFree => "kmem_cache_free",
            EventKind::MmPageAlloc => "mm_page_alloc",
            EventKind::MmPageFree => "mm_page_free",
            EventKind::Other(s) => s,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event. Every field but the time and the kind may be absent (`-`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    /// Monotonic nanoseconds, one clock across CPUs.
    pub time_ns: u64,
    /// CPU the event happened on.
    pub cpu: Option<u32>,
    /// Thread group id.
    pub pid: Option<u32>,
    /// Thread id.
    pub tid: Option<u32>,
    /// Comm of the thread.
    pub comm: Option<Name>,
    /// The kind.
    pub event: EventKind,
    /// Bytes requested.
    pub bytes_req: Option<u64>,
    /// Bytes allocated.
    pub bytes_alloc: Option<u64>,
    /// Slab cache.
    pub cache: Option<Name>,
    /// GFP flags.
    pub gfp: Option<u64>,
    /// Caller address.
    pub call_site: Option<u64>,
    /// Object address.
    pub ptr: Option<u64>,
    /// Page order (page events).
    pub order: Option<u32>,
}

fn opt_u32(row: &Row<'_>, name: &str) -> Result<Option<u32>, ParseError> {
    match row.opt_num(name)? {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| row.error(format!("column `{name}` is {v}, too large"))),
    }
}

/// Parses the text of `/proc/kmlink/events`. An empty file has no events;
/// otherwise the first line must be the header.
pub fn parse_events(text: &str) -> Result<Vec<Event>, ParseError> {
    let mut lines = text.lines().enumerate();
    let columns = loop {
        let Some((i, raw)) = lines.next() else {
            return Ok(Vec::new());
        };
        let t = raw.trim();
        if t.is_empty() {
            continue;
        }
        let Some(rest) = t.strip_prefix('#') else {
            return Err(ParseError {
                line: i + 1,
                text: raw.to_string(),
                reason: "expected the header `# time_ns cpu pid …` first".to_string(),
            });
        };
        let columns = Columns::new(rest.split_ascii_whitespace());
        if let Some(missing) = columns.missing(&["time_ns", "event"]) {
            return Err(ParseError {
                line: i + 1,
                text: raw.to_string(),
                reason: format!("the header has no `{missing}` column"),
            });
        }
        break columns;
    };
    let mut events = Vec::new();
    for (i, raw) in lines {
        let t = raw.trim_end();
        if t.trim().is_empty() || t.starts_with('#') {
            continue;
        }
        let row = Row::split(i + 1, t, &columns)?;
        events.push(Event {
            time_ns: row.num("time_ns")?,
            cpu: opt_u32(&row, "cpu")?,
            pid: opt_u32(&row, "pid")?,
            tid: opt_u32(&row, "tid")?,
            comm: row.opt_name("comm")?,
            event: EventKind::parse(row.field("event")?),
            bytes_req: row.opt_num("bytes_req")?,
            bytes_alloc: row.opt_num("bytes_alloc")?,
            cache: row.opt_name("cache")?,
            gfp: row.opt_hex("gfp")?,
            call_site: row.opt_hex("call_site")?,
            ptr: row.opt_hex("ptr")?,
            order: opt_u32(&row, "order")?,
        });
    }
    Ok(events)
}

/// Which events to keep.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Keep events whose comm is exactly this (raw, escaped or display form).
    pub comm: Option<String>,
    /// Keep events whose cache is exactly this (raw, escaped or display form).
    pub cache: Option<String>,
    /// Keep events of this tgid.
    pub pid: Option<u32>,
    /// Keep events of these kinds (empty: all).
    pub kinds: Vec<String>,
}

impl EventFilter {
    /// Whether `e` passes.
    pub fn keep(&self, e: &Event) -> bool {
        let name_ok = |want: &Option<String>, have: &Option<Name>| match (want, have) {
            (None, _) => true,
            (Some(w), Some(h)) => h.matches_exactly(w),
            (Some(w), None) => w == "-",
        };
        name_ok(&self.comm, &e.comm)
            && name_ok(&self.cache, &e.cache)
            && self.pid.is_none_or(|p| e.pid == Some(p))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == e.event.as_str()))
    }
}

/// Follows the event ring across snapshots: returns only events not returned
/// before. Events are identified by time; those sharing the newest time seen
/// are remembered in full, so two CPUs logging in the same nanosecond are
/// neither lost nor repeated.
#[derive(Debug, Default)]
pub struct Follower {
    last_ns: Option<u64>,
    at_last: Vec<Event>,
}

/// What a [`Follower`] step found.
#[derive(Debug)]
pub struct FollowStep {
    /// Events newer than those seen, oldest first.
    pub new: Vec<Event>,
    /// Whether events may have been overwritten in the ring between the two
    /// snapshots (the oldest event is newer than the last one seen and the
    /// ring was full). Only known when the ring capacity is.
    pub maybe_lost: bool,
}

impl Follower {
    /// A follower that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one snapshot (oldest first).
    pub fn step(&mut self, snapshot: Vec<Event>, ring_capacity: Option<u64>) -> FollowStep {
        let maybe_lost = match (self.last_ns, snapshot.first(), ring_capacity) {
            (Some(last), Some(first), Some(cap)) => {
                first.time_ns > last && snapshot.len() as u64 >= cap
            }
            _ => false,
        };
        let mut new = Vec::new();
        for e in snapshot {
            let fresh = match self.last_ns {
                None => true,
                Some(last) if e.time_ns > last => true,
                Some(last) if e.time_ns == last => !self.at_last.contains(&e),
                Some(_) => false,
            };
            if fresh {
                new.push(e);
            }
        }
        if let Some(newest) = new.iter().map(|e| e.time_ns).max() {
            if Some(newest) != self.last_ns {
                self.at_last.clear();
                self.last_ns = Some(newest);
            }
            self.at_last
                .extend(new.iter().filter(|e| e.time_ns == newest).cloned());
        }
        FollowStep { new, maybe_lost }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HEADER: &str =
        "# time_ns cpu pid tid comm event bytes_req bytes_alloc cache gfp call_site ptr order\n";

    #[test]
    fn parses_all_fields_and_dashes() {
        let text = format!(
            "{HEADER}\
             1000 0 91 91 find kmalloc 24 32 - 0xcc0 0xffffffff81234567 0xffff888003a1b2c0 -\n\
             1001 1 90 92 my\\x20sh kmem_cache_alloc 192 192 dentry 0x400cc0 0xffffffff81300000 0xffff888004000000 -\n\
             1002 1 - - - mm_page_alloc - - - 0x100cca - - 2\n\
             1003 0 91 91 find brand_new - - - - - - -\n"
        );
        let ev = parse_events(&text).unwrap();
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[0].event, EventKind::Kmalloc);
        assert_eq!(ev[0].gfp, Some(0xcc0));
        assert_eq!(ev[0].cache, None);
        assert_eq!(ev[0].ptr, Some(0xffff888003a1b2c0));
        assert_eq!(ev[1].comm.as_ref().unwrap().as_bytes(), b"my sh");
        assert_eq!(ev[1].tid, Some(92));
        assert_eq!(ev[2].pid, None);
        assert_eq!(ev[2].order, Some(2));
        assert_eq!(ev[3].event, EventKind::Other("brand_new".into()));
        let zero = parse_events("# time_ns event gfp ptr\n1 kfree 0 0x0\n").unwrap();
        assert_eq!((zero[0].gfp, zero[0].ptr), (Some(0), Some(0)));
    }

    #[test]
    fn columns_by_name_and_unknown_ones_ignored() {
        let ev = parse_events("# event extra time_ns comm\nkfree z 5 cat\n").unwrap();
        assert_eq!(ev[0].time_ns, 5);
        assert_eq!(ev[0].event, EventKind::Kfree);
        assert_eq!(ev[0].cpu, None);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_events("1 2 3\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse_events(&format!("{HEADER}1 0 1 1 a kmalloc 1 1 - zz - - -\n")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("`gfp`"), "{e}");
        let e = parse_events("# time_ns cpu event\n\n1 2\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse_events("# cpu event\n").unwrap_err();
        assert!(e.reason.contains("time_ns"));
        assert!(parse_events("").unwrap().is_empty());
    }

    fn ev(t: u64, pid: u32) -> Event {
        Event {
            time_ns: t,
            cpu: Some(0),
            pid: Some(pid),
            tid: Some(pid),
            comm: Some(Name::from("x")),
            event: EventKind::Kmalloc,
            bytes_req: None,
            bytes_alloc: None,
            cache: None,
            gfp: None,
            call_site: None,
            ptr: None,
            order: None,
        }
    }

    #[test]
    fn follower_prints_each_event_once() {
        let mut f = Follower::new();
        let s = f.step(vec![ev(1, 1), ev(2, 1), ev(3, 1)], None);
        assert_eq!(s.new.len(), 3);
        // Same time on another CPU, appearing only in the next snapshot.
        let s = f.step(vec![ev(2, 1), ev(3, 1), ev(3, 2), ev(4, 1)], None);
        assert_eq!(s.new, vec![ev(3, 2), ev(4, 1)]);
        let s = f.step(vec![ev(3, 2), ev(4, 1)], None);
        assert!(s.new.is_empty());
        // The ring (capacity 2) wrapped past what we saw.
        let s = f.step(vec![ev(9, 1), ev(10, 1)], Some(2));
        assert!(s.maybe_lost);
        assert_eq!(s.new.len(), 2);
    }

    #[test]
    fn filter() {
        let mut e = ev(1, 7);
        e.cache = Some(Name::from("dentry"));
        let f = EventFilter {
            comm: Some("x".into()),
            cache: Some("dentry".into()),
            pid: Some(7),
            kinds: vec!["kmalloc".into()],
        };
        assert!(f.keep(&e));
        assert!(!EventFilter {
            pid: Some(8),
            ..Default::default()
        }
        .keep(&e));
        assert!(!EventFilter {
            cache: Some("-".into()),
            ..Default::default()
        }
        .keep(&e));
        e.cache = None;
        assert!(EventFilter {
            cache: Some("-".into()),
            ..Default::default()
        }
        .keep(&e));
    }
}
