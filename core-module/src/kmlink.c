// SPDX-License-Identifier: GPL-2.0-only
/*
 * kmlink core: a kernel memory-allocation monitor.
 *
 * Hooks the kmem tracepoints `kmalloc`, `kmem_cache_alloc`, `kfree` and
 * `kmem_cache_free` and aggregates per process (tgid, comm at the event) and
 * per slab cache, readable through /proc/kmlink/stats.
 *
 * The probe path never allocates, never sleeps, never takes a lock and does
 * bounded work: rows are claimed with one cmpxchg, counters are lock-prefixed
 * adds, so every update stays correct when the probe is preempted (PREEMPT_RT
 * runs tracepoint callbacks preemptibly), migrated, or interrupted by another
 * probe on the same CPU.
 *
 * No kernel headers: see kmlink.h for how kernel facts reach this file.
 */
#include "kmlink.h"

/* ---- imports: bound per kernel by the linker ---------------------------- */

KML_IMPORT(kml_printk, "_printk|printk");
extern int kml_printk(const char *fmt, ...);

KML_IMPORT(kml_tracepoint_probe_register, "tracepoint_probe_register");
extern int kml_tracepoint_probe_register(void *tp, void *probe, void *data);
KML_IMPORT(kml_tracepoint_probe_unregister, "tracepoint_probe_unregister");
extern int kml_tracepoint_probe_unregister(void *tp, void *probe, void *data);

/* struct tracepoint objects, referenced by address only. */
KML_IMPORT(kml_tp_kmalloc, "__tracepoint_kmalloc");
extern char kml_tp_kmalloc[];
KML_IMPORT(kml_tp_kmem_cache_alloc, "__tracepoint_kmem_cache_alloc");
extern char kml_tp_kmem_cache_alloc[];
KML_IMPORT(kml_tp_kfree, "__tracepoint_kfree");
extern char kml_tp_kfree[];
KML_IMPORT(kml_tp_kmem_cache_free, "__tracepoint_kmem_cache_free");
extern char kml_tp_kmem_cache_free[];

/*
 * Grace periods. tracepoint_synchronize_unregister() is an inline whose body
 * differs by version (6.1/6.12: srcu(tracepoint_srcu) + rcu; 7.x:
 * srcu(rcu_tasks_trace_srcu_struct) + srcu(tracepoint_srcu)); we perform the
 * union of those waits with whatever the kernel exports.
 */
KML_IMPORT(kml_synchronize_rcu, "synchronize_rcu");
extern void kml_synchronize_rcu(void);
KML_WEAK(kml_synchronize_srcu, "synchronize_srcu");
extern void kml_synchronize_srcu(void *ssp) __attribute__((weak));
KML_WEAK(kml_tracepoint_srcu, "tracepoint_srcu");
extern char kml_tracepoint_srcu[] __attribute__((weak));
KML_WEAK(kml_rcu_tasks_trace_srcu_struct, "rcu_tasks_trace_srcu_struct");
extern char kml_rcu_tasks_trace_srcu_struct[] __attribute__((weak));
KML_WEAK(kml_synchronize_rcu_tasks_trace, "synchronize_rcu_tasks_trace");
extern void kml_synchronize_rcu_tasks_trace(void) __attribute__((weak));

KML_IMPORT(kml_proc_mkdir, "proc_mkdir");
extern void *kml_proc_mkdir(const char *name, void *parent);
KML_IMPORT(kml_proc_create, "proc_create");
extern void *kml_proc_create(const char *name, u16 mode, void *parent,
			     const void *proc_ops);
KML_IMPORT(kml_proc_remove, "proc_remove");
extern void kml_proc_remove(void *entry);

KML_IMPORT(kml_seq_printf, "seq_printf");
extern void kml_seq_printf(void *m, const char *fmt, ...);
KML_IMPORT(kml_seq_read, "seq_read");
extern ssize_t kml_seq_read(void *file, char *buf, size_t size, s64 *ppos);
KML_IMPORT(kml_seq_lseek, "seq_lseek");
extern s64 kml_seq_lseek(void *file, s64 offset, int whence);
KML_IMPORT(kml_single_open, "single_open");
extern int kml_single_open(void *file, int (*show)(void *m, void *v),
			   void *data);
KML_IMPORT(kml_single_release, "single_release");
extern int kml_single_release(void *inode, void *file);

KML_IMPORT(kml_vzalloc, "vzalloc_noprof|vzalloc");
extern void *kml_vzalloc(unsigned long size);
KML_IMPORT(kml_vfree, "vfree");
extern void kml_vfree(const void *addr);

