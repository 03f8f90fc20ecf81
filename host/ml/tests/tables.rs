//! Users' own tables: CSV with real quoting, TSV, JSON Lines; label sets inferred
//! deterministically, saved and loaded, and enforced; every refusal names the line.

use securerouter_ml::data::{
    Columns, Format, Label, LabelSet, parse_table, parse_table_with, read_table, read_table_with,
};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tables")
        .join(name)
}

fn err<T: std::fmt::Debug>(r: securerouter_ml::Result<T>) -> String {
    format!("{}", r.unwrap_err())
}

fn classes(labels: &[Label]) -> Vec<u32> {
    labels.iter().map(|l| l.class().unwrap()).collect()
}

#[test]
fn csv_with_quoted_commas_quotes_and_newlines() {
    let path = fixture("reviews.csv");
    let t = read_table(&path, &Columns::new("review", "label"), Format::Csv).unwrap();
    let texts: Vec<&str> = t.examples.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Great value, fast delivery.",
            "The box said \"waterproof\"; it was not.",
            "Broke after a week.\nWould not buy again.",
            "Works as described",
            "Meh, it's \"fine\", I guess",
            "Arrived early and well packed",
        ]
    );
    // Named labels: sorted, whatever order they appear in.
    assert_eq!(
        t.labels,
        LabelSet::classes(["negative", "neutral", "positive"]).unwrap()
    );
    let labels: Vec<Label> = t.examples.iter().map(|e| e.label).collect();
    assert_eq!(classes(&labels), [2, 0, 0, 2, 1, 2]);
    assert!(t.examples.iter().all(|e| e.text_pair.is_none()));

    // Integer labels are classes as given (0..=5 for ratings 1..5) ...
    let t = read_table(&path, &Columns::new("review", "rating"), Format::Csv).unwrap();
    assert_eq!(t.labels, LabelSet::numbered(6).unwrap());
    let labels: Vec<Label> = t.examples.iter().map(|e| e.label).collect();
    assert_eq!(classes(&labels), [5, 1, 1, 4, 3, 5]);
    // ... or scores, when the caller says so.
    let ex = read_table_with(
        &path,
        &Columns::new("review", "rating"),
        Format::Csv,
        &LabelSet::Score,
    )
    .unwrap();
    assert_eq!(ex[2].label, Label::Score(1.0));
}

#[test]
fn jsonl_with_string_and_numeric_labels() {
    let columns = Columns::new("premise", "label").with_pair("hypothesis");
    let t = read_table(&fixture("pairs.jsonl"), &columns, Format::Jsonl).unwrap();
    assert_eq!(t.examples.len(), 5);
    // 1, "0", 2, "1", 0: numbers whether written as JSON numbers or strings.
    assert_eq!(t.labels, LabelSet::numbered(3).unwrap());
    let labels: Vec<Label> = t.examples.iter().map(|e| e.label).collect();
    assert_eq!(classes(&labels), [1, 0, 2, 1, 0]);
    assert_eq!(t.examples[3].text, "Snow fell all night \u{2744}.");
    assert_eq!(t.examples[3].text_pair.as_deref(), Some("It snowed."));
    assert_eq!(t.examples[4].text, "The café \"Blue\" is closed.");

    let t = read_table(
        &fixture("named.jsonl"),
        &Columns::new("text", "label"),
        Format::Jsonl,
    )
    .unwrap();
    assert_eq!(t.labels.names(), ["mixed", "neg", "pos"]);
    let labels: Vec<Label> = t.examples.iter().map(|e| e.label).collect();
    assert_eq!(classes(&labels), [2, 1, 0, 2]);
}

#[test]
fn float_labels_are_scores() {
    let input =
        b"{\"s\": \"a\", \"y\": 0.5}\n{\"s\": \"b\", \"y\": 3}\n{\"s\": \"c\", \"y\": \"-1\"}\n";
    let t = parse_table(input, "f", &Columns::new("s", "y"), Format::Jsonl).unwrap();
    assert_eq!(t.labels, LabelSet::Score);
    let scores: Vec<f64> = t
        .examples
        .iter()
        .map(|e| e.label.score().unwrap())
        .collect();
    assert_eq!(scores, [0.5, 3.0, -1.0]);
}

