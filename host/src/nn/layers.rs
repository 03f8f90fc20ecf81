//! The non-linear layers of a Transformer as secure circuits, written once over
//! [`Protocol`] for the dealer and both servers (DESIGN §3): GeLU, softmax and LayerNorm,
//! built from comparisons (DCF), selects and lookup tables (DPF) on clipped, truncated inputs.
//!
//! All values are fixed point with [`FRAC`] fractional bits in Z_2^64. Comparisons run on
//! activations reduced to [`ACT_BITS`] bits (a DCF of ACT_BITS − 1 levels each), so every value
//! they see (GeLU inputs, attention scores and their differences, padding bias included) must
//! satisfy |x| < 2^(ACT_BITS − 1 − FRAC) = 8192 in real terms; BERT-style activations at these
//! points stay below a few hundred. LayerNorm variances, which grow with the residual stream,
//! are compared on [`NORM_BITS`] bits.
//!
//! | layer | rounds | approximation |
//! |---|---|---|
//! | GeLU | 7 | ReLU(x) − d(|x|), d from a 2^GELU_BITS table on |x| clipped to [0, 4) |
//! | softmax over n | 2⌈log2 n⌉ + 16 | max tree; exp(−t) as a product of two entries of one 8-bit table on t clipped to [0, 16) in steps of 2^−8; reciprocal from a 12-bit table and one Newton step |
//! | LayerNorm | 15 | mean; variance; 1/√v by range normalisation to [1, 2), a 9-bit table and 2^(−e/2) |

use securerouter_core::Error;
use securerouter_core::gate::{self, LookupTable, Protocol, Tensor};
use securerouter_core::ring::BitWidth;
use std::sync::OnceLock;

/// Fractional bits of every activation.
pub const FRAC: u32 = 12;
/// Bits on which activations are compared.
pub const ACT_BITS: u32 = 26;
/// Bits on which LayerNorm variances are compared: up to 2^(V_MAX + 1) = 2^18 in real terms.
pub const NORM_BITS: u32 = 32;
/// Index bits of the GeLU correction table: |x| in [0, 4) at steps of 4/2^GELU_BITS.
pub const GELU_BITS: u32 = 10;
/// exp(−t) is computed for t < 16; beyond it the result is exp(−16) ≈ 1e−7, i.e. 0.
const EXP_CLIP: u64 = (16 << FRAC) - 1;
/// Range of the LayerNorm variance the normaliser handles: 2^V_MIN ≤ v < 2^(V_MAX + 1).
const V_MIN: i32 = -(FRAC as i32);
const V_MAX: i32 = 17;

fn width(bits: u32) -> Result<BitWidth, Error> {
    BitWidth::new(bits)
}

fn act() -> Result<BitWidth, Error> {
    width(ACT_BITS)
}

/// round(v · 2^scale) as a ring element (v is a small public constant).
fn fixed(v: f64, scale: u32) -> u64 {
    (v * (1u64 << scale) as f64).round() as i64 as u64
}

/// A table built once per process.
fn table(
    cell: &'static OnceLock<LookupTable>,
    build: impl FnOnce() -> Result<LookupTable, Error>,
) -> Result<&'static LookupTable, Error> {
    if let Some(t) = cell.get() {
        return Ok(t);
    }
    let t = build()?;
    Ok(cell.get_or_init(|| t))
}

/// min(t, c) for public c, comparing c − t on `cmp` bits (which must hold it as a signed
/// value): 2 rounds (one comparison, one bit × value).
pub async fn clip_above<P: Protocol>(
    p: &mut P,
    t: &Tensor,
    c: u64,
    cmp: BitWidth,
) -> Result<Tensor, Error> {
    let below = p.add_public(&t.neg(), &[c])?; // c − t ≥ 0 ⇔ t ≤ c
    let keep = p.drelu(&below.reduce(cmp)?).await?;
    let over = p.add_public(t, &[c.wrapping_neg()])?; // t − c
    let kept = p.mul_bit(&keep, &over).await?;
    p.add_public(&kept, &[c])
}

