//! The device's flash-table path (`securerouter device-table`, then
//! `securerouter_device::TokenEmbedder` on WordPiece ids) against the host client's f32 path,
//! on the real MiniLM-L6 embeddings and held-out Rotten Tomatoes sentences: the rows the device
//! shares, and what the encoder makes of them.

use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_device::{EmbeddingSource, EmbeddingTable, TokenEmbedder};
use securerouter_ml::{BertWeights, ClientBundle, Matrix, Tokenizer, WordPiece, mean_pool};
use securerouter_ml::{assets, data};
use securerouter_runtime::served_pool::embed_query;
use securerouter_tests::{assets_present, binary, temp_dir};
use std::process::Command;

const SEQ: usize = 64;
const SENTENCES: usize = 100;
/// Sentences also run through the whole encoder, both ways.
const ENCODED: usize = 12;

#[test]
fn the_device_table_embeds_real_sentences_as_the_host_client_does() {
    if !assets_present() {
        return;
    }
    let cache = assets::cache_dir(None).unwrap();
    let dir = assets::MINILM_L6.path(&cache).unwrap();
    let model = BertWeights::load(&dir, None).unwrap();
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let work = temp_dir("device-table");
    let (bundle_path, table_path) = (work.join("client.bundle"), work.join("device.table"));
    ClientBundle::save(&model, &tokenizer, &bundle_path).unwrap();
    let out = Command::new(binary())
        .arg("device-table")
        .arg("--bundle")
        .arg(&bundle_path)
        .arg("--out")
        .arg(&table_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&table_path).unwrap();
    let table = EmbeddingTable::parse(&bytes).unwrap();
    let bundle = ClientBundle::load(&bundle_path).unwrap();
    let h = model.config.hidden_size;
    assert_eq!((table.hidden(), table.vocab_size()), (h, 30522));
    let f32_bytes = 4 * (30522 + table.positions() + 2) * h;
    println!(
        "device table: {} bytes ({:.1}% of the f32 tables)",
        bytes.len(),
        100.0 * bytes.len() as f64 / f32_bytes as f64
    );

    let fp = FixedPoint::new(12, BitWidth::FULL).unwrap();
    let (_, held_out) = data::split(
        data::rotten_tomatoes(&cache).unwrap(),
        0.2,
        &data::SPLIT_SEED,
    )
    .unwrap();
    let (mut worst, mut total, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut worst_cos = 1.0f64;
    for (i, s) in held_out.iter().take(SENTENCES).enumerate() {
        let host = embed_query(&bundle, &s.text, SEQ).unwrap();
        let e = bundle.tokenizer.encode(&s.text, SEQ).unwrap();
        let mut device = TokenEmbedder::new(table, &e.ids, &e.type_ids, SEQ, fp).unwrap();
        assert_eq!((device.rows(), device.width()), (SEQ, h + 2));
        let n = e.ids.len();
        let mut row = vec![0u64; h + 2];
        let mut embedded = Vec::with_capacity(n * h);
        for t in 0..SEQ {
            device.read_row(t, &mut row).unwrap();
            let want = &host[t * (h + 2)..(t + 1) * (h + 2)];
            // The client columns and the padding rows are exact.
            for j in h..h + 2 {
                assert_eq!(row[j], fp.encode(want[j]).unwrap(), "token {t} column {j}");
            }
            if t >= n {
                assert!(row[..h].iter().all(|&v| v == 0), "padding row {t}");
                continue;
            }
            for j in 0..h {
                let d = (fp.decode(row[j]) - want[j]).abs();
                worst = worst.max(d);
                total += d;
                count += 1;
                embedded.push(fp.decode(row[j]));
            }
        }
        if i < ENCODED {
            let rows = host.chunks(h + 2).take(n).flat_map(|r| r[..h].to_vec());
            let plain = Matrix::new(n, h, rows.collect());
            let a = mean_pool(&model.encode(plain));
            let b = mean_pool(&model.encode(Matrix::new(n, h, embedded)));
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            worst_cos = worst_cos.min(dot / (norm(&a) * norm(&b)));
        }
    }
    let mean = total / count as f64;
    println!(
        "{SENTENCES} sentences: |device - host| per element mean {mean:.4}, max {worst:.4}; \
         sentence vectors' cosine at least {worst_cos:.5}"
    );
    assert!(mean < 0.015 && worst < 0.1, "mean {mean}, max {worst}");
    assert!(worst_cos > 0.999, "cosine {worst_cos}");
    std::fs::remove_dir_all(work).unwrap();
}

/// The firmware's flash table, `device/firmware/table.bin` (MiniLM-shaped: hidden 384, 128
/// positions, a 32-word vocabulary so that it stays small), is what `device_table` writes for a
/// fixed random model, so the firmware measures the format the host really writes. Rewrite it
/// with `SECUREROUTER_WRITE_TABLE=1`.
#[test]
fn the_firmwares_table_is_what_the_host_writes() {
    use securerouter_core::prg::Seed;
    use securerouter_ml::BertConfig;
    let config = BertConfig {
        vocab_size: 32,
        hidden_size: 384,
        num_hidden_layers: 1,
        num_attention_heads: 12,
        intermediate_size: 16,
        hidden_act: "gelu".into(),
        max_position_embeddings: 128,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        model_type: "bert".into(),
        architectures: Vec::new(),
        position_embedding_type: "absolute".into(),
    };
    let model = BertWeights::random(config, &Seed::from_bytes(*b"firmware-table-1")).unwrap();
    let vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        .into_iter()
        .map(String::from)
        .chain((4..32).map(|i| format!("word{i}")))
        .collect();
    let work = temp_dir("firmware-table");
    let path = work.join("client.bundle");
    let tokenizer = Tokenizer::from_wordpiece(
        WordPiece::from_vocab_text(&vocab.join("\n")).unwrap(),
        std::path::Path::new("vocab.txt"),
    );
    ClientBundle::save(&model, &tokenizer, &path).unwrap();
    let table = ClientBundle::load(&path).unwrap().device_table().unwrap();
    std::fs::remove_dir_all(work).unwrap();
    let stored =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../device/firmware/table.bin");
    if std::env::var_os("SECUREROUTER_WRITE_TABLE").is_some() {
        std::fs::write(&stored, &table).unwrap();
    }
    let parsed = EmbeddingTable::parse(&table).unwrap();
    assert_eq!(
        (parsed.hidden(), parsed.vocab_size(), parsed.positions()),
        (384, 32, 128)
    );
    assert!(
        std::fs::read(&stored).unwrap() == table,
        "{} is stale: rewrite it with SECUREROUTER_WRITE_TABLE=1",
        stored.display()
    );
}
