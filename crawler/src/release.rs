//! The first links of a suite's trust chain: `InRelease` → OpenPGP
//! signature → `Release` fields, among them the SHA256 and size of every
//! index file. [`fetch_release`] fetches the `InRelease` and refuses
//! another suite's or an expired one; an index body is held to the size and
//! SHA256 its verified [`Release`] lists by `check_index`, which
//! [`crate::index::fetch_verified_packages`] calls.
//!
//! [`Keyring::load`] reads an apt keyring (binary `.gpg` or armoured `.asc`),
//! [`verify_clearsigned`] checks an `InRelease` file against it and returns
//! the text that was signed, [`Release::parse`] reads that text. Only the
//! verified text is ever parsed: the bytes outside the signed part are
//! ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pgp::composed::{CleartextSignedMessage, PublicOrSecret, SignedPublicKey};
use pgp::types::KeyDetails;

use crate::deb822;
use crate::http::{join_url, retrying};
use crate::sha256::is_sha256_hex;
use crate::{Error, Http, Result};

/// Debian's archive keyring, used when an apt source names none.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Ubuntu's archive keyring, used when an apt source names none.
pub const UBUNTU_KEYRING: &str = "/usr/share/keyrings/ubuntu-archive-keyring.gpg";

/// Largest keyring read (bytes).
const MAX_KEYRING: u64 = 16 << 20;

