//! The data loaders: VADER ground-truth parsing, GLUE TSV parsing, the deterministic split, and
//! the real Rotten Tomatoes sentences from the pinned VADER sdist when it is in the cache.

use securerouter_core::prg::Seed;
use securerouter_ml::assets::{self, VADER};
use securerouter_ml::data::{
    self, LabelledSentence, SPLIT_SEED, VaderCorpus, parse_glue_tsv, parse_vader_ground_truth,
    split,
};
use std::collections::HashSet;

fn err<T: std::fmt::Debug>(r: securerouter_ml::Result<T>) -> String {
    format!("{:#}", r.unwrap_err())
}

#[test]
fn vader_lines_are_parsed_and_labelled() {
    let text = "1\t2.26666666667\tThe Rock is destined to be ... ''Conan'' .\r\n\
                2\t-0.6\tEffective but too tepid biopic\r\n\
                \r\n\
                3\t0.0\tA film with no polarity at all.\r\n\
                4\t0.05\t  Barely positive, with tabs\tinside the text.  \r\n\
                5\t-3.875\tCliché-ridden and dull.";
    let got = parse_vader_ground_truth(text.as_bytes(), "sample").unwrap();
    assert_eq!(
        got,
        vec![
            LabelledSentence {
                text: "The Rock is destined to be ... ''Conan'' .".into(),
                score: 2.26666666667,
                label: 1,
            },
            LabelledSentence {
                text: "Effective but too tepid biopic".into(),
                score: -0.6,
                label: 0,
            },
            LabelledSentence {
                text: "Barely positive, with tabs\tinside the text.".into(),
                score: 0.05,
                label: 1,
            },
            LabelledSentence {
                text: "Cliché-ridden and dull.".into(),
                score: -3.875,
                label: 0,
            },
        ]
    );
    // A trailing newline and plain LF line ends are fine too.
    let got = parse_vader_ground_truth(b"7\t1\tGood.\n8\t-1\tBad.\n", "lf").unwrap();
    assert_eq!(got.len(), 2);
}

