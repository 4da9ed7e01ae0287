//! Drawing one frame of `kmlink top`.

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::{Frame, Terminal};
use unicode_width::UnicodeWidthStr;

use super::{Pane, TopState, COLUMNS};
use crate::cgroup::display_name;
use crate::stats::{CacheKey, CgroupKey, Counters, ProcessKey};
use crate::view::{select, sort_rows, Filter, Rate, SortKey, View, ViewRow};

/// Counts: exact below 100000, then 3–4 significant digits with k/M/G.
pub(crate) fn fmt_count(n: u64) -> String {
    if n < 100_000 {
        n.to_string()
    } else {
        scaled(n as f64, 1000.0, &["", "k", "M", "G", "T", "P"])
    }
}

/// Per-second values: one decimal below 10.
pub(crate) fn fmt_rate(x: f64) -> String {
    if x == 0.0 {
        "0".to_string()
    } else if x < 10.0 {
        format!("{x:.1}")
    } else if x < 100_000.0 {
        format!("{x:.0}")
    } else {
        scaled(x, 1000.0, &["", "k", "M", "G", "T", "P"])
    }
}

/// Bytes with binary suffixes (K = 1024).
pub(crate) fn fmt_bytes(x: f64) -> String {
    if x < 1024.0 {
        format!("{x:.0}")
    } else {
        scaled(x, 1024.0, &["", "K", "M", "G", "T", "P"])
    }
}

fn scaled(mut x: f64, base: f64, units: &[&str]) -> String {
    let mut i = 0;
    while x >= base * 0.9995 && i + 1 < units.len() {
        x /= base;
        i += 1;
    }
    if x < 10.0 {
        format!("{x:.2}{}", units[i])
    } else if x < 100.0 {
        format!("{x:.1}{}", units[i])
    } else {
        format!("{x:.0}{}", units[i])
    }
}

