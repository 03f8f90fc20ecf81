//! The non-linear layers of a Transformer as secure circuits, written once over
//! [`Protocol`] for the dealer and both servers (DESIGN §3): GeLU, softmax and LayerNorm,
//! built from comparisons (one-bit DPF), selects and lookup tables (DPF) on clipped, rescaled
//! inputs.
//!
//! All values are fixed point with [`FRAC`] fractional bits, in Z_2^64 between layers (GeLU's
//! result in the narrower [`GELU_RING_BITS`]-bit ring, which the next layer reads).
//! Comparisons run on activations reduced to [`ACT_BITS`] bits (or fewer, see below), so every
//! value they see (GeLU inputs, attention scores and their differences, padding bias included)
//! must satisfy |x| < 2^(ACT_BITS − 1 − FRAC) = 8192 in real terms; BERT-style activations at
//! these points stay below a few hundred. LayerNorm variances, which grow with the residual
//! stream, are compared on as many bits as their range needs.
//!
//! | layer | rounds | approximation |
//! |---|---|---|
//! | GeLU | 2 | ReLU(x) − d(x), d = ReLU − GeLU from a 2^GELU_BITS table on x in [−4, 4) (one per [`Activation`]: exact or tanh GeLU), zero outside, read with the sign off one key; the sign × x joins the table's second opening |
//! | tanh | 3 | sign(x) + T(x), T = tanh − sign from a 2^TANH_BITS table on x in [−8, 8), zero outside, read with the sign off one key |
//! | softmax over n | 2⌈log2 n⌉ + 10 (8 left at scale 2^(3·FRAC)) | max tree to within 1/2; exp(−t) for t in [−1/2, 16) in steps of 2^−8 (0 beyond) as the product of a window table's entry (t at steps of 1/4, zero outside [−1/2, 16): the clip) and an 8-bit table's, opened as the tables' second opening; reciprocal from a 13-bit table, opened with its product with the sum, and one Newton step |
//! | LayerNorm | 9 | mean; sum of squares (h·variance, untruncated); 1/√ by range normalisation to [1, 2), a 10-bit table and 2^(−e/2) with √h folded in |
//!
//! Every opened element costs as many bits as its ring has, and a comparison's DPF has one level
//! per bit compared, so: values that only feed a table index or a comparison are rescaled by the
//! local [`Tensor::shift_down`] instead of the truncation gate; the softmax works in narrow
//! rings (its maximum on [`ACT_BITS`] bits, its exponentials' tables and products on
//! [`SOFTMAX_BITS`]) and widens once, either its result ([`softmax`]) or, for P·V, its
//! exponentials ([`softmax_triple_scale`]); comparisons whose result may be off near the
//! threshold (the max tree) read shifted values ([`gate::max_within`]); and functions that
//! vanish outside a window (GeLU's correction, the exponential's clip) read their sign or
//! clip off their table's key ([`Protocol::drelu_lookup`]).

use securerouter_core::Error;
use securerouter_core::gate::{self, LookupTable, Protocol, Tensor, WindowTable};
use securerouter_core::ring::BitWidth;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// Fractional bits of every activation.
pub const FRAC: u32 = 12;
/// Bits on which activations are compared.
pub const ACT_BITS: u32 = 26;
/// Ring of the softmax's exponentials, their sums and reciprocals: each exponential is below 2
/// (its argument is at least −1/2), so the sums stay below 2^(2·FRAC) for rows of up to 2048,
/// and every product the softmax truncates (entry ×
/// entry, sum × its reciprocal, value × reciprocal) is about 2^(2·FRAC) at most, below
/// 2^(SOFTMAX_BITS − 2) as truncation requires.
pub const SOFTMAX_BITS: u32 = 32;
/// Ring of the linear layers: their outputs, at scale 2^(2·FRAC) before truncation, stay below
/// 2^(LINEAR_BITS − 2 − 2·FRAC) = 2^26 in real terms as the truncation requires; products modulo
/// 2^52 are what one 52-bit multiply-add computes ([`gate::Kernels::matmul_reduced`]), and the
/// layers' openings take 52 bits an element instead of 64.
pub const LINEAR_BITS: u32 = 52;
/// Ring of GeLU and of the feed-forward layer that reads it: the narrowest a truncation by FRAC
/// from the linear ring gives (it needs more than LINEAR_BITS − FRAC bits). It holds GeLU's
/// values (below 2^(ACT_BITS − 1) units) and the next layer's outputs at scale 2^(2·FRAC) up
/// to 2^(GELU_RING_BITS − 2 − 2·FRAC) = 2^15 in real terms, as that layer's truncation
/// requires; every element opened in it costs 11 bits less than in the linear ring.
pub const GELU_RING_BITS: u32 = LINEAR_BITS - FRAC + 1;
/// Window bits of the GeLU correction table: x in [−4, 4) at steps of 8/2^GELU_BITS.
pub const GELU_BITS: u32 = 10;
/// Window bits of the tanh correction table: x in [−8, 8) at steps of 16/2^TANH_BITS.
pub const TANH_BITS: u32 = 12;
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
fn table<T: Send + Sync>(
    cell: &'static OnceLock<T>,
    build: impl FnOnce() -> Result<T, Error>,
) -> Result<&'static T, Error> {
    if let Some(t) = cell.get() {
        return Ok(t);
    }
    let t = build()?;
    Ok(cell.get_or_init(|| t))
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

