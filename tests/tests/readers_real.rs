//! The donor readers on the real package contents of every pinned kernel,
//! each value cross-checked against an independent tool: `bpftool btf dump`
//! for BTF, `readelf` for modules, the headers package's Module.symvers for
//! the image's export tables (when the archive still has it), and the
//! config text itself.
//!
//! Needs the pinned kernels (downloaded on first use):
//! `cargo test -p kmlink-tests --test readers_real -- --ignored`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use kmlink_donor::{btf::Btf, bzimage, config::KernelConfig, ko, symvers, vmlinux::Vmlinux};
use kmlink_tests::{kernel, module_with_init_exit, pinned_releases};

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (apt-get install binutils bpftool)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `bpftool btf dump … format raw`: struct name -> (size, member -> byte offset),
/// top-level members only.
fn bpftool_structs(
    vmlinux: &Path,
    wanted: &[&str],
) -> BTreeMap<String, (u64, BTreeMap<String, u64>)> {
    let dump = tool(
        "bpftool",
        &[
            "btf",
            "dump",
            "file",
            vmlinux.to_str().expect("utf8"),
            "format",
            "raw",
        ],
    );
    let mut out: BTreeMap<String, (u64, BTreeMap<String, u64>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in dump.lines() {
        if line.starts_with('[') {
            current = None;
            let Some(rest) = line.split_once("] STRUCT '").map(|(_, r)| r) else {
                continue;
            };
            let Some((name, tail)) = rest.split_once('\'') else {
                continue;
            };
            if wanted.contains(&name) && !out.contains_key(name) {
                let size = tail
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("size="))
                    .expect("size");
                out.insert(
                    name.to_string(),
                    (size.parse().expect("size"), BTreeMap::new()),
                );
                current = Some(name.to_string());
            }
        } else if let Some(name) = &current {
            let line = line.trim();
            let Some(member) = line.strip_prefix('\'').and_then(|r| r.split('\'').next()) else {
                continue;
            };
            let bits: u64 = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("bits_offset="))
                .expect("bits_offset")
                .parse()
                .expect("bits");
            out.get_mut(name)
                .expect("struct")
                .1
                .insert(member.to_string(), bits / 8);
        }
    }
    out
}

