//! Minimal deb822 paragraph reader (apt `.sources`, `Packages`, `control`).

use std::borrow::Cow;

use crate::{Error, Result};

/// One `Key: value` field; multi-line values are joined with `\n`
/// (continuation lines keep their text minus the leading space; a lone `.`
/// stands for an empty line).
#[derive(Debug)]
pub(crate) struct Field<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: Cow<'a, str>,
}

/// One paragraph: its fields in order and the line it starts on (1-based).
#[derive(Debug)]
pub(crate) struct Paragraph<'a> {
    pub(crate) line: usize,
    pub(crate) fields: Vec<Field<'a>>,
}

impl<'a> Paragraph<'a> {
    /// The value of `key` (ASCII case-insensitive), first occurrence.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.key.eq_ignore_ascii_case(key))
            .map(|f| f.value.as_ref())
    }
}

/// Split `text` into paragraphs. `comments` enables `#` comment lines (apt
/// sources); they may appear anywhere and do not end a paragraph.
pub(crate) fn paragraphs<'a>(
    text: &'a str,
    what: &str,
    comments: bool,
) -> Result<Vec<Paragraph<'a>>> {
    let mut out = Vec::new();
    let mut cur: Option<Paragraph<'a>> = None;
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if comments && line.trim_start().starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if let Some(p) = cur.take() {
                out.push(p);
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let field = cur
                .as_mut()
                .and_then(|p| p.fields.last_mut())
                .ok_or_else(|| syntax(what, lineno, "continuation line without a field"))?;
            let cont = line.trim();
            let cont = if cont == "." { "" } else { cont };
            let v = field.value.to_mut();
            if !v.is_empty() {
                v.push('\n');
            }
            v.push_str(cont);
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(syntax(
                what,
                lineno,
                &format!("expected `Field: value`, got {:?}", truncate(line)),
            ));
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(syntax(
                what,
                lineno,
                &format!("bad field name {:?}", truncate(key)),
            ));
        }
        let p = cur.get_or_insert_with(|| Paragraph {
            line: lineno,
            fields: Vec::new(),
        });
        p.fields.push(Field {
            key,
            value: Cow::Borrowed(value.trim()),
        });
    }
    if let Some(p) = cur.take() {
        out.push(p);
    }
    Ok(out)
}

pub(crate) fn syntax(what: &str, line: usize, msg: &str) -> Error {
    Error::Syntax {
        what: what.to_owned(),
        line,
        msg: msg.to_owned(),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn folds_continuations_and_skips_comments() {
        let t = "A: 1\n# c\nB: x\n y\n .\n z\n\n\nC: 3\n";
        let ps = paragraphs(t, "t", true).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("b"), Some("x\ny\n\nz"));
        assert_eq!(ps[1].line, 9);
    }

    #[test]
    fn rejects_garbage() {
        let e = paragraphs("A: 1\nnot a field\n", "thing", false).unwrap_err();
        assert!(e.to_string().contains("thing, line 2"), "{e}");
        assert!(paragraphs(" cont\n", "t", false).is_err());
    }
}