/// The feed-forward activation a secure BERT computes, a property of its model
/// ([`crate::BertShape::activation`]): the dealer and both servers read it from the same model
/// file and build the same table from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Activation {
    /// x·Φ(x) with the exact normal CDF (Hugging Face's "gelu"; MiniLM's).
    Gelu,
    /// The tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (Hugging Face's
    /// "gelu_new" and "gelu_pytorch_tanh").
    GeluTanh,
}

impl Activation {
    /// The `hidden_act` a Hugging Face config names this activation by.
    pub fn hidden_act(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_new",
        }
    }
}

impl From<securerouter_ml::config::Activation> for Activation {
    fn from(a: securerouter_ml::config::Activation) -> Self {
        match a {
            securerouter_ml::config::Activation::Gelu => Activation::Gelu,
            securerouter_ml::config::Activation::GeluTanh => Activation::GeluTanh,
        }
    }
}

/// The step of the GeLU tables' index: y = v · 8/2^GELU_BITS.
fn gelu_step() -> f64 {
    8.0 / (1u64 << GELU_BITS) as f64
}

/// d(y) = ReLU(y) − GeLU(y) = |y|·Φ(−|y|) on y = v/2^(GELU_BITS − 3) ∈ [−4, 4), in fixed point
/// in GeLU's ring; zero beyond (d(4) ≈ 1.3e−4). Its entries are small and
/// non-negative, which the kernels sum on 32 bits.
fn gelu_erf_table() -> Result<&'static WindowTable, Error> {
    static CELL: OnceLock<WindowTable> = OnceLock::new();
    table(&CELL, || {
        let step = gelu_step();
        WindowTable::from_fn(GELU_BITS, width(GELU_RING_BITS)?, |v| {
            let y = (v as f64 * step).abs();
            let d = y * 0.5 * libm::erfc(y / std::f64::consts::SQRT_2);
            fixed(d, FRAC)
        })
    })
}

/// d(y) = ReLU(y) − gelu_tanh(y) on y = v/2^(GELU_BITS − 3) ∈ [−4, 4), in fixed point in
/// GeLU's ring, from the reference's
/// [`gelu_tanh`](securerouter_ml::reference::gelu_tanh); zero beyond (d(4) ≈ 7e−5).
fn gelu_tanh_table() -> Result<&'static WindowTable, Error> {
    static CELL: OnceLock<WindowTable> = OnceLock::new();
    table(&CELL, || {
        let step = gelu_step();
        WindowTable::from_fn(GELU_BITS, width(GELU_RING_BITS)?, |v| {
            let y = v as f64 * step;
            fixed(y.max(0.0) - securerouter_ml::reference::gelu_tanh(y), FRAC)
        })
    })
}

/// The correction table d = ReLU − `act`.
fn gelu_table(act: Activation) -> Result<&'static WindowTable, Error> {
    match act {
        Activation::Gelu => gelu_erf_table(),
        Activation::GeluTanh => gelu_tanh_table(),
    }
}

