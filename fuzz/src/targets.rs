//! The fuzz targets: one per parser of untrusted bytes.
//!
//! A target returns normally for every input (errors are the expected
//! answer to garbage); a panic, an abort, a hang or unbounded memory is a
//! finding.

use std::cell::RefCell;
use std::path::PathBuf;

use crate::seeds;

/// One fuzz target.
pub struct Target {
    /// Its name on the command line and in docs/fuzzing.md.
    pub name: &'static str,
    /// What it feeds the input to.
    pub what: &'static str,
    /// Run one input.
    pub run: fn(&[u8]),
    /// Seed inputs.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Largest input the mutator makes.
    pub max_len: usize,
}

thread_local! {
    static SCRATCH: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// The directory file-based targets (the `.deb` walker) write into; made
/// on first use under the system's temporary directory unless set.
pub fn set_scratch(dir: PathBuf) {
    SCRATCH.with(|s| *s.borrow_mut() = Some(dir));
}

fn scratch() -> PathBuf {
    SCRATCH.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| {
                std::env::temp_dir().join(format!("kmlink-fuzz-{}", std::process::id()))
            })
            .clone()
    })
}

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

fn deb(data: &[u8]) {
    let dir = scratch();
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("input.deb");
    if std::fs::write(&file, data).is_err() {
        return;
    }
    let _ = kmlink_crawler::deb::control(&file);
    let _ = kmlink_crawler::deb::verify(&file);
    let dest = dir.join("out");
    let _ = std::fs::remove_dir_all(&dest);
    let _ = std::fs::create_dir_all(&dest);
    let _ = kmlink_crawler::deb::extract(&file, &dest, &mut |_| true);
    let _ = std::fs::remove_dir_all(&dest);
}

fn bzimage(data: &[u8]) {
    let _ = kmlink_donor::bzimage::payload(data);
    if let Ok(elf) = kmlink_donor::bzimage::extract_vmlinux(data) {
        vmlinux(&elf);
    }
}

fn vmlinux(data: &[u8]) {
    let Ok(v) = kmlink_donor::vmlinux::Vmlinux::parse(data) else {
        return;
    };
    let _ = v.banner();
    let _ = v.release();
    let _ = v.exports();
    if let Some(b) = v.btf_section() {
        btf(b);
    }
}

fn arm64_image(data: &[u8]) {
    let Ok(i) = kmlink_donor::arm64_image::Arm64Image::parse(data) else {
        return;
    };
    let _ = i.banner();
    let _ = i.export_table();
    if let Ok(b) = i.btf() {
        btf(b);
    }
}

fn btf(data: &[u8]) {
    use kmlink_donor::btf::{Btf, BtfTypeId};
    let Ok(b) = Btf::parse(data) else { return };
    let n = b.type_count().min(256);
    for id in 1..=n {
        let id = BtfTypeId(id);
        let _ = b.type_name(id);
        let _ = b.type_size(id);
        let _ = b.skip_modifiers(id);
    }
    let _ = b.pointer_size();
    for s in ["task_struct", "kprobe", "union_u", "module", "x"] {
        let _ = b.struct_size(s);
        let _ = b.find_composite(s);
    }
    for (s, m) in [
        ("task_struct", "pid"),
        ("task_struct", "comm"),
        ("task_struct", "parent.pid"),
        ("union_u", "u2"),
        ("kprobe", "addr"),
    ] {
        let _ = b.member_offset(s, m);
        let _ = b.member_size(s, m);
    }
    let _ = b.has_function("do_thing");
    let _ = b.function_params("do_thing");
    let _ = b.tracepoint_params("kmalloc");
    let _ = b.is_percpu_var("runqueues");
}

fn ko(data: &[u8]) {
    let _ = kmlink_donor::ko::read(data);
    let _ = kmlink_donor::ko::read_versions(data);
    let (a, b) = data.split_at(data.len() / 2);
    let _ = kmlink_donor::ko::read_ext_versions(a, b);
}

fn symvers(data: &[u8]) {
    let _ = kmlink_donor::symvers::parse(&text(data));
}

fn config(data: &[u8]) {
    let c = kmlink_donor::config::KernelConfig::parse(&text(data));
    let _ = c.get("CONFIG_SMP");
    let _ = c.enabled("CONFIG_MODVERSIONS");
}

fn packages(data: &[u8]) {
    if let Ok(entries) = kmlink_crawler::index::parse_packages(&text(data)) {
        for e in entries {
            let _ = e.validate();
            let _ = e.label();
        }
    }
}

fn release(data: &[u8]) {
    let t = text(data);
    if let Ok(r) = kmlink_crawler::release::Release::parse(&t, "fuzz") {
        let _ = r.file("main/binary-amd64/Packages");
        let _ = r.expired_at(1_800_000_000);
    }
    for line in t.lines().take(8) {
        let _ = kmlink_crawler::release::parse_date(line);
    }
    thread_local! {
        static KEYRING: Option<kmlink_crawler::release::Keyring> =
            seeds::keyrings().first().and_then(|k| kmlink_crawler::release::Keyring::from_bytes(k, "seed").ok());
    }
    KEYRING.with(|k| {
        if let Some(k) = k {
            let _ = kmlink_crawler::release::verify_clearsigned(&t, k, "fuzz");
        }
    });
}

fn sources(data: &[u8]) {
    let t = text(data);
    let _ = kmlink_crawler::sources::parse_deb822(&t);
    let _ = kmlink_crawler::sources::parse_one_line(&t);
}

fn keyring(data: &[u8]) {
    let _ = kmlink_crawler::release::Keyring::from_bytes(data, "fuzz");
}

