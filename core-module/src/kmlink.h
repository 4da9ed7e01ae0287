/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kmlink core: freestanding definitions. No kernel headers are included;
 * every kernel-dependent fact reaches this code at link time through the
 * manifest below, which the kmlink linker reads out of the object.
 *
 * Manifest entries live in the non-allocated section .kmlink.manifest as
 * NUL-terminated strings:
 *
 *   import <sym> <cand>[|<cand>…]   the undefined symbol <sym> is bound to the
 *                                   first candidate the kernel exports
 *   weak <sym> <cand>[|<cand>…]     the same, but the kernel may export none
 *                                   (then <sym> resolves to 0)
 *   slot <sym> <kind> <spec>        the 8-byte layout-table slot <sym> in
 *                                   .kmlink.layout is filled by the linker:
 *        offsetof <struct>.<member>[.<member>…]
 *        sizeof <struct>
 *        percpu <var>[.<member>]|…  address of a per-CPU variable (relocated)
 *        tparg <tracepoint>.<param>:<size>
 *                                   1-based position of <param> in the
 *                                   tracepoint's probe arguments (after the
 *                                   data pointer); 0 when optional and absent
 *        tparg? …                   optional form of the above
 *        fn <f>[|<f>…]              1-based index of the first candidate
 *                                   function the kernel has (BTF FUNC)
 *        fn? …                      optional form: 0 when it has none
 *        fnarg <f>[|<f>…].<p>[|<p>…]:<size>
 *                                   register position (1-6) of the first
 *                                   named parameter of the function `fn`
 *                                   would choose, checked to be <size>
 *                                   bytes; 0 when no candidate exists
 *        fnarg? …                   also 0 when the parameter is absent
 *   probe <tracepoint> <arity>      the core's probe for it takes <arity>
 *                                   arguments after the data pointer
 *   option <sym> <default>          a u64 in .kmlink.options the linker may
 *                                   set for one build
 */
#ifndef KMLINK_H
#define KMLINK_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int s32;
typedef long long s64;
typedef unsigned long size_t;
typedef long ssize_t;
typedef _Bool bool;

#define true 1
#define false 0
#define NULL ((void *)0)

#define __stringify_1(x) #x
#define __stringify(x) __stringify_1(x)

#define KML_MANIFEST(text)                                                     \
	__asm__(".pushsection .kmlink.manifest,\"\",@progbits\n\t"             \
		".asciz \"" text "\"\n\t"                                      \
		".popsection")

#define KML_IMPORT(sym, cands) KML_MANIFEST("import " #sym " " cands)
#define KML_WEAK(sym, cands) KML_MANIFEST("weak " #sym " " cands)

/*
 * A weak import's address. The kernel resolves a weak symbol the kernel
 * lacks to 0. x86-64 takes the address in code (an absolute relocation).
 * aarch64 code would take it through a GOT (R_AARCH64_ADR_GOT_PAGE), which
 * the arm64 module loader does not apply, and ADRP cannot reach address 0
 * from a module: there the address is kept in a pointer the loader
 * relocates with R_AARCH64_ABS64 (KML_WEAK_REF after the declaration), and
 * read at run time (volatile: not folded back into a GOT access).
 */
#if defined(__aarch64__)
#define KML_WEAK_REF(sym)                                                      \
	static __typeof__(&(sym)) const volatile kml_wref_##sym = &(sym)
#define KML_WEAK_ADDR(sym) (kml_wref_##sym)
#else
#define KML_WEAK_REF(sym) extern __typeof__(sym) sym
#define KML_WEAK_ADDR(sym) (&(sym))
#endif

/* A layout-table slot: one u64 the linker fills for the target kernel. */
#define KML_SLOT(name, spec)                                                   \
	KML_MANIFEST("slot kml_slot_" #name " " spec);                         \
	const volatile u64 kml_slot_##name                                     \
		__attribute__((section(".kmlink.layout"), aligned(8), used)) = 0

/* A link-time option: the default lives in the object; the linker may
 * overwrite it for one build. */
#define KML_STR_(x) #x
#define KML_STR(x) KML_STR_(x) /* the text of x after macro expansion */

#define KML_OPTION(name, def)                                                  \
	KML_MANIFEST("option kml_opt_" #name " " KML_STR(def));                \
	const volatile u64 kml_opt_##name                                      \
		__attribute__((section(".kmlink.options"), aligned(8), used)) = def

/* A named value of a link-time option: users pick it by name through the
 * manifest (`kmlink build --backend kprobe`), never by a number of their
 * own. */
#define KML_OPTION_VALUE(name, value_name, value)                              \
	KML_MANIFEST("value kml_opt_" #name " " #value_name " " KML_STR(value))

#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
#define barrier() __asm__ __volatile__("" ::: "memory")
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Error numbers the core returns (negated), by name. These are the kernel's
 * user-visible ABI values, the same on every kernel version and
 * architecture kmlink supports (x86_64, aarch64).
 */
#define KML_ENOENT 2
#define KML_ENOMEM 12
#define KML_EFAULT 14
#define KML_EBUSY 16
#define KML_EINVAL 22
#define KML_ENOSYS 38

/*
 * printk log levels: the start-of-header byte \001 and the level digit, a
 * prefix of the format string (KML_LOG_ERR "kmlink: ...").
 */
#define KML_LOG_ERR "\0013"
#define KML_LOG_WARNING "\0014"
#define KML_LOG_INFO "\0016"

/* Field access through a layout slot. */
#define KML_FIELD(ptr, slot, type)                                             \
	(*(type *)((char *)(ptr) + kml_slot_##slot))

#endif /* KMLINK_H */