/// GeLU(x) = ReLU(x) − d(x) for the activation `act`, d = ReLU − GeLU from its own table, of a
/// linear layer's output `y` = x·2^FRAC before its truncation (scale 2^(2·FRAC), in the linear
/// layers' ring or a wider one): x read at the table's step straight from y (one local shift),
/// then [x ≥ 0]·x − d(x) from one DPF key in two rounds ([`Protocol::drelu_select_window`]),
/// x being y truncated, whose opening rides the gate's first exchange
/// ([`Protocol::truncate_later`]). Two rounds in all, where a separate ReLU product takes three
/// and truncating first four; both activations cost the same. The result lies in
/// Z_2^GELU_RING_BITS, which the next layer reads.
///
/// The shift may round x in [−2^(3 − GELU_BITS), 0) up to 0, which passes as positive and gives
/// x − d(0) = x for GeLU(x) ≈ x/2: an error below 2^(2 − GELU_BITS) (3.9e−3) on values that
/// small, as large as the table's own step error.
pub async fn gelu_of_product<P: Protocol>(
    p: &mut P,
    y: &Tensor,
    act: Activation,
) -> Result<Tensor, Error> {
    // |x| < 2^(ACT_BITS − 1) units, read on ACT_BITS + 1 bits and shifted to the table's
    // step: below 2^(ACT_BITS − 1 − shift), a quarter of its ring, so the table is exact.
    let shift = FRAC + 3 - GELU_BITS;
    if y.width().bits() < LINEAR_BITS {
        return Err(Error::ShapeMismatch(
            "GeLU reads a product in the linear layers' ring or a wider one",
        ));
    }
    let y = y.reduce(width(LINEAR_BITS)?)?;
    let x = p.truncate_later(&y, FRAC, width(GELU_RING_BITS)?).await?;
    let v = y
        .reduce(width(ACT_BITS + 1 + FRAC)?)?
        .shift_down(FRAC + shift)?;
    p.drelu_select_window(&v, gelu_table(act)?, x).await
}

// ------------------------------------------------------------------------------------ tanh

/// T(y) = tanh(y) − sign(y) at the midpoint y = (v + 1/2)·16/2^TANH_BITS of the step that
/// index v ∈ [−2^(TANH_BITS − 1), 2^(TANH_BITS − 1)) stands for, in fixed point; zero beyond
/// |y| ≥ 8, where |T| < 2.3e−7. The midpoint has the sign of its step (v ≥ 0 is positive), so
/// the sign the key reads and the table's agree.
fn tanh_table() -> Result<&'static WindowTable, Error> {
    static CELL: OnceLock<WindowTable> = OnceLock::new();
    table(&CELL, || {
        let step = 16.0 / (1u64 << TANH_BITS) as f64;
        WindowTable::from_fn(TANH_BITS, BitWidth::FULL, |v| {
            let y = (v as f64 + 0.5) * step;
            fixed(y.tanh() - y.signum(), FRAC)
        })
    })
}

/// tanh(x) = (2·[x ≥ 0] − 1) + T(x), BERT's pooler activation: x read at the table's step
/// (local shift), its sign and T(x) from one DPF key (2 rounds, [`Protocol::drelu_lookup`]),
/// then the sign bit as an arithmetic 2·[x ≥ 0] (1, [`Protocol::mul_bit`] on a public 2).
/// Three rounds.
///
/// The error is at most the table's step and a half (the step the midpoint stands for, plus
/// one step of the shift's carry) times tanh's slope of at most 1: below
/// 1.5·2^(4 − TANH_BITS) ≈ 5.9e−3, and far less where |x| is large.
pub async fn tanh<P: Protocol>(p: &mut P, x: &Tensor) -> Result<Tensor, Error> {
    // As for GeLU: |x| < 2^(ACT_BITS − 1) units on ACT_BITS + 1 bits, shifted to the step:
    // below a quarter of the shifted ring, so the table is exact.
    let shift = FRAC + 4 - TANH_BITS;
    let v = x.reduce(width(ACT_BITS + 1)?)?.shift_down(shift)?;
    let (positive, t) = p.drelu_lookup(&v, tanh_table()?).await?;
    let two = p.public(x.shape(), BitWidth::FULL, &vec![fixed(2.0, FRAC); x.len()])?;
    let sign = p.mul_bit(&positive, &two).await?;
    let sign = p.add_public(&sign, &[fixed(-1.0, FRAC)])?;
    sign.add(&t)
}

// --------------------------------------------------------------------------------- softmax

/// Fractional bits of the exponential's argument: exp(−t) is read for t in steps of 2^−8
/// (relative error below 0.4 %, unbiased), which keeps its table at 2^8 entries.
const EXP_FRAC: u32 = 8;

