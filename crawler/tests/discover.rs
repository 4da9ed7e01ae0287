//! Discovery, trust chain and materialize over fixture archives served by a
//! local HTTP server: every package layout (Debian 6.1, 6.12, 6.16, 6.19+
//! with and without its modules, Ubuntu), signed `InRelease` files (test key
//! made here), bad signatures and bad index hashes.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{clearsign, compress, deb_bytes, sha256, test_key, Ent, Server};
use kmlink_crawler::cache::Cache;
use kmlink_crawler::discover::{self, Distro, KernelInfo, Layout, Origin};
use kmlink_crawler::index::PackageEntry;
use kmlink_crawler::kernel_tree::{self, PinnedKernel};
use kmlink_crawler::sources::Mirrors;
use kmlink_crawler::{Error, Http};

fn http() -> Http {
    Http::new()
        .unwrap()
        .with_retry_delay(Duration::from_millis(5))
}

/// A package of the fixture archive: its index entry and its bytes.
struct Pkg {
    entry: PackageEntry,
    body: Vec<u8>,
}

fn pkg(name: &str, version: &str, depends: &str, ext: &str, data: &[Ent]) -> Pkg {
    let body = deb_bytes(ext, data);
    let filename = format!("pool/main/l/linux/{name}_{version}_amd64.deb");
    Pkg {
        entry: PackageEntry {
            package: name.into(),
            version: version.into(),
            filename,
            size: body.len() as u64,
            sha256: sha256(&body),
            depends: depends.into(),
            source: Some("linux".into()),
        },
        body,
    }
}

fn f(path: String, data: &'static [u8]) -> (String, &'static [u8]) {
    (path, data)
}

fn deb(name: &str, version: &str, depends: &str, ext: &str, files: &[(String, &[u8])]) -> Pkg {
    let ents: Vec<Ent> = files.iter().map(|(p, d)| Ent::File(p, d)).collect();
    pkg(name, version, depends, ext, &ents)
}

/// Debian 6.1 layout: unsigned + signed image (vmlinuz, config, lib/modules
/// .ko), headers with Module.symvers, -common headers, dbg and meta noise.
fn debian_6_1() -> Vec<Pkg> {
    let rel = "9.1.0-3-amd64";
    let v = "9.1.17-1";
    let image_files = vec![
        f(format!("./boot/vmlinuz-{rel}"), b"unsigned vmlinuz 6.1"),
        f(format!("./boot/config-{rel}"), b"CONFIG_X=y\n"),
        f(format!("./lib/modules/{rel}/kernel/fs/a.ko"), b"\x7fELF a"),
    ];
    vec![
        deb(
            &format!("linux-image-{rel}-unsigned"),
            v,
            "kmod",
            "xz",
            &image_files,
        ),
        deb(
            &format!("linux-image-{rel}"),
            v,
            "kmod",
            "xz",
            &[f(format!("./boot/vmlinuz-{rel}"), b"signed vmlinuz 6.1")],
        ),
        deb(
            &format!("linux-headers-{rel}"),
            v,
            "linux-headers-9.1.0-3-common (= 9.1.17-1)",
            "xz",
            &[f(
                format!("./usr/src/linux-headers-{rel}/Module.symvers"),
                b"0x1\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n",
            )],
        ),
        deb("linux-headers-9.1.0-3-common", v, "", "xz", &[]),
        deb(&format!("linux-image-{rel}-dbg"), v, "", "xz", &[]),
        deb(
            "linux-image-amd64",
            v,
            &format!("linux-image-{rel}"),
            "xz",
            &[],
        ),
    ]
}

/// Debian 6.12 layout: modules under usr/lib/modules as .ko.xz.
fn debian_6_12() -> Vec<Pkg> {
    let rel = "9.12.7+deb13-cloud-amd64";
    let v = "9.12.7-1";
    vec![
        deb(
            &format!("linux-image-{rel}-unsigned"),
            v,
            "kmod",
            "xz",
            &[
                f(format!("./boot/vmlinuz-{rel}"), b"vmlinuz 6.12"),
                f(format!("./boot/config-{rel}"), b"CONFIG_Y=y\n"),
                f(
                    format!("./usr/lib/modules/{rel}/kernel/b.ko.xz"),
                    b"xz module",
                ),
            ],
        ),
        deb(&format!("linux-image-{rel}"), v, "kmod", "xz", &[]),
        deb(
            &format!("linux-headers-{rel}"),
            v,
            "",
            "zst",
            &[f(
                format!("./usr/src/linux-headers-{rel}/Module.symvers"),
                b"0x2\tkfree\tvmlinux\tEXPORT_SYMBOL\t\n",
            )],
        ),
        deb(
            "linux-image-9.12-cloud-amd64",
            v,
            &format!("linux-image-{rel}"),
            "xz",
            &[],
        ),
    ]
}

