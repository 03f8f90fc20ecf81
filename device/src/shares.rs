//! Seeded share streaming: P1's share of an embedding, one row at a time.

use core::fmt;
use heapless::Vec;
use securerouter_core::prg::Seed;
use securerouter_core::ring::FixedPoint;
use securerouter_core::share::SeededShareStream;

/// What can go wrong while streaming shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DeviceError {
    /// The source's rows are wider than the streamer's fixed buffer.
    RowTooWide {
        /// Words per row of the source.
        width: usize,
        /// Words the buffer holds.
        capacity: usize,
    },
    /// The source could not produce a row (the core error says why).
    Source(securerouter_core::Error),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::RowTooWide { width, capacity } => write!(
                f,
                "embedding rows have {width} words but the share buffer holds {capacity}"
            ),
            DeviceError::Source(e) => write!(f, "embedding source failed: {e}"),
        }
    }
}

impl core::error::Error for DeviceError {}

impl From<securerouter_core::Error> for DeviceError {
    fn from(e: securerouter_core::Error) -> Self {
        DeviceError::Source(e)
    }
}

/// A matrix of ring elements the device shares, produced one row at a time.
pub trait EmbeddingSource {
    /// Number of rows (tokens).
    fn rows(&self) -> usize;
    /// Words per row (hidden size).
    fn width(&self) -> usize;
    /// Writes row `index` (`index < rows()`) as ring elements into `out` (`width()` words).
    fn read_row(&mut self, index: usize, out: &mut [u64]) -> Result<(), securerouter_core::Error>;
}

/// A row-major real matrix in memory (or flash), fixed-point encoded on the fly.
#[derive(Clone, Copy, Debug)]
pub struct FixedPointRows<'a> {
    data: &'a [f32],
    width: usize,
    format: FixedPoint,
}

impl<'a> FixedPointRows<'a> {
    /// Rows of `width` reals taken from `data`, whose length must be a multiple of `width`.
    pub fn new(
        data: &'a [f32],
        width: usize,
        format: FixedPoint,
    ) -> Result<Self, securerouter_core::Error> {
        if width == 0 || !data.len().is_multiple_of(width) {
            return Err(securerouter_core::Error::LengthMismatch {
                expected: data.len().div_ceil(width.max(1)) * width.max(1),
                got: data.len(),
            });
        }
        Ok(FixedPointRows {
            data,
            width,
            format,
        })
    }
}

impl EmbeddingSource for FixedPointRows<'_> {
    fn rows(&self) -> usize {
        self.data.len() / self.width
    }

    fn width(&self) -> usize {
        self.width
    }

    fn read_row(&mut self, index: usize, out: &mut [u64]) -> Result<(), securerouter_core::Error> {
        let row = self
            .data
            .get(index * self.width..(index + 1) * self.width)
            .ok_or(securerouter_core::Error::LengthMismatch {
                expected: self.rows(),
                got: index + 1,
            })?;
        if out.len() != row.len() {
            return Err(securerouter_core::Error::LengthMismatch {
                expected: row.len(),
                got: out.len(),
            });
        }
        for (o, &x) in out.iter_mut().zip(row) {
            *o = self.format.encode(x as f64)?;
        }
        Ok(())
    }
}

/// Streams P1's share of an embedding row by row from a buffer of `W` words; P0's share is the
/// seed's expansion (see [`SeededShareStream`]).
pub struct ShareStreamer<S, const W: usize> {
    source: S,
    stream: SeededShareStream,
    next_row: usize,
    row: Vec<u64, W>,
}

impl<S: EmbeddingSource, const W: usize> ShareStreamer<S, W> {
    /// A streamer over `source` with a fresh secret `seed` (which goes to P0 only).
    pub fn new(source: S, seed: &Seed) -> Result<Self, DeviceError> {
        let width = source.width();
        let mut row = Vec::new();
        row.resize(width, 0)
            .map_err(|_| DeviceError::RowTooWide { width, capacity: W })?;
        Ok(ShareStreamer {
            source,
            stream: SeededShareStream::new(seed),
            next_row: 0,
            row,
        })
    }

    /// Rows not yet streamed.
    pub fn remaining(&self) -> usize {
        self.source.rows() - self.next_row
    }

    /// P1's share of the next row, or `None` when all rows are done. The slice is valid until
    /// the next call; the plaintext row never leaves this buffer unmasked.
    pub fn next_p1_row(&mut self) -> Option<Result<&[u64], DeviceError>> {
        if self.next_row == self.source.rows() {
            return None;
        }
        let index = self.next_row;
        self.next_row += 1;
        if let Err(e) = self.source.read_row(index, &mut self.row) {
            // Don't leave a partially read plaintext row behind.
            self.row.iter_mut().for_each(|w| *w = 0);
            return Some(Err(e.into()));
        }
        self.stream.split_row_in_place(&mut self.row);
        Some(Ok(&self.row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use securerouter_core::ring::BitWidth;
    use securerouter_core::share::reconstruct;

    const FMT: FixedPoint = match FixedPoint::new(12, BitWidth::FULL) {
        Ok(f) => f,
        Err(_) => panic!("valid format"),
    };

    #[test]
    fn streamed_rows_reconstruct_to_the_encoded_input() {
        let data: [f32; 12] = core::array::from_fn(|i| i as f32 * 0.37 - 2.0);
        let seed = Seed::from_bytes([5; 16]);
        let rows = FixedPointRows::new(&data, 4, FMT).unwrap();
        let mut streamer = ShareStreamer::<_, 4>::new(rows, &seed).unwrap();
        let mut p0 = SeededShareStream::new(&seed);
        let mut n = 0;
        while let Some(row) = streamer.next_p1_row() {
            let p1 = row.unwrap();
            let mut s0 = [0u64; 4];
            p0.expand_row(&mut s0);
            let mut x = [0u64; 4];
            reconstruct(&s0, p1, &mut x).unwrap();
            for j in 0..4 {
                let want = data[n * 4 + j] as f64;
                assert!((FMT.decode(x[j]) - want).abs() <= 1.0 / 4096.0);
            }
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(streamer.remaining(), 0);
    }

    #[test]
    fn errors_are_values() {
        let data = [0.0f32; 8];
        let rows = FixedPointRows::new(&data, 8, FMT).unwrap();
        assert_eq!(
            ShareStreamer::<_, 4>::new(rows, &Seed::from_bytes([0; 16])).err(),
            Some(DeviceError::RowTooWide {
                width: 8,
                capacity: 4
            })
        );
        assert!(FixedPointRows::new(&data[..7], 2, FMT).is_err());
        assert!(FixedPointRows::new(&data, 0, FMT).is_err());
        // A value too large for the format stops the stream with an error, not a wrapped share.
        let big = [1.0f32, 3.0e15, 0.0, 0.0];
        let rows = FixedPointRows::new(&big, 2, FMT).unwrap();
        let mut s = ShareStreamer::<_, 2>::new(rows, &Seed::from_bytes([0; 16])).unwrap();
        assert!(matches!(
            s.next_p1_row(),
            Some(Err(DeviceError::Source(
                securerouter_core::Error::FixedPointOverflow { .. }
            )))
        ));
        assert!(matches!(s.next_p1_row(), Some(Ok(_))));
        assert!(s.next_p1_row().is_none());
    }
}
