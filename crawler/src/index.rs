//! `Packages` indexes: parsing and fetching.

use std::io::Read;

use crate::cache::Cache;
use crate::deb822;
use crate::http::{join_url, retrying};
use crate::release::{IndexFile, Release};
use crate::sha256::is_sha256_hex;
use crate::{Error, Http, Result};

/// One binary package of a `Packages` index: what is needed to fetch and
/// verify it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageEntry {
    /// `Package`.
    pub package: String,
    /// `Version`.
    pub version: String,
    /// `Filename`: the path relative to the archive base URI.
    pub filename: String,
    /// `Size` in bytes.
    pub size: u64,
    /// `SHA256`, lowercase hex.
    pub sha256: String,
    /// `Depends` (empty when absent).
    #[serde(default)]
    pub depends: String,
    /// `Source` when it differs from the package name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl PackageEntry {
    /// `package version`, for messages.
    pub fn label(&self) -> String {
        format!("{} {}", self.package, self.version)
    }

    /// Check the fields that later become file names and URLs: a 64-digit
    /// lowercase hex SHA256 and a relative `Filename` without `..`.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Error::BadEntry {
            package: self.label(),
            msg,
        };
        if !is_sha256_hex(&self.sha256) {
            return Err(bad(format!(
                "SHA256 {:?} is not 64 lowercase hex digits",
                self.sha256
            )));
        }
        if self.filename.is_empty()
            || self.filename.starts_with('/')
            || self.filename.split('/').any(|c| c == "..")
        {
            return Err(bad(format!("unsafe Filename {:?}", self.filename)));
        }
        Ok(())
    }
}

/// Parse a `Packages` index. `Package`, `Version`, `Filename`, `Size` and
/// `SHA256` are required in every stanza; the error names the stanza's
/// package and line.
pub fn parse_packages(text: &str) -> Result<Vec<PackageEntry>> {
    let what = "Packages index";
    let mut out = Vec::new();
    for p in deb822::paragraphs(text, what, false)? {
        let name = p.get("Package").unwrap_or("?");
        let need = |key: &str| {
            p.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
                deb822::syntax(
                    what,
                    p.line,
                    &format!("package {name}: missing {key} field"),
                )
            })
        };
        let size = need("Size")?;
        let entry = PackageEntry {
            package: need("Package")?.to_owned(),
            version: need("Version")?.to_owned(),
            filename: need("Filename")?.to_owned(),
            size: size.parse().map_err(|_| {
                deb822::syntax(what, p.line, &format!("package {name}: bad Size {size:?}"))
            })?,
            sha256: need("SHA256")?.to_ascii_lowercase(),
            depends: p.get("Depends").unwrap_or("").to_owned(),
            source: p.get("Source").map(str::to_owned),
        };
        entry
            .validate()
            .map_err(|e| e.context(format!("{what}, line {}", p.line)))?;
        out.push(entry);
    }
    Ok(out)
}

