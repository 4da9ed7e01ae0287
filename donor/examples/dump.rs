//! Print the facts kmlink-donor reads from one unpacked kernel tree.
//!
//! `cargo run --release -p kmlink-donor --example dump -- <dir> [--scan-modules]`
//!
//! `<dir>` is a directory into which a kernel's image, modules and headers
//! packages were unpacked (`dpkg-deb -x`). Looks for `boot/vmlinuz-*` or
//! `usr/lib/modules/*/vmlinuz`, `usr/src/linux-headers-*/Module.symvers`,
//! `boot/config-*` or the headers' `.config`, and modules under
//! `{usr/,}lib/modules/*/kernel`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use kmlink_donor::{btf::Btf, bzimage, config::KernelConfig, ko, symvers, vmlinux::Vmlinux};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn glob1(dir: &Path, pred: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if pred(&e.path()) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for p in glob1(dir, |_| true) {
        if p.is_dir() {
            walk(&p, out);
        } else if p.to_string_lossy().contains(".ko") {
            out.push(p);
        }
    }
}

fn name_starts(p: &Path, prefix: &str) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
}

fn find_vmlinuz(root: &Path) -> Option<PathBuf> {
    glob1(&root.join("boot"), |p| name_starts(p, "vmlinuz-"))
        .into_iter()
        .next()
        .or_else(|| {
            ["usr/lib/modules", "lib/modules"]
                .iter()
                .flat_map(|d| glob1(&root.join(d), |p| p.join("vmlinuz").is_file()))
                .map(|d| d.join("vmlinuz"))
                .next()
        })
}

fn module_dirs(root: &Path) -> Vec<PathBuf> {
    ["usr/lib/modules", "lib/modules"]
        .iter()
        .flat_map(|d| glob1(&root.join(d), |p| p.join("kernel").is_dir()))
        .map(|d| d.join("kernel"))
        .collect()
}

fn headers(root: &Path, file: &str) -> Option<PathBuf> {
    glob1(&root.join("usr/src"), |p| p.join(file).is_file())
        .into_iter()
        .next()
        .map(|d| d.join(file))
}