/// `3d04h`, `1h02m`, `2m03s`, `45s`.
pub(crate) fn fmt_uptime(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn header_lines(view: &View, state: &TopState) -> Vec<Line<'static>> {
    let s = &view.stats;
    let m = s.monitor.as_ref();
    let release = m
        .and_then(|m| m.release.clone())
        .or_else(|| state.uname_release.clone())
        .unwrap_or_else(|| "?".to_string());
    let backend = m
        .and_then(|m| m.backend.clone())
        .unwrap_or_else(|| "?".to_string());
    let uptime = m
        .and_then(|m| m.uptime_ns)
        .map(fmt_uptime)
        .unwrap_or_else(|| "?".to_string());
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut first = vec![
        Span::styled("kmlink top", bold),
        Span::raw(format!(
            "  {release}  backend {backend}  up {uptime}  every {:.1}s  sort {}{}",
            state.interval.as_secs_f64(),
            state.sort,
            if state.reverse { " (reversed)" } else { "" },
        )),
    ];
    if !state.filter.is_empty() {
        first.push(Span::raw(format!("  filter {:?}", state.filter)));
    }
    if state.paused {
        first.push(Span::styled(
            "  PAUSED",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    if m.and_then(|m| m.paused) == Some(true) {
        first.push(Span::styled(
            "  monitor paused (resume: echo resume > /proc/kmlink/control)",
            Style::new().fg(Color::Yellow),
        ));
    }

    let mut second = Vec::new();
    match view.interval_s {
        Some(secs) => {
            let sum = view
                .processes
                .iter()
                .filter_map(|r| r.rate)
                .fold(Rate::default(), |a, r| Rate {
                    allocs_per_s: a.allocs_per_s + r.allocs_per_s,
                    frees_per_s: a.frees_per_s + r.frees_per_s,
                    bytes_per_s: a.bytes_per_s + r.bytes_per_s,
                });
            second.push(Span::raw(format!(
                "last {secs:.1}s: {} allocs/s  {} frees/s  {}B/s",
                fmt_rate(sum.allocs_per_s),
                fmt_rate(sum.frees_per_s),
                fmt_bytes(sum.bytes_per_s)
            )));
        }
        None => {
            let t = s.totals.unwrap_or_default();
            second.push(Span::raw(format!(
                "since load: {} allocs  {} frees  {}B  (rates from the next refresh)",
                fmt_count(t.allocs),
                fmt_count(t.frees),
                fmt_bytes(t.bytes as f64)
            )));
        }
    }
    let mut third = vec![Span::raw("dropped:")];
    if view.dropped.is_empty() {
        third.push(Span::raw(" (the monitor does not count drops)"));
    }
    for d in &view.dropped {
        let style = if d.count > 0 {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        };
        let rate = match d.per_s {
            Some(r) if r > 0.0 => format!(" (+{}/s)", fmt_rate(r)),
            _ => String::new(),
        };
        third.push(Span::styled(
            format!(" {} {}{rate}", d.reason, fmt_count(d.count)),
            style,
        ));
        third.push(Span::raw(" "));
    }
    let mut lines = vec![Line::from(first), Line::from(second), Line::from(third)];
    if view.reset {
        lines.push(Line::styled(
            "counters were cleared since the previous refresh",
            Style::new().fg(Color::Yellow),
        ));
    }
    if let Some(msg) = &state.message {
        lines.push(Line::styled(
            msg.clone(),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    lines
}

/// The columns that fit in `width`, dropping the highest priority numbers
/// first; `pid` tells whether the table has a PID column.
fn fit_columns(width: u16, pid: bool) -> Vec<usize> {
    let mut cols: Vec<usize> = (0..COLUMNS.len())
        .filter(|&i| pid || COLUMNS[i].0 != SortKey::Pid)
        .collect();
    let need = |cols: &[usize]| -> u32 {
        cols.iter()
            .map(|&i| u32::from(COLUMNS[i].4) + 1)
            .sum::<u32>()
    };
    while need(&cols) > u32::from(width) {
        let Some((at, _)) = cols
            .iter()
            .enumerate()
            .filter(|(_, &i)| COLUMNS[i].5 > 0)
            .max_by_key(|(_, &i)| COLUMNS[i].5)
        else {
            break;
        };
        cols.remove(at);
    }
    cols
}

fn cell_value(
    key: SortKey,
    name: String,
    pid: Option<u32>,
    c: &Counters,
    r: Option<&Rate>,
) -> (String, bool) {
    let rate = |f: fn(&Rate) -> f64, bytes: bool| match r {
        Some(r) if bytes => fmt_bytes(f(r)),
        Some(r) => fmt_rate(f(r)),
        None => "-".to_string(),
    };
    match key {
        SortKey::Pid => (
            pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            true,
        ),
        SortKey::Name => (name, false),
        SortKey::AllocRate => (rate(|r| r.allocs_per_s, false), true),
        SortKey::FreeRate => (rate(|r| r.frees_per_s, false), true),
        SortKey::ByteRate => (rate(|r| r.bytes_per_s, true), true),
        SortKey::Outstanding => (
            c.outstanding
                .map(|o| fmt_bytes(o as f64))
                .unwrap_or_else(|| "-".into()),
            true,
        ),
        SortKey::Allocs => (fmt_count(c.allocs), true),
        SortKey::Frees => (fmt_count(c.frees), true),
        SortKey::Bytes => (fmt_bytes(c.bytes as f64), true),
        SortKey::BytesReq => (
            c.bytes_req
                .map(|b| fmt_bytes(b as f64))
                .unwrap_or_else(|| "-".into()),
            true,
        ),
    }
}

struct TableData<'a> {
    title: String,
    cols: Vec<usize>,
    processes: bool,
    /// The name column's title when it is neither COMM nor CACHE.
    name_title: Option<&'static str>,
    /// The name column's width, when wider than in [`COLUMNS`] (the cgroup
    /// view gives paths the terminal's spare columns).
    name_width: Option<u16>,
    rows: Vec<(String, Option<u32>, &'a Counters, Option<&'a Rate>)>,
}

fn table_widget<'a>(data: &TableData<'_>, state: &TopState, focused: bool) -> Table<'a> {
    let head_style = Style::new().add_modifier(Modifier::BOLD);
    let header = Row::new(data.cols.iter().map(|&i| {
        let (key, _, ptitle, ctitle, _, _) = COLUMNS[i];
        let title = match (key, data.name_title) {
            (SortKey::Name, Some(t)) => t,
            _ if data.processes => ptitle,
            _ => ctitle,
        };
        let numeric = !matches!(key, SortKey::Name);
        let (text, style) = if key == state.sort {
            let arrow = if key.descending() != state.reverse {
                "▼"
            } else {
                "▲"
            };
            (
                format!("{title}{arrow}"),
                head_style.add_modifier(Modifier::REVERSED),
            )
        } else {
            (title.to_string(), head_style)
        };
        let line = if numeric {
            Line::from(text).right_aligned()
        } else {
            Line::from(text)
        };
        Cell::from(line).style(style)
    }));
    let rows = data.rows.iter().map(|(name, pid, c, r)| {
        Row::new(data.cols.iter().map(|&i| {
            let (text, right) = cell_value(COLUMNS[i].0, name.clone(), *pid, c, *r);
            let line = if right {
                Line::from(text).right_aligned()
            } else {
                Line::from(text)
            };
            Cell::from(line)
        }))
    });
    let widths: Vec<Constraint> = data
        .cols
        .iter()
        .map(|&i| match (COLUMNS[i].0, data.name_width) {
            (SortKey::Name, Some(w)) => Constraint::Length(w),
            _ => Constraint::Length(COLUMNS[i].4),
        })
        .collect();
    let title_style = if focused && !state.batch {
        Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    };
    Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(
            Block::new()
                .borders(Borders::TOP)
                .title(Span::styled(data.title.clone(), title_style)),
        )
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
}

fn footer_lines(state: &TopState) -> Vec<Line<'static>> {
    let key = Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan);
    if state.editing {
        return vec![
            Line::from(vec![
                Span::styled("filter: ", key),
                Span::raw(format!("{}_", state.filter)),
            ]),
            Line::from("Enter apply  Esc clear  (comm:TEXT or cache:TEXT for one table only)"),
        ];
    }
    let mut sort = vec![Span::raw("sort:")];
    for (k, letter, ptitle, _, _, _) in COLUMNS {
        let style = if k == state.sort {
            key.add_modifier(Modifier::REVERSED)
        } else {
            key
        };
        sort.push(Span::raw(" "));
        sort.push(Span::styled(letter.to_string(), style));
        sort.push(Span::raw(format!(" {}", ptitle.to_lowercase())));
    }
    sort.push(Span::raw("  "));
    sort.push(Span::styled("< >", key));
    sort.push(Span::raw(" column  "));
    sort.push(Span::styled("r", key));
    sort.push(Span::raw(" reverse"));
    let mut other = Vec::new();
    for (k, what) in [
        ("q", "quit"),
        ("p", if state.paused { "resume" } else { "pause" }),
        ("/", "filter"),
        ("Esc", "clear filter"),
        ("Tab", "switch table"),
        (
            "c",
            if state.cgroups {
                "processes"
            } else {
                "cgroups"
            },
        ),
        ("↑↓ PgUp PgDn", "scroll"),
    ] {
        other.push(Span::styled(k, key));
        other.push(Span::raw(format!(" {what}  ")));
    }
    vec![Line::from(sort), Line::from(other)]
}

struct Prepared<'a> {
    header: Vec<Line<'static>>,
    procs: TableData<'a>,
    caches: TableData<'a>,
}