/// Parse only the stanzas of a `Packages` index whose `Package` field
/// `keep` accepts (a cheap pre-scan skips the rest, which matters for the
/// 60 MB indexes of the big suites). Errors name the line in `text`.
pub fn parse_packages_matching(
    text: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<PackageEntry>> {
    let mut out = Vec::new();
    let mut start = 0usize; // byte offset of the current paragraph
    let mut start_line = 1usize;
    let mut line_no = 1usize;
    let mut pos = 0usize;
    let bytes = text.as_bytes();
    let mut flush = |from: usize, to: usize, first_line: usize| -> Result<()> {
        let para = &text[from..to];
        let name = para
            .lines()
            .find_map(|l| l.strip_prefix("Package:"))
            .map(str::trim);
        if name.is_some_and(keep) {
            let mut parsed = parse_packages(para).map_err(|e| shift_line(e, first_line - 1))?;
            out.append(&mut parsed);
        }
        Ok(())
    };
    while pos < bytes.len() {
        let end = text[pos..].find('\n').map_or(bytes.len(), |i| pos + i);
        let line = text[pos..end].trim_end_matches('\r');
        if line.trim().is_empty() {
            if start < pos {
                flush(start, pos, start_line)?;
            }
            start = end + 1;
            start_line = line_no + 1;
        }
        pos = end + 1;
        line_no += 1;
    }
    if start < bytes.len() {
        flush(start, bytes.len(), start_line)?;
    }
    Ok(out)
}

/// Add `by` to the line number of a syntax error (also inside a context).
fn shift_line(e: Error, by: usize) -> Error {
    match e {
        Error::Syntax { what, line, msg } => Error::Syntax {
            what,
            line: line + by,
            msg,
        },
        Error::Context { context, source } => {
            let context = match context.strip_prefix("Packages index, line ") {
                Some(n) => format!(
                    "Packages index, line {}",
                    n.parse::<usize>().map_or(0, |n| n + by)
                ),
                None => context,
            };
            Error::Context {
                context,
                source: Box::new(shift_line(*source, by)),
            }
        }
        e => e,
    }
}

/// Largest compressed / decompressed index accepted (bytes).
const MAX_COMPRESSED: u64 = 256 << 20;
const MAX_INDEX: u64 = 1 << 30;
/// Largest cached selection read back (a suite's kernel packages take
/// ~0.5 MB; anything larger is not one of ours).
const MAX_SELECTION: u64 = 16 << 20;

/// Download `dists/<suite>/main/binary-<arch>/Packages.xz` (falling back to
/// `Packages.gz` on HTTP 404) from `base_uri`, decompress and parse it.
///
/// This index is NOT authenticated: it is only as trustworthy as the
/// transport (the pinned-kernel substitute search still uses it). Use
/// [`fetch_release`] + [`fetch_verified_packages`] for anything to be
/// trusted, as discovery does.
pub fn fetch_packages(
    http: &Http,
    base_uri: &str,
    suite: &str,
    arch: &str,
) -> Result<Vec<PackageEntry>> {
    let dir = format!("dists/{suite}/main/binary-{arch}");
    let mut last = None;
    for (name, kind) in [
        ("Packages.xz", Compression::Xz),
        ("Packages.gz", Compression::Gz),
    ] {
        let url = join_url(base_uri, &format!("{dir}/{name}"));
        let body = match retrying(http, &url, |u| http.get_bytes(u, MAX_COMPRESSED)) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let text = decompress(&body, kind).map_err(|source| Error::Decompress {
            url: url.clone(),
            source,
        })?;
        log::info!("{url}: {} bytes of index", text.len());
        return parse_packages(&text).map_err(|e| e.context(format!("parsing {url}")));
    }
    Err(last.unwrap_or_else(|| Error::HttpStatus {
        url: join_url(base_uri, &dir),
        status: 404,
    }))
}

/// Which `Packages` index of an archive: `dists/<suite>/<component>/binary-<arch>`.
#[derive(Debug, Clone, Copy)]
pub struct IndexAt<'a> {
    /// Suite (`bookworm`, `trixie-security`, ...).
    pub suite: &'a str,
    /// Component (`main`, ...).
    pub component: &'a str,
    /// Debian architecture (`amd64`, `arm64`).
    pub arch: &'a str,
}

