//! Linking for arm64: the aarch64 core with the record of Debian's
//! 6.1.0-47-arm64 (extracted by `kmlink db add 6.1.0-47-arm64`), and the
//! refusal of a record of the other architecture.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use kmlink_core_module::{Arch, Manifest, CORE_OBJECT, CORE_OBJECT_AARCH64};
use object::read::elf::{ElfFile64, FileHeader};
use object::{Object, ObjectSection};

const R: &str = "6.1.0-47-arm64";

/// Relocation types arch/arm64/kernel/module.c applies (those a
/// small-code-model object carries).
const LOADER_RELOCS: &[u32] = &[
    object::elf::R_AARCH64_ABS64,
    object::elf::R_AARCH64_ABS32,
    object::elf::R_AARCH64_PREL64,
    object::elf::R_AARCH64_PREL32,
    object::elf::R_AARCH64_CALL26,
    object::elf::R_AARCH64_JUMP26,
    object::elf::R_AARCH64_CONDBR19,
    object::elf::R_AARCH64_TSTBR14,
    object::elf::R_AARCH64_ADR_PREL_LO21,
    object::elf::R_AARCH64_ADR_PREL_PG_HI21,
    object::elf::R_AARCH64_ADR_PREL_PG_HI21_NC,
    object::elf::R_AARCH64_ADD_ABS_LO12_NC,
    object::elf::R_AARCH64_LDST8_ABS_LO12_NC,
    object::elf::R_AARCH64_LDST16_ABS_LO12_NC,
    object::elf::R_AARCH64_LDST32_ABS_LO12_NC,
    object::elf::R_AARCH64_LDST64_ABS_LO12_NC,
    object::elf::R_AARCH64_LDST128_ABS_LO12_NC,
];

#[test]
fn links_an_arm64_module_the_arm64_loader_accepts() {
    let record = common::record(R);
    assert_eq!(record.identity.arch, "aarch64");
    let manifest = Manifest::core_for(Arch::Aarch64).unwrap();
    let linked = kmlink_linker::link(CORE_OBJECT_AARCH64, &manifest, &record).unwrap();
    let file = ElfFile64::<object::Endianness>::parse(&*linked.ko).unwrap();
    let endian = file.endian();
    assert_eq!(file.elf_header().e_machine(endian), object::elf::EM_AARCH64);
    // The PLT placeholders the loader sizes at load time, as in stock modules.
    for (name, exec) in [
        (".plt", true),
        (".init.plt", false),
        (".text.ftrace_trampoline", true),
    ] {
        let s = file
            .section_by_name(name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(s.size(), 1, "{name}");
        let flags = match s.flags() {
            object::SectionFlags::Elf { sh_flags } => sh_flags,
            _ => 0,
        };
        assert_eq!(
            flags & u64::from(object::elf::SHF_EXECINSTR) != 0,
            exec,
            "{name}"
        );
    }
    let modinfo = file.section_by_name(".modinfo").unwrap();
    let text = String::from_utf8_lossy(modinfo.data().unwrap()).into_owned();
    assert!(
        text.contains("vermagic=6.1.0-47-arm64 SMP mod_unload modversions aarch64\0"),
        "{text:?}"
    );
    assert!(!text.contains("retpoline"), "{text:?}");
    assert!(file.section_by_name(".return_sites").is_none());
    // memset and __arch_copy_from_user are what arm64 imports differently.
    let versions = &linked.report.versions;
    for name in ["module_layout", "memset", "__arch_copy_from_user"] {
        assert!(versions.iter().any(|(n, _)| n == name), "{name}");
    }
    assert!(!versions.iter().any(|(n, _)| n == "_copy_from_user"));
    // this_module: init and exit relocated with R_AARCH64_ABS64 at the
    // record's offsets.
    let tm = file.section_by_name(".gnu.linkonce.this_module").unwrap();
    assert_eq!(tm.size(), 896);
    let offs: Vec<u64> = tm.relocations().map(|(o, _)| o).collect();
    assert_eq!(offs, [312, 832]);
    for section in file.sections() {
        for (off, r) in section.relocations() {
            let object::RelocationFlags::Elf { r_type } = r.flags() else {
                panic!("not ELF relocation flags");
            };
            assert!(
                LOADER_RELOCS.contains(&r_type),
                "{}+{off:#x}: relocation type {r_type}",
                section.name().unwrap_or("?")
            );
        }
    }
}

#[test]
fn a_record_of_the_other_architecture_is_refused_naming_both() {
    let arm = common::record(R);
    let e = kmlink_linker::link(CORE_OBJECT, &common::manifest(), &arm)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("the record is for aarch64, the core object is built for x86_64"),
        "{e}"
    );
    let x86 = common::record("6.1.0-47-amd64");
    let manifest = Manifest::core_for(Arch::Aarch64).unwrap();
    let e = kmlink_linker::link(CORE_OBJECT_AARCH64, &manifest, &x86)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("the record is for x86_64, the core object is built for aarch64"),
        "{e}"
    );
}

