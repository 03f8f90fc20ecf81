//! The GLUE task readers: every task's fixture (in GLUE's real layout) loads with the right
//! counts, pairs and labels, and every malformed input is refused naming the line and column.

use securerouter_ml::data::{Dataset, Example, Label, LabelSet, Task};
use securerouter_ml::metrics::Metric;
use std::path::{Path, PathBuf};

fn fixture(task: Task) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/glue")
        .join(task.name())
}

fn load(task: Task) -> Dataset {
    task.load(&fixture(task))
        .unwrap_or_else(|e| panic!("{task}: {e:#}"))
}

fn classes(examples: &[Example]) -> Vec<u32> {
    examples.iter().map(|e| e.label.class().unwrap()).collect()
}

fn err<T: std::fmt::Debug>(r: securerouter_ml::Result<T>) -> String {
    format!("{}", r.unwrap_err())
}

#[test]
fn task_names_parse_case_insensitively() {
    for (name, task) in [
        ("sst2", Task::Sst2),
        ("SST-2", Task::Sst2),
        ("sst_2", Task::Sst2),
        ("CoLA", Task::Cola),
        ("mrpc", Task::Mrpc),
        ("QQP", Task::Qqp),
        ("qnli", Task::Qnli),
        ("Rte", Task::Rte),
        ("mnli", Task::Mnli),
        ("sts-b", Task::Stsb),
        ("STSB", Task::Stsb),
    ] {
        assert_eq!(name.parse::<Task>().unwrap(), task, "{name}");
    }
    for task in Task::ALL {
        assert_eq!(task.name().parse::<Task>().unwrap(), task);
        assert_eq!(task.to_string(), task.name());
    }
    let e = err("wnli".parse::<Task>());
    assert!(e.contains("unknown GLUE task \"wnli\""), "{e}");
    assert!(e.contains("SST-2") && e.contains("STS-B"), "{e}");
}

#[test]
fn tasks_know_their_labels_and_metrics() {
    assert_eq!(
        Task::Mnli.labels(),
        LabelSet::classes(["contradiction", "entailment", "neutral"]).unwrap()
    );
    assert_eq!(
        Task::Rte.labels().names(),
        ["entailment".to_string(), "not_entailment".into()]
    );
    assert_eq!(Task::Qnli.labels(), Task::Rte.labels());
    assert_eq!(Task::Sst2.labels(), LabelSet::numbered(2).unwrap());
    assert_eq!(Task::Stsb.labels(), LabelSet::Score);
    assert!(Task::Stsb.is_regression());
    assert!(Task::ALL.iter().filter(|t| t.is_regression()).count() == 1);
    assert!(!Task::Sst2.is_pair() && !Task::Cola.is_pair());
    assert!(Task::Mrpc.is_pair() && Task::Mnli.is_pair() && Task::Stsb.is_pair());
    assert_eq!(Task::Mrpc.metric(), Metric::AccuracyAndF1);
    assert_eq!(Task::Qqp.metric(), Metric::AccuracyAndF1);
    assert_eq!(Task::Cola.metric(), Metric::Matthews);
    assert_eq!(Task::Stsb.metric(), Metric::PearsonSpearman);
    for task in [Task::Sst2, Task::Qnli, Task::Rte, Task::Mnli] {
        assert_eq!(task.metric(), Metric::Accuracy);
    }
    assert_eq!(Task::Mnli.dev_file(), "dev_matched.tsv");
    assert_eq!(Task::Rte.dev_file(), "dev.tsv");
}

#[test]
fn sst2_loads() {
    let d = load(Task::Sst2);
    assert_eq!((d.train.len(), d.dev.len()), (12, 6));
    assert_eq!(d.dev_mismatched, None);
    assert_eq!(
        d.train[0],
        Example {
            text: "a warm , funny and quietly wise film".into(),
            text_pair: None,
            label: Label::Class(1),
        }
    );
    assert_eq!(classes(&d.train), [1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1]);
    // GLUE's files are not quoted: a `"` is an ordinary character.
    assert_eq!(d.dev[2].text, "it 's \" clever \" in the worst way");
    assert_eq!(
        d.train[11].text,
        "café society rendered with real affection"
    );
}

#[test]
fn cola_loads_headerless_files() {
    let d = load(Task::Cola);
    assert_eq!((d.train.len(), d.dev.len()), (12, 5));
    assert_eq!(
        d.train[0].text,
        "The children watched the parade from the balcony."
    );
    assert_eq!(d.train[0].text_pair, None);
    assert_eq!(classes(&d.train), [1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1]);
    assert_eq!(classes(&d.dev), [1, 0, 1, 0, 1]);
    assert_eq!(d.train[11].text, "She said \"no\" twice.");
}