fn main() -> R<()> {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(
        args.next()
            .ok_or("usage: dump <unpacked-kernel-dir> [--scan-modules]")?,
    );
    let scan = args.any(|a| a == "--scan-modules");

    let vmlinuz = find_vmlinuz(&root).ok_or("no vmlinuz found")?;
    println!("vmlinuz: {}", vmlinuz.display());
    let bz = std::fs::read(&vmlinuz)?;
    let p = bzimage::payload(&bz)?;
    let elf = bzimage::extract_vmlinux(&bz)?;
    println!(
        "payload: offset {:#x} length {} codec magic {:02x?}, vmlinux {} bytes",
        p.offset,
        p.length,
        &bz[p.offset as usize..p.offset as usize + 4],
        elf.len()
    );
    let vm = Vmlinux::parse(&elf)?;
    println!("banner: {:?}", vm.banner()?);
    println!("release: {}", vm.release()?);
    let exports = vm.exports()?;
    let gpl = exports.iter().filter(|e| e.gpl).count();
    let ns = exports.iter().filter(|e| e.namespace.is_some()).count();
    let with_crc = exports.iter().filter(|e| e.crc.is_some()).count();
    println!(
        "vmlinux exports: {} ({} GPL, {} namespaced, {} with CRC)",
        exports.len(),
        gpl,
        ns,
        with_crc
    );
    let by_name: HashMap<&str, &kmlink_donor::Export> =
        exports.iter().map(|e| (e.name.as_str(), e)).collect();
    for s in [
        "register_kprobe",
        "_printk",
        "module_layout",
        "current_task",
        "pcpu_hot",
    ] {
        match by_name.get(s) {
            Some(e) => println!(
                "  {s}: crc {} gpl {} ns {:?}",
                e.crc.map_or("none".into(), |c| format!("{c:#010x}")),
                e.gpl,
                e.namespace
            ),
            None => println!("  {s}: not exported"),
        }
    }
    let sv = match headers(&root, "Module.symvers") {
        Some(path) => symvers::parse(&std::fs::read_to_string(&path)?)?,
        None => Vec::new(),
    };
    let sv_by_name: HashMap<&str, &kmlink_donor::Export> =
        sv.iter().map(|e| (e.name.as_str(), e)).collect();
    if !sv.is_empty() {
        let sv_vm: Vec<_> = sv.iter().filter(|e| e.owner == "vmlinux").collect();
        let mut mismatch = 0;
        let mut missing = 0;
        for e in &sv_vm {
            match by_name.get(e.name.as_str()) {
                None => missing += 1,
                Some(x) => {
                    let crc_ok = x.crc == e.crc || (x.crc.is_none() && e.crc == Some(0));
                    if !crc_ok || x.gpl != e.gpl || x.namespace != e.namespace {
                        mismatch += 1;
                        if mismatch <= 3 {
                            println!("  mismatch: {x:?} vs symvers {e:?}");
                        }
                    }
                }
            }
        }
        println!(
            "Module.symvers: {} entries, {} vmlinux; vs image: {} missing from image, {} mismatched, {} only in image",
            sv.len(),
            sv_vm.len(),
            missing,
            mismatch,
            exports.len().saturating_sub(sv_vm.len() - missing)
        );
    } else {
        println!("Module.symvers: not found");
    }

    let cfg_path = glob1(&root.join("boot"), |p| name_starts(p, "config-"))
        .into_iter()
        .next()
        .or_else(|| headers(&root, ".config"));
    if let Some(path) = cfg_path {
        let cfg = KernelConfig::parse(&std::fs::read_to_string(&path)?);
        for k in [
            "MODVERSIONS",
            "EXTENDED_MODVERSIONS",
            "BASIC_MODVERSIONS",
            "GENDWARFKSYMS",
            "MITIGATION_RETHUNK",
            "RETHUNK",
            "X86_KERNEL_IBT",
            "DEBUG_INFO_BTF",
            "DEBUG_INFO_BTF_MODULES",
            "MODULE_SIG",
            "PREEMPT_RT",
        ] {
            println!("  CONFIG_{k}={}", cfg.get(k).unwrap_or("(unset)"));
        }
    }

    match vm.btf_section() {
        Some(raw) => dump_btf(raw)?,
        None => println!(".BTF: absent"),
    }

    let mut kos = Vec::new();
    for d in module_dirs(&root) {
        walk(&d, &mut kos);
    }
    println!("modules: {}", kos.len());
    let lib: Vec<_> = kos
        .iter()
        .filter(|p| p.to_string_lossy().contains("/kernel/lib/"))
        .collect();
    let mut shown = 0;
    for p in lib {
        let facts = ko::read(&ko::load(p)?)?;
        let interesting = !facts.this_module_relocs.is_empty() || name_starts(p, "crc7.");
        if !interesting {
            continue;
        }
        print_ko(p, &facts);
        let agree = facts
            .exports
            .iter()
            .filter(|e| {
                sv_by_name.get(e.name.as_str()).is_some_and(|s| {
                    (s.crc == e.crc || (e.crc.is_none() && s.crc == Some(0)))
                        && s.gpl == e.gpl
                        && s.namespace == e.namespace
                })
            })
            .count();
        println!(
            "  exports agreeing with Module.symvers: {agree}/{}",
            facts.exports.len()
        );
        shown += 1;
        if shown >= 2 {
            break;
        }
    }
    if scan {
        scan_modules(&kos)?;
    }
    Ok(())
}

fn print_ko(p: &Path, f: &ko::ModuleFacts) {
    println!("module {}:", p.display());
    println!("  name {:?} vermagic {:?}", f.name, f.vermagic);
    println!(
        "  this_module size {:?} name@{:?} relocs {:x?}",
        f.this_module_size, f.this_module_name_offset, f.this_module_relocs
    );
    println!(
        "  __versions {} entries {:x?}, ext versions {} ({} entries)",
        f.versions.len(),
        f.versions.iter().take(3).collect::<Vec<_>>(),
        f.has_ext_versions,
        f.ext_versions.len()
    );
    println!(
        "  exports {:?}",
        f.exports.iter().take(3).collect::<Vec<_>>()
    );
    println!(
        "  undefined {} e.g. {:?}",
        f.undefined.len(),
        f.undefined.iter().take(5).collect::<Vec<_>>()
    );
    println!("  sections {}", f.sections.join(" "));
    println!(
        "  modinfo keys {:?}",
        f.modinfo
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
    );
}

