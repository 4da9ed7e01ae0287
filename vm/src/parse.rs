//! Parsing of what the guest printed on its serial console: noise stripping,
//! the markers written by the generated `/init`, and kernel problem detection.

use std::fmt;

/// Prefix shared by every marker `/init` prints.
pub(crate) const MARKER_PREFIX: &str = "@@KMLINK-";
/// Printed by `/init` once the guest userspace is up.
pub(crate) const BOOT: &str = "@@KMLINK-BOOT@@";
/// Followed by the value of `/proc/sys/kernel/tainted` before the script.
pub(crate) const TAINT_BEFORE: &str = "@@KMLINK-TAINT-BEFORE@@";
/// Followed by the value of `/proc/sys/kernel/tainted` after the script.
pub(crate) const TAINT_AFTER: &str = "@@KMLINK-TAINT-AFTER@@";
/// Opens the test script's output.
pub(crate) const OUT_BEGIN: &str = "@@KMLINK-OUT-BEGIN@@";
/// Closes the test script's output; followed by ` rc=N`.
pub(crate) const OUT_END: &str = "@@KMLINK-OUT-END@@";
/// Opens the dmesg dump.
pub(crate) const DMESG_BEGIN: &str = "@@KMLINK-DMESG-BEGIN@@";
/// Closes the dmesg dump.
pub(crate) const DMESG_END: &str = "@@KMLINK-DMESG-END@@";

/// Removes terminal noise from raw console bytes: ANSI/VT100 escape
/// sequences (CSI, OSC, two-byte escapes), carriage returns, and other C0
/// control characters except newline and tab. Invalid UTF-8 is replaced.
pub fn strip_noise(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters/intermediates until a final byte 0x40..=0x7e.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: until BEL or ST (ESC \).
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                // Character-set selection etc.: ESC ( B takes one more byte.
                Some('(') | Some(')') | Some('#') => {
                    chars.next();
                }
                // Any other two-byte escape (ESC c, ESC 7, ESC =, ...).
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// What the markers in a serial capture say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Whether the boot marker was seen.
    pub booted: bool,
    /// Output of the test script (between the output markers, or up to the
    /// end of the capture if the end marker never came).
    pub output: String,
    /// The script's exit status, if the end marker was seen.
    pub exit_status: Option<i32>,
    /// Taint before the script.
    pub taint_before: Option<u64>,
    /// Taint after the script.
    pub taint_after: Option<u64>,
    /// The dmesg dump (possibly truncated if the capture was cut off).
    pub dmesg: String,
    /// Kernel problems found.
    pub problems: Vec<Problem>,
}

/// Finds `marker` at the start of a line in `s` at or after byte `from`.
/// Returns the byte offset of the marker.
fn find_line_marker(s: &str, marker: &str, from: usize) -> Option<usize> {
    let mut pos = from;
    while let Some(rel) = s.get(pos..)?.find(marker) {
        let at = pos + rel;
        if at == 0 || s.as_bytes()[at - 1] == b'\n' {
            return Some(at);
        }
        pos = at + marker.len();
    }
    None
}

/// Byte offset just past the end of the line containing `at`.
fn line_end(s: &str, at: usize) -> usize {
    s[at..].find('\n').map_or(s.len(), |i| at + i + 1)
}

/// Parses a number following `marker` (which must begin a line).
fn marker_number<T: std::str::FromStr>(s: &str, marker: &str) -> Option<T> {
    let at = find_line_marker(s, marker, 0)?;
    let rest = &s[at + marker.len()..line_end(s, at)];
    rest.trim().parse().ok()
}

