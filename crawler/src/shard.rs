//! Shares of a crawl: `kmlink crawler refresh --shard I/N` takes the kernels
//! of shard `I` of `N`, so that `N` independent jobs (a CI matrix, a
//! Kubernetes Indexed Job) crawl the archive in parallel, each into its own
//! bundle, with no scheduler of kmlink's own.
//!
//! A kernel's shard depends on its identity alone — its Debian
//! architecture and release (`amd64/6.1.0-47-amd64`) — never on its place
//! in a list: every job runs discovery itself, and two jobs may see the
//! archive at different moments (a kernel published or withdrawn between
//! them). Keyed by identity, such a kernel falls in one shard in either
//! view, and every other kernel keeps its shard.
//!
//! The identity is hashed with SHA-256 (specified, the same on every
//! machine and in every Rust version, unlike `std`'s `DefaultHasher`; and
//! already a dependency), and the first 8 bytes of the digest pick the
//! shard by jump consistent hashing (Lamping and Veach, "A Fast, Minimal
//! Memory, Consistent Hash Algorithm", 2014): uniform like a plain modulo,
//! but when `N` grows to `N + 1` only the ~1/(N+1) of kernels that move to
//! the new shard change shard (a modulo would move most of them), so
//! per-shard caches and stores stay useful when a crawl is widened.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::discover::KernelInfo;

/// The most shards a crawl can be cut into (far more than the archive has
/// kernels).
pub const MAX_SHARDS: u32 = 1 << 16;

/// Shard `index` of `count` (`0 <= index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u32,
    /// How many shards there are.
    pub count: u32,
}

/// Why a shard argument is not `I/N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard {given:?} {why} (expected I/N with 0 <= I < N <= {MAX_SHARDS}, e.g. 0/4)")]
pub struct ShardError {
    given: String,
    why: String,
}

