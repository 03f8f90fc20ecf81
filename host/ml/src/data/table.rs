//! A user's own labelled data as a table: CSV (quoted fields as RFC 4180, via the `csv`
//! crate), TSV (GLUE-style, no quoting) or JSON Lines, with the columns named by the caller.
//!
//! Labels may be named (`"positive"`), integers (`0`, `"2"`) or real scores (`3.8`). When no
//! label set is given, one is inferred deterministically: named labels in sorted order, integer
//! labels as given (class `k` is label `k`), scores as a regression. Data read later for the
//! same model (a dev file, new data) is read against the saved set with [`read_table_with`],
//! which refuses a label the model was not trained on.

use super::example::{Example, Label, LabelSet, parse_score};
use super::{lines, located};
use crate::error::{Error, Result, invalid};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Which columns (CSV/TSV header names, JSON keys) hold the example's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    /// The sentence, or the first sentence of a pair.
    pub text: String,
    /// The second sentence of a pair, if the task has pairs.
    pub text_pair: Option<String>,
    /// The gold label.
    pub label: String,
}

impl Columns {
    /// Single sentences in `text`, labels in `label`.
    pub fn new(text: impl Into<String>, label: impl Into<String>) -> Self {
        Columns {
            text: text.into(),
            text_pair: None,
            label: label.into(),
        }
    }

    /// The same, with the second sentence of a pair in `text_pair`.
    pub fn with_pair(mut self, text_pair: impl Into<String>) -> Self {
        self.text_pair = Some(text_pair.into());
        self
    }
}

/// A table's file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated with a header row; fields may be quoted (`"a, ""b""\nc"`).
    Csv,
    /// Tab-separated with a header row and no quoting (`"` is an ordinary character), as GLUE.
    Tsv,
    /// One JSON object per line, keyed by column name.
    Jsonl,
}

impl Format {
    /// The format of a file by its extension: `.csv`, `.tsv`, `.jsonl` or `.ndjson`.
    ///
    /// # Errors
    /// If the extension is none of these.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        ext.parse().map_err(|_| {
            Error::Invalid(format!(
                "{}: cannot tell the format from the extension {ext:?} (expected .csv, .tsv, \
                 .jsonl or .ndjson)",
                path.display()
            ))
        })
    }
}

impl FromStr for Format {
    type Err = Error;

    /// `csv`, `tsv`, `jsonl` or `ndjson`, case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "tsv" => Ok(Format::Tsv),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            _ => invalid!("unknown table format {s:?} (formats: csv, tsv, jsonl)"),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Jsonl => "jsonl",
        })
    }
}

/// A table's examples and the label set their classes are numbered by.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// The labels, inferred from the file as [`parse_table`] says.
    pub labels: LabelSet,
}

/// Integer labels above this are refused when inferring a label set: they are ids or scores,
/// not class numbers (read them with [`read_table_with`] and a set).
pub const MAX_NUMBERED_CLASS: u32 = 9_999;

/// Reads a table, inferring its label set; see [`parse_table`].
///
/// # Errors
/// If the file cannot be read or is refused by [`parse_table`].
pub fn read_table(path: &Path, columns: &Columns, format: Format) -> Result<Table> {
    let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
    parse_table(&bytes, &path.display().to_string(), columns, format)
}

/// Reads a table against a known label set; see [`parse_table_with`].
///
/// # Errors
/// If the file cannot be read or is refused by [`parse_table_with`].
pub fn read_table_with(
    path: &Path,
    columns: &Columns,
    format: Format,
    labels: &LabelSet,
) -> Result<Vec<Example>> {
    let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
    parse_table_with(&bytes, &path.display().to_string(), columns, format, labels)
}

/// Parses a table and infers its label set: all labels named (and not numbers) give the
/// sorted names; all non-negative integers up to [`MAX_NUMBERED_CLASS`] give classes `0..=max`
/// (class `k` is the label `k`); numbers otherwise (some not integers, or negative) give a
/// score. Integer scores look like classes: read them with [`parse_table_with`] and
/// [`LabelSet::Score`]. `source` names the input in errors.
///
/// # Errors
/// As [`parse_table_with`], and if named and numeric labels are mixed (naming a line of each)
/// or an integer label is above [`MAX_NUMBERED_CLASS`].
pub fn parse_table(bytes: &[u8], source: &str, columns: &Columns, format: Format) -> Result<Table> {
    let rows = rows(bytes, source, columns, format)?;
    let named = rows.iter().find(|r| matches!(r.label, Raw::Name(_)));
    let numeric = rows.iter().find(|r| !matches!(r.label, Raw::Name(_)));
    let labels = match (named, numeric) {
        (Some(a), Some(b)) => invalid!(
            "{source}: labels mix names and numbers (line {}: {:?}, line {}: {:?}); use one kind",
            a.line,
            a.label.text(),
            b.line,
            b.label.text()
        ),
        (Some(_), None) => LabelSet::sorted(rows.iter().map(|r| r.label.text()))?,
        (None, _) if rows.iter().all(|r| matches!(r.label, Raw::Int(_))) => {
            let (mut max, mut line) = (0, 0);
            for r in &rows {
                if let Raw::Int(k) = r.label
                    && k >= max
                {
                    (max, line) = (k, r.line);
                }
            }
            if max > MAX_NUMBERED_CLASS {
                invalid!(
                    "{source}, line {line}: label {max} is too large for a class number (at most \
                     {MAX_NUMBERED_CLASS}); give the label set if these are scores or ids"
                );
            }
            LabelSet::numbered(max + 1)?
        }
        (None, _) => LabelSet::Score,
    };
    let examples = resolve(rows, source, &labels)?;
    Ok(Table { examples, labels })
}

