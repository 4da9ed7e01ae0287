//! The cache table's probe sequence, run on the host: a tiny C harness
//! compiled with the host's gcc includes `src/kml_hash.h` — the header the
//! core itself includes — and prints the rows `kml_cache_slot` gives many
//! distinct cache addresses; this test fills a table with them as the core's
//! `kml_cache_row` does and requires every row to be reachable.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Keys like real `struct kmem_cache` addresses: direct-map pointers a few
/// hundred bytes apart, and a second family at cache-line stride.
const HARNESS: &str = r#"
#include "kml_hash.h"
int printf(const char *fmt, ...);
int main(void)
{
	u64 k, base[2] = { 0xffff888100000000ULL, 0xffff9b3c40a01000ULL };
	u64 stride[2] = { 0x100, 0x40 };
	u32 f, i;

	printf("%u %u\n", (u32)KML_CACHE_ROWS, (u32)KML_PROBE_LIMIT);
	for (f = 0; f < 2; f++)
		for (k = 0; k < 4096; k++) {
			printf("%llx", base[f] + k * stride[f]);
			for (i = 0; i < KML_PROBE_LIMIT; i++)
				printf(" %u", kml_cache_slot(base[f] + k * stride[f], i));
			printf("\n");
		}
	return 0;
}
"#;

/// The harness's output: (rows, probe limit, [(key, probe rows)]).
fn run_harness() -> (usize, usize, Vec<(u64, Vec<usize>)>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let src = dir.path().join("harness.c");
    let exe = dir.path().join("harness");
    std::fs::write(&src, HARNESS).expect("writing the harness");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let cc = std::env::var("KMLINK_CC").unwrap_or_else(|_| "gcc".to_string());
    let out = Command::new(&cc)
        .args(["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("running {cc} (the core's build needs it too): {e}"));
    assert!(
        out.status.success(),
        "{cc} failed on the harness:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().expect("running the harness");
    assert!(out.status.success(), "the harness failed");
    let text = String::from_utf8(out.stdout).expect("harness output is text");
    let mut lines = text.lines();
    let head: Vec<usize> = lines
        .next()
        .expect("a header line")
        .split(' ')
        .map(|n| n.parse().expect("a number"))
        .collect();
    let keys = lines
        .map(|l| {
            let mut f = l.split(' ');
            let key = u64::from_str_radix(f.next().expect("a key"), 16).expect("hex key");
            (key, f.map(|n| n.parse().expect("a row")).collect())
        })
        .collect();
    (head[0], head[1], keys)
}

#[test]
fn every_key_probes_distinct_rows_in_range() {
    let (rows, limit, keys) = run_harness();
    assert!(keys.len() > rows, "too few keys to fill the table");
    for (key, probes) in &keys {
        assert_eq!(probes.len(), limit, "{key:#x}");
        let distinct: BTreeSet<usize> = probes.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            limit,
            "{key:#x} probes {} distinct rows of the {limit} the limit promises: {probes:?}",
            distinct.len()
        );
        for &r in probes {
            assert!(
                (1..rows).contains(&r),
                "{key:#x} probes row {r}: outside 1..{rows} (0 is the kmalloc pseudo-row, {rows} is (other))"
            );
        }
    }
}

#[test]
fn filling_the_table_from_many_caches_reaches_every_row() {
    let (rows, _, keys) = run_harness();
    // kml_cache_row: the first probed row holding the key or empty wins;
    // after the limit the key goes to (other).
    let mut table = vec![None::<u64>; rows + 1];
    let mut spilled = 0usize;
    for (key, probes) in &keys {
        let slot = probes
            .iter()
            .copied()
            .find(|&r| table[r].is_none() || table[r] == Some(*key));
        match slot {
            Some(r) => table[r] = Some(*key),
            None => spilled += 1,
        }
    }
    let unreached: Vec<usize> = (1..rows).filter(|&r| table[r].is_none()).collect();
    assert!(
        unreached.is_empty(),
        "{} of the {} cache rows stay empty after {} distinct caches ({spilled} went to (other)); first few: {:?}",
        unreached.len(),
        rows - 1,
        keys.len(),
        &unreached[..unreached.len().min(8)]
    );
    assert!(table[0].is_none() && table[rows].is_none());
}