/// exp(−u / 2^EXP_FRAC) for u = 2^6·hi + lo, in fixed point with FRAC fractional bits in
/// Z_2^SOFTMAX_BITS: the high part's window table, exp(−2^6·hi / 2^EXP_FRAC) = exp(−hi/4) for
/// hi in −2..64 (t in [−1/2, 16) at steps of 1/4) and zero elsewhere in its window [−64, 64)
/// and outside it, which is the clip of t to [−1/2, 16) (exp(−16) ≈ 1e−7 is 0 here);
fn exp_high_table() -> Result<&'static WindowTable, Error> {
    static CELL: OnceLock<WindowTable> = OnceLock::new();
    table(&CELL, || {
        let unit = (1u64 << EXP_FRAC) as f64;
        WindowTable::from_fn(7, width(SOFTMAX_BITS)?, |hi| match hi {
            -2..64 => fixed((-(hi as f64) * 64.0 / unit).exp(), FRAC),
            _ => 0,
        })
    })
}

/// and the low part's table, entries lo mod 2^8 (lo in −64..=64) holding
/// exp(−lo / 2^EXP_FRAC).
fn exp_low_table() -> Result<&'static LookupTable, Error> {
    static CELL: OnceLock<LookupTable> = OnceLock::new();
    table(&CELL, || {
        let unit = (1u64 << EXP_FRAC) as f64;
        LookupTable::from_fn(width(8)?, width(SOFTMAX_BITS)?, |i| {
            let lo = match i {
                0..=64 => i as f64,
                192.. => i as f64 - 256.0, // lo < 0
                _ => return 0,             // never indexed
            };
            fixed((-lo / unit).exp(), FRAC)
        })
    })
}

/// exp(−t) for t ≥ −1/2 (read on ACT_BITS bits), in Z_2^out (out ≥ SOFTMAX_BITS; the
/// tables and the product stay in Z_2^SOFTMAX_BITS, the truncation widens):
/// u = t / 2^(FRAC − EXP_FRAC) and hi = t / 2^(FRAC − 2) shifted down (local), so that
/// lo = u − 2^6·hi lies in [−64, 64] whichever of the two is one more, for any t; exp(−hi/4)
/// from a window lookup, which is zero from t ≥ 16 on and so clips t (hi, in a ring of
/// ACT_BITS − FRAC + 2 bits, is read right up to t < 2^(ACT_BITS − 1 − FRAC) − 16, the bound
/// t has anyway), times exp(−lo / 2^EXP_FRAC) from a 2^8 table, the product opened as the
/// tables' second opening (2, [`Protocol::window_times_lookup`]); its truncation (1). Three
/// rounds.
pub async fn neg_exp<P: Protocol>(p: &mut P, t: &Tensor, out: BitWidth) -> Result<Tensor, Error> {
    let shape = t.shape().to_vec();
    let n = t.len();
    let t = t.reduce(act()?)?;
    // Both shifts by FRAC − 2 bits: t·2^(EXP_FRAC − 2) gives u, t itself gives hi.
    let shift = FRAC - 2;
    let both = t
        .scale(1 << (EXP_FRAC - 2))
        .reshape(&[n, 1])?
        .concat_last(&t.reshape(&[n, 1])?)?;
    let both = both.shift_down(shift)?;
    let (u, hi) = (both.gather_last(&[0])?, both.gather_last(&[1])?);
    let lo = u.sub(&hi.scale(1 << 6))?;
    let prod = p
        .window_times_lookup(
            (&hi, exp_high_table()?),
            (&lo.reduce(width(8)?)?, exp_low_table()?),
        )
        .await?;
    p.truncate_to(&prod, FRAC, out).await?.reshape(&shape)
}

/// Index bits of the reciprocal table.
const RECIPROCAL_BITS: u32 = 13;

/// 1/s for sums of exponentials, s in [1, 2n) (each term is below 2), in s's ring: a 13-bit
/// table y on s·2^(12 − k) with 2^k ≥ 2n, opened with s·y (2 rounds,
/// [`Protocol::lookup_mul`]; the index is shifted down locally and never wraps), then the rest
/// of one Newton step y(2 − s·y) (3 rounds).
pub async fn reciprocal<P: Protocol>(p: &mut P, s: &Tensor, n: usize) -> Result<Tensor, Error> {
    let y = reciprocal_double_scale(p, s, n).await?;
    p.truncate(&y, FRAC).await
}