KML_IMPORT(kml_nr_cpu_ids, "nr_cpu_ids");
extern unsigned int kml_nr_cpu_ids;

/* ---- layout table: filled by the linker for the target kernel ----------- */

KML_SLOT(task_tgid, "offsetof task_struct.tgid");	/* pid_t tgid */
KML_SLOT(task_comm, "offsetof task_struct.comm");	/* char comm[16] */
KML_SLOT(cache_name, "offsetof kmem_cache.name");	/* const char *name */
KML_SLOT(cache_size, "offsetof kmem_cache.size");	/* unsigned int size */
KML_SLOT(cache_object_size, "offsetof kmem_cache.object_size");
KML_SLOT(proc_ops_size, "sizeof proc_ops");
KML_SLOT(proc_ops_open, "offsetof proc_ops.proc_open");
KML_SLOT(proc_ops_read, "offsetof proc_ops.proc_read");
KML_SLOT(proc_ops_lseek, "offsetof proc_ops.proc_lseek");
KML_SLOT(proc_ops_release, "offsetof proc_ops.proc_release");

/* Per-CPU variables: the slot holds the variable's per-CPU address. */
KML_SLOT(pcpu_current_task, "percpu current_task|pcpu_hot.current_task");
KML_SLOT(pcpu_cpu_number, "percpu cpu_number|pcpu_hot.cpu_number");

/*
 * Probe argument positions (1-based, after the data pointer). Each probe
 * below is declared with the arity named in its `probe` entry; the linker
 * refuses a kernel whose positions fall outside it.
 */
KML_MANIFEST("probe kmalloc 6");
KML_SLOT(kmalloc_call_site, "tparg kmalloc.call_site:8");
KML_SLOT(kmalloc_bytes_req, "tparg kmalloc.bytes_req:8");
KML_SLOT(kmalloc_bytes_alloc, "tparg kmalloc.bytes_alloc:8");
KML_MANIFEST("probe kmem_cache_alloc 5");
KML_SLOT(kca_call_site, "tparg kmem_cache_alloc.call_site:8");
KML_SLOT(kca_cache, "tparg kmem_cache_alloc.s:8");
KML_MANIFEST("probe kfree 2");
KML_SLOT(kfree_ptr, "tparg kfree.ptr:8");
KML_MANIFEST("probe kmem_cache_free 3");
KML_SLOT(kcf_cache, "tparg? kmem_cache_free.s:8");

/* ---- per-CPU access ------------------------------------------------------ */

static inline void *kml_current(void)
{
	void *task;

	__asm__ __volatile__("movq %%gs:(%1), %0"
			     : "=r"(task)
			     : "r"(kml_slot_pcpu_current_task));
	return task;
}

static inline u32 kml_cpu(void)
{
	u32 cpu;

	__asm__ __volatile__("movl %%gs:(%1), %0"
			     : "=r"(cpu)
			     : "r"(kml_slot_pcpu_cpu_number));
	return cpu;
}

/* ---- tables --------------------------------------------------------------- */

#define KML_COMM_LEN 16
#define KML_CACHE_NAME_LEN 32
#define KML_PROC_ROWS 4096	/* power of two */
#define KML_CACHE_ROWS 1024	/* power of two */
#define KML_PROBE_LIMIT 32	/* slots tried before a key goes to (other) */
#define KML_MAX_SHARDS 16	/* counter copies, spread by CPU */

/* One (tgid, comm) row. key == 0: free. The key is claimed by cmpxchg; the
 * text fields are written by the claimer, then `ready` is set. */
struct kml_proc_row {
	u64 key;
	u32 tgid;
	u32 ready;
	char comm[KML_COMM_LEN];
};

/* One slab cache row, keyed by the struct kmem_cache address. Row 0 of the
 * cache table is the pseudo-cache "-" for kmalloc events, which carry no
 * cache. */
struct kml_cache_row {
	u64 key;
	u32 ready;
	u32 pad;
	char name[KML_CACHE_NAME_LEN];
};

struct kml_counts {
	u64 allocs;
	u64 frees;
	u64 bytes_req;
	u64 bytes_alloc;
};

enum { KML_T_EVENTS, KML_T_OTHER_PROC, KML_T_OTHER_CACHE, KML_T_NR };

