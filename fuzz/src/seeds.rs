//! Seed inputs: the repository's fixtures (cut down where they are large)
//! and small well-formed examples of each format built here.

use std::io::Write;
use std::path::{Path, PathBuf};

use kmlink_metadata_db::record::KernelRecord;

/// The repository's root (seeds read its fixtures).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn fixture(rel: &str) -> Option<Vec<u8>> {
    std::fs::read(repo_root().join(rel)).ok()
}

const RECORDS: [&str; 3] = [
    "linker/tests/fixtures/6.1.0-47-amd64.json",
    "linker/tests/fixtures/6.12.107+deb13-amd64.json",
    "linker/tests/fixtures/7.3.4+deb13-amd64.json",
];

/// Cut every JSON array and object to its first `keep` items.
fn shrink(v: &mut serde_json::Value, keep: usize) {
    match v {
        serde_json::Value::Array(a) => {
            a.truncate(keep);
            a.iter_mut().for_each(|x| shrink(x, keep));
        }
        serde_json::Value::Object(o) => {
            if o.len() > keep {
                let drop: Vec<String> = o.keys().skip(keep).cloned().collect();
                for k in drop {
                    o.remove(&k);
                }
            }
            o.values_mut().for_each(|x| shrink(x, keep));
        }
        _ => {}
    }
}

/// The fixture records with every map and list cut to a few entries (a
/// fuzzer mutates kilobytes, not megabytes), as JSON.
pub fn small_record_json() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for rel in RECORDS {
        let Some(bytes) = fixture(rel) else { continue };
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        // Keep the schema's nested objects whole where they are small.
        if let Some(o) = v.as_object_mut() {
            for key in [
                "exports",
                "layouts",
                "tracepoints",
                "functions",
                "config",
                "provenance",
            ] {
                if let Some(x) = o.get_mut(key) {
                    shrink(x, 6);
                }
            }
        }
        if let Ok(j) = serde_json::to_vec_pretty(&v) {
            out.push(j);
        }
    }
    out
}

/// [`small_record_json`] decoded.
pub fn small_records() -> Vec<KernelRecord> {
    small_record_json()
        .iter()
        .filter_map(|j| serde_json::from_slice(j).ok())
        .collect()
}

/// Store images (both encodings) of the small records.
pub fn store_images() -> Vec<Vec<u8>> {
    let recs = small_records();
    let mut out = Vec::new();
    if let Ok(img) = kmlink_metadata_db::image::Image::rebuild(&recs) {
        out.push(img.encode_store());
        out.push(img.encode());
    }
    if let Some(r) = recs.first() {
        if let Ok(img) = kmlink_metadata_db::image::Image::rebuild(std::slice::from_ref(r)) {
            out.push(img.encode_store());
        }
    }
    out
}

/// Bundles: of the small records, of one record, and the built-in ones.
pub fn bundles() -> Vec<Vec<u8>> {
    let recs = small_records();
    let mut out = Vec::new();
    if let Ok(b) = kmlink_metadata_db::bundle::export(&recs, None, None) {
        out.push(b);
    }
    if let Some(r) = recs.first() {
        if let Ok(b) = kmlink_metadata_db::bundle::export(std::slice::from_ref(r), None, None) {
            out.push(b);
        }
    }
    out.extend(fixture("metadata-db/bundles/amd64.kmb"));
    out.extend(fixture("metadata-db/bundles/arm64.kmb"));
    out
}

/// The checked-in core object (a relocatable ELF with modinfo, versions).
pub fn elf_objects() -> Vec<Vec<u8>> {
    fixture("linker/tests/fixtures/core/kmlink-core.o")
        .into_iter()
        .collect()
}

fn tar_of(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let _ = b.append_data(&mut h, path, *data);
    }
    for (path, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o777);
        h.set_entry_type(tar::EntryType::Symlink);
        let _ = b.append_link(&mut h, path, target);
    }
    b.into_inner().unwrap_or_default()
}

/// Compress `data` as a `.deb` member named `*.tar{ext}` says.
pub fn compress(data: &[u8], ext: &str) -> Vec<u8> {
    match ext {
        ".gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = e.write_all(data);
            e.finish().unwrap_or_default()
        }
        ".xz" => {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
            let _ = e.write_all(data);
            e.finish().unwrap_or_default()
        }
        ".zst" => zstd::bulk::compress(data, 1).unwrap_or_default(),
        _ => data.to_vec(),
    }
}