/// Parses a cleaned serial capture (see [`strip_noise`]).
pub fn parse_serial(serial: &str) -> Parsed {
    let mut p = Parsed {
        booted: find_line_marker(serial, BOOT, 0).is_some(),
        taint_before: marker_number(serial, TAINT_BEFORE),
        taint_after: marker_number(serial, TAINT_AFTER),
        ..Parsed::default()
    };

    // Regions of the capture: (start, end) byte ranges of the script output
    // and of the dmesg dump, including their marker lines.
    let mut out_region = None;
    if let Some(begin) = find_line_marker(serial, OUT_BEGIN, 0) {
        let body_start = line_end(serial, begin);
        // The end marker may follow script output that lacked a final
        // newline, so it need not start a line.
        let end = serial[body_start..]
            .match_indices(OUT_END)
            .map(|(i, _)| body_start + i)
            .find(|&at| {
                let rest = &serial[at + OUT_END.len()..line_end(serial, at)];
                rest.trim_end()
                    .strip_prefix(" rc=")
                    .is_some_and(|n| n.parse::<i32>().is_ok())
            });
        match end {
            Some(end) => {
                p.output = serial[body_start..end].to_string();
                let rc_line = &serial[end + OUT_END.len()..line_end(serial, end)];
                p.exit_status = rc_line
                    .trim()
                    .strip_prefix("rc=")
                    .and_then(|n| n.parse().ok());
                out_region = Some((begin, line_end(serial, end)));
            }
            None => {
                p.output = serial[body_start..].to_string();
                out_region = Some((begin, serial.len()));
            }
        }
    }

    let mut dmesg_region = None;
    let dmesg_search_from = out_region.map_or(0, |(_, e)| e.min(serial.len()));
    if let Some(begin) = find_line_marker(serial, DMESG_BEGIN, dmesg_search_from) {
        let body_start = line_end(serial, begin);
        match find_line_marker(serial, DMESG_END, body_start) {
            Some(end) => {
                p.dmesg = serial[body_start..end].to_string();
                dmesg_region = Some((begin, line_end(serial, end)));
            }
            None => {
                p.dmesg = serial[body_start..].to_string();
                dmesg_region = Some((begin, serial.len()));
            }
        }
    }

    // Problems: everything in the dmesg dump, plus console lines outside the
    // script output and the dump, plus kernel-looking (timestamped) lines
    // that ended up inside the script output.
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut add = |line: &str, problems: &mut Vec<Problem>| {
        if let Some(kind) = classify_line(line) {
            let key = strip_timestamp(line).trim().to_string();
            if seen.insert((kind, key)) {
                problems.push(Problem {
                    kind,
                    line: line.trim_end().to_string(),
                });
            }
        }
    };
    for line in p.dmesg.lines() {
        add(line, &mut problems);
    }
    let mut offset = 0;
    for line in serial.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let inside = |r: Option<(usize, usize)>| r.is_some_and(|(b, e)| start >= b && start < e);
        if inside(dmesg_region) {
            continue;
        }
        if inside(out_region) && !has_timestamp(line) {
            continue;
        }
        add(line, &mut problems);
    }
    p.problems = problems;
    p
}

