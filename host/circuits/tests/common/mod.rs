//! What the integration tests of this crate share: the real MiniLM-L6 and Rotten Tomatoes
//! sentences from the asset cache, with a sentiment head fitted on a few of them.

use securerouter_ml::data::{self, LabelledSentence};
use securerouter_ml::{BertWeights, ClassifierHead, WordPiece, mean_pool};
use securerouter_ml::{Encoding, assets};

/// MiniLM-L6 cut to some layers, its tokenizer, the train/held-out split and a head.
pub struct RealMiniLm {
    /// The encoder.
    pub model: BertWeights,
    /// Its WordPiece tokenizer.
    pub tok: WordPiece,
    /// Held-out sentences (the split every bench and the pool use).
    pub test: Vec<LabelledSentence>,
    /// A sentiment head fitted on pooled features of 40 training sentences.
    pub head: ClassifierHead,
    /// Tokens per sequence.
    pub seq_len: usize,
}

impl RealMiniLm {
    /// Token ids of `text`, cut to the sequence length.
    pub fn encode(&self, text: &str) -> Encoding {
        self.tok.encode(text, self.seq_len)
    }

    /// Mean-pooled f64 reference features of `text`.
    pub fn pooled(&self, text: &str) -> Vec<f64> {
        let e = self.encode(text);
        mean_pool(&self.model.forward(&e.ids, &e.type_ids).unwrap())
    }
}

/// MiniLM-L6 cut to `layers` at `seq_len` tokens, or `None` (with the reason printed) when the
/// assets are missing here; under CI (where `assets fetch` runs first) that is a failure.
pub fn real_minilm(layers: usize, seq_len: usize) -> Option<RealMiniLm> {
    let cache = assets::cache_dir(None).ok()?;
    if assets::MINILM_L6.path(&cache).is_err() || data::rotten_tomatoes(&cache).is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "MiniLM-L6 or the VADER data is missing from {}: run `securerouter assets fetch`",
            cache.display()
        );
        println!("SKIPPED: assets missing from {}", cache.display());
        return None;
    }
    let dir = assets::MINILM_L6.path(&cache).unwrap();
    let (train, test) = data::split(
        data::rotten_tomatoes(&cache).unwrap(),
        0.2,
        &data::SPLIT_SEED,
    )
    .unwrap();
    let mut real = RealMiniLm {
        model: BertWeights::load(&dir, Some(layers)).unwrap(),
        tok: WordPiece::from_vocab_file(&dir.join("vocab.txt")).unwrap(),
        test,
        head: ClassifierHead::fit(&[vec![0.0], vec![1.0]], &[0, 1], 2, 1, 0.0).unwrap(),
        seq_len,
    };
    let feats: Vec<Vec<f64>> = train[..40].iter().map(|s| real.pooled(&s.text)).collect();
    let labels: Vec<usize> = train[..40].iter().map(|s| s.label as usize).collect();
    real.head = ClassifierHead::fit(&feats, &labels, 2, 200, 1e-3).unwrap();
    Some(real)
}