fn check_kernel(release: &str) {
    let tree = kernel(release).expect("pinned kernel");
    let dir = tempfile::tempdir().expect("tempdir");

    // bzImage -> vmlinux, and its BTF, against bpftool.
    let bz = std::fs::read(&tree.vmlinuz).expect("vmlinuz");
    let elf = bzimage::extract_vmlinux(&bz).expect("extract_vmlinux");
    let vm_path = dir.path().join("vmlinux");
    std::fs::write(&vm_path, &elf).expect("write vmlinux");
    let vm = Vmlinux::parse(&elf).expect("vmlinux parses");
    assert!(vm
        .banner()
        .expect("banner")
        .starts_with(&format!("Linux version {release} ")));
    let btf = Btf::parse(vm.btf_section().expect(".BTF")).expect("BTF parses");
    let structs = [
        "module",
        "kmem_cache",
        "proc_ops",
        "seq_operations",
        "tracepoint",
        "kprobe",
    ];
    let reference = bpftool_structs(&vm_path, &structs);
    let mut compared = 0;
    for name in structs {
        let (size, members) = reference
            .get(name)
            .unwrap_or_else(|| panic!("{release}: bpftool has no struct {name}"));
        assert_eq!(
            btf.struct_size(name),
            Some(*size),
            "{release}: sizeof({name})"
        );
        for (member, off) in members {
            if member.is_empty() {
                continue; // anonymous member
            }
            assert_eq!(
                btf.member_offset(name, member).expect("member_offset"),
                Some(*off),
                "{release}: offsetof({name}, {member})"
            );
            compared += 1;
        }
    }
    assert!(
        compared > 100,
        "{release}: only {compared} members compared"
    );

    // Export tables against Module.symvers, when the archive still has it.
    let exports = vm.exports().expect("exports");
    if let Some(path) = &tree.symvers {
        let listed = symvers::parse(&std::fs::read_to_string(path).expect("symvers"))
            .expect("symvers parses");
        let mine: BTreeMap<&str, &kmlink_donor::Export> =
            exports.iter().map(|e| (e.name.as_str(), e)).collect();
        let vmlinux_rows: Vec<_> = listed.iter().filter(|s| s.owner == "vmlinux").collect();
        assert_eq!(
            vmlinux_rows.len(),
            exports.len(),
            "{release}: export count vs Module.symvers"
        );
        for s in vmlinux_rows {
            let e = mine
                .get(s.name.as_str())
                .unwrap_or_else(|| panic!("{release}: {} missing", s.name));
            assert_eq!(
                e.crc.unwrap_or(0),
                s.crc.unwrap_or(0),
                "{release}: CRC of {}",
                s.name
            );
            assert_eq!(e.gpl, s.gpl, "{release}: GPL flag of {}", s.name);
            assert_eq!(
                e.namespace, s.namespace,
                "{release}: namespace of {}",
                s.name
            );
        }
    }

    // A stock module with init and exit functions, against readelf.
    let (_, name, bytes) =
        module_with_init_exit(&tree.modules_dir).expect("a stock module with init and exit");
    let ko_path = dir.path().join("stock.ko");
    std::fs::write(&ko_path, &bytes).expect("write ko");
    let facts = ko::read(&bytes).expect("module parses");
    let ko_str = ko_path.to_str().expect("utf8");
    let sections = tool("readelf", &["-S", "-W", ko_str]);
    let size_line = sections
        .lines()
        .find(|l| l.contains(".gnu.linkonce.this_module"))
        .expect("section");
    let fields: Vec<&str> = size_line.split_whitespace().collect();
    let at = fields
        .iter()
        .position(|f| *f == ".gnu.linkonce.this_module")
        .expect("name");
    let size = u64::from_str_radix(fields[at + 4], 16).expect("size");
    assert_eq!(
        facts.this_module_size,
        Some(size),
        "{release}: {name} this_module size vs readelf"
    );
    assert_eq!(
        Some(size),
        btf.struct_size("module"),
        "{release}: stock module vs BTF"
    );
    let relocs = tool("readelf", &["-r", "-W", ko_str]);
    let mut in_section = false;
    let mut seen = Vec::new();
    for line in relocs.lines() {
        if line.starts_with("Relocation section") {
            in_section = line.contains("'.rela.gnu.linkonce.this_module'");
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if in_section && w.len() >= 5 && w[2] == "R_X86_64_64" {
            seen.push((
                u64::from_str_radix(w[0], 16).expect("offset"),
                w[4].to_string(),
            ));
        }
    }
    assert_eq!(
        facts.this_module_relocs, seen,
        "{release}: {name} this_module relocations vs readelf"
    );
    assert_eq!(
        seen.len(),
        2,
        "{release}: {name}: expected init and exit relocations"
    );
    for (func, member) in [("init_module", "init"), ("cleanup_module", "exit")] {
        let off = seen.iter().find(|(_, s)| s == func).map(|(o, _)| *o);
        assert_eq!(
            off,
            btf.member_offset("module", member).expect("offset"),
            "{release}: {func} vs BTF module.{member}"
        );
    }
    let modinfo = tool("readelf", &["-p", ".modinfo", ko_str]);
    let vermagic = facts.vermagic.clone().expect("vermagic");
    assert!(
        modinfo.contains(&format!("vermagic={}", vermagic.trim_end())),
        "{release}: vermagic vs readelf"
    );
    let has_versions = sections.contains("__versions");
    assert_eq!(
        !facts.versions.is_empty(),
        has_versions,
        "{release}: __versions vs readelf"
    );

    // Config reader against the text.
    if let Some(path) = &tree.config {
        let text = std::fs::read_to_string(path).expect("config");
        let cfg = KernelConfig::parse(&text);
        for key in [
            "CONFIG_MODVERSIONS",
            "CONFIG_RETHUNK",
            "CONFIG_MITIGATION_RETHUNK",
            "CONFIG_X86_KERNEL_IBT",
            "CONFIG_PREEMPT_RT",
        ] {
            let set = text.lines().any(|l| l == format!("{key}=y"));
            assert_eq!(cfg.enabled(key), set, "{release}: {key}");
        }
        assert_eq!(
            cfg.enabled("CONFIG_MODVERSIONS"),
            has_versions,
            "{release}: MODVERSIONS vs stock module"
        );
    }
    eprintln!(
        "{release}: {} exports, {compared} BTF members vs bpftool, {name}: this_module {size} bytes, relocs {seen:x?}",
        exports.len()
    );
}

#[test]
#[ignore = "reads the pinned kernels' packages (downloaded on first use)"]
fn readers_agree_with_independent_tools_on_every_pinned_kernel() {
    for release in pinned_releases().expect("pins") {
        check_kernel(&release);
    }
}
