//! A flash-resident, int8-quantised embedding table and the WordPiece-ids path: a device that
//! can hold the table (about a quarter of the f32 size) computes its own input rows from token
//! ids, as the host client does from its bundle: LayerNorm(word + position + token type), then
//! the two client columns (attention bias, pooling weight), padded to the sequence length.
//!
//! The table is one byte string (`include_bytes!` or memory-mapped flash), checked once by
//! [`EmbeddingTable::parse`] and read in place; embedding a row needs no buffer. All integers
//! and reals are little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `SRDEVEMB` |
//! | 2 | format version (1) |
//! | 2 | hidden size |
//! | 4 | vocabulary size (word rows) |
//! | 2 | positions |
//! | 2 | token types |
//! | 4 | LayerNorm epsilon (f32) |
//! | | word, position and token-type tables, each: one f32 scale per row, then rows × hidden int8 |
//! | 4 · hidden | LayerNorm gain (f32) |
//! | 4 · hidden | LayerNorm bias (f32) |
//!
//! A stored value v of a row with scale s stands for v · s.

use crate::shares::EmbeddingSource;
use core::fmt;
use securerouter_core::ring::FixedPoint;

/// The table's first bytes.
pub const MAGIC: [u8; 8] = *b"SRDEVEMB";
/// The table format this crate reads.
pub const VERSION: u16 = 1;
/// Bytes before the tables.
pub const HEADER_LEN: usize = 24;
/// The attention bias of a padding token, in real terms (the host's `PAD_BIAS`): after the
/// row maximum is subtracted, the servers' exp clips it to 0.
pub const PAD_BIAS: f64 = -256.0;

/// Why a table or a token sequence was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EmbeddingError {
    /// The bytes do not start with [`MAGIC`].
    NotATable,
    /// The table is in another format version.
    Version(u16),
    /// A size in the header is zero.
    EmptyShape,
    /// The byte string's length does not match its header.
    Length {
        /// What the header implies.
        expected: usize,
        /// What is there.
        got: usize,
    },
    /// A scale, gain or bias is NaN or infinite, or a scale is negative.
    BadReal(&'static str),
    /// The LayerNorm epsilon is outside (0, 1).
    BadEpsilon,
    /// No tokens, or more than the sequence (or the table's positions) holds.
    TokenCount {
        /// Tokens given.
        tokens: usize,
        /// Most tokens allowed.
        max: usize,
    },
    /// Token ids and type ids differ in number.
    TypeCount,
    /// A token id is outside the vocabulary.
    TokenId {
        /// Position in the sequence.
        position: usize,
        /// The id.
        id: u32,
    },
    /// A token type is outside the table.
    TokenType {
        /// Position in the sequence.
        position: usize,
        /// The type.
        token_type: u32,
    },
}

impl fmt::Display for EmbeddingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbeddingError::NotATable => write!(f, "not an embedding table (bad magic)"),
            EmbeddingError::Version(v) => write!(
                f,
                "embedding table format {v}; this device reads format {VERSION}"
            ),
            EmbeddingError::EmptyShape => write!(f, "the embedding table has a zero size"),
            EmbeddingError::Length { expected, got } => write!(
                f,
                "the embedding table has {got} bytes; its header implies {expected}"
            ),
            EmbeddingError::BadReal(what) => {
                write!(f, "the embedding table's {what} holds an invalid real")
            }
            EmbeddingError::BadEpsilon => {
                write!(
                    f,
                    "the embedding table's LayerNorm epsilon is outside (0, 1)"
                )
            }
            EmbeddingError::TokenCount { tokens, max } => {
                write!(f, "{tokens} tokens; 1 to {max} fit")
            }
            EmbeddingError::TypeCount => write!(f, "token ids and type ids differ in number"),
            EmbeddingError::TokenId { position, id } => write!(
                f,
                "token id {id} at position {position} is outside the vocabulary"
            ),
            EmbeddingError::TokenType {
                position,
                token_type,
            } => write!(
                f,
                "token type {token_type} at position {position} is outside the table"
            ),
        }
    }
}

impl core::error::Error for EmbeddingError {}

/// One int8 table: a scale per row, then the rows.
#[derive(Clone, Copy, Debug)]
struct QuantisedRows<'a> {
    scales: &'a [u8],
    values: &'a [u8],
    width: usize,
}

impl<'a> QuantisedRows<'a> {
    /// Splits `rows` × `width` off the front of `bytes`.
    fn take(bytes: &mut &'a [u8], rows: usize, width: usize) -> Self {
        let (scales, rest) = bytes.split_at(rows * 4);
        let (values, rest) = rest.split_at(rows * width);
        *bytes = rest;
        QuantisedRows {
            scales,
            values,
            width,
        }
    }