#[test]
fn tsv_is_unquoted() {
    let input = b"text\tlabel\nsaid \"hi\tthere\"\tx\n";
    // Three fields on line 2: a quote does not protect a tab.
    let e = err(parse_table(
        input,
        "f",
        &Columns::new("text", "label"),
        Format::Tsv,
    ));
    assert_eq!(e, "f, line 2: expected 2 fields as in the header, found 3");
    // Nor does a quote join lines: line 3 is a record of its own.
    let input = b"text\tlabel\n\"quoted\tx\n\nmore\"\n";
    let e = err(parse_table(
        input,
        "f",
        &Columns::new("text", "label"),
        Format::Tsv,
    ));
    assert_eq!(e, "f, line 4: expected 2 fields as in the header, found 1");
    let input = b"text\tlabel\nsaid \"hi\"\tthere\n";
    let t = parse_table(input, "f", &Columns::new("text", "label"), Format::Tsv).unwrap();
    assert_eq!(t.examples[0].text, "said \"hi\"");
}

#[test]
fn a_label_outside_the_saved_set_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("securerouter-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("labels.json");
    let set = LabelSet::classes(["neg", "pos"]).unwrap();
    set.save(&path).unwrap();
    let loaded = LabelSet::load(&path).unwrap();
    assert_eq!(loaded, set);
    LabelSet::Score.save(&path).unwrap();
    assert_eq!(LabelSet::load(&path).unwrap(), LabelSet::Score);

    let e = err(read_table_with(
        &fixture("named.jsonl"),
        &Columns::new("text", "label"),
        Format::Jsonl,
        &loaded,
    ));
    assert!(
        e.ends_with(
            "named.jsonl, line 3: label \"mixed\" is not in the label set (\"neg\", \"pos\")"
        ),
        "{e}"
    );

    std::fs::write(&path, r#"{"kind":"classes","names":["a","b","a"]}"#).unwrap();
    let e = LabelSet::load(&path).unwrap_err();
    assert_eq!(
        format!("{}", std::error::Error::source(&e).unwrap()),
        "class \"a\" appears twice in the label set (\"a\", \"b\", \"a\")"
    );
    std::fs::write(&path, r#"{"kind":"colours"}"#).unwrap();
    assert!(err(LabelSet::load(&path)).ends_with("labels.json is not a label set"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn label_sets_map_names_and_classes_both_ways() {
    let set = LabelSet::sorted(["pos", "neg", "pos", "mixed"]).unwrap();
    assert_eq!(set.names(), ["mixed", "neg", "pos"]);
    assert_eq!(set.len(), 3);
    assert_eq!(set.class("neg").unwrap(), 1);
    assert_eq!(set.name(2).unwrap(), "pos");
    assert_eq!(
        err(set.name(3)),
        "class 3 is not in the label set of 3 classes (\"mixed\", \"neg\", \"pos\")"
    );
    assert_eq!(
        err(set.class("Pos")),
        "label \"Pos\" is not in the label set (\"mixed\", \"neg\", \"pos\")"
    );
    assert!(set.check(Label::Class(2)).is_ok());
    assert!(set.check(Label::Class(3)).is_err());
    assert!(set.check(Label::Score(1.0)).is_err());
    assert!(LabelSet::Score.check(Label::Score(1.0)).is_ok());
    assert_eq!(LabelSet::Score.label("2.5").unwrap(), Label::Score(2.5));
    assert!(LabelSet::classes(Vec::<String>::new()).is_err());
    assert!(LabelSet::classes(["a", " "]).is_err());
    assert!(LabelSet::numbered(0).is_err());
}

#[test]
fn a_multi_line_record_keeps_line_numbers_right() {
    let input = b"text,label\n\"one\ntwo\nthree\",a\nfour,b,extra\n";
    let e = err(parse_table(
        input,
        "f.csv",
        &Columns::new("text", "label"),
        Format::Csv,
    ));
    assert_eq!(
        e,
        "f.csv, line 5: expected 2 fields as in the header, found 3"
    );
}

#[test]
fn malformed_tables_are_refused_naming_the_line() {
    let single = Columns::new("text", "label");
    let pair = Columns::new("text", "label").with_pair("other");
    let cases: &[(&[u8], Format, &Columns, &str)] = &[
        (
            b"review,label\nfine,a\n",
            Format::Csv,
            &single,
            "f: no column \"text\" in the header (columns: (\"review\", \"label\"))",
        ),
        (
            b"text,label\nfine,a\n",
            Format::Csv,
            &pair,
            "f: no column \"other\" in the header (columns: (\"text\", \"label\"))",
        ),
        (
            b"text,label\nfine,a\n\nfine,b,c\n",
            Format::Csv,
            &single,
            "f, line 4: expected 2 fields as in the header, found 3",
        ),
        (
            b"text,label\nfine,a\n\"\xc3\x28\",b\n",
            Format::Csv,
            &single,
            "f, line 3: not valid UTF-8",
        ),
        (
            b"text,label\n\" \",a\n",
            Format::Csv,
            &single,
            "f, line 2: the \"text\" column is empty",
        ),
        (
            b"text,label\nfine,\n",
            Format::Csv,
            &single,
            "f, line 2: the \"label\" column is empty",
        ),
        (
            b"",
            Format::Csv,
            &single,
            "f is empty: expected a header line",
        ),
        (b"text,label\n", Format::Csv, &single, "f has no examples"),
        (
            b"\n\n",
            Format::Jsonl,
            &single,
            "f is empty: expected one JSON object per line",
        ),
        (
            b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 1,}\n",
            Format::Jsonl,
            &single,
            "f, line 2: not valid JSON",
        ),
        (
            b"{\"text\": \"a\", \"label\": 1}\n[1, 2]\n",
            Format::Jsonl,
            &single,
            "f, line 2: expected a JSON object, found an array",
        ),
        (
            b"{\"sentence\": \"a\", \"label\": 1}\n",
            Format::Jsonl,
            &single,
            "f, line 1: no key \"text\" in the object (keys: (\"label\", \"sentence\"))",
        ),
        (
            b"{\"text\": \"a\", \"label\": true}\n",
            Format::Jsonl,
            &single,
            "f, line 1: \"label\" is a boolean, expected a string or a number",
        ),
        (
            b"{\"text\": 7, \"label\": 1}\n",
            Format::Jsonl,
            &single,
            "f, line 1: \"text\" is a number, expected a string",
        ),
        (
            b"{\"text\": \"a\", \"label\": 1, \"other\": \"\"}\n",
            Format::Jsonl,
            &pair,
            "f, line 1: the \"other\" column is empty",
        ),
        (
            b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"\xff\", \"label\": 1}\n",
            Format::Jsonl,
            &single,
            "f, line 2: not valid UTF-8",
        ),
        (
            b"{\"text\": \"a\", \"label\": \"good\"}\n{\"text\": \"b\", \"label\": 1}\n",
            Format::Jsonl,
            &single,
            "f: labels mix names and numbers (line 1: \"good\", line 2: \"1\"); use one kind",
        ),
        (
            b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 12345}\n",
            Format::Jsonl,
            &single,
            "f, line 2: label 12345 is too large for a class number (at most 9999); give the \
             label set if these are scores or ids",
        ),
    ];
    for (input, format, columns, want) in cases {
        assert_eq!(
            err(parse_table(input, "f", columns, *format)),
            *want,
            "{format} {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let e = err(parse_table_with(
        b"text,label\nfine,good\n",
        "f",
        &single,
        Format::Csv,
        &LabelSet::Score,
    ));
    assert_eq!(e, "f, line 2: score \"good\" is not a number");
}

#[test]
fn formats_from_names_and_extensions() {
    assert_eq!(
        Format::from_path(Path::new("a/b.CSV")).unwrap_or(Format::Tsv),
        Format::Csv
    );
    assert_eq!(
        Format::from_path(Path::new("b.jsonl")).unwrap(),
        Format::Jsonl
    );
    assert_eq!(
        Format::from_path(Path::new("b.ndjson")).unwrap(),
        Format::Jsonl
    );
    assert_eq!(Format::from_path(Path::new("b.tsv")).unwrap(), Format::Tsv);
    let e = err(Format::from_path(Path::new("b.txt")));
    assert!(e.contains("extension \"txt\""), "{e}");
    assert_eq!("JSONL".parse::<Format>().unwrap(), Format::Jsonl);
    assert!("xml".parse::<Format>().is_err());
}
