//! Driving `kmlink top`: the interactive loop on a terminal, and the batch
//! mode that prints frames as text.

use crate::cgroup::CgroupPaths;
use std::io::Write;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event};
use ratatui::DefaultTerminal;

use super::{render, render_text, Action, TopState};
use crate::source::Sampler;
use crate::Error;

fn term(error: std::io::Error) -> Error {
    Error::Terminal { error }
}

/// Runs the live view until the user quits. The first snapshot is read
/// before the terminal is taken over, so a monitor that is not loaded is
/// reported as a plain error.
pub fn run_interactive(mut sampler: Sampler, mut state: TopState) -> Result<(), Error> {
    let view = sampler.sample()?;
    if state.uname_release.is_none() {
        state.uname_release = sampler.source().kernel_release();
    }
    let mut terminal = ratatui::try_init().map_err(term)?;
    let result = event_loop(&mut terminal, sampler, state, view);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    mut sampler: Sampler,
    mut state: TopState,
    mut view: crate::View,
) -> Result<(), Error> {
    let mut next = Instant::now() + state.interval;
    loop {
        let now = Instant::now();
        if !state.paused && now >= next {
            match sampler.sample() {
                Ok(v) => {
                    view = v;
                    state.message = None;
                    if state.cgroups {
                        state.cgroup_paths = CgroupPaths::at(state.cgroup_root.as_deref());
                    }
                }
                // Keep showing the last good snapshot; say what is wrong.
                Err(e) => state.message = Some(e.to_string()),
            }
            next = now + state.interval;
        }
        terminal
            .draw(|f| render(f, &view, &mut state))
            .map_err(term)?;
        let timeout = if state.paused {
            Duration::from_millis(500)
        } else {
            next.saturating_duration_since(Instant::now())
        };
        if !event::poll(timeout).map_err(term)? {
            continue;
        }
        match event::read().map_err(term)? {
            Event::Key(key) => match state.handle_key(key) {
                Action::Quit => return Ok(()),
                Action::Refresh => next = Instant::now(),
                Action::Repaint => terminal.clear().map_err(term)?,
                Action::Continue => {}
            },
            // The next draw resizes the buffers.
            Event::Resize(..) => {}
            _ => {}
        }
    }
}

/// Prints `frames` frames as text, `width` columns wide, `state.interval`
/// apart (like `top -b -n N`). The first frame shows totals, the next ones
/// rates.
pub fn run_batch(
    mut sampler: Sampler,
    mut state: TopState,
    frames: u32,
    width: u16,
    out: &mut dyn Write,
) -> Result<(), Error> {
    state.batch = true;
    if state.uname_release.is_none() {
        state.uname_release = sampler.source().kernel_release();
    }
    for i in 0..frames {
        if i > 0 {
            std::thread::sleep(state.interval);
            out.write_all(b"\n").map_err(term)?;
        }
        let view = sampler.sample()?;
        if state.cgroups {
            state.cgroup_paths = CgroupPaths::at(state.cgroup_root.as_deref());
        }
        out.write_all(render_text(&view, &mut state, width).as_bytes())
            .map_err(term)?;
        out.flush().map_err(term)?;
    }
    Ok(())
}
