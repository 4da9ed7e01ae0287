//! The mutation engine: a corpus, mutators and the execution loop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::cov::Coverage;
use crate::{guard, Target};

/// A small, fast, seedable generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (0 is replaced by a constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u64; 14] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
];

const TOKENS: [&[u8]; 16] = [
    b"\n",
    b": ",
    b"\n ",
    b"..",
    b"../",
    b"/",
    b"0x",
    b"-1",
    b"18446744073709551616",
    b"\\x",
    b"\"",
    b"{",
    b"[",
    b"\xff\xfe",
    b"\0",
    b"EXPORT_SYMBOL",
];

/// Apply 1–8 random mutations to `data` (splicing from `other`), keeping
/// it at most `max_len` bytes.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], max_len: usize) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let len = data.len();
        match rng.below(14) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = data[i].wrapping_add(rng.below(35) as u8).wrapping_sub(17);
            }
            3 if len > 0 => {
                // An interesting integer, 1/2/4/8 bytes, either endianness.
                let w = [1usize, 2, 4, 8][rng.below(4)];
                if len >= w {
                    let i = rng.below(len - w + 1);
                    let v = INTERESTING[rng.below(INTERESTING.len())];
                    let b = if rng.below(2) == 0 {
                        v.to_le_bytes()
                    } else {
                        v.to_be_bytes()
                    };
                    let src = if rng.below(2) == 0 {
                        &b[..w]
                    } else {
                        &b[8 - w..]
                    };
                    data[i..i + w].copy_from_slice(src);
                }
            }
            4 if len > 0 => {
                // Delete a block.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                data.drain(i..i + n);
            }
            5 => {
                // Insert random bytes or a repeated byte.
                let i = rng.below(len + 1);
                let n = 1 + rng.below(32);
                let fill = rng.next_u64() as u8;
                let random = rng.below(2) == 0;
                let block: Vec<u8> = (0..n)
                    .map(|_| if random { rng.next_u64() as u8 } else { fill })
                    .collect();
                data.splice(i..i, block);
            }
            6 if len > 1 => {
                // Copy a block within the input.
                let src = rng.below(len);
                let n = 1 + rng.below((len - src).min(128));
                let block = data[src..src + n].to_vec();
                let dst = rng.below(len + 1);
                if rng.below(2) == 0 {
                    data.splice(dst..dst, block);
                } else {
                    let end = (dst + n).min(len);
                    data.splice(dst..end, block);
                }
            }
            7 if !other.is_empty() => {
                // Splice: our prefix, the other input's suffix.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            8 if len > 0 => {
                data.truncate(rng.below(len));
            }
            9 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(len + 1);
                data.splice(i..i, t.iter().copied());
            }
            10 if len > 0 => {
                // Decimal or hex number text in place of a digit run.
                let i = rng.below(len);
                if data[i].is_ascii_digit() {
                    let mut j = i;
                    while j < len && data[j].is_ascii_alphanumeric() {
                        j += 1;
                    }
                    let v = INTERESTING[rng.below(INTERESTING.len())];
                    let s = if rng.below(2) == 0 {
                        v.to_string()
                    } else {
                        format!("{v:x}")
                    };
                    data.splice(i..j, s.into_bytes());
                }
            }
            11 if len > 0 => {
                // Swap two bytes.
                let (i, j) = (rng.below(len), rng.below(len));
                data.swap(i, j);
            }
            12 if len > 2 => {
                // Duplicate a line / block many times (repetition).
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let block = data[i..i + n].to_vec();
                let times = 1 + rng.below(64);
                for _ in 0..times {
                    data.splice(i..i, block.iter().copied());
                }
            }
            _ => {
                if len > 0 {
                    let i = rng.below(len);
                    data[i] = !data[i];
                }
            }
        }
        if data.len() > max_len {
            data.truncate(max_len);
        }
    }
}

