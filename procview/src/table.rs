//! The line-level grammar shared by `/proc/kmlink/stats` and `events`:
//! whitespace-separated fields under a `# …` header, columns found by name.

use std::collections::HashMap;

use crate::name::Name;

/// A line of a /proc file that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The line as read.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Column names of a header, by position, with a name → index map.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Columns {
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let names: Vec<String> = names.into_iter().map(str::to_string).collect();
        let mut index = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            // The first of two equally named columns wins.
            index.entry(n.clone()).or_insert(i);
        }
        Columns { names, index }
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The first of `required` that the header lacks.
    pub(crate) fn missing<'a>(&self, required: &[&'a str]) -> Option<&'a str> {
        required.iter().copied().find(|c| !self.has(c))
    }
}

/// One data line split into fields, with the header to look columns up in.
pub(crate) struct Row<'a> {
    pub(crate) line: usize,
    pub(crate) text: &'a str,
    fields: Vec<&'a str>,
    columns: &'a Columns,
}

impl<'a> Row<'a> {
    /// Splits `text`; the field count must match the header.
    pub(crate) fn split(
        line: usize,
        text: &'a str,
        columns: &'a Columns,
    ) -> Result<Self, ParseError> {
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        let row = Row {
            line,
            text,
            fields,
            columns,
        };
        if row.fields.len() != columns.len() {
            return Err(row.error(format!(
                "{} fields where the header has {} columns ({})",
                row.fields.len(),
                columns.len(),
                columns.names.join(" ")
            )));
        }
        Ok(row)
    }

    /// Splits `text` whose last column is free text that may hold spaces
    /// (a `%pS` symbol of a module: `f+0x1/0x2 [mod]`): the fields before it
    /// must all be there.
    pub(crate) fn split_tail(
        line: usize,
        text: &'a str,
        columns: &'a Columns,
    ) -> Result<Self, ParseError> {
        let n = columns.len();
        let mut fields: Vec<&str> = Vec::with_capacity(n);
        let mut rest = text.trim_start();
        while fields.len() + 1 < n {
            let Some((f, r)) = rest.split_once(|c: char| c.is_ascii_whitespace()) else {
                break;
            };
            fields.push(f);
            rest = r.trim_start();
        }
        if !rest.is_empty() {
            fields.push(rest.trim_end());
        }
        let row = Row {
            line,
            text,
            fields,
            columns,
        };
        if row.fields.len() != n {
            return Err(row.error(format!(
                "{} fields where the header has {} columns ({})",
                row.fields.len(),
                n,
                columns.names.join(" ")
            )));
        }
        Ok(row)
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            text: self.text.to_string(),
            reason: reason.into(),
        }
    }

    /// The raw field of column `name`, if the header has it.
    pub(crate) fn get(&self, name: &str) -> Option<&'a str> {
        self.columns.index.get(name).map(|&i| self.fields[i])
    }

    /// A field the caller checked the header for.
    pub(crate) fn field(&self, name: &str) -> Result<&'a str, ParseError> {
        self.get(name)
            .ok_or_else(|| self.error(format!("no column `{name}`")))
    }

    /// A required unsigned number.
    pub(crate) fn num(&self, name: &str) -> Result<u64, ParseError> {
        self.opt_num(name)?.ok_or_else(|| {
            self.error(format!(
                "column `{name}` is `-` or absent, a number is required"
            ))
        })
    }

    /// An optional unsigned number: absent column or `-` give `None`.
    pub(crate) fn opt_num(&self, name: &str) -> Result<Option<u64>, ParseError> {
        match self.get(name) {
            None | Some("-") => Ok(None),
            Some(f) => f.parse::<u64>().map(Some).map_err(|_| {
                self.error(format!("column `{name}` is {f:?}, not an unsigned number"))
            }),
        }
    }

    /// An optional count the monitor prints signed (`%lld`): per-CPU shards
    /// summed while others update them can be momentarily below zero,
    /// which reads as 0.
    pub(crate) fn opt_count_signed(&self, name: &str) -> Result<Option<u64>, ParseError> {
        match self.get(name) {
            None | Some("-") => Ok(None),
            Some(f) => f
                .parse::<i64>()
                .map(|v| Some(v.max(0).unsigned_abs()))
                .or_else(|_| f.parse::<u64>().map(Some))
                .map_err(|_| self.error(format!("column `{name}` is {f:?}, not a number"))),
        }
    }

    /// An optional `0x…` hex number: absent column or `-` give `None`.
    pub(crate) fn opt_hex(&self, name: &str) -> Result<Option<u64>, ParseError> {
        match self.get(name) {
            None | Some("-") => Ok(None),
            // C's `%#llx` prints 0 without the prefix.
            Some("0") => Ok(Some(0)),
            Some(f) => f
                .strip_prefix("0x")
                .or_else(|| f.strip_prefix("0X"))
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.error(format!("column `{name}` is {f:?}, not a 0x… hex number"))
                }),
        }
    }

    /// An optional escaped name: absent column or `-` give `None`.
    pub(crate) fn opt_name(&self, name: &str) -> Result<Option<Name>, ParseError> {
        match self.get(name) {
            None | Some("-") => Ok(None),
            Some(f) => Name::unescape(f)
                .map(Some)
                .map_err(|e| self.error(format!("column `{name}`: {e}"))),
        }
    }
}