#[test]
fn malformed_vader_lines_are_named_errors() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"1\t1.0\tok\n2\t1.5\n",
            "sample, line 2: expected 3 tab-separated fields",
        ),
        (
            b"1\t1.0\tok\n \t1.5\ttext\n",
            "sample, line 2: the id is empty",
        ),
        (
            b"1\tgood\ttext\n",
            "sample, line 1: rating \"good\" is not a number",
        ),
        (
            b"1\t4.5\ttext\n",
            "sample, line 1: rating 4.5 is outside [-4, 4]",
        ),
        (
            b"1\tNaN\ttext\n",
            "sample, line 1: rating NaN is outside [-4, 4]",
        ),
        (
            b"1\t1.0\tok\n\n3\t-1\t   \n",
            "sample, line 3: the text is empty",
        ),
        (b"1\t1.0\t\xff\xfe\n", "sample, line 1: not valid UTF-8"),
    ];
    for (input, want) in cases {
        let e = err(parse_vader_ground_truth(input, "sample"));
        assert!(
            e.contains(want),
            "{:?}: {e}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn a_missing_file_is_named() {
    let path = std::env::temp_dir().join("securerouter-no-such-file.txt");
    let e = err(data::read_vader_ground_truth(&path));
    assert!(e.contains("securerouter-no-such-file.txt"), "{e}");
    let e = err(data::glue_tsv(&path, "sentence", "label"));
    assert!(e.contains("securerouter-no-such-file.txt"), "{e}");
}

#[test]
fn a_missing_asset_says_how_to_fetch_it() {
    let cache = std::env::temp_dir().join(format!("sr-data-empty-{}", std::process::id()));
    let e = err(data::rotten_tomatoes(&cache));
    assert!(
        e.contains("vadersentiment") && e.contains("assets fetch"),
        "{e}"
    );
}

#[test]
fn glue_tsv_is_parsed_by_column_name() {
    // SST-2's layout, with the columns swapped and an extra one to show they are found by name.
    let text = "label\tsentence\tidx\r\n\
                1\thide new secretions from the parental units \t0\r\n\
                0\tcontains no wit , only labored gags \t1\r\n";
    let got = parse_glue_tsv(text.as_bytes(), "train.tsv", "sentence", "label").unwrap();
    assert_eq!(
        got,
        vec![
            LabelledSentence {
                text: "hide new secretions from the parental units".into(),
                score: 1.0,
                label: 1,
            },
            LabelledSentence {
                text: "contains no wit , only labored gags".into(),
                score: 0.0,
                label: 0,
            },
        ]
    );
    // Multi-class labels are kept as they are.
    let got = parse_glue_tsv(b"sentence\tlabel\nneutral\t2\n", "x", "sentence", "label").unwrap();
    assert_eq!(got[0].label, 2);

    // Files are read the same way.
    let dir = std::env::temp_dir().join(format!("sr-data-glue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dev.tsv");
    std::fs::write(&path, text).unwrap();
    assert_eq!(data::glue_tsv(&path, "sentence", "label").unwrap().len(), 2);
    std::fs::write(&path, "sentence\tlabel\nfine\t1\nbroken\n").unwrap();
    let e = err(data::glue_tsv(&path, "sentence", "label"));
    assert!(e.contains("dev.tsv, line 3: expected 2"), "{e}");
}

#[test]
fn malformed_glue_tsv_gives_named_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "t.tsv is empty"),
        (b"text\tlabel\na\t1\n", "t.tsv: no column \"sentence\""),
        (b"sentence\ttarget\na\t1\n", "t.tsv: no column \"label\""),
        (b"sentence\tlabel\na\t1\tx\n", "t.tsv, line 2: expected 2"),
        (
            b"sentence\tlabel\na\tpositive\n",
            "t.tsv, line 2: label \"positive\"",
        ),
        (b"sentence\tlabel\na\t-1\n", "t.tsv, line 2: label \"-1\""),
        (
            b"sentence\tlabel\na\t1\n \t0\n",
            "t.tsv, line 3: the \"sentence\" column is empty",
        ),
        (
            b"sentence\tlabel\n\xc3\t0\n",
            "t.tsv, line 2: not valid UTF-8",
        ),
    ];
    for (input, want) in cases {
        let e = err(parse_glue_tsv(input, "t.tsv", "sentence", "label"));
        assert!(
            e.contains(want),
            "{:?}: {e}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn the_split_is_deterministic_disjoint_and_complete() {
    let data: Vec<u32> = (0..1000).collect();
    let (train, test) = split(data.clone(), 0.2, &SPLIT_SEED).unwrap();
    assert_eq!((train.len(), test.len()), (800, 200));
    let (train2, test2) = split(data.clone(), 0.2, &SPLIT_SEED).unwrap();
    assert_eq!((&train, &test), (&train2, &test2));

    let a: HashSet<u32> = train.iter().copied().collect();
    let b: HashSet<u32> = test.iter().copied().collect();
    assert!(a.is_disjoint(&b));
    assert_eq!(a.len() + b.len(), 1000);

    // Shuffled, not just cut: the test set is not a block of the input.
    assert_ne!(test, (0..200).collect::<Vec<_>>());
    assert_ne!(test, (800..1000).collect::<Vec<_>>());
    // Another seed gives another split.
    let other = Seed::from_bytes([7; 16]);
    assert_ne!(split(data.clone(), 0.2, &other).unwrap().1, test);

    // Edge cases.
    assert_eq!(split(data.clone(), 0.0, &SPLIT_SEED).unwrap().1.len(), 0);
    assert_eq!(split(data.clone(), 1.0, &SPLIT_SEED).unwrap().0.len(), 0);
    assert_eq!(
        split(Vec::<u8>::new(), 0.5, &SPLIT_SEED).unwrap(),
        (vec![], vec![])
    );
    for bad in [-0.1, 1.5, f64::NAN] {
        let e = err(split(data.clone(), bad, &SPLIT_SEED));
        assert!(e.contains("not in [0, 1]"), "{e}");
    }
}

#[test]
fn the_split_is_pinned() {
    // The split must not drift between versions or machines (experiments cite it).
    let (_, test) = split((0..20u32).collect(), 0.25, &SPLIT_SEED).unwrap();
    let pinned: Vec<u32> = PINNED_TEST.to_vec();
    assert_eq!(test, pinned);
}

const PINNED_TEST: [u32; 5] = [8, 6, 19, 10, 0];

/// The real sentences from the pinned VADER sdist. Skipped (with a message) when the asset is
/// not fetched, except in CI (`CI` set), which runs `securerouter assets fetch` first and where
/// a missing asset is a failure.
#[test]
fn the_real_rotten_tomatoes_sentences() {
    let cache = assets::cache_dir(None).unwrap();
    if let Err(e) = VADER.path(&cache) {
        if std::env::var_os("CI").is_some() {
            panic!(
                "the VADER asset is missing in CI (`securerouter assets fetch` should have fetched it): {e:#}"
            );
        }
        eprintln!("SKIPPED: {e:#}");
        return;
    }
    let rt = data::rotten_tomatoes(&cache).unwrap();
    // 10,605 rated sentences, of which 37 are rated exactly 0 and dropped.
    assert_eq!(rt.len(), 10_568);
    let positive = rt.iter().filter(|s| s.label == 1).count();
    assert_eq!((positive, rt.len() - positive), (5_242, 5_326));
    assert!(rt.iter().all(|s| s.score != 0.0 && s.score.abs() <= 4.0));
    assert!(rt.iter().all(|s| (s.label == 1) == (s.score > 0.0)));
    assert_eq!(
        rt[0].text,
        "The Rock is destined to be the 21st Century's new ''Conan'' and that he's going to make \
         a splash even greater than Arnold Schwarzenegger, Jean Claud Van Damme or Steven Segal."
    );
    assert_eq!(rt[0].score, 2.26666666667);
    assert!(rt.iter().any(|s| s.text.contains("clichés")));

    let (train, test) = split(rt, 0.1, &SPLIT_SEED).unwrap();
    assert_eq!((train.len(), test.len()), (9_511, 1_057));

    // The study's other corpora read too: (rated, positive, negative); the rest are rated 0.
    for (corpus, rated, pos, neg) in [
        (VaderCorpus::Tweets, 4_200, 2_897, 1_299),
        (VaderCorpus::AmazonReviews, 3_708, 2_128, 1_482),
        (VaderCorpus::NytEditorials, 5_190, 2_204, 2_742),
    ] {
        let s = data::vader_snippets(&cache, corpus).unwrap();
        let p = s.iter().filter(|s| s.label == 1).count();
        assert_eq!((p, s.len() - p), (pos, neg), "{corpus:?}, {rated} rated");
    }
}
