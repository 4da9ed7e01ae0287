//! Records built in-test.
#![allow(dead_code)]

use std::collections::BTreeMap;

use kmlink_metadata_db::record::{
    Export, Identity, KernelRecord, ModuleConventions, PackageRef, ThisModuleLayout, TpParam,
    RECORD_SCHEMA,
};

/// A deterministic pseudo-random u32 from a seed.
pub fn mix(mut x: u64) -> u32 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x as u32
}

/// A record of `release` with `n` exports `sym_0000…`; export `i` has CRC
/// `mix(i)` when `same(i)`, else a value unique to `build`.
pub fn fixture(release: &str, build: u32, n: usize, same: impl Fn(usize) -> bool) -> KernelRecord {
    let mut exports = BTreeMap::new();
    for i in 0..n {
        let crc = if same(i) {
            mix(i as u64)
        } else {
            mix(((build as u64) << 32) | i as u64)
        };
        exports.insert(
            format!("sym_{i:04}"),
            Export {
                crc: Some(crc),
                gpl: i % 3 == 0,
                namespace: (i % 50 == 7).then(|| "CXL".to_string()),
                owner: "vmlinux".into(),
            },
        );
    }
    exports.insert(
        "module_layout".into(),
        Export {
            crc: Some(0x160c_03af),
            gpl: false,
            namespace: None,
            owner: "vmlinux".into(),
        },
    );
    exports.insert(
        format!("only_in_{build}"),
        Export {
            crc: Some(mix(build as u64 + 99)),
            gpl: true,
            namespace: None,
            owner: "vmlinux".into(),
        },
    );
    KernelRecord {
        schema: RECORD_SCHEMA,
        identity: Identity {
            release: release.into(),
            distro: "debian".into(),
            suite: "bookworm".into(),
            flavour: "amd64".into(),
            arch: "x86_64".into(),
            build_string: format!("#1 SMP PREEMPT_DYNAMIC Debian 6.1.{build}-1 (2026-01-01)"),
            btf_sha256: format!("{:064x}", build),
            packages: vec![PackageRef {
                name: format!("linux-image-{release}-unsigned"),
                version: format!("6.1.{build}-1"),
                sha256: format!("{:064x}", build + 1000),
            }],
        },
        vermagic: format!("{release} SMP preempt mod_unload modversions "),
        conventions: ModuleConventions {
            modversions: true,
            ext_modversions: false,
            return_sites: true,
            retpoline: true,
            ibt: false,
            stock_modinfo_keys: vec!["depends".into(), "intree".into(), "name".into()],
            loader_sections: Vec::new(),
        },
        config: BTreeMap::from([
            ("CONFIG_MODVERSIONS".to_string(), "y".to_string()),
            ("CONFIG_RETHUNK".to_string(), "y".to_string()),
        ]),
        exports,
        this_module: ThisModuleLayout {
            size: 896,
            name_offset: 24,
            name_len: 56,
            init_offset: 0x138,
            exit_offset: 0x350,
        },
        layouts: BTreeMap::from([
            ("offsetof:task_struct.pid".to_string(), 2416),
            ("offsetof:task_struct.comm".to_string(), 2976),
            ("sizeof:kprobe".to_string(), 128),
        ]),
        tracepoints: BTreeMap::from([(
            "kmalloc".to_string(),
            vec![
                TpParam {
                    name: "call_site".into(),
                    size: 8,
                    type_name: "long unsigned int".into(),
                },
                TpParam {
                    name: "bytes_req".into(),
                    size: 8,
                    type_name: "size_t".into(),
                },
            ],
        )]),
        functions: vec!["__kmalloc".into(), "kmalloc_trace".into()],
        provenance: BTreeMap::from([("exports".to_string(), "fixture".to_string())]),
    }
}

/// Flips one bit of the byte at `at` in `path`.
pub fn flip(path: &std::path::Path, at: usize) {
    let mut b = std::fs::read(path).expect("read");
    b[at] ^= 0x20;
    std::fs::write(path, b).expect("write");
}

/// Offset of the first occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}
