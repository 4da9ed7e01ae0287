/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kmlink core: the hash and the probe sequence of the cache table, apart so
 * that a host-side test (core-module/tests/cache_rows.rs) compiles and runs
 * the very functions the core uses. Freestanding, like kmlink.h: no headers
 * beyond it, no libc.
 */
#ifndef KML_HASH_H
#define KML_HASH_H

#include "kmlink.h"

#define KML_CACHE_ROWS 1024	/* power of two; row 0 is "-", row KML_CACHE_ROWS (other) */
#define KML_PROBE_LIMIT 32	/* slots tried before a key goes to (other) */

static inline u64 kml_mix(u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/*
 * The row a cache key probes at attempt i (0 <= i < KML_PROBE_LIMIT): one of
 * the KML_CACHE_ROWS - 1 rows 1 .. KML_CACHE_ROWS - 1 (row 0 is the kmalloc
 * pseudo-row, row KML_CACHE_ROWS is (other)). Linear probing modulo the row
 * count: every row is some key's first choice, and the KML_PROBE_LIMIT
 * attempts of one key visit KML_PROBE_LIMIT distinct rows. The modulus is a
 * constant, so the compiler multiplies instead of dividing.
 */
static inline u32 kml_cache_slot(u64 key, u32 i)
{
	return 1 + (u32)((kml_mix(key) + i) % (KML_CACHE_ROWS - 1));
}

#endif /* KML_HASH_H */