    fn rows(&self) -> usize {
        self.scales.len() / 4
    }

    fn scale(&self, row: usize) -> f32 {
        f32_at(self.scales, row)
    }

    /// Row `row` as (scale, int8 values).
    fn row(&self, row: usize) -> (f32, &'a [u8]) {
        (
            self.scale(row),
            &self.values[row * self.width..(row + 1) * self.width],
        )
    }
}

fn f32_at(bytes: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([
        bytes[4 * i],
        bytes[4 * i + 1],
        bytes[4 * i + 2],
        bytes[4 * i + 3],
    ])
}

fn all_finite(bytes: &[u8]) -> bool {
    (0..bytes.len() / 4).all(|i| f32_at(bytes, i).is_finite())
}

/// A checked embedding table, read in place.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddingTable<'a> {
    hidden: usize,
    word: QuantisedRows<'a>,
    position: QuantisedRows<'a>,
    token_type: QuantisedRows<'a>,
    gain: &'a [u8],
    bias: &'a [u8],
    eps: f32,
}

impl<'a> EmbeddingTable<'a> {
    /// Checks `bytes` (header, exact length, every real) and reads the table in place.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EmbeddingError> {
        if bytes.len() < HEADER_LEN || bytes[..8] != MAGIC {
            return Err(EmbeddingError::NotATable);
        }
        let u16_at = |i: usize| usize::from(u16::from_le_bytes([bytes[i], bytes[i + 1]]));
        let version = u16_at(8) as u16;
        if version != VERSION {
            return Err(EmbeddingError::Version(version));
        }
        let hidden = u16_at(10);
        let vocab = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        let (positions, types) = (u16_at(16), u16_at(18));
        let eps = f32_at(&bytes[20..24], 0);
        if hidden == 0 || vocab == 0 || positions == 0 || types == 0 {
            return Err(EmbeddingError::EmptyShape);
        }
        let expected =
            table_len(hidden, vocab, positions, types).ok_or(EmbeddingError::Length {
                expected: usize::MAX,
                got: bytes.len(),
            })?;
        if bytes.len() != expected {
            return Err(EmbeddingError::Length {
                expected,
                got: bytes.len(),
            });
        }
        if !(eps > 0.0 && eps < 1.0) {
            return Err(EmbeddingError::BadEpsilon);
        }
        let mut rest = &bytes[HEADER_LEN..];
        let word = QuantisedRows::take(&mut rest, vocab, hidden);
        let position = QuantisedRows::take(&mut rest, positions, hidden);
        let token_type = QuantisedRows::take(&mut rest, types, hidden);
        let (gain, bias) = rest.split_at(4 * hidden);
        for (table, what) in [
            (&word, "word scales"),
            (&position, "position scales"),
            (&token_type, "token type scales"),
        ] {
            if !(0..table.rows()).all(|r| {
                let s = table.scale(r);
                s.is_finite() && s >= 0.0
            }) {
                return Err(EmbeddingError::BadReal(what));
            }
        }
        if !all_finite(gain) {
            return Err(EmbeddingError::BadReal("LayerNorm gain"));
        }
        if !all_finite(bias) {
            return Err(EmbeddingError::BadReal("LayerNorm bias"));
        }
        crate::log::debug!(
            "embedding table: {} words, {} positions, hidden {}",
            vocab,
            positions,
            hidden
        );
        Ok(EmbeddingTable {
            hidden,
            word,
            position,
            token_type,
            gain,
            bias,
            eps,
        })
    }

    /// Hidden size.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Word rows.
    pub fn vocab_size(&self) -> usize {
        self.word.rows()
    }

    /// Positions (the longest sequence it embeds).
    pub fn positions(&self) -> usize {
        self.position.rows()
    }
}

/// Element `j` of the sum of three dequantised rows (word, position, token type).
fn dequantised_sum(rows: &[(f32, &[u8]); 3], j: usize) -> f32 {
    rows.iter().map(|(s, v)| f32::from(v[j] as i8) * s).sum()
}

/// The table's byte length for a shape, `None` on overflow.
pub fn table_len(hidden: usize, vocab: usize, positions: usize, types: usize) -> Option<usize> {
    let rows = vocab.checked_add(positions)?.checked_add(types)?;
    let per_row = hidden.checked_add(4)?;
    rows.checked_mul(per_row)?
        .checked_add(hidden.checked_mul(8)?)?
        .checked_add(HEADER_LEN)
}

