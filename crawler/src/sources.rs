//! apt sources: deb822 `.sources` files and one-line `.list` files.
//!
//! Mirrors are never hard-coded in kmlink: they come from the host's apt
//! configuration ([`host_sources`] + [`debian_mirrors`]) or from an explicit
//! `--mirror URL` given by the user.

use std::path::{Path, PathBuf};

use crate::deb822;
use crate::{Error, Result};

/// One apt source: a URI with its suites and components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// The archive base URI, without a trailing `/`.
    pub uri: String,
    /// Suites (`bookworm`, `bookworm-security`, ...).
    pub suites: Vec<String>,
    /// Components (`main`, `contrib`, ...).
    pub components: Vec<String>,
    /// The keyring path of `Signed-By` / `signed-by=` when it is a path
    /// (an inline key block or a fingerprint gives `None`).
    pub signed_by: Option<PathBuf>,
    /// `deb`, `deb-src`.
    pub types: Vec<String>,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn keyring_path(value: &str) -> Option<PathBuf> {
    // Signed-By is either one or more keyring paths / fingerprints, or an
    // inline ASCII-armoured key block. Keep the first absolute path.
    if value.contains("-----BEGIN") {
        return None;
    }
    value
        .split([' ', '\t', ',', '\n'])
        .find(|w| w.starts_with('/'))
        .map(PathBuf::from)
}

fn trim_uri(uri: &str) -> String {
    uri.trim_end_matches('/').to_owned()
}

/// Parse a deb822 `.sources` file (several stanzas allowed, `#` comments,
/// `Enabled: no` stanzas skipped). `Types`, `URIs` and `Suites` are required;
/// a stanza with several URIs gives one [`AptSource`] per URI.
pub fn parse_deb822(text: &str) -> Result<Vec<AptSource>> {
    let what = "deb822 apt sources";
    let mut out = Vec::new();
    for p in deb822::paragraphs(text, what, true)? {
        if p.get("Enabled")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let need = |key: &str| {
            p.get(key)
                .map(words)
                .filter(|w| !w.is_empty())
                .ok_or_else(|| deb822::syntax(what, p.line, &format!("stanza has no {key} field")))
        };
        let types = need("Types")?;
        let uris = need("URIs")?;
        let suites = need("Suites")?;
        let components = p.get("Components").map(words).unwrap_or_default();
        let signed_by = p.get("Signed-By").and_then(keyring_path);
        for uri in uris {
            out.push(AptSource {
                uri: trim_uri(&uri),
                suites: suites.clone(),
                components: components.clone(),
                signed_by: signed_by.clone(),
                types: types.clone(),
            });
        }
    }
    Ok(out)
}

/// Parse a one-line-style `sources.list`:
/// `deb [opt=value ...] URI SUITE [COMPONENT...]`, `#` comments.
pub fn parse_one_line(text: &str) -> Result<Vec<AptSource>> {
    let what = "one-line apt sources";
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (ty, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if ty != "deb" && ty != "deb-src" {
            return Err(deb822::syntax(
                what,
                lineno,
                &format!("unknown type {ty:?}"),
            ));
        }
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                return Err(deb822::syntax(what, lineno, "unterminated [options]"));
            };
            for opt in opts.split_whitespace() {
                if let Some((k, v)) = opt.split_once('=') {
                    if k.eq_ignore_ascii_case("signed-by") {
                        signed_by = keyring_path(v);
                    }
                }
            }
            rest = after.trim_start();
        }
        let mut w = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (w.next(), w.next()) else {
            return Err(deb822::syntax(what, lineno, "expected URI and suite"));
        };
        out.push(AptSource {
            uri: trim_uri(uri),
            suites: vec![suite.to_owned()],
            components: w.map(str::to_owned).collect(),
            signed_by,
            types: vec![ty.to_owned()],
        });
    }
    Ok(out)
}

