//! The client bundle against the checkpoint folder it was written from: a bundle restored from
//! its file must tokenize sentences and pairs exactly as [`Tokenizer::from_dir`] does on the
//! folder, and embed exactly as [`BertWeights::embed`] (to the bundle's f32 precision), for a
//! BERT folder with only a `vocab.txt`, one with a cased `tokenizer.json`, and the tiny MPNet
//! fixture (`fixtures/mpnet/tiny`, whose `tokenizer.json` is MPNet's own). A pool's bundle
//! embeds each expert with its own input through that checkpoint's tokenizer and tables and
//! every other expert through the summary's. Bundles of the older format or of another version
//! are refused by name, damaged expert lists and files cut short are refused, and neither an
//! MPNet bundle nor a pool's with inputs of their own has a device table.

use securerouter_core::prg::Seed;
use securerouter_ml::bundle::{FORMAT_VERSION, MAGIC};
use securerouter_ml::{
    BertConfig, BertWeights, ClientBundle, Encoding, Error, Positions, Tokenizer,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokenizers::models::wordpiece::WordPiece as WordPieceModel;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;

const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const WORDS: [&str; 14] = [
    "hello", "world", "the", "dog", "runs", "fast", "Hello", "World", "The", "café", "Café", "##s",
    ",", ".",
];
const SENTENCE: &str = "Hello, World. The dog runs fast";
const PAIR: (&str, &str) = ("The café", "hello dogs, the world");

/// The f32 rounding of the stored tables, after the LayerNorm.
const F32_TOLERANCE: f64 = 1e-5;

/// A fresh temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("securerouter-bundle-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vocab_text() -> String {
    SPECIALS
        .iter()
        .chain(&WORDS)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A random BERT model over the test vocabulary.
fn bert_model() -> BertWeights {
    let config = BertConfig {
        vocab_size: SPECIALS.len() + WORDS.len(),
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        hidden_act: "gelu".into(),
        max_position_embeddings: 32,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        model_type: "bert".into(),
        architectures: Vec::new(),
        position_embedding_type: "absolute".into(),
    };
    BertWeights::random(config, &Seed::from_bytes([7; 16])).unwrap()
}

/// A checkpoint-like folder with the test `vocab.txt` and a `tokenizer_config.json` saying
/// whether it lowercases; with `json`, also a BERT `tokenizer.json` as `tokenizers` saves it.
fn bert_folder(name: &str, lowercase: bool, json: bool) -> PathBuf {
    let dir = temp_dir(name);
    let vocab = dir.join("vocab.txt");
    std::fs::write(&vocab, vocab_text()).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        format!(r#"{{"do_lower_case": {lowercase}}}"#),
    )
    .unwrap();
    if json {
        let model = WordPieceModel::from_file(vocab.to_str().unwrap())
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        let id = |token: &str| {
            use tokenizers::Model;
            model.token_to_id(token).unwrap()
        };
        let processor =
            BertProcessing::new(("[SEP]".into(), id("[SEP]")), ("[CLS]".into(), id("[CLS]")));
        let mut tokenizer = tokenizers::Tokenizer::new(model);
        tokenizer
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .unwrap();
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        tokenizer.with_post_processor(Some(processor));
        tokenizer.save(dir.join("tokenizer.json"), false).unwrap();
    }
    dir
}

/// Writes the bundle of `model` with the tokenizer of `folder`, loads it back, and checks that
/// it tokenizes and embeds `sentences` and `pairs` as the folder and the model do. Returns the
/// restored bundle.
fn round_trip(
    model: &BertWeights,
    folder: &Path,
    sentences: &[&str],
    pairs: &[(&str, &str)],
) -> ClientBundle {
    let tokenizer = Tokenizer::from_dir(folder).unwrap();
    let path = temp_dir(&format!(
        "out-{}",
        folder.file_name().unwrap().to_string_lossy()
    ))
    .join("client.bundle");
    ClientBundle::save(model, &tokenizer, &path).unwrap();
    let bundle = ClientBundle::load(&path).unwrap();
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    assert_eq!(
        bundle.tokenizer.tokenizer_json().is_some(),
        tokenizer.tokenizer_json().is_some()
    );
    assert_eq!(bundle.embeddings.positions, model.embeddings.positions);
    for &text in sentences {
        let want = tokenizer.encode(text, 24).unwrap();
        assert_eq!(bundle.tokenizer.encode(text, 24).unwrap(), want, "{text:?}");
        let embedded = bundle.embed_text(text, 24).unwrap();
        let d = embedded.max_abs_diff(&model.embed(&want.ids, &want.type_ids).unwrap());
        assert!(d < F32_TOLERANCE, "{text:?}: {d}");
    }
    for &(a, b) in pairs {
        let want = tokenizer.encode_pair(a, b, 24).unwrap();
        assert_eq!(
            bundle.tokenizer.encode_pair(a, b, 24).unwrap(),
            want,
            "{a:?} {b:?}"
        );
        let embedded = bundle.embed_pair(a, b, 24).unwrap();
        let d = embedded.max_abs_diff(&model.embed(&want.ids, &want.type_ids).unwrap());
        assert!(d < F32_TOLERANCE, "{a:?} {b:?}: {d}");
    }
    bundle
}

#[test]
fn a_bert_bundle_with_only_a_vocab_txt_round_trips() {
    let model = bert_model();
    for lowercase in [true, false] {
        let dir = bert_folder(&format!("vocab-{lowercase}"), lowercase, false);
        let bundle = round_trip(&model, &dir, &[SENTENCE, ""], &[PAIR]);
        assert!(bundle.tokenizer.tokenizer_json().is_none());
        // The casing of the vocab.txt fallback (tokenizer_config.json) is kept.
        assert_eq!(bundle.tokenizer.wordpiece().unwrap().lowercase(), lowercase);
        let pair = bundle.tokenizer.encode_pair(PAIR.0, PAIR.1, 24).unwrap();
        assert!(pair.type_ids.contains(&1), "{pair:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_cased_tokenizer_json_is_stored_whole_and_keeps_case() {
    let model = bert_model();
    let dir = bert_folder("json-cased", false, true);
    let bundle = round_trip(&model, &dir, &[SENTENCE, "Café café"], &[PAIR]);
    let json = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    assert_eq!(bundle.tokenizer.tokenizer_json(), Some(json.as_str()));
    let upper = bundle.tokenizer.encode("Hello World", 24).unwrap().ids;
    let lower = bundle.tokenizer.encode("hello world", 24).unwrap().ids;
    assert_ne!(upper, lower, "the cased tokenizer lowercased");
    let id =
        |token: &str| (SPECIALS.len() + WORDS.iter().position(|w| *w == token).unwrap()) as u32;
    assert_eq!(upper, [2, id("Hello"), id("World"), 3]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[derive(Deserialize)]
struct TinyExpected {
    tokenizer: Vec<Encoded>,
}

#[derive(Deserialize)]
struct Encoded {
    a: String,
    b: Option<String>,
    ids: Vec<u32>,
}

#[test]
fn an_mpnet_bundle_keeps_its_tokenizer_and_positions_and_has_no_device_table() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mpnet");
    let tiny = fixtures.join("tiny");
    let model = BertWeights::load(&tiny, None).unwrap();
    let expected: TinyExpected = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("tiny_expected.json")).unwrap(),
    )
    .unwrap();
    let sentences: Vec<&str> = expected
        .tokenizer
        .iter()
        .filter(|e| e.b.is_none())
        .map(|e| e.a.as_str())
        .chain(["Hello, World. The dog runs fast"])
        .collect();
    let pairs: Vec<(&str, &str)> = expected
        .tokenizer
        .iter()
        .filter_map(|e| Some((e.a.as_str(), e.b.as_deref()?)))
        .chain([PAIR])
        .collect();
    assert!(!pairs.is_empty());
    let bundle = round_trip(&model, &tiny, &sentences, &pairs);
    assert_eq!(
        bundle.embeddings.positions,
        Positions::AfterPadding { padding_idx: 1 }
    );
    // MPNet's token-type table is one row of zeros, restored as such.
    let types = &bundle.embeddings.token_type;
    assert_eq!(types.rows, 1);
    assert!(types.data.iter().all(|v| *v == 0.0));
    // The restored tokenizer is MPNet's own: Hugging Face's ids, `<s> a </s></s> b </s>`.
    for e in &expected.tokenizer {
        let got = match &e.b {
            None => bundle.tokenizer.encode(&e.a, 512).unwrap(),
            Some(b) => bundle.tokenizer.encode_pair(&e.a, b, 512).unwrap(),
        };
        assert_eq!(got.ids, e.ids, "{:?} {:?}", e.a, e.b);
        assert!(got.type_ids.iter().all(|&t| t == 0));
    }
    let e = bundle.device_table().unwrap_err().to_string();
    assert!(e.contains("MPNet") && e.contains("no device table"), "{e}");

    // The WordPiece fallback is BERT's tokenizer: not stored for an MPNet model.
    let vocab = temp_dir("mpnet-vocab");
    std::fs::write(vocab.join("vocab.txt"), vocab_text()).unwrap();
    let wordpiece = Tokenizer::from_dir(&vocab).unwrap();
    let e = ClientBundle::save(&model, &wordpiece, &vocab.join("client.bundle"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs its tokenizer.json"), "{e}");
    std::fs::remove_dir_all(vocab).unwrap();
}

/// The format before the magic: the vocabulary text, then the tables, as postcard wrote them.
#[derive(Serialize)]
struct OldBundle {
    vocab: String,
    word: OldMatrix,
    position: OldMatrix,
    token_type: OldMatrix,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    eps: f64,
}

#[derive(Serialize)]
struct OldMatrix {
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

#[test]
fn old_and_other_format_bundles_are_refused_by_name() {
    let model = bert_model();
    let e = &model.embeddings;
    let matrix = |m: &securerouter_ml::Matrix| OldMatrix {
        rows: m.rows,
        cols: m.cols,
        data: m
            .data
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect(),
    };
    let old = OldBundle {
        vocab: vocab_text(),
        word: matrix(&e.word),
        position: matrix(&e.position),
        token_type: matrix(&e.token_type),
        gamma: e.norm.gamma.clone(),
        beta: e.norm.beta.clone(),
        eps: e.norm.eps,
    };
    let dir = temp_dir("formats");
    let path = dir.join("client.bundle");
    std::fs::write(&path, postcard::to_allocvec(&old).unwrap()).unwrap();
    let err = ClientBundle::load(&path).err().unwrap();
    assert!(matches!(err, Error::OldBundle { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("older format") && message.contains("re-export the deployment"),
        "{message}"
    );

    // A bundle of this format with its version changed.
    let folder = bert_folder("formats-vocab", true, false);
    ClientBundle::save(&model, &Tokenizer::from_dir(&folder).unwrap(), &path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[..8], MAGIC);
    assert_eq!(bytes[8..10], FORMAT_VERSION.to_le_bytes());
    bytes[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = ClientBundle::load(&path).err().unwrap();
    assert!(
        matches!(err, Error::BundleVersion { found, .. } if found == FORMAT_VERSION + 1),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("re-export the deployment"),
        "{err}"
    );

    // Neither format, and a header cut short.
    for bytes in [
        &b"not a bundle at all"[..],
        &MAGIC[..],
        &b"SRBUNDLE\x02"[..],
    ] {
        std::fs::write(&path, bytes).unwrap();
        let err = ClientBundle::load(&path).err().unwrap();
        assert!(err.to_string().contains("not a client bundle"), "{err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(folder).unwrap();
}

#[test]
fn damaged_tables_and_tokenizers_are_refused() {
    let model = bert_model();
    let folder = bert_folder("damage", false, true);
    let dir = temp_dir("damage-out");
    let path = dir.join("client.bundle");
    ClientBundle::save(&model, &Tokenizer::from_dir(&folder).unwrap(), &path).unwrap();
    let good = std::fs::read(&path).unwrap();
    // The tokenizer.json is stored first, after the header and the enum tag: break its JSON.
    let json = std::fs::read(folder.join("tokenizer.json")).unwrap();
    let at = good
        .windows(json.len())
        .position(|w| w == json.as_slice())
        .unwrap();
    let mut broken = good.clone();
    broken[at] = b'[';
    std::fs::write(&path, &broken).unwrap();
    let err = ClientBundle::load(&path).err().unwrap();
    assert!(matches!(err, Error::BundleTokenizer { .. }), "{err:?}");
    // A NaN in the last table value (the LayerNorm comes after the tables).
    let mut nan = good.clone();
    // The file ends with beta's last f64, epsilon (f64), the positions' one-byte tag and the
    // number of experts with inputs of their own (0, one byte).
    let last_beta = nan.len() - 1 - 1 - 8 - 8;
    nan[last_beta..last_beta + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    std::fs::write(&path, &nan).unwrap();
    let err = ClientBundle::load(&path).err().unwrap().to_string();
    assert!(
        err.contains("NaN or infinity") && err.contains("the summary's"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(folder).unwrap();
}

/// The tiny MPNet fixture: its model and its own tokenizer.
fn tiny_mpnet() -> (BertWeights, Tokenizer) {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mpnet/tiny");
    (
        BertWeights::load(&tiny, None).unwrap(),
        Tokenizer::from_dir(&tiny).unwrap(),
    )
}

/// How far `embedded` is from `model`'s embedding of `tokenizer`'s encoding of `text`.
fn distance(embedded: &securerouter_ml::Matrix, model: &BertWeights, want: &Encoding) -> f64 {
    embedded.max_abs_diff(&model.embed(&want.ids, &want.type_ids).unwrap())
}

#[test]
fn a_pool_bundle_embeds_an_expert_with_its_own_input_through_its_own_checkpoint() {
    let bert = bert_model();
    let folder = bert_folder("pool-bert", true, true);
    let bert_tokenizer = Tokenizer::from_dir(&folder).unwrap();
    let (mpnet, mpnet_tokenizer) = tiny_mpnet();
    assert_ne!(bert.config.hidden_size, mpnet.config.hidden_size);
    let dir = temp_dir("pool-out");
    let path = dir.join("client.bundle");
    ClientBundle::save_pool(
        &bert,
        &bert_tokenizer,
        &[(2, &mpnet, &mpnet_tokenizer)],
        &path,
    )
    .unwrap();
    let bundle = ClientBundle::load(&path).unwrap();
    assert_eq!(bundle.own_input_experts(), [2]);
    assert_eq!(bundle.own_inputs[0].expert, 2);
    assert_eq!(
        bundle.own_inputs[0].embeddings.positions,
        Positions::AfterPadding { padding_idx: 1 }
    );
    assert_eq!(bundle.embeddings.positions, Positions::FromZero);

    for text in [SENTENCE, "the café", ""] {
        // Expert 2 through MPNet's own tokenizer and tables.
        let want = mpnet_tokenizer.encode(text, 24).unwrap();
        let got = bundle.embed_text_for(2, text, 24).unwrap();
        assert_eq!(got.cols, mpnet.config.hidden_size);
        let d = distance(&got, &mpnet, &want);
        assert!(d < F32_TOLERANCE, "expert 2, {text:?}: {d}");
        // The summary and an expert cut from it through the summary's.
        let want = bert_tokenizer.encode(text, 24).unwrap();
        for expert in [0, 1] {
            let got = bundle.embed_text_for(expert, text, 24).unwrap();
            let d = distance(&got, &bert, &want);
            assert!(d < F32_TOLERANCE, "expert {expert}, {text:?}: {d}");
        }
        assert_eq!(
            bundle.embed_text(text, 24).unwrap(),
            bundle.embed_text_for(0, text, 24).unwrap()
        );
    }
    let (a, b) = PAIR;
    let want = mpnet_tokenizer.encode_pair(a, b, 24).unwrap();
    let d = distance(&bundle.embed_pair_for(2, a, b, 24).unwrap(), &mpnet, &want);
    assert!(d < F32_TOLERANCE, "expert 2, pair: {d}");
    let want = bert_tokenizer.encode_pair(a, b, 24).unwrap();
    for expert in [0, 1] {
        let got = bundle.embed_pair_for(expert, a, b, 24).unwrap();
        let d = distance(&got, &bert, &want);
        assert!(d < F32_TOLERANCE, "expert {expert}, pair: {d}");
    }
    assert_eq!(
        bundle.embed_pair(a, b, 24).unwrap(),
        bundle.embed_pair_for(0, a, b, 24).unwrap()
    );

    // The device embeds with one table: a pool with an expert of its own input has none.
    let e = bundle.device_table().unwrap_err().to_string();
    assert!(e.contains("experts [2]") && e.contains("one table"), "{e}");

    // Own inputs in any order are stored by increasing expert index.
    ClientBundle::save_pool(
        &bert,
        &bert_tokenizer,
        &[(5, &bert, &bert_tokenizer), (2, &mpnet, &mpnet_tokenizer)],
        &path,
    )
    .unwrap();
    let bundle = ClientBundle::load(&path).unwrap();
    assert_eq!(bundle.own_input_experts(), [2, 5]);
    let got = bundle.embed_text_for(5, SENTENCE, 24).unwrap();
    let d = distance(&got, &bert, &bert_tokenizer.encode(SENTENCE, 24).unwrap());
    assert!(d < F32_TOLERANCE, "{d}");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(folder).unwrap();
}

#[test]
fn a_format_2_bundle_is_refused_with_the_re_export_message() {
    let model = bert_model();
    let folder = bert_folder("format-2", true, false);
    let dir = temp_dir("format-2-out");
    let path = dir.join("client.bundle");
    ClientBundle::save(&model, &Tokenizer::from_dir(&folder).unwrap(), &path).unwrap();
    // Format 2 wrote the magic, version 2 and the summary's embedder alone: this file without
    // its trailing count of own inputs.
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.pop(), Some(0));
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    for payload in [
        &bytes[..],
        &[&MAGIC[..], &2u16.to_le_bytes(), b"anything"].concat(),
    ] {
        std::fs::write(&path, payload).unwrap();
        let err = ClientBundle::load(&path).err().unwrap();
        assert!(
            matches!(
                err,
                Error::BundleVersion {
                    found: 2,
                    expected: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("format 2") && message.contains("re-export the deployment"),
            "{message}"
        );
    }
    assert_eq!(FORMAT_VERSION, 3);
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(folder).unwrap();
}

#[test]
fn damaged_expert_lists_and_files_cut_short_are_refused() {
    let model = bert_model();
    let folder = bert_folder("experts-damage", true, false);
    let tokenizer = Tokenizer::from_dir(&folder).unwrap();
    let dir = temp_dir("experts-damage-out");
    let path = dir.join("client.bundle");
    let load_err = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        ClientBundle::load(&path).err().unwrap().to_string()
    };

    // The file is the header and the summary's embedder, the number of own inputs (one byte
    // here), then each own input: its expert index (one byte here) and its embedder.
    ClientBundle::save(&model, &tokenizer, &path).unwrap();
    let summary = std::fs::read(&path).unwrap();
    let head = &summary[..summary.len() - 1];
    ClientBundle::save_pool(&model, &tokenizer, &[(3, &model, &tokenizer)], &path).unwrap();
    let pool = std::fs::read(&path).unwrap();
    assert_eq!(pool[..head.len()], *head);
    assert_eq!(pool[head.len()..head.len() + 2], [1, 3]);
    let embedder = &pool[head.len() + 2..];
    let file = |experts: &[u8]| {
        let mut bytes = head.to_vec();
        bytes.push(experts.len() as u8);
        for &k in experts {
            bytes.push(k);
            bytes.extend_from_slice(embedder);
        }
        bytes
    };
    // Well-formed lists load (the bytes are laid out as described).
    let bundle = ClientBundle::load(&{
        std::fs::write(&path, file(&[1, 15])).unwrap();
        path.clone()
    })
    .unwrap();
    assert_eq!(bundle.own_input_experts(), [1, 15]);

    for (experts, want) in [
        (&[0][..], "expert 0 is the summary"),
        (&[2, 0], "expert 0 is the summary"),
        (&[2, 2], "expert 2 has two embedders"),
        (&[4, 2], "out of order: expert 2 after expert 4"),
        (&[16], "expert 16 is beyond a pool's 16 experts"),
        (
            &(1..=16).collect::<Vec<u8>>()[..],
            "16 experts with inputs of their own",
        ),
    ] {
        let e = load_err(&file(experts));
        assert!(e.contains(want), "{experts:?}: {e}");
    }

    // The same lists are refused on save.
    for (own, want) in [
        (&[0][..], "expert 0 is the summary"),
        (&[2, 2], "expert 2 has two embedders"),
        (&[16], "beyond a pool's 16 experts"),
    ] {
        let own: Vec<_> = own.iter().map(|&k| (k, &model, &tokenizer)).collect();
        let e = ClientBundle::save_pool(&model, &tokenizer, &own, &path)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    }

    // Cut short anywhere (in the header, the summary, the count, an own input), or followed by
    // more bytes.
    let two = file(&[2, 5]);
    for end in [
        9,
        10,
        head.len() / 2,
        head.len(),
        head.len() + 1,
        two.len() - 1,
    ]
    .into_iter()
    .chain((head.len() + 2..two.len()).step_by(97))
    {
        let e = load_err(&two[..end]);
        assert!(e.contains("not a client bundle"), "cut at {end}: {e}");
    }
    let e = load_err(&[&two[..], &[0]].concat());
    assert!(e.contains("bytes follow its end (1)"), "{e}");

    // A damaged table of an own input names its expert.
    let mut nan = two.clone();
    let last_beta = nan.len() - 1 - 8 - 8;
    nan[last_beta..last_beta + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    let e = load_err(&nan);
    assert!(
        e.contains("expert 5's") && e.contains("NaN or infinity"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(folder).unwrap();
}