/// An `ar` archive of `members` in order.
pub fn ar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = ar::Builder::new(Vec::new());
    for (name, data) in members {
        let h = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
        let _ = b.append(&h, data.as_slice());
    }
    b.into_inner().unwrap_or_default()
}

/// A small well-formed `.deb` whose members use `ext` compression.
pub fn deb(ext: &str) -> Vec<u8> {
    let control = tar_of(
        &[(
            "./control",
            b"Package: linux-image-6.1.0-47-amd64\nVersion: 6.1.158-1\nArchitecture: amd64\nDescription: x\n",
        )],
        &[],
    );
    let data = tar_of(
        &[
            (
                "./boot/config-6.1.0-47-amd64",
                b"CONFIG_MODVERSIONS=y\nCONFIG_SMP=y\n",
            ),
            ("./boot/vmlinuz-6.1.0-47-amd64", b"MZ not really a kernel"),
            (
                "./usr/lib/modules/6.1.0-47-amd64/modules.order",
                b"kernel/x.ko\n",
            ),
        ],
        &[("./lib/link", "../usr/lib")],
    );
    ar_of(&[
        ("debian-binary", b"2.0\n".to_vec()),
        (&format!("control.tar{ext}"), compress(&control, ext)),
        (&format!("data.tar{ext}"), compress(&data, ext)),
    ])
}

/// `.deb` seeds: every compression the walker decodes.
pub fn debs() -> Vec<Vec<u8>> {
    ["", ".gz", ".xz", ".zst"].iter().map(|e| deb(e)).collect()
}

/// A minimal bzImage (boot protocol 2.15) carrying `payload` compressed
/// with `codec` ("gz", "xz", "zst"), size trailer appended as the kernel's
/// Makefile does.
pub fn bzimage(payload: &[u8], codec: &str) -> Vec<u8> {
    let setup_sects = 1u8;
    let mut img = vec![0u8; (usize::from(setup_sects) + 1) * 512];
    img[0x1f1] = setup_sects;
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    let mut comp = match codec {
        "gz" => compress(payload, ".gz"),
        "xz" => compress(payload, ".xz"),
        _ => compress(payload, ".zst"),
    };
    if codec != "gz" {
        comp.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    }
    let off = 0x40u32;
    img[0x248..0x24c].copy_from_slice(&off.to_le_bytes());
    img[0x24c..0x250].copy_from_slice(&(comp.len() as u32).to_le_bytes());
    img.resize(img.len() + off as usize, 0);
    img.extend_from_slice(&comp);
    img
}

/// bzImage seeds around a small ELF.
pub fn bzimages() -> Vec<Vec<u8>> {
    let elf = elf_objects()
        .into_iter()
        .next()
        .unwrap_or_else(|| b"\x7fELF".to_vec());
    let elf = &elf[..elf.len().min(8192)];
    ["gz", "xz", "zst"]
        .iter()
        .map(|c| bzimage(elf, c))
        .collect()
}

struct BtfWriter {
    types: Vec<u8>,
    strings: Vec<u8>,
}