/// Read the host's apt sources under `root` (normally `/`):
/// `<root>/etc/apt/sources.list`, then `<root>/etc/apt/sources.list.d/*.list`
/// and `*.sources` in name order. Other files (`*.disabled*`, backups) are
/// ignored. Missing files and directories are not errors.
pub fn host_sources(root: &Path) -> Result<Vec<AptSource>> {
    let etc = root.join("etc/apt");
    let mut files = vec![etc.join("sources.list")];
    let dir = etc.join("sources.list.d");
    match std::fs::read_dir(&dir) {
        Ok(rd) => {
            let mut names: Vec<PathBuf> = Vec::new();
            for e in rd {
                let e = e.map_err(|e| Error::io("listing", &dir, e))?;
                names.push(e.path());
            }
            names.sort();
            files.extend(names);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("listing", &dir, e)),
    }
    let mut out = Vec::new();
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        let parse: fn(&str) -> Result<Vec<AptSource>> = match ext {
            "list" => parse_one_line,
            "sources" => parse_deb822,
            _ => continue,
        };
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("reading", &f, e)),
        };
        out.extend(parse(&text).map_err(|e| e.context(format!("parsing {}", f.display())))?);
    }
    Ok(out)
}

/// Debian mirror base URIs found in apt sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirrors {
    /// Archive base URIs: they serve every Debian suite (`bookworm`,
    /// `trixie-backports`, `sid`, ...).
    pub archive: Vec<String>,
    /// Security base URIs: they serve `<suite>-security`.
    pub security: Vec<String>,
}

impl Mirrors {
    /// Mirrors given explicitly (`--mirror URL`): `uri` serves the archive;
    /// `security` the security suites, if given.
    pub fn explicit(uri: &str, security: Option<&str>) -> Mirrors {
        Mirrors {
            archive: vec![trim_uri(uri)],
            security: security.map(trim_uri).into_iter().collect(),
        }
    }

    /// The base URIs for an archive kind: `"archive"` or `"security"`.
    pub fn for_kind(&self, kind: &str) -> Option<&[String]> {
        match kind {
            "archive" => Some(&self.archive),
            "security" => Some(&self.security),
            _ => None,
        }
    }
}

const DEBIAN_CODENAMES: &[&str] = &[
    "buzz",
    "rex",
    "bo",
    "hamm",
    "slink",
    "potato",
    "woody",
    "sarge",
    "etch",
    "lenny",
    "squeeze",
    "wheezy",
    "jessie",
    "stretch",
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "stable",
    "testing",
    "unstable",
    "oldstable",
    "oldoldstable",
    "experimental",
];

/// `bookworm`, `bookworm-updates`, `trixie-backports`, `sid`, ... (Debian,
/// not another distribution's codenames).
fn debian_codename(suite: &str) -> Option<&str> {
    let base = suite.split(['-', '/']).next().unwrap_or(suite);
    DEBIAN_CODENAMES.contains(&base).then_some(base)
}

fn is_security_suite(suite: &str) -> bool {
    suite.ends_with("-security") || suite.ends_with("/updates")
}

const UBUNTU_CODENAMES: &[&str] = &[
    "trusty", "xenial", "bionic", "focal", "groovy", "hirsute", "impish", "jammy", "kinetic",
    "lunar", "mantic", "noble", "oracular", "plucky", "questing", "resolute",
];

/// `jammy`, `noble-updates`, `noble-security`, ... (Ubuntu codenames).
fn ubuntu_codename(suite: &str) -> Option<&str> {
    let base = suite.split(['-', '/']).next().unwrap_or(suite);
    UBUNTU_CODENAMES.contains(&base).then_some(base)
}

/// Split `deb` sources with Debian suites into archive URIs (plain suites)
/// and security URIs (suites ending `-security`), deduplicated, in order.
pub fn debian_mirrors(sources: &[AptSource]) -> Mirrors {
    mirrors_matching(sources, debian_codename)
}

/// Like [`debian_mirrors`] for sources with Ubuntu suites (experimental).
pub fn ubuntu_mirrors(sources: &[AptSource]) -> Mirrors {
    mirrors_matching(sources, ubuntu_codename)
}

/// The `Signed-By` keyring of the first `deb` source with base URI `uri`.
pub fn signed_by(sources: &[AptSource], uri: &str) -> Option<PathBuf> {
    let uri = uri.trim_end_matches('/');
    sources
        .iter()
        .filter(|s| s.uri == uri && s.types.iter().any(|t| t == "deb"))
        .find_map(|s| s.signed_by.clone())
}

