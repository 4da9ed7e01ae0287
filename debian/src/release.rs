//! Kernel release strings (`uname -r`): Debian's `6.1.0-47-amd64` and
//! `6.12.107+deb13-cloud-amd64`, Ubuntu's `6.8.0-1012-aws`.
//!
//! The one parser of a release's parts: the crawler's discovery, its
//! substitutes for a withdrawn pinned kernel and the linker's host records
//! all read a release through [`parse_release`].

use crate::version;

/// The parts of a release string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseParts<'a> {
    /// `6.1.0`, `6.12.107`.
    pub upstream: &'a str,
    /// Debian 6.1 / Ubuntu ABI number (`47`), if any.
    pub abi: Option<&'a str>,
    /// `deb13`, `deb12.1`, if any.
    pub local: Option<&'a str>,
    /// `amd64`, `cloud-amd64`, `generic`.
    pub flavour: &'a str,
}

/// Split a kernel release. `None` for names that are not a full release,
/// such as meta packages' `6.12-amd64` (two version components) or
/// `amd64`.
pub fn parse_release(release: &str) -> Option<ReleaseParts<'_>> {
    let (head, rest) = release.split_once('-')?;
    let (upstream, local) = match head.split_once('+') {
        Some((u, l)) => (u, Some(l)),
        None => (head, None),
    };
    let nums: Vec<&str> = upstream.split('.').collect();
    if nums.len() < 3
        || nums
            .iter()
            .any(|n| n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    if local.is_some_and(|l| {
        l.is_empty()
            || !l
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'~')
    }) {
        return None;
    }
    let (abi, flavour) = match rest.split_once('-') {
        Some((a, f)) if !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) => (Some(a), f),
        _ => (None, rest),
    };
    let flavour_ok = !flavour.is_empty()
        && flavour
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && flavour
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase())
        && !flavour.ends_with('-');
    if !flavour_ok {
        return None;
    }
    Some(ReleaseParts {
        upstream,
        abi,
        local,
        flavour,
    })
}

/// Order releases by version (then flavour).
pub fn order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |r: &str| match parse_release(r) {
        Some(p) => (
            format!(
                "{}{}{}",
                p.upstream,
                p.abi.map(|a| format!(".{a}")).unwrap_or_default(),
                p.local.map(|l| format!("+{l}")).unwrap_or_default()
            ),
            p.flavour.to_owned(),
        ),
        None => (r.to_owned(), String::new()),
    };
    let (ka, fa) = key(a);
    let (kb, fb) = key(b);
    version::compare(&ka, &kb).then_with(|| fa.cmp(&fb))
}

impl<'a> ReleaseParts<'a> {
    /// `6.1` of `6.1.0`: the series a kernel belongs to.
    pub fn major_minor(&self) -> &'a str {
        let mut dots = self.upstream.match_indices('.').map(|(i, _)| i);
        let _major = dots.next();
        match dots.next() {
            Some(i) => &self.upstream[..i],
            None => self.upstream,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        let p = parse_release("6.1.0-47-amd64").unwrap();
        assert_eq!(
            (p.upstream, p.abi, p.local, p.flavour),
            ("6.1.0", Some("47"), None, "amd64")
        );
        let p = parse_release("6.12.107+deb13-cloud-amd64").unwrap();
        assert_eq!(
            (p.upstream, p.abi, p.local, p.flavour),
            ("6.12.107", None, Some("deb13"), "cloud-amd64")
        );
        let p = parse_release("6.12.90+deb12.1-rt-amd64").unwrap();
        assert_eq!((p.local, p.flavour), (Some("deb12.1"), "rt-amd64"));
        let p = parse_release("6.8.0-1012-aws").unwrap();
        assert_eq!((p.abi, p.flavour), (Some("1012"), "aws"));
        for bad in [
            "6.12-amd64",
            "amd64",
            "6.8.0-49",
            "6.12-amd64-signed-template",
            "x.1.2-amd64",
            "6.1.0-47-",
            "",
        ] {
            assert!(parse_release(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn series_and_order() {
        let p = parse_release("6.12.107+deb13-cloud-amd64").unwrap();
        assert_eq!(p.major_minor(), "6.12");
        assert!(order("6.1.0-9-amd64", "6.1.0-10-amd64").is_lt());
        assert!(order("6.1.0-10-amd64", "6.1.0-10-cloud-amd64").is_lt());
    }
}