/// The name of a cgroup row in a column `width` wide: its path and what
/// the path says it is, shortened to fit keeping the leaf
/// ([`display_name`]), or the id when the path is unknown.
fn cgroup_name(key: &CgroupKey, state: &TopState, width: u16) -> String {
    match key {
        CgroupKey::Other => "(other)".to_string(),
        CgroupKey::Id(id) => match state.cgroup_paths.path(*id) {
            Some(p) => display_name(p, usize::from(width)),
            None => format!("cgroup {id}"),
        },
    }
}

/// The name column's width in the cgroup view: its usual width and the
/// terminal's spare columns, up to 64.
fn cgroup_name_width(width: u16, cols: &[usize]) -> u16 {
    let used: u32 = cols.iter().map(|&i| u32::from(COLUMNS[i].4) + 1).sum();
    let spare = u32::from(width).saturating_sub(used);
    let usual = COLUMNS
        .iter()
        .find(|c| c.0 == SortKey::Name)
        .map_or(18, |c| c.4);
    let name = u32::from(usual) + spare;
    u16::try_from(name.min(64)).unwrap_or(64)
}

/// The cgroup rows, sorted like the others.
fn cgroup_rows(view: &View, state: &TopState) -> Vec<ViewRow<CgroupKey>> {
    let mut rows = view.cgroups.clone();
    sort_rows(&mut rows, state.sort, state.reverse);
    rows
}

