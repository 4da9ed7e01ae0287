// SPDX-License-Identifier: GPL-2.0-only
/*
 * kmlink core: a kernel memory-allocation monitor.
 *
 * Hooks the allocator through one of two backends, chosen at link time by
 * the `backend` option (kmlink build --backend):
 *   - tracepoint: the kmem tracepoints (kmalloc, kmem_cache_alloc,
 *     kfree, kmem_cache_free, mm_page_alloc, mm_page_free);
 *   - kprobe: a kretprobe on each allocation function and a kprobe on
 *     each free function, under the names the target kernel has (manifest
 *     `fn?`/`fnarg` slots; docs/core-module.md), with the kernel's count of
 *     missed probes reported.
 * Both feed the same accounting, which keeps:
 *   - aggregates per process (tgid, comm at the event), per slab cache and
 *     per cgroup (v2 id of the task at the event),
 *   - per allocating call site: allocations, the frees of what it allocated,
 *     outstanding bytes and objects, and the age of its oldest object,
 *   - bytes still outstanding for objects allocated since load, through a
 *     preallocated pointer table,
 *   - a size histogram and drop counters,
 *   - the most recent events in per-CPU rings,
 * readable through /proc/kmlink/{stats,events} and steered through
 * /proc/kmlink/control (clear, pause, resume).
 *
 * The probe path never allocates, never sleeps, never takes a lock and does
 * bounded work: table rows are claimed with one cmpxchg, counters are
 * lock-prefixed adds, ring slots are reserved with one xadd and published
 * with a sequence number. Every update therefore stays correct when a probe
 * is preempted (PREEMPT_RT runs tracepoint callbacks preemptibly), migrated,
 * or interrupted by another probe on the same CPU.
 *
 * No kernel headers: see kmlink.h for how kernel facts reach this file.
 */
#include "kmlink.h"
#include "kml_hash.h"

/* ---- imports: bound per kernel by the linker ---------------------------- */

KML_IMPORT(kml_printk, "_printk|printk");
extern int kml_printk(const char *fmt, ...);

KML_IMPORT(kml_tracepoint_probe_register, "tracepoint_probe_register");
extern int kml_tracepoint_probe_register(void *tp, void *probe, void *data);
KML_IMPORT(kml_tracepoint_probe_unregister, "tracepoint_probe_unregister");
extern int kml_tracepoint_probe_unregister(void *tp, void *probe, void *data);
KML_IMPORT(kml_for_each_kernel_tracepoint, "for_each_kernel_tracepoint");
extern void kml_for_each_kernel_tracepoint(void (*fn)(void *tp, void *priv),
					   void *priv);

/* struct tracepoint objects, referenced by address only. */
KML_IMPORT(kml_tp_kmalloc, "__tracepoint_kmalloc");
extern char kml_tp_kmalloc[];
KML_IMPORT(kml_tp_kmem_cache_alloc, "__tracepoint_kmem_cache_alloc");
extern char kml_tp_kmem_cache_alloc[];
KML_IMPORT(kml_tp_kfree, "__tracepoint_kfree");
extern char kml_tp_kfree[];
KML_IMPORT(kml_tp_kmem_cache_free, "__tracepoint_kmem_cache_free");
extern char kml_tp_kmem_cache_free[];
/* Separate events for node-specific allocations up to 5.x (merged into
 * kmalloc / kmem_cache_alloc from 6.0): absent later. */
KML_WEAK(kml_tp_kmalloc_node, "__tracepoint_kmalloc_node");
extern char kml_tp_kmalloc_node[] __attribute__((weak));
KML_WEAK(kml_tp_kmem_cache_alloc_node, "__tracepoint_kmem_cache_alloc_node");
extern char kml_tp_kmem_cache_alloc_node[] __attribute__((weak));

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
KML_WEAK_REF(kml_synchronize_srcu);
KML_WEAK(kml_tracepoint_srcu, "tracepoint_srcu");
extern char kml_tracepoint_srcu[] __attribute__((weak));
KML_WEAK_REF(kml_tracepoint_srcu);
KML_WEAK(kml_rcu_tasks_trace_srcu_struct, "rcu_tasks_trace_srcu_struct");
extern char kml_rcu_tasks_trace_srcu_struct[] __attribute__((weak));
KML_WEAK_REF(kml_rcu_tasks_trace_srcu_struct);
KML_WEAK(kml_synchronize_rcu_tasks_trace, "synchronize_rcu_tasks_trace");
extern void kml_synchronize_rcu_tasks_trace(void) __attribute__((weak));
KML_WEAK_REF(kml_synchronize_rcu_tasks_trace);

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
KML_IMPORT(kml_seq_open, "seq_open");
extern int kml_seq_open(void *file, const void *ops);
KML_IMPORT(kml_seq_release, "seq_release");
extern int kml_seq_release(void *inode, void *file);
#if defined(__x86_64__)	/* arm64 inlines it: see kml_arch_arm64.h */
KML_IMPORT(kml_copy_from_user, "_copy_from_user");
extern unsigned long kml_copy_from_user(void *to, const void *from,
					unsigned long n);
#endif

KML_IMPORT(kml_vzalloc, "vzalloc_noprof|vzalloc");
extern void *kml_vzalloc(unsigned long size);
KML_IMPORT(kml_vfree, "vfree");
extern void kml_vfree(const void *addr);

/* rcu_read_lock() of preemptible-RCU kernels (exported there only; where
 * RCU is not preemptible, neither is the probe: nothing to bracket). */
KML_WEAK(kml_rcu_read_lock, "__rcu_read_lock");
extern void kml_rcu_read_lock(void) __attribute__((weak));
KML_WEAK_REF(kml_rcu_read_lock);
KML_WEAK(kml_rcu_read_unlock, "__rcu_read_unlock");
extern void kml_rcu_read_unlock(void) __attribute__((weak));
KML_WEAK_REF(kml_rcu_read_unlock);

KML_IMPORT(kml_ns_capable_noaudit, "ns_capable_noaudit");
extern bool kml_ns_capable_noaudit(void *ns, int cap);
KML_IMPORT(kml_init_user_ns, "init_user_ns");
extern char kml_init_user_ns[];
#define KML_CAP_SYSLOG 34

KML_IMPORT(kml_nr_cpu_ids, "nr_cpu_ids");
extern unsigned int kml_nr_cpu_ids;
KML_IMPORT(kml_ktime_ns, "ktime_get_mono_fast_ns");
extern u64 kml_ktime_ns(void);

/* The kprobe backend's API: weak, so a kernel without kprobes still links
 * (the backend then refuses to start). */
KML_WEAK(kml_register_kprobe, "register_kprobe");
extern int kml_register_kprobe(void *kp) __attribute__((weak));
KML_WEAK_REF(kml_register_kprobe);
KML_WEAK(kml_unregister_kprobe, "unregister_kprobe");
extern void kml_unregister_kprobe(void *kp) __attribute__((weak));
KML_WEAK_REF(kml_unregister_kprobe);
KML_WEAK(kml_register_kretprobe, "register_kretprobe");
extern int kml_register_kretprobe(void *rp) __attribute__((weak));
KML_WEAK_REF(kml_register_kretprobe);
KML_WEAK(kml_unregister_kretprobe, "unregister_kretprobe");
extern void kml_unregister_kretprobe(void *rp) __attribute__((weak));
KML_WEAK_REF(kml_unregister_kretprobe);
KML_WEAK(kml_ksize, "ksize");
extern size_t kml_ksize(const void *obj) __attribute__((weak));
KML_WEAK_REF(kml_ksize);
/* Sizes of the probed functions (kallsyms), for telling nested hooks apart. */
KML_WEAK(kml_sprint_symbol, "sprint_symbol");
extern int kml_sprint_symbol(char *buf, unsigned long addr) __attribute__((weak));
KML_WEAK_REF(kml_sprint_symbol);

/* ---- layout table: filled by the linker for the target kernel ----------- */

KML_SLOT(task_tgid, "offsetof task_struct.tgid");	/* pid_t tgid */
KML_SLOT(task_pid, "offsetof task_struct.pid");		/* pid_t pid */
KML_SLOT(task_comm, "offsetof task_struct.comm");	/* char comm[16] */
KML_SLOT(cache_name, "offsetof kmem_cache.name");	/* const char *name */
KML_SLOT(cache_size, "offsetof kmem_cache.size");	/* unsigned int size */
KML_SLOT(cache_object_size, "offsetof kmem_cache.object_size");
KML_SLOT(tracepoint_name, "offsetof tracepoint.name");	/* const char *name */
KML_SLOT(file_private_data, "offsetof file.private_data");
KML_SLOT(seq_file_private, "offsetof seq_file.private");
KML_SLOT(proc_ops_size, "sizeof proc_ops");
KML_SLOT(proc_ops_open, "offsetof proc_ops.proc_open");
KML_SLOT(proc_ops_read, "offsetof proc_ops.proc_read");
KML_SLOT(proc_ops_write, "offsetof proc_ops.proc_write");
KML_SLOT(proc_ops_lseek, "offsetof proc_ops.proc_lseek");
KML_SLOT(proc_ops_release, "offsetof proc_ops.proc_release");
KML_SLOT(seq_ops_size, "sizeof seq_operations");
KML_SLOT(seq_ops_start, "offsetof seq_operations.start");
KML_SLOT(seq_ops_stop, "offsetof seq_operations.stop");
KML_SLOT(seq_ops_next, "offsetof seq_operations.next");
KML_SLOT(seq_ops_show, "offsetof seq_operations.show");
/* The cgroup v2 id of a task: task->cgroups->dfl_cgrp->kn->id, the inode
 * number of the cgroup's directory (cgroup_id()). */
KML_SLOT(task_cgroups, "offsetof task_struct.cgroups");	/* struct css_set __rcu * */
KML_SLOT(css_set_dfl_cgrp, "offsetof css_set.dfl_cgrp");	/* struct cgroup * */
KML_SLOT(cgroup_kn, "offsetof cgroup.kn");		/* struct kernfs_node * */
KML_SLOT(kernfs_node_id, "offsetof kernfs_node.id");	/* u64 id */

/* The kprobe backend: struct kprobe / kretprobe are filled field by field. */
KML_SLOT(kprobe_size, "sizeof kprobe");
KML_SLOT(kprobe_symbol_name, "offsetof kprobe.symbol_name");
KML_SLOT(kprobe_pre_handler, "offsetof kprobe.pre_handler");
KML_SLOT(kprobe_nmissed, "offsetof kprobe.nmissed");	/* unsigned long */
KML_SLOT(kprobe_addr, "offsetof kprobe.addr");	/* set by register_kprobe */
KML_SLOT(kretprobe_size, "sizeof kretprobe");
KML_SLOT(kretprobe_kp, "offsetof kretprobe.kp");
KML_SLOT(kretprobe_handler, "offsetof kretprobe.handler");
KML_SLOT(kretprobe_entry_handler, "offsetof kretprobe.entry_handler");
KML_SLOT(kretprobe_maxactive, "offsetof kretprobe.maxactive");	/* int */
KML_SLOT(kretprobe_nmissed, "offsetof kretprobe.nmissed");	/* int */
KML_SLOT(kretprobe_data_size, "offsetof kretprobe.data_size");	/* size_t */
KML_SLOT(kri_data, "offsetof kretprobe_instance.data");
/*
 * The architecture's part: pt_regs slots, per-CPU slots, current, the CPU
 * number and the atomic helpers (one header per architecture).
 */
#if defined(__x86_64__)
#include "kml_arch_x86.h"
#elif defined(__aarch64__)
#include "kml_arch_arm64.h"
#else
#error "kmlink's core is built for x86_64 and aarch64 only"
#endif

/* Up to 5.18 (before rethook): the real return address; 5.10's trampoline
 * hands the handlers regs->ip = the trampoline itself. 0: absent. */
KML_SLOT(kri_ret_addr, "offsetof? kretprobe_instance.ret_addr");

/* struct page, where it still names its slab cache (up to 5.16; 0 when
 * absent: flags sits at offset 0, so no member of interest can). */
KML_SLOT(page_struct_size, "sizeof? page");
KML_SLOT(page_compound_head, "offsetof? page.compound_head"); /* unsigned long, bit 0: tail */
KML_SLOT(page_slab_cache, "offsetof? page.slab_cache");	/* struct kmem_cache * */

/*
 * Probe argument positions (1-based, after the data pointer). Each probe
 * below is declared with the arity named in its `probe` entry; the linker
 * refuses a kernel whose positions fall outside it.
 */
KML_MANIFEST("probe kmalloc 6");
KML_SLOT(kmalloc_call_site, "tparg kmalloc.call_site:8");
KML_SLOT(kmalloc_ptr, "tparg kmalloc.ptr:8");
KML_SLOT(kmalloc_bytes_req, "tparg kmalloc.bytes_req:8");
KML_SLOT(kmalloc_bytes_alloc, "tparg kmalloc.bytes_alloc:8");
KML_SLOT(kmalloc_gfp, "tparg kmalloc.gfp_flags:4");
KML_MANIFEST("probe kmem_cache_alloc 5");
KML_SLOT(kca_call_site, "tparg kmem_cache_alloc.call_site:8");
KML_SLOT(kca_ptr, "tparg kmem_cache_alloc.ptr:8");
KML_SLOT(kca_cache, "tparg? kmem_cache_alloc.s:8");
KML_SLOT(kca_gfp, "tparg kmem_cache_alloc.gfp_flags:4");
KML_MANIFEST("probe kmalloc_node 6");
KML_SLOT(kmn_call_site, "tparg? kmalloc_node.call_site:8");
KML_SLOT(kmn_ptr, "tparg? kmalloc_node.ptr:8");
KML_SLOT(kmn_bytes_req, "tparg? kmalloc_node.bytes_req:8");
KML_SLOT(kmn_bytes_alloc, "tparg? kmalloc_node.bytes_alloc:8");
KML_SLOT(kmn_gfp, "tparg? kmalloc_node.gfp_flags:4");
KML_MANIFEST("probe kmem_cache_alloc_node 6");
KML_SLOT(kcan_call_site, "tparg? kmem_cache_alloc_node.call_site:8");
KML_SLOT(kcan_ptr, "tparg? kmem_cache_alloc_node.ptr:8");
KML_SLOT(kcan_gfp, "tparg? kmem_cache_alloc_node.gfp_flags:4");
KML_MANIFEST("probe kfree 2");
KML_SLOT(kfree_call_site, "tparg kfree.call_site:8");
KML_SLOT(kfree_ptr, "tparg kfree.ptr:8");
KML_MANIFEST("probe kmem_cache_free 3");
KML_SLOT(kcf_call_site, "tparg kmem_cache_free.call_site:8");
KML_SLOT(kcf_ptr, "tparg kmem_cache_free.ptr:8");
KML_SLOT(kcf_cache, "tparg? kmem_cache_free.s:8");
KML_MANIFEST("probe mm_page_alloc 4");
KML_SLOT(mpa_page, "tparg mm_page_alloc.page:8");
KML_SLOT(mpa_order, "tparg mm_page_alloc.order:4");
KML_SLOT(mpa_gfp, "tparg mm_page_alloc.gfp_flags:4");
KML_MANIFEST("probe mm_page_free 2");
KML_SLOT(mpf_page, "tparg mm_page_free.page:8");
KML_SLOT(mpf_order, "tparg mm_page_free.order:4");

