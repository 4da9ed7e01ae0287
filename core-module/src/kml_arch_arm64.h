/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kmlink core, aarch64: the registers of struct pt_regs the kprobe backend
 * reads, current (sp_el0 holds it in the kernel) and the CPU number (the
 * task's own, in thread_info or, before 5.16, task_struct; so no per-CPU
 * base register: the kernel picks tpidr_el1 or tpidr_el2 at boot), and the
 * atomic helpers.
 *
 * The atomics are the compiler's __atomic builtins, built with
 * -mno-outline-atomics: inline LL/SC loops (ldaxr/stlxr), correct on every
 * ARMv8.0 CPU, with no call to a libgcc helper the kernel does not export.
 * Included once, by kmlink.c, where the layout table is declared.
 */
#ifndef KML_ARCH_ARM64_H
#define KML_ARCH_ARM64_H

/* gcc for aarch64 zeroes larger local aggregates by calling memset (x86-64
 * stores inline): bind it to the kernel's. */
KML_IMPORT(memset, "memset");

/*
 * copy_from_user: arm64 inlines _copy_from_user (INLINE_COPY_FROM_USER), so
 * the kernel exports only __arch_copy_from_user, which returns the bytes it
 * could not copy and relies on its caller for access_ok. The range check
 * here is stricter than the kernel's (user addresses below 2^48, whatever
 * VA_BITS); TTBR0 PAN emulation (CONFIG_ARM64_SW_TTBR0_PAN, not set in
 * Debian's kernels) would need more than this call.
 */
KML_IMPORT(kml_arch_copy_from_user, "__arch_copy_from_user");
extern unsigned long kml_arch_copy_from_user(void *to, const void *from,
					     unsigned long n);

#define KML_USER_ADDR_END (1ULL << 48)

static inline unsigned long kml_copy_from_user(void *to, const void *from,
					       unsigned long n)
{
	unsigned long addr = (unsigned long)from, left = n, i;
	char *dst = to;

	if (n <= KML_USER_ADDR_END && addr <= KML_USER_ADDR_END - n)
		left = kml_arch_copy_from_user(to, from, n);
	if (left > n)
		left = n;
	for (i = n - left; i < n; i++)	/* what was not copied reads as 0 */
		dst[i] = 0;
	return left;
}

/* x0..x30 are `u64 regs[31]` (an anonymous member of struct pt_regs). */
KML_SLOT(regs_x0, "offsetof pt_regs.regs");
KML_SLOT(regs_pc, "offsetof pt_regs.pc");
/* 5.16+ keep the CPU in thread_info, the first member of task_struct
 * (6.1.0-47-arm64 BTF: offset 16); 5.10 in task_struct itself. */
KML_SLOT(task_cpu, "offsetof task_struct.thread_info.cpu|task_struct.cpu");	/* u32 cpu */

/* ---- current and the CPU number ---------------------------------------- */

static inline void *kml_current(void)
{
	void *task;

	__asm__ __volatile__("mrs %0, sp_el0" : "=r"(task));
	return task;
}

/* The CPU the task last ran on: a shard index and an event's cpu field,
 * both of which tolerate a migration right after the read. */
static inline u32 kml_cpu(void)
{
	return READ_ONCE(*(const u32 *)((const char *)kml_current() +
					kml_slot_task_cpu));
}

/* ---- the direct map -------------------------------------------------------- */

/*
 * arm64 exports neither the direct map's start nor the struct page array's
 * (they follow from VA_BITS, the page size, sizeof(struct page) and, by
 * version, memstart_addr). So the kernel is asked once, at load, for the
 * page of one direct-map address: sg_init_one() stores virt_to_page(buf)
 * in the scatterlist's page_link (its low two bits are the chain and end
 * marks). The address is the loading task's task_struct, a slab object.
 * Only 5.10's tracepoint backend needs it (kml_obj_cache); it is harmless
 * elsewhere.
 */