/// [`reciprocal`] left at scale 2^(2·FRAC), the Newton step's product untruncated, for a
/// consumer that truncates anyway (4 rounds).
async fn reciprocal_double_scale<P: Protocol>(
    p: &mut P,
    s: &Tensor,
    n: usize,
) -> Result<Tensor, Error> {
    let k = usize::BITS - (2 * n.max(1) - 1).leading_zeros();
    if k > FRAC {
        return Err(Error::ShapeMismatch("softmax over more than 2048 entries"));
    }
    let lut = reciprocal_table(k, s.width())?;
    let index = s.shift_down(k)?;
    let (y, sy) = p
        .lookup_mul(&index.reduce(width(RECIPROCAL_BITS)?)?, &lut, s)
        .await?;
    let sy = p.truncate(&sy, FRAC).await?;
    let two_minus = p.add_public(&sy.neg(), &[2 << FRAC])?;
    p.mul(&y, &two_minus).await
}

/// Entry i ≈ 1 / (i · 2^(k − FRAC)), the reciprocal of the sum an index stands for (index 0,
/// never reached by a sum of at least 1, holds the entry of index 1).
fn reciprocal_table(k: u32, out: BitWidth) -> Result<LookupTable, Error> {
    LookupTable::from_fn(width(RECIPROCAL_BITS)?, out, |i| {
        let s = i.max(1) as f64 * (1u64 << k) as f64 / (1u64 << FRAC) as f64;
        fixed(1.0 / s, FRAC)
    })
}

/// Bits the max tree of a softmax over n drops from each difference it compares: the largest
/// (up to 8) with ⌈log2 n⌉·2^drop ≤ 2^(FRAC − 1), so that the value it finds lies within 1/2
/// of the row maximum (7/16 at n = 128), which the exponential's table absorbs.
fn max_drop(n: usize) -> u32 {
    let levels = u64::from(usize::BITS - n.saturating_sub(1).leading_zeros()); // ⌈log2 n⌉
    if levels == 0 {
        return 0;
    }
    let room = (1u64 << (FRAC - 1)) / levels;
    (63 - room.leading_zeros()).min(8)
}

/// exp(x − m) for m within 1/2 of each row's maximum (the softmax does not depend on which),
/// at scale 2^FRAC, and the reciprocal of each row's sum, repeated along the row, at scale
/// 2^FRAC or, with `wide`, 2^(2·FRAC): both in Z_2^ring. 2⌈log2 n⌉ rounds for m, 3 for the
/// exponentials, 5 for the reciprocals (4 with `wide`).
async fn exps_and_reciprocals<P: Protocol>(
    p: &mut P,
    x: &Tensor,
    ring: BitWidth,
    wide: bool,
) -> Result<(Tensor, Tensor), Error> {
    let n = x.last_dim();
    let x = x.reduce(act()?)?;
    let drop = max_drop(n);
    let max = gate::max_within(p, &x, width(ACT_BITS - drop)?, drop).await?;
    let t = max.repeat_last(n).reshape(x.shape())?.sub(&x)?;
    let e = neg_exp(p, &t, ring).await?;
    let sum = e.sum_last_axis();
    let inv = match wide {
        true => reciprocal_double_scale(p, &sum, n).await?,
        false => reciprocal(p, &sum, n).await?,
    };
    Ok((e, inv.repeat_last(n).reshape(x.shape())?))
}

/// softmax along the last axis of x ([rows, n ≤ 2048], read on ACT_BITS bits), as a 64-bit
/// wire at scale 2^FRAC: exponentials and reciprocals in Z_2^SOFTMAX_BITS
/// (2⌈log2 n⌉ + 8 rounds), their product (1), truncated into the full ring (1).
pub async fn softmax<P: Protocol>(p: &mut P, x: &Tensor) -> Result<Tensor, Error> {
    let (e, inv) = exps_and_reciprocals(p, x, width(SOFTMAX_BITS)?, false).await?;
    let prod = p.mul(&e, &inv).await?;
    p.truncate_to(&prod, FRAC, BitWidth::FULL).await
}