/// Multiplies by a public real `c` (|c| < 2^11) with `shift` bits of precision, then truncates:
/// 2^shift · c must be an integer to within the precision the caller needs.
pub async fn scale_by<P: Protocol>(
    p: &mut P,
    x: &Tensor,
    c: f64,
    shift: u32,
) -> Result<Tensor, Error> {
    p.truncate(&x.scale(fixed(c, shift)), shift).await
}

// ------------------------------------------------------------------------------------ GeLU

/// d(y) = ReLU(y) − GeLU(y) = |y|·Φ(−|y|) on |y| = i/2^(GELU_BITS − 2), in fixed point.
fn gelu_table() -> Result<&'static LookupTable, Error> {
    static CELL: OnceLock<LookupTable> = OnceLock::new();
    table(&CELL, || {
        let step = 4.0 / (1u64 << GELU_BITS) as f64;
        LookupTable::from_fn(width(GELU_BITS)?, BitWidth::FULL, |i| {
            let y = i as f64 * step;
            let d = y * 0.5 * libm::erfc(y / std::f64::consts::SQRT_2);
            fixed(d, FRAC)
        })
    })
}

/// GeLU(x) = ReLU(x) − d(|x|): sign (1), ReLU (1), |x| truncated to the table's step (1),
/// clipped to the table (2), looked up (2). Seven rounds.
pub async fn gelu<P: Protocol>(p: &mut P, x: &Tensor) -> Result<Tensor, Error> {
    let positive = p.drelu(&x.reduce(act()?)?).await?;
    let relu = p.mul_bit(&positive, x).await?;
    let abs = relu.scale(2).sub(x)?;
    // |x| · 2^(GELU_BITS − 2): the table index, before clipping. With |x| < 2^(ACT_BITS − 1)
    // it is at most 2^(ACT_BITS − 1 − shift), so the clip compares on ACT_BITS − shift bits.
    let shift = FRAC + 2 - GELU_BITS;
    let index = p.truncate(&abs, shift).await?;
    let index = clip_above(p, &index, (1 << GELU_BITS) - 1, width(ACT_BITS - shift)?).await?;
    let d = p
        .lookup(&index.reduce(width(GELU_BITS)?)?, gelu_table()?)
        .await?;
    relu.sub(&d)
}

// --------------------------------------------------------------------------------- softmax

/// Fractional bits of the exponential's argument: exp(−t) is read for t in steps of 2^−8
/// (relative error below 0.4 %, unbiased), which keeps its table at 2^8 entries.
const EXP_FRAC: u32 = 8;

/// exp(−u / 2^EXP_FRAC) for u = 2^6·hi + lo: entries 96 + hi (hi in 0..=65) hold
/// exp(−2^6·hi / 2^EXP_FRAC), entries lo mod 2^8 (lo in −64..=64) hold exp(−lo / 2^EXP_FRAC);
/// both in fixed point with FRAC fractional bits.
fn exp_table() -> Result<&'static LookupTable, Error> {
    static CELL: OnceLock<LookupTable> = OnceLock::new();
    table(&CELL, || {
        let unit = (1u64 << EXP_FRAC) as f64;
        LookupTable::from_fn(width(8)?, BitWidth::FULL, |i| {
            let u = match i {
                96..=161 => ((i - 96) << 6) as f64,
                0..=64 => i as f64,
                192.. => i as f64 - 256.0, // lo < 0
                _ => return 0,             // never indexed
            };
            fixed((-u / unit).exp(), FRAC)
        })
    })
}