#[test]
fn mrpc_loads_with_its_byte_order_mark_and_crlf() {
    let d = load(Task::Mrpc);
    assert_eq!((d.train.len(), d.dev.len()), (10, 5));
    assert_eq!(
        d.train[0],
        Example {
            text: "The company said profits rose 12 percent in the third quarter.".into(),
            text_pair: Some("Third-quarter profits climbed 12 percent, the company said.".into()),
            label: Label::Class(1),
        }
    );
    assert_eq!(classes(&d.train), [1, 0, 1, 0, 1, 1, 0, 1, 0, 1]);
    assert_eq!(classes(&d.dev), [1, 0, 1, 0, 1]);
    assert!(d.train[4].text.starts_with("\"We are very pleased,\""));
}

#[test]
fn qqp_loads() {
    let d = load(Task::Qqp);
    assert_eq!((d.train.len(), d.dev.len()), (12, 6));
    assert_eq!(d.train[1].text, "Why is the sky blue?");
    assert_eq!(
        d.train[1].text_pair.as_deref(),
        Some("Why are sunsets red?")
    );
    assert_eq!(classes(&d.train), [1, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1]);
    assert_eq!(classes(&d.dev), [1, 0, 1, 0, 1, 0]);
}

#[test]
fn qnli_and_rte_load_named_labels() {
    let d = load(Task::Qnli);
    assert_eq!((d.train.len(), d.dev.len()), (10, 5));
    assert_eq!(d.train[0].text, "When was the lighthouse built?");
    assert_eq!(
        d.train[0].text_pair.as_deref(),
        Some("The lighthouse was built in 1871 from local granite.")
    );
    // entailment is class 0, not_entailment class 1.
    assert_eq!(classes(&d.train), [0, 1, 0, 1, 0, 1, 0, 0, 1, 0]);

    let d = load(Task::Rte);
    assert_eq!((d.train.len(), d.dev.len()), (10, 4));
    assert_eq!(
        d.train[1].text_pair.as_deref(),
        Some("The minister was re-elected on Friday.")
    );
    assert_eq!(classes(&d.train), [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    assert_eq!(
        d.dev[2].text,
        "Maria Keller won the chess tournament in Zürich."
    );
}

#[test]
fn mnli_loads_matched_and_mismatched_dev() {
    let d = load(Task::Mnli);
    assert_eq!((d.train.len(), d.dev.len()), (12, 5));
    assert_eq!(d.dev_mismatched.as_ref().map(Vec::len), Some(4));
    assert_eq!(d.train[0].text, "The clerk said the office closes at five.");
    assert_eq!(
        d.train[0].text_pair.as_deref(),
        Some("The office closes at five.")
    );
    // contradiction 0, entailment 1, neutral 2; gold_label is the last of 12 or 16 columns.
    assert_eq!(classes(&d.train), [1, 0, 2, 1, 0, 2, 1, 0, 1, 2, 1, 0]);
    assert_eq!(classes(&d.dev), [1, 0, 2, 0, 1]);
    assert_eq!(classes(d.dev_mismatched.as_ref().unwrap()), [1, 0, 2, 1]);

    // The matched dev file alone goes to `dev`; without dev_mismatched.tsv there is none.
    let file = fixture(Task::Mnli).join("dev_matched.tsv");
    let d = Task::Mnli.load(&file).unwrap();
    assert_eq!((d.train.len(), d.dev.len(), d.dev_mismatched), (0, 5, None));
}

#[test]
fn stsb_loads_scores() {
    let d = load(Task::Stsb);
    assert_eq!((d.train.len(), d.dev.len()), (12, 6));
    assert_eq!(d.labels, LabelSet::Score);
    let scores: Vec<f64> = d.train.iter().map(|e| e.label.score().unwrap()).collect();
    assert_eq!(
        scores,
        [5.0, 3.8, 0.0, 4.6, 3.2, 0.4, 4.0, 4.25, 1.5, 3.6, 3.4, 1.0]
    );
    assert_eq!(d.train[0].text, "A plane is taking off.");
    assert_eq!(
        d.train[0].text_pair.as_deref(),
        Some("An airplane is taking off.")
    );
}

#[test]
fn a_single_file_loads_into_train_or_dev_by_name() {
    let d = Task::Sst2
        .load(&fixture(Task::Sst2).join("train.tsv"))
        .unwrap();
    assert_eq!((d.train.len(), d.dev.len()), (12, 0));
    let d = Task::Sst2
        .load(&fixture(Task::Sst2).join("dev.tsv"))
        .unwrap();
    assert_eq!((d.train.len(), d.dev.len()), (0, 6));
}

#[test]
fn a_missing_file_is_named() {
    // A folder with train.tsv but no dev.tsv.
    let dir = std::env::temp_dir().join(format!("securerouter-glue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture(Task::Sst2).join("train.tsv"), dir.join("train.tsv")).unwrap();
    let e = err(Task::Sst2.load(&dir));
    assert_eq!(e, format!("reading {}", dir.join("dev.tsv").display()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_columns_mismatch_is_refused_naming_the_header() {
    let e = err(Task::Sst2.parse(b"text\tlabel\nfine\t1\n", "sst.tsv"));
    assert_eq!(
        e,
        "sst.tsv: no \"sentence\" column in the header (columns: (\"text\", \"label\")); is \
         this SST-2's file?"
    );
    // RTE's file read as MNLI: no gold_label.
    let rte = std::fs::read(fixture(Task::Rte).join("dev.tsv")).unwrap();
    let e = err(Task::Mnli.parse(&rte, "dev.tsv"));
    assert!(e.starts_with("dev.tsv: no \"gold_label\" column"), "{e}");
    assert!(e.contains("\"sentence1\", \"sentence2\", \"label\""), "{e}");
}

#[test]
fn malformed_lines_are_refused_naming_the_line() {
    let cases: &[(Task, &[u8], &str)] = &[
        (
            Task::Sst2,
            b"sentence\tlabel\ngood\t1\nbad\t0\textra\n",
            "f, line 3: expected 2 tab-separated fields as in the header, found 3",
        ),
        (
            Task::Sst2,
            b"sentence\tlabel\ngood\t1\n\xff\xfe\t0\n",
            "f, line 3: not valid UTF-8",
        ),
        (
            Task::Sst2,
            b"sentence\tlabel\n  \t1\n",
            "f, line 2: the \"sentence\" column is empty",
        ),
        (
            Task::Sst2,
            b"sentence\tlabel\ngood\t2\n",
            "f, line 2: label \"2\" is not one of SST-2's labels (\"0\", \"1\")",
        ),
        (
            Task::Sst2,
            b"sentence\tlabel\ngood\t\n",
            "f, line 2: the \"label\" column is empty",
        ),
        (
            Task::Rte,
            b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n\n1\ta\tb\tmaybe\n",
            "f, line 4: label \"maybe\" is not one of RTE's labels (\"entailment\", \
             \"not_entailment\")",
        ),
        (
            Task::Mrpc,
            b"Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA.\t\n",
            "f, line 2: the \"#2 String\" column is empty",
        ),
        (
            Task::Cola,
            b"src\t1\t\tFine.\nsrc\t0\t*\n",
            "f, line 2: expected 4 tab-separated fields (CoLA's train and dev files have no \
             header), found 3",
        ),
        (
            Task::Cola,
            b"src\tyes\t\tFine.\n",
            "f, line 1: label \"yes\" is not one of CoLA's labels (\"0\", \"1\")",
        ),
        (Task::Sst2, b"", "f is empty: expected a header line"),
        (Task::Sst2, b"\n\r\n", "f is empty: expected a header line"),
        (Task::Sst2, b"sentence\tlabel\n", "f has no examples"),
        (Task::Cola, b"", "f has no examples"),
    ];
    for (task, input, want) in cases {
        assert_eq!(err(task.parse(input, "f")), *want, "{task} {input:?}");
    }
}

#[test]
fn stsb_scores_must_be_numbers_in_range() {
    let header =
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n";
    let row = |score: &str| format!("{header}0\tg\tf\ty\t0\tn\tn\tA.\tB.\t{score}\n");
    let e = err(Task::Stsb.parse(row("high").as_bytes(), "f"));
    assert_eq!(e, "f, line 2: score \"high\" is not a number");
    let e = err(Task::Stsb.parse(row("5.5").as_bytes(), "f"));
    assert_eq!(e, "f, line 2: score 5.5 is outside STS-B's range [0, 5]");
    let e = err(Task::Stsb.parse(row("NaN").as_bytes(), "f"));
    assert_eq!(e, "f, line 2: score \"NaN\" is not a finite number");
    let ok = Task::Stsb.parse(row(" 2.750 ").as_bytes(), "f").unwrap();
    assert_eq!(ok[0].label, Label::Score(2.75));
}

#[test]
fn colas_test_file_is_not_labelled_data() {
    // The test file has a header and no labels: refused at its first line, with a hint.
    let e = err(Task::Cola.read_file(&fixture(Task::Cola).join("test.tsv")));
    assert!(
        e.ends_with(
            "test.tsv, line 1: expected 4 tab-separated fields (CoLA's train and \
                         dev files have no header), found 2"
        ),
        "{e}"
    );
}