/// [`softmax`] left at scale 2^(3·FRAC), for a consumer that truncates anyway (P·V then drops
/// 3·FRAC bits, its products below 2^61 for values under 2^13): the exponentials' own
/// truncation widens them to 64 bits, and neither the product nor the reciprocal's Newton step
/// is truncated, two rounds less (2⌈log2 n⌉ + 8).
pub async fn softmax_triple_scale<P: Protocol>(p: &mut P, x: &Tensor) -> Result<Tensor, Error> {
    let (e, inv) = exps_and_reciprocals(p, x, BitWidth::FULL, true).await?;
    p.mul(&e, &inv).await
}

// ------------------------------------------------------------------------------- LayerNorm

/// Fractional bits of the mantissa the inverse square root's table reads: its index is off by
/// one unit at most (the local shift), so the table's relative error is about 2^−(bits+1).
const MANTISSA_BITS: u32 = 9;

/// Entry i ≈ 2^FRAC / √(i / 2^MANTISSA_BITS) for mantissas in [1, 2); index 0 stands for 2.
fn rsqrt_table() -> Result<&'static LookupTable, Error> {
    static CELL: OnceLock<LookupTable> = OnceLock::new();
    table(&CELL, || {
        let one = f64::from(1u32 << MANTISSA_BITS);
        LookupTable::from_fn(width(MANTISSA_BITS + 1)?, BitWidth::FULL, |i| match i {
            0 => fixed(0.5f64.sqrt(), FRAC),
            // Below 1: a mantissa a unit low when e was read one too high (see `rsqrt_in`).
            _ => fixed(1.0 / (i as f64 / one).sqrt(), FRAC),
        })
    })
}

/// Where an inverse square root's input lies and what multiplies its result: the input is held
/// at scale 2^`scale` and its real value lies in [2^`lo`, 2^(`hi`+1)) (0 gives 0); the result
/// is `factor`/√v at scale 2^FRAC.
#[derive(Clone, Copy, Debug)]
struct RsqrtRange {
    scale: u32,
    lo: i32,
    hi: i32,
    factor: f64,
}

/// 1/√v for v at scale FRAC in [2^V_MIN, 2^(V_MAX+1)) (v = 0 gives 0), by range normalisation
/// (comparisons with every power of two, a mantissa table and 2^(−e/2)).
/// Five rounds.
pub async fn rsqrt<P: Protocol>(p: &mut P, v: &Tensor) -> Result<Tensor, Error> {
    let range = RsqrtRange {
        scale: FRAC,
        lo: V_MIN,
        hi: V_MAX,
        factor: 1.0,
    };
    rsqrt_in(p, v, range).await
}

