//! Compiles the freestanding C core into the relocatable object the kmlink
//! binary embeds. The flags are the contract with the linker and the kernel:
//! see docs/core-module.md and ../shared/docs/KERNEL-ABI.md.

use std::env;
use std::path::PathBuf;
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

fn main() {
    let src = PathBuf::from("src/kmlink.c");
    println!("cargo:rerun-if-changed=src/kmlink.c");
    println!("cargo:rerun-if-changed=src/kmlink.h");
    println!("cargo:rerun-if-changed=src/kml_hash.h");
    println!("cargo:rerun-if-env-changed=KMLINK_CC");
    let cc = env::var("KMLINK_CC").unwrap_or_else(|_| "gcc".to_string());
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("kmlink-core.o");
    let status = Command::new(&cc)
        .args(CFLAGS)
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("running {cc} to build the kmlink core: {e} (install gcc, or set KMLINK_CC)")
        });
    assert!(status.success(), "{cc} failed to compile {}", src.display());
    println!("cargo:rustc-env=KMLINK_CORE_CFLAGS={}", CFLAGS.join(" "));
}