fn mirrors_matching(sources: &[AptSource], distro: fn(&str) -> Option<&str>) -> Mirrors {
    let mut m = Mirrors::default();
    for s in sources
        .iter()
        .filter(|s| s.types.iter().any(|t| t == "deb"))
    {
        for suite in &s.suites {
            if distro(suite).is_none() {
                continue;
            }
            let list = if is_security_suite(suite) {
                &mut m.security
            } else {
                &mut m.archive
            };
            if !list.contains(&s.uri) {
                list.push(s.uri.clone());
            }
        }
    }
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DEB822: &str = "\
# leading comment
Types: deb deb-src
# a comment inside
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/archive.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/archive.gpg

Types: deb
Enabled: no
URIs: http://off.example/
Suites: sid

Types: deb
URIs: http://a.example/x http://b.example/x
Suites: trixie
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 abc
 -----END PGP PUBLIC KEY BLOCK-----
";

    #[test]
    fn deb822_stanzas() {
        let s = parse_deb822(DEB822).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(
            s[0],
            AptSource {
                uri: "http://mirror.example/debian".into(),
                suites: vec!["bookworm".into(), "bookworm-updates".into()],
                components: vec!["main".into(), "contrib".into()],
                signed_by: Some("/usr/share/keyrings/archive.gpg".into()),
                types: vec!["deb".into(), "deb-src".into()],
            }
        );
        assert_eq!(s[1].suites, ["bookworm-security"]);
        assert_eq!(s[2].uri, "http://a.example/x");
        assert_eq!(s[3].uri, "http://b.example/x");
        assert_eq!(s[3].signed_by, None);
        assert!(s[3].components.is_empty());
    }

    #[test]
    fn deb822_missing_field() {
        let e = parse_deb822("Types: deb\nSuites: sid\n").unwrap_err();
        assert!(e.to_string().contains("URIs"), "{e}");
    }

    #[test]
    fn one_line() {
        let t = "\
# comment
deb [arch=amd64 signed-by=/etc/apt/keyrings/k.gpg] http://mirror.example/debian bookworm main non-free # trailing
deb-src http://mirror.example/debian bookworm main

deb http://security.example/debian-security/ bookworm-security main
";
        let s = parse_one_line(t).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].uri, "http://mirror.example/debian");
        assert_eq!(
            s[0].signed_by.as_deref(),
            Some(Path::new("/etc/apt/keyrings/k.gpg"))
        );
        assert_eq!(s[0].components, ["main", "non-free"]);
        assert_eq!(s[1].types, ["deb-src"]);
        assert_eq!(s[2].uri, "http://security.example/debian-security");
        assert!(parse_one_line("deb [arch=amd64 http://x sid\n").is_err());
        assert!(parse_one_line("deb http://x\n").is_err());
        assert!(parse_one_line("rpm http://x sid\n").is_err());
    }

    #[test]
    fn mirrors_split() {
        let mut s = parse_deb822(DEB822).unwrap();
        s.extend(parse_one_line("deb http://other.example/ubuntu jammy main\ndeb-src http://src.example/ sid main\n").unwrap());
        let m = debian_mirrors(&s);
        assert_eq!(
            m.archive,
            [
                "http://mirror.example/debian",
                "http://a.example/x",
                "http://b.example/x"
            ]
        );
        assert_eq!(m.security, ["http://security.example/debian-security"]);
    }

    #[test]
    fn host_sources_reads_dir() {
        let d = tempfile::tempdir().unwrap();
        let ld = d.path().join("etc/apt/sources.list.d");
        std::fs::create_dir_all(&ld).unwrap();
        std::fs::write(
            d.path().join("etc/apt/sources.list"),
            "deb http://one.example/debian sid main\n",
        )
        .unwrap();
        std::fs::write(ld.join("x.sources"), DEB822).unwrap();
        std::fs::write(
            ld.join("y.list.disabled-by-admin"),
            "deb http://no.example/ sid main\n",
        )
        .unwrap();
        std::fs::write(ld.join("z.sources.disabled"), "garbage").unwrap();
        let s = host_sources(d.path()).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].uri, "http://one.example/debian");
        std::fs::write(ld.join("bad.list"), "deb\n").unwrap();
        let e = host_sources(d.path()).unwrap_err();
        assert!(e.to_string().contains("bad.list"), "{e}");
        assert!(host_sources(&d.path().join("nowhere")).unwrap().is_empty());
    }
}