/// factor/√v over `range`: the exponent e = ⌊log2 v⌋ from comparisons of v (at scale FRAC)
/// with every power of two (1 round); v·2^(hi − e), the mantissa v·2^(−e) in [1, 2) up to a
/// public power of two, and factor·2^(−e/2) as sums of the comparison bits times v times
/// public differences and times public differences (1; the mantissa then shifted down
/// locally); its table of 2^(MANTISSA_BITS + 1) entries opened with its product with
/// factor·2^(−e/2) (2, [`Protocol::lookup_mul`]); truncated (1). Five rounds.
async fn rsqrt_in<P: Protocol>(p: &mut P, v: &Tensor, range: RsqrtRange) -> Result<Tensor, Error> {
    let RsqrtRange {
        scale,
        lo,
        hi,
        factor,
    } = range;
    let shape = v.shape().to_vec();
    let rows = v.len();
    let powers: Vec<i32> = (lo..=hi).collect();
    let count = powers.len();
    // The comparisons read v at scale FRAC (locally shifted, so one unit high at most, which
    // only moves e at a power of two exactly; the table covers the mantissa just below 1),
    // signed on a ring that holds v − 2^j for every j.
    let above_frac = scale.checked_sub(FRAC).ok_or(Error::ShapeMismatch(
        "an inverse square root's input must be held at scale 2^FRAC or finer",
    ))?;
    let v_frac = match above_frac {
        0 => v.reshape(&[rows])?,
        f => v.reshape(&[rows])?.shift_down(f)?,
    };
    let bits_compared = width((FRAC as i32 + hi + 3) as u32)?;
    let thresholds: Vec<u64> = powers
        .iter()
        .map(|&j| (1u64 << (j + FRAC as i32)).wrapping_neg())
        .collect();
    let above = p.add_public(
        &v_frac.reduce(bits_compared)?.repeat_last(count),
        &thresholds,
    )?;
    let bits = p.drelu(&above).await?; // b_j = [v ≥ 2^j], monotone
    // With b monotone, Σ_j b_j (c_j − c_{j−1}) = c_e: two coefficient series at once.
    // c_j: 2^(hi − j) (exact) and factor·2^(−j/2) at scale 24, as differences of neighbours.
    let series = |f: &dyn Fn(i32) -> u64| -> Vec<u64> {
        let c: Vec<u64> = powers.iter().map(|&j| f(j)).collect();
        (0..count)
            .map(|i| c[i].wrapping_sub(if i == 0 { 0 } else { c[i - 1] }))
            .collect()
    };
    let up = series(&|j| 1u64 << (hi - j));
    let down = series(&|j| (factor * 2f64.powf(24.0 - j as f64 / 2.0)).round() as u64);
    // The bits pick v·2^(hi − e) from v times the first series (the sum telescopes exactly in
    // the ring, whatever its terms overflow to) and factor·2^(−e/2) from the second, public.
    let v = v.reshape(&[rows])?;
    let scaled = v
        .repeat_last(count)
        .mul_public(&up)?
        .reshape(&[rows, count, 1])?;
    let down: Vec<u64> = (0..rows).flat_map(|_| down.iter().copied()).collect();
    let down = p.public(&[rows, count, 1], BitWidth::FULL, &down)?;
    let picked = p.mul_bit(&bits, &scaled.concat_last(&down)?).await?;
    let sums = picked.permute(&[0, 2, 1])?.sum_last_axis(); // [rows, 2]
    let down = sums.gather_last(&[1])?.reshape(&[rows])?;
    // v · 2^(hi − e) = mantissa · 2^(scale + hi); keep MANTISSA_BITS fractional bits of it.
    let mantissa = sums
        .gather_last(&[0])?
        .reshape(&[rows])?
        .shift_down(scale + hi as u32 - MANTISSA_BITS)?;
    let (_, r) = p
        .lookup_mul(
            &mantissa.reduce(width(MANTISSA_BITS + 1)?)?,
            rsqrt_table()?,
            &down,
        )
        .await?;
    p.truncate(&r, 24).await?.reshape(&shape)
}

/// ⌈log2 n⌉ and ⌊log2 n⌋ for n ≥ 1.
fn log2_bounds(n: usize) -> (i32, i32) {
    let floor = n.max(1).ilog2() as i32;
    (floor + i32::from(!n.is_power_of_two()), floor)
}