/// Debian 6.16 layout: one signed image with everything, headers gone.
fn debian_6_16() -> Vec<Pkg> {
    let rel = "9.16.3+deb13-rt-amd64";
    vec![deb(
        &format!("linux-image-{rel}"),
        "9.16.3-1~bpo13+1",
        "kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool",
        "zst",
        &[
            f(format!("./boot/vmlinuz-{rel}"), b"signed vmlinuz 6.16"),
            f(format!("./boot/config-{rel}"), b"CONFIG_Z=y\n"),
            f(
                format!("./usr/lib/modules/{rel}/kernel/c.ko.xz"),
                b"xz module",
            ),
        ],
    )]
}

/// Debian 7.x layout: meta image → binary + modules + base; headers.
fn debian_7(rel: &str, with_parts: bool) -> Vec<Pkg> {
    let v = "9.3.4-1~bpo13+1";
    let dep = |n: &str| format!("{n}-{rel} (= {v})");
    let meta_dep = format!(
        "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, {}, {}, {}",
        dep("linux-base"),
        dep("linux-binary"),
        dep("linux-modules")
    );
    let mut out = vec![
        deb(&format!("linux-image-{rel}"), v, &meta_dep, "xz", &[]),
        deb(
            &format!("linux-binary-{rel}"),
            v,
            &dep("linux-base"),
            "xz",
            &[f(format!("./usr/lib/modules/{rel}/vmlinuz"), b"vmlinuz 7")],
        ),
    ];
    if with_parts {
        out.push(deb(
            &format!("linux-modules-{rel}"),
            v,
            &format!("kmod, {}", dep("linux-base")),
            "xz",
            &[
                f(
                    format!("./usr/lib/modules/{rel}/kernel/d.ko.xz"),
                    b"xz module",
                ),
                f(
                    format!("./usr/lib/modules/{rel}/modules.order"),
                    b"kernel/d.ko\n",
                ),
            ],
        ));
        out.push(deb(
            &format!("linux-base-{rel}"),
            v,
            "",
            "xz",
            &[
                f(format!("./usr/lib/modules/{rel}/config"), b"CONFIG_W=y\n"),
                f(
                    format!("./usr/lib/modules/{rel}/System.map"),
                    b"0 T _text\n",
                ),
            ],
        ));
        out.push(deb(
            &format!("linux-headers-{rel}"),
            v,
            "",
            "xz",
            &[f(
                format!("./usr/src/linux-headers-{rel}/Module.symvers"),
                b"0x3\tvfree\tvmlinux\tEXPORT_SYMBOL\t\n",
            )],
        ));
    }
    out
}

/// Ubuntu layout: signed + unsigned image, modules (.ko.zst, config in
/// /boot), headers; all data.tar.zst.
fn ubuntu() -> Vec<Pkg> {
    let rel = "9.8.0-49-generic";
    let v = "9.8.0-49.49";
    vec![
        deb(
            &format!("linux-image-{rel}"),
            v,
            "",
            "zst",
            &[f(format!("./boot/vmlinuz-{rel}"), b"signed ubuntu")],
        ),
        deb(
            &format!("linux-image-unsigned-{rel}"),
            v,
            "",
            "zst",
            &[f(format!("./boot/vmlinuz-{rel}"), b"unsigned ubuntu")],
        ),
        deb(
            &format!("linux-modules-{rel}"),
            v,
            "",
            "zst",
            &[
                f(format!("./boot/config-{rel}"), b"CONFIG_U=y\n"),
                f(format!("./boot/System.map-{rel}"), b"0 T _text\n"),
                f(
                    format!("./lib/modules/{rel}/kernel/e.ko.zst"),
                    b"zstd module",
                ),
            ],
        ),
        deb(&format!("linux-modules-extra-{rel}"), v, "", "zst", &[]),
        deb(
            &format!("linux-headers-{rel}"),
            v,
            "linux-headers-9.8.0-49",
            "zst",
            &[f(
                format!("./usr/src/linux-headers-{rel}/Module.symvers"),
                b"0x4\tkmalloc\tvmlinux\tEXPORT_SYMBOL\t\n",
            )],
        ),
        deb("linux-headers-9.8.0-49", v, "", "zst", &[]),
        deb(
            "linux-image-generic",
            v,
            &format!("linux-image-{rel}"),
            "zst",
            &[],
        ),
    ]
}