/*
 * kprobe backend targets, under each kernel's names. `fn?` slots hold the
 * 1-based index of the first candidate the kernel has (0: none); `fnarg`
 * slots the register position (1-6) of an argument of that same candidate,
 * from the kernel's BTF prototype (6.12 inserted a bucket argument into
 * __kmalloc_node_noprof, for one). The candidate lists are used at run time
 * too, to name the probed symbol.
 */
#define KP_KMALLOC "__kmalloc_noprof|__kmalloc"
KML_SLOT(kp_kmalloc, "fn? " KP_KMALLOC);
KML_SLOT(kp_kmalloc_size, "fnarg " KP_KMALLOC ".size:8");
KML_SLOT(kp_kmalloc_gfp, "fnarg " KP_KMALLOC ".flags|gfpflags:4");
#define KP_KMALLOC_NODE "__kmalloc_node_noprof|__kmalloc_node"
KML_SLOT(kp_kmalloc_node, "fn? " KP_KMALLOC_NODE);
KML_SLOT(kp_kmalloc_node_size, "fnarg " KP_KMALLOC_NODE ".size:8");
KML_SLOT(kp_kmalloc_node_gfp, "fnarg " KP_KMALLOC_NODE ".flags|gfpflags:4");
#define KP_KMALLOC_CALLER "__kmalloc_node_track_caller_noprof|__kmalloc_node_track_caller"
KML_SLOT(kp_kmalloc_caller, "fn? " KP_KMALLOC_CALLER);
KML_SLOT(kp_kmalloc_caller_size, "fnarg " KP_KMALLOC_CALLER ".size:8");
KML_SLOT(kp_kmalloc_caller_gfp, "fnarg " KP_KMALLOC_CALLER ".flags|gfpflags:4");
KML_SLOT(kp_kmalloc_caller_caller, "fnarg? " KP_KMALLOC_CALLER ".caller:8");
/* 5.10 (CONFIG_NUMA): kmalloc_track_caller() beside the _node form. */
#define KP_KMALLOC_CALLER_ANY "__kmalloc_track_caller"
KML_SLOT(kp_kmalloc_caller_any, "fn? " KP_KMALLOC_CALLER_ANY);
KML_SLOT(kp_kmalloc_caller_any_size, "fnarg " KP_KMALLOC_CALLER_ANY ".size:8");
KML_SLOT(kp_kmalloc_caller_any_gfp, "fnarg " KP_KMALLOC_CALLER_ANY ".flags|gfpflags:4");
KML_SLOT(kp_kmalloc_caller_any_caller, "fnarg? " KP_KMALLOC_CALLER_ANY ".caller:8");
/* 5.10: kmalloc_large() is an inline calling kmalloc_order_trace(), which
 * traces once (no second event in the caller: a plain nested hook). */
#define KP_KMALLOC_ORDER "kmalloc_order_trace"
KML_SLOT(kp_kmalloc_order, "fn? " KP_KMALLOC_ORDER);
KML_SLOT(kp_kmalloc_order_size, "fnarg " KP_KMALLOC_ORDER ".size:8");
KML_SLOT(kp_kmalloc_order_gfp, "fnarg " KP_KMALLOC_ORDER ".flags|gfpflags:4");
#define KP_KMALLOC_LARGE "__kmalloc_large_noprof|kmalloc_large_noprof|kmalloc_large"
KML_SLOT(kp_kmalloc_large, "fn? " KP_KMALLOC_LARGE);
KML_SLOT(kp_kmalloc_large_size, "fnarg " KP_KMALLOC_LARGE ".size:8");
KML_SLOT(kp_kmalloc_large_gfp, "fnarg " KP_KMALLOC_LARGE ".flags|gfpflags:4");
#define KP_KMALLOC_LARGE_NODE "__kmalloc_large_node_noprof|kmalloc_large_node_noprof|kmalloc_large_node"
KML_SLOT(kp_kmalloc_large_node, "fn? " KP_KMALLOC_LARGE_NODE);
KML_SLOT(kp_kmalloc_large_node_size, "fnarg " KP_KMALLOC_LARGE_NODE ".size:8");
KML_SLOT(kp_kmalloc_large_node_gfp, "fnarg " KP_KMALLOC_LARGE_NODE ".flags|gfpflags:4");
/* The constant-size fast path: kmalloc(N) with N known at compile time. */
#define KP_KMALLOC_CACHE "__kmalloc_cache_noprof|kmalloc_trace_noprof|kmalloc_trace|kmem_cache_alloc_trace"
KML_SLOT(kp_kmalloc_cache, "fn? " KP_KMALLOC_CACHE);
KML_SLOT(kp_kmalloc_cache_s, "fnarg " KP_KMALLOC_CACHE ".s:8");
KML_SLOT(kp_kmalloc_cache_size, "fnarg " KP_KMALLOC_CACHE ".size:8");
KML_SLOT(kp_kmalloc_cache_gfp, "fnarg " KP_KMALLOC_CACHE ".flags|gfpflags:4");
#define KP_KMALLOC_CACHE_NODE "__kmalloc_cache_node_noprof|kmalloc_node_trace_noprof|kmalloc_node_trace|kmem_cache_alloc_node_trace"
KML_SLOT(kp_kmalloc_cache_node, "fn? " KP_KMALLOC_CACHE_NODE);
KML_SLOT(kp_kmalloc_cache_node_s, "fnarg " KP_KMALLOC_CACHE_NODE ".s:8");
KML_SLOT(kp_kmalloc_cache_node_size, "fnarg " KP_KMALLOC_CACHE_NODE ".size:8");
KML_SLOT(kp_kmalloc_cache_node_gfp, "fnarg " KP_KMALLOC_CACHE_NODE ".flags|gfpflags:4");
/* kvmalloc: 6.16+ inline the kmalloc (and its tracepoint) here; 6.10-6.15
 * call __kmalloc_node_noprof instead (told apart at run time, see
 * kml_kp_nested()). */
#define KP_KVMALLOC "__kvmalloc_node_noprof"
KML_SLOT(kp_kvmalloc, "fn? " KP_KVMALLOC);
KML_SLOT(kp_kvmalloc_size, "fnarg " KP_KVMALLOC ".size:8");
KML_SLOT(kp_kvmalloc_gfp, "fnarg " KP_KVMALLOC ".flags|gfpflags:4");
/* 7.2+: kmalloc with allocation flags (the nolock path's front). */
#define KP_KMALLOC_FLAGS "__kmalloc_flags_noprof"
KML_SLOT(kp_kmalloc_flags, "fn? " KP_KMALLOC_FLAGS);
KML_SLOT(kp_kmalloc_flags_size, "fnarg " KP_KMALLOC_FLAGS ".size:8");
KML_SLOT(kp_kmalloc_flags_gfp, "fnarg " KP_KMALLOC_FLAGS ".flags|gfpflags:4");
#define KP_KCA "kmem_cache_alloc_noprof|kmem_cache_alloc"
KML_SLOT(kp_kca, "fn? " KP_KCA);
KML_SLOT(kp_kca_s, "fnarg " KP_KCA ".s|cachep:8");
KML_SLOT(kp_kca_gfp, "fnarg " KP_KCA ".flags|gfpflags:4");
#define KP_KCA_LRU "kmem_cache_alloc_lru_noprof|kmem_cache_alloc_lru"
KML_SLOT(kp_kca_lru, "fn? " KP_KCA_LRU);
KML_SLOT(kp_kca_lru_s, "fnarg " KP_KCA_LRU ".s|cachep:8");
KML_SLOT(kp_kca_lru_gfp, "fnarg " KP_KCA_LRU ".flags|gfpflags:4");
#define KP_KCA_NODE "kmem_cache_alloc_node_noprof|kmem_cache_alloc_node"
KML_SLOT(kp_kca_node, "fn? " KP_KCA_NODE);
KML_SLOT(kp_kca_node_s, "fnarg " KP_KCA_NODE ".s|cachep:8");
KML_SLOT(kp_kca_node_gfp, "fnarg " KP_KCA_NODE ".flags|gfpflags:4");
/* 6.18+: objects handed out of a prefilled sheaf. */
#define KP_KCA_SHEAF "kmem_cache_alloc_from_sheaf_noprof"
KML_SLOT(kp_kca_sheaf, "fn? " KP_KCA_SHEAF);
KML_SLOT(kp_kca_sheaf_s, "fnarg " KP_KCA_SHEAF ".s|cachep:8");
KML_SLOT(kp_kca_sheaf_gfp, "fnarg " KP_KCA_SHEAF ".gfp|flags|gfpflags:4");
#define KP_KFREE "kfree"
KML_SLOT(kp_kfree, "fn? " KP_KFREE);
KML_SLOT(kp_kfree_ptr, "fnarg " KP_KFREE ".object|objp|x:8");
#define KP_KCF "kmem_cache_free"
KML_SLOT(kp_kcf, "fn? " KP_KCF);
KML_SLOT(kp_kcf_s, "fnarg " KP_KCF ".s|cachep:8");
KML_SLOT(kp_kcf_ptr, "fnarg " KP_KCF ".x|objp:8");
/* The page allocator: the innermost entry every allocation passes. */
#define KP_PAGES "__alloc_frozen_pages_noprof|__alloc_pages_noprof|__alloc_pages|__alloc_pages_nodemask"
KML_SLOT(kp_pages, "fn? " KP_PAGES);
KML_SLOT(kp_pages_gfp, "fnarg " KP_PAGES ".gfp|gfp_mask:4");
KML_SLOT(kp_pages_order, "fnarg " KP_PAGES ".order:4");
/* 6.15+: page allocations that may not spin (BPF, ...); 6.18+ through the
 * frozen form, which 7.3 turned into a caller of __alloc_frozen_pages. */
#define KP_PAGES_NOLOCK "alloc_frozen_pages_nolock_noprof|alloc_pages_nolock_noprof"
KML_SLOT(kp_pages_nolock, "fn? " KP_PAGES_NOLOCK);
KML_SLOT(kp_pages_nolock_gfp, "fnarg? " KP_PAGES_NOLOCK ".gfp_flags|gfp:4");
KML_SLOT(kp_pages_nolock_order, "fnarg " KP_PAGES_NOLOCK ".order:4");
/* 5.10's free_unref_page(page) frees order-0 pages only and takes no
 * order: the absent argument reads as 0. */
#define KP_PAGES_FREE "free_frozen_pages|free_unref_page"
KML_SLOT(kp_pages_free, "fn? " KP_PAGES_FREE);
KML_SLOT(kp_pages_free_page, "fnarg " KP_PAGES_FREE ".page:8");
KML_SLOT(kp_pages_free_order, "fnarg? " KP_PAGES_FREE ".order:4");
#define KP_PAGES_FREE_OK "__free_pages_ok"
KML_SLOT(kp_pages_free_ok, "fn? " KP_PAGES_FREE_OK);
KML_SLOT(kp_pages_free_ok_page, "fnarg " KP_PAGES_FREE_OK ".page:8");
KML_SLOT(kp_pages_free_ok_order, "fnarg " KP_PAGES_FREE_OK ".order:4");

/* ---- link-time options -------------------------------------------------- */

/* The hook: the kmem tracepoints, or kprobes on the allocator functions. */
#define KML_BACKEND_TRACEPOINT 0
#define KML_BACKEND_KPROBE 1
KML_OPTION(backend, KML_BACKEND_TRACEPOINT);
KML_OPTION_VALUE(backend, tracepoint, KML_BACKEND_TRACEPOINT);
KML_OPTION_VALUE(backend, kprobe, KML_BACKEND_KPROBE);
KML_OPTION(kp_maxactive, 256);	/* kretprobe instances per allocation hook */

KML_OPTION(ring_events, 4096);	/* events kept per ring (power of two) */
KML_OPTION(ring_mem_mb, 16);	/* cap on all rings together */
KML_OPTION(ptr_slots, 131072);	/* outstanding-object table (power of two) */
KML_OPTION(max_rings, 64);	/* rings (and counter shards) at most */
KML_OPTION(events_mask, 0x3f);	/* bit per event type, KML_EV_* - 1 */
KML_OPTION(page_size, 4096);

/* ---- state ----------------------------------------------------------------- */

#define KML_COMM_LEN 16
#define KML_CACHE_NAME_LEN 32
#define KML_PROC_ROWS 4096	/* power of two */
#define KML_PTR_PROBE_LIMIT 16	/* a bounded lossy cache: misses are counted */
#define KML_MAX_SHARDS 8	/* counter copies, spread by CPU */
#define KML_HIST_BUCKETS 20	/* <=8, <=16, ... <=2M, +Inf */
#define KML_NO_CACHE 0xffffffffu
#define KML_SITE_ROWS 4096	/* call sites (power of two); row KML_SITE_ROWS is (other) */
#define KML_CGROUP_ROWS 512	/* cgroups (power of two); row KML_CGROUP_ROWS is (other) */
#define KML_NO_SITE 0xffffffffu	/* pages: no call site */

enum kml_event_type {
	KML_EV_KMALLOC = 1,
	KML_EV_KMEM_CACHE_ALLOC,
	KML_EV_KFREE,
	KML_EV_KMEM_CACHE_FREE,
	KML_EV_PAGE_ALLOC,
	KML_EV_PAGE_FREE,
	KML_EV_NR
};

static const char *const kml_event_names[KML_EV_NR] = {
	"?", "kmalloc", "kmem_cache_alloc", "kfree", "kmem_cache_free",
	"mm_page_alloc", "mm_page_free",
};

/* One (tgid, comm) row. key == 0: free. The key is claimed by cmpxchg; the
 * text fields are written by the claimer, then `ready` is set. */
struct kml_proc_row {
	u64 key;
	u32 tgid;
	u32 ready;
	char comm[KML_COMM_LEN];
};

/* One slab cache row, keyed by the struct kmem_cache address. */
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
	u64 outstanding;	/* signed, as u64 arithmetic */
	u64 page_allocs;
	u64 page_frees;
	u64 page_bytes;
};

/* Per call site: frees and outstanding bytes belong to the allocating site. */
struct kml_site_counts {
	u64 allocs;
	u64 frees;
	u64 bytes;
	u64 outstanding;	/* signed, as u64 arithmetic */
};

/* An outstanding object or page: key is its address (0 free, 1 deleted). */
struct kml_ptr {
	u64 key;
	u64 time_ns;		/* when it was allocated */
	u32 bytes;
	u32 proc_row;
	u32 cache_row;
	u32 site_row;
	u32 cgroup_row;
	u32 is_page;
};

#define KML_PTR_EMPTY 0
#define KML_PTR_TOMB 1

/* One event in a ring. seq is the reservation number + 1 once complete. */
struct kml_event {
	u64 seq;
	u64 time_ns;
	u64 call_site;
	u64 ptr;
	u64 bytes_req;
	u64 bytes_alloc;
	u32 gfp;
	u32 cache_row;
	u32 tgid;
	u32 pid;
	u16 cpu;
	u8 type;
	u8 order;
	char comm[KML_COMM_LEN];
	u32 pad;
};

struct kml_ring {
	u64 head;		/* reservations so far */
	struct kml_event *ev;	/* ring_cap entries */
};