/// LayerNorm over the last axis with secret scale and shift (`affine`: γ at scale FRAC, β at
/// scale 3·FRAC): mean (1 round), squares (1), 1/√ of their sum (5), normalise (1), truncate
/// (1): nine rounds. The squares' sum, h times the variance at scale 2·FRAC, goes to the
/// inverse square root as it is, 1/h folded into its constant: no truncation of the squares or
/// of the variance. The centred values are scaled by γ while the inverse square root runs
/// (their opening rides its first exchange), and β joins the product with 1/√ in its opening.
pub async fn layer_norm<P: Protocol>(
    p: &mut P,
    x: &Tensor,
    affine: &P::Weights,
) -> Result<Tensor, Error> {
    let h = x.last_dim();
    let inv_h = 1.0 / h as f64;
    // 1/h on 30 bits: on 20, BERT-base's 1/768 was off by 2.4e-4 relative, so a row's mean
    // was off by 1e-3 at an offset of 5, a large error where the row's spread is small. The
    // product stays below 2^55 for |x| < 2^13 (see ACT_BITS).
    let mean = scale_by(p, &x.sum_last_axis(), inv_h, 30).await?;
    let centred = x.sub(&mean.repeat_last(h).reshape(x.shape())?)?;
    let sq = p.mul(&centred, &centred).await?; // scale 2·FRAC
    let (ceil, floor) = log2_bounds(h);
    let range = RsqrtRange {
        scale: 2 * FRAC,
        lo: V_MIN + floor,
        hi: V_MAX + ceil,
        factor: (h as f64).sqrt(),
    };
    // centred ⊙ γ does not wait for r: its opening travels with the inverse square root's
    // first exchange. It and the normalised product are opened in the linear ring, whose
    // truncation needs values below 2^50: at scale 2·FRAC that holds |centred ⊙ γ| < 2^26, and
    // at 3·FRAC a result below 2^14 in real terms, since |x − μ|/σ ≤ √h ≤ 32 (for |γ| and |β|
    // below a few hundred; trained LayerNorms keep them near 1).
    let ring = width(LINEAR_BITS)?;
    let scaled = p.scale_later(&centred.reduce(ring)?, affine).await?; // scale 2·FRAC
    let r = rsqrt_in(p, &sq.sum_last_axis(), range).await?;
    let scaled = p.resolve(scaled).await?;
    let r = r.reduce(ring)?.repeat_last(h).reshape(x.shape())?;
    let y = p.mul_add_shift(&scaled, &r, affine).await?; // scale 3·FRAC, plus β
    p.truncate_to(&y, 2 * FRAC, BitWidth::FULL).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use securerouter_ml::reference::{gelu as gelu_erf, gelu_tanh};

    /// Every index of a GeLU table with the point y it stands for.
    fn points() -> impl Iterator<Item = (i64, f64)> {
        let half = 1i64 << (GELU_BITS - 1);
        (-half..half).map(|v| (v, v as f64 * gelu_step()))
    }

    /// ReLU(y) − d(y) read back from a table entry in fixed point.
    fn read(t: &WindowTable, v: i64, y: f64) -> f64 {
        y.max(0.0) - t.get(v) as f64 / (1u64 << FRAC) as f64
    }

    /// The tanh GeLU's table holds ReLU − gelu_tanh at each of its points, rounded to FRAC
    /// bits (non-negative, as the kernels' 32-bit sums need), so ReLU(y) − T(y) is
    /// gelu_tanh(y) to within half a unit; it is zero outside.
    #[test]
    fn the_tanh_table_is_gelu_tanh_at_its_points() {
        let t = gelu_table(Activation::GeluTanh).unwrap();
        assert_eq!(t.window_bits(), GELU_BITS);
        let unit = 1.0 / (1u64 << FRAC) as f64;
        for (v, y) in points() {
            assert_eq!(
                t.get(v),
                fixed(y.max(0.0) - gelu_tanh(y), FRAC),
                "entry {v} (y = {y})"
            );
            assert!(
                t.get(v) < 1 << 10,
                "entry {v} is not small and non-negative"
            );
            let err = (read(t, v, y) - gelu_tanh(y)).abs();
            assert!(err <= unit / 2.0 + 1e-12, "y = {y}: off by {err}");
        }
        let half = 1i64 << (GELU_BITS - 1);
        assert_eq!((t.get(-half - 1), t.get(half)), (0, 0));
    }

    /// The exact GeLU's table is erf GeLU at its points to within half a unit, and the two
    /// tables differ: a model run with the other activation's table would be caught here
    /// (end to end the two functions differ by less than the ring's precision).
    #[test]
    fn the_exact_and_tanh_tables_differ() {
        let exact = gelu_table(Activation::Gelu).unwrap();
        let tanh = gelu_table(Activation::GeluTanh).unwrap();
        let unit = 1.0 / (1u64 << FRAC) as f64;
        let mut differ = 0;
        for (v, y) in points() {
            let err = (read(exact, v, y) - gelu_erf(y)).abs();
            assert!(err <= unit / 2.0 + 1e-12, "y = {y}: off by {err}");
            differ += usize::from(exact.get(v) != tanh.get(v));
        }
        println!(
            "the tables differ in {differ} of {} entries",
            1 << GELU_BITS
        );
        assert!(differ > 0);
    }

    #[test]
    fn activations_follow_the_checkpoints_names() {
        use securerouter_ml::config::Activation as Named;
        assert_eq!(Activation::from(Named::Gelu), Activation::Gelu);
        assert_eq!(Activation::from(Named::GeluTanh), Activation::GeluTanh);
        for a in [Activation::Gelu, Activation::GeluTanh] {
            let config = securerouter_ml::BertConfig {
                vocab_size: 8,
                hidden_size: 4,
                num_hidden_layers: 1,
                num_attention_heads: 1,
                intermediate_size: 8,
                hidden_act: a.hidden_act().into(),
                max_position_embeddings: 8,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
                model_type: "bert".into(),
                architectures: Vec::new(),
                position_embedding_type: "absolute".into(),
            };
            assert_eq!(Activation::from(config.activation().unwrap()), a);
        }
    }
}