impl Shard {
    /// Shard `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        let err = |why: String| ShardError {
            given: format!("{index}/{count}"),
            why,
        };
        if count == 0 {
            return Err(err("has no shards".into()));
        }
        if count > MAX_SHARDS {
            return Err(err(format!("has more than {MAX_SHARDS} shards")));
        }
        if index >= count {
            return Err(err(format!(
                "is past the last shard, {} (shards count from 0)",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// Whether the kernel of Debian architecture `arch` and `release` is in
    /// this shard.
    pub fn contains(&self, arch: &str, release: &str) -> bool {
        shard_of(arch, release, self.count) == self.index
    }

    /// The kernels of this shard, in their order (of a discovery list: the
    /// packages to fetch beside each kernel's facts).
    pub fn select<P>(&self, kernels: Vec<(P, KernelInfo)>) -> Vec<(P, KernelInfo)> {
        kernels
            .into_iter()
            .filter(|(_, i)| self.contains(&i.arch, &i.release))
            .collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let err = |why: &str| ShardError {
            given: s.to_owned(),
            why: why.to_owned(),
        };
        let (i, n) = s.split_once('/').ok_or_else(|| err("has no '/'"))?;
        let num = |x: &str, what: &str| {
            // Digits only: no sign, no spaces (an unexpanded `$(VAR)` from a
            // job runner must not parse as anything).
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(&format!("has a {what} that is not a number")));
            }
            x.parse::<u32>()
                .map_err(|_| err(&format!("has a {what} that is too large")))
        };
        let (index, count) = (num(i, "shard index")?, num(n, "shard count")?);
        Shard::new(index, count).map_err(|e| ShardError {
            given: s.into(),
            ..e
        })
    }
}

/// The 64-bit key of a kernel identity: the first 8 bytes (big-endian) of
/// SHA-256(`<arch>/<release>`).
pub fn identity_key(arch: &str, release: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(arch.as_bytes());
    h.update(b"/");
    h.update(release.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The shard (of `count`, at least 1) of the kernel of Debian architecture
/// `arch` and `release`.
pub fn shard_of(arch: &str, release: &str, count: u32) -> u32 {
    jump(identity_key(arch, release), count.max(1))
}

/// Jump consistent hash: the bucket in `0..buckets` of `key`. Walks the
/// buckets the key would jump to as their number grows, stopping at the
/// last one below `buckets` (expected O(ln buckets) steps). The arithmetic
/// is integer multiplication and one IEEE 754 division per step, exact and
/// the same on every machine.
fn jump(mut key: u64, buckets: u32) -> u32 {
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < i64::from(buckets) {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let ratio = (1u64 << 31) as f64 / ((key >> 33) + 1) as f64;
        next = ((bucket + 1) as f64 * ratio) as i64;
    }
    // 0 <= bucket < buckets <= u32::MAX.
    u32::try_from(bucket).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel discovery found on 2026-12-07, both architectures.
    const REAL: &str = include_str!("../tests/data/kernels-2026-12-07.txt");

    fn real() -> Vec<(&'static str, &'static str)> {
        REAL.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_once(' ').expect("arch release"))
            .collect()
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!("0/4".parse(), Ok(Shard { index: 0, count: 4 }));
        assert_eq!("3/4".parse(), Ok(Shard { index: 3, count: 4 }));
        assert_eq!("0/1".parse(), Ok(Shard { index: 0, count: 1 }));
        assert_eq!(Shard { index: 2, count: 7 }.to_string(), "2/7");
        for (bad, why) in [
            ("4/4", "past the last shard, 3"),
            ("0/0", "no shards"),
            ("1", "no '/'"),
            ("-1/4", "index that is not a number"),
            ("+1/4", "index that is not a number"),
            (" 1/4", "index that is not a number"),
            ("$(JOB_COMPLETION_INDEX)/4", "index that is not a number"),
            ("1/", "count that is not a number"),
            ("1/4/5", "count that is not a number"),
            ("0/65537", "more than 65536"),
            ("0/99999999999", "count that is too large"),
        ] {
            let e = bad.parse::<Shard>().expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "names the input: {e}");
        }
    }

    #[test]
    fn every_kernel_in_exactly_one_shard() {
        let kernels = real();
        assert!(kernels.len() > 500, "the real list: {}", kernels.len());
        for n in [1u32, 2, 3, 4, 7, 8, 16, 64] {
            let shards: Vec<Shard> = (0..n).map(|i| Shard::new(i, n).expect("shard")).collect();
            for (arch, rel) in &kernels {
                let holders = shards.iter().filter(|s| s.contains(arch, rel)).count();
                assert_eq!(holders, 1, "{arch}/{rel} with {n} shards");
            }
        }
    }

    #[test]
    fn deterministic_and_keyed_by_identity() {
        // Fixed values: a change of hash or of algorithm (which would
        // reshuffle every running crawl's shards) fails here.
        assert_eq!(
            identity_key("amd64", "6.1.0-47-amd64"),
            u64::from_be_bytes(
                Sha256::digest(b"amd64/6.1.0-47-amd64")[..8]
                    .try_into()
                    .expect("8 bytes")
            )
        );
        let pinned: Vec<u32> = [
            ("amd64", "5.10.0-46-amd64"),
            ("amd64", "6.1.0-47-amd64"),
            ("amd64", "6.12.107+deb13-amd64"),
            ("amd64", "7.3.4+deb13-amd64"),
            ("arm64", "6.1.0-47-arm64"),
        ]
        .iter()
        .map(|(a, r)| shard_of(a, r, 4))
        .collect();
        assert_eq!(pinned, PINNED_SHARDS_OF_4);
        // The architecture is part of the identity.
        let moved = real()
            .iter()
            .filter(|(_, r)| shard_of("amd64", r, 8) != shard_of("arm64", r, 8))
            .count();
        assert!(moved > 0);
        // List position plays no part: the shard of a kernel is the same
        // whatever list it is in, reversed or with kernels added.
        let kernels = real();
        let s = Shard::new(1, 3).expect("shard");
        let forward: Vec<_> = kernels.iter().filter(|(a, r)| s.contains(a, r)).collect();
        let mut backward: Vec<_> = kernels
            .iter()
            .rev()
            .filter(|(a, r)| s.contains(a, r))
            .collect();
        backward.reverse();
        assert_eq!(forward, backward);
    }

    /// Shards of the five pinned kernels of 4 (computed once by this
    /// implementation; they must never change).
    const PINNED_SHARDS_OF_4: [u32; 5] = [0, 1, 2, 3, 3];

    #[test]
    fn balanced_on_the_real_list() {
        let kernels = real();
        for n in [2u32, 3, 4, 8, 16] {
            let mut sizes = vec![0usize; n as usize];
            for (a, r) in &kernels {
                sizes[shard_of(a, r, n) as usize] += 1;
            }
            let mean = kernels.len() as f64 / f64::from(n);
            // A uniform hash gives a binomial spread (standard deviation
            // ~sqrt(mean)); allow 4 of them.
            let slack = 4.0 * mean.sqrt();
            for (i, &size) in sizes.iter().enumerate() {
                assert!(
                    (size as f64 - mean).abs() <= slack,
                    "shard {i}/{n} has {size} kernels, mean {mean:.1}: {sizes:?}"
                );
            }
        }
    }

    #[test]
    fn growing_the_count_moves_few_kernels() {
        let kernels = real();
        for n in [2u32, 4, 8] {
            let moved = kernels
                .iter()
                .filter(|(a, r)| shard_of(a, r, n) != shard_of(a, r, n + 1))
                .count();
            // Only those moving to the new shard: ~1/(n+1) of them.
            let expected = kernels.len() as f64 / f64::from(n + 1);
            assert!(
                (moved as f64) < expected * 1.5,
                "{n} -> {}: {moved} of {} moved",
                n + 1,
                kernels.len()
            );
            for (a, r) in &kernels {
                let (before, after) = (shard_of(a, r, n), shard_of(a, r, n + 1));
                assert!(
                    before == after || after == n,
                    "{a}/{r}: {before} -> {after}"
                );
            }
        }
    }
}