/// exp(−t) for t ≥ 0: clip to [0, 16) (2 rounds); u = t / 2^(FRAC − EXP_FRAC) and
/// hi = t / 2^(FRAC − 2) truncated together (1), so that lo = u − 2^6·hi lies in [−64, 64];
/// two lookups in one 2^8 table at once (2), their product (1) and truncation (1). Seven rounds.
pub async fn neg_exp<P: Protocol>(p: &mut P, t: &Tensor) -> Result<Tensor, Error> {
    let shape = t.shape().to_vec();
    let n = t.len();
    let t = clip_above(p, t, EXP_CLIP, act()?).await?;
    // Both truncations by FRAC − 2 bits: t·2^(EXP_FRAC − 2) gives u, t itself gives hi.
    let shift = FRAC - 2;
    let both = t
        .scale(1 << (EXP_FRAC - 2))
        .reshape(&[n, 1])?
        .concat_last(&t.reshape(&[n, 1])?)?;
    let both = p.truncate(&both, shift).await?;
    let (u, hi) = (both.gather_last(&[0])?, both.gather_last(&[1])?);
    let lo = u.sub(&hi.scale(1 << 6))?;
    let index = lo.concat_last(&hi)?;
    let index = p.add_public(&index, &[0, 96])?;
    let e = p.lookup(&index.reduce(width(8)?)?, exp_table()?).await?;
    let prod = p.mul(&e.gather_last(&[0])?, &e.gather_last(&[1])?).await?;
    p.truncate(&prod, FRAC).await?.reshape(&shape)
}

/// 1/s for sums of exponentials, s in [1, n]: a 12-bit table on s·2^(12 − k) with
/// 2^k ≥ n (3 rounds), then one Newton step y(2 − s·y) (4 rounds).
pub async fn reciprocal<P: Protocol>(p: &mut P, s: &Tensor, n: usize) -> Result<Tensor, Error> {
    let k = (usize::BITS - n.max(2).saturating_sub(1).leading_zeros()).max(1);
    if k > FRAC {
        return Err(Error::ShapeMismatch("softmax over more than 4096 entries"));
    }
    let lut = reciprocal_table(k)?;
    let index = p.truncate(s, k).await?;
    let y = p.lookup(&index.reduce(width(12)?)?, &lut).await?;
    let sy = p.mul(s, &y).await?;
    let sy = p.truncate(&sy, FRAC).await?;
    let two_minus = p.add_public(&sy.neg(), &[2 << FRAC])?;
    let y = p.mul(&y, &two_minus).await?;
    p.truncate(&y, FRAC).await
}

/// Entry i ≈ 1 / (i · 2^(k − 12)), the reciprocal of the sum an index stands for; index 0
/// stands for 2^12 (the sum n = 2^k wraps).
fn reciprocal_table(k: u32) -> Result<LookupTable, Error> {
    LookupTable::from_fn(width(12)?, BitWidth::FULL, |i| {
        let i = if i == 0 { 4096 } else { i };
        let s = i as f64 * (1u64 << k) as f64 / 4096.0;
        fixed(1.0 / s, FRAC)
    })
}

/// softmax along the last axis of x ([rows, n]): subtract the row maximum (2⌈log2 n⌉ rounds),
/// exponentiate (7), sum, reciprocal (7), multiply (2).
pub async fn softmax<P: Protocol>(p: &mut P, x: &Tensor) -> Result<Tensor, Error> {
    let n = x.last_dim();
    let max = gate::max(p, x, act()?).await?;
    let t = max.repeat_last(n).reshape(x.shape())?.sub(x)?;
    let e = neg_exp(p, &t).await?;
    let inv = reciprocal(p, &e.sum_last_axis(), n).await?;
    let prod = p.mul(&e, &inv.repeat_last(n).reshape(x.shape())?).await?;
    p.truncate(&prod, FRAC).await
}

// ------------------------------------------------------------------------------- LayerNorm

/// Entry i ≈ 2^FRAC / √(i / 2^8) for mantissas i/2^8 in [1, 2); index 0 stands for 2^9.
fn rsqrt_table() -> Result<&'static LookupTable, Error> {
    static CELL: OnceLock<LookupTable> = OnceLock::new();
    table(&CELL, || {
        LookupTable::from_fn(width(9)?, BitWidth::FULL, |i| match i {
            0 => fixed(0.5f64.sqrt(), FRAC),
            256.. => fixed(1.0 / (i as f64 / 256.0).sqrt(), FRAC),
            _ => 0, // never indexed: mantissas are at least 1
        })
    })
}

