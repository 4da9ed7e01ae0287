//! Checks against real Debian kernels unpacked with `dpkg-deb -x`.
//!
//! Ignored by default (they need ~200 MB of unpacked packages). Run with
//! `KMLINK_DONOR_KERNELS=/tmp/kern cargo test -p kmlink-donor --test real_kernels -- --ignored`
//! where the directory holds `6.1.0-47-amd64/`, `6.12.107+deb13-amd64/`, …

use std::path::PathBuf;

use kmlink_donor::{btf::Btf, bzimage, ko, vmlinux::Vmlinux};

fn kernel_dir(release: &str) -> Option<PathBuf> {
    let base = std::env::var_os("KMLINK_DONOR_KERNELS")
        .map_or_else(|| PathBuf::from("/tmp/kern"), PathBuf::from);
    let dir = base.join(release);
    dir.is_dir().then_some(dir)
}

#[test]
#[ignore = "needs unpacked Debian 6.1.0-47-amd64 packages"]
fn debian_6_1_0_47() {
    let Some(dir) = kernel_dir("6.1.0-47-amd64") else {
        eprintln!("skipped: no 6.1.0-47-amd64 tree");
        return;
    };
    let bz = std::fs::read(dir.join("boot/vmlinuz-6.1.0-47-amd64")).expect("vmlinuz");
    let elf = bzimage::extract_vmlinux(&bz).expect("extract");
    let vm = Vmlinux::parse(&elf).expect("parse");
    assert!(vm
        .banner()
        .expect("banner")
        .contains("#1 SMP PREEMPT_DYNAMIC Debian 6.1.170-3"));
    let ex = vm.exports().expect("exports");
    assert_eq!(ex.len(), 10_488);
    let crc = |n: &str| ex.iter().find(|e| e.name == n).and_then(|e| e.crc);
    assert_eq!(crc("register_kprobe"), Some(0xfcca_5424));
    assert_eq!(crc("_printk"), Some(0x9299_7ed8));
    assert_eq!(crc("module_layout"), Some(0x160c_03af));
    assert_eq!(crc("current_task"), Some(0xe0a6_83ed));

    let btf = Btf::parse(vm.btf_section().expect(".BTF")).expect("btf");
    assert_eq!(btf.struct_size("module"), Some(896));
    assert_eq!(
        btf.member_offset("module", "init").expect("init"),
        Some(0x138)
    );
    assert_eq!(
        btf.member_offset("module", "exit").expect("exit"),
        Some(0x350)
    );
    assert_eq!(
        btf.member_offset("task_struct", "pid").expect("pid"),
        Some(2416)
    );
    assert_eq!(
        btf.member_offset("task_struct", "comm").expect("comm"),
        Some(2976)
    );
    assert_eq!(btf.struct_size("kprobe"), Some(128));
    assert_eq!(
        btf.member_offset("kprobe", "symbol_name").expect("sym"),
        Some(48)
    );
    assert_eq!(
        btf.member_offset("kprobe", "pre_handler").expect("pre"),
        Some(64)
    );
    let names: Vec<_> = btf
        .tracepoint_params("kmalloc")
        .expect("tp")
        .expect("kmalloc")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        names,
        [
            "call_site",
            "ptr",
            "bytes_req",
            "bytes_alloc",
            "gfp_flags",
            "node"
        ]
    );

    let m = ko::read(
        &ko::load(&dir.join("lib/modules/6.1.0-47-amd64/kernel/lib/libcrc32c.ko")).expect("load"),
    )
    .expect("read");
    assert_eq!(m.this_module_size, Some(896));
    assert_eq!(
        m.this_module_relocs,
        vec![
            (0x138, "init_module".to_owned()),
            (0x350, "cleanup_module".to_owned())
        ]
    );
    assert_eq!(m.this_module_name_offset, Some(24));
}

#[test]
#[ignore = "needs unpacked Debian 7.3.4+deb13-amd64 packages"]
fn debian_7_3_4() {
    let Some(dir) = kernel_dir("7.3.4+deb13-amd64") else {
        eprintln!("skipped: no 7.3.4+deb13-amd64 tree");
        return;
    };
    let bz = std::fs::read(dir.join("usr/lib/modules/7.3.4+deb13-amd64/vmlinuz")).expect("vmlinuz");
    let elf = bzimage::extract_vmlinux(&bz).expect("extract");
    let vm = Vmlinux::parse(&elf).expect("parse");
    let ex = vm.exports().expect("exports");
    assert_eq!(ex.len(), 14_947);
    assert!(ex.iter().all(|e| e.crc.is_none()));
    let kp = ex
        .iter()
        .find(|e| e.name == "register_kprobe")
        .expect("register_kprobe");
    assert!(kp.gpl);
    let btf = Btf::parse(vm.btf_section().expect(".BTF")).expect("btf");
    assert_eq!(btf.struct_size("module"), Some(1280));
    assert_eq!(
        btf.member_offset("module", "init").expect("init"),
        Some(0x130)
    );
    assert_eq!(
        btf.member_offset("module", "exit").expect("exit"),
        Some(0x4b8)
    );
    assert!(btf.is_percpu_var("current_task"));
}
