//! SanitizerCoverage's inline 8-bit counters, when the build has them.
//!
//! With `-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=3
//! -Cllvm-args=-sanitizer-coverage-inline-8bit-counters`, every
//! instrumented crate's module constructor calls
//! `__sanitizer_cov_8bit_counters_init(start, stop)` with its array of
//! one-byte edge counters. The array lives as long as the process; reading
//! and zeroing it from the (single) fuzzing thread is the whole protocol,
//! as in libFuzzer. Without instrumentation the function is never called
//! and [`Coverage::available`] is false.
#![allow(unsafe_code)] // the C ABI hook and the raw counter regions

use std::sync::Mutex;

struct Region {
    start: usize,
    len: usize,
}

static REGIONS: Mutex<Vec<Region>> = Mutex::new(Vec::new());

/// Called by instrumented modules' constructors (before `main`).
///
/// # Safety
/// `start..stop` must be a live, writable counter array (the compiler's).
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_cov_8bit_counters_init(start: *mut u8, stop: *mut u8) {
    let len = (stop as usize).saturating_sub(start as usize);
    if len == 0 {
        return;
    }
    if let Ok(mut r) = REGIONS.lock() {
        r.push(Region {
            start: start as usize,
            len,
        });
    }
}

/// The edges seen so far (as hit-count buckets) and the live counters.
#[derive(Debug, Default)]
pub struct Coverage {
    regions: Vec<(usize, usize)>,
    seen: Vec<u8>,
}

fn bucket(n: u8) -> u8 {
    match n {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        _ => 128,
    }
}

impl Coverage {
    /// The counters registered by the instrumented crates.
    pub fn new() -> Coverage {
        let regions: Vec<(usize, usize)> = REGIONS
            .lock()
            .map(|r| r.iter().map(|r| (r.start, r.len)).collect())
            .unwrap_or_default();
        let total = regions.iter().map(|r| r.1).sum();
        Coverage {
            regions,
            seen: vec![0; total],
        }
    }

    /// Whether this build is instrumented.
    pub fn available(&self) -> bool {
        !self.seen.is_empty()
    }

    /// Number of edges seen at least once.
    pub fn edges(&self) -> usize {
        self.seen.iter().filter(|&&b| b != 0).count()
    }

    /// Zero the live counters (before an execution).
    pub fn reset(&mut self) {
        for &(start, len) in &self.regions {
            // SAFETY: a counter region registered by the instrumentation,
            // alive for the whole process; only this thread runs targets.
            unsafe { std::ptr::write_bytes(start as *mut u8, 0, len) };
        }
    }

    /// Fold the live counters into what was seen; true when an edge or a
    /// hit-count bucket is new.
    pub fn update(&mut self) -> bool {
        let mut new = false;
        let mut base = 0usize;
        for &(start, len) in &self.regions {
            // SAFETY: as in `reset`.
            let live = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
            // Most counters stay zero: skip them eight at a time.
            for (k, chunk) in live.chunks(8).enumerate() {
                if chunk.len() == 8 && u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8])) == 0 {
                    continue;
                }
                for (j, &c) in chunk.iter().enumerate() {
                    if c != 0 {
                        let b = bucket(c);
                        let s = &mut self.seen[base + k * 8 + j];
                        if *s & b == 0 {
                            *s |= b;
                            new = true;
                        }
                    }
                }
            }
            base += len;
        }
        new
    }
}