/// A set of trusted OpenPGP public keys.
#[derive(Debug, Clone)]
pub struct Keyring {
    /// Where the keys came from (for messages).
    pub source: String,
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Read a keyring file: binary OpenPGP packets (`.gpg`, what apt uses)
    /// or ASCII-armoured blocks (`.asc`).
    pub fn load(path: &Path) -> Result<Keyring> {
        use std::io::Read;
        let f = std::fs::File::open(path).map_err(|e| Error::io("opening keyring", path, e))?;
        let mut bytes = Vec::new();
        f.take(MAX_KEYRING + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading keyring", path, e))?;
        if bytes.len() as u64 > MAX_KEYRING {
            return Err(Error::Keyring {
                path: path.to_owned(),
                msg: format!("larger than {MAX_KEYRING} bytes"),
            });
        }
        Keyring::from_bytes(&bytes, &path.display().to_string()).map_err(|msg| Error::Keyring {
            path: path.to_owned(),
            msg,
        })
    }

    /// Parse keyring bytes (binary or armoured); `source` names them in
    /// messages. Fails when no public key is found.
    pub fn from_bytes(bytes: &[u8], source: &str) -> std::result::Result<Keyring, String> {
        let armoured = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN"));
        let mut keys = Vec::new();
        let mut bad = 0usize;
        let mut push = |item: pgp::errors::Result<PublicOrSecret>| match item {
            Ok(PublicOrSecret::Public(k)) => keys.push(k),
            Ok(PublicOrSecret::Secret(k)) => keys.push(k.to_public_key()),
            Err(e) => {
                bad += 1;
                log::debug!("{source}: skipping an unreadable key: {e}");
            }
        };
        if armoured {
            let iter = PublicOrSecret::from_armor_many(bytes)
                .map_err(|e| format!("not an OpenPGP keyring: {e}"))?
                .0;
            iter.for_each(&mut push);
        } else {
            let iter = PublicOrSecret::from_bytes_many(bytes)
                .map_err(|e| format!("not an OpenPGP keyring: {e}"))?;
            iter.for_each(&mut push);
        }
        if keys.is_empty() {
            return Err(format!("no usable public key ({bad} unreadable)"));
        }
        Ok(Keyring {
            source: source.to_owned(),
            keys,
        })
    }

    /// Number of primary keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key (never true for a loaded keyring).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Verify a clearsigned document (`InRelease`) named `what` (its URL or
/// file) against `keyring`. At least one signature must verify with a
/// primary key or a properly bound subkey of the keyring. Returns the signed
/// text (dash-unescaped, `\n` line ends): the only part to be trusted.
pub fn verify_clearsigned(text: &str, keyring: &Keyring, what: &str) -> Result<String> {
    let bad = |msg: String| Error::Signature {
        what: what.to_owned(),
        msg,
    };
    let (msg, _headers) = CleartextSignedMessage::from_string(text)
        .map_err(|e| bad(format!("not a clearsigned OpenPGP message: {e}")))?;
    if msg.signatures().is_empty() {
        return Err(bad("no signature".into()));
    }
    let signed = msg.signed_text();
    let mut signers = Vec::new();
    for sig in msg.signatures() {
        for key in &keyring.keys {
            if sig.verify(key, signed.as_bytes()).is_ok() {
                signers.push(key.fingerprint().to_string());
                continue;
            }
            for sub in &key.public_subkeys {
                if sub.verify_bindings(&key.primary_key).is_ok()
                    && sig.verify(sub, signed.as_bytes()).is_ok()
                {
                    signers.push(key.fingerprint().to_string());
                }
            }
        }
    }
    if signers.is_empty() {
        let issuers: Vec<String> = msg
            .signatures()
            .iter()
            .flat_map(|s| s.issuer_fingerprint().into_iter().map(|f| f.to_string()))
            .collect();
        return Err(bad(format!(
            "no valid signature by a key of {} ({} signature(s), issuers: {})",
            keyring.source,
            msg.signatures().len(),
            if issuers.is_empty() {
                "unknown".to_owned()
            } else {
                issuers.join(", ")
            }
        )));
    }
    log::debug!("{what}: good signature by {}", signers.join(", "));
    Ok(signed.replace("\r\n", "\n"))
}

/// One file listed in a `Release`'s `SHA256` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Lowercase hex SHA256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The verified fields of a suite's `Release` text.
#[derive(Debug, Clone, Default)]
pub struct Release {
    /// `Suite` (`stable`, `unstable`, `bookworm-security`...).
    pub suite: Option<String>,
    /// `Codename` (`bookworm`, `sid`...).
    pub codename: Option<String>,
    /// `Date`, as written.
    pub date: Option<String>,
    /// `Valid-Until`, as written.
    pub valid_until: Option<String>,
    /// `Acquire-By-Hash: yes`.
    pub acquire_by_hash: bool,
    /// `SHA256`: relative path (`main/binary-amd64/Packages.xz`) → file.
    pub sha256: BTreeMap<String, IndexFile>,
}

impl Release {
    /// Parse the (verified) text of a `Release` / `InRelease`; `what` names
    /// it in errors. A `SHA256` field is required.
    pub fn parse(text: &str, what: &str) -> Result<Release> {
        let ps = deb822::paragraphs(text, what, false)?;
        let p = match ps.as_slice() {
            [p] => p,
            _ => {
                return Err(Error::Release {
                    what: what.to_owned(),
                    msg: format!("{} paragraphs, expected 1", ps.len()),
                })
            }
        };
        let mut r = Release {
            suite: p.get("Suite").map(str::to_owned),
            codename: p.get("Codename").map(str::to_owned),
            date: p.get("Date").map(str::to_owned),
            valid_until: p.get("Valid-Until").map(str::to_owned),
            acquire_by_hash: p
                .get("Acquire-By-Hash")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes")),
            sha256: BTreeMap::new(),
        };
        let sums = p.get("SHA256").ok_or_else(|| Error::Release {
            what: what.to_owned(),
            msg: "no SHA256 field".into(),
        })?;
        for (i, line) in sums.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |msg: &str| Error::Release {
                what: what.to_owned(),
                msg: format!("SHA256 line {}: {msg}: {line:?}", i + 1),
            };
            let mut w = line.split_whitespace();
            let (Some(hash), Some(size), Some(path), None) =
                (w.next(), w.next(), w.next(), w.next())
            else {
                return Err(bad("expected `<sha256> <size> <path>`"));
            };
            let hash = hash.to_ascii_lowercase();
            if !is_sha256_hex(&hash) {
                return Err(bad("bad hash"));
            }
            let size = size.parse().map_err(|_| bad("bad size"))?;
            r.sha256
                .insert(path.to_owned(), IndexFile { sha256: hash, size });
        }
        Ok(r)
    }

    /// The hash and size of `path` (relative to `dists/<suite>/`).
    pub fn file(&self, path: &str) -> Option<&IndexFile> {
        self.sha256.get(path)
    }

    /// Whether `Valid-Until` lies before `now` (seconds since the epoch).
    /// A missing or unreadable field is not expired.
    pub fn expired_at(&self, now: u64) -> bool {
        self.valid_until
            .as_deref()
            .and_then(parse_date)
            .is_some_and(|t| t < now)
    }
}

/// Parse an RFC 2822 date as used by `Release` files
/// (`Fri, 06 Nov 2026 08:08:01 UTC`) into seconds since the epoch.
pub fn parse_date(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.split_once(',').map_or(s, |(_, r)| r.trim());
    let mut w = s.split_whitespace();
    let day: u64 = w.next()?.parse().ok()?;
    let month = w.next()?;
    let year: u64 = w.next()?.parse().ok()?;
    let mut hms = w.next()?.split(':');
    let (h, m, sec): (u64, u64, u64) = (
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
        hms.next().unwrap_or("0").parse().ok()?,
    );
    let offset = match w.next() {
        None | Some("UTC" | "GMT" | "Z" | "+0000") => 0i64,
        Some(z) if z.len() == 5 && z.is_ascii() && (z.starts_with('+') || z.starts_with('-')) => {
            let hh: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[3..5].parse().ok()?;
            let v = hh * 3600 + mm * 60;
            if z.starts_with('-') {
                -v
            } else {
                v
            }
        }
        Some(_) => return None,
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mon = MONTHS.iter().position(|&x| x.eq_ignore_ascii_case(month))? as u64 + 1;
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), for years >= 1970.
    let (y, mo) = if mon <= 2 {
        (year - 1, mon + 9)
    } else {
        (year, mon - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    let t = (days * 86_400 + h * 3600 + m * 60 + sec) as i64 - offset;
    u64::try_from(t).ok()
}

/// Seconds since the epoch now.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The keyring for an apt source: its `Signed-By` path or the distribution
/// default.
pub fn keyring_path(signed_by: Option<&Path>, default: &str) -> PathBuf {
    signed_by.map_or_else(|| PathBuf::from(default), Path::to_owned)
}

/// Largest `InRelease` accepted (bytes).
const MAX_INRELEASE: u64 = 64 << 20;

/// Fetch `dists/<suite>/InRelease` from `base_uri`, verify its OpenPGP
/// signature against `keyring` and parse the signed text. A bad signature is
/// [`Error::Signature`]; nothing of the file is used then. A `Valid-Until`
/// in the past is [`Error::Release`], as apt refuses it: a mirror (or an
/// attacker replaying old signed metadata) could otherwise hold back
/// kernels. With `allow_expired` it is only a warning (the signature still
/// binds every index hash).
pub fn fetch_release(
    http: &Http,
    base_uri: &str,
    suite: &str,
    keyring: &Keyring,
    allow_expired: bool,
) -> Result<Release> {
    let url = join_url(base_uri, &format!("dists/{suite}/InRelease"));
    let body = retrying(http, &url, |u| http.get_bytes(u, MAX_INRELEASE))?;
    let text = String::from_utf8(body).map_err(|_| Error::Signature {
        what: url.clone(),
        msg: "not UTF-8 text".into(),
    })?;
    let signed = verify_clearsigned(&text, keyring, &url)?;
    let release = Release::parse(&signed, &url)?;
    // A validly signed InRelease of another suite must not stand in for this
    // one (apt refuses that too).
    let names = [release.suite.as_deref(), release.codename.as_deref()];
    if names.iter().any(Option::is_some) && !names.contains(&Some(suite)) {
        return Err(Error::Release {
            what: url,
            msg: format!(
                "signed for suite {} / codename {}, not {suite}",
                names[0].unwrap_or("-"),
                names[1].unwrap_or("-")
            ),
        });
    }
    if release.expired_at(now()) {
        let until = release.valid_until.as_deref().unwrap_or("?");
        if !allow_expired {
            return Err(Error::Release {
                what: url,
                msg: format!(
                    "signed metadata expired (Valid-Until: {until}): a stale or replayed mirror; \
                     refused as apt refuses it (--allow-expired uses it anyway)"
                ),
            });
        }
        log::warn!("{url}: signed metadata expired (Valid-Until: {until}); used because of --allow-expired");
    }
    Ok(release)
}

/// Check an index body against the Release's size and SHA256.
pub(crate) fn check_index(body: &[u8], file: &IndexFile, label: &str, url: &str) -> Result<()> {
    if body.len() as u64 != file.size {
        return Err(Error::SizeMismatch {
            package: label.to_owned(),
            source_name: url.to_owned(),
            expected: file.size,
            actual: body.len() as u64,
        });
    }
    let actual = crate::sha256::hash_bytes(body);
    if actual != file.sha256 {
        return Err(Error::HashMismatch {
            package: label.to_owned(),
            source_name: url.to_owned(),
            expected: file.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_date("Fri, 06 Nov 2026 08:08:01 UTC"),
            Some(1_793_952_481)
        );
        assert_eq!(
            parse_date("Sat, 29 Feb 2020 12:00:00 +0100"),
            Some(1_582_974_000)
        );
        assert_eq!(parse_date("garbage"), None);
        assert_eq!(parse_date("Fri, 99 Nov 2026 08:08:01 UTC"), None);
        assert_eq!(parse_date("Fri, 06 Foo 2026 08:08:01 UTC"), None);
        assert_eq!(parse_date("Fri, 06 Nov 2026 08:08:01 +1\u{e9}2"), None);
        assert_eq!(parse_date("Fri, 06 Nov 99999999999999 08:08:01 UTC"), None);
    }

    #[test]
    fn release_fields() {
        let sha = "a".repeat(64);
        let t = format!(
            "Origin: Test\nSuite: unstable\nCodename: sid\nDate: Fri, 30 Oct 2026 08:08:01 UTC\nValid-Until: Fri, 06 Nov 2026 08:08:01 UTC\nAcquire-By-Hash: yes\nMD5Sum:\n 0123 1 main/x\nSHA256:\n {sha} 12 main/binary-amd64/Packages.xz\n {} 34 main/binary-amd64/Packages\n",
            sha.to_uppercase()
        );
        let r = Release::parse(&t, "t").unwrap();
        assert!(r.acquire_by_hash);
        assert_eq!(r.codename.as_deref(), Some("sid"));
        assert_eq!(
            r.file("main/binary-amd64/Packages.xz"),
            Some(&IndexFile {
                sha256: sha.clone(),
                size: 12
            })
        );
        assert_eq!(r.file("main/binary-amd64/Packages").unwrap().sha256, sha);
        assert!(r.expired_at(1_793_952_482));
        assert!(!r.expired_at(1_793_952_480));
        let e = Release::parse("Suite: x\n", "u").unwrap_err();
        assert!(e.to_string().contains("no SHA256"), "{e}");
        let e = Release::parse("SHA256:\n zz 1 a\n", "u").unwrap_err();
        assert!(e.to_string().contains("bad hash"), "{e}");
        let e = Release::parse(&format!("SHA256:\n {sha} x a\n"), "u").unwrap_err();
        assert!(e.to_string().contains("bad size"), "{e}");
    }
}
