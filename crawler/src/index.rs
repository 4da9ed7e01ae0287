//! `Packages` indexes: parsing and fetching.

use std::io::Read;

use crate::deb822;
use crate::http::join_url;
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

/// Whether `s` is a lowercase hex SHA256.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
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

/// Largest compressed / decompressed index accepted (bytes).
const MAX_COMPRESSED: u64 = 256 << 20;
const MAX_INDEX: u64 = 1 << 30;

/// Download `dists/<suite>/main/binary-amd64/Packages.xz` (falling back to
/// `Packages.gz` on HTTP 404) from `base_uri`, decompress and parse it.
///
/// The index itself is not yet authenticated: the `InRelease` signature and
/// the hash chain from `InRelease` to this file are not checked, so an index
/// is only as trustworthy as the transport. Every `.deb` fetched through
/// [`crate::cache::Cache::fetch`] is still verified against the SHA256 and
/// size listed here.
pub fn fetch_packages(http: &Http, base_uri: &str, suite: &str) -> Result<Vec<PackageEntry>> {
    let dir = format!("dists/{suite}/main/binary-amd64");
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

/// Run `f(url)` up to `http.tries()` times with backoff; 404 is not retried.
pub(crate) fn retrying<T>(
    http: &Http,
    url: &str,
    mut f: impl FnMut(&str) -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        std::thread::sleep(http.backoff(attempt));
        match f(url) {
            Ok(v) => return Ok(v),
            Err(e) if e.is_not_found() => return Err(e),
            Err(e) => {
                attempt += 1;
                if attempt >= http.tries() {
                    return Err(e);
                }
                log::warn!("{e}; retrying ({attempt}/{})", http.tries() - 1);
            }
        }
    }
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
        assert!(e.to_string().contains("package a: missing SHA256"), "{e}");
        let e = parse_packages(&format!(
            "Package: a\nVersion: 1\nFilename: f\nSize: x\nSHA256: {SHA}\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("bad Size"), "{e}");
        let e = parse_packages("Package: a\nVersion: 1\nFilename: f\nSize: 1\nSHA256: 12\n")
            .unwrap_err();
        assert!(e.to_string().contains("not 64"), "{e}");
        let e = parse_packages(&format!(
            "Package: a\nVersion: 1\nFilename: ../x\nSize: 1\nSHA256: {SHA}\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("unsafe Filename"), "{e}");
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
        let p = fetch_packages(&http, base, "bookworm").unwrap();
        assert!(p.len() > 10_000, "{} packages", p.len());
        assert!(p.iter().any(|e| e.package.starts_with("linux-image-6.1.0-")
            && e.package.ends_with("-amd64-unsigned")));
    }
}