#[test]
fn the_page_size_is_a_link_time_fact_from_the_record() {
    let manifest = Manifest::core_for(Arch::Aarch64).unwrap();
    let link = |record: &kmlink_metadata_db::record::KernelRecord, opts: &[(&str, u64)]| {
        let options = opts.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        kmlink_linker::link_with(CORE_OBJECT_AARCH64, &manifest, record, &options)
    };
    // The record's 4 KiB pages (CONFIG_ARM64_PAGE_SHIFT=12); without the
    // fact, the core's default.
    let record = common::record(R);
    assert_eq!(
        link(&record, &[]).unwrap().report.options["page_size"],
        4096
    );
    let mut plain = record;
    for key in ["CONFIG_ARM64_PAGE_SHIFT", "CONFIG_PAGE_SHIFT"] {
        plain.config.remove(key);
    }
    let linked = link(&plain, &[]).unwrap();
    assert_eq!(linked.report.options["page_size"], 4096);
    // 16 KiB pages (arm64-16k): CONFIG_ARM64_PAGE_SHIFT=14, or 6.9+'s
    // CONFIG_PAGE_SHIFT.
    for key in ["CONFIG_ARM64_PAGE_SHIFT", "CONFIG_PAGE_SHIFT"] {
        let mut r = plain.clone();
        r.config.insert(key.into(), "14".into());
        let linked = link(&r, &[]).unwrap();
        assert_eq!(linked.report.options["page_size"], 16384, "{key}");
        let e = link(&r, &[("page_size", 4096)]).err().unwrap().to_string();
        assert!(
            e.contains("option page_size=4096, but the kernel's pages are 16384 bytes"),
            "{e}"
        );
        assert!(link(&r, &[("page_size", 16384)]).is_ok());
    }
    // A 16k flavour whose record predates the fact is refused.
    let mut r = plain.clone();
    r.identity.flavour = "arm64-16k".into();
    let e = link(&r, &[]).err().unwrap().to_string();
    assert!(e.contains("names no page size"), "{e}");
    let mut r = plain;
    r.config
        .insert("CONFIG_ARM64_PAGE_SHIFT".into(), "banana".into());
    let e = link(&r, &[]).err().unwrap().to_string();
    assert!(e.contains("is not a page shift"), "{e}");
}

#[test]
fn the_loader_sections_are_the_records() {
    let manifest = Manifest::core_for(Arch::Aarch64).unwrap();
    let sections = |record: &kmlink_metadata_db::record::KernelRecord| -> Vec<(String, u64)> {
        let linked = kmlink_linker::link(CORE_OBJECT_AARCH64, &manifest, record).unwrap();
        let file = ElfFile64::<object::Endianness>::parse(&*linked.ko).unwrap();
        file.sections()
            .filter(|s| s.name().unwrap().contains("plt") || s.name().unwrap().contains("ftrace"))
            .map(|s| {
                let flags = match s.flags() {
                    object::SectionFlags::Elf { sh_flags } => sh_flags,
                    _ => 0,
                };
                (s.name().unwrap().to_string(), flags)
            })
            .collect()
    };
    let (a, ax) = (
        u64::from(object::elf::SHF_ALLOC),
        u64::from(object::elf::SHF_ALLOC | object::elf::SHF_EXECINSTR),
    );
    // A record from before the fact: 6.1's three.
    let mut r = common::record(R);
    r.conventions.loader_sections.clear();
    assert_eq!(
        sections(&r),
        [
            (".plt".to_string(), ax),
            (".init.plt".to_string(), a),
            (".text.ftrace_trampoline".to_string(), ax)
        ]
    );
    // 6.12 and 7.x stock modules also carry .init.text.ftrace_trampoline.
    r.conventions.loader_sections = kmlink_metadata_db::record::LOADER_SECTIONS
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        sections(&r),
        [
            (".plt".to_string(), ax),
            (".init.plt".to_string(), a),
            (".text.ftrace_trampoline".to_string(), ax),
            (".init.text.ftrace_trampoline".to_string(), a)
        ]
    );
    r.conventions.loader_sections.push(".got".into());
    let e = kmlink_linker::link(CORE_OBJECT_AARCH64, &manifest, &r)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("loader section \".got\""), "{e}");
}
