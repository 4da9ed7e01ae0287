//! Download progress on a terminal: the crawler reports each download
//! through its cache's listener, the CLI draws the bars.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use kmlink_crawler::cache::{Listener, Progress};

/// A bar per download, stacked while parallel downloads run; `None` when
/// stderr is not a terminal (the crawler then logs a line per file).
pub fn bars() -> Option<Listener> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let multi = indicatif::MultiProgress::new();
    let live: Mutex<HashMap<String, indicatif::ProgressBar>> = Mutex::default();
    Some(Arc::new(move |p: Progress<'_>| match p {
        Progress::Started { entry, done, .. } => {
            let bar = multi.add(indicatif::ProgressBar::new(entry.size));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_message(entry.package.clone());
            bar.set_position(done);
            if let Ok(mut live) = live.lock() {
                live.insert(entry.sha256.clone(), bar);
            }
        }
        Progress::Advanced { entry, bytes } => {
            if let Some(bar) = live.lock().ok().and_then(|l| l.get(&entry.sha256).cloned()) {
                bar.inc(bytes);
            }
        }
        Progress::Finished { entry, .. } => {
            if let Some(bar) = live.lock().ok().and_then(|mut l| l.remove(&entry.sha256)) {
                bar.finish_and_clear();
                multi.remove(&bar);
            }
        }
    }))
}