/// Parses a table whose labels must be in `labels`: CSV or TSV with a header row (a leading
/// byte-order mark ignored, blank lines skipped, every row as many fields as the header), or
/// JSON Lines (blank lines skipped) of objects with a string text (and pair) and a string or
/// number label. A class label is looked up by its text (an integer `2` as `"2"`); a score
/// must be a finite number. Texts are trimmed. `source` names the input in errors.
///
/// # Errors
/// Naming `source` and the line (from 1): an empty input or one without examples, a missing
/// column (listing the header's columns or the object's keys), a wrong number of fields,
/// invalid UTF-8 or JSON, an empty text or label, or a label not in `labels` (naming it).
pub fn parse_table_with(
    bytes: &[u8],
    source: &str,
    columns: &Columns,
    format: Format,
    labels: &LabelSet,
) -> Result<Vec<Example>> {
    resolve(rows(bytes, source, columns, format)?, source, labels)
}

/// A label as read, before it is mapped through a label set.
#[derive(Clone, Debug, PartialEq)]
enum Raw {
    /// A non-negative integer (a JSON integer, or a field of digits).
    Int(u32),
    /// Another finite number; the text as written.
    Num(f64, String),
    /// Anything else: a name.
    Name(String),
}

impl Raw {
    /// A label field's text, trimmed (already checked not empty).
    fn from_text(text: &str) -> Raw {
        if let Ok(k) = text.parse::<u32>() {
            return Raw::Int(k);
        }
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Raw::Num(x, text.to_string()),
            _ => Raw::Name(text.to_string()),
        }
    }

    /// The text a class is looked up by.
    fn text(&self) -> String {
        match self {
            Raw::Int(k) => k.to_string(),
            Raw::Num(_, text) | Raw::Name(text) => text.clone(),
        }
    }
}

/// One example as read.
struct Row {
    line: u64,
    text: String,
    text_pair: Option<String>,
    label: Raw,
}

/// Maps each row's label through `labels`.
fn resolve(rows: Vec<Row>, source: &str, labels: &LabelSet) -> Result<Vec<Example>> {
    rows.into_iter()
        .map(|r| {
            let at = format!("{source}, line {}", r.line);
            let label = match (&r.label, labels) {
                (Raw::Int(k), LabelSet::Score) => Label::Score(f64::from(*k)),
                (Raw::Num(x, _), LabelSet::Score) => Label::Score(*x),
                (Raw::Name(name), LabelSet::Score) => {
                    parse_score(name).map(Label::Score).map_err(located(&at))?
                }
                (raw, LabelSet::Classes { .. }) => {
                    Label::Class(labels.class(&raw.text()).map_err(located(&at))?)
                }
            };
            Ok(Example {
                text: r.text,
                text_pair: r.text_pair,
                label,
            })
        })
        .collect()
}

/// Reads the rows of a table, checking everything but the label set.
fn rows(bytes: &[u8], source: &str, columns: &Columns, format: Format) -> Result<Vec<Row>> {
    let rows = match format {
        Format::Csv => delimited(bytes, source, columns, b',', true)?,
        Format::Tsv => delimited(bytes, source, columns, b'\t', false)?,
        Format::Jsonl => jsonl(bytes, source, columns)?,
    };
    if rows.is_empty() {
        invalid!("{source} has no examples");
    }
    Ok(rows)
}

/// A trimmed text field, or an error if empty.
fn nonempty(field: &str, at: &str, column: &str) -> Result<String> {
    let field = field.trim();
    if field.is_empty() {
        invalid!("{at}: the {column:?} column is empty");
    }
    Ok(field.to_string())
}