fn dump_btf(raw: &[u8]) -> R<()> {
    let btf = Btf::parse(raw)?;
    println!(".BTF: {} bytes, {} types", raw.len(), btf.type_count());
    let show = |s: &str, m: &str| {
        let off = btf.member_offset(s, m);
        let size = btf.member_size(s, m);
        match (off, size) {
            (Ok(Some(o)), Ok(Some(z))) => println!("  {s}.{m}: offset {o} ({o:#x}) size {z}"),
            (o, z) => println!("  {s}.{m}: {o:?} / {z:?}"),
        }
    };
    for s in ["module", "task_struct", "kprobe", "tracepoint", "pcpu_hot"] {
        println!("  sizeof(struct {s}) = {:?}", btf.struct_size(s));
    }
    for (s, m) in [
        ("module", "name"),
        ("module", "init"),
        ("module", "exit"),
        ("module", "state"),
        ("task_struct", "pid"),
        ("task_struct", "tgid"),
        ("task_struct", "comm"),
        ("kprobe", "symbol_name"),
        ("kprobe", "pre_handler"),
        ("kprobe", "addr"),
        ("tracepoint", "name"),
        ("pcpu_hot", "current_task"),
    ] {
        show(s, m);
    }
    for f in [
        "register_kprobe",
        "__kmalloc",
        "kmalloc_trace",
        "__kmalloc_noprof",
        "__kmalloc_cache_noprof",
    ] {
        println!("  function {f}: {}", btf.has_function(f));
    }
    for v in ["current_task", "pcpu_hot", "cpu_number"] {
        println!("  percpu {v}: {}", btf.is_percpu_var(v));
    }
    for tp in [
        "kmalloc",
        "kmem_cache_alloc",
        "kfree",
        "kmem_cache_free",
        "mm_page_alloc",
    ] {
        match btf.tracepoint_params(tp)? {
            Some(ps) => println!(
                "  tracepoint {tp}({})",
                ps.iter()
                    .map(|p| format!("{} {} /*{}*/", p.type_name, p.name, p.size))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => println!("  tracepoint {tp}: none"),
        }
    }
    Ok(())
}

fn scan_modules(kos: &[PathBuf]) -> R<()> {
    let mut sections: BTreeMap<String, usize> = BTreeMap::new();
    let mut sizes: BTreeMap<u64, usize> = BTreeMap::new();
    let mut relocs: BTreeMap<String, usize> = BTreeMap::new();
    let (mut ext, mut versions, mut long_names, mut vermagics) = (0, 0, 0, BTreeMap::new());
    for p in kos {
        let f = match ko::load(p).and_then(|d| ko::read(&d)) {
            Ok(f) => f,
            Err(e) => {
                println!("  {}: {e}", p.display());
                continue;
            }
        };
        for s in &f.sections {
            *sections.entry(s.clone()).or_default() += 1;
        }
        if let Some(z) = f.this_module_size {
            *sizes.entry(z).or_default() += 1;
        }
        *relocs
            .entry(format!("{:x?}", f.this_module_relocs))
            .or_default() += 1;
        ext += usize::from(f.has_ext_versions);
        versions += usize::from(!f.versions.is_empty());
        long_names += usize::from(f.undefined.iter().any(|u| u.len() >= 56));
        *vermagics
            .entry(f.vermagic.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    println!("scanned {} modules: {versions} with __versions, {ext} with extended modversions, {long_names} referencing a name >= 56 bytes", kos.len());
    println!("  this_module sizes {sizes:?}");
    println!("  this_module relocs {relocs:?}");
    println!("  vermagic {vermagics:?}");
    println!("  sections (count of modules): {sections:?}");
    Ok(())
}