/// The client's input rows for a token sequence, computed from an [`EmbeddingTable`] as they
/// are shared: `seq_len` rows of `hidden + 2` words (embedding after LayerNorm, attention bias,
/// pooling weight), the real tokens first, then padding (zeros, [`PAD_BIAS`], 0).
#[derive(Clone, Copy, Debug)]
pub struct TokenEmbedder<'t, 'i> {
    table: EmbeddingTable<'t>,
    ids: &'i [u32],
    type_ids: &'i [u32],
    seq_len: usize,
    format: FixedPoint,
}

impl<'t, 'i> TokenEmbedder<'t, 'i> {
    /// The rows of WordPiece `ids` (with their `type_ids`, 0 for a single sentence) padded to
    /// `seq_len`, fixed-point encoded in `format`.
    pub fn new(
        table: EmbeddingTable<'t>,
        ids: &'i [u32],
        type_ids: &'i [u32],
        seq_len: usize,
        format: FixedPoint,
    ) -> Result<Self, EmbeddingError> {
        let max = seq_len.min(table.positions());
        if ids.is_empty() || ids.len() > max {
            return Err(EmbeddingError::TokenCount {
                tokens: ids.len(),
                max,
            });
        }
        if type_ids.len() != ids.len() {
            return Err(EmbeddingError::TypeCount);
        }
        for (position, (&id, &token_type)) in ids.iter().zip(type_ids).enumerate() {
            if id as usize >= table.vocab_size() {
                return Err(EmbeddingError::TokenId { position, id });
            }
            if token_type as usize >= table.token_type.rows() {
                return Err(EmbeddingError::TokenType {
                    position,
                    token_type,
                });
            }
        }
        Ok(TokenEmbedder {
            table,
            ids,
            type_ids,
            seq_len,
            format,
        })
    }
}

impl EmbeddingSource for TokenEmbedder<'_, '_> {
    fn rows(&self) -> usize {
        self.seq_len
    }

    fn width(&self) -> usize {
        self.table.hidden + 2
    }