enum {
	KML_T_EVENTS,
	KML_T_OTHER_PROC,
	KML_T_OTHER_CACHE,
	KML_T_PTR_FULL,
	KML_T_UNKNOWN_FREE,
	KML_T_STALE_PTR,
	KML_T_OTHER_SITE,
	KML_T_OTHER_CGROUP,
	KML_T_NR
};

static const char *const kml_total_names[KML_T_NR] = {
	"events", "process_table_full", "cache_table_full", "ptr_table_full",
	"unknown_frees", "stale_ptrs", "callsite_table_full", "cgroup_table_full",
};

struct kml_state {
	struct kml_proc_row *procs;	/* KML_PROC_ROWS + 1 ((other)) */
	struct kml_cache_row *caches;	/* KML_CACHE_ROWS + 1 ((other)) */
	struct kml_counts *proc_counts;	/* [shard][KML_PROC_ROWS + 1] */
	struct kml_counts *cache_counts;	/* [shard][KML_CACHE_ROWS + 1] */
	u64 *sites;			/* call-site address per row (0: free) */
	struct kml_site_counts *site_counts;	/* [shard][KML_SITE_ROWS + 1] */
	u64 *cgroups;			/* cgroup id per row (0: free) */
	struct kml_counts *cgroup_counts;	/* [shard][KML_CGROUP_ROWS + 1] */
	u64 *totals;			/* [shard][KML_T_NR] */
	u64 *hist;			/* [shard][KML_HIST_BUCKETS] */
	struct kml_ptr *ptrs;		/* ptr_mask + 1 */
	struct kml_ring *rings;		/* nrings */
	struct kml_event *ring_mem;
	u64 ptr_mask;
	u64 ring_cap;
	u32 shards;
	u32 nrings;
	u32 paused;
	u32 clearing;
	u64 generation;		/* clears so far */
	u64 loaded_ns;
	void *proc_dir;
	void *tp[KML_EV_NR];		/* struct tracepoint * per event type */
	u32 registered;			/* bit per event type */
	u32 node_registered;		/* bit per kml_node_tps entry */
};

static struct kml_state kml;

/* Room for struct proc_ops / seq_operations: checked against BTF at init. */
static u64 kml_stats_ops[24];
static u64 kml_events_ops[24];
static u64 kml_control_ops[24];
static u64 kml_events_seq_ops[8];

/* ---- helpers --------------------------------------------------------------- */

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

static void kml_memzero(void *p, u64 n)
{
	char *c = p;

	while (n--)
		*c++ = 0;
}

static bool kml_streq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/* Copy a kernel string of at most len-1 bytes. */
static void kml_copy_name(char *dst, const char *src, int len)
{
	int i;

	for (i = 0; i < len - 1 && src && src[i]; i++)
		dst[i] = src[i];
	dst[i] = 0;
}

/* Pick argument `pos` (1-based; 0: absent) out of a probe's `n` arguments.
 * The linker never binds a position past the probe's arity; the bound here
 * keeps a corrupt layout table from reading past the array. */
static inline u64 kml_arg(const u64 *args, u64 n, u64 pos)
{
	return pos && pos <= n ? args[pos - 1] : 0;
}

#define KML_ARG(args, slot) kml_arg(args, ARRAY_SIZE(args), kml_slot_##slot)

static inline struct kml_counts *kml_pc(u32 shard, u32 row)
{
	return &kml.proc_counts[(u64)shard * (KML_PROC_ROWS + 1) + row];
}

static inline struct kml_counts *kml_cc(u32 shard, u32 row)
{
	return &kml.cache_counts[(u64)shard * (KML_CACHE_ROWS + 1) + row];
}

static inline struct kml_site_counts *kml_sc(u32 shard, u32 row)
{
	return &kml.site_counts[(u64)shard * (KML_SITE_ROWS + 1) + row];
}

static inline struct kml_counts *kml_gc(u32 shard, u32 row)
{
	return &kml.cgroup_counts[(u64)shard * (KML_CGROUP_ROWS + 1) + row];
}

static inline void kml_total_inc(u32 shard, int which)
{
	kml_atomic_add(&kml.totals[shard * KML_T_NR + which], 1);
}

/* ---- tables ---------------------------------------------------------------- */

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
		kml_smp_wmb();
		WRITE_ONCE(row->ready, 1);
		return idx;
	}
	return KML_PROC_ROWS;
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

		idx = kml_cache_slot(key, i);
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
		kml_smp_wmb();
		WRITE_ONCE(row->ready, 1);
		return idx;
	}
	return KML_CACHE_ROWS;
}

/*
 * Index of the row keyed by `key` (non-zero) in a table of `rows` keys (a
 * power of two) that holds nothing but the key: a call-site address, a
 * cgroup id. `rows` means (other): the key found no row in
 * KML_PROBE_LIMIT tries.
 */
static u32 kml_key_row(u64 *keys, u32 rows, u64 key)
{
	u64 h = kml_mix(key);
	u32 i, idx;

	for (i = 0; i < KML_PROBE_LIMIT; i++) {
		u64 cur;

		idx = (u32)(h + i) & (rows - 1);
		cur = READ_ONCE(keys[idx]);
		if (cur == key)
			return idx;
		if (cur != 0)
			continue;
		if (kml_cmpxchg64(&keys[idx], 0, key) || READ_ONCE(keys[idx]) == key)
			return idx;
	}
	return rows;
}

/*
 * The cgroup v2 id of `task` (0: none yet). A task's old css_set is freed
 * an RCU grace period after the task moved (kfree_rcu), the css_set pins
 * its cgroup and the cgroup its kernfs node: the walk runs in an RCU
 * read-side section. 7.3 runs tracepoint probes preemptibly (srcu_fast),
 * so the probe's own context is not one; rcu_read_lock() is a per-task
 * counter, valid in any context.
 */
static u64 kml_cgroup_id(void *task)
{
	const void *cset, *cgrp, *kn = NULL;
	u64 id = 0;

	if (KML_WEAK_ADDR(kml_rcu_read_lock) && KML_WEAK_ADDR(kml_rcu_read_unlock))
		KML_WEAK_ADDR(kml_rcu_read_lock)();
	cset = READ_ONCE(KML_FIELD(task, task_cgroups, const void *));
	cgrp = cset ? READ_ONCE(KML_FIELD(cset, css_set_dfl_cgrp, const void *)) : NULL;
	kn = cgrp ? READ_ONCE(KML_FIELD(cgrp, cgroup_kn, const void *)) : NULL;
	if (kn)
		id = READ_ONCE(KML_FIELD(kn, kernfs_node_id, u64));
	if (KML_WEAK_ADDR(kml_rcu_read_lock) && KML_WEAK_ADDR(kml_rcu_read_unlock))
		KML_WEAK_ADDR(kml_rcu_read_unlock)();
	return id;
}

/* Take an object's bytes off the outstanding counts of the rows it was
 * allocated under. */
static void kml_ptr_retire(u32 shard, const struct kml_ptr *e)
{
	u64 b = e->bytes;

	if (e->is_page)
		return;
	kml_atomic_add(&kml_pc(shard, e->proc_row)->outstanding, -b);
	kml_atomic_add(&kml_cc(shard, e->cache_row)->outstanding, -b);
	kml_atomic_add(&kml_gc(shard, e->cgroup_row)->outstanding, -b);
	if (e->site_row <= KML_SITE_ROWS)
		kml_atomic_add(&kml_sc(shard, e->site_row)->outstanding, -b);
}

/* Remember an outstanding object. An entry already present for the same
 * address was freed where no tracepoint fires (bulk frees): retire it. */
static void kml_ptr_insert(u32 shard, u64 ptr, u64 bytes, u32 prow, u32 crow,
			   u32 srow, u32 grow, u64 now, bool is_page)
{
	u64 h = kml_mix(ptr);
	struct kml_ptr *slot = NULL;
	u32 i;

	for (i = 0; i < KML_PTR_PROBE_LIMIT; i++) {
		struct kml_ptr *e = &kml.ptrs[(h + i) & kml.ptr_mask];
		u64 cur = READ_ONCE(e->key);

		if (cur == ptr) {
			struct kml_ptr old = *e;

			if (!kml_cmpxchg64(&e->key, ptr, KML_PTR_TOMB))
				continue;
			kml_ptr_retire(shard, &old);
			kml_total_inc(shard, KML_T_STALE_PTR);
			cur = KML_PTR_TOMB;
		}
		if (cur == KML_PTR_EMPTY || cur == KML_PTR_TOMB) {
			if (!slot && kml_cmpxchg64(&e->key, cur, ptr)) {
				slot = e;
				slot->bytes = (u32)(bytes > 0xffffffffULL ? 0xffffffffULL : bytes);
				slot->proc_row = prow;
				slot->cache_row = crow;
				slot->site_row = srow;
				slot->cgroup_row = grow;
				slot->time_ns = now;
				slot->is_page = is_page;
			}
			if (cur == KML_PTR_EMPTY)
				break;
		}
	}
	if (!slot)
		kml_total_inc(shard, KML_T_PTR_FULL);
}

/* Forget an object; returns false if it was not allocated since load. */
static bool kml_ptr_remove(u64 ptr, struct kml_ptr *out)
{
	u64 h = kml_mix(ptr);
	u32 i;

	for (i = 0; i < KML_PTR_PROBE_LIMIT; i++) {
		struct kml_ptr *e = &kml.ptrs[(h + i) & kml.ptr_mask];
		u64 cur = READ_ONCE(e->key);

		if (cur == KML_PTR_EMPTY)
			return false;
		if (cur != ptr)
			continue;
		*out = *e;
		if (kml_cmpxchg64(&e->key, ptr, KML_PTR_TOMB))
			return true;
	}
	return false;
}

static u32 kml_hist_bucket(u64 bytes)
{
	u32 b = 0;
	u64 limit = 8;

	while (b < KML_HIST_BUCKETS - 1 && bytes > limit) {
		limit <<= 1;
		b++;
	}
	return b;
}

/* ---- sampled allocation stacks: recording ------------------------------ */

/*
 * With --set stacks=N, one slab allocation in N (counted per CPU) has its
 * kernel stack saved (stack_trace_save) and counted in a preallocated
 * open-addressed table keyed by a hash of the frames: allocations and bytes
 * per distinct stack. Nothing is allocated and no lock is taken here; a
 * stack that finds no slot within KML_STACK_PROBES is counted as dropped.
 * Read through /proc/kmlink/stacks (below), apart from the stats file.
 */
KML_OPTION(stacks, 0);		/* save the stack of 1 in N allocations; 0: off */

KML_WEAK(kml_stack_trace_save, "stack_trace_save");
extern unsigned int kml_stack_trace_save(unsigned long *store, unsigned int size,
					 unsigned int skipnr) __attribute__((weak));
KML_WEAK_REF(kml_stack_trace_save);

#define KML_STACK_SLOTS 2048	/* distinct stacks kept (power of two) */
#define KML_STACK_DEPTH 32	/* frames kept per stack, innermost first */
#define KML_STACK_PROBES 16	/* slots tried before a stack is dropped */
#define KML_STACK_TICKS 64	/* sampling counters, indexed by CPU */

enum { KML_STACK_FREE, KML_STACK_FILLING, KML_STACK_READY };

struct kml_stack {
	u32 state;		/* KML_STACK_*: FREE -> FILLING (one writer) -> READY */
	u32 depth;		/* frames[0 .. depth) */
	u64 hash;		/* of the frames; never 0 */
	u64 allocs;
	u64 bytes;
	u64 frames[KML_STACK_DEPTH];
};

static struct {
	struct kml_stack *slots;	/* KML_STACK_SLOTS; NULL when off */
	u64 ticks[KML_STACK_TICKS];	/* allocations seen, per CPU (racy: sampling only) */
	u64 sampled;			/* stacks saved */
	u64 dropped;			/* saved stacks that found no slot */
	void *ops[24];			/* struct proc_ops of /proc/kmlink/stacks */
} kml_stk;

static u64 kml_stack_hash(const unsigned long *frames, u32 depth)
{
	u64 h = depth;
	u32 i;

	for (i = 0; i < depth; i++)
		h = kml_mix(h ^ frames[i]);
	return h | 1;
}

static void kml_stack_count(struct kml_stack *s, u64 bytes)
{
	kml_atomic_add(&s->allocs, 1);
	kml_atomic_add(&s->bytes, bytes);
}

/* Probe path: called for every slab allocation the monitor counts. */
static void kml_stack_sample(u32 cpu, u64 bytes)
{
	unsigned long frames[KML_STACK_DEPTH];
	u32 depth, i, n;
	u64 h;

	if (!kml_stk.slots || ++kml_stk.ticks[cpu % KML_STACK_TICKS] % kml_opt_stacks)
		return;
	depth = KML_WEAK_ADDR(kml_stack_trace_save)(frames, KML_STACK_DEPTH, 0);
	if (depth > KML_STACK_DEPTH)
		depth = KML_STACK_DEPTH;
	h = kml_stack_hash(frames, depth);
	kml_atomic_add(&kml_stk.sampled, 1);
	for (n = 0; n < KML_STACK_PROBES; n++) {
		struct kml_stack *s = &kml_stk.slots[(h + n) & (KML_STACK_SLOTS - 1)];

		if (READ_ONCE(s->state) == KML_STACK_FREE &&
		    kml_cmpxchg32(&s->state, KML_STACK_FREE, KML_STACK_FILLING)) {
			for (i = 0; i < depth; i++)
				s->frames[i] = frames[i];
			s->depth = depth;
			s->hash = h;
			kml_stack_count(s, bytes);
			/* Publish: frames, depth and hash are visible before
			 * READY on every CPU (paired with the readers' rmb). */
			kml_smp_wmb();
			WRITE_ONCE(s->state, KML_STACK_READY);
			return;
		}
		/* A slot being filled may hold this very stack: the reader sums
		 * equal stacks, so moving on only costs a slot. */
		if (READ_ONCE(s->state) == KML_STACK_READY) {
			kml_smp_rmb();	/* hash and depth were written before READY */
			if (READ_ONCE(s->hash) == h && READ_ONCE(s->depth) == depth) {
				kml_stack_count(s, bytes);
				return;
			}
		}
	}
	kml_atomic_add(&kml_stk.dropped, 1);
}

/* ---- event recording -------------------------------------------------- */

struct kml_ctx {
	void *task;
	u32 shard;
	u32 cpu;
	u32 tgid;
	u32 prow;
	u32 grow;	/* cgroup row */
	u64 now;
	char comm[KML_COMM_LEN];
};

static void kml_ctx_init(struct kml_ctx *c)
{
	const volatile u64 *comm;
	u64 words[2], cgroup;
	int i;

	c->task = kml_current();
	c->cpu = kml_cpu();
	c->shard = c->cpu % kml.shards;
	comm = (const volatile u64 *)((const char *)c->task + kml_slot_task_comm);
	c->tgid = (u32)KML_FIELD(c->task, task_tgid, s32);
	/* comm may change under us (exec, prctl): two word loads, NUL-capped. */
	words[0] = comm[0];
	words[1] = comm[1];
	for (i = 0; i < KML_COMM_LEN; i++)
		c->comm[i] = (char)(words[i / 8] >> (8 * (i % 8)));
	c->comm[KML_COMM_LEN - 1] = 0;
	c->prow = kml_proc_row(c->tgid, c->comm);
	cgroup = kml_cgroup_id(c->task);
	c->grow = cgroup ? kml_key_row(kml.cgroups, KML_CGROUP_ROWS, cgroup)
			 : KML_CGROUP_ROWS;
	if (cgroup && c->grow == KML_CGROUP_ROWS)
		kml_total_inc(c->shard, KML_T_OTHER_CGROUP);
	c->now = kml_ktime_ns();
}

