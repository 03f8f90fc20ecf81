//! Files from elsewhere: model files (the dealer's copy, a server's share) and client
//! bundles, through their loaders (`ModelFile::load`, `ClientBundle::load`), and the device
//! table a bundle converts to.

use securerouter_circuits::bert::{BertHead, BertShape, RingLayer};
use securerouter_circuits::{Activation, ExpertInput, ModelSpec, PoolExpert, PoolShape};
use securerouter_core::prg::Seed;
use securerouter_device::embedding::EmbeddingTable;
use securerouter_ml::router::{PlainRouterHead, RouterHeadShape, router_feature_count};
use securerouter_ml::{BertConfig, BertWeights, ClientBundle, Tokenizer, WordPiece};
use securerouter_runtime::model_file::ModelFile;
use std::path::PathBuf;

/// This process's scratch directory (the loaders read paths).
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("securerouter-fuzz-{}", std::process::id()))
}

/// A scratch file for this thread.
fn scratch(name: &str) -> PathBuf {
    let dir = scratch_dir();
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{name}-{:?}.bin", std::thread::current().id()))
}

/// Removes this process's scratch directory, if any (the harness calls it when it ends).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch_dir());
}

/// Writes `data` to this thread's scratch file and loads it. The file is private (mode 0600),
/// as the loaders of secret files require.
fn through_file<T>(name: &str, data: &[u8], load: impl Fn(&std::path::Path) -> T) -> T {
    use std::io::Write;
    let path = scratch(name);
    let _ = std::fs::remove_file(&path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&path)
        .and_then(|mut f| f.write_all(data))
        .expect("the scratch file is writable");
    load(&path)
}

/// `ModelFile::load` on arbitrary bytes; what loads must hand out its weights for its role,
/// and save to a file that loads and saves to the same bytes again.
pub fn model_file(data: &[u8]) -> bool {
    let Ok(m) = through_file("model", data, ModelFile::load) else {
        return false;
    };
    // A file is the dealer's or a server's, never both.
    assert!(
        m.clone().into_dealer_weights().is_err() || m.clone().into_server_weights().is_err(),
        "a model file reads as the dealer's and as a server's"
    );
    let path = scratch("model-saved");
    m.save(&path).expect("a loaded model saves");
    let once = std::fs::read(&path).expect("saved");
    let again = ModelFile::load(&path).expect("a saved model loads");
    again.save(&path).expect("saves again");
    assert_eq!(
        std::fs::read(&path).expect("saved"),
        once,
        "saving is not stable"
    );
    assert_eq!(again.spec, m.spec);
    true
}

fn layers(shapes: &[(usize, usize)]) -> Vec<RingLayer> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, &(k, n))| RingLayer {
            k,
            n,
            w: (0..k * n).map(|j| (i * 1000 + j) as u64).collect(),
            bias: (0..n).map(|j| j as u64 * 3).collect(),
        })
        .collect()
}

/// The dealer's and both servers' files of a router head, a BERT and a pool.
pub fn model_file_seeds() -> Vec<Vec<u8>> {
    let seed = Seed::from_bytes([0x3c; 16]);
    let bert = BertShape {
        layers: 1,
        hidden: 4,
        heads: 2,
        ffn: 8,
        classes: 2,
        activation: Activation::Gelu,
        relative_buckets: 0,
    };
    let router = RouterHeadShape {
        features: 3,
        hidden: 4,
        experts: 2,
    };
    let pool = PoolShape {
        summary: bert,
        router: RouterHeadShape {
            features: router_feature_count(bert.hidden),
            hidden: 3,
            experts: 3,
        },
        // The second expert computes the tanh GeLU: the seeds hold both activations. The
        // third is another checkpoint's, with its own head and input.
        others: vec![
            PoolExpert::cut(BertShape {
                activation: Activation::GeluTanh,
                ..bert
            }),
            PoolExpert {
                shape: BertShape {
                    hidden: bert.hidden * 2,
                    ..bert
                },
                head: BertHead::Checkpoint,
                input: ExpertInput::Own,
            },
        ],
    };
    let mut specs = vec![(
        ModelSpec::RouterHead(router),
        securerouter_circuits::router_head::ring_layers(&PlainRouterHead::random(router, &seed))
            .expect("router layers"),
    )];
    specs.push((ModelSpec::Bert(bert), layers(&bert.layer_shapes())));
    specs.push((ModelSpec::Pool(pool.clone()), layers(&pool.layer_shapes())));
    let mut out = Vec::new();
    for (spec, layers) in specs {
        for file in ModelFile::deploy(spec, &layers, &seed).expect("deploys") {
            let path = scratch("model-seed");
            file.save(&path).expect("saves");
            out.push(std::fs::read(&path).expect("saved"));
        }
    }
    out
}

/// `ClientBundle::load` on arbitrary bytes; what loads must convert to a device table that the
/// device's parser accepts (or refuse with an error), and embed text.
pub fn client_bundle(data: &[u8]) -> bool {
    let Ok(bundle) = through_file("bundle", data, ClientBundle::load) else {
        return false;
    };
    if let Ok(table) = bundle.device_table() {
        let parsed = EmbeddingTable::parse(&table);
        assert!(
            parsed.is_ok(),
            "the host wrote a device table the device refuses: {:?}",
            parsed.err()
        );
    }
    let _ = bundle.embed_text("hello worlds, hello", 6);
    for k in bundle.own_input_experts() {
        let _ = bundle.embed_pair_for(k, "hello worlds", "hello", 6);
    }
    true
}

/// Two tiny models with their tokenizers.
fn tiny_models() -> Vec<(BertWeights, Tokenizer)> {
    let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n##s\n,\n";
    let mut out = Vec::new();
    for (hidden, positions, types) in [(4, 6, 2), (6, 3, 1)] {
        let config = BertConfig {
            vocab_size: vocab.lines().count(),
            hidden_size: hidden,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 8,
            hidden_act: "gelu".into(),
            max_position_embeddings: positions,
            type_vocab_size: types,
            layer_norm_eps: 1e-12,
            model_type: "bert".into(),
            architectures: Vec::new(),
            position_embedding_type: "absolute".into(),
        };
        let model =
            BertWeights::random(config, &Seed::from_bytes([hidden as u8; 16])).expect("a model");
        let tokenizer = Tokenizer::from_wordpiece(
            WordPiece::from_vocab_text(vocab).expect("a vocabulary"),
            std::path::Path::new("vocab.txt"),
        );
        out.push((model, tokenizer));
    }
    out
}

/// A tiny model's bundles: the vocabulary, embedding tables and their LayerNorm.
pub fn bundles() -> Vec<(Vec<u8>, ClientBundle)> {
    tiny_models()
        .iter()
        .map(|(model, tokenizer)| {
            let path = scratch("bundle-seed");
            ClientBundle::save(model, tokenizer, &path).expect("saves");
            let bytes = std::fs::read(&path).expect("saved");
            let bundle = ClientBundle::load(&path).expect("loads");
            (bytes, bundle)
        })
        .collect()
}

/// Bundles of two tiny models, and a pool's: the first model as the summary, the second as
/// expert 2, which reads an input of its own.
pub fn client_bundle_seeds() -> Vec<Vec<u8>> {
    let models = tiny_models();
    let path = scratch("bundle-seed");
    let (summary, own) = (&models[0], &models[1]);
    ClientBundle::save_pool(&summary.0, &summary.1, &[(2, &own.0, &own.1)], &path).expect("saves");
    let pool = std::fs::read(&path).expect("saved");
    bundles()
        .into_iter()
        .map(|(b, _)| b)
        .chain([pool])
        .collect()
}