fn prepare<'a>(
    view: &View,
    state: &TopState,
    width: u16,
    procs: &'a [ViewRow<ProcessKey>],
    caches: &'a [ViewRow<CacheKey>],
    cgroups: &'a [ViewRow<CgroupKey>],
) -> Prepared<'a> {
    let (all_p, all_c) = (view.processes.len(), view.caches.len());
    let count = |shown: usize, all: usize| {
        if shown == all {
            format!("{all}")
        } else {
            format!("{shown} of {all}")
        }
    };
    let first = if state.cgroups {
        let cols = fit_columns(width, false);
        let name_width = cgroup_name_width(width, &cols);
        TableData {
            title: format!("cgroups ({}) ", cgroups.len()),
            cols,
            processes: false,
            name_title: Some("CGROUP"),
            name_width: Some(name_width),
            rows: cgroups
                .iter()
                .map(|r| {
                    (
                        cgroup_name(&r.key, state, name_width),
                        None,
                        &r.counts,
                        r.rate.as_ref(),
                    )
                })
                .collect(),
        }
    } else {
        TableData {
            title: format!("processes ({}) ", count(procs.len(), all_p)),
            cols: fit_columns(width, true),
            processes: true,
            name_title: None,
            name_width: None,
            rows: procs
                .iter()
                .map(|r| (r.key.comm.display(), r.key.pid, &r.counts, r.rate.as_ref()))
                .collect(),
        }
    };
    Prepared {
        header: header_lines(view, state),
        procs: first,
        caches: TableData {
            title: format!("caches ({}) ", count(caches.len(), all_c)),
            cols: fit_columns(width, false),
            processes: false,
            name_title: None,
            name_width: None,
            rows: caches
                .iter()
                .map(|r| (r.key.display(), None, &r.counts, r.rate.as_ref()))
                .collect(),
        },
    }
}

fn draw(frame: &mut Frame<'_>, view: &View, state: &mut TopState) {
    let area = frame.area();
    let filter = Filter::parse(&state.filter);
    let (procs, caches) = select(view, &filter, state.sort, state.reverse, None);
    let cgroups = cgroup_rows(view, state);
    let p = prepare(view, state, area.width, &procs, &caches, &cgroups);
    let footer = if state.batch {
        Vec::new()
    } else {
        footer_lines(state)
    };
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(p.header.len() as u16),
        Constraint::Min(0),
        Constraint::Length(footer.len() as u16),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(p.header.clone()), head);
    frame.render_widget(Paragraph::new(footer), foot);

    // Each table needs a title line and a header line besides its rows.
    let need_p = p.procs.rows.len() as u16 + 2;
    let need_c = p.caches.rows.len() as u16 + 2;
    let (hp, hc) = if need_p.saturating_add(need_c) <= body.height {
        (need_p, need_c)
    } else {
        let hc = need_c.min((body.height * 2 / 5).max(4)).min(body.height);
        (body.height - hc, hc)
    };
    let [tp, tc, _] = Layout::vertical([
        Constraint::Length(hp),
        Constraint::Length(hc),
        Constraint::Min(0),
    ])
    .areas(body);
    for (i, (data, rect)) in [(&p.procs, tp), (&p.caches, tc)].into_iter().enumerate() {
        let focused = (i == 0) == (state.focus == Pane::Processes);
        let len = data.rows.len();
        let sel = if state.batch || len == 0 {
            None
        } else {
            state.selected[i].map(|s| s.min(len - 1))
        };
        state.selected[i] = sel;
        let mut ts = TableState::default().with_selected(sel);
        frame.render_stateful_widget(table_widget(data, state, focused), rect, &mut ts);
    }
}