static void kml_ring_put(const struct kml_ctx *c, u8 type, u64 call_site,
			 u64 ptr, u64 req, u64 alloc, u32 gfp, u32 crow,
			 u8 order)
{
	struct kml_ring *ring = &kml.rings[c->cpu % kml.nrings];
	u64 n = kml_xadd64(&ring->head, 1);
	struct kml_event *e = &ring->ev[n & (kml.ring_cap - 1)];
	int i;

	WRITE_ONCE(e->seq, 0);
	kml_smp_wmb();
	e->time_ns = c->now;
	e->call_site = call_site;
	e->ptr = ptr;
	e->bytes_req = req;
	e->bytes_alloc = alloc;
	e->gfp = gfp;
	e->cache_row = crow;
	e->tgid = c->tgid;
	e->pid = (u32)KML_FIELD(c->task, task_pid, s32);
	e->cpu = (u16)c->cpu;
	e->type = type;
	e->order = order;
	for (i = 0; i < KML_COMM_LEN; i++)
		e->comm[i] = c->comm[i];
	kml_smp_wmb();
	WRITE_ONCE(e->seq, n + 1);
}

static inline bool kml_active(void)
{
	return !READ_ONCE(kml.paused);
}

static void kml_on_alloc(u8 type, const void *cache, u64 call_site, u64 ptr,
			 u64 req, u64 alloc, u32 gfp)
{
	struct kml_ctx c;
	struct kml_counts *pc, *cc, *gc;
	struct kml_site_counts *sc;
	u32 crow, srow;

	kml_ctx_init(&c);
	crow = kml_cache_row(cache);
	srow = call_site ? kml_key_row(kml.sites, KML_SITE_ROWS, call_site)
			 : KML_SITE_ROWS;
	pc = kml_pc(c.shard, c.prow);
	cc = kml_cc(c.shard, crow);
	gc = kml_gc(c.shard, c.grow);
	sc = kml_sc(c.shard, srow);
	kml_atomic_add(&pc->allocs, 1);
	kml_atomic_add(&pc->bytes_req, req);
	kml_atomic_add(&pc->bytes_alloc, alloc);
	kml_atomic_add(&cc->allocs, 1);
	kml_atomic_add(&cc->bytes_req, req);
	kml_atomic_add(&cc->bytes_alloc, alloc);
	kml_atomic_add(&gc->allocs, 1);
	kml_atomic_add(&gc->bytes_req, req);
	kml_atomic_add(&gc->bytes_alloc, alloc);
	kml_atomic_add(&sc->allocs, 1);
	kml_atomic_add(&sc->bytes, alloc);
	kml_atomic_add(&kml.hist[c.shard * KML_HIST_BUCKETS + kml_hist_bucket(alloc)], 1);
	kml_total_inc(c.shard, KML_T_EVENTS);
	if (c.prow == KML_PROC_ROWS)
		kml_total_inc(c.shard, KML_T_OTHER_PROC);
	if (crow == KML_CACHE_ROWS)
		kml_total_inc(c.shard, KML_T_OTHER_CACHE);
	if (call_site && srow == KML_SITE_ROWS)
		kml_total_inc(c.shard, KML_T_OTHER_SITE);
	if (ptr) {
		kml_atomic_add(&pc->outstanding, alloc);
		kml_atomic_add(&cc->outstanding, alloc);
		kml_atomic_add(&gc->outstanding, alloc);
		kml_atomic_add(&sc->outstanding, alloc);
		kml_ptr_insert(c.shard, ptr, alloc, c.prow, crow, srow, c.grow,
			       c.now, false);
	}
	kml_ring_put(&c, type, call_site, ptr, req, alloc, gfp, crow, 0);
	kml_stack_sample(c.cpu, alloc);
}

static void kml_on_free(u8 type, const void *cache, u64 call_site, u64 ptr)
{
	struct kml_ctx c;
	struct kml_ptr old;
	u32 crow;

	kml_ctx_init(&c);
	crow = kml_cache_row(cache);
	kml_atomic_add(&kml_pc(c.shard, c.prow)->frees, 1);
	kml_atomic_add(&kml_gc(c.shard, c.grow)->frees, 1);
	kml_total_inc(c.shard, KML_T_EVENTS);
	if (kml_ptr_remove(ptr, &old) && !old.is_page) {
		/* Outstanding bytes belong to the allocating process, cache,
		 * cgroup and call site; the free to the allocating site. */
		kml_ptr_retire(c.shard, &old);
		if (old.site_row <= KML_SITE_ROWS)
			kml_atomic_add(&kml_sc(c.shard, old.site_row)->frees, 1);
		if (!cache)
			crow = old.cache_row;
	} else {
		kml_total_inc(c.shard, KML_T_UNKNOWN_FREE);
	}
	kml_atomic_add(&kml_cc(c.shard, crow)->frees, 1);
	kml_ring_put(&c, type, call_site, ptr, 0, 0, 0, crow, 0);
}

static void kml_on_page(bool alloc, u64 page, u32 order, u32 gfp)
{
	u64 bytes = kml_opt_page_size << (order & 31);
	struct kml_ctx c;
	struct kml_counts *pc, *gc;
	struct kml_ptr old;

	kml_ctx_init(&c);
	pc = kml_pc(c.shard, c.prow);
	gc = kml_gc(c.shard, c.grow);
	kml_total_inc(c.shard, KML_T_EVENTS);
	if (alloc) {
		kml_atomic_add(&pc->page_allocs, 1);
		kml_atomic_add(&pc->page_bytes, bytes);
		kml_atomic_add(&gc->page_allocs, 1);
		kml_atomic_add(&gc->page_bytes, bytes);
		kml_ptr_insert(c.shard, page, bytes, c.prow, KML_NO_CACHE,
			       KML_NO_SITE, c.grow, c.now, true);
	} else {
		kml_atomic_add(&pc->page_frees, 1);
		kml_atomic_add(&gc->page_frees, 1);
		kml_ptr_remove(page, &old);
	}
	kml_ring_put(&c, alloc ? KML_EV_PAGE_ALLOC : KML_EV_PAGE_FREE, 0, page,
		     alloc ? bytes : 0, alloc ? bytes : 0, gfp, KML_NO_CACHE,
		     (u8)order);
}

/* ---- probes: called as probe(data, <tracepoint arguments>) -------------- */

static void kml_probe_kmalloc(void *data, u64 a1, u64 a2, u64 a3, u64 a4,
			      u64 a5, u64 a6)
{
	const u64 args[6] = { a1, a2, a3, a4, a5, a6 };

	if (!kml_active())
		return;
	kml_on_alloc(KML_EV_KMALLOC, NULL, KML_ARG(args, kmalloc_call_site),
		     KML_ARG(args, kmalloc_ptr), KML_ARG(args, kmalloc_bytes_req),
		     KML_ARG(args, kmalloc_bytes_alloc),
		     (u32)KML_ARG(args, kmalloc_gfp));
}

static void kml_probe_kmalloc_node(void *data, u64 a1, u64 a2, u64 a3,
				   u64 a4, u64 a5, u64 a6)
{
	const u64 args[6] = { a1, a2, a3, a4, a5, a6 };

	if (!kml_active())
		return;
	kml_on_alloc(KML_EV_KMALLOC, NULL, KML_ARG(args, kmn_call_site),
		     KML_ARG(args, kmn_ptr), KML_ARG(args, kmn_bytes_req),
		     KML_ARG(args, kmn_bytes_alloc), (u32)KML_ARG(args, kmn_gfp));
}

/*
 * The cache of a slab object, from its page (kernels whose kmem_cache_alloc
 * event passes no cache: 5.10): virt_to_page(), the head of a compound page,
 * then page.slab_cache. Slab objects live in the direct map, where
 * virt_to_page() is affine: the architecture names one direct-map address
 * and its struct page (kml_arch_direct_map), the rest is the distance in
 * pages times sizeof(struct page). NULL where the kernel describes none of
 * this. Bounded: a few loads.
 */
static const void *kml_obj_cache(u64 ptr)
{
	u64 virt, page, head;

	if (!ptr || !kml_slot_page_struct_size || !kml_slot_page_slab_cache ||
	    !kml_slot_page_compound_head || !kml_opt_page_size ||
	    !kml_arch_direct_map(ptr, &virt, &page))
		return NULL;
	page += (u64)((s64)(ptr / kml_opt_page_size) -
		      (s64)(virt / kml_opt_page_size)) *
		kml_slot_page_struct_size;
	head = READ_ONCE(KML_FIELD(page, page_compound_head, u64));
	if (head & 1)
		page = head - 1;
	return KML_FIELD(page, page_slab_cache, const void *);
}

static void kml_cache_alloc(const void *cache, u64 call_site, u64 ptr, u32 gfp)
{
	u64 req = 0, alloc = 0;

	if (!cache)
		cache = kml_obj_cache(ptr);
	if (cache) {
		req = KML_FIELD(cache, cache_object_size, u32);
		alloc = KML_FIELD(cache, cache_size, u32);
	}
	kml_on_alloc(KML_EV_KMEM_CACHE_ALLOC, cache, call_site, ptr, req, alloc,
		     gfp);
}

static void kml_probe_kmem_cache_alloc(void *data, u64 a1, u64 a2, u64 a3,
				       u64 a4, u64 a5)
{
	const u64 args[5] = { a1, a2, a3, a4, a5 };

	if (!kml_active())
		return;
	kml_cache_alloc((const void *)KML_ARG(args, kca_cache),
			KML_ARG(args, kca_call_site), KML_ARG(args, kca_ptr),
			(u32)KML_ARG(args, kca_gfp));
}

static void kml_probe_kmem_cache_alloc_node(void *data, u64 a1, u64 a2,
					    u64 a3, u64 a4, u64 a5, u64 a6)
{
	const u64 args[6] = { a1, a2, a3, a4, a5, a6 };

	if (!kml_active())
		return;
	kml_cache_alloc(NULL, KML_ARG(args, kcan_call_site),
			KML_ARG(args, kcan_ptr), (u32)KML_ARG(args, kcan_gfp));
}

static void kml_probe_kfree(void *data, u64 a1, u64 a2)
{
	const u64 args[2] = { a1, a2 };
	u64 ptr = KML_ARG(args, kfree_ptr);

	/* kfree(NULL) is traced too; it frees nothing. */
	if (!kml_active() || !ptr)
		return;
	kml_on_free(KML_EV_KFREE, NULL, KML_ARG(args, kfree_call_site), ptr);
}

static void kml_probe_kmem_cache_free(void *data, u64 a1, u64 a2, u64 a3)
{
	const u64 args[3] = { a1, a2, a3 };

	if (!kml_active())
		return;
	kml_on_free(KML_EV_KMEM_CACHE_FREE, (const void *)KML_ARG(args, kcf_cache),
		    KML_ARG(args, kcf_call_site), KML_ARG(args, kcf_ptr));
}

static void kml_probe_page_alloc(void *data, u64 a1, u64 a2, u64 a3, u64 a4)
{
	const u64 args[4] = { a1, a2, a3, a4 };
	u64 page = KML_ARG(args, mpa_page);

	/* A failed allocation is traced with a NULL page. */
	if (!kml_active() || !page)
		return;
	kml_on_page(true, page, (u32)KML_ARG(args, mpa_order),
		    (u32)KML_ARG(args, mpa_gfp));
}

static void kml_probe_page_free(void *data, u64 a1, u64 a2)
{
	const u64 args[2] = { a1, a2 };

	if (!kml_active())
		return;
	kml_on_page(false, KML_ARG(args, mpf_page), (u32)KML_ARG(args, mpf_order), 0);
}

static void *const kml_probes[KML_EV_NR] = {
	NULL,
	(void *)kml_probe_kmalloc,
	(void *)kml_probe_kmem_cache_alloc,
	(void *)kml_probe_kfree,
	(void *)kml_probe_kmem_cache_free,
	(void *)kml_probe_page_alloc,
	(void *)kml_probe_page_free,
};

static const struct kml_node_tp {
	void *tp;
	void *probe;
	u8 type;
	const char *name;
} kml_node_tps[] = {
	{ kml_tp_kmalloc_node, (void *)kml_probe_kmalloc_node, KML_EV_KMALLOC,
	  "kmalloc_node" },
	{ kml_tp_kmem_cache_alloc_node, (void *)kml_probe_kmem_cache_alloc_node,
	  KML_EV_KMEM_CACHE_ALLOC, "kmem_cache_alloc_node" },
};

/* mm_page_alloc / mm_page_free are not exported: find them by name. */
static void kml_find_tracepoint(void *tp, void *priv)
{
	const char *name = KML_FIELD(tp, tracepoint_name, const char *);

	if (!name)
		return;
	if (kml_streq(name, "mm_page_alloc"))
		kml.tp[KML_EV_PAGE_ALLOC] = tp;
	else if (kml_streq(name, "mm_page_free"))
		kml.tp[KML_EV_PAGE_FREE] = tp;
}

/* ---- the kprobe backend --------------------------------------------------- */

/*
 * Allocation functions get a kretprobe: the entry handler saves the
 * arguments (and the caller) in the instance's data, the return handler
 * sees the result. Free functions get a plain kprobe. Handlers run with
 * preemption disabled; they share the recording path with the tracepoint
 * probes, so the same bounded, lock-free rules hold.
 */
#define KML_KP_WORDS 96		/* room for struct kretprobe (checked at init) */
#define KML_KP_SYM_LEN 48

/* KML_HK_ALLOC_LARGE: the large-kmalloc entry points, which the kernel's
 * other kmalloc functions call and then trace once more themselves (6.12+:
 * two kmalloc events per large kmalloc, see kml_kp_nested()).
 * KML_HK_PAGES_FREE_PCP: the per-CPU-list free path (free_unref_page,
 * free_frozen_pages), which hands orders those lists do not take on to
 * __free_pages_ok(), itself probed as KML_HK_PAGES_FREE. */
enum kml_hook_kind {
	KML_HK_ALLOC,
	KML_HK_ALLOC_LARGE,
	KML_HK_FREE,
	KML_HK_PAGES,
	KML_HK_PAGES_FREE,
	KML_HK_PAGES_FREE_PCP,
};

struct kml_hook {
	const char *cands;		/* the manifest's candidate list */
	const volatile u64 *fn;		/* chosen candidate, 1-based; 0: none */
	const volatile u64 *a_size;	/* argument positions (0: absent) */
	const volatile u64 *a_cache;
	const volatile u64 *a_gfp;
	const volatile u64 *a_ptr;
	const volatile u64 *a_order;
	const volatile u64 *a_caller;
	u8 kind;			/* enum kml_hook_kind */
	u8 type;			/* KML_EV_* */
	u8 registered;
	u64 start, end;			/* the probed function's text (kallsyms) */
	char sym[KML_KP_SYM_LEN];
	u64 probe[KML_KP_WORDS];	/* struct kprobe or struct kretprobe */
};