    fn read_row(&mut self, index: usize, out: &mut [u64]) -> Result<(), securerouter_core::Error> {
        let h = self.table.hidden;
        if index >= self.seq_len || out.len() != h + 2 {
            return Err(securerouter_core::Error::LengthMismatch {
                expected: h + 2,
                got: out.len(),
            });
        }
        let (embedding, tail) = out.split_at_mut(h);
        let n = self.ids.len();
        let Some(&id) = self.ids.get(index) else {
            embedding.fill(0);
            tail[0] = self.format.encode(PAD_BIAS)?;
            tail[1] = 0;
            return Ok(());
        };
        let t = &self.table;
        let rows = [
            t.word.row(id as usize),
            t.position.row(index),
            t.token_type.row(self.type_ids[index] as usize),
        ];
        // LayerNorm in three passes over flash (mean, variance, output): no row buffer.
        let mean = (0..h).map(|j| dequantised_sum(&rows, j)).sum::<f32>() / h as f32;
        let var = (0..h)
            .map(|j| {
                let d = dequantised_sum(&rows, j) - mean;
                d * d
            })
            .sum::<f32>()
            / h as f32;
        let inv = 1.0 / libm::sqrtf(var + t.eps);
        for (j, o) in embedding.iter_mut().enumerate() {
            let y =
                (dequantised_sum(&rows, j) - mean) * inv * f32_at(t.gain, j) + f32_at(t.bias, j);
            *o = self.format.encode(f64::from(y))?;
        }
        tail[0] = 0;
        tail[1] = self.format.encode(1.0 / n as f64)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use securerouter_core::ring::BitWidth;

    /// A 3-word, 4-position, 1-type table of hidden 2, written by hand.
    fn table_bytes() -> [u8; 24 + 8 * 6 + 16] {
        let mut b = [0u8; 24 + 8 * 6 + 16];
        b[..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&2u16.to_le_bytes());
        b[12..16].copy_from_slice(&3u32.to_le_bytes());
        b[16..18].copy_from_slice(&4u16.to_le_bytes());
        b[18..20].copy_from_slice(&1u16.to_le_bytes());
        b[20..24].copy_from_slice(&1e-6f32.to_le_bytes());
        let mut at = 24;
        let mut put = |b: &mut [u8], bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        // Word rows: scales 0.5, 1, 0.25; values (2, -2), (1, 3), (4, 0).
        for s in [0.5f32, 1.0, 0.25] {
            put(&mut b, &s.to_le_bytes());
        }
        put(&mut b, &[2, (-2i8) as u8, 1, 3, 4, 0]);
        // Positions: scale 0 everywhere (no position signal).
        for _ in 0..4 {
            put(&mut b, &0f32.to_le_bytes());
        }
        put(&mut b, &[9; 8]);
        put(&mut b, &0f32.to_le_bytes());
        put(&mut b, &[0, 0]);
        for g in [2.0f32, 1.0] {
            put(&mut b, &g.to_le_bytes());
        }
        for beta in [0.0f32, 0.5] {
            put(&mut b, &beta.to_le_bytes());
        }
        b
    }

    fn fp() -> FixedPoint {
        FixedPoint::new(12, BitWidth::FULL).unwrap()
    }

    #[test]
    fn rows_are_layer_normed_sums_then_bias_and_pooling_weight() {
        let bytes = table_bytes();
        let table = EmbeddingTable::parse(&bytes).unwrap();
        assert_eq!(
            (table.hidden(), table.vocab_size(), table.positions()),
            (2, 3, 4)
        );
        let mut e = TokenEmbedder::new(table, &[0, 1], &[0, 0], 3, fp()).unwrap();
        assert_eq!((e.rows(), e.width()), (3, 4));
        let mut row = [0u64; 4];
        let real = |row: &[u64]| -> [f64; 4] { core::array::from_fn(|i| fp().decode(row[i])) };
        // Word 0 is (1, -1): normalised (1, -1), times the gain (2, 1), plus (0, 0.5).
        e.read_row(0, &mut row).unwrap();
        let r = real(&row);
        assert!(
            (r[0] - 2.0).abs() < 1e-3 && (r[1] + 0.5).abs() < 1e-3,
            "{r:?}"
        );
        assert_eq!((r[2], r[3]), (0.0, 0.5));
        // Word 1 is (1, 3): normalised (-1, 1).
        e.read_row(1, &mut row).unwrap();
        let r = real(&row);
        assert!(
            (r[0] + 2.0).abs() < 1e-3 && (r[1] - 1.5).abs() < 1e-3,
            "{r:?}"
        );
        // Padding.
        e.read_row(2, &mut row).unwrap();
        assert_eq!(real(&row), [0.0, 0.0, PAD_BIAS, 0.0]);
        assert!(e.read_row(3, &mut row).is_err());
        assert!(e.read_row(0, &mut [0u64; 3]).is_err());
    }

    #[test]
    fn bad_tables_and_token_sequences_are_named() {
        let good = table_bytes();
        let parse = |b: &[u8]| EmbeddingTable::parse(b).err();
        assert_eq!(parse(&good[..10]), Some(EmbeddingError::NotATable));
        let mut b = good;
        b[0] = b'X';
        assert_eq!(parse(&b), Some(EmbeddingError::NotATable));
        let mut b = good;
        b[8] = 2;
        assert_eq!(parse(&b), Some(EmbeddingError::Version(2)));
        let mut b = good;
        b[10] = 0;
        assert_eq!(parse(&b), Some(EmbeddingError::EmptyShape));
        assert_eq!(
            parse(&good[..good.len() - 1]),
            Some(EmbeddingError::Length {
                expected: good.len(),
                got: good.len() - 1
            })
        );
        let mut b = good;
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        b[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(parse(&b), Some(EmbeddingError::Length { .. })));
        let mut b = good;
        b[20..24].copy_from_slice(&0f32.to_le_bytes());
        assert_eq!(parse(&b), Some(EmbeddingError::BadEpsilon));
        let mut b = good;
        b[24..28].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(parse(&b), Some(EmbeddingError::BadReal("word scales")));
        let mut b = good;
        b[24..28].copy_from_slice(&(-1f32).to_le_bytes());
        assert_eq!(parse(&b), Some(EmbeddingError::BadReal("word scales")));
        let mut b = good;
        let gain = good.len() - 16;
        b[gain..gain + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        assert_eq!(parse(&b), Some(EmbeddingError::BadReal("LayerNorm gain")));

        let table = EmbeddingTable::parse(&good).unwrap();
        let new = |ids: &[u32], types: &[u32], seq| {
            TokenEmbedder::new(table, ids, types, seq, fp()).err()
        };
        assert_eq!(
            new(&[], &[], 3),
            Some(EmbeddingError::TokenCount { tokens: 0, max: 3 })
        );
        // The table has 4 positions, so a longer sequence still takes at most 4 tokens.
        assert_eq!(
            new(&[0; 5], &[0; 5], 8),
            Some(EmbeddingError::TokenCount { tokens: 5, max: 4 })
        );
        assert_eq!(new(&[0, 0], &[0], 3), Some(EmbeddingError::TypeCount));
        assert_eq!(
            new(&[0, 3], &[0, 0], 3),
            Some(EmbeddingError::TokenId { position: 1, id: 3 })
        );
        assert_eq!(
            new(&[0, 1], &[0, 1], 3),
            Some(EmbeddingError::TokenType {
                position: 1,
                token_type: 1
            })
        );
    }
}
