//! Compiles the freestanding C core into the relocatable object the kmlink
//! binary embeds. The flags are the contract with the linker and the kernel:
//! see docs/core-module.md and ../shared/docs/KERNEL-ABI.md.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags for kernel code: kernel code model, no red zone, no FPU/SIMD, IBT
/// landing pads, return thunks and retpolines, nothing the loader won't patch.
const CFLAGS: &[&str] = &[
    "-std=gnu11",
    "-O2",
    "-nostdinc",
    "-ffreestanding",
    "-fno-builtin",
    "-fno-common",
    "-fno-strict-aliasing",
    "-fno-pic",
    "-fno-pie",
    "-mcmodel=kernel",
    "-mno-red-zone",
    "-mno-sse",
    "-mno-mmx",
    "-mno-sse2",
    "-mno-3dnow",
    "-mno-avx",
    "-msoft-float",
    "-mpreferred-stack-boundary=3",
    "-fcf-protection=branch",
    "-mfunction-return=thunk-extern",
    "-mindirect-branch=thunk-extern",
    "-mindirect-branch-register",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fno-jump-tables",
    // The module has no ORC tables: the kernel's unwinder (stack_trace_save,
    // for the sampled stacks) crosses the core's own frames by frame
    // pointer, its fallback for code without ORC data.
    "-fno-omit-frame-pointer",
    "-fno-delete-null-pointer-checks",
    "-fno-ident",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Werror",
];

/// Flags for arm64 kernel code (arch/arm64/Makefile's conventions): the
/// LP64 ABI and the small code model modules use (the loader applies the
/// ADRP/ADD/LDR relocations), general registers only (no FP/SIMD state in
/// kernel code), no outline atomics (libgcc's helpers are not kernel
/// exports), return addresses signed and BTI landing pads on every
/// indirect-call target (pac-ret+leaf+bti, as Debian's BTI/PAC kernels).
const CFLAGS_AARCH64: &[&str] = &[
    "-std=gnu11",
    "-O2",
    "-nostdinc",
    "-ffreestanding",
    "-fno-builtin",
    "-fno-common",
    "-fno-strict-aliasing",
    "-fno-pic",
    "-fno-pie",
    "-mabi=lp64",
    "-mcmodel=small",
    "-mgeneral-regs-only",
    "-mno-outline-atomics",
    "-mbranch-protection=pac-ret+leaf+bti",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fno-jump-tables",
    "-fno-delete-null-pointer-checks",
    "-fno-ident",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Werror",
];

fn compile(cc: &str, flags: &[&str], src: &Path, out: &Path, hint: &str) {
    let status = Command::new(cc)
        .args(flags)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("running {cc} to build the kmlink core: {e} ({hint})"));
    assert!(status.success(), "{cc} failed to compile {}", src.display());
}

fn main() {
    let src = PathBuf::from("src/kmlink.c");
    for f in [
        "kmlink.c",
        "kmlink.h",
        "kml_hash.h",
        "kml_arch_x86.h",
        "kml_arch_arm64.h",
    ] {
        println!("cargo:rerun-if-changed=src/{f}");
    }
    println!("cargo:rerun-if-env-changed=KMLINK_CC");
    println!("cargo:rerun-if-env-changed=KMLINK_CC_AARCH64");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cc = env::var("KMLINK_CC").unwrap_or_else(|_| "gcc".to_string());
    compile(
        &cc,
        CFLAGS,
        &src,
        &out_dir.join("kmlink-core.o"),
        "install gcc, or set KMLINK_CC",
    );
    let cc = env::var("KMLINK_CC_AARCH64").unwrap_or_else(|_| "aarch64-linux-gnu-gcc".to_string());
    compile(
        &cc,
        CFLAGS_AARCH64,
        &src,
        &out_dir.join("kmlink-core-aarch64.o"),
        "install gcc-aarch64-linux-gnu (scripts/setup), or set KMLINK_CC_AARCH64",
    );
    println!("cargo:rustc-env=KMLINK_CORE_CFLAGS={}", CFLAGS.join(" "));
    println!(
        "cargo:rustc-env=KMLINK_CORE_CFLAGS_AARCH64={}",
        CFLAGS_AARCH64.join(" ")
    );
}
