//! Offline training with candle (CPU, f32): fine-tuning the pool's experts and training the
//! router. Everything here runs before deployment; nothing in it touches a secret share.

pub mod encoder;
pub mod expert;
pub mod pool;

/// Small models for the training modules' tests.
#[cfg(test)]
mod testing {
    use crate::model::{BertConfig, BertWeights};
    use securerouter_core::prg::Seed;

    /// A random BERT of `layers` layers, hidden 16, 4 heads, vocabulary 40.
    pub fn tiny(layers: usize, seed: u8) -> BertWeights {
        let config = BertConfig {
            vocab_size: 40,
            hidden_size: 16,
            num_hidden_layers: layers,
            num_attention_heads: 4,
            intermediate_size: 32,
            hidden_act: "gelu".into(),
            max_position_embeddings: 16,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        };
        BertWeights::random(config, &Seed::from_bytes([seed; 16])).unwrap()
    }

    /// The client's f32 embedding of token ids.
    pub fn embed(model: &BertWeights, ids: &[u32]) -> Vec<f32> {
        let e = model.embed(ids, &vec![0; ids.len()]).unwrap();
        e.data.iter().map(|&v| v as f32).collect()
    }
}
pub mod router;

use crate::cli::TrainAction;
use std::io::Write;

/// Runs `securerouter train`.
///
/// # Errors
/// Whatever building the pool or training the router fails with.
pub fn run(action: &TrainAction, out: &mut dyn Write) -> anyhow::Result<()> {
    match action {
        TrainAction::Pool {
            cache_dir,
            pool_dir,
            experts,
            seq,
            epochs,
            limit,
            cost_queries,
            force,
        } => {
            let opts = pool::PoolOptions {
                cache: cache_dir.clone(),
                dir: pool_dir.clone(),
                expert_layers: experts.clone(),
                seq_len: *seq as usize,
                fine_tune: expert::FineTuneOptions {
                    epochs: *epochs,
                    ..expert::FineTuneOptions::default()
                },
                limit: *limit,
                cost_queries: *cost_queries,
                force: *force,
            };
            let m = pool::build_pool(&opts, out)?;
            writeln!(out, "{}", serde_json::to_string(&m)?)?;
            Ok(())
        }
        TrainAction::Router {
            cache_dir,
            pool_dir,
            task_weight,
            balance_weight,
            cost_weight,
            costs,
            tau,
            epochs,
            hidden,
            dry_run,
        } => {
            for (what, v) in [
                ("--task-weight", *task_weight),
                ("--balance-weight", *balance_weight),
                ("--cost-weight", *cost_weight),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    anyhow::bail!("{what} must be a finite number ≥ 0, not {v}");
                }
            }
            if !(tau.is_finite() && *tau > 0.0) {
                anyhow::bail!("--tau must be positive, not {tau}");
            }
            let dir = pool::pool_dir(pool_dir.as_deref(), cache_dir.as_deref())?;
            let opts = router::RouterOptions {
                hidden: *hidden,
                epochs: *epochs,
                tau: *tau,
                task_weight: *task_weight,
                balance_weight: *balance_weight,
                cost_weight: *cost_weight,
                ..router::RouterOptions::default()
            };
            let (_, report) = pool::train_pool_router(&dir, &opts, costs.as_deref(), !dry_run)?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
            Ok(())
        }
    }
}
