//! The two-party gate engine: masked wires with a dealer, in the style of SIGMA and Orca.
//!
//! Every secret x on a wire is held by both servers as the public masked value x^ = x + r; only
//! the dealer knows r. Linear operations are local ([`Tensor`] methods act on masked values
//! and masks alike). Each non-linear gate is local evaluation of dealer key material on x^,
//! giving shares of f(x) + r_out, then one opening: one round, about one ring element per
//! output per server.
//!
//! A computation is written once, generic over [`Protocol`]: run on a [`DealerSide`] it works
//! on masks and emits every key in the order the gates consume them; run on a [`ServerSide`] it
//! works on masked values and consumes those keys. Dealer and servers cannot drift apart,
//! because they execute the same code.
//!
//! The outside world enters through three traits implemented by adapters: [`Channel`] (the
//! P0–P1 link), [`KeySink`]/[`KeySource`] (the dealer's streams) and [`Kernels`] (local heavy
//! math). [`memory`] has in-process versions for tests.
//!
//! | gate | rounds | bytes sent per server per element | dealer → P1 per element |
//! |---|---|---|---|
//! | input | 1 | l/8 | 0 |
//! | output (to the client) | 0 | 0 | l/8 |
//! | reveal (to both servers) | 0 | 0 | l/8 to both |
//! | linear (secret weights) | 1 | l/8 per output | l/8 per input and per output (on the linear stream) |
//! | truncate by f from Z_2^l into Z_2^L (L = l, or wider) | 1 | L/8 | (L − l + f)/8 |
//! | shift down by f into Z_2^(l−f) ([`Tensor::shift_down`]) | 0 | 0 | 0 |
//! | DReLU on n bits | 1 | 1/8 | 0 (plus an (n−1)-bit one-bit DPF key to both) |
//! | bit × value | 1 | l/8 per value | l/8 per bit + 2·l/8 per value |
//! | product, element-wise | 1 | l/8 | 2·l/8 |
//! | lookup table on n bits | 2 | 2·out/8 | 0 (plus a one-bit DPF key to both: 1 + 16(n−7) + ⌈(n−7)/4⌉ + 16 bytes for n ≥ 7) |
//! | lookup and its product with a value | 2 | 3·out/8 | 3·out/8 (plus the lookup's key) |
//! | DReLU and a window table on n bits | 2 | 1/8 + 2·out/8 | out/8 (plus DReLU's (n−1)-bit key to both) |
//! | a window table's value times a lookup's | 2 | 3·out/8 | 4·out/8 (plus the two DPF keys to both) |
//! | DReLU × value minus a window table | 2 | 1/8 + 2·out/8 | out/8 + 3·out/8 (plus DReLU's key) |

pub mod channel;
mod compare;
mod compose;
pub mod kernels;
mod later;
mod linear;
mod lookup;
pub mod memory;
mod multiply;
mod roles;
mod tensor;
mod truncate;
mod window;

pub use channel::{Channel, KeySink, KeySource, Traffic, pack, packed_len, unpack};
pub use compare::drelu_key_bytes;
pub use compose::{argmax, less_than, max, max_within, relu, select};
pub use kernels::{
    CpuKernels, Kernels, WindowBits, check_key_batch, check_lookup_table, check_matmul,
    check_window_table, each_product, masked_dot, table_rotations,
};
pub use later::Later;
pub use linear::{DealerWeights, MAX_LINEAR_ROWS, ServerWeights, share_weights};
pub use lookup::{LookupTable, MAX_TABLE_BITS};
pub use roles::{DealerSide, KEY_CHUNK, ServerSide};
pub use tensor::Tensor;
pub use window::WindowTable;

use crate::Error;
use crate::ring::BitWidth;
use alloc::vec::Vec;

/// The gates, generic over the role that runs them. Circuit code takes `&mut impl Protocol`
/// and is thereby written once for the dealer and both servers.
#[allow(async_fn_in_trait)] // adapters choose their executor; Send bounds are theirs
pub trait Protocol {
    /// A linear layer's weights as this role holds them.
    type Weights;