/// 1/√v for v in [2^V_MIN, 2^(V_MAX+1)) (v = 0 gives 0): the exponent e = ⌊log2 v⌋ from
/// comparisons with every power of two (1 round); 2^(V_MAX − e) and 2^(−e/2) as sums of the
/// comparison bits times public differences (1); the mantissa v·2^(−e) in [1, 2) (2); its table
/// (2); times 2^(−e/2) (2). Eight rounds.
pub async fn rsqrt<P: Protocol>(p: &mut P, v: &Tensor) -> Result<Tensor, Error> {
    let shape = v.shape().to_vec();
    let rows = v.len();
    let powers: Vec<i32> = (V_MIN..=V_MAX).collect();
    let count = powers.len();
    let thresholds: Vec<u64> = powers
        .iter()
        .map(|&j| (1u64 << (j + FRAC as i32)).wrapping_neg())
        .collect();
    let above = p.add_public(&v.reshape(&[rows])?.repeat_last(count), &thresholds)?;
    let bits = p.drelu(&above.reduce(width(NORM_BITS)?)?).await?; // b_j = [v ≥ 2^j], monotone
    // With b monotone, Σ_j b_j (c_j − c_{j−1}) = c_e: two coefficient series at once.
    // c_j: 2^(V_MAX − j) (exact) and 2^(−j/2) at scale 24, as differences of neighbours.
    let series = |f: &dyn Fn(i32) -> u64| -> Vec<u64> {
        let c: Vec<u64> = powers.iter().map(|&j| f(j)).collect();
        (0..count)
            .map(|i| c[i].wrapping_sub(if i == 0 { 0 } else { c[i - 1] }))
            .collect()
    };
    let up = series(&|j| 1u64 << (V_MAX - j));
    let down = series(&|j| 2f64.powf(24.0 - j as f64 / 2.0).round() as u64);
    let coef: Vec<u64> = (0..rows)
        .flat_map(|_| (0..count).flat_map(|i| [up[i], down[i]]))
        .collect();
    let coef = p.public(&[rows, count, 2], BitWidth::FULL, &coef)?;
    let picked = p.mul_bit(&bits, &coef).await?;
    let sums = picked.permute(&[0, 2, 1])?.sum_last_axis(); // [rows, 2]
    let up = sums.gather_last(&[0])?.reshape(&[rows])?;
    let down = sums.gather_last(&[1])?.reshape(&[rows])?;
    let v = v.reshape(&[rows])?;
    // v · 2^(V_MAX − e) = mantissa · 2^(FRAC + V_MAX); keep 8 fractional bits of the mantissa.
    let mantissa = p.mul(&v, &up).await?;
    let mantissa = p.truncate(&mantissa, FRAC + V_MAX as u32 - 8).await?;
    let r = p
        .lookup(&mantissa.reduce(width(9)?)?, rsqrt_table()?)
        .await?;
    let r = p.mul(&r, &down).await?;
    p.truncate(&r, 24).await?.reshape(&shape)
}

/// LayerNorm over the last axis with secret scale and shift (`affine`: γ at scale FRAC, β at
/// scale 3·FRAC): mean (1 round), variance (3), 1/√v (8), normalise and scale (2), truncate (1).
pub async fn layer_norm<P: Protocol>(
    p: &mut P,
    x: &Tensor,
    affine: &P::Weights,
) -> Result<Tensor, Error> {
    let h = x.last_dim();
    let inv_h = 1.0 / h as f64;
    let mean = scale_by(p, &x.sum_last_axis(), inv_h, 20).await?;
    let centred = x.sub(&mean.repeat_last(h).reshape(x.shape())?)?;
    let sq = p.mul(&centred, &centred).await?;
    let sq = p.truncate(&sq, FRAC).await?;
    let var = scale_by(p, &sq.sum_last_axis(), inv_h, 20).await?;
    let r = rsqrt(p, &var).await?;
    let y = p
        .mul(&centred, &r.repeat_last(h).reshape(x.shape())?)
        .await?; // scale 2·FRAC
    let y = p.affine(&y, affine).await?; // scale 3·FRAC
    p.truncate(&y, 2 * FRAC).await
}