/// CSV (`quoting`) or TSV rows.
fn delimited(
    bytes: &[u8],
    source: &str,
    columns: &Columns,
    delimiter: u8,
    quoting: bool,
) -> Result<Vec<Row>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let csv_error = |e: csv::Error| Error::Parse {
        what: format!(
            "{source}: malformed {}",
            if quoting { "CSV" } else { "TSV" }
        ),
        source: Box::new(e),
    };
    // The line a record starts on. The csv crate's own position counts from where it began
    // reading, before the blank lines it skips, so count from the record's first byte instead
    // (incrementally: records come in order).
    let (mut counted_to, mut counted_lines) = (0usize, 1u64);
    let mut line_of = |r: &csv::ByteRecord| -> u64 {
        let offset = r.position().map_or(0, |p| p.byte());
        let mut start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        while let Some(b'\r' | b'\n') = bytes.get(start) {
            start += 1;
        }
        let from = counted_to.min(start);
        counted_lines += bytes
            .get(from..start)
            .map_or(0, |s| s.iter().filter(|&&b| b == b'\n').count() as u64);
        counted_to = start;
        counted_lines
    };
    let utf8 = |field: &[u8], line: u64| -> Result<String> {
        match std::str::from_utf8(field) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => Err(Error::Parse {
                what: format!("{source}, line {line}: not valid UTF-8"),
                source: Box::new(e),
            }),
        }
    };
    let Some(header) = records.next() else {
        invalid!("{source} is empty: expected a header line")
    };
    let header = header.map_err(csv_error)?;
    let header_line = line_of(&header);
    let names = header
        .iter()
        .map(|f| utf8(f, header_line).map(|s| s.trim().to_string()))
        .collect::<Result<Vec<String>>>()?;
    let find = |name: &str| -> Result<usize> {
        match names.iter().position(|n| n == name) {
            Some(k) => Ok(k),
            None => invalid!(
                "{source}: no column {name:?} in the header (columns: {})",
                super::example::list(&names)
            ),
        }
    };
    let text_at = find(&columns.text)?;
    let pair_at = columns.text_pair.as_deref().map(find).transpose()?;
    let label_at = find(&columns.label)?;
    let mut out = Vec::new();
    for record in records {
        let record = record.map_err(csv_error)?;
        let line = line_of(&record);
        let at = format!("{source}, line {line}");
        if record.len() != names.len() {
            invalid!(
                "{at}: expected {} fields as in the header, found {}",
                names.len(),
                record.len()
            );
        }
        let field = |k: usize, column: &str| -> Result<String> {
            nonempty(&utf8(record.get(k).unwrap_or_default(), line)?, &at, column)
        };
        let text = field(text_at, &columns.text)?;
        let text_pair = match (pair_at, &columns.text_pair) {
            (Some(k), Some(column)) => Some(field(k, column)?),
            _ => None,
        };
        let label = Raw::from_text(&field(label_at, &columns.label)?);
        out.push(Row {
            line,
            text,
            text_pair,
            label,
        });
    }
    Ok(out)
}

/// JSON Lines rows.
fn jsonl(bytes: &[u8], source: &str, columns: &Columns) -> Result<Vec<Row>> {
    use serde_json::Value;
    let mut out = Vec::new();
    let mut any_line = false;
    for (i, line) in lines(bytes, source) {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        any_line = true;
        let at = format!("{source}, line {i}");
        let value: Value = serde_json::from_str(line).map_err(|e| Error::Parse {
            what: format!("{at}: not valid JSON"),
            source: Box::new(e),
        })?;
        let Value::Object(object) = value else {
            invalid!("{at}: expected a JSON object, found {}", kind(&value));
        };
        let get = |key: &str| -> Result<&Value> {
            match object.get(key) {
                Some(v) => Ok(v),
                None => {
                    let keys: Vec<String> = object.keys().cloned().collect();
                    invalid!(
                        "{at}: no key {key:?} in the object (keys: {})",
                        super::example::list(&keys)
                    )
                }
            }
        };
        let text_of = |key: &str| -> Result<String> {
            match get(key)? {
                Value::String(s) => nonempty(s, &at, key),
                other => invalid!("{at}: {key:?} is {}, expected a string", kind(other)),
            }
        };
        let text = text_of(&columns.text)?;
        let text_pair = columns.text_pair.as_deref().map(text_of).transpose()?;
        let label = match get(&columns.label)? {
            Value::String(s) => Raw::from_text(&nonempty(s, &at, &columns.label)?),
            Value::Number(n) => match (n.as_u64(), n.as_f64()) {
                (Some(k), _) if u32::try_from(k).is_ok() => Raw::Int(k as u32),
                (_, Some(x)) if x.is_finite() => Raw::Num(x, n.to_string()),
                _ => invalid!("{at}: label {n} is out of range"),
            },
            other => invalid!(
                "{at}: {:?} is {}, expected a string or a number",
                columns.label,
                kind(other)
            ),
        };
        out.push(Row {
            line: i as u64,
            text,
            text_pair,
            label,
        });
    }
    if !any_line {
        invalid!("{source} is empty: expected one JSON object per line");
    }
    Ok(out)
}

/// A JSON value's kind, for messages.
fn kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_text_is_an_integer_a_number_or_a_name() {
        assert_eq!(Raw::from_text("3"), Raw::Int(3));
        assert_eq!(Raw::from_text("-1"), Raw::Num(-1.0, "-1".into()));
        assert_eq!(Raw::from_text("2.5"), Raw::Num(2.5, "2.5".into()));
        assert_eq!(Raw::from_text("inf"), Raw::Name("inf".into()));
        assert_eq!(Raw::from_text("positive"), Raw::Name("positive".into()));
        assert_eq!(
            Raw::from_text("4294967296"),
            Raw::Num(4294967296.0, "4294967296".into())
        );
    }
}
