/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kmlink core, x86_64: the registers of struct pt_regs the kprobe backend
 * reads, current and the CPU number (per-CPU variables through %gs), and the
 * atomic helpers (single lock-prefixed instructions). Included once, by
 * kmlink.c, where the layout table is declared.
 */
#ifndef KML_ARCH_X86_H
#define KML_ARCH_X86_H

KML_SLOT(regs_di, "offsetof pt_regs.di");
KML_SLOT(regs_si, "offsetof pt_regs.si");
KML_SLOT(regs_dx, "offsetof pt_regs.dx");
KML_SLOT(regs_cx, "offsetof pt_regs.cx");
KML_SLOT(regs_r8, "offsetof pt_regs.r8");
KML_SLOT(regs_r9, "offsetof pt_regs.r9");
KML_SLOT(regs_ax, "offsetof pt_regs.ax");
KML_SLOT(regs_sp, "offsetof pt_regs.sp");
KML_SLOT(regs_ip, "offsetof pt_regs.ip");

/* Per-CPU variables: the slot holds the variable's per-CPU address. */
KML_SLOT(pcpu_current_task, "percpu current_task|pcpu_hot.current_task");
KML_SLOT(pcpu_cpu_number, "percpu cpu_number|pcpu_hot.cpu_number");

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

/* ---- the direct map -------------------------------------------------------- */

/* Where the direct map and the struct page array start (randomized; both
 * exported): virt_to_page(x) = vmemmap_base + (x - page_offset_base) / PAGE_SIZE. */
KML_WEAK(kml_page_offset_base, "page_offset_base");
extern unsigned long kml_page_offset_base __attribute__((weak));
KML_WEAK_REF(kml_page_offset_base);
KML_WEAK(kml_vmemmap_base, "vmemmap_base");
extern unsigned long kml_vmemmap_base __attribute__((weak));
KML_WEAK_REF(kml_vmemmap_base);

static inline void kml_arch_init(void)
{
}

/* One direct-map address (its start) and its struct page (the array's
 * start), for `ptr`: false when the kernel exports neither or `ptr` lies
 * below the direct map. */
static inline bool kml_arch_direct_map(u64 ptr, u64 *virt, u64 *page)
{
	const unsigned long *offset_base = KML_WEAK_ADDR(kml_page_offset_base);
	const unsigned long *vmemmap = KML_WEAK_ADDR(kml_vmemmap_base);

	if (!offset_base || !vmemmap || ptr < *offset_base)
		return false;
	*virt = *offset_base;
	*page = *vmemmap;
	return true;
}

/* ---- registers of a probed function ------------------------------------- */

/* Argument `pos` (1-6, x86-64 integer registers) of the probed function. */
static u64 kml_regs_arg(const void *regs, u64 pos)
{
	u64 off;

	switch (pos) {
	case 1: off = kml_slot_regs_di; break;
	case 2: off = kml_slot_regs_si; break;
	case 3: off = kml_slot_regs_dx; break;
	case 4: off = kml_slot_regs_cx; break;
	case 5: off = kml_slot_regs_r8; break;
	case 6: off = kml_slot_regs_r9; break;
	default: return 0;
	}
	return *(const u64 *)((const char *)regs + off);
}

/* At function entry the stack pointer addresses the return address. */
static u64 kml_regs_caller(const void *regs)
{
	return **(const u64 *const *)((const char *)regs + kml_slot_regs_sp);
}

/* At a kretprobe's return: the return value and the real return address. */
static inline u64 kml_regs_ret(const void *regs)
{
	return *(const u64 *)((const char *)regs + kml_slot_regs_ax);
}

static inline u64 kml_regs_ip(const void *regs)
{
	return *(const u64 *)((const char *)regs + kml_slot_regs_ip);
}

/* ---- ordering ------------------------------------------------------------ */

/* x86 keeps stores in order and loads in order (TSO): publishing a row or an
 * event needs only the compiler not to reorder. */
#define kml_smp_wmb() barrier()
#define kml_smp_rmb() barrier()

/* ---- atomics ------------------------------------------------------------- */

/* Atomic RMW: correct whichever CPU the caller runs on (and if preempted). */
static inline void kml_atomic_add(u64 *p, u64 v)
{
	__asm__ __volatile__("lock; addq %1, %0" : "+m"(*p) : "er"(v) : "memory");
}

static inline bool kml_cmpxchg32(u32 *p, u32 old, u32 new)
{
	u32 prev = old;

	__asm__ __volatile__("lock; cmpxchgl %2, %1"
			     : "+a"(prev), "+m"(*p)
			     : "r"(new)
			     : "memory");
	return prev == old;
}

static inline u32 kml_xchg32(u32 *p, u32 v)
{
	__asm__ __volatile__("xchgl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
	return v;
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

static inline u64 kml_xadd64(u64 *p, u64 v)
{
	__asm__ __volatile__("lock; xaddq %0, %1" : "+r"(v), "+m"(*p) : : "memory");
	return v;
}

#endif /* KML_ARCH_X86_H */