    /// Marks the start of a named part of a circuit (e.g. "softmax") so that adapters can
    /// account time and traffic per part; gates ignore it.
    fn phase(&mut self, _name: &'static str) {}

    /// A public constant as a wire (servers hold the values; the dealer's mask is 0).
    fn public(&self, shape: &[usize], width: BitWidth, values: &[u64]) -> Result<Tensor, Error>;

    /// Adds public constants (same broadcast as [`Tensor::mul_public`]); masks are unchanged.
    fn add_public(&self, x: &Tensor, c: &[u64]) -> Result<Tensor, Error>;

    /// y = x·W + b with secret weights; x is [.., k] in any ring, and y in the same one.
    async fn linear(&mut self, x: &Tensor, w: &Self::Weights) -> Result<Tensor, Error>;

    /// y = x ⊙ γ + β along the last axis, with secret per-feature γ, β given as a layer with
    /// one input (k = 1): LayerNorm's scale and shift. One round, like [`Protocol::linear`].
    async fn affine(&mut self, x: &Tensor, w: &Self::Weights) -> Result<Tensor, Error>;

    /// Batched product of two secret matrices [.., m, k] · [.., k, n].
    async fn matmul(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor, Error>;

    /// [`Protocol::matmul`] plus a secret offset, in the same round and bytes: element e of
    /// the product gets `offset`'s bias number `index[e]`. `offset` is a layer with no inputs
    /// (k = 0): the servers hold its biases in additive shares and each adds its share to its
    /// share of the product before the opening; the dealer's part of it is empty (the output
    /// mask is the product's), so the offset stays hidden from the dealer too.
    async fn matmul_offset(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        offset: &Self::Weights,
        index: &[u32],
    ) -> Result<Tensor, Error>;

    /// Element-wise product of two secret tensors.
    async fn mul(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor, Error>;

    /// Arithmetic shift right by f bits (|x| < 2^(width−2)); exact or one more.
    async fn truncate(&mut self, x: &Tensor, f: u32) -> Result<Tensor, Error> {
        self.truncate_to(x, f, x.width()).await
    }

    /// [`Protocol::truncate`] with the result in Z_2^out, out > width − f: out above the
    /// input's width carries a value from a narrow ring into a wide one (f = 0 only widens).
    async fn truncate_to(&mut self, x: &Tensor, f: u32, out: BitWidth) -> Result<Tensor, Error>;

    /// [`Protocol::truncate_to`] whose opening travels with the next gate's exchange, so that
    /// it costs no round of its own where its result is not needed at once (same bytes and
    /// keys). [`Protocol::resolve`] gives the wire.
    async fn truncate_later(&mut self, x: &Tensor, f: u32, out: BitWidth) -> Result<Later, Error>;

    /// x ⊙ γ along the last axis with the secret per-feature scale γ of a one-input layer (its
    /// shift β left out: [`Protocol::mul_add_shift`] adds it), whose opening travels with the
    /// next gate's exchange like [`Protocol::truncate_later`]'s. The bytes and keys of
    /// [`Protocol::affine`].
    async fn scale_later(&mut self, x: &Tensor, w: &Self::Weights) -> Result<Later, Error>;

    /// x ⊙ y + β along the last axis, β the secret shift of the one-input layer `w` (its scale
    /// not read): the servers add their shares of β to their shares of the product before its
    /// opening, so it costs what [`Protocol::mul`] costs.
    async fn mul_add_shift(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        w: &Self::Weights,
    ) -> Result<Tensor, Error>;

    /// The wire of a deferred gate ([`Protocol::truncate_later`], [`Protocol::scale_later`]):
    /// opened by a later exchange, or now (one round) if none came.
    async fn resolve(&mut self, later: Later) -> Result<Tensor, Error>;

    /// [x ≥ 0] for x read as signed in its width, as a 1-bit wire.
    async fn drelu(&mut self, x: &Tensor) -> Result<Tensor, Error>;

    /// d·z for a 1-bit wire d and a value z of d's shape, or of d's shape plus one axis
    /// (each bit multiplies a row).
    async fn mul_bit(&mut self, d: &Tensor, z: &Tensor) -> Result<Tensor, Error>;

    /// T(x) for a public table over x's width.
    async fn lookup(&mut self, x: &Tensor, table: &LookupTable) -> Result<Tensor, Error>;

    /// T(x) and T(x)·z for a public table and a wire z of x's shape in the table's ring, in
    /// the two rounds of [`Protocol::lookup`] alone: the product is opened with T(x).
    async fn lookup_mul(
        &mut self,
        x: &Tensor,
        table: &LookupTable,
        z: &Tensor,
    ) -> Result<(Tensor, Tensor), Error>;

    /// [x ≥ 0] as a 1-bit wire and T(x) for a table that is zero outside a window around 0,
    /// both from one DPF key, in two rounds; x read as signed in its width, which must exceed
    /// the window's bits by two. T(x) is exact for |x| < 2^(width − 2).
    async fn drelu_lookup(
        &mut self,
        x: &Tensor,
        table: &WindowTable,
    ) -> Result<(Tensor, Tensor), Error>;

    /// [x ≥ 0]·z − T(x) for a window table T, in the two rounds of
    /// [`Protocol::drelu_lookup`] alone: the sign's product with z joins the table's second
    /// opening. z is a deferred wire ([`Protocol::truncate_later`]) of x's shape in the table's
    /// ring; its opening rides the first exchange. GeLU is ReLU(x) less the table of
    /// ReLU − GeLU.
    async fn drelu_select_window(
        &mut self,
        x: &Tensor,
        table: &WindowTable,
        z: Later,
    ) -> Result<Tensor, Error>;

    /// T(x)·U(y) for a window table T (as [`Protocol::drelu_lookup`] reads it, its sign not
    /// opened) and a lookup table U of the same output ring, x and y of one shape, in two
    /// rounds: both tables' first openings travel together, and their product is the second
    /// opening (for two tables whose values are only needed multiplied).
    async fn window_times_lookup(
        &mut self,
        x: (&Tensor, &WindowTable),
        y: (&Tensor, &LookupTable),
    ) -> Result<Tensor, Error>;

    /// Ends a wire: a server returns its additive share of the value for the client; the
    /// dealer returns nothing (it shares the wire's mask).
    async fn output(&mut self, x: &Tensor) -> Result<Vec<u64>, Error>;

    /// Opens a wire to both servers (not to the client): the dealer sends them its mask, so
    /// each computes x = x^ − r alone. Returns x as a public wire: servers hold the values,
    /// the dealer a zero mask (it learns nothing). No round between the servers. Use it only
    /// where the protocol decides that the servers may learn x (e.g. `reveal-route`).
    async fn reveal(&mut self, x: &Tensor) -> Result<Tensor, Error>;
}

impl<S: KeySink> Protocol for DealerSide<S> {
    type Weights = DealerWeights;

    fn public(&self, shape: &[usize], width: BitWidth, values: &[u64]) -> Result<Tensor, Error> {
        // Validate exactly as the servers do, so both sides fail alike.
        Tensor::new(shape, width, values.to_vec())?;
        Ok(Tensor::zeros(shape, width))
    }

    fn add_public(&self, x: &Tensor, c: &[u64]) -> Result<Tensor, Error> {
        x.check_broadcast(c)?; // fail exactly where the servers fail
        Ok(x.clone())
    }

    async fn linear(&mut self, x: &Tensor, w: &DealerWeights) -> Result<Tensor, Error> {
        linear::deal_linear(self, x, w)
    }

    async fn affine(&mut self, x: &Tensor, w: &DealerWeights) -> Result<Tensor, Error> {
        linear::deal_affine(self, x, w)
    }

    async fn matmul(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor, Error> {
        multiply::deal_matmul(self, x, y)
    }

    async fn matmul_offset(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        offset: &DealerWeights,
        index: &[u32],
    ) -> Result<Tensor, Error> {
        let out = multiply::deal_matmul(self, x, y)?;
        // Fail exactly where the servers fail.
        multiply::check_offset((offset.inputs(), offset.outputs()), index, out.len())?;
        Ok(out)
    }

    async fn mul(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor, Error> {
        multiply::deal_mul(self, x, y)
    }

    async fn truncate_to(&mut self, x: &Tensor, f: u32, out: BitWidth) -> Result<Tensor, Error> {
        truncate::deal(self, x, f, out)
    }

    async fn truncate_later(&mut self, x: &Tensor, f: u32, out: BitWidth) -> Result<Later, Error> {
        truncate::deal_later(self, x, f, out)
    }

    async fn scale_later(&mut self, x: &Tensor, w: &DealerWeights) -> Result<Later, Error> {
        Ok(Later::dealt(linear::deal_affine(self, x, w)?))
    }

    async fn mul_add_shift(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        w: &DealerWeights,
    ) -> Result<Tensor, Error> {
        multiply::deal_mul_add_shift(self, x, y, w)
    }

    async fn resolve(&mut self, later: Later) -> Result<Tensor, Error> {
        later.dealer_wire()
    }

    async fn drelu(&mut self, x: &Tensor) -> Result<Tensor, Error> {
        compare::deal(self, x)
    }

    async fn mul_bit(&mut self, d: &Tensor, z: &Tensor) -> Result<Tensor, Error> {
        multiply::deal_mul_bit(self, d, z)
    }

    async fn lookup(&mut self, x: &Tensor, table: &LookupTable) -> Result<Tensor, Error> {
        lookup::deal(self, x, table)
    }

    async fn lookup_mul(
        &mut self,
        x: &Tensor,
        table: &LookupTable,
        z: &Tensor,
    ) -> Result<(Tensor, Tensor), Error> {
        lookup::deal_mul(self, x, table, z)
    }

    async fn drelu_lookup(
        &mut self,
        x: &Tensor,
        table: &WindowTable,
    ) -> Result<(Tensor, Tensor), Error> {
        window::deal(self, x, table)
    }

    async fn drelu_select_window(
        &mut self,
        x: &Tensor,
        table: &WindowTable,
        z: Later,
    ) -> Result<Tensor, Error> {
        window::deal_select(self, x, table, z)
    }

    async fn window_times_lookup(
        &mut self,
        x: (&Tensor, &WindowTable),
        y: (&Tensor, &LookupTable),
    ) -> Result<Tensor, Error> {
        window::deal_times_lookup(self, x, y)
    }

    async fn output(&mut self, x: &Tensor) -> Result<Vec<u64>, Error> {
        linear::deal_output(self, x);
        Ok(Vec::new())
    }

    async fn reveal(&mut self, x: &Tensor) -> Result<Tensor, Error> {
        Ok(linear::deal_reveal(self, x))
    }
}

impl<C: Channel, K: KeySource, X: Kernels> Protocol for ServerSide<C, K, X> {
    type Weights = ServerWeights;

    fn public(&self, shape: &[usize], width: BitWidth, values: &[u64]) -> Result<Tensor, Error> {
        Tensor::new(shape, width, values.to_vec())
    }

    fn add_public(&self, x: &Tensor, c: &[u64]) -> Result<Tensor, Error> {
        x.add_public_to_values(c)
    }

    async fn linear(&mut self, x: &Tensor, w: &ServerWeights) -> Result<Tensor, Error> {
        linear::eval_linear(self, x, w).await
    }

    async fn affine(&mut self, x: &Tensor, w: &ServerWeights) -> Result<Tensor, Error> {
        linear::eval_affine(self, x, w).await
    }

    async fn matmul(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor, Error> {
        multiply::eval_matmul(self, x, y, None).await
    }

    async fn matmul_offset(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        offset: &ServerWeights,
        index: &[u32],
    ) -> Result<Tensor, Error> {
        multiply::eval_matmul(self, x, y, Some((offset, index))).await
    }

    async fn mul(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor, Error> {
        multiply::eval_mul(self, x, y).await
    }

    async fn truncate_to(&mut self, x: &Tensor, f: u32, out: BitWidth) -> Result<Tensor, Error> {
        truncate::eval(self, x, f, out).await
    }

    async fn truncate_later(&mut self, x: &Tensor, f: u32, out: BitWidth) -> Result<Later, Error> {
        truncate::eval_later(self, x, f, out).await
    }

    async fn scale_later(&mut self, x: &Tensor, w: &ServerWeights) -> Result<Later, Error> {
        linear::eval_scale_later(self, x, w).await
    }

    async fn mul_add_shift(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        w: &ServerWeights,
    ) -> Result<Tensor, Error> {
        multiply::eval_mul_add_shift(self, x, y, w).await
    }

    async fn resolve(&mut self, later: Later) -> Result<Tensor, Error> {
        later.server_wire(self).await
    }

    async fn drelu(&mut self, x: &Tensor) -> Result<Tensor, Error> {
        compare::eval(self, x).await
    }

    async fn mul_bit(&mut self, d: &Tensor, z: &Tensor) -> Result<Tensor, Error> {
        multiply::eval_mul_bit(self, d, z).await
    }

    async fn lookup(&mut self, x: &Tensor, table: &LookupTable) -> Result<Tensor, Error> {
        lookup::eval(self, x, table).await
    }

    async fn lookup_mul(
        &mut self,
        x: &Tensor,
        table: &LookupTable,
        z: &Tensor,
    ) -> Result<(Tensor, Tensor), Error> {
        lookup::eval_mul(self, x, table, z).await
    }

    async fn drelu_lookup(
        &mut self,
        x: &Tensor,
        table: &WindowTable,
    ) -> Result<(Tensor, Tensor), Error> {
        window::eval(self, x, table).await
    }

    async fn drelu_select_window(
        &mut self,
        x: &Tensor,
        table: &WindowTable,
        z: Later,
    ) -> Result<Tensor, Error> {
        window::eval_select(self, x, table, z).await
    }

    async fn window_times_lookup(
        &mut self,
        x: (&Tensor, &WindowTable),
        y: (&Tensor, &LookupTable),
    ) -> Result<Tensor, Error> {
        window::eval_times_lookup(self, x, y).await
    }

    async fn output(&mut self, x: &Tensor) -> Result<Vec<u64>, Error> {
        linear::eval_output(self, x).await
    }

    async fn reveal(&mut self, x: &Tensor) -> Result<Tensor, Error> {
        linear::eval_reveal(self, x).await
    }
}