fn packages_text(pkgs: &[Pkg]) -> String {
    pkgs.iter()
        .map(|p| {
            let e = &p.entry;
            format!(
                "Package: {}\nSource: linux\nVersion: {}\nArchitecture: amd64\nDepends: {}\nDescription: x\n more\nFilename: {}\nSize: {}\nSHA256: {}\n",
                e.package, e.version, e.depends, e.filename, e.size, e.sha256
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn entries(pkgs: &[Pkg]) -> Vec<PackageEntry> {
    pkgs.iter().map(|p| p.entry.clone()).collect()
}

fn names(pin: &PinnedKernel) -> Vec<&str> {
    pin.packages.iter().map(|p| p.package.as_str()).collect()
}

fn one<'a>(ks: &'a [(PinnedKernel, KernelInfo)], rel: &str) -> &'a (PinnedKernel, KernelInfo) {
    ks.iter()
        .find(|k| k.1.release == rel)
        .unwrap_or_else(|| panic!("{rel} not found"))
}

#[test]
fn assembles_every_debian_layout() {
    let mut all = debian_6_1();
    all.extend(debian_6_12());
    all.extend(debian_6_16());
    all.extend(debian_7("9.3.4+deb13-amd64", true));
    all.extend(debian_7("9.19.6+deb13-amd64", false));
    let ks = discover::kernels_in_index(Distro::Debian, "sid", "archive", &entries(&all));
    let rels: Vec<&str> = ks.iter().map(|k| k.1.release.as_str()).collect();
    assert_eq!(
        rels,
        [
            "9.1.0-3-amd64",
            "9.3.4+deb13-amd64",
            "9.12.7+deb13-cloud-amd64",
            "9.16.3+deb13-rt-amd64",
            "9.19.6+deb13-amd64"
        ]
    );

    let (pin, i) = one(&ks, "9.1.0-3-amd64");
    assert_eq!(
        names(pin),
        [
            "linux-image-9.1.0-3-amd64-unsigned",
            "linux-headers-9.1.0-3-amd64"
        ]
    );
    assert_eq!(i.layout, Layout::Image);
    assert!(!i.signed);
    assert_eq!(i.flavour, "amd64");
    assert_eq!(
        i.config.as_deref(),
        Some("linux-image-9.1.0-3-amd64-unsigned")
    );
    assert_eq!(i.symvers.as_deref(), Some("linux-headers-9.1.0-3-amd64"));
    // The signed image is the unsigned one's twin, fetched if its file is
    // gone from the pool.
    let fallbacks: Vec<&str> = pin.fallbacks.iter().map(|p| p.package.as_str()).collect();
    assert_eq!(fallbacks, ["linux-image-9.1.0-3-amd64"]);
    assert_eq!(
        kernel_tree::fallback_for(&pin.packages[0], &pin.fallbacks).map(|p| p.package.as_str()),
        Some("linux-image-9.1.0-3-amd64")
    );
    assert!(kernel_tree::fallback_for(&pin.packages[1], &pin.fallbacks).is_none());

    let (_, i) = one(&ks, "9.12.7+deb13-cloud-amd64");
    assert_eq!(i.flavour, "cloud-amd64");
    assert_eq!(i.vmlinuz, "linux-image-9.12.7+deb13-cloud-amd64-unsigned");

    let (pin, i) = one(&ks, "9.16.3+deb13-rt-amd64");
    assert_eq!(names(pin), ["linux-image-9.16.3+deb13-rt-amd64"]);
    assert!(pin.fallbacks.is_empty(), "the signed image has no twin");
    assert!(i.signed);
    assert_eq!(i.symvers, None);
    assert_eq!(
        i.modules.as_deref(),
        Some("linux-image-9.16.3+deb13-rt-amd64")
    );

    let (pin, i) = one(&ks, "9.3.4+deb13-amd64");
    assert_eq!(i.layout, Layout::Split);
    assert_eq!(
        names(pin),
        [
            "linux-binary-9.3.4+deb13-amd64",
            "linux-modules-9.3.4+deb13-amd64",
            "linux-base-9.3.4+deb13-amd64",
            "linux-headers-9.3.4+deb13-amd64"
        ]
    );
    assert_eq!(i.config.as_deref(), Some("linux-base-9.3.4+deb13-amd64"));
    assert!(i.missing.is_empty());

    let (pin, i) = one(&ks, "9.19.6+deb13-amd64");
    assert_eq!(names(pin), ["linux-binary-9.19.6+deb13-amd64"]);
    assert_eq!(i.modules, None);
    assert_eq!(i.config, None);
    assert_eq!(
        i.missing,
        [
            "linux-modules-9.19.6+deb13-amd64",
            "linux-base-9.19.6+deb13-amd64"
        ]
    );
}

#[test]
fn assembles_ubuntu_layout() {
    let ks = discover::kernels_in_index(Distro::Ubuntu, "noble", "archive", &entries(&ubuntu()));
    assert_eq!(ks.len(), 1);
    let (pin, i) = &ks[0];
    assert_eq!(i.release, "9.8.0-49-generic");
    assert_eq!(i.flavour, "generic");
    assert_eq!(i.layout, Layout::Ubuntu);
    assert_eq!(
        names(pin),
        [
            "linux-image-unsigned-9.8.0-49-generic",
            "linux-modules-9.8.0-49-generic",
            "linux-headers-9.8.0-49-generic"
        ]
    );
    assert_eq!(i.config.as_deref(), Some("linux-modules-9.8.0-49-generic"));
    assert_eq!(
        kernel_tree::fallback_for(&pin.packages[0], &pin.fallbacks).map(|p| p.package.as_str()),
        Some("linux-image-9.8.0-49-generic")
    );
}

#[test]
fn newest_build_wins_across_suites() {
    let old = debian_6_1();
    let mut newer = debian_6_1();
    for p in &mut newer {
        p.entry.version = "9.1.17-2".into();
        p.entry.sha256 = "b".repeat(64);
    }
    let mut ks = discover::kernels_in_index(Distro::Debian, "bookworm", "archive", &entries(&old));
    ks.extend(discover::kernels_in_index(
        Distro::Debian,
        "bookworm-security",
        "security",
        &entries(&newer),
    ));
    ks.extend(discover::kernels_in_index(
        Distro::Debian,
        "bookworm-updates",
        "archive",
        &entries(&old),
    ));
    let m = discover::merge(ks);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].1.suite, "bookworm-security");
    assert_eq!(m[0].1.version, "9.1.17-2");
    assert_eq!(m[0].1.also_in, ["bookworm", "bookworm-updates"]);
}

