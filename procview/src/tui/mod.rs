//! `kmlink top`: a live view of the monitor in the spirit of slabtop and
//! bcc's slabratetop, per process and per cache at once.
//!
//! [`render`] draws one frame with ratatui (so the terminal backend diffs
//! frames: no flicker); [`render_text`] draws it into a text buffer for the
//! batch mode and tests; [`run_interactive`] and [`run_batch`] drive them.

use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::cgroup::CgroupPaths;
use crate::view::SortKey;

pub(crate) mod render;
mod term;

pub use render::{render, render_text};
pub use term::{run_batch, run_interactive};

/// Which table the cursor keys scroll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// The per-process table.
    Processes,
    /// The per-cache table.
    Caches,
}

/// What the caller should do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Redraw.
    Continue,
    /// Leave.
    Quit,
    /// Read a new snapshot now (after resuming).
    Refresh,
    /// Clear and repaint the whole screen (Ctrl-L).
    Repaint,
}

/// The columns of `kmlink top`, in order: sort key, key letter, header in
/// the process table, header in the cache table, width, and which to drop
/// first when the terminal is too narrow (highest first; 0: never).
pub(crate) const COLUMNS: [(SortKey, char, &str, &str, u16, u8); 9] = [
    (SortKey::Pid, 'i', "PID", "", 8, 1),
    (SortKey::Name, 'n', "COMM", "CACHE", 18, 0),
    (SortKey::AllocRate, 'a', "ALLOC/s", "ALLOC/s", 9, 0),
    (SortKey::FreeRate, 'f', "FREE/s", "FREE/s", 9, 0),
    (SortKey::ByteRate, 'b', "BYTES/s", "BYTES/s", 9, 0),
    (SortKey::Outstanding, 'o', "OUTSTAND", "OUTSTAND", 9, 2),
    (SortKey::Allocs, 'A', "ALLOCS", "ALLOCS", 9, 4),
    (SortKey::Frees, 'F', "FREES", "FREES", 9, 5),
    (SortKey::Bytes, 'B', "BYTES", "BYTES", 9, 3),
];

/// Everything about the view that is not data: sort, filter, pause, focus.
#[derive(Debug, Clone)]
pub struct TopState {
    /// Sort column.
    pub sort: SortKey,
    /// Smallest first (numbers) / Z to A (names).
    pub reverse: bool,
    /// The filter as typed (see [`crate::view::Filter`]).
    pub filter: String,
    /// Whether keys go to the filter line.
    pub editing: bool,
    /// Whether refreshing is paused (the view, not the monitor).
    pub paused: bool,
    /// Which table scrolls.
    pub focus: Pane,
    /// Refresh interval.
    pub interval: Duration,
    /// The running kernel's release from uname, for when the monitor does
    /// not say which release it was built for.
    pub uname_release: Option<String>,
    /// A problem to show (e.g. the last refresh failed).
    pub message: Option<String>,
    /// Text rendering for `--batch`: no footer, no selection.
    pub batch: bool,
    /// Per cgroup instead of per process (key `c`, `kmlink top --cgroups`).
    pub cgroups: bool,
    /// Cgroup ids to paths, refreshed with each sample in the cgroup view.
    pub cgroup_paths: CgroupPaths,
    /// The cgroup2 hierarchy to name cgroups from (`--cgroup-root`);
    /// `None`: this host's ([`CgroupPaths::discover`]).
    pub cgroup_root: Option<std::path::PathBuf>,
    pub(crate) selected: [Option<usize>; 2],
}

impl TopState {
    /// The initial state.
    pub fn new(interval: Duration, sort: SortKey) -> Self {
        TopState {
            sort,
            reverse: false,
            filter: String::new(),
            editing: false,
            paused: false,
            focus: Pane::Processes,
            interval,
            uname_release: None,
            message: None,
            batch: false,
            cgroups: false,
            cgroup_paths: CgroupPaths::default(),
            cgroup_root: None,
            selected: [None, None],
        }
    }