KML_WEAK(kml_sg_init_one, "sg_init_one");
extern void kml_sg_init_one(void *sg, const void *buf, unsigned int buflen)
	__attribute__((weak));
KML_WEAK_REF(kml_sg_init_one);
KML_SLOT(sg_size, "sizeof scatterlist");
KML_SLOT(sg_page_link, "offsetof scatterlist.page_link");	/* unsigned long */

#define KML_SG_PAGE_MARKS 3ULL

static struct {
	u64 virt;	/* a direct-map address, 0: unknown */
	u64 page;	/* its struct page */
} kml_dmap;

static void kml_arch_init(void)
{
	static u64 sg[16];	/* one struct scatterlist: 32 bytes on 6.1 */
	void (*init_one)(void *, const void *, unsigned int) =
		KML_WEAK_ADDR(kml_sg_init_one);
	u64 virt = (u64)kml_current(), link;

	if (!init_one || kml_slot_sg_size > sizeof(sg) ||
	    kml_slot_sg_page_link + 8 > kml_slot_sg_size)
		return;
	init_one(sg, (const void *)virt, 1);
	link = *(const u64 *)((const char *)sg + kml_slot_sg_page_link);
	if (link & ~KML_SG_PAGE_MARKS) {
		kml_dmap.virt = virt;
		kml_dmap.page = link & ~KML_SG_PAGE_MARKS;
	}
}

static inline bool kml_arch_direct_map(u64 ptr, u64 *virt, u64 *page)
{
	(void)ptr;
	if (!kml_dmap.virt)
		return false;
	*virt = kml_dmap.virt;
	*page = kml_dmap.page;
	return true;
}

/* ---- registers of a probed function ------------------------------------- */

/* Argument `pos` (1-8: x0-x7) of the probed function. */
static inline u64 kml_regs_arg(const void *regs, u64 pos)
{
	if (pos < 1 || pos > 8)
		return 0;
	return *(const u64 *)((const char *)regs + kml_slot_regs_x0 +
			      8 * (pos - 1));
}

/* At function entry the link register (x30) holds the return address. */
static inline u64 kml_regs_caller(const void *regs)
{
	return *(const u64 *)((const char *)regs + kml_slot_regs_x0 + 8 * 30);
}

/* At a kretprobe's return: the return value (x0) and the real return
 * address (pc). */
static inline u64 kml_regs_ret(const void *regs)
{
	return *(const u64 *)((const char *)regs + kml_slot_regs_x0);
}

static inline u64 kml_regs_ip(const void *regs)
{
	return *(const u64 *)((const char *)regs + kml_slot_regs_pc);
}

/* ---- ordering ------------------------------------------------------------ */

/* Publishing a row or an event: its contents before its ready flag or
 * sequence number (stores, dmb ishst); a reader's flag before the contents
 * (loads, dmb ishld). */
#define kml_smp_wmb() __asm__ __volatile__("dmb ishst" ::: "memory")
#define kml_smp_rmb() __asm__ __volatile__("dmb ishld" ::: "memory")

/* ---- atomics ------------------------------------------------------------- */

static inline void kml_atomic_add(u64 *p, u64 v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static inline bool kml_cmpxchg32(u32 *p, u32 old, u32 new)
{
	return __atomic_compare_exchange_n(p, &old, new, false, __ATOMIC_SEQ_CST,
					   __ATOMIC_SEQ_CST);
}

static inline u32 kml_xchg32(u32 *p, u32 v)
{
	return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}

static inline bool kml_cmpxchg64(u64 *p, u64 old, u64 new)
{
	return __atomic_compare_exchange_n(p, &old, new, false, __ATOMIC_SEQ_CST,
					   __ATOMIC_SEQ_CST);
}

static inline u64 kml_xadd64(u64 *p, u64 v)
{
	return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

#endif /* KML_ARCH_ARM64_H */