/// Routes of one suite: a signed InRelease, the Packages.xz (by hash and by
/// name) and every package file.
fn suite_routes(
    key: &pgp::composed::SignedSecretKey,
    suite: &str,
    component_pkgs: &[(&str, &[Pkg])],
    by_hash: bool,
) -> Vec<(String, Vec<common::Reply>)> {
    suite_routes_until(key, suite, component_pkgs, by_hash, None)
}

/// [`suite_routes`] whose InRelease carries `Valid-Until: valid_until`.
fn suite_routes_until(
    key: &pgp::composed::SignedSecretKey,
    suite: &str,
    component_pkgs: &[(&str, &[Pkg])],
    by_hash: bool,
    valid_until: Option<&str>,
) -> Vec<(String, Vec<common::Reply>)> {
    suite_routes_arches(
        key,
        suite,
        &[("amd64", component_pkgs)],
        by_hash,
        valid_until,
    )
}

/// Packages per component (`main`, ...).
type Components<'a> = &'a [(&'a str, &'a [Pkg])];

/// [`suite_routes_until`] with one index per architecture.
fn suite_routes_arches(
    key: &pgp::composed::SignedSecretKey,
    suite: &str,
    arch_pkgs: &[(&str, Components<'_>)],
    by_hash: bool,
    valid_until: Option<&str>,
) -> Vec<(String, Vec<common::Reply>)> {
    let mut routes = Vec::new();
    let mut sums = String::new();
    for (arch, component_pkgs) in arch_pkgs {
        for (component, pkgs) in component_pkgs.iter() {
            let index = format!("{component}/binary-{arch}");
            let text = packages_text(pkgs);
            let xz = compress("xz", text.as_bytes());
            sums.push_str(&format!(
                " {} {} {index}/Packages.xz\n {} {} {index}/Packages\n",
                sha256(&xz),
                xz.len(),
                sha256(text.as_bytes()),
                text.len()
            ));
            routes.push((
                format!("dists/{suite}/{index}/by-hash/SHA256/{}", sha256(&xz)),
                vec![(200, xz.clone())],
            ));
            routes.push((
                format!("dists/{suite}/{index}/Packages.xz"),
                vec![(200, xz)],
            ));
            for p in pkgs.iter() {
                routes.push((p.entry.filename.clone(), vec![(200, p.body.clone())]));
            }
        }
    }
    let arches: Vec<&str> = arch_pkgs.iter().map(|(a, _)| *a).collect();
    let release = format!(
        "Origin: Test\nLabel: Test\nSuite: {suite}\nCodename: {suite}\nDate: Sat, 21 Nov 2026 00:00:00 UTC\n{}Acquire-By-Hash: {}\nArchitectures: {}\nComponents: main\nSHA256:\n{sums}",
        valid_until.map_or(String::new(), |v| format!("Valid-Until: {v}\n")),
        if by_hash { "yes" } else { "no" },
        arches.join(" ")
    );
    routes.push((
        format!("dists/{suite}/InRelease"),
        vec![(200, clearsign(key, &release).into_bytes())],
    ));
    routes
}

fn serve(routes: Vec<(String, Vec<common::Reply>)>) -> Server {
    Server::start(
        routes
            .iter()
            .map(|(p, r)| (p.as_str(), r.clone()))
            .collect(),
        200,
    )
}

/// A signing key for `uid`, and its public key written as `name` in a new
/// temporary directory (kept alive by the returned handle).
fn keyring_in_tempdir(
    uid: &str,
    name: &str,
) -> (
    pgp::composed::SignedSecretKey,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let (key, public) = test_key(uid);
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join(name);
    std::fs::write(&keyring, &public).unwrap();
    (key, dir, keyring)
}

fn origin(distro: Distro, base: &str, keyring: &std::path::Path) -> Origin {
    Origin::new(
        distro,
        Mirrors::explicit(base, Some(base)),
        Some(keyring.to_owned()),
    )
}

#[test]
fn discovers_verifies_and_materializes_every_layout() {
    let (key, dir, keyring) =
        keyring_in_tempdir("Test Archive <archive@example.invalid>", "keyring.gpg");

    let mut main = debian_6_1();
    main.extend(debian_6_12());
    main.extend(debian_6_16());
    main.extend(debian_7("9.3.4+deb13-amd64", true));
    main.extend(debian_7("9.19.6+deb13-amd64", false));
    let security = debian_6_12();
    let mut routes = suite_routes(&key, "sid", &[("main", &main)], true);
    routes.extend(suite_routes(
        &key,
        "trixie-security",
        &[("main", &security)],
        false,
    ));
    let server = serve(routes);

    let o = origin(Distro::Debian, &server.base, &keyring);
    let cache = Cache::new(dir.path().join("cache"));
    let http = http();
    let d = discover::discover(
        &http,
        Some(&cache),
        &o,
        &["sid".into(), "trixie-security".into()],
    );
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    assert_eq!(d.kernels.len(), 6);
    let paths = server.paths();
    assert!(
        paths
            .iter()
            .any(|p| p.contains("/sid/main/binary-amd64/by-hash/SHA256/")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("/trixie-security/main/binary-amd64/Packages.xz")),
        "{paths:?}"
    );
    // Verified indexes are cached by hash: a second run reads only InRelease.
    let before = server.hits();
    let again = discover::discover(&http, Some(&cache), &o, &["sid".into()]);
    assert_eq!(again.kernels.len(), 5);
    assert_eq!(server.hits(), before + 1);
    // So is the kernel packages' selection from each: a damaged or foreign
    // one is read again from the index (and rewritten), never trusted.
    let selections: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("cache/indexes"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".kernel-packages.json"))
        .collect();
    assert_eq!(selections.len(), 2, "{selections:?}");
    let releases = |d: &discover::Discovery| {
        let mut r: Vec<String> = d.kernels.iter().map(|k| k.1.release.clone()).collect();
        r.sort();
        r
    };
    let want = releases(&d);
    for damage in [
        &b"{not json"[..],
        br#"{"index_sha256":"0","selection":"kernel-packages","entries":[]}"#,
    ] {
        for p in &selections {
            std::fs::write(p, damage).unwrap();
        }
        let d2 = discover::discover(
            &http,
            Some(&cache),
            &o,
            &["sid".into(), "trixie-security".into()],
        );
        assert!(d2.errors.is_empty(), "{:?}", d2.errors);
        assert_eq!(releases(&d2), want);
    }
    for p in &selections {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(text.contains("\"entries\":[{"), "{}: {text}", p.display());
    }

    let merged = discover::merge(d.kernels);
    assert_eq!(merged.len(), 5);
    let k612 = one(&merged, "9.12.7+deb13-cloud-amd64");
    assert_eq!(k612.1.also_in, ["trixie-security"]);

    for (pin, info) in &merged {
        let tree = kernel_tree::materialize_with(&cache, &http, &o.mirrors, pin, 3)
            .unwrap_or_else(|e| panic!("{}: {e}", info.release));
        let vmlinuz = std::fs::read_to_string(&tree.vmlinuz).unwrap();
        assert!(vmlinuz.contains("vmlinuz"), "{}: {vmlinuz}", info.release);
        assert_eq!(
            tree.config.is_some(),
            info.config.is_some(),
            "{}",
            info.release
        );
        assert_eq!(
            tree.symvers.is_some(),
            info.symvers.is_some(),
            "{}",
            info.release
        );
        assert!(tree.modules_dir.is_dir());
        let has_ko = walk(&tree.modules_dir).iter().any(|p| p.contains(".ko"));
        assert_eq!(has_ko, info.modules.is_some(), "{}", info.release);
    }
    // The unsigned 6.1 image was preferred.
    let t = kernel_tree::materialize(&cache, &http, &o.mirrors, &one(&merged, "9.1.0-3-amd64").0)
        .unwrap();
    assert_eq!(std::fs::read(&t.vmlinuz).unwrap(), b"unsigned vmlinuz 6.1");
    assert!(t.modules_dir.ends_with("lib/modules/9.1.0-3-amd64"));
    let t = kernel_tree::materialize(
        &cache,
        &http,
        &o.mirrors,
        &one(&merged, "9.3.4+deb13-amd64").0,
    )
    .unwrap();
    assert!(t
        .vmlinuz
        .ends_with("usr/lib/modules/9.3.4+deb13-amd64/vmlinuz"));
    assert!(t
        .config
        .unwrap()
        .ends_with("usr/lib/modules/9.3.4+deb13-amd64/config"));

    // find_kernel searches every default suite: found in sid although the
    // other suites are missing from this server...
    let (pin, info) = discover::find_kernel(&http, &cache, &o, "9.16.3+deb13-rt-amd64")
        .unwrap()
        .unwrap();
    assert_eq!(info.suite, "sid");
    assert_eq!(names(&pin), ["linux-image-9.16.3+deb13-rt-amd64"]);
    // ... and an absent release is an error, since those suites could not
    // be read.
    let e = discover::find_kernel(&http, &cache, &o, "9.99.0+deb13-amd64").unwrap_err();
    assert!(
        kmlink_errors::chain(&e).contains("could not be read"),
        "{e}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn ubuntu_fixture_archive() {
    let (key, public) = test_key("Test Ubuntu <archive@example.invalid>");
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("ubuntu.asc");
    // An armoured keyring works too.
    let armoured = {
        use pgp::composed::Deserializable;
        pgp::composed::SignedPublicKey::from_bytes(&public[..])
            .unwrap()
            .to_armored_string(Default::default())
            .unwrap()
    };
    std::fs::write(&keyring, armoured).unwrap();
    let pkgs = ubuntu();
    let (main, universe) = pkgs.split_at(3);
    let routes = suite_routes(
        &key,
        "noble-updates",
        &[("main", main), ("universe", universe)],
        true,
    );
    let server = serve(routes);
    let o = origin(Distro::Ubuntu, &server.base, &keyring);
    let cache = Cache::new(dir.path().join("cache"));
    let http = http();
    let ks = discover::scan_suite(&http, Some(&cache), &o, "noble-updates").unwrap();
    assert_eq!(ks.len(), 1, "{ks:?}");
    let tree = kernel_tree::materialize(&cache, &http, &o.mirrors, &ks[0].0).unwrap();
    assert_eq!(std::fs::read(&tree.vmlinuz).unwrap(), b"unsigned ubuntu");
    assert!(tree
        .config
        .unwrap()
        .ends_with("boot/config-9.8.0-49-generic"));
    assert!(tree.modules_dir.join("kernel/e.ko.zst").is_file());
    assert!(tree.symvers.is_some());
}

#[test]
fn bad_signature_stops_the_source() {
    let (key, _) = test_key("Real <real@example.invalid>");
    let (_, other_public) = test_key("Other <other@example.invalid>");
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("other.gpg");
    std::fs::write(&keyring, &other_public).unwrap();
    let server = serve(suite_routes(
        &key,
        "fixture",
        &[("main", &debian_6_16())],
        true,
    ));
    let o = origin(Distro::Debian, &server.base, &keyring);
    let e = discover::scan_suite(&http(), None, &o, "fixture").unwrap_err();
    let msg = kmlink_errors::chain(&e);
    assert!(msg.contains("BAD SIGNATURE"), "{msg}");
    assert!(msg.contains("fixture/InRelease"), "{msg}");
    assert!(matches!(e.root(), Error::Signature { .. }));
    // Nothing but the InRelease was fetched.
    assert_eq!(server.hits(), 1, "{:?}", server.paths());
}

#[test]
fn tampered_inrelease_is_refused() {
    let (key, _dir, keyring) = keyring_in_tempdir("Real <real@example.invalid>", "k.gpg");
    let mut routes = suite_routes(&key, "fixture", &[("main", &debian_6_16())], true);
    for (path, replies) in &mut routes {
        if path.ends_with("InRelease") {
            let text = String::from_utf8(replies[0].1.clone()).unwrap();
            let tampered = text.replacen("Origin: Test", "Origin: Evil", 1);
            assert_ne!(text, tampered);
            replies[0].1 = tampered.into_bytes();
        }
    }
    let server = serve(routes);
    let o = origin(Distro::Debian, &server.base, &keyring);
    let e = discover::scan_suite(&http(), None, &o, "fixture").unwrap_err();
    assert!(kmlink_errors::chain(&e).contains("BAD SIGNATURE"), "{e}");

    // Not signed at all.
    let server = serve(vec![(
        "dists/fixture/InRelease".into(),
        vec![(200, b"Suite: fixture\nSHA256:\n".to_vec())],
    )]);
    let o = origin(Distro::Debian, &server.base, &keyring);
    let e = discover::scan_suite(&http(), None, &o, "fixture").unwrap_err();
    assert!(
        kmlink_errors::chain(&e).contains("not a clearsigned"),
        "{e}"
    );
}

#[test]
fn wrong_index_hash_stops_the_source() {
    let (key, _dir, keyring) = keyring_in_tempdir("Real <real@example.invalid>", "k.gpg");
    let mut routes = suite_routes(&key, "fixture", &[("main", &debian_6_16())], false);
    for (path, replies) in &mut routes {
        if path.ends_with("Packages.xz") {
            let mut body = replies[0].1.clone();
            let n = body.len();
            body[n / 2] ^= 0xff;
            replies[0].1 = body;
        }
    }
    let server = serve(routes);
    let o = origin(Distro::Debian, &server.base, &keyring);
    let e = discover::scan_suite(&http(), None, &o, "fixture").unwrap_err();
    let msg = kmlink_errors::chain(&e);
    assert!(msg.contains("SHA256 mismatch"), "{msg}");
    assert!(
        msg.contains("fixture main/binary-amd64/Packages.xz"),
        "{msg}"
    );
}

#[test]
fn inrelease_of_another_suite_is_refused() {
    let (key, _dir, keyring) = keyring_in_tempdir("Real <real@example.invalid>", "k.gpg");
    let mut routes = suite_routes(&key, "oldsuite", &[("main", &debian_6_16())], false);
    for (path, _) in &mut routes {
        *path = path.replace("dists/oldsuite/", "dists/fixture/");
    }
    let server = serve(routes);
    let o = origin(Distro::Debian, &server.base, &keyring);
    let e = discover::scan_suite(&http(), None, &o, "fixture").unwrap_err();
    assert!(kmlink_errors::chain(&e).contains("not fixture"), "{e}");
}

#[test]
fn an_expired_suite_is_refused_unless_allowed() {
    let (key, _dir, keyring) =
        keyring_in_tempdir("Test Archive <archive@example.invalid>", "keyring.gpg");
    let main = debian_6_12();
    // Signed, but valid only until a date long past (a replayed InRelease).
    let mut routes = suite_routes_until(
        &key,
        "sid",
        &[("main", &main)],
        true,
        Some("Fri, 06 Nov 2020 08:08:01 UTC"),
    );
    routes.extend(suite_routes(&key, "trixie", &[("main", &main)], true));
    let server = serve(routes);
    let mut o = origin(Distro::Debian, &server.base, &keyring);
    let http = http();
    let d = discover::discover(&http, None, &o, &["sid".into(), "trixie".into()]);
    assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
    let (suite, e) = &d.errors[0];
    let msg = kmlink_errors::chain(e);
    assert!(
        suite == "sid" && msg.contains("expired") && msg.contains("Valid-Until: Fri, 06 Nov 2020"),
        "{suite}: {msg}"
    );
    assert!(d.kernels.iter().all(|(_, i)| i.suite == "trixie"));
    assert!(!d.kernels.is_empty());

    o.allow_expired = true;
    let d = discover::discover(&http, None, &o, &["sid".into(), "trixie".into()]);
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    assert!(d.kernels.iter().any(|(_, i)| i.suite == "sid"));
}

/// One unsigned image (vmlinuz, config, a module) and its headers.
fn debian_image(rel: &str, v: &str) -> Vec<Pkg> {
    vec![
        deb(
            &format!("linux-image-{rel}-unsigned"),
            v,
            "kmod",
            "xz",
            &[
                f(format!("./boot/vmlinuz-{rel}"), b"vmlinuz"),
                f(format!("./boot/config-{rel}"), b"CONFIG_X=y\n"),
                f(format!("./lib/modules/{rel}/kernel/fs/a.ko"), b"\x7fELF a"),
            ],
        ),
        deb(&format!("linux-headers-{rel}"), v, "", "xz", &[]),
    ]
}

#[test]
fn the_architecture_picks_the_index_and_the_kernels() {
    let (key, dir, keyring) =
        keyring_in_tempdir("Test Archive <archive@example.invalid>", "keyring.gpg");
    let amd64 = debian_image("9.1.0-3-amd64", "9.1.17-1");
    let mut arm64 = Vec::new();
    for rel in [
        "9.1.0-3-arm64",
        "9.12.7+deb13-arm64-16k",
        "9.12.7+deb13-cloud-arm64",
        "9.12.7+deb13-rt-arm64",
        // An amd64 kernel listed in the arm64 index is not an arm64 kernel.
        "9.12.7+deb13-amd64",
    ] {
        arm64.extend(debian_image(rel, "9.12.7-1"));
    }
    let routes = suite_routes_arches(
        &key,
        "sid",
        &[
            ("amd64", &[("main", &amd64)]),
            ("arm64", &[("main", &arm64)]),
        ],
        true,
        None,
    );
    let server = serve(routes);
    let cache = Cache::new(dir.path().join("cache"));
    let http = http();
    let releases = |o: &Origin| -> Vec<(String, String)> {
        let d = discover::discover(&http, Some(&cache), o, &["sid".into()]);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        d.kernels
            .into_iter()
            .map(|k| (k.1.release, k.1.arch))
            .collect()
    };
    let mut o = origin(Distro::Debian, &server.base, &keyring);
    o.arch = discover::Arch::Aarch64;
    let got = releases(&o);
    let want: Vec<(String, String)> = [
        "9.1.0-3-arm64",
        "9.12.7+deb13-arm64-16k",
        "9.12.7+deb13-cloud-arm64",
        "9.12.7+deb13-rt-arm64",
    ]
    .iter()
    .map(|r| (r.to_string(), "arm64".to_string()))
    .collect();
    assert_eq!(got, want);
    assert!(server.paths().iter().all(|p| !p.contains("binary-amd64")));
    o.arch = discover::Arch::X86_64;
    assert_eq!(
        releases(&o),
        [("9.1.0-3-amd64".to_string(), "amd64".to_string())]
    );
    assert!(server.paths().iter().any(|p| p.contains("binary-amd64")));
}

/// What a refresh told its listener, one line per event.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<String>>);

impl Heard {
    fn say(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl kmlink_crawler::refresh::Listener for Heard {
    fn suite_skipped(&self, suite: &str, _error: &Error) {
        self.say(format!("skipped {suite}"));
    }

    fn planned(&self, kernels: usize, _bytes: u64, store: &std::path::Path) {
        self.say(format!("planned {kernels} into {}", store.display()));
    }

    fn fetching(&self, _kernel: &PinnedKernel, info: &KernelInfo) {
        self.say(format!("fetching {}", info.release));
    }

    fn finished(
        &self,
        done: usize,
        total: usize,
        outcome: &kmlink_metadata_db::refresh::Outcome,
        run: Option<&kmlink_crawler::refresh::KernelRun>,
    ) {
        let what = match outcome {
            kmlink_metadata_db::refresh::Outcome::Failed { release, .. } => {
                format!("failed {release}")
            }
            other => format!("{other:?}"),
        };
        let downloaded = run.is_some_and(|r| r.downloaded > 0);
        self.say(format!("[{done}/{total}] {what} downloaded={downloaded}"));
    }
}

#[test]
fn refresh_selects_reports_through_its_listener_and_isolates_a_failed_kernel() {
    use kmlink_crawler::refresh::{self, RefreshOptions};

    let (key, dir, keyring) =
        keyring_in_tempdir("Test Archive <archive@example.invalid>", "keyring.gpg");
    let mut main = debian_6_1();
    main.extend(debian_6_12());
    let server = serve(suite_routes(&key, "sid", &[("main", &main)], true));
    let o = origin(Distro::Debian, &server.base, &keyring);
    let cache = Cache::new(dir.path().join("cache"));
    let http = http();
    let db = dir.path().join("store/records.db");
    let suites = ["sid".to_string(), "bookworm".to_string()];

    // Nothing matches: no store is created.
    let none = ["8.*".to_string()];
    let opts = RefreshOptions {
        suites: &suites,
        releases: &none,
        db: Some(&db),
        jobs: 1,
        ..RefreshOptions::default()
    };
    let heard = Heard::default();
    let r = refresh::run(&http, &cache, &o, &opts, &heard).unwrap();
    assert_eq!((r.matched, r.kernels.len()), (0, 0));
    assert!(r.store.is_none() && r.report.is_none());
    assert!(!db.exists());
    assert_eq!(r.suite_errors.len(), 1, "bookworm is not served");
    assert_eq!(heard.lines(), ["skipped bookworm"]);

    // A glob and a flavour select one kernel; a dry run fetches nothing.
    let globs = ["9.1.*".to_string(), "9.12.*".to_string()];
    let opts = RefreshOptions {
        releases: &globs,
        flavour: Some("amd64"),
        dry_run: true,
        ..opts
    };
    let heard = Heard::default();
    let r = refresh::run(&http, &cache, &o, &opts, &heard).unwrap();
    let selected: Vec<&str> = r.kernels.iter().map(|k| k.1.release.as_str()).collect();
    assert_eq!(selected, ["9.1.0-3-amd64"]);
    assert!(r.store.is_some() && r.report.is_none() && r.runs.is_empty());
    assert_eq!(
        heard.lines(),
        [
            "skipped bookworm".to_string(),
            format!("planned 1 into {}", db.display())
        ]
    );

    // The fixture's image is no kernel: its extraction fails, and is
    // reported as that kernel's outcome, not as the run's error.
    let opts = RefreshOptions {
        dry_run: false,
        ..opts
    };
    let heard = Heard::default();
    let r = refresh::run(&http, &cache, &o, &opts, &heard).unwrap();
    let report = r.report.as_ref().unwrap();
    assert_eq!(report.stored(), 0);
    let failed: Vec<&str> = report.failed().iter().map(|f| f.0).collect();
    assert_eq!(failed, ["9.1.0-3-amd64"]);
    let run = &r.runs["9.1.0-3-amd64"];
    assert_eq!(run.outcome, "failed");
    assert!(run.reason.is_some() && run.downloaded > 0 && r.downloaded() > 0);
    assert_eq!(
        heard.lines(),
        [
            "skipped bookworm".to_string(),
            format!("planned 1 into {}", db.display()),
            "fetching 9.1.0-3-amd64".to_string(),
            "[1/1] failed 9.1.0-3-amd64 downloaded=true".to_string(),
        ]
    );
}