    fn scroll(&mut self, by: isize) {
        let i = match self.focus {
            Pane::Processes => 0,
            Pane::Caches => 1,
        };
        let cur = self.selected[i].map(|s| s as isize).unwrap_or(-1);
        // Clamped to the table's length when drawn.
        self.selected[i] = Some(cur.saturating_add(by).max(0) as usize);
    }

    /// Applies a key press.
    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Continue;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('d')) {
            return Action::Quit;
        }
        if ctrl && key.code == KeyCode::Char('l') {
            return Action::Repaint;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.filter.clear();
                    self.editing = false;
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !ctrl => self.filter.push(c),
                _ => {}
            }
            self.selected = [None, None];
            return Action::Continue;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Char('Q') => return Action::Quit,
            KeyCode::Char('p') | KeyCode::Char(' ') => {
                self.paused = !self.paused;
                if !self.paused {
                    return Action::Refresh;
                }
            }
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Esc => {
                self.filter.clear();
                self.selected = [None, None];
            }
            KeyCode::Char('r') => self.reverse = !self.reverse,
            KeyCode::Char('c') => {
                self.cgroups = !self.cgroups;
                self.selected[0] = None;
                return Action::Refresh;
            }
            KeyCode::Char('<') | KeyCode::Char(',') | KeyCode::Left => self.step_sort(-1),
            KeyCode::Char('>') | KeyCode::Char('.') | KeyCode::Right => self.step_sort(1),
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = match self.focus {
                    Pane::Processes => Pane::Caches,
                    Pane::Caches => Pane::Processes,
                }
            }
            KeyCode::Down | KeyCode::Char('j') => self.scroll(1),
            KeyCode::Up | KeyCode::Char('k') => self.scroll(-1),
            KeyCode::PageDown => self.scroll(10),
            KeyCode::PageUp => self.scroll(-10),
            KeyCode::Home => self.scroll(isize::MIN / 2),
            KeyCode::End => self.scroll(isize::MAX / 2),
            KeyCode::Char(c) => {
                if let Some(col) = COLUMNS.iter().find(|col| col.1 == c) {
                    self.sort = col.0;
                    self.reverse = false;
                }
            }
            _ => {}
        }
        Action::Continue
    }

    fn step_sort(&mut self, by: isize) {
        let n = COLUMNS.len() as isize;
        let at = COLUMNS.iter().position(|c| c.0 == self.sort).unwrap_or(0) as isize;
        self.sort = COLUMNS[(at + by).rem_euclid(n) as usize].0;
        self.reverse = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn keys() {
        let mut s = TopState::new(Duration::from_secs(1), SortKey::ByteRate);
        assert_eq!(s.handle_key(key(KeyCode::Char('a'))), Action::Continue);
        assert_eq!(s.sort, SortKey::AllocRate);
        s.handle_key(key(KeyCode::Char('>')));
        assert_eq!(s.sort, SortKey::FreeRate);
        s.handle_key(key(KeyCode::Char('<')));
        s.handle_key(key(KeyCode::Char('<')));
        s.handle_key(key(KeyCode::Char('<')));
        assert_eq!(s.sort, SortKey::Pid);
        s.handle_key(key(KeyCode::Char('<')));
        assert_eq!(s.sort, SortKey::Bytes);
        s.handle_key(key(KeyCode::Char('/')));
        for c in "qp x".chars() {
            assert_eq!(s.handle_key(key(KeyCode::Char(c))), Action::Continue);
        }
        s.handle_key(key(KeyCode::Backspace));
        s.handle_key(key(KeyCode::Enter));
        assert_eq!(s.filter, "qp ");
        assert!(!s.editing && !s.paused);
        assert_eq!(s.handle_key(key(KeyCode::Char(' '))), Action::Continue);
        assert!(s.paused);
        assert_eq!(s.handle_key(key(KeyCode::Char('p'))), Action::Refresh);
        s.handle_key(key(KeyCode::Esc));
        assert_eq!(s.filter, "");
        assert_eq!(
            s.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
        assert_eq!(s.handle_key(key(KeyCode::Char('q'))), Action::Quit);
    }
}