/// Download the `Packages` index of `component` (`main`, ...) and `arch`
/// (Debian's name: `amd64`, `arm64`) of a suite
/// whose verified [`Release`] is `release`: `Packages.xz` if the Release
/// lists it, else `Packages.gz`; by hash
/// (`dists/<suite>/<component>/binary-<arch>/by-hash/SHA256/<hash>`) when the
/// Release says `Acquire-By-Hash: yes` (falling back to the plain name on
/// HTTP 404). The file must have exactly the size and SHA256 the Release
/// gives ([`Error::SizeMismatch`] / [`Error::HashMismatch`] otherwise).
///
/// With a cache, verified index files are kept under
/// `<cache>/indexes/<sha256>` and reused while the Release names them, and
/// so is the selection made from each (`<sha256>.<selection>.json`): a
/// later look-up in an unchanged index reads a few kilobytes instead of
/// decompressing and scanning up to 60 MB per suite (most of what `kmlink
/// vm` and `kmlink build --from-packages` spent before booting).
/// Returns the entries `select` accepts (by package name).
pub fn fetch_verified_packages(
    http: &Http,
    cache: Option<&Cache>,
    base_uri: &str,
    at: &IndexAt<'_>,
    release: &Release,
    select: &Selection<'_>,
) -> Result<Vec<PackageEntry>> {
    let IndexAt {
        suite,
        component,
        arch,
    } = *at;
    let dir = format!("{component}/binary-{arch}");
    let mut chosen = None;
    for (name, kind) in [
        ("Packages.xz", Compression::Xz),
        ("Packages.gz", Compression::Gz),
    ] {
        if let Some(f) = release.file(&format!("{dir}/{name}")) {
            chosen = Some((name, kind, f.clone()));
            break;
        }
    }
    let what = join_url(base_uri, &format!("dists/{suite}/InRelease"));
    let (name, kind, file) = chosen.ok_or_else(|| Error::Release {
        what: what.clone(),
        msg: format!("lists neither {dir}/Packages.xz nor {dir}/Packages.gz"),
    })?;
    let plain = join_url(base_uri, &format!("dists/{suite}/{dir}/{name}"));
    let label = format!("{suite} {dir}/{name}");
    let cached = cache.map(|c| c.root.join("indexes").join(&file.sha256));
    let selected = cache.map(|c| {
        c.root
            .join("indexes")
            .join(format!("{}.{}.json", file.sha256, select.name))
    });
    if let Some(entries) = selected
        .as_deref()
        .and_then(|p| read_selection(p, &file.sha256, select.name))
    {
        log::info!(
            "{plain}: using the {} selection cached from the verified copy",
            select.name
        );
        return Ok(entries);
    }
    let body = match cached.as_deref().and_then(|p| read_verified(p, &file)) {
        Some(b) => {
            log::info!("{plain}: using the verified copy in the cache");
            b
        }
        None => {
            let by_hash = join_url(
                base_uri,
                &format!("dists/{suite}/{dir}/by-hash/SHA256/{}", file.sha256),
            );
            let urls: Vec<&str> = if release.acquire_by_hash {
                vec![&by_hash, &plain]
            } else {
                vec![&plain]
            };
            let mut got = None;
            let mut last = None;
            for url in urls {
                match retrying(http, url, |u| http.get_bytes(u, file.size)) {
                    Ok(b) => {
                        got = Some((url.to_owned(), b));
                        break;
                    }
                    Err(e) if e.is_not_found() => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            let (url, body) = match (got, last) {
                (Some(g), _) => g,
                (None, Some(e)) => return Err(e),
                (None, None) => {
                    return Err(Error::HttpStatus {
                        url: plain.clone(),
                        status: 404,
                    })
                }
            };
            crate::release::check_index(&body, &file, &label, &url)?;
            if let Some(p) = &cached {
                if let Err(e) = store(p, &body) {
                    log::warn!("caching {}: {e}", p.display());
                }
            }
            body
        }
    };
    let text = decompress(&body, kind).map_err(|source| Error::Decompress {
        url: plain.clone(),
        source,
    })?;
    log::info!("{plain}: {} bytes of index", text.len());
    let entries = parse_packages_matching(&text, select.keep)
        .map_err(|e| e.context(format!("parsing {plain}")))?;
    if let Some(p) = &selected {
        if let Err(e) = write_selection(p, &file.sha256, select.name, &entries) {
            log::warn!("caching {}: {e}", p.display());
        }
    }
    Ok(entries)
}

/// Which packages of an index a caller wants: `keep` accepts a package
/// name; `name` names that choice in the cache (one fixed name per
/// `keep`, safe as part of a file name).
pub struct Selection<'a> {
    /// Names the selection: `<sha256>.<name>.json` in the index cache.
    pub name: &'a str,
    /// Whether a package (by name) is selected.
    pub keep: &'a dyn Fn(&str) -> bool,
}

/// What `<sha256>.<selection>.json` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedSelection {
    /// SHA256 of the verified index the entries were selected from.
    index_sha256: String,
    /// [`Selection::name`].
    selection: String,
    entries: Vec<PackageEntry>,
}

/// A cached selection, if it is of this index and selection and every
/// entry passes [`PackageEntry::validate`]; anything else is removed and
/// the index is read again.
fn read_selection(path: &std::path::Path, sha256: &str, name: &str) -> Option<Vec<PackageEntry>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_SELECTION + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    let ok = (bytes.len() as u64 <= MAX_SELECTION)
        .then(|| serde_json::from_slice::<CachedSelection>(&bytes).ok())
        .flatten()
        .filter(|c| {
            c.index_sha256 == sha256
                && c.selection == name
                && c.entries.iter().all(|e| e.validate().is_ok())
        });
    if ok.is_none() {
        log::warn!(
            "{}: not a selection of index {sha256}; reading the index again",
            path.display()
        );
        let _ = std::fs::remove_file(path);
    }
    ok.map(|c| c.entries)
}

fn write_selection(
    path: &std::path::Path,
    sha256: &str,
    name: &str,
    entries: &[PackageEntry],
) -> std::io::Result<()> {
    let body = serde_json::to_vec(&CachedSelection {
        index_sha256: sha256.to_owned(),
        selection: name.to_owned(),
        entries: entries.to_vec(),
    })
    .map_err(std::io::Error::other)?;
    store(path, &body)
}

/// A cached index file, if present and still matching.
fn read_verified(path: &std::path::Path, file: &IndexFile) -> Option<Vec<u8>> {
    let body = std::fs::read(path).ok()?;
    if body.len() as u64 == file.size && crate::sha256::hash_bytes(&body) == file.sha256 {
        Some(body)
    } else {
        let _ = std::fs::remove_file(path);
        None
    }
}

fn store(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    kmlink_fsio::write_file(path, body, kmlink_fsio::Durability::Visible)
}

#[derive(Clone, Copy)]
enum Compression {
    Xz,
    Gz,
}