/* What an entry handler hands to the return handler. */
struct kml_kp_data {
	u64 size;
	u64 cache;
	u64 call_site;
	u32 gfp;
	u32 order;
	u64 ret_ip;	/* the return address at entry */
	u32 nested;	/* called from the body of another probed function */
};

/*
 * The hooks, one per allocator function: `fn` is the slot the linker fills
 * with the function's address (NULL when this kernel lacks it), the `a_*`
 * slots hold the argument positions the record gives for it; an argument
 * the function does not take is left out (NULL).
 */
#define S(x) (&kml_slot_##x)

static struct kml_hook kml_hooks[] = {
	{ .cands = KP_KMALLOC, .fn = S(kp_kmalloc),
	  .a_size = S(kp_kmalloc_size), .a_gfp = S(kp_kmalloc_gfp),
	  .kind = KML_HK_ALLOC, .type = KML_EV_KMALLOC },
	{ .cands = KP_KMALLOC_NODE, .fn = S(kp_kmalloc_node),
	  .a_size = S(kp_kmalloc_node_size), .a_gfp = S(kp_kmalloc_node_gfp),
	  .kind = KML_HK_ALLOC, .type = KML_EV_KMALLOC },
	{ .cands = KP_KMALLOC_CALLER, .fn = S(kp_kmalloc_caller),
	  .a_size = S(kp_kmalloc_caller_size),
	  .a_gfp = S(kp_kmalloc_caller_gfp),
	  .a_caller = S(kp_kmalloc_caller_caller), .kind = KML_HK_ALLOC,
	  .type = KML_EV_KMALLOC },
	{ .cands = KP_KMALLOC_CALLER_ANY, .fn = S(kp_kmalloc_caller_any),
	  .a_size = S(kp_kmalloc_caller_any_size),
	  .a_gfp = S(kp_kmalloc_caller_any_gfp),
	  .a_caller = S(kp_kmalloc_caller_any_caller), .kind = KML_HK_ALLOC,
	  .type = KML_EV_KMALLOC },
	{ .cands = KP_KMALLOC_ORDER, .fn = S(kp_kmalloc_order),
	  .a_size = S(kp_kmalloc_order_size), .a_gfp = S(kp_kmalloc_order_gfp),
	  .kind = KML_HK_ALLOC, .type = KML_EV_KMALLOC },
	{ .cands = KP_KMALLOC_LARGE, .fn = S(kp_kmalloc_large),
	  .a_size = S(kp_kmalloc_large_size), .a_gfp = S(kp_kmalloc_large_gfp),
	  .kind = KML_HK_ALLOC_LARGE, .type = KML_EV_KMALLOC },
	{ .cands = KP_KMALLOC_LARGE_NODE, .fn = S(kp_kmalloc_large_node),
	  .a_size = S(kp_kmalloc_large_node_size),
	  .a_gfp = S(kp_kmalloc_large_node_gfp), .kind = KML_HK_ALLOC_LARGE,
	  .type = KML_EV_KMALLOC },
	{ .cands = KP_KMALLOC_CACHE, .fn = S(kp_kmalloc_cache),
	  .a_size = S(kp_kmalloc_cache_size), .a_cache = S(kp_kmalloc_cache_s),
	  .a_gfp = S(kp_kmalloc_cache_gfp), .kind = KML_HK_ALLOC,
	  .type = KML_EV_KMALLOC },
	{ .cands = KP_KMALLOC_CACHE_NODE, .fn = S(kp_kmalloc_cache_node),
	  .a_size = S(kp_kmalloc_cache_node_size),
	  .a_cache = S(kp_kmalloc_cache_node_s),
	  .a_gfp = S(kp_kmalloc_cache_node_gfp), .kind = KML_HK_ALLOC,
	  .type = KML_EV_KMALLOC },
	{ .cands = KP_KCA, .fn = S(kp_kca), .a_cache = S(kp_kca_s),
	  .a_gfp = S(kp_kca_gfp), .kind = KML_HK_ALLOC,
	  .type = KML_EV_KMEM_CACHE_ALLOC },
	{ .cands = KP_KCA_LRU, .fn = S(kp_kca_lru), .a_cache = S(kp_kca_lru_s),
	  .a_gfp = S(kp_kca_lru_gfp), .kind = KML_HK_ALLOC,
	  .type = KML_EV_KMEM_CACHE_ALLOC },
	{ .cands = KP_KCA_NODE, .fn = S(kp_kca_node),
	  .a_cache = S(kp_kca_node_s), .a_gfp = S(kp_kca_node_gfp),
	  .kind = KML_HK_ALLOC, .type = KML_EV_KMEM_CACHE_ALLOC },
	{ .cands = KP_KVMALLOC, .fn = S(kp_kvmalloc),
	  .a_size = S(kp_kvmalloc_size), .a_gfp = S(kp_kvmalloc_gfp),
	  .kind = KML_HK_ALLOC, .type = KML_EV_KMALLOC },
	{ .cands = KP_KMALLOC_FLAGS, .fn = S(kp_kmalloc_flags),
	  .a_size = S(kp_kmalloc_flags_size), .a_gfp = S(kp_kmalloc_flags_gfp),
	  .kind = KML_HK_ALLOC, .type = KML_EV_KMALLOC },
	{ .cands = KP_KCA_SHEAF, .fn = S(kp_kca_sheaf),
	  .a_cache = S(kp_kca_sheaf_s), .a_gfp = S(kp_kca_sheaf_gfp),
	  .kind = KML_HK_ALLOC, .type = KML_EV_KMEM_CACHE_ALLOC },
	{ .cands = KP_KFREE, .fn = S(kp_kfree), .a_ptr = S(kp_kfree_ptr),
	  .kind = KML_HK_FREE, .type = KML_EV_KFREE },
	{ .cands = KP_KCF, .fn = S(kp_kcf), .a_cache = S(kp_kcf_s),
	  .a_ptr = S(kp_kcf_ptr), .kind = KML_HK_FREE,
	  .type = KML_EV_KMEM_CACHE_FREE },
	{ .cands = KP_PAGES, .fn = S(kp_pages), .a_gfp = S(kp_pages_gfp),
	  .a_order = S(kp_pages_order), .kind = KML_HK_PAGES,
	  .type = KML_EV_PAGE_ALLOC },
	{ .cands = KP_PAGES_NOLOCK, .fn = S(kp_pages_nolock),
	  .a_gfp = S(kp_pages_nolock_gfp), .a_order = S(kp_pages_nolock_order),
	  .kind = KML_HK_PAGES, .type = KML_EV_PAGE_ALLOC },
	{ .cands = KP_PAGES_FREE, .fn = S(kp_pages_free),
	  .a_ptr = S(kp_pages_free_page), .a_order = S(kp_pages_free_order),
	  .kind = KML_HK_PAGES_FREE_PCP, .type = KML_EV_PAGE_FREE },
	{ .cands = KP_PAGES_FREE_OK, .fn = S(kp_pages_free_ok),
	  .a_ptr = S(kp_pages_free_ok_page),
	  .a_order = S(kp_pages_free_ok_order), .kind = KML_HK_PAGES_FREE,
	  .type = KML_EV_PAGE_FREE },
};

#undef S

/* Allocation hooks need the result: a kretprobe. Free hooks: a kprobe. */
static bool kml_hook_returns(const struct kml_hook *h)
{
	return h->kind == KML_HK_ALLOC || h->kind == KML_HK_ALLOC_LARGE ||
	       h->kind == KML_HK_PAGES;
}

static u64 kml_hook_arg(const void *regs, const volatile u64 *slot)
{
	return slot ? kml_regs_arg(regs, *slot) : 0;
}

/*
 * Nested hooks. The kernel fires a kmem tracepoint in the function that
 * allocates, and a probed function may call another probed one instead:
 * 6.10-6.15 __kvmalloc_node_noprof calls __kmalloc_node_noprof (one kmalloc
 * event, in the callee), 6.16+ inline that kmalloc into
 * __kvmalloc_node_noprof (one event there); 7.3's
 * alloc_frozen_pages_nolock_noprof calls __alloc_frozen_pages_noprof. An
 * allocation is therefore counted where the innermost probed function
 * returns it: a hook entered from inside the text of another registered
 * hook of the same event type leaves a mark for that (task, hook) when it
 * returns, and the enclosing hook's return takes the mark and records
 * nothing. Large kmallocs are the exception: the kernel's kmalloc functions
 * call __kmalloc_large_node_noprof, which traces, and then trace the same
 * allocation once more (6.12-7.3: two events), so they leave no mark.
 * A tail call (6.12's __kvmalloc_node_noprof jumps to
 * __kmalloc_node_noprof) leaves no return address in the caller's text:
 * the callee finds the kretprobe trampoline there instead, and learns it
 * at its return, where the kernel hands the handlers the real return
 * address in regs->ip. Such a hook leaves a "tail" mark for its task, and
 * the very next return handler the trampoline runs on that task -- the
 * enclosing hook's, in the same trampoline pass -- takes it; the event
 * gets the real return address as its call site, as the kernel's own
 * tracepoint would without kretprobes.
 * Marks live in a small table indexed by a hash of (task, hook); a
 * collision between two tasks in the instant between the inner and the
 * outer return can only cost a double count.
 */
#define KML_KP_NEST_TAIL 63
#define KML_KP_NEST_SLOTS 1024
static u64 kml_kp_nest[KML_KP_NEST_SLOTS];

/* task_struct is cache-line aligned: task + hook index is unique. */
static u64 kml_kp_nest_key(u32 hook)
{
	return (u64)kml_current() + hook;
}

static u64 *kml_kp_nest_slot(u64 key)
{
	return &kml_kp_nest[(key * 0x9E3779B97F4A7C15ull) >> 54];
}

/* 1 + the index of the registered hook of type `type` whose function's
 * text holds `ip`; 0 if none. */
static u32 kml_kp_enclosing(u8 type, u64 ip)
{
	u32 i;

	for (i = 0; i < ARRAY_SIZE(kml_hooks); i++) {
		const struct kml_hook *o = &kml_hooks[i];
		u64 start = READ_ONCE(o->start);

		if (start && o->type == type && ip >= start && ip < READ_ONCE(o->end))
			return i + 1;
	}
	return 0;
}

static int kml_kp_entry(struct kml_hook *h, void *ri, void *regs)
{
	struct kml_kp_data *d = (void *)((char *)ri + kml_slot_kri_data);

	if (!kml_active())
		return 1;	/* no return handler for this call */
	d->size = kml_hook_arg(regs, h->a_size);
	d->cache = kml_hook_arg(regs, h->a_cache);
	d->gfp = (u32)kml_hook_arg(regs, h->a_gfp);
	d->order = (u32)kml_hook_arg(regs, h->a_order);
	d->call_site = h->a_caller && *h->a_caller ? kml_hook_arg(regs, h->a_caller)
						   : kml_regs_caller(regs);
	d->ret_ip = kml_regs_caller(regs);
	d->nested = h->kind == KML_HK_ALLOC_LARGE ? 0 : kml_kp_enclosing(h->type, d->ret_ip);
	return 0;
}

/* True when a nested hook already counted what this call returns; marks
 * the enclosing hook's call in turn when this one is nested. */
static bool kml_kp_counted_inside(struct kml_hook *h, const struct kml_kp_data *d,
				  u64 ret_ip)
{
	u64 self = kml_kp_nest_key((u32)(h - kml_hooks));
	u64 tail = kml_kp_nest_key(KML_KP_NEST_TAIL);
	bool inner = kml_cmpxchg64(kml_kp_nest_slot(self), self, 0);

	inner |= kml_cmpxchg64(kml_kp_nest_slot(tail), tail, 0);
	if (d->nested) {
		u64 outer = kml_kp_nest_key(d->nested - 1);

		WRITE_ONCE(*kml_kp_nest_slot(outer), outer);
	} else if (ret_ip != d->ret_ip) {
		WRITE_ONCE(*kml_kp_nest_slot(tail), tail);
	}
	return inner;
}

static int kml_kp_return(struct kml_hook *h, void *ri, void *regs)
{
	const struct kml_kp_data *d = (const void *)((char *)ri + kml_slot_kri_data);
	u64 ret = kml_regs_ret(regs);
	/* The real return address (the trampoline's, at entry, if tail-called). */
	u64 ret_ip = kml_slot_kri_ret_addr
		? *(const u64 *)((const char *)ri + kml_slot_kri_ret_addr)
		: kml_regs_ip(regs);
	u64 call_site = d->call_site == d->ret_ip ? ret_ip : d->call_site;
	const void *cache = (const void *)d->cache;
	u64 req = d->size, alloc = d->size;

	if (!kml_active() || kml_kp_counted_inside(h, d, ret_ip))
		return 0;
	if (h->kind == KML_HK_PAGES) {
		if (ret)
			kml_on_page(true, ret, d->order, d->gfp);
		return 0;
	}
	if (cache) {
		alloc = KML_FIELD(cache, cache_size, u32);
		if (h->type == KML_EV_KMEM_CACHE_ALLOC)
			req = KML_FIELD(cache, cache_object_size, u32);
	} else if (ret > 16 && KML_WEAK_ADDR(kml_ksize)) {
		alloc = KML_WEAK_ADDR(kml_ksize)((const void *)ret);
	}
	/* kmalloc events carry no cache (as the tracepoint's): report "-". */
	kml_on_alloc(h->type, h->type == KML_EV_KMALLOC ? NULL : cache,
		     call_site, ret, req, alloc, d->gfp);
	return 0;
}

static int kml_kp_pre(struct kml_hook *h, void *regs)
{
	u64 ptr = kml_hook_arg(regs, h->a_ptr);

	if (!kml_active() || !ptr)
		return 0;
	if (h->kind == KML_HK_PAGES_FREE || h->kind == KML_HK_PAGES_FREE_PCP) {
		u32 order = (u32)kml_hook_arg(regs, h->a_order);

		/* Counted where __free_pages_ok() sees it (pcp_allowed_order():
		 * up to PAGE_ALLOC_COSTLY_ORDER, and the THP order). */
		if (h->kind == KML_HK_PAGES_FREE_PCP && order > 3 && order != 9)
			return 0;
		kml_on_page(false, ptr, order, 0);
		return 0;
	}
	kml_on_free(h->type, (const void *)kml_hook_arg(regs, h->a_cache),
		    kml_regs_caller(regs), ptr);
	return 0;
}

/* One set of handlers per hook: the kernel passes no cookie we could use. */
#define KML_KP_HANDLERS(n)                                                     \
	static int kml_kp_entry_##n(void *ri, void *regs)                      \
	{                                                                      \
		return kml_kp_entry(&kml_hooks[n], ri, regs);                  \
	}                                                                      \
	static int kml_kp_return_##n(void *ri, void *regs)                     \
	{                                                                      \
		return kml_kp_return(&kml_hooks[n], ri, regs);                 \
	}                                                                      \
	static int kml_kp_pre_##n(void *kp, void *regs)                        \
	{                                                                      \
		return kml_kp_pre(&kml_hooks[n], regs);                        \
	}

