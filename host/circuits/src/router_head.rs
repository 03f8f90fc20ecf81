//! The router head: a 2-layer MLP with ReLU over the summary encoder's pooled features, then a
//! secure argmax whose one-hot choice stays secret. Its plaintext twin, as the model provider
//! holds it, is `securerouter_ml::router`.

use super::FRAC_BITS;
use crate::bert::RingLayer;
use securerouter_core::Error;
use securerouter_core::gate::{self, Protocol, Tensor};
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_ml::router::PlainRouterHead;

/// Width at which signs are compared in the router (scores and the summary expert's logits stay
/// far below 2^39 in fixed point).
pub(crate) const COMPARE_BITS: u32 = 40;

/// Runs the router head on `rows` queries of `features` values; returns the scores
/// [rows, experts] and the secret one-hot choice [rows, experts].
pub async fn router_head<P: Protocol>(
    p: &mut P,
    x: &Tensor,
    layers: &[P::Weights],
) -> Result<Vec<Tensor>, Error> {
    let [l1, l2] = layers else {
        return Err(Error::ShapeMismatch(
            "the router head has exactly two layers",
        ));
    };
    let cmp = BitWidth::new(COMPARE_BITS)?;
    let h = p.linear(x, l1).await?;
    let h = p.truncate(&h, FRAC_BITS).await?;
    let h = gate::relu(p, &h, cmp).await?;
    let s = p.linear(&h, l2).await?;
    let s = p.truncate(&s, FRAC_BITS).await?;
    let (_, onehot) = gate::argmax(p, &s, cmp).await?;
    Ok(vec![s, onehot])
}

/// The router head's layers in the ring (weights at FRAC_BITS, biases at 2·FRAC_BITS).
pub fn ring_layers(head: &PlainRouterHead) -> crate::Result<Vec<RingLayer>> {
    let fp = FixedPoint::new(FRAC_BITS, BitWidth::FULL)?;
    let fp2 = FixedPoint::new(2 * FRAC_BITS, BitWidth::FULL)?;
    let enc = |f: FixedPoint, v: &[f64]| -> crate::Result<Vec<u64>> {
        v.iter()
            .map(|&a| {
                f.encode(a).map_err(|source| crate::Error::FixedPoint {
                    what: "weight".into(),
                    source,
                })
            })
            .collect()
    };
    let s = head.shape;
    Ok(vec![
        RingLayer {
            k: s.features,
            n: s.hidden,
            w: enc(fp, &head.w1)?,
            bias: enc(fp2, &head.b1)?,
        },
        RingLayer {
            k: s.hidden,
            n: s.experts,
            w: enc(fp, &head.w2)?,
            bias: enc(fp2, &head.b2)?,
        },
    ])
}