impl BtfWriter {
    fn s(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }
    fn ty(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32) {
        let n = self.s(name);
        for w in [n, (kind << 24) | vlen, size_or_type] {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
    }
    fn u32s(&mut self, ws: &[u32]) {
        for w in ws {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
    }
}

/// A small BTF blob: int, char, pointer, arrays, a struct with nested
/// members, typedef, const, a function with its prototype, an enum, a
/// tracepoint-style `btf_trace_*` typedef and a per-CPU variable.
pub fn btf() -> Vec<u8> {
    let mut w = BtfWriter {
        types: Vec::new(),
        strings: vec![0],
    };
    w.ty("int", 1, 0, 4); // 1
    w.u32s(&[(1 << 24) | 32]);
    w.ty("char", 1, 0, 1); // 2
    w.u32s(&[(1 << 24) | 8]);
    w.ty("", 2, 0, 4); // 3: ptr to struct task_struct
    w.ty("", 3, 0, 0); // 4: array char[16]
    w.u32s(&[2, 1, 16]);
    w.ty("task_struct", 4, 3, 64); // 5
    let (pid, comm, parent) = (w.s("pid"), w.s("comm"), w.s("parent"));
    w.u32s(&[pid, 1, 0, comm, 4, 32, parent, 3, 256]);
    w.ty("pid_t", 8, 0, 1); // 6 typedef
    w.ty("", 10, 0, 5); // 7 const struct task_struct
    w.ty("", 13, 2, 1); // 8 func proto int (int a, const task_struct *)
    let (a, b) = (w.s("a"), w.s("b"));
    w.u32s(&[a, 1, b, 3]);
    w.ty("do_thing", 12, 1, 8); // 9 func
    w.ty("state", 6, 2, 4); // 10 enum
    let (x, y) = (w.s("X"), w.s("Y"));
    w.u32s(&[x, 0, y, 1]);
    w.ty("", 2, 0, 8); // 11 ptr to proto
    w.ty("btf_trace_kmalloc", 8, 0, 11); // 12
    w.ty("runqueues", 14, 0, 1); // 13 var
    w.u32s(&[1]);
    w.ty(".data..percpu", 15, 1, 4); // 14 datasec
    w.u32s(&[13, 0, 4]);
    w.ty("kprobe", 4, 1, 8); // 15
    let addr = w.s("addr");
    w.u32s(&[addr, 11, 0]);
    w.ty("union_u", 5, 2, 8); // 16 union
    let (u1, u2) = (w.s("u1"), w.s("u2"));
    w.u32s(&[u1, 1, 0, u2, 11, 0]);
    w.ty("task_struct", 7, 0, 0); // 17 fwd
    let mut out = Vec::new();
    out.extend_from_slice(&0xeb9fu16.to_le_bytes());
    out.extend_from_slice(&[1, 0]);
    let tl = w.types.len() as u32;
    let sl = w.strings.len() as u32;
    for v in [24u32, 0, tl, tl, sl] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&w.types);
    out.extend_from_slice(&w.strings);
    out
}

/// Raw arm64 Images: the header's magic, a BTF blob, a banner, then an
/// export table of 1000 entries (the fewest the reader accepts) with its
/// strings, in 6.x's layout (two tables, CRCs) and 7.x's (`__kflagstab`,
/// no CRCs).
pub fn arm64_images() -> Vec<Vec<u8>> {
    const N: usize = 1000;
    [true, false]
        .into_iter()
        .map(|six| {
            let mut img = vec![0u8; 64];
            img[0x38..0x3c].copy_from_slice(b"ARM\x64");
            img.extend_from_slice(&btf());
            img.extend_from_slice(b"\0Linux version 6.1.0-47-arm64 (x) #1 SMP Debian\n\0");
            while !img.len().is_multiple_of(4) {
                img.push(0);
            }
            let tab = img.len();
            let after = tab + 12 * N + if six { 0 } else { N };
            let crcs = after.next_multiple_of(4);
            let strings = if six { crcs + 4 * N } else { after };
            img.resize(strings, 0);
            // Names sorted within each table: 6.x's second half is GPL-only.
            for i in 0..N {
                let at = tab + 12 * i;
                let name = strings + (img.len() - strings);
                img.extend_from_slice(format!("s{i:04}\0").as_bytes());
                let value = 0x40i64 - at as i64;
                let rel = name as i64 - (at + 4) as i64;
                img[at..at + 4].copy_from_slice(&(value as i32).to_le_bytes());
                img[at + 4..at + 8].copy_from_slice(&(rel as i32).to_le_bytes());
                if six {
                    let c = crcs + 4 * i;
                    img[c..c + 4].copy_from_slice(&(0x1000 + i as u32).to_le_bytes());
                } else {
                    img[after - N + i] = u8::from(i.is_multiple_of(2));
                }
            }
            if six {
                // Two sorted runs: the second half's names restart at s0000.
                for i in N / 2..N {
                    let at = tab + 12 * i;
                    let target = strings + 6 * (i - N / 2);
                    let rel = target as i64 - (at + 4) as i64;
                    img[at + 4..at + 8].copy_from_slice(&(rel as i32).to_le_bytes());
                }
            }
            img
        })
        .collect()
}

/// Text seeds by target.
pub fn text(kind: &str) -> Vec<Vec<u8>> {
    let v: Vec<&str> = match kind {
        "symvers" => vec![
            "0x3c3ff9fd\tsprint_symbol\tvmlinux\tEXPORT_SYMBOL\t\n0x00000000\tkmalloc_caches\tvmlinux\tEXPORT_SYMBOL_GPL\tNS\n",
            "0x12345678\tfoo\tNS\tdrivers/x\tEXPORT_SYMBOL\n",
        ],
        "packages" => vec![
            "Package: linux-image-6.1.0-47-amd64\nSource: linux-signed-amd64 (6.1.158+1)\nVersion: 6.1.158-1\nArchitecture: amd64\nFilename: pool/main/l/linux-signed-amd64/linux-image-6.1.0-47-amd64_6.1.158-1_amd64.deb\nSize: 69012345\nSHA256: 0ab746a3d854ad0e666923147842d1e629cdb3e29a97b76ae25b4911285174e4\nDescription: Linux 6.1\n continued\n .\n\nPackage: linux-headers-6.1.0-47-amd64\nVersion: 6.1.158-1\nArchitecture: amd64\nFilename: pool/main/l/linux/linux-headers-6.1.0-47-amd64_6.1.158-1_amd64.deb\nSize: 1234\nSHA256: 108e1c0e8e36a5cb13d62fc3f03c05f23448b7801657553c6e9880591c4f97d3\n",
        ],
        "release" => vec![
            "Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 11 Oct 2025 09:31:22 UTC\nValid-Until: Sat, 18 Oct 2025 09:31:22 UTC\nArchitectures: all amd64 arm64\nComponents: main contrib\nSHA256:\n 0ab746a3d854ad0e666923147842d1e629cdb3e29a97b76ae25b4911285174e4 1234 main/binary-amd64/Packages\n 108e1c0e8e36a5cb13d62fc3f03c05f23448b7801657553c6e9880591c4f97d3 567 main/binary-amd64/Packages.xz\n",
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\nSuite: stable\nDate: Sat, 11 Oct 2025 09:31:22 UTC\nSHA256:\n 0ab746a3d854ad0e666923147842d1e629cdb3e29a97b76ae25b4911285174e4 1234 main/binary-amd64/Packages\n-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEEAAAAAAAAAAAAAAAAAAAAAAAAAAAFAmXyAAAACgkQAAAAAAAA\nAAAAAA==\n=AAAA\n-----END PGP SIGNATURE-----\n",
        ],
        "sources" => vec![
            "Types: deb deb-src\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n# comment\nTypes: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\nEnabled: yes\n",
            "deb [arch=amd64 signed-by=/k.gpg] http://deb.example/debian bookworm main contrib\n# deb-src x y\ndeb http://deb.example/debian bookworm-updates main\n",
        ],
        "config" => vec!["# comment\nCONFIG_SMP=y\nCONFIG_NR_CPUS=8192\n# CONFIG_FOO is not set\nCONFIG_LOCALVERSION=\"-amd64\"\n"],
        "name" => vec!["bash", "kworker/0:1", "a\\x20b\\\\c", "\\x00\\xff"],
        _ => vec![],
    };
    v.into_iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// The `/proc/kmlink` fixtures of procview (`stats` or `events`).
pub fn proc_files(name: &str) -> Vec<Vec<u8>> {
    ["busy-1", "busy-2", "today"]
        .iter()
        .filter_map(|d| fixture(&format!("procview/tests/fixtures/{d}/kmlink/{name}")))
        .collect()
}

/// Keyring seeds: an armoured block of garbage, a binary packet header,
/// and the Debian archive keyring when this system has it.
pub fn keyrings() -> Vec<Vec<u8>> {
    let mut out = vec![
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD6K87fM3Pg\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n".to_vec(),
        vec![0x99, 0x00, 0x0d, 0x04, 0x5c, 0x00, 0x00, 0x00, 0x16, 0x09, 0x2b, 0x06, 0x01],
    ];
    out.extend(std::fs::read(
        "/usr/share/keyrings/debian-archive-bookworm-stable.gpg",
    ));
    out
}
