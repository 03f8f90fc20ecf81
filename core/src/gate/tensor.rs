//! The wire type of the gate engine.
//!
//! A [`Tensor`] is a row-major array of elements of Z_2^width. On a server its elements are
//! the public masked values x^ = x + r; on the dealer they are the masks r. Linear operations
//! act the same way on both (the masks follow the values), so they are plain methods here and
//! are written once. Only adding a *public* constant differs by role (servers add it, masks
//! stay): that is [`super::Protocol::add_public`].

use crate::Error;
use crate::ring::BitWidth;
use alloc::vec;
use alloc::vec::Vec;

/// A row-major tensor of ring elements (masked values on servers, masks on the dealer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    shape: Vec<usize>,
    width: BitWidth,
    data: Vec<u64>,
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor of `shape` over Z_2^width; `data` must have the shape's size and hold ring
    /// elements of that width.
    pub fn new(shape: &[usize], width: BitWidth, data: Vec<u64>) -> Result<Self, Error> {
        if numel(shape) != data.len() {
            return Err(Error::LengthMismatch {
                expected: numel(shape),
                got: data.len(),
            });
        }
        if data.iter().any(|&x| !width.contains(x)) {
            return Err(Error::ValueOutOfRange { bits: width.bits() });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            width,
            data,
        })
    }

    /// A tensor from parts the caller guarantees consistent (gate outputs).
    pub(crate) fn from_parts(shape: &[usize], width: BitWidth, data: Vec<u64>) -> Self {
        debug_assert_eq!(numel(shape), data.len());
        debug_assert!(data.iter().all(|&x| width.contains(x)));
        Tensor {
            shape: shape.to_vec(),
            width,
            data,
        }
    }

    /// All zeros.
    pub fn zeros(shape: &[usize], width: BitWidth) -> Self {
        Tensor {
            shape: shape.to_vec(),
            width,
            data: vec![0; numel(shape)],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The ring Z_2^width the elements live in.
    pub fn width(&self) -> BitWidth {
        self.width
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// The elements, consuming the tensor.
    pub fn into_data(self) -> Vec<u64> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Size of the last axis (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    fn check_same(&self, other: &Tensor) -> Result<(), Error> {
        if self.shape != other.shape {
            return Err(Error::ShapeMismatch("operands have different shapes"));
        }
        if self.width != other.width {
            return Err(Error::ShapeMismatch("operands have different bit-widths"));
        }
        Ok(())
    }

    fn zip_with(&self, other: &Tensor, f: impl Fn(u64, u64) -> u64) -> Result<Tensor, Error> {
        self.check_same(other)?;
        let w = self.width;
        Ok(Tensor {
            shape: self.shape.clone(),
            width: w,
            data: self
                .data
                .iter()
                .zip(&other.data)
                .map(|(&a, &b)| w.reduce(f(a, b)))
                .collect(),
        })
    }

    /// Element-wise sum.
    pub fn add(&self, other: &Tensor) -> Result<Tensor, Error> {
        self.zip_with(other, u64::wrapping_add)
    }

    /// Element-wise difference.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor, Error> {
        self.zip_with(other, u64::wrapping_sub)
    }

    /// Negation.
    pub fn neg(&self) -> Tensor {
        self.map(u64::wrapping_neg)
    }

    fn map(&self, f: impl Fn(u64) -> u64) -> Tensor {
        let w = self.width;
        Tensor {
            shape: self.shape.clone(),
            width: w,
            data: self.data.iter().map(|&a| w.reduce(f(a))).collect(),
        }
    }

    /// Multiplies every element by the public constant `c`.
    pub fn scale(&self, c: u64) -> Tensor {
        self.map(|a| a.wrapping_mul(c))
    }

    /// Checks that public constants `c` broadcast onto this tensor: `c` is a single scalar or
    /// has as many elements as the tensor or as its last axis.
    pub fn check_broadcast(&self, c: &[u64]) -> Result<(), Error> {
        if c.len() != 1 && c.len() != self.len() && c.len() != self.last_dim() {
            return Err(Error::ShapeMismatch(
                "public constants match neither the tensor nor its last axis",
            ));
        }
        Ok(())
    }

    fn broadcast_with(&self, c: &[u64], f: impl Fn(u64, u64) -> u64) -> Result<Tensor, Error> {
        self.check_broadcast(c)?;
        let w = self.width;
        Ok(Tensor {
            shape: self.shape.clone(),
            width: w,
            data: self
                .data
                .iter()
                .enumerate()
                .map(|(i, &a)| w.reduce(f(a, c[i % c.len()])))
                .collect(),
        })
    }

    /// Multiplies element-wise by public constants (broadcast as in
    /// [`Tensor::check_broadcast`]). Acts alike on masked values and masks.
    pub fn mul_public(&self, c: &[u64]) -> Result<Tensor, Error> {
        self.broadcast_with(c, u64::wrapping_mul)
    }

    /// Adds public constants (broadcast as in [`Tensor::check_broadcast`]) to the *values*:
    /// right for masked values, wrong for masks, so circuits use
    /// [`super::Protocol::add_public`], which the dealer implements as a no-op.
    pub fn add_public_to_values(&self, c: &[u64]) -> Result<Tensor, Error> {
        self.broadcast_with(c, u64::wrapping_add)
    }

    /// Sums along the last axis (the axis disappears).
    pub fn sum_last_axis(&self) -> Tensor {
        let last = self.last_dim().max(1);
        let w = self.width;
        let shape = self.shape[..self.shape.len().saturating_sub(1)].to_vec();
        Tensor {
            shape,
            width: w,
            data: self
                .data
                .chunks(last)
                .map(|row| w.reduce(row.iter().fold(0u64, |s, &x| s.wrapping_add(x))))
                .collect(),
        }
    }

    /// The same elements under another shape of equal size.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor, Error> {
        if numel(shape) != self.len() {
            return Err(Error::ShapeMismatch(
                "reshape changes the number of elements",
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            width: self.width,
            data: self.data.clone(),
        })
    }

    /// Swaps the last two axes (a batch of matrix transposes).
    pub fn transpose(&self) -> Result<Tensor, Error> {
        let d = self.shape.len();
        if d < 2 {
            return Err(Error::ShapeMismatch("transpose needs at least two axes"));
        }
        let (r, c) = (self.shape[d - 2], self.shape[d - 1]);
        let mut shape = self.shape.clone();
        shape.swap(d - 2, d - 1);
        let mut data = vec![0u64; self.len()];
        for (b, block) in self.data.chunks(r * c).enumerate() {
            let out = &mut data[b * r * c..(b + 1) * r * c];
            for i in 0..r {
                for j in 0..c {
                    out[j * r + i] = block[i * c + j];
                }
            }
        }
        Ok(Tensor {
            shape,
            width: self.width,
            data,
        })
    }

    /// Reorders the axes: axis i of the result is axis `axes[i]` of `self` (e.g. `[1, 0, 2]`
    /// turns [tokens, heads, d] into [heads, tokens, d]).
    pub fn permute(&self, axes: &[usize]) -> Result<Tensor, Error> {
        let d = self.shape.len();
        let mut seen = vec![false; d];
        if axes.len() != d
            || axes
                .iter()
                .any(|&a| a >= d || core::mem::replace(&mut seen[a], true))
        {
            return Err(Error::ShapeMismatch("permute needs each axis exactly once"));
        }
        let shape: Vec<usize> = axes.iter().map(|&a| self.shape[a]).collect();
        // Row-major strides of the source, read in the result's axis order.
        let mut strides = vec![1usize; d];
        for i in (0..d.saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.shape[i + 1];
        }
        let src: Vec<usize> = axes.iter().map(|&a| strides[a]).collect();
        let mut data = Vec::with_capacity(self.len());
        let mut index = vec![0usize; d];
        for _ in 0..self.len() {
            data.push(self.data[index.iter().zip(&src).map(|(i, s)| i * s).sum::<usize>()]);
            for ax in (0..d).rev() {
                index[ax] += 1;
                if index[ax] < shape[ax] {
                    break;
                }
                index[ax] = 0;
            }
        }
        Ok(Tensor {
            shape,
            width: self.width,
            data,
        })
    }

    /// Reduces to the narrower ring Z_2^width: free on masked values, since
    /// (x + r) mod 2^n = (x mod 2^n) + (r mod 2^n).
    pub fn reduce(&self, width: BitWidth) -> Result<Tensor, Error> {
        if width > self.width {
            return Err(Error::ShapeMismatch("reduce cannot widen a tensor"));
        }
        Ok(Tensor {
            shape: self.shape.clone(),
            width,
            data: self.data.iter().map(|&x| width.reduce(x)).collect(),
        })
    }

    /// ⌊x / 2^f⌋ in the narrower ring Z_2^(width − f), with no communication and no key.
    /// On a masked value, (x + r) >> f is a masked value of ⌊x / 2^f⌋ or one more (the carry
    /// out of the low f bits of x + r) under the mask r >> f; x may be read as signed or
    /// unsigned, since the bits where the two shifts differ are dropped. Use it where the
    /// result is only needed modulo 2^(width − f) (a table index, a comparison, a product read
    /// in a narrow ring); [`super::Protocol::truncate_to`] keeps or widens the ring.
    pub fn shift_down(&self, f: u32) -> Result<Tensor, Error> {
        if f == 0 || f >= self.width.bits() {
            return Err(Error::ShapeMismatch(
                "shift_down needs 0 < f < the tensor's width",
            ));
        }
        Ok(Tensor {
            shape: self.shape.clone(),
            width: BitWidth::new(self.width.bits() - f)?,
            data: self.data.iter().map(|&x| x >> f).collect(),
        })
    }

    /// Picks columns of the last axis: `out[.., j] = self[.., columns[j]]`.
    pub fn gather_last(&self, columns: &[usize]) -> Result<Tensor, Error> {
        let last = self.last_dim();
        if columns.iter().any(|&c| c >= last) {
            return Err(Error::ShapeMismatch("column index beyond the last axis"));
        }
        let mut shape = self.shape.clone();
        match shape.last_mut() {
            Some(l) => *l = columns.len(),
            None => return Err(Error::ShapeMismatch("gather on a scalar")),
        }
        let data = self
            .data
            .chunks(last)
            .flat_map(|row| columns.iter().map(move |&c| row[c]))
            .collect();
        Ok(Tensor {
            shape,
            width: self.width,
            data,
        })
    }

    /// Concatenates along the last axis; leading axes and widths must agree.
    pub fn concat_last(&self, other: &Tensor) -> Result<Tensor, Error> {
        let (a, b) = (self.last_dim(), other.last_dim());
        let lead = |t: &Tensor| t.shape[..t.shape.len().saturating_sub(1)].to_vec();
        if lead(self) != lead(other) || self.width != other.width || self.shape.is_empty() {
            return Err(Error::ShapeMismatch(
                "concat needs equal leading axes and widths",
            ));
        }
        let mut shape = self.shape.clone();
        *shape.last_mut().unwrap_or(&mut 0) = a + b;
        let data = self
            .data
            .chunks(a.max(1))
            .zip(other.data.chunks(b.max(1)))
            .flat_map(|(x, y)| x.iter().chain(y).copied())
            .collect();
        Ok(Tensor {
            shape,
            width: self.width,
            data,
        })
    }

    /// Repeats every element `times` times along a new last axis (broadcast for bit gates).
    pub fn repeat_last(&self, times: usize) -> Tensor {
        let mut shape = self.shape.clone();
        shape.push(times);
        Tensor {
            shape,
            width: self.width,
            data: self
                .data
                .iter()
                .flat_map(|&x| core::iter::repeat_n(x, times))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: &[u64]) -> Tensor {
        Tensor::new(shape, BitWidth::new(8).unwrap(), data.to_vec()).unwrap()
    }

    #[test]
    fn linear_ops() {
        let a = t(&[2, 3], &[1, 2, 3, 4, 5, 255]);
        let b = t(&[2, 3], &[1, 1, 1, 1, 1, 1]);
        assert_eq!(a.add(&b).unwrap().data(), &[2, 3, 4, 5, 6, 0]);
        assert_eq!(a.sub(&b).unwrap().data(), &[0, 1, 2, 3, 4, 254]);
        assert_eq!(a.sum_last_axis().data(), &[6, 8]);
        assert_eq!(a.transpose().unwrap().data(), &[1, 4, 2, 5, 3, 255]);
        assert_eq!(a.transpose().unwrap().shape(), &[3, 2]);
        assert_eq!(a.gather_last(&[2, 0]).unwrap().data(), &[3, 1, 255, 4]);
        assert_eq!(
            a.gather_last(&[0]).unwrap().concat_last(&b).unwrap().data(),
            &[1, 1, 1, 1, 4, 1, 1, 1]
        );
        assert_eq!(
            a.mul_public(&[2, 0, 1]).unwrap().data(),
            &[2, 0, 3, 8, 0, 255]
        );
        assert_eq!(a.repeat_last(2).shape(), &[2, 3, 2]);
        assert_eq!(a.permute(&[1, 0]).unwrap(), a.transpose().unwrap());
        let c = t(&[2, 3, 2], &(0..12).collect::<alloc::vec::Vec<_>>());
        let p = c.permute(&[1, 0, 2]).unwrap();
        assert_eq!(p.shape(), &[3, 2, 2]);
        assert_eq!(p.data(), &[0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11]);
        assert!(c.permute(&[0, 0, 1]).is_err());
        assert!(c.permute(&[0, 1]).is_err());
        assert!(a.add(&t(&[3, 2], &[0; 6])).is_err());
        assert!(a.reshape(&[5]).is_err());
        assert!(a.gather_last(&[3]).is_err());
        assert!(Tensor::new(&[1], BitWidth::new(8).unwrap(), alloc::vec![256]).is_err());
        let s = a.shift_down(3).unwrap();
        assert_eq!(s.width().bits(), 5);
        assert_eq!(s.data(), &[0, 0, 0, 0, 0, 31]);
        assert!(a.shift_down(0).is_err() && a.shift_down(8).is_err());
    }
}