/// Converts `/dev/kmsg` records (`prio,seq,usec,flags;text`, followed by
/// indented `KEY=value` dictionary lines) to `dmesg`-style lines
/// (`[    1.234567] text`). Lines that are not records are kept as they are.
pub fn kmsg_to_dmesg(kmsg: &str) -> String {
    let mut out = String::with_capacity(kmsg.len());
    for line in kmsg.lines() {
        if line.starts_with(' ') {
            continue; // dictionary continuation
        }
        let record = line.split_once(';').and_then(|(head, text)| {
            let mut f = head.split(',');
            let _prio: u32 = f.next()?.parse().ok()?;
            let _seq: u64 = f.next()?.parse().ok()?;
            let usec: u64 = f.next()?.parse().ok()?;
            Some((usec, text))
        });
        match record {
            Some((usec, text)) => {
                out.push_str(&format!(
                    "[{:5}.{:06}] {}\n",
                    usec / 1_000_000,
                    usec % 1_000_000,
                    text
                ));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Adds the problems found in `text` to `problems`, skipping lines already
/// reported (compared without their timestamps).
pub(crate) fn merge_problems(problems: &mut Vec<Problem>, text: &str) {
    for p in find_problems(text) {
        let key = strip_timestamp(&p.line).trim();
        if !problems
            .iter()
            .any(|q| q.kind == p.kind && strip_timestamp(&q.line).trim() == key)
        {
            problems.push(p);
        }
    }
}

/// Whether a line starts with a printk timestamp like `[    1.234567]`.
fn has_timestamp(line: &str) -> bool {
    strip_timestamp(line).len() != line.len()
}

/// Removes a leading printk timestamp (`[    1.234567] `) if present.
fn strip_timestamp(line: &str) -> &str {
    let Some(rest) = line.strip_prefix('[') else {
        return line;
    };
    let Some(close) = rest.find(']') else {
        return line;
    };
    let inner = rest[..close].trim();
    let is_time = !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit() || c == '.');
    if is_time {
        rest[close + 1..].trim_start()
    } else {
        line
    }
}

/// Kind of kernel problem spotted in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// `WARNING:` (a `WARN()` splat).
    Warning,
    /// `BUG:`, `kernel BUG at`, `UBSAN:`.
    Bug,
    /// `Oops`.
    Oops,
    /// `general protection fault`.
    GeneralProtection,
    /// `Call Trace` (a stack dump).
    CallTrace,
    /// `Unknown symbol` (module references a symbol the kernel lacks).
    UnknownSymbol,
    /// `disagrees about version of symbol` (CRC mismatch).
    SymbolVersionMismatch,
    /// `no symbol version for`.
    NoSymbolVersion,
    /// `invalid module format`.
    InvalidModuleFormat,
    /// `Invalid relocation` / `Skipping invalid relocation` / `Unknown rela relocation`.
    InvalidRelocation,
    /// `Unpatched return thunk in use`.
    UnpatchedReturnThunk,
    /// `Kernel panic`.
    KernelPanic,
    /// `version magic '...' should be '...'`.
    VersionMagic,
}

impl ProblemKind {
    /// Short stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Warning => "warning",
            ProblemKind::Bug => "bug",
            ProblemKind::Oops => "oops",
            ProblemKind::GeneralProtection => "general-protection",
            ProblemKind::CallTrace => "call-trace",
            ProblemKind::UnknownSymbol => "unknown-symbol",
            ProblemKind::SymbolVersionMismatch => "symbol-version-mismatch",
            ProblemKind::NoSymbolVersion => "no-symbol-version",
            ProblemKind::InvalidModuleFormat => "invalid-module-format",
            ProblemKind::InvalidRelocation => "invalid-relocation",
            ProblemKind::UnpatchedReturnThunk => "unpatched-return-thunk",
            ProblemKind::KernelPanic => "kernel-panic",
            ProblemKind::VersionMagic => "version-magic",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kernel problem found in the guest's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The log line it was found in.
    pub line: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.kind, self.line)
    }
}

/// Case-sensitive substring patterns, checked in order.
const PATTERNS: &[(&str, ProblemKind)] = &[
    ("Kernel panic", ProblemKind::KernelPanic),
    ("general protection fault", ProblemKind::GeneralProtection),
    ("general protection", ProblemKind::GeneralProtection),
    ("Oops", ProblemKind::Oops),
    ("kernel BUG at", ProblemKind::Bug),
    ("BUG:", ProblemKind::Bug),
    ("UBSAN:", ProblemKind::Bug),
    ("Call Trace", ProblemKind::CallTrace),
    ("Unknown symbol", ProblemKind::UnknownSymbol),
    (
        "disagrees about version",
        ProblemKind::SymbolVersionMismatch,
    ),
    ("no symbol version", ProblemKind::NoSymbolVersion),
    ("nvalid module format", ProblemKind::InvalidModuleFormat),
    // 6.4+: "module foo: .gnu.linkonce.this_module section size must match
    // the kernel's built struct module size at run time" (struct module
    // layout differs, i.e. the module was built for another kernel).
    ("section size must match", ProblemKind::InvalidModuleFormat),
    ("Invalid ELF header", ProblemKind::InvalidModuleFormat),
    ("Module len", ProblemKind::InvalidModuleFormat),
    ("overflow in relocation", ProblemKind::InvalidRelocation),
    ("nvalid relocation", ProblemKind::InvalidRelocation),
    ("Unknown rela relocation", ProblemKind::InvalidRelocation),
    ("Unpatched return thunk", ProblemKind::UnpatchedReturnThunk),
    ("version magic", ProblemKind::VersionMagic),
    ("WARNING:", ProblemKind::Warning),
];