fn record_json(data: &[u8]) {
    use kmlink_metadata_db::record::KernelRecord;
    if let Ok(r) = serde_json::from_slice::<KernelRecord>(data) {
        let _ = r.validate();
        let _ = r.sha256();
        let _ = kmlink_metadata_db::image::Image::rebuild(std::slice::from_ref(&r));
    }
}

fn store(data: &[u8]) {
    use kmlink_metadata_db::image::Image;
    let _ = Image::check_header(data);
    let Ok(img) = Image::parse(data) else { return };
    let _ = img.stats();
    for i in 0..img.entries.len().min(64) {
        if let Ok(r) = img.decode(i) {
            let _ = r.validate();
        }
    }
}

fn bundle(data: &[u8]) {
    use kmlink_metadata_db::bundle::{read, Trust};
    if let Ok(v) = read(data, &Trust::default()) {
        for r in &v.records {
            let _ = r.validate();
        }
    }
}

fn proc_stats(data: &[u8]) {
    let _ = kmlink_procview::parse_stats(&text(data));
}

fn proc_events(data: &[u8]) {
    let _ = kmlink_procview::parse_events(&text(data));
}

fn proc_name(data: &[u8]) {
    if let Ok(n) = kmlink_procview::Name::unescape(&text(data)) {
        let _ = n.wire();
        let _ = n.display();
        let _ = n.contains("a");
    }
}

fn debs() -> Vec<Vec<u8>> {
    seeds::debs()
}
fn bzimages() -> Vec<Vec<u8>> {
    seeds::bzimages()
}
fn elfs() -> Vec<Vec<u8>> {
    seeds::elf_objects()
}
fn btfs() -> Vec<Vec<u8>> {
    vec![seeds::btf()]
}
fn t_symvers() -> Vec<Vec<u8>> {
    seeds::text("symvers")
}
fn t_config() -> Vec<Vec<u8>> {
    seeds::text("config")
}
fn t_packages() -> Vec<Vec<u8>> {
    seeds::text("packages")
}
fn t_release() -> Vec<Vec<u8>> {
    seeds::text("release")
}
fn t_sources() -> Vec<Vec<u8>> {
    seeds::text("sources")
}
fn t_name() -> Vec<Vec<u8>> {
    seeds::text("name")
}
fn stats_files() -> Vec<Vec<u8>> {
    seeds::proc_files("stats")
}
fn events_files() -> Vec<Vec<u8>> {
    seeds::proc_files("events")
}

/// Every target, in the order `scripts/fuzz` runs them.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "deb",
            what: "crawler .deb walker: control, verify, extract (ar, tar, gz/xz/zst)",
            run: deb,
            seeds: debs,
            max_len: 64 << 10,
        },
        Target {
            name: "bzimage",
            what: "donor bzImage → vmlinux (setup header, decompressors)",
            run: bzimage,
            seeds: bzimages,
            max_len: 64 << 10,
        },
        Target {
            name: "vmlinux",
            what: "donor vmlinux ELF: banner, release, exports, .BTF",
            run: vmlinux,
            seeds: elfs,
            max_len: 128 << 10,
        },
        Target {
            name: "arm64-image",
            what: "donor raw arm64 Image: banner, .BTF and export table found by content",
            run: arm64_image,
            seeds: seeds::arm64_images,
            max_len: 64 << 10,
        },
        Target {
            name: "btf",
            what: "donor BTF reader and its queries",
            run: btf,
            seeds: btfs,
            max_len: 16 << 10,
        },
        Target {
            name: "ko",
            what: "donor .ko reader (modinfo, __versions, ext versions)",
            run: ko,
            seeds: elfs,
            max_len: 128 << 10,
        },
        Target {
            name: "symvers",
            what: "donor Module.symvers parser",
            run: symvers,
            seeds: t_symvers,
            max_len: 8 << 10,
        },
        Target {
            name: "config",
            what: "donor kernel .config parser",
            run: config,
            seeds: t_config,
            max_len: 8 << 10,
        },
        Target {
            name: "packages",
            what: "crawler Packages (deb822) parser and entry checks",
            run: packages,
            seeds: t_packages,
            max_len: 16 << 10,
        },
        Target {
            name: "release",
            what: "crawler Release/InRelease parser, dates, clearsigned verification",
            run: release,
            seeds: t_release,
            max_len: 16 << 10,
        },
        Target {
            name: "sources",
            what: "crawler apt sources (deb822 and one-line)",
            run: sources,
            seeds: t_sources,
            max_len: 8 << 10,
        },
        Target {
            name: "keyring",
            what: "crawler OpenPGP keyring loader",
            run: keyring,
            seeds: seeds::keyrings,
            max_len: 64 << 10,
        },
        Target {
            name: "record-json",
            what: "metadata-db record JSON, validation, encoding",
            run: record_json,
            seeds: seeds::small_record_json,
            max_len: 64 << 10,
        },
        Target {
            name: "store",
            what: "metadata-db store image decoder",
            run: store,
            seeds: seeds::store_images,
            max_len: 64 << 10,
        },
        Target {
            name: "bundle",
            what: "metadata-db bundle reader",
            run: bundle,
            seeds: seeds::bundles,
            max_len: 256 << 10,
        },
        Target {
            name: "proc-stats",
            what: "procview /proc/kmlink/stats parser",
            run: proc_stats,
            seeds: stats_files,
            max_len: 16 << 10,
        },
        Target {
            name: "proc-events",
            what: "procview /proc/kmlink/events parser",
            run: proc_events,
            seeds: events_files,
            max_len: 16 << 10,
        },
        Target {
            name: "proc-name",
            what: "procview escaped process names",
            run: proc_name,
            seeds: t_name,
            max_len: 1 << 10,
        },
    ]
}