KML_KP_HANDLERS(0) KML_KP_HANDLERS(1) KML_KP_HANDLERS(2) KML_KP_HANDLERS(3)
KML_KP_HANDLERS(4) KML_KP_HANDLERS(5) KML_KP_HANDLERS(6) KML_KP_HANDLERS(7)
KML_KP_HANDLERS(8) KML_KP_HANDLERS(9) KML_KP_HANDLERS(10) KML_KP_HANDLERS(11)
KML_KP_HANDLERS(12) KML_KP_HANDLERS(13) KML_KP_HANDLERS(14) KML_KP_HANDLERS(15)
KML_KP_HANDLERS(16) KML_KP_HANDLERS(17) KML_KP_HANDLERS(18) KML_KP_HANDLERS(19)
KML_KP_HANDLERS(20)

#define KML_KP_FNS(n) { kml_kp_entry_##n, kml_kp_return_##n, kml_kp_pre_##n }

static int (*const kml_kp_fns[][3])(void *, void *) = {
	KML_KP_FNS(0), KML_KP_FNS(1), KML_KP_FNS(2), KML_KP_FNS(3),
	KML_KP_FNS(4), KML_KP_FNS(5), KML_KP_FNS(6), KML_KP_FNS(7),
	KML_KP_FNS(8), KML_KP_FNS(9), KML_KP_FNS(10), KML_KP_FNS(11),
	KML_KP_FNS(12), KML_KP_FNS(13), KML_KP_FNS(14), KML_KP_FNS(15),
	KML_KP_FNS(16), KML_KP_FNS(17), KML_KP_FNS(18), KML_KP_FNS(19),
	KML_KP_FNS(20),
};

_Static_assert(ARRAY_SIZE(kml_kp_fns) == ARRAY_SIZE(kml_hooks),
	       "one handler set per hook");
_Static_assert(ARRAY_SIZE(kml_hooks) < 64, "hook index fits under a task's alignment");

/* Copy candidate `idx` (1-based) of "a|b|c" into h->sym. */
static bool kml_pick_symbol(struct kml_hook *h, u64 idx)
{
	const char *p = h->cands;
	u64 i = 1;
	int n = 0;

	while (*p && i < idx) {
		if (*p++ == '|')
			i++;
	}
	if (i != idx || !*p)
		return false;
	while (p[n] && p[n] != '|' && n < KML_KP_SYM_LEN - 1) {
		h->sym[n] = p[n];
		n++;
	}
	h->sym[n] = 0;
	return n > 0;
}

static void *kml_field_ptr(u64 *base, u64 off)
{
	return (char *)base + off;
}

/* Parses hex digits at *p (after an optional "0x"); advances *p. */
static u64 kml_parse_hex(const char **p)
{
	const char *q = *p;
	u64 v = 0;

	if (q[0] == '0' && q[1] == 'x')
		q += 2;
	for (;; q++) {
		char c = *q;

		if (c >= '0' && c <= '9')
			v = v * 16 + (u64)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (u64)(c - 'a' + 10);
		else
			break;
	}
	*p = q;
	return v;
}

/* The text of the function a registered probe sits in, from kallsyms:
 * sprint_symbol() writes "name+0xOFF/0xSIZE". Init context only. */
static void kml_hook_range(struct kml_hook *h, const u64 *kp)
{
	static char buf[1024];	/* >= KSYM_SYMBOL_LEN on every kernel in scope */
	u64 addr = *(const u64 *)kml_field_ptr((u64 *)kp, kml_slot_kprobe_addr);
	const char *p = buf;
	u64 off, size;

	if (!KML_WEAK_ADDR(kml_sprint_symbol) || !addr)
		return;
	kml_memzero(buf, sizeof(buf));
	KML_WEAK_ADDR(kml_sprint_symbol)(buf, addr);
	while (*p && *p != '+')
		p++;
	if (*p++ != '+')
		return;
	off = kml_parse_hex(&p);
	if (*p++ != '/')
		return;
	size = kml_parse_hex(&p);
	if (!size || off >= size)
		return;
	WRITE_ONCE(h->end, addr - off + size);
	WRITE_ONCE(h->start, addr - off);
}

static void kml_kprobes_unregister(void)
{
	u32 i;

	for (i = 0; i < ARRAY_SIZE(kml_hooks); i++) {
		struct kml_hook *h = &kml_hooks[i];

		if (!h->registered)
			continue;
		if (kml_hook_returns(h))
			KML_WEAK_ADDR(kml_unregister_kretprobe)(h->probe);
		else
			KML_WEAK_ADDR(kml_unregister_kprobe)(h->probe);
		h->registered = 0;
		h->start = h->end = 0;
	}
}

static u64 kml_kprobes_missed(void)
{
	u64 n = 0;
	u32 i;

	for (i = 0; i < ARRAY_SIZE(kml_hooks); i++) {
		struct kml_hook *h = &kml_hooks[i];
		u64 *kp = h->probe;

		if (!h->registered)
			continue;
		if (kml_hook_returns(h)) {
			n += (u32)READ_ONCE(*(s32 *)kml_field_ptr(kp, kml_slot_kretprobe_nmissed));
			kp = kml_field_ptr(kp, kml_slot_kretprobe_kp);
		}
		n += READ_ONCE(*(u64 *)kml_field_ptr(kp, kml_slot_kprobe_nmissed));
	}
	return n;
}

static u32 kml_kprobes_registered(void)
{
	u32 i, n = 0;

	for (i = 0; i < ARRAY_SIZE(kml_hooks); i++)
		n += kml_hooks[i].registered;
	return n;
}

static int kml_kprobes_register(void)
{
	u32 i, n = 0;
	int err;

	if (!KML_WEAK_ADDR(kml_register_kprobe) ||
	    !KML_WEAK_ADDR(kml_unregister_kprobe) ||
	    !KML_WEAK_ADDR(kml_register_kretprobe) ||
	    !KML_WEAK_ADDR(kml_unregister_kretprobe)) {
		kml_printk(KML_LOG_ERR "kmlink: this kernel exports no kprobe API; build with --backend tracepoint\n");
		return -KML_ENOSYS;
	}
	if (kml_slot_kretprobe_size > sizeof(kml_hooks[0].probe) ||
	    kml_slot_kprobe_size > sizeof(kml_hooks[0].probe)) {
		kml_printk(KML_LOG_ERR "kmlink: struct kretprobe (%llu) larger than expected\n",
			   (u64)kml_slot_kretprobe_size);
		return -KML_EINVAL;
	}
	for (i = 0; i < ARRAY_SIZE(kml_hooks); i++) {
		struct kml_hook *h = &kml_hooks[i];
		u64 *kp = h->probe;
		bool ret = kml_hook_returns(h);

		if (!(kml_opt_events_mask & (1u << (h->type - 1))) || !*h->fn)
			continue;
		/* Kernels with kmalloc_order_trace() (up to 6.0) have a static
		 * kmalloc_large_node() that does not trace: the kmalloc_node
		 * event of its caller is the only one. */
		if (h->fn == &kml_slot_kp_kmalloc_large_node && kml_slot_kp_kmalloc_order)
			continue;
		if (!kml_pick_symbol(h, *h->fn))
			continue;
		kml_memzero(h->probe, sizeof(h->probe));
		if (ret) {
			*(void **)kml_field_ptr(h->probe, kml_slot_kretprobe_entry_handler) =
				(void *)kml_kp_fns[i][0];
			*(void **)kml_field_ptr(h->probe, kml_slot_kretprobe_handler) =
				(void *)kml_kp_fns[i][1];
			*(s32 *)kml_field_ptr(h->probe, kml_slot_kretprobe_maxactive) =
				(s32)kml_opt_kp_maxactive;
			*(u64 *)kml_field_ptr(h->probe, kml_slot_kretprobe_data_size) =
				sizeof(struct kml_kp_data);
			kp = kml_field_ptr(h->probe, kml_slot_kretprobe_kp);
		} else {
			*(void **)kml_field_ptr(kp, kml_slot_kprobe_pre_handler) =
				(void *)kml_kp_fns[i][2];
		}
		*(const char **)kml_field_ptr(kp, kml_slot_kprobe_symbol_name) = h->sym;
		err = ret ? KML_WEAK_ADDR(kml_register_kretprobe)(h->probe)
			  : KML_WEAK_ADDR(kml_register_kprobe)(h->probe);
		if (err) {
			kml_printk(KML_LOG_WARNING "kmlink: kprobe on %s: register failed (%d); not monitored\n",
				   h->sym, err);
			continue;
		}
		h->registered = 1;
		if (ret)
			kml_hook_range(h, kp);
		n++;
	}
	if (!n) {
		kml_printk(KML_LOG_ERR "kmlink: no allocator function could be probed\n");
		return -KML_ENOENT;
	}
	return 0;
}

/* ---- output helpers ------------------------------------------------------ */

/* Escape a name for a whitespace-separated field: bytes outside 0x21..0x7e
 * and the backslash become \xHH; an empty name becomes "-". */
