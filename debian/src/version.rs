//! Debian version ordering (`dpkg --compare-versions`).

use std::cmp::Ordering;

/// Compare two Debian versions (`[epoch:]upstream[-revision]`) the way dpkg
/// does, including `~` sorting before everything.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ra) = split_epoch(a);
    let (eb, rb) = split_epoch(b);
    ea.cmp(&eb).then_with(|| {
        let (ua, da) = ra.rsplit_once('-').unwrap_or((ra, ""));
        let (ub, db) = rb.rsplit_once('-').unwrap_or((rb, ""));
        compare_part(ua, ub).then_with(|| compare_part(da, db))
    })
}

fn split_epoch(v: &str) -> (u64, &str) {
    match v.split_once(':') {
        Some((e, rest)) if e.bytes().all(|c| c.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit / digit comparison of one
/// version part (or of a whole string that has no epoch or revision, such
/// as a kernel release: GRUB's `sort -V` order of `vmlinuz-*` agrees on
/// Debian kernel releases). Digit runs compare as numbers, `~` sorts before
/// anything, letters before other characters.
pub fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefix.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            match order(ca).cmp(&order(cb)) {
                Ordering::Equal => {}
                o => return o,
            }
            if ca.is_some() {
                a = &a[1..];
            }
            if cb.is_some() {
                b = &b[1..];
            }
        }
        // Digit run, compared numerically without overflow.
        let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let (da, db) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
        match da.len().cmp(&db.len()).then_with(|| da.cmp(db)) {
            Ordering::Equal => {}
            o => return o,
        }
        a = &a[na..];
        b = &b[nb..];
    }
    Ordering::Equal
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_order() {
        let lt = |a, b| assert_eq!(compare(a, b), Ordering::Less, "{a} < {b}");
        lt("6.1.158-1", "6.1.159-1");
        lt("6.12.9-1", "6.12.10-1");
        lt("1.0~rc1", "1.0");
        lt("1.0", "1.0a");
        lt("1.0-1", "1:0.1");
        lt("6.1.0-9", "6.1.0-10");
        lt("1.0+b1", "1.0+b2");
        assert_eq!(compare("01.0", "1.0"), Ordering::Equal);
        assert_eq!(compare("1.0-0", "1.0-0"), Ordering::Equal);
    }

    #[test]
    fn whole_strings() {
        assert_eq!(compare_part("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(compare_part("1.0", "1.0"), Ordering::Equal);
        assert_eq!(compare_part("1.0a", "1.0+"), Ordering::Less);
        assert_eq!(
            compare_part("6.1.0-10-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
    }
}