fn decompress(body: &[u8], kind: Compression) -> std::io::Result<String> {
    let reader: Box<dyn Read + '_> = match kind {
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(body)),
        Compression::Gz => Box::new(flate2::read::MultiGzDecoder::new(body)),
    };
    let mut out = String::new();
    reader.take(MAX_INDEX + 1).read_to_string(&mut out)?;
    if out.len() as u64 > MAX_INDEX {
        return Err(std::io::Error::other(format!(
            "index larger than {MAX_INDEX} bytes"
        )));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SHA: &str = "0ab746a3d854ad0e666923147842d1e629cdb3e29a97b76ae25b4911285174e4";

    #[test]
    fn parses_stanzas() {
        let t = format!(
            "Package: linux-image-6.1.0-47-amd64-unsigned\nSource: linux\nVersion: 6.1.158-1\nInstalled-Size: 400000\nDepends: kmod, linux-base (>= 4.3~)\nDescription: Linux 6.1\n more text\nFilename: pool/main/l/linux/x.deb\nSize: 123\nSHA256: {}\n\nPackage: tiny\nVersion: 1\nFilename: pool/t.deb\nSize: 0\nSHA256: {SHA}\n",
            SHA.to_uppercase()
        );
        let p = parse_packages(&t).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].sha256, SHA);
        assert_eq!(p[0].size, 123);
        assert_eq!(p[0].depends, "kmod, linux-base (>= 4.3~)");
        assert_eq!(p[0].source.as_deref(), Some("linux"));
        assert_eq!(p[1].depends, "");
        assert_eq!(p[1].source, None);
    }

    #[test]
    fn rejects_bad_stanzas() {
        let e = parse_packages("Package: a\nVersion: 1\nFilename: f\nSize: 1\n").unwrap_err();
        assert!(
            kmlink_errors::chain(&e).contains("package a: missing SHA256"),
            "{e}"
        );
        let e = parse_packages(&format!(
            "Package: a\nVersion: 1\nFilename: f\nSize: x\nSHA256: {SHA}\n"
        ))
        .unwrap_err();
        assert!(kmlink_errors::chain(&e).contains("bad Size"), "{e}");
        let e = parse_packages("Package: a\nVersion: 1\nFilename: f\nSize: 1\nSHA256: 12\n")
            .unwrap_err();
        assert!(kmlink_errors::chain(&e).contains("not 64"), "{e}");
        let e = parse_packages(&format!(
            "Package: a\nVersion: 1\nFilename: ../x\nSize: 1\nSHA256: {SHA}\n"
        ))
        .unwrap_err();
        assert!(kmlink_errors::chain(&e).contains("unsafe Filename"), "{e}");
    }

    #[test]
    fn a_cached_selection_is_read_back_only_if_whole_sane_and_small() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sel.json");
        let entry = PackageEntry {
            package: "linux-image-6.1.0-47-arm64".into(),
            version: "6.1.158-1".into(),
            filename: "pool/main/l/linux/x.deb".into(),
            size: 1,
            sha256: SHA.into(),
            depends: String::new(),
            source: None,
        };
        write_selection(&p, SHA, "kernel-packages", std::slice::from_ref(&entry)).unwrap();
        assert_eq!(
            read_selection(&p, SHA, "kernel-packages"),
            Some(vec![entry])
        );
        // Another selection's name: refused and removed.
        assert_eq!(read_selection(&p, SHA, "busybox-static"), None);
        assert!(!p.exists());
        // Valid JSON padded past the bound: not read whole, refused.
        write_selection(&p, SHA, "kernel-packages", &[]).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, &vec![b' '; MAX_SELECTION as usize]).unwrap();
        drop(f);
        assert_eq!(read_selection(&p, SHA, "kernel-packages"), None);
        assert!(!p.exists());
    }

    #[test]
    fn decompresses_both() {
        use std::io::Write;
        let text = "Package: a\n";
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(text.as_bytes()).unwrap();
        assert_eq!(
            decompress(&xz.finish().unwrap(), Compression::Xz).unwrap(),
            text
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        assert_eq!(
            decompress(&gz.finish().unwrap(), Compression::Gz).unwrap(),
            text
        );
        assert!(decompress(b"not xz", Compression::Xz).is_err());
    }

    /// Needs the network and the host's apt sources: `cargo test -p
    /// kmlink-crawler -- --ignored`.
    #[test]
    #[ignore = "network: fetches the real bookworm Packages index"]
    fn fetch_real_bookworm_index() {
        let sources = crate::sources::host_sources(std::path::Path::new("/")).unwrap();
        let m = crate::sources::debian_mirrors(&sources);
        let base = m
            .archive
            .first()
            .expect("a Debian archive in the host's apt sources");
        let http = Http::new().unwrap();
        let p = fetch_packages(&http, base, "bookworm", "amd64").unwrap();
        assert!(p.len() > 10_000, "{} packages", p.len());
        assert!(p.iter().any(|e| e.package.starts_with("linux-image-6.1.0-")
            && e.package.ends_with("-amd64-unsigned")));
    }
}