struct kml_state {
	struct kml_proc_row *procs;	/* KML_PROC_ROWS + 1 ((other)) */
	struct kml_cache_row *caches;	/* KML_CACHE_ROWS + 1 ((other)) */
	struct kml_counts *proc_counts;	/* [shard][KML_PROC_ROWS + 1] */
	struct kml_counts *cache_counts;	/* [shard][KML_CACHE_ROWS + 1] */
	u64 *totals;			/* [shard][KML_T_NR] */
	u32 shards;
	void *proc_dir;
	u32 registered;			/* bit per tracepoint */
};

static struct kml_state kml;

/* Room for struct proc_ops: 6.1 … 7.x use well under this; init checks. */
static u64 kml_stats_ops[32];

static inline u64 kml_mix(u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static u64 kml_proc_key(u32 tgid, const char *comm)
{
	u64 h = 0xcbf29ce484222325ULL ^ tgid;
	int i;

	for (i = 0; i < KML_COMM_LEN && comm[i]; i++) {
		h ^= (u8)comm[i];
		h *= 0x100000001b3ULL;
	}
	h = kml_mix(h);
	return h ? h : 1;
}

static inline bool kml_cmpxchg64(u64 *p, u64 old, u64 new)
{
	u64 prev = old;

	__asm__ __volatile__("lock; cmpxchgq %2, %1"
			     : "+a"(prev), "+m"(*p)
			     : "r"(new)
			     : "memory");
	return prev == old;
}

static inline u32 kml_shard(void)
{
	return kml_cpu() % kml.shards;
}

/* Index of the row for (tgid, comm); KML_PROC_ROWS means (other). */
static u32 kml_proc_row(u32 tgid, const char *comm)
{
	u64 key = kml_proc_key(tgid, comm);
	u32 i, idx;

	for (i = 0; i < KML_PROBE_LIMIT; i++) {
		struct kml_proc_row *row;
		u64 cur;
		int c;

		idx = (u32)(key + i) & (KML_PROC_ROWS - 1);
		row = &kml.procs[idx];
		cur = READ_ONCE(row->key);
		if (cur == key)
			return idx;
		if (cur != 0)
			continue;
		if (!kml_cmpxchg64(&row->key, 0, key)) {
			if (READ_ONCE(row->key) == key)
				return idx;
			continue;
		}
		row->tgid = tgid;
		for (c = 0; c < KML_COMM_LEN; c++)
			row->comm[c] = comm[c];
		barrier();
		WRITE_ONCE(row->ready, 1);
		return idx;
	}
	return KML_PROC_ROWS;
}

/* Copy a kernel string of at most len-1 bytes. */
static void kml_copy_name(char *dst, const char *src, int len)
{
	int i;

	for (i = 0; i < len - 1 && src && src[i]; i++)
		dst[i] = src[i];
	dst[i] = 0;
}

/* Index of the row for a cache (NULL: the kmalloc pseudo-row 0). */
static u32 kml_cache_row(const void *cache)
{
	u64 key = (u64)cache;
	u32 i, idx;

	if (!cache)
		return 0;
	for (i = 0; i < KML_PROBE_LIMIT; i++) {
		struct kml_cache_row *row;
		u64 cur;

		idx = 1 + ((u32)(kml_mix(key) + i) & (KML_CACHE_ROWS - 2));
		row = &kml.caches[idx];
		cur = READ_ONCE(row->key);
		if (cur == key)
			return idx;
		if (cur != 0)
			continue;
		if (!kml_cmpxchg64(&row->key, 0, key)) {
			if (READ_ONCE(row->key) == key)
				return idx;
			continue;
		}
		kml_copy_name(row->name,
			      KML_FIELD(cache, cache_name, const char *),
			      KML_CACHE_NAME_LEN);
		barrier();
		WRITE_ONCE(row->ready, 1);
		return idx;
	}
	return KML_CACHE_ROWS;
}

static inline struct kml_counts *kml_pc(u32 shard, u32 row)
{
	return &kml.proc_counts[(u64)shard * (KML_PROC_ROWS + 1) + row];
}

static inline struct kml_counts *kml_cc(u32 shard, u32 row)
{
	return &kml.cache_counts[(u64)shard * (KML_CACHE_ROWS + 1) + row];
}

/* Account one event to the current process and to `cache`. */
static void kml_account(const void *cache, bool is_alloc, u64 req, u64 alloc)
{
	char comm[KML_COMM_LEN];
	void *task = kml_current();
	u32 shard = kml_shard();
	u32 tgid, prow, crow;
	struct kml_counts *pc, *cc;
	int i;

	tgid = (u32)KML_FIELD(task, task_tgid, s32);
	for (i = 0; i < KML_COMM_LEN; i++)
		comm[i] = READ_ONCE(((const char *)task + kml_slot_task_comm)[i]);
	comm[KML_COMM_LEN - 1] = 0;

	prow = kml_proc_row(tgid, comm);
	crow = kml_cache_row(cache);
	pc = kml_pc(shard, prow);
	cc = kml_cc(shard, crow);
	if (is_alloc) {
		kml_atomic_add(&pc->allocs, 1);
		kml_atomic_add(&pc->bytes_req, req);
		kml_atomic_add(&pc->bytes_alloc, alloc);
		kml_atomic_add(&cc->allocs, 1);
		kml_atomic_add(&cc->bytes_req, req);
		kml_atomic_add(&cc->bytes_alloc, alloc);
	} else {
		kml_atomic_add(&pc->frees, 1);
		kml_atomic_add(&cc->frees, 1);
	}
	kml_atomic_add(&kml.totals[shard * KML_T_NR + KML_T_EVENTS], 1);
	if (prow == KML_PROC_ROWS)
		kml_atomic_add(&kml.totals[shard * KML_T_NR + KML_T_OTHER_PROC], 1);
	if (crow == KML_CACHE_ROWS)
		kml_atomic_add(&kml.totals[shard * KML_T_NR + KML_T_OTHER_CACHE], 1);
}

/* Pick argument `pos` (1-based; 0: absent) out of a probe's `n` arguments.
 * The linker never binds a position past the probe's arity; the bound here
 * keeps a corrupt layout table from reading past the array. */
static inline u64 kml_arg(const u64 *args, u64 n, u64 pos)
{
	return pos && pos <= n ? args[pos - 1] : 0;
}

/* ---- probes: called as probe(data, <tracepoint arguments>) -------------- */

static void kml_probe_kmalloc(void *data, u64 a1, u64 a2, u64 a3, u64 a4,
			      u64 a5, u64 a6)
{
	const u64 args[6] = { a1, a2, a3, a4, a5, a6 };

	kml_account(NULL, true, kml_arg(args, ARRAY_SIZE(args), kml_slot_kmalloc_bytes_req),
		    kml_arg(args, ARRAY_SIZE(args), kml_slot_kmalloc_bytes_alloc));
}

static void kml_probe_kmem_cache_alloc(void *data, u64 a1, u64 a2, u64 a3,
				       u64 a4, u64 a5)
{
	const u64 args[5] = { a1, a2, a3, a4, a5 };
	const void *cache = (const void *)kml_arg(args, ARRAY_SIZE(args), kml_slot_kca_cache);
	u64 req = 0, alloc = 0;

	if (cache) {
		req = KML_FIELD(cache, cache_object_size, u32);
		alloc = KML_FIELD(cache, cache_size, u32);
	}
	kml_account(cache, true, req, alloc);
}

static void kml_probe_kfree(void *data, u64 a1, u64 a2)
{
	const u64 args[2] = { a1, a2 };

	/* kfree(NULL) is traced too; it frees nothing. */
	if (kml_arg(args, ARRAY_SIZE(args), kml_slot_kfree_ptr))
		kml_account(NULL, false, 0, 0);
}

static void kml_probe_kmem_cache_free(void *data, u64 a1, u64 a2, u64 a3)
{
	const u64 args[3] = { a1, a2, a3 };

	kml_account((const void *)kml_arg(args, ARRAY_SIZE(args), kml_slot_kcf_cache), false, 0,
		    0);
}

struct kml_hook {
	void *tp;
	void *probe;
};

static struct kml_hook kml_hooks[4];

static void kml_hooks_init(void)
{
	kml_hooks[0].tp = kml_tp_kmalloc;
	kml_hooks[0].probe = (void *)kml_probe_kmalloc;
	kml_hooks[1].tp = kml_tp_kmem_cache_alloc;
	kml_hooks[1].probe = (void *)kml_probe_kmem_cache_alloc;
	kml_hooks[2].tp = kml_tp_kfree;
	kml_hooks[2].probe = (void *)kml_probe_kfree;
	kml_hooks[3].tp = kml_tp_kmem_cache_free;
	kml_hooks[3].probe = (void *)kml_probe_kmem_cache_free;
}

/* ---- /proc/kmlink/stats ---------------------------------------------------- */

/* Escape a name for a whitespace-separated field: bytes outside 0x21..0x7e
 * and the backslash become \xHH; an empty name becomes "-". */
static void kml_escape(char *out, const char *in, int in_len)
{
	static const char hex[] = "0123456789abcdef";
	int i, o = 0;

	for (i = 0; i < in_len && in[i]; i++) {
		u8 c = (u8)in[i];

		if (c > 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (!o)
		out[o++] = '-';
	out[o] = 0;
}

static void kml_sum(struct kml_counts *sum, struct kml_counts *(*at)(u32, u32),
		    u32 row)
{
	u32 s;

	sum->allocs = sum->frees = sum->bytes_req = sum->bytes_alloc = 0;
	for (s = 0; s < kml.shards; s++) {
		struct kml_counts *c = at(s, row);

		sum->allocs += READ_ONCE(c->allocs);
		sum->frees += READ_ONCE(c->frees);
		sum->bytes_req += READ_ONCE(c->bytes_req);
		sum->bytes_alloc += READ_ONCE(c->bytes_alloc);
	}
}

static u64 kml_total(int which)
{
	u64 sum = 0;
	u32 s;

	for (s = 0; s < kml.shards; s++)
		sum += READ_ONCE(kml.totals[s * KML_T_NR + which]);
	return sum;
}

static int kml_stats_show(void *m, void *v)
{
	char name[KML_CACHE_NAME_LEN * 4 + 1];
	struct kml_counts sum, all = { 0 };
	u32 i;

	kml_seq_printf(m, "# process: pid comm allocs frees bytes outstanding bytes_req\n");
	for (i = 0; i <= KML_PROC_ROWS; i++) {
		const struct kml_proc_row *row = &kml.procs[i];

		if (i < KML_PROC_ROWS && !READ_ONCE(row->ready))
			continue;
		kml_sum(&sum, kml_pc, i);
		if (i == KML_PROC_ROWS) {
			if (!sum.allocs && !sum.frees)
				continue;
			kml_seq_printf(m, "- (other)");
		} else {
			kml_escape(name, row->comm, KML_COMM_LEN);
			kml_seq_printf(m, "%u %s", row->tgid, name);
		}
		kml_seq_printf(m, " %llu %llu %llu - %llu\n", sum.allocs,
			       sum.frees, sum.bytes_alloc, sum.bytes_req);
		all.allocs += sum.allocs;
		all.frees += sum.frees;
		all.bytes_alloc += sum.bytes_alloc;
		all.bytes_req += sum.bytes_req;
	}

	kml_seq_printf(m, "\n# cache: cache allocs frees bytes outstanding bytes_req\n");
	for (i = 0; i <= KML_CACHE_ROWS; i++) {
		const struct kml_cache_row *row = &kml.caches[i];

		if (i > 0 && i < KML_CACHE_ROWS && !READ_ONCE(row->ready))
			continue;
		kml_sum(&sum, kml_cc, i);
		if ((i == 0 || i == KML_CACHE_ROWS) && !sum.allocs && !sum.frees)
			continue;
		if (i == 0)
			kml_seq_printf(m, "-");
		else if (i == KML_CACHE_ROWS)
			kml_seq_printf(m, "(other)");
		else {
			kml_escape(name, row->name, KML_CACHE_NAME_LEN);
			kml_seq_printf(m, "%s", name);
		}
		kml_seq_printf(m, " %llu %llu %llu - %llu\n", sum.allocs,
			       sum.frees, sum.bytes_alloc, sum.bytes_req);
	}

	kml_seq_printf(m, "\n# totals: events allocs frees bytes bytes_req\n");
	kml_seq_printf(m, "%llu %llu %llu %llu %llu\n", kml_total(KML_T_EVENTS),
		       all.allocs, all.frees, all.bytes_alloc, all.bytes_req);
	kml_seq_printf(m, "\n# dropped: reason count\n");
	kml_seq_printf(m, "process_table_full %llu\n", kml_total(KML_T_OTHER_PROC));
	kml_seq_printf(m, "cache_table_full %llu\n", kml_total(KML_T_OTHER_CACHE));
	return 0;
}

static int kml_stats_open(void *inode, void *file)
{
	return kml_single_open(file, kml_stats_show, NULL);
}

static void kml_set_op(u64 off, void *fn)
{
	*(void **)((char *)kml_stats_ops + off) = fn;
}

/* ---- init / exit -------------------------------------------------------- */

static void kml_free_tables(void)
{
	kml_vfree(kml.procs);
	kml_vfree(kml.caches);
	kml_vfree(kml.proc_counts);
	kml_vfree(kml.cache_counts);
	kml_vfree(kml.totals);
	kml.procs = NULL;
	kml.caches = NULL;
	kml.proc_counts = NULL;
	kml.cache_counts = NULL;
	kml.totals = NULL;
}

static int kml_alloc_tables(void)
{
	u32 ncpu = READ_ONCE(kml_nr_cpu_ids);

	kml.shards = ncpu < 1 ? 1 : (ncpu > KML_MAX_SHARDS ? KML_MAX_SHARDS : ncpu);
	kml.procs = kml_vzalloc(sizeof(struct kml_proc_row) * (KML_PROC_ROWS + 1));
	kml.caches = kml_vzalloc(sizeof(struct kml_cache_row) * (KML_CACHE_ROWS + 1));
	kml.proc_counts = kml_vzalloc(sizeof(struct kml_counts) *
				      (KML_PROC_ROWS + 1) * kml.shards);
	kml.cache_counts = kml_vzalloc(sizeof(struct kml_counts) *
				       (KML_CACHE_ROWS + 1) * kml.shards);
	kml.totals = kml_vzalloc(sizeof(u64) * KML_T_NR * kml.shards);
	if (!kml.procs || !kml.caches || !kml.proc_counts ||
	    !kml.cache_counts || !kml.totals) {
		kml_free_tables();
		return -12; /* -ENOMEM */
	}
	return 0;
}

/* Wait until no probe can still be running: the union of what each
 * kernel's tracepoint_synchronize_unregister() waits for. */
static void kml_sync_probes(void)
{
	if (kml_synchronize_rcu_tasks_trace)
		kml_synchronize_rcu_tasks_trace();
	if (kml_synchronize_srcu && kml_rcu_tasks_trace_srcu_struct)
		kml_synchronize_srcu(kml_rcu_tasks_trace_srcu_struct);
	if (kml_synchronize_srcu && kml_tracepoint_srcu)
		kml_synchronize_srcu(kml_tracepoint_srcu);
	kml_synchronize_rcu();
}

static void kml_unregister_all(void)
{
	u32 i;

	for (i = 0; i < ARRAY_SIZE(kml_hooks); i++) {
		if (kml.registered & (1u << i))
			kml_tracepoint_probe_unregister(kml_hooks[i].tp,
							kml_hooks[i].probe, NULL);
	}
	if (kml.registered)
		kml_sync_probes();
	kml.registered = 0;
}

int init_module(void)
{
	u32 i;
	int err;

	if (kml_slot_proc_ops_size > sizeof(kml_stats_ops)) {
		kml_printk("\0013kmlink: struct proc_ops is %llu bytes, room for %llu\n",
			   (u64)kml_slot_proc_ops_size, (u64)sizeof(kml_stats_ops));
		return -22; /* -EINVAL */
	}
	err = kml_alloc_tables();
	if (err)
		return err;
	kml_copy_name(kml.caches[0].name, "-", KML_CACHE_NAME_LEN);
	kml.caches[0].ready = 1;

	kml_set_op(kml_slot_proc_ops_open, (void *)kml_stats_open);
	kml_set_op(kml_slot_proc_ops_read, (void *)kml_seq_read);
	kml_set_op(kml_slot_proc_ops_lseek, (void *)kml_seq_lseek);
	kml_set_op(kml_slot_proc_ops_release, (void *)kml_single_release);

	kml.proc_dir = kml_proc_mkdir("kmlink", NULL);
	if (!kml.proc_dir) {
		err = -12;
		goto err_tables;
	}
	if (!kml_proc_create("stats", 0400, kml.proc_dir, kml_stats_ops)) {
		err = -12;
		goto err_proc;
	}

	kml_hooks_init();
	for (i = 0; i < ARRAY_SIZE(kml_hooks); i++) {
		err = kml_tracepoint_probe_register(kml_hooks[i].tp,
						    kml_hooks[i].probe, NULL);
		if (err) {
			kml_printk("\0013kmlink: tracepoint %u: register failed (%d)\n",
				   i, err);
			goto err_hooks;
		}
		kml.registered |= 1u << i;
	}
	kml_printk("\0016kmlink: monitoring kmem tracepoints (%u counter shards)\n",
		   kml.shards);
	return 0;

err_hooks:
	kml_unregister_all();
err_proc:
	kml_proc_remove(kml.proc_dir);
err_tables:
	kml_free_tables();
	return err;
}

void cleanup_module(void)
{
	kml_unregister_all();
	kml_proc_remove(kml.proc_dir);
	kml_free_tables();
	kml_printk("\0016kmlink: unloaded\n");
}