/// Draws one frame of `kmlink top` into `frame`.
pub fn render(frame: &mut Frame<'_>, view: &View, state: &mut TopState) {
    draw(frame, view, state);
}

/// The frame as text, `width` columns wide and as tall as it needs to be to
/// show every row (like `top -b`). Trailing spaces are trimmed.
pub fn render_text(view: &View, state: &mut TopState, width: u16) -> String {
    let filter = Filter::parse(&state.filter);
    let (procs, caches) = select(view, &filter, state.sort, state.reverse, None);
    let cgroups = cgroup_rows(view, state);
    let p = prepare(view, state, width, &procs, &caches, &cgroups);
    let footer = if state.batch { 0 } else { 2 };
    let height = p.header.len() + p.procs.rows.len() + 2 + p.caches.rows.len() + 2 + footer;
    // ratatui clamps an area of more than 65,535 cells by shrinking both
    // sides, garbling the frame: keep the width and show as many rows as
    // fit (the tables are cut like on a short terminal).
    let max_height = usize::from(u16::MAX) / usize::from(width.max(1));
    let height = u16::try_from(height.min(max_height)).unwrap_or(u16::MAX);
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(t) => t,
        Err(e) => return format!("(cannot render: {e})\n"),
    };
    if let Err(e) = terminal.draw(|f| draw(f, view, state)) {
        return format!("(cannot render: {e})\n");
    }
    buffer_text(terminal.backend().buffer())
}

/// A buffer's text, one line per row, trailing spaces trimmed.
pub(crate) fn buffer_text(buf: &Buffer) -> String {
    let Rect { width, height, .. } = buf.area;
    let mut out = String::new();
    for y in 0..height {
        let mut line = String::new();
        let mut skip = 0usize;
        for x in 0..width {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let sym = buf[(x, y)].symbol();
            line.push_str(sym);
            skip = sym.width().saturating_sub(1);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(fmt_count(99_999), "99999");
        assert_eq!(fmt_count(123_456), "123k");
        assert_eq!(fmt_count(1_234_567), "1.23M");
        assert_eq!(fmt_rate(0.0), "0");
        assert_eq!(fmt_rate(2.25), "2.2");
        assert_eq!(fmt_rate(512.4), "512");
        assert_eq!(fmt_bytes(1000.0), "1000");
        assert_eq!(fmt_bytes(1536.0), "1.50K");
        assert_eq!(fmt_bytes(24_634_928.0), "23.5M");
        assert_eq!(fmt_uptime(3_723_000_000_000), "1h02m");
        assert_eq!(fmt_uptime(45_000_000_000), "45s");
        assert_eq!(fmt_uptime(90_061_000_000_000), "1d01h");
    }

    #[test]
    fn narrow_terminals_drop_columns_by_priority() {
        let names = |w| -> Vec<SortKey> {
            fit_columns(w, true)
                .into_iter()
                .map(|i| COLUMNS[i].0)
                .collect()
        };
        assert_eq!(names(200).len(), 9);
        assert!(!names(80).contains(&SortKey::Frees));
        assert!(names(80).contains(&SortKey::Bytes));
        let narrow = names(40);
        assert!(narrow.contains(&SortKey::Name) && narrow.contains(&SortKey::ByteRate));
        assert!(!fit_columns(200, false)
            .iter()
            .any(|&i| COLUMNS[i].0 == SortKey::Pid));
    }
}