/// Where a run keeps its corpus and findings.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// `<root>/corpus/<target>`: inputs that reached new coverage.
    pub corpus: PathBuf,
    /// `<root>/findings/<target>`: inputs that panicked, crashed or hung.
    pub findings: PathBuf,
}

impl Dirs {
    /// The directories for `target` under `root`.
    pub fn new(root: &Path, target: &str) -> Dirs {
        Dirs {
            corpus: root.join("corpus").join(target),
            findings: root.join("findings").join(target),
        }
    }
}

/// What one run of one target did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Inputs executed.
    pub execs: u64,
    /// Corpus size at the end (seeds, saved corpus, new finds).
    pub corpus: usize,
    /// Edges covered (0 without instrumentation).
    pub edges: usize,
    /// Panics found (each saved under `findings`).
    pub findings: Vec<(String, PathBuf)>,
    /// Wall time.
    pub elapsed: Duration,
}

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// After this long.
    Time(Duration),
    /// After this many executions.
    Execs(u64),
}

fn short_hash(data: &[u8]) -> String {
    hex::encode(&Sha256::digest(data)[..8])
}

/// Run one input, returning the panic message if it panicked.
pub fn run_one(target: &Target, input: &[u8]) -> Option<String> {
    guard::begin(input);
    let r = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    guard::end();
    r.err().map(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "non-string panic".into())
    })
}

fn load_dir(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
    }
    out
}

/// Fuzz `target` for `budget`, starting from its seeds, the saved corpus
/// in `dirs.corpus` and `extra` inputs.
pub fn fuzz(target: &Target, dirs: &Dirs, budget: Budget, seed: u64, extra: &[Vec<u8>]) -> Outcome {
    let start = Instant::now();
    let mut rng = Rng::new(seed);
    let mut cov = Coverage::new();
    let _ = std::fs::create_dir_all(&dirs.corpus);
    let _ = std::fs::create_dir_all(&dirs.findings);
    let mut corpus: Vec<Vec<u8>> = (target.seeds)();
    corpus.extend(load_dir(&dirs.corpus));
    corpus.extend(extra.iter().cloned());
    corpus.retain(|c| c.len() <= target.max_len);
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut out = Outcome::default();
    let mut seen_msgs: Vec<String> = Vec::new();
    let mut record = |input: &[u8], msg: String, out: &mut Outcome| {
        // One saved input per distinct panic site (message up to its first line).
        let key: String = msg.lines().next().unwrap_or("").chars().take(200).collect();
        if seen_msgs.contains(&key) {
            return;
        }
        seen_msgs.push(key);
        let path = dirs.findings.join(format!("panic-{}", short_hash(input)));
        let _ = std::fs::write(&path, input);
        out.findings.push((msg, path));
    };
    // Every starting input runs once as it is (and seeds the coverage).
    for c in &corpus {
        cov.reset();
        if let Some(msg) = run_one(target, c) {
            record(c, msg, &mut out);
        }
        cov.update();
        out.execs += 1;
    }
    let done = |out: &Outcome| match budget {
        Budget::Time(d) => out.execs.is_multiple_of(64) && start.elapsed() >= d,
        Budget::Execs(n) => out.execs >= n,
    };
    let mut buf = Vec::with_capacity(target.max_len);
    while !done(&out) {
        let a = rng.below(corpus.len());
        let b = rng.below(corpus.len());
        buf.clear();
        buf.extend_from_slice(&corpus[a]);
        mutate(&mut rng, &mut buf, &corpus[b], target.max_len);
        cov.reset();
        let panicked = run_one(target, &buf);
        out.execs += 1;
        let new = cov.update();
        if let Some(msg) = panicked {
            record(&buf, msg, &mut out);
        } else if new {
            let _ = std::fs::write(dirs.corpus.join(short_hash(&buf)), &buf);
            corpus.push(buf.clone());
        }
    }
    out.corpus = corpus.len();
    out.edges = cov.edges();
    out.elapsed = start.elapsed();
    out
}

/// Quiet panics while fuzzing: the engine reports them itself.
pub fn silence_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}