/// Lines that match a pattern above but are known to be harmless. Each
/// entry is a substring; a line containing it is never flagged.
const BENIGN: &[&str] = &[
    // Printed by every kernel booted under QEMU TCG with `-cpu max` on
    // some hosts/kernels; a statement about CPU mitigations, not a splat.
    "Spectre v2 mitigation leaves CPU vulnerable to RETBleed",
    "WARNING: Unprivileged eBPF is enabled",
];

/// Classifies one log line; `None` if it is not a problem.
///
/// Expected module-loading messages are not problems: `module verification
/// failed: signature and/or required key missing - tainting kernel` (Debian
/// kernels print it for every unsigned module), `loading out-of-tree module
/// taints kernel.`, and `module license '...' taints kernel.`.
pub fn classify_line(line: &str) -> Option<ProblemKind> {
    if BENIGN.iter().any(|b| line.contains(b)) {
        return None;
    }
    // Markers printed by /init never count.
    if line.contains(MARKER_PREFIX) {
        return None;
    }
    PATTERNS
        .iter()
        .find(|(pat, _)| line.contains(pat))
        .map(|&(_, kind)| kind)
}

/// Finds problems in arbitrary log text (every line is considered).
pub fn find_problems(text: &str) -> Vec<Problem> {
    text.lines()
        .filter_map(|line| {
            classify_line(line).map(|kind| Problem {
                kind,
                line: line.trim_end().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_problem_lines() {
        let cases: &[(&str, ProblemKind)] = &[
            ("[   12.345678] WARNING: CPU: 0 PID: 75 at kernel/module/main.c:123 foo+0x1/0x2", ProblemKind::Warning),
            ("[    3.1] BUG: kernel NULL pointer dereference, address: 0000000000000000", ProblemKind::Bug),
            ("[    3.1] BUG: unable to handle page fault for address: ffffffffc0000000", ProblemKind::Bug),
            ("[    3.1] kernel BUG at mm/slub.c:42!", ProblemKind::Bug),
            ("[    3.2] Oops: 0002 [#1] PREEMPT SMP NOPTI", ProblemKind::Oops),
            ("[    3.2] Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1]", ProblemKind::GeneralProtection),
            ("[    3.2] general protection fault: 0000 [#1] SMP PTI", ProblemKind::GeneralProtection),
            ("[    3.3] Call Trace:", ProblemKind::CallTrace),
            ("[    3.3]  <TASK>  Call Trace:", ProblemKind::CallTrace),
            ("[    4.0] hello: Unknown symbol foo_bar (err -2)", ProblemKind::UnknownSymbol),
            ("[    4.0] crc7: disagrees about version of symbol module_layout", ProblemKind::SymbolVersionMismatch),
            ("[    4.0] hello: no symbol version for printk", ProblemKind::NoSymbolVersion),
            ("insmod: can't insert 'x.ko': invalid module format", ProblemKind::InvalidModuleFormat),
            ("[    4.0] hello: Invalid relocation target, existing value is nonzero for type 1", ProblemKind::InvalidRelocation),
            ("[    4.0] hello: Skipping invalid relocation target, existing value is nonzero for type 1", ProblemKind::InvalidRelocation),
            ("[    4.0] hello: Unknown rela relocation: 42", ProblemKind::InvalidRelocation),
            ("[    4.8] module crc_itu_t: .gnu.linkonce.this_module section size must match the kernel's built struct module size at run time", ProblemKind::InvalidModuleFormat),
            ("[    4.0] Invalid ELF header len 12", ProblemKind::InvalidModuleFormat),
            ("[    4.0] Module len 1234 truncated", ProblemKind::InvalidModuleFormat),
            ("[    4.0] hello: overflow in relocation type 10 val ffffffffc0001000", ProblemKind::InvalidRelocation),
            ("[    4.0] Unpatched return thunk in use. This should not happen!", ProblemKind::UnpatchedReturnThunk),
            ("[    5.0] Kernel panic - not syncing: Fatal exception", ProblemKind::KernelPanic),
            ("[    5.0] ---[ end Kernel panic - not syncing: Attempted to kill init! ]---", ProblemKind::KernelPanic),
            ("[    4.0] crc7: version magic '6.1.0-47-amd64 SMP preempt mod_unload modversions ' should be '6.12.107+deb13-amd64 SMP preempt mod_unload modversions '", ProblemKind::VersionMagic),
            ("[    6.0] UBSAN: array-index-out-of-bounds in foo.c:1:2", ProblemKind::Bug),
        ];
        for (line, kind) in cases {
            assert_eq!(classify_line(line), Some(*kind), "line {line:?}");
        }
    }

    #[test]
    fn does_not_flag_benign_lines() {
        let lines = [
            "[    4.1] crc7: module verification failed: signature and/or required key missing - tainting kernel",
            "[    4.1] hello: loading out-of-tree module taints kernel.",
            "[    4.1] hello: module license 'Proprietary' taints kernel.",
            "[    4.1] hello: module license 'unspecified' taints kernel.",
            "[    4.1] Disabling lock debugging due to kernel taint",
            "[    0.0] Linux version 6.1.0-47-amd64 (debian-kernel@lists.debian.org)",
            "[    0.2] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leak possible!",
            "[    0.2] Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible via Spectre v2 BHB attacks!",
            "@@KMLINK-OUT-END@@ rc=0",
            "some script output with bug: in lowercase",
            "",
        ];
        for line in lines {
            assert_eq!(classify_line(line), None, "line {line:?}");
        }
    }

    #[test]
    fn strips_ansi_and_cr() {
        let raw =
            b"\x1b[2J\x1b[01;01HSeaBIOS\r\n\x1bc\x1b]0;title\x07hello\x1b(B world\r\r\n\x00bye";
        assert_eq!(strip_noise(raw), "SeaBIOS\nhello world\nbye");
    }

    fn sample_capture() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"\x1b[2J\x1b[HSeaBIOS (version 1.16)\r\n");
        s.extend_from_slice(b"[    0.000000] Linux version 6.1.0-47-amd64\r\n");
        s.extend_from_slice(b"[    1.000000] BUG: early boot problem\r\n");
        s.extend_from_slice(b"@@KMLINK-BOOT@@\r\n");
        s.extend_from_slice(b"@@KMLINK-TAINT-BEFORE@@ 0\r\n");
        s.extend_from_slice(b"@@KMLINK-OUT-BEGIN@@\r\n");
        s.extend_from_slice(b"Linux version 6.1.0-47-amd64\r\n");
        s.extend_from_slice(b"script says WARNING: not a kernel line\r\n");
        s.extend_from_slice(
            b"[    9.000000] Kernel panic - not syncing: a kernel line on the console\r\n",
        );
        s.extend_from_slice(b"no newline at end");
        s.extend_from_slice(b"@@KMLINK-OUT-END@@ rc=3\r\n");
        s.extend_from_slice(b"@@KMLINK-TAINT-AFTER@@ 12288\r\n");
        s.extend_from_slice(b"@@KMLINK-DMESG-BEGIN@@\r\n");
        s.extend_from_slice(b"[    0.000000] Linux version 6.1.0-47-amd64\r\n");
        s.extend_from_slice(b"[    1.000000] BUG: early boot problem\r\n");
        s.extend_from_slice(b"[    5.000000] crc7: module verification failed: signature and/or required key missing - tainting kernel\r\n");
        s.extend_from_slice(
            b"[    5.100000] crc7: disagrees about version of symbol module_layout\r\n",
        );
        s.extend_from_slice(b"@@KMLINK-DMESG-END@@\r\n");
        s.extend_from_slice(b"[   10.000000] reboot: Power down\r\n");
        s
    }

    #[test]
    fn parses_full_capture() {
        let serial = strip_noise(&sample_capture());
        let p = parse_serial(&serial);
        assert!(p.booted);
        assert_eq!(p.taint_before, Some(0));
        assert_eq!(p.taint_after, Some(12288));
        assert_eq!(p.exit_status, Some(3));
        assert_eq!(
            p.output,
            "Linux version 6.1.0-47-amd64\nscript says WARNING: not a kernel line\n\
             [    9.000000] Kernel panic - not syncing: a kernel line on the console\n\
             no newline at end"
        );
        assert!(p.dmesg.starts_with("[    0.000000] Linux version"));
        assert!(p.dmesg.ends_with("module_layout\n"));
        let kinds: Vec<_> = p.problems.iter().map(|p| p.kind).collect();
        // The boot BUG line appears twice (console + dmesg) but is reported once.
        assert_eq!(
            kinds,
            vec![
                ProblemKind::Bug,
                ProblemKind::SymbolVersionMismatch,
                ProblemKind::KernelPanic
            ],
            "{:#?}",
            p.problems
        );
    }

    #[test]
    fn parses_capture_cut_off_mid_script() {
        let full = sample_capture();
        let cut = b"@@KMLINK-OUT-END";
        let at = full
            .windows(cut.len())
            .position(|w| w == cut)
            .expect("marker present");
        let serial = strip_noise(&full[..at]);
        let p = parse_serial(&serial);
        assert!(p.booted);
        assert_eq!(p.taint_before, Some(0));
        assert_eq!(p.exit_status, None);
        assert_eq!(p.taint_after, None);
        assert!(p.output.starts_with("Linux version 6.1.0-47-amd64\n"));
        assert!(p.output.ends_with("no newline at end"));
        assert_eq!(p.dmesg, "");
        // The timestamped panic line inside the (unterminated) output counts.
        assert!(p
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::KernelPanic));
        assert!(!p.problems.iter().any(|p| p.kind == ProblemKind::Warning));
    }

    #[test]
    fn parses_capture_without_boot() {
        let p =
            parse_serial("[    0.1] Kernel panic - not syncing: VFS: Unable to mount root fs\n");
        assert!(!p.booted);
        assert_eq!(p.exit_status, None);
        assert_eq!(p.output, "");
        assert_eq!(p.problems.len(), 1);
        assert_eq!(p.problems[0].kind, ProblemKind::KernelPanic);
    }

    #[test]
    fn marker_must_start_line_and_have_rc() {
        // A script that prints a fake marker mid-line (e.g. `cat /init` would
        // not, since /init assembles its markers at run time).
        let s = "@@KMLINK-OUT-BEGIN@@\nx @@KMLINK-OUT-END@@ nope\nreal\n@@KMLINK-OUT-END@@ rc=0\n";
        let p = parse_serial(s);
        assert_eq!(p.exit_status, Some(0));
        assert_eq!(p.output, "x @@KMLINK-OUT-END@@ nope\nreal\n");
    }

    #[test]
    fn kmsg_records_become_dmesg_lines() {
        let kmsg = "6,1,0,-;Linux version 6.1.0\n\
                    4,2,1234567,-;WARNING: CPU: 0 PID: 1 at x\n SUBSYSTEM=cpu\n DEVICE=+cpu:0\n\
                    not a record\n";
        let d = kmsg_to_dmesg(kmsg);
        assert_eq!(
            d,
            "[    0.000000] Linux version 6.1.0\n\
             [    1.234567] WARNING: CPU: 0 PID: 1 at x\n\
             not a record\n"
        );
        let mut problems = vec![Problem {
            kind: ProblemKind::Warning,
            line: "[ 1.2] WARNING: CPU: 0 PID: 1 at x".into(),
        }];
        merge_problems(&mut problems, &d);
        assert_eq!(problems.len(), 1);
        merge_problems(&mut problems, "[ 2.0] Kernel panic - not syncing: x\n");
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn timestamp_stripping() {
        assert_eq!(strip_timestamp("[    1.234567] foo"), "foo");
        assert_eq!(strip_timestamp("[foo] bar"), "[foo] bar");
        assert_eq!(strip_timestamp("plain"), "plain");
        assert!(has_timestamp("[12.5] x"));
        assert!(!has_timestamp("[ ] x"));
    }
}
