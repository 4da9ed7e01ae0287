//! `Module.symvers` from a kernel headers package.
//!
//! Since Linux 5.10 each line is
//! `0xCRC\tsymbol\tvmlinux|path/module\tEXPORT_SYMBOL[_GPL]\t[namespace]`.
//! Linux 5.4–5.9 put the namespace third
//! (`0xCRC\tsymbol\tnamespace\tmodule\tEXPORT...`); both are accepted, told
//! apart by where the `EXPORT_` field is. Kernels without MODVERSIONS write
//! `0x00000000`, kept as `Some(0)`.

use crate::{Error, Export};

/// Parse the whole file; a malformed line is an error naming its number.
pub fn parse(text: &str) -> Result<Vec<Export>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_line(line).map_err(|what| Error::Symvers { line: i + 1, what })?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Export, String> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() < 4 || f.len() > 5 {
        return Err(format!(
            "expected 4 or 5 tab-separated fields, found {}: {line:?}",
            f.len()
        ));
    }
    let hex = f[0]
        .strip_prefix("0x")
        .or_else(|| f[0].strip_prefix("0X"))
        .ok_or_else(|| format!("CRC {:?} does not start with 0x", f[0]))?;
    let crc = u32::from_str_radix(hex, 16).map_err(|e| format!("CRC {:?}: {e}", f[0]))?;
    let (owner, kind, ns) = if f[3].starts_with("EXPORT_") {
        (f[2], f[3], f.get(4).copied().unwrap_or(""))
    } else if f.len() == 5 && f[4].starts_with("EXPORT_") {
        (f[3], f[4], f[2])
    } else {
        return Err(format!("no EXPORT_SYMBOL* field in {line:?}"));
    };
    let gpl = match kind {
        "EXPORT_SYMBOL" => false,
        k if k.starts_with("EXPORT_SYMBOL_GPL") => true,
        k if k.starts_with("EXPORT_SYMBOL") || k.starts_with("EXPORT_UNUSED_SYMBOL") => {
            k.contains("GPL")
        }
        k => return Err(format!("unknown export kind {k:?}")),
    };
    if f[1].is_empty() || f[1].contains(char::is_whitespace) {
        return Err(format!("bad symbol name {:?}", f[1]));
    }
    if owner.is_empty() {
        return Err("empty module field".into());
    }
    Ok(Export {
        name: f[1].to_owned(),
        crc: Some(crc),
        gpl,
        namespace: (!ns.is_empty()).then(|| ns.to_owned()),
        owner: owner.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_layouts() {
        let text = "0xfcca5424\tregister_kprobe\tvmlinux\tEXPORT_SYMBOL_GPL\t\n\
                    0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n\
                    0x12345678\tcxl_foo\tdrivers/cxl/core/cxl_core\tEXPORT_SYMBOL_GPL\tCXL\n\
                    \n\
                    0x00000001\told_ns\tOLDNS\tfs/foo\tEXPORT_SYMBOL\n\
                    0x00000002\tfour\tvmlinux\tEXPORT_SYMBOL\r\n";
        let v = parse(text).expect("parse");
        assert_eq!(v.len(), 5);
        assert_eq!(
            v[0],
            Export {
                name: "register_kprobe".into(),
                crc: Some(0xfcca_5424),
                gpl: true,
                namespace: None,
                owner: "vmlinux".into()
            }
        );
        assert!(!v[1].gpl);
        assert_eq!(v[2].namespace.as_deref(), Some("CXL"));
        assert_eq!(v[2].owner, "drivers/cxl/core/cxl_core");
        assert_eq!(v[3].namespace.as_deref(), Some("OLDNS"));
        assert_eq!(v[3].owner, "fs/foo");
        assert_eq!(v[4].name, "four");
    }

    #[test]
    fn garbage_names_the_line() {
        for (text, line) in [
            ("0x1\ta\tvmlinux\tEXPORT_SYMBOL\t\ngarbage line\n", 2),
            (
                "0x1\ta\tvmlinux\tEXPORT_SYMBOL\t\n\n0xZZ\tb\tvmlinux\tEXPORT_SYMBOL\t\n",
                3,
            ),
            ("1234\ta\tvmlinux\tEXPORT_SYMBOL\t\n", 1),
            ("0x1\ta\tvmlinux\tEXPORT_WHATEVER\t\n", 1),
            ("0x1\ta\tvmlinux\tEXPORT_SYMBOL\tns\textra\n", 1),
        ] {
            match parse(text) {
                Err(Error::Symvers { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