static void kml_escape(char *out, const char *in, int in_len)
{
	static const char hex[] = "0123456789abcdef";
	int i, o = 0;

	for (i = 0; i < in_len && in[i]; i++) {
		u8 c = (u8)in[i];

		/* A leading '-' or '(' would read as the "-" and "(other)"
		 * placeholders: escape it. */
		bool placeholder = i == 0 && (c == '-' || c == '(');

		if (c > 0x20 && c < 0x7f && c != '\\' && !placeholder) {
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

	kml_memzero(sum, sizeof(*sum));
	for (s = 0; s < kml.shards; s++) {
		struct kml_counts *c = at(s, row);

		sum->allocs += READ_ONCE(c->allocs);
		sum->frees += READ_ONCE(c->frees);
		sum->bytes_req += READ_ONCE(c->bytes_req);
		sum->bytes_alloc += READ_ONCE(c->bytes_alloc);
		sum->outstanding += READ_ONCE(c->outstanding);
		sum->page_allocs += READ_ONCE(c->page_allocs);
		sum->page_frees += READ_ONCE(c->page_frees);
		sum->page_bytes += READ_ONCE(c->page_bytes);
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

static u64 kml_ring_overwritten(void)
{
	u64 sum = 0;
	u32 r;

	for (r = 0; r < kml.nrings; r++) {
		u64 head = READ_ONCE(kml.rings[r].head);

		if (head > kml.ring_cap)
			sum += head - kml.ring_cap;
	}
	return sum;
}

static const char *kml_cache_label(u32 row, char *buf)
{
	if (row == KML_NO_CACHE || row == 0)
		return "-";
	if (row >= KML_CACHE_ROWS)
		return "(other)";
	if (!READ_ONCE(kml.caches[row].ready))
		return "-";
	kml_smp_rmb();	/* the name was written before ready */
	kml_escape(buf, kml.caches[row].name, KML_CACHE_NAME_LEN);
	return buf;
}

/* ---- /proc/kmlink/stats ---------------------------------------------------- */

/* A row's counts summed over the shards. */
static void kml_site_sum(struct kml_site_counts *sum, u32 row)
{
	u32 s;

	kml_memzero(sum, sizeof(*sum));
	for (s = 0; s < kml.shards; s++) {
		struct kml_site_counts *c = kml_sc(s, row);

		sum->allocs += READ_ONCE(c->allocs);
		sum->frees += READ_ONCE(c->frees);
		sum->bytes += READ_ONCE(c->bytes);
		sum->outstanding += READ_ONCE(c->outstanding);
	}
}

/*
 * The outstanding objects of each call site and the allocation time of the
 * oldest, from one pass over the pointer table (read side: bounded by its
 * size). An entry being claimed while we read may be attributed to the
 * site it held before; the next read sees it right.
 */
static void kml_site_ages(u64 *objects, u64 *oldest)
{
	u64 i;

	for (i = 0; i <= kml.ptr_mask; i++) {
		const struct kml_ptr *e = &kml.ptrs[i];
		u32 row;
		u64 t;

		if (READ_ONCE(e->key) <= KML_PTR_TOMB || READ_ONCE(e->is_page))
			continue;
		row = READ_ONCE(e->site_row);
		if (row > KML_SITE_ROWS)
			continue;
		t = READ_ONCE(e->time_ns);
		objects[row]++;
		if (t && (!oldest[row] || t < oldest[row]))
			oldest[row] = t;
	}
}

/* The call-site table. The address column only for readers kallsyms would
 * show addresses to (CAP_SYSLOG); the caller column is %pS either way. */
static int kml_show_sites(void *m, bool addresses)
{
	u64 *objects = kml_vzalloc(sizeof(u64) * 2 * (KML_SITE_ROWS + 1));
	u64 *oldest = objects + KML_SITE_ROWS + 1;
	u64 now = kml_ktime_ns();
	struct kml_site_counts sum;
	u32 i;

	if (!objects)
		return -KML_ENOMEM;
	kml_site_ages(objects, oldest);
	kml_seq_printf(m, "\n# callsite: call_site allocs frees bytes outstanding objects oldest_age_ns caller\n");
	for (i = 0; i <= KML_SITE_ROWS; i++) {
		u64 site = i < KML_SITE_ROWS ? READ_ONCE(kml.sites[i]) : 0;
		u64 age = oldest[i] && oldest[i] < now ? now - oldest[i] : 0;

		if (i < KML_SITE_ROWS && !site)
			continue;
		kml_site_sum(&sum, i);
		if (i == KML_SITE_ROWS && !sum.allocs && !sum.frees)
			continue;
		if (i == KML_SITE_ROWS)
			kml_seq_printf(m, "(other)");
		else if (addresses)
			kml_seq_printf(m, "0x%llx", site);
		else
			kml_seq_printf(m, "-");
		kml_seq_printf(m, " %llu %llu %llu %lld %llu %llu", sum.allocs,
			       sum.frees, sum.bytes, (s64)sum.outstanding,
			       objects[i], age);
		if (i == KML_SITE_ROWS)
			kml_seq_printf(m, " -\n");
		else
			kml_seq_printf(m, " %pS\n", (void *)site);
	}
	kml_vfree(objects);
	return 0;
}

static void kml_show_counts(void *m, const struct kml_counts *s, bool pages)
{
	kml_seq_printf(m, " %llu %llu %llu %lld %llu", s->allocs, s->frees,
		       s->bytes_alloc, (s64)s->outstanding, s->bytes_req);
	if (pages)
		kml_seq_printf(m, " %llu %llu %llu", s->page_allocs,
			       s->page_frees, s->page_bytes);
	kml_seq_printf(m, "\n");
}

/* The process table; adds every row into *all for the totals. */
static void kml_show_procs(void *m, struct kml_counts *all)
{
	char name[KML_COMM_LEN * 4 + 1];
	struct kml_counts sum;
	u32 i;

	kml_seq_printf(m, "# process: pid comm allocs frees bytes outstanding bytes_req page_allocs page_frees page_bytes\n");
	for (i = 0; i <= KML_PROC_ROWS; i++) {
		const struct kml_proc_row *row = &kml.procs[i];

		if (i < KML_PROC_ROWS && !READ_ONCE(row->ready))
			continue;
		kml_smp_rmb();	/* tgid and comm were written before ready */
		kml_sum(&sum, kml_pc, i);
		if (i == KML_PROC_ROWS) {
			if (!sum.allocs && !sum.frees && !sum.page_allocs && !sum.page_frees)
				continue;
			kml_seq_printf(m, "- (other)");
		} else {
			kml_escape(name, row->comm, KML_COMM_LEN);
			kml_seq_printf(m, "%u %s", row->tgid, name);
		}
		kml_show_counts(m, &sum, true);
		all->allocs += sum.allocs;
		all->frees += sum.frees;
		all->bytes_alloc += sum.bytes_alloc;
		all->bytes_req += sum.bytes_req;
		all->outstanding += sum.outstanding;
		all->page_allocs += sum.page_allocs;
		all->page_frees += sum.page_frees;
		all->page_bytes += sum.page_bytes;
	}
}

static void kml_show_caches(void *m)
{
	char name[KML_CACHE_NAME_LEN * 4 + 1];
	struct kml_counts sum;
	u32 i;

	kml_seq_printf(m, "\n# cache: cache allocs frees bytes outstanding bytes_req\n");
	for (i = 0; i <= KML_CACHE_ROWS; i++) {
		if (i > 0 && i < KML_CACHE_ROWS && !READ_ONCE(kml.caches[i].ready))
			continue;
		kml_sum(&sum, kml_cc, i);
		if ((i == 0 || i == KML_CACHE_ROWS) && !sum.allocs && !sum.frees)
			continue;
		kml_seq_printf(m, "%s", kml_cache_label(i, name));
		kml_show_counts(m, &sum, false);
	}
}

static void kml_show_cgroups(void *m)
{
	struct kml_counts sum;
	u32 i;

	kml_seq_printf(m, "\n# cgroup: cgroup allocs frees bytes outstanding bytes_req page_allocs page_frees page_bytes\n");
	for (i = 0; i <= KML_CGROUP_ROWS; i++) {
		u64 id = i < KML_CGROUP_ROWS ? READ_ONCE(kml.cgroups[i]) : 0;

		if (i < KML_CGROUP_ROWS && !id)
			continue;
		kml_sum(&sum, kml_gc, i);
		if (i == KML_CGROUP_ROWS) {
			if (!sum.allocs && !sum.frees && !sum.page_allocs && !sum.page_frees)
				continue;
			kml_seq_printf(m, "(other)");
		} else {
			kml_seq_printf(m, "%llu", id);
		}
		kml_show_counts(m, &sum, true);
	}
}

static void kml_show_histogram(void *m)
{
	u64 hist[KML_HIST_BUCKETS] = { 0 };
	u32 i, s;

	for (s = 0; s < kml.shards; s++)
		for (i = 0; i < KML_HIST_BUCKETS; i++)
			hist[i] += READ_ONCE(kml.hist[s * KML_HIST_BUCKETS + i]);
	kml_seq_printf(m, "\n# histogram: le_bytes count\n");
	for (i = 0; i < KML_HIST_BUCKETS; i++) {
		if (i == KML_HIST_BUCKETS - 1)
			kml_seq_printf(m, "+Inf %llu\n", hist[i]);
		else
			kml_seq_printf(m, "%llu %llu\n", 8ULL << i, hist[i]);
	}
}

static void kml_show_dropped(void *m)
{
	u32 i;

	kml_seq_printf(m, "\n# dropped: reason count\n");
	for (i = KML_T_OTHER_PROC; i < KML_T_NR; i++)
		kml_seq_printf(m, "%s %llu\n", kml_total_names[i], kml_total(i));
	kml_seq_printf(m, "ring_overwritten %llu\n", kml_ring_overwritten());
	if (kml_opt_backend == KML_BACKEND_KPROBE)
		kml_seq_printf(m, "kprobe_missed %llu\n", kml_kprobes_missed());
}

static void kml_show_monitor(void *m)
{
	kml_seq_printf(m, "\n# monitor: key value\n");
	if (kml_opt_backend == KML_BACKEND_KPROBE)
		kml_seq_printf(m, "backend kprobe\nkprobes %u\n", kml_kprobes_registered());
	else
		kml_seq_printf(m, "backend tracepoint\n");
	kml_seq_printf(m, "uptime_ns %llu\n", kml_ktime_ns() - kml.loaded_ns);
	kml_seq_printf(m, "paused %u\n", READ_ONCE(kml.paused));
	kml_seq_printf(m, "generation %llu\n", READ_ONCE(kml.generation));
	kml_seq_printf(m, "histogram bytes_alloc_per_bucket\n");
	kml_seq_printf(m, "rings %u\nring_capacity %llu\n", kml.nrings, kml.ring_cap);
	kml_seq_printf(m, "ptr_capacity %llu\nshards %u\n", kml.ptr_mask + 1, kml.shards);
	kml_seq_printf(m, "events_mask 0x%x\n", kml.registered >> 1);
}

/* /proc/kmlink/stats: one table after another (docs/operator.md). */
static int kml_stats_show(void *m, void *v)
{
	struct kml_counts all;
	int err;

	kml_memzero(&all, sizeof(all));
	kml_show_procs(m, &all);
	kml_show_caches(m);
	kml_show_cgroups(m);
	err = kml_show_sites(m, KML_FIELD(m, seq_file_private, void *) != NULL);
	if (err)
		return err;
	kml_seq_printf(m, "\n# totals: events allocs frees bytes outstanding bytes_req page_allocs page_frees page_bytes\n");
	kml_seq_printf(m, "%llu", kml_total(KML_T_EVENTS));
	kml_show_counts(m, &all, true);
	kml_show_histogram(m);
	kml_show_dropped(m);
	kml_show_monitor(m);
	return 0;
}

static int kml_stats_open(void *inode, void *file)
{
	bool addresses = kml_ns_capable_noaudit(kml_init_user_ns, KML_CAP_SYSLOG);

	return kml_single_open(file, kml_stats_show, addresses ? (void *)1 : NULL);
}

/* ---- /proc/kmlink/events: a snapshot taken at open ------------------------- */

struct kml_snapshot {
	u64 n;
	struct kml_event ev[];
};

static void kml_swap_events(struct kml_event *a, struct kml_event *b)
{
	struct kml_event t = *a;

	*a = *b;
	*b = t;
}

/* In-place heap sort by time: bounded, no recursion, no allocation. */
static void kml_sort_events(struct kml_event *ev, u64 n)
{
	u64 start, end, root, child;

	if (n < 2)
		return;
	for (start = n / 2; start-- > 0;) {
		for (root = start; (child = 2 * root + 1) < n; root = child) {
			if (child + 1 < n && ev[child].time_ns < ev[child + 1].time_ns)
				child++;
			if (ev[root].time_ns >= ev[child].time_ns)
				break;
			kml_swap_events(&ev[root], &ev[child]);
		}
	}
	for (end = n - 1; end > 0; end--) {
		kml_swap_events(&ev[0], &ev[end]);
		for (root = 0; (child = 2 * root + 1) < end; root = child) {
			if (child + 1 < end && ev[child].time_ns < ev[child + 1].time_ns)
				child++;
			if (ev[root].time_ns >= ev[child].time_ns)
				break;
			kml_swap_events(&ev[root], &ev[child]);
		}
	}
}

static struct kml_snapshot *kml_take_snapshot(void)
{
	u64 cap = (u64)kml.nrings * kml.ring_cap;
	struct kml_snapshot *snap;
	u32 r;

	snap = kml_vzalloc(sizeof(*snap) + cap * sizeof(struct kml_event));
	if (!snap)
		return NULL;
	for (r = 0; r < kml.nrings; r++) {
		struct kml_ring *ring = &kml.rings[r];
		u64 head = READ_ONCE(ring->head);
		u64 i = head > kml.ring_cap ? head - kml.ring_cap : 0;

		for (; i < head && snap->n < cap; i++) {
			const struct kml_event *e = &ring->ev[i & (kml.ring_cap - 1)];
			struct kml_event *dst = &snap->ev[snap->n];
			u64 seq = READ_ONCE(e->seq);

			if (seq != i + 1)
				continue;	/* being written, or overwritten */
			kml_smp_rmb();
			*dst = *e;
			kml_smp_rmb();
			if (READ_ONCE(e->seq) != seq)
				continue;
			snap->n++;
		}
	}
	kml_sort_events(snap->ev, snap->n);
	return snap;
}

static struct kml_snapshot *kml_seq_snapshot(void *m)
{
	return KML_FIELD(m, seq_file_private, struct kml_snapshot *);
}

/* Positions: 0 is the header line, 1..n the events. */
static void *kml_events_start(void *m, s64 *pos)
{
	struct kml_snapshot *snap = kml_seq_snapshot(m);

	return (u64)*pos <= snap->n ? (void *)(u64)(*pos + 1) : NULL;
}

static void *kml_events_next(void *m, void *v, s64 *pos)
{
	++*pos;
	return kml_events_start(m, pos);
}

static void kml_events_stop(void *m, void *v)
{
}

static int kml_events_show(void *m, void *v)
{
	struct kml_snapshot *snap = kml_seq_snapshot(m);
	u64 idx = (u64)v - 1;
	char comm[KML_COMM_LEN * 4 + 1], cache[KML_CACHE_NAME_LEN * 4 + 1];
	const struct kml_event *e;

	if (idx == 0) {
		kml_seq_printf(m, "# time_ns cpu pid tid comm event bytes_req bytes_alloc cache gfp call_site ptr order caller\n");
		return 0;
	}
	e = &snap->ev[idx - 1];
	kml_escape(comm, e->comm, KML_COMM_LEN);
	kml_seq_printf(m, "%llu %u %u %u %s %s", e->time_ns, e->cpu, e->tgid,
		       e->pid, comm,
		       e->type < KML_EV_NR ? kml_event_names[e->type] : "?");
	if (e->type == KML_EV_KMALLOC || e->type == KML_EV_KMEM_CACHE_ALLOC ||
	    e->type == KML_EV_PAGE_ALLOC)
		kml_seq_printf(m, " %llu %llu", e->bytes_req, e->bytes_alloc);
	else
		kml_seq_printf(m, " - -");
	kml_seq_printf(m, " %s", kml_cache_label(e->cache_row, cache));
	if (e->gfp)
		kml_seq_printf(m, " 0x%x", e->gfp);
	else
		kml_seq_printf(m, " -");
	if (e->call_site)
		kml_seq_printf(m, " 0x%llx 0x%llx", e->call_site, e->ptr);
	else
		kml_seq_printf(m, " - 0x%llx", e->ptr);
	if (e->type == KML_EV_PAGE_ALLOC || e->type == KML_EV_PAGE_FREE)
		kml_seq_printf(m, " %u", e->order);
	else
		kml_seq_printf(m, " -");
	if (e->call_site)
		kml_seq_printf(m, " %pS\n", (void *)e->call_site);
	else
		kml_seq_printf(m, " -\n");
	return 0;
}

static int kml_events_open(void *inode, void *file)
{
	struct kml_snapshot *snap = kml_take_snapshot();
	void *m;
	int err;

	if (!snap)
		return -KML_ENOMEM;
	err = kml_seq_open(file, kml_events_seq_ops);
	if (err) {
		kml_vfree(snap);
		return err;
	}
	m = KML_FIELD(file, file_private_data, void *);
	KML_FIELD(m, seq_file_private, void *) = snap;
	return 0;
}

static int kml_events_release(void *inode, void *file)
{
	void *m = KML_FIELD(file, file_private_data, void *);

	kml_vfree(kml_seq_snapshot(m));
	return kml_seq_release(inode, file);
}

/* ---- /proc/kmlink/control ---------------------------------------------------- */

static void kml_sync_probes(void);
static void kml_stacks_clear(void);

static int kml_clear(void)
{
	u32 was_paused;
	u32 r;

	if (!kml_cmpxchg32(&kml.clearing, 0, 1))
		return -KML_EBUSY; /* another clear is running */
	was_paused = READ_ONCE(kml.paused);

	/* Quiesce the probes, then reset everything they write. */
	WRITE_ONCE(kml.paused, 1);
	kml_sync_probes();
	kml_memzero(kml.procs, sizeof(struct kml_proc_row) * (KML_PROC_ROWS + 1));
	kml_memzero(kml.caches, sizeof(struct kml_cache_row) * (KML_CACHE_ROWS + 1));
	kml_memzero(kml.proc_counts, sizeof(struct kml_counts) * (KML_PROC_ROWS + 1) * kml.shards);
	kml_memzero(kml.cache_counts, sizeof(struct kml_counts) * (KML_CACHE_ROWS + 1) * kml.shards);
	kml_memzero(kml.sites, sizeof(u64) * KML_SITE_ROWS);
	kml_memzero(kml.site_counts, sizeof(struct kml_site_counts) * (KML_SITE_ROWS + 1) * kml.shards);
	kml_memzero(kml.cgroups, sizeof(u64) * KML_CGROUP_ROWS);
	kml_memzero(kml.cgroup_counts, sizeof(struct kml_counts) * (KML_CGROUP_ROWS + 1) * kml.shards);
	kml_memzero(kml.totals, sizeof(u64) * KML_T_NR * kml.shards);
	kml_memzero(kml.hist, sizeof(u64) * KML_HIST_BUCKETS * kml.shards);
	kml_memzero(kml.ptrs, sizeof(struct kml_ptr) * (kml.ptr_mask + 1));
	kml_stacks_clear();
	/* Readers may be walking the rings: reset heads, keep the pointers. */
	for (r = 0; r < kml.nrings; r++)
		WRITE_ONCE(kml.rings[r].head, 0);
	kml_memzero(kml.ring_mem, sizeof(struct kml_event) * kml.ring_cap * kml.nrings);
	kml_copy_name(kml.caches[0].name, "-", KML_CACHE_NAME_LEN);
	kml.caches[0].ready = 1;
	kml.loaded_ns = kml_ktime_ns();
	kml.generation++;
	kml_smp_wmb();
	WRITE_ONCE(kml.paused, was_paused);
	WRITE_ONCE(kml.clearing, 0);
	return 0;
}

static ssize_t kml_control_write(void *file, const char *ubuf, size_t len,
				 s64 *ppos)
{
	char cmd[16];
	size_t n = len < sizeof(cmd) - 1 ? len : sizeof(cmd) - 1;

	if (kml_copy_from_user(cmd, ubuf, n))
		return -KML_EFAULT;
	cmd[n] = 0;
	while (n && (cmd[n - 1] == '\n' || cmd[n - 1] == ' '))
		cmd[--n] = 0;
	if (kml_streq(cmd, "clear")) {
		int err = kml_clear();

		if (err)
			return err;
	} else if (kml_streq(cmd, "pause"))
		WRITE_ONCE(kml.paused, 1);
	else if (kml_streq(cmd, "resume"))
		WRITE_ONCE(kml.paused, 0);
	else
		return -KML_EINVAL;
	return (ssize_t)len;
}

/* ---- init / exit -------------------------------------------------------- */

static void kml_set(u64 *ops, u64 off, void *fn)
{
	*(void **)((char *)ops + off) = fn;
}

static void kml_free_tables(void)
{
	kml_vfree(kml.procs);
	kml_vfree(kml.caches);
	kml_vfree(kml.proc_counts);
	kml_vfree(kml.cache_counts);
	kml_vfree(kml.sites);
	kml_vfree(kml.site_counts);
	kml_vfree(kml.cgroups);
	kml_vfree(kml.cgroup_counts);
	kml_vfree(kml.totals);
	kml_vfree(kml.hist);
	kml_vfree(kml.ptrs);
	kml_vfree(kml.rings);
	kml_vfree(kml.ring_mem);
	kml_memzero(&kml, sizeof(kml));
}

static u64 kml_pow2_floor(u64 v, u64 min)
{
	u64 p = min;

	while (p * 2 <= v && p < (1ULL << 30))
		p *= 2;
	return p;
}

static int kml_alloc_tables(void)
{
	u32 ncpu = READ_ONCE(kml_nr_cpu_ids);
	u64 max_rings = kml_opt_max_rings ? kml_opt_max_rings : 1;
	u32 r;

	if (ncpu < 1)
		ncpu = 1;
	kml.shards = ncpu > KML_MAX_SHARDS ? KML_MAX_SHARDS : ncpu;
	kml.nrings = ncpu > max_rings ? (u32)max_rings : ncpu;
	kml.ring_cap = kml_pow2_floor(kml_opt_ring_events, 16);
	while (kml.ring_cap > 16 && kml.ring_cap * kml.nrings * sizeof(struct kml_event) >
					    (kml_opt_ring_mem_mb << 20))
		kml.ring_cap /= 2;
	kml.ptr_mask = kml_pow2_floor(kml_opt_ptr_slots, 1024) - 1;

	kml.procs = kml_vzalloc(sizeof(struct kml_proc_row) * (KML_PROC_ROWS + 1));
	kml.caches = kml_vzalloc(sizeof(struct kml_cache_row) * (KML_CACHE_ROWS + 1));
	kml.proc_counts = kml_vzalloc(sizeof(struct kml_counts) *
				      (KML_PROC_ROWS + 1) * kml.shards);
	kml.cache_counts = kml_vzalloc(sizeof(struct kml_counts) *
				       (KML_CACHE_ROWS + 1) * kml.shards);
	kml.sites = kml_vzalloc(sizeof(u64) * KML_SITE_ROWS);
	kml.site_counts = kml_vzalloc(sizeof(struct kml_site_counts) *
				      (KML_SITE_ROWS + 1) * kml.shards);
	kml.cgroups = kml_vzalloc(sizeof(u64) * KML_CGROUP_ROWS);
	kml.cgroup_counts = kml_vzalloc(sizeof(struct kml_counts) *
					(KML_CGROUP_ROWS + 1) * kml.shards);
	kml.totals = kml_vzalloc(sizeof(u64) * KML_T_NR * kml.shards);
	kml.hist = kml_vzalloc(sizeof(u64) * KML_HIST_BUCKETS * kml.shards);
	kml.ptrs = kml_vzalloc(sizeof(struct kml_ptr) * (kml.ptr_mask + 1));
	kml.rings = kml_vzalloc(sizeof(struct kml_ring) * kml.nrings);
	kml.ring_mem = kml_vzalloc(sizeof(struct kml_event) * kml.ring_cap * kml.nrings);
	if (!kml.procs || !kml.caches || !kml.proc_counts || !kml.cache_counts ||
	    !kml.sites || !kml.site_counts || !kml.cgroups || !kml.cgroup_counts ||
	    !kml.totals || !kml.hist || !kml.ptrs || !kml.rings || !kml.ring_mem) {
		kml_free_tables();
		return -KML_ENOMEM;
	}
	for (r = 0; r < kml.nrings; r++)
		kml.rings[r].ev = kml.ring_mem + (u64)r * kml.ring_cap;
	kml_copy_name(kml.caches[0].name, "-", KML_CACHE_NAME_LEN);
	kml.caches[0].ready = 1;
	return 0;
}

/* Wait until no probe can still be running: the union of what each
 * kernel's tracepoint_synchronize_unregister() waits for. */
static void kml_sync_probes(void)
{
	void (*sync_srcu)(void *ssp) = KML_WEAK_ADDR(kml_synchronize_srcu);
	void (*sync_tasks_trace)(void) = KML_WEAK_ADDR(kml_synchronize_rcu_tasks_trace);
	void *tasks_trace_srcu = KML_WEAK_ADDR(kml_rcu_tasks_trace_srcu_struct);
	void *tp_srcu = KML_WEAK_ADDR(kml_tracepoint_srcu);

	if (sync_tasks_trace)
		sync_tasks_trace();
	if (sync_srcu && tasks_trace_srcu)
		sync_srcu(tasks_trace_srcu);
	if (sync_srcu && tp_srcu)
		sync_srcu(tp_srcu);
	kml_synchronize_rcu();
}

static void kml_unregister_all(void)
{
	u32 i;

	for (i = 1; i < KML_EV_NR; i++) {
		if (kml.registered & (1u << i))
			kml_tracepoint_probe_unregister(kml.tp[i], kml_probes[i], NULL);
	}
	for (i = 0; i < ARRAY_SIZE(kml_node_tps); i++) {
		if (kml.node_registered & (1u << i))
			kml_tracepoint_probe_unregister(READ_ONCE(kml_node_tps[i].tp),
							kml_node_tps[i].probe, NULL);
	}
	/* unregister_k(ret)probe() waits for running handlers itself. */
	kml_kprobes_unregister();
	if (kml.registered || kml.node_registered)
		kml_sync_probes();
	kml.registered = 0;
	kml.node_registered = 0;
}

/* The _node events of kernels that have them (weak: NULL elsewhere),
 * counted as the event type they are a variant of. The table's weak
 * addresses are read as data (READ_ONCE), relocated with ABS64: folded into
 * code, aarch64 would take them through a GOT (see KML_WEAK_ADDR). */
static int kml_register_node_tps(void)
{
	u32 i;
	int err;

	for (i = 0; i < ARRAY_SIZE(kml_node_tps); i++) {
		const struct kml_node_tp *n = &kml_node_tps[i];
		void *tp = READ_ONCE(n->tp);

		if (!tp || !(kml.registered & (1u << n->type)))
			continue;
		err = kml_tracepoint_probe_register(tp, n->probe, NULL);
		if (err) {
			kml_printk(KML_LOG_ERR "kmlink: tracepoint %s: register failed (%d)\n",
				   n->name, err);
			return err;
		}
		kml.node_registered |= 1u << i;
	}
	return 0;
}

/* The tracepoint backend: find the kmem tracepoints and register a probe
 * on each the events mask selects (a tracepoint this kernel lacks is said
 * and skipped), then the _node variants of the registered ones. On an
 * error, what was registered stays in kml.registered for
 * kml_unregister_all(). */
static int kml_tracepoints_register(void)
{
	u32 i;
	int err;

	kml.tp[KML_EV_KMALLOC] = kml_tp_kmalloc;
	kml.tp[KML_EV_KMEM_CACHE_ALLOC] = kml_tp_kmem_cache_alloc;
	kml.tp[KML_EV_KFREE] = kml_tp_kfree;
	kml.tp[KML_EV_KMEM_CACHE_FREE] = kml_tp_kmem_cache_free;
	kml_for_each_kernel_tracepoint(kml_find_tracepoint, NULL);

	for (i = 1; i < KML_EV_NR; i++) {
		if (!(kml_opt_events_mask & (1u << (i - 1))))
			continue;
		if (!kml.tp[i]) {
			kml_printk(KML_LOG_WARNING "kmlink: tracepoint %s not found; not monitored\n",
				   kml_event_names[i]);
			continue;
		}
		err = kml_tracepoint_probe_register(kml.tp[i], kml_probes[i], NULL);
		if (err) {
			kml_printk(KML_LOG_ERR "kmlink: tracepoint %s: register failed (%d)\n",
				   kml_event_names[i], err);
			return err;
		}
		kml.registered |= 1u << i;
	}
	return kml_register_node_tps();
}

static bool kml_ops_fit(void)
{
	if (kml_slot_proc_ops_size > sizeof(kml_stats_ops) ||
	    kml_slot_seq_ops_size > sizeof(kml_events_seq_ops)) {
		kml_printk(KML_LOG_ERR "kmlink: struct proc_ops (%llu) or seq_operations (%llu) larger than expected\n",
			   (u64)kml_slot_proc_ops_size, (u64)kml_slot_seq_ops_size);
		return false;
	}
	return true;
}

static void kml_ops_init(void)
{
	kml_set(kml_stats_ops, kml_slot_proc_ops_open, (void *)kml_stats_open);
	kml_set(kml_stats_ops, kml_slot_proc_ops_read, (void *)kml_seq_read);
	kml_set(kml_stats_ops, kml_slot_proc_ops_lseek, (void *)kml_seq_lseek);
	kml_set(kml_stats_ops, kml_slot_proc_ops_release, (void *)kml_single_release);

	kml_set(kml_events_seq_ops, kml_slot_seq_ops_start, (void *)kml_events_start);
	kml_set(kml_events_seq_ops, kml_slot_seq_ops_stop, (void *)kml_events_stop);
	kml_set(kml_events_seq_ops, kml_slot_seq_ops_next, (void *)kml_events_next);
	kml_set(kml_events_seq_ops, kml_slot_seq_ops_show, (void *)kml_events_show);
	kml_set(kml_events_ops, kml_slot_proc_ops_open, (void *)kml_events_open);
	kml_set(kml_events_ops, kml_slot_proc_ops_read, (void *)kml_seq_read);
	kml_set(kml_events_ops, kml_slot_proc_ops_lseek, (void *)kml_seq_lseek);
	kml_set(kml_events_ops, kml_slot_proc_ops_release, (void *)kml_events_release);

	kml_set(kml_control_ops, kml_slot_proc_ops_write, (void *)kml_control_write);
}

/* ---- sampled allocation stacks: /proc/kmlink/stacks -------------------- */

/*
 * A header line of key-value pairs, then per distinct stack a line
 * `stack <hash> allocs <n> bytes <n> frames <n>` followed by its frames,
 * innermost first, one per line indented by a space (%pS: symbol+off/size,
 * then [module] for module text), a blank line between stacks.
 */
static int kml_stacks_show(void *m, void *v)
{
	u32 i, f;

	kml_seq_printf(m, "# stacks: sample_every %llu slots %u depth %u sampled %llu dropped %llu available %u\n",
		       kml_stk.slots ? kml_opt_stacks : 0ULL, KML_STACK_SLOTS, KML_STACK_DEPTH,
		       READ_ONCE(kml_stk.sampled), READ_ONCE(kml_stk.dropped),
		       KML_WEAK_ADDR(kml_stack_trace_save) ? 1 : 0);
	if (!kml_stk.slots)
		return 0;
	for (i = 0; i < KML_STACK_SLOTS; i++) {
		const struct kml_stack *s = &kml_stk.slots[i];
		u32 depth;

		if (READ_ONCE(s->state) != KML_STACK_READY)
			continue;
		kml_smp_rmb();	/* frames, depth and hash were written before READY */
		depth = s->depth < KML_STACK_DEPTH ? s->depth : KML_STACK_DEPTH;
		kml_seq_printf(m, "\nstack %llx allocs %llu bytes %llu frames %u\n",
			       s->hash, READ_ONCE(s->allocs), READ_ONCE(s->bytes), depth);
		for (f = 0; f < depth; f++)
			kml_seq_printf(m, " %pS\n", (void *)s->frames[f]);
	}
	return 0;
}

static int kml_stacks_open(void *inode, void *file)
{
	return kml_single_open(file, kml_stacks_show, NULL);
}

/* The table (when stacks=N and the kernel has stack_trace_save) and the
 * file (always: it says when stacks are off). Undone by kml_stacks_free. */
static int kml_stacks_init(void *proc_dir)
{
	if (kml_opt_stacks && KML_WEAK_ADDR(kml_stack_trace_save)) {
		kml_stk.slots = kml_vzalloc(sizeof(struct kml_stack) * KML_STACK_SLOTS);
		if (!kml_stk.slots)
			return -KML_ENOMEM;
	}
	kml_set((u64 *)kml_stk.ops, kml_slot_proc_ops_open, (void *)kml_stacks_open);
	kml_set((u64 *)kml_stk.ops, kml_slot_proc_ops_read, (void *)kml_seq_read);
	kml_set((u64 *)kml_stk.ops, kml_slot_proc_ops_lseek, (void *)kml_seq_lseek);
	kml_set((u64 *)kml_stk.ops, kml_slot_proc_ops_release, (void *)kml_single_release);
	/* Kernel text addresses, symbolized: root only, like events. */
	if (!kml_proc_create("stacks", 0400, proc_dir, kml_stk.ops))
		return -KML_ENOMEM;
	return 0;
}

/* With the probes quiesced (clear) or gone (unload). */
static void kml_stacks_clear(void)
{
	if (kml_stk.slots)
		kml_memzero(kml_stk.slots, sizeof(struct kml_stack) * KML_STACK_SLOTS);
	kml_memzero(kml_stk.ticks, sizeof(kml_stk.ticks));
	kml_stk.sampled = 0;
	kml_stk.dropped = 0;
}

static void kml_stacks_free(void)
{
	kml_vfree(kml_stk.slots);
	kml_stk.slots = NULL;
}

int init_module(void)
{
	int err;

	if (!kml_ops_fit())
		return -KML_EINVAL;
	err = kml_alloc_tables();
	if (err)
		return err;
	kml.loaded_ns = kml_ktime_ns();
	kml_ops_init();
	kml_arch_init();

	kml.proc_dir = kml_proc_mkdir("kmlink", NULL);
	if (!kml.proc_dir) {
		err = -KML_ENOMEM;
		goto err_tables;
	}
	/* events and control expose kernel addresses / steer the monitor:
	 * root only. The aggregates show call-site addresses only to readers
	 * with CAP_SYSLOG (kml_stats_open). */
	if (!kml_proc_create("stats", 0444, kml.proc_dir, kml_stats_ops) ||
	    !kml_proc_create("events", 0400, kml.proc_dir, kml_events_ops) ||
	    !kml_proc_create("control", 0200, kml.proc_dir, kml_control_ops)) {
		err = -KML_ENOMEM;
		goto err_proc;
	}
	err = kml_stacks_init(kml.proc_dir);
	if (err)
		goto err_proc;

	if (kml_opt_backend == KML_BACKEND_KPROBE) {
		err = kml_kprobes_register();
		if (err)
			goto err_hooks;
		kml_printk(KML_LOG_INFO "kmlink: monitoring %u allocator functions with kprobes (%u rings of %llu events, %u shards, %llu pointer slots)\n",
			   kml_kprobes_registered(), kml.nrings, kml.ring_cap,
			   kml.shards, kml.ptr_mask + 1);
		return 0;
	}
	err = kml_tracepoints_register();
	if (err)
		goto err_hooks;
	kml_printk(KML_LOG_INFO "kmlink: monitoring kmem tracepoints (%u rings of %llu events, %u shards, %llu pointer slots)\n",
		   kml.nrings, kml.ring_cap, kml.shards, kml.ptr_mask + 1);
	return 0;

err_hooks:
	kml_unregister_all();
err_proc:
	kml_proc_remove(kml.proc_dir);
	kml_stacks_free();
err_tables:
	kml_free_tables();
	return err;
}

void cleanup_module(void)
{
	kml_unregister_all();
	kml_proc_remove(kml.proc_dir);
	kml_stacks_free();
	kml_free_tables();
	kml_printk(KML_LOG_INFO "kmlink: unloaded\n");
}
