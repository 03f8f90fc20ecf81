//! AVX2 kernels for CPUs without AVX-512. AVX2 has no 64-bit lane product, so a wrapping
//! product a·b mod 2^64 is put together from 32-bit halves:
//! a·b = a_lo·b_lo + ((a_lo·b_hi + a_hi·b_lo) mod 2^32)·2^32. The first term is one `vpmuludq`
//! (exact in 64 bits); both cross terms come from one `vpmulld` of b with a's halves swapped,
//! summed in 32-bit lanes, and the two halves of each lane are added once, after the last step
//! of a dot product: two multiplies per four products instead of three.

use std::arch::x86_64::*;

/// Σ_j bit_j(e)·`entries[j]` in Z_2^64 (bit j = bit j mod 64 of word j / 64; bits of e beyond
/// `entries.len()` are zero). Each group of four entries is kept or dropped lane by lane by a
/// blend on the sign bit of the word shifted so that the group's four bits are on top: key bits
/// only ever select lanes, never a branch or an address.
#[target_feature(enable = "avx2")]
pub(super) fn masked_dot(e: &[u64], entries: &[u64]) -> u64 {
    // Lane i of (w << (63 − i)) has bit i of w as its sign.
    let tops = _mm256_setr_epi64x(63, 62, 61, 60);
    let zero = _mm256_setzero_pd();
    let mut acc = [_mm256_setzero_si256(); 4];
    let full = entries.len() / 64;
    for (k, &word) in e[..full].iter().enumerate() {
        let mut w = _mm256_set1_epi64x(word as i64);
        let base = entries[64 * k..64 * (k + 1)].as_ptr();
        for group in 0..16 {
            let sel = _mm256_castsi256_pd(_mm256_sllv_epi64(w, tops));
            // SAFETY: entries 64k + 4·group .. +4 lie inside the slice (k < full).
            let v = _mm256_castsi256_pd(unsafe { _mm256_loadu_si256(base.add(4 * group).cast()) });
            let kept = _mm256_castpd_si256(_mm256_blendv_pd(zero, v, sel));
            acc[group % 4] = _mm256_add_epi64(acc[group % 4], kept);
            w = _mm256_srli_epi64(w, 4);
        }
    }
    // Tables of fewer than 64 entries: one partial word, lanes past the end masked off.
    if let Some(&word) = e.get(full).filter(|_| !entries.len().is_multiple_of(64)) {
        let lane_index = _mm256_setr_epi64x(0, 1, 2, 3);
        let mut w = _mm256_set1_epi64x(word as i64);
        for start in (64 * full..entries.len()).step_by(4) {
            let valid = (entries.len() - start) as i64; // a public length
            let lanes = _mm256_cmpgt_epi64(_mm256_set1_epi64x(valid), lane_index);
            // SAFETY: lanes at or past the end are masked off, and masked loads do not touch
            // them.
            let v = unsafe { _mm256_maskload_epi64(entries.as_ptr().add(start).cast(), lanes) };
            let sel = _mm256_castsi256_pd(_mm256_sllv_epi64(w, tops));
            let kept = _mm256_blendv_pd(zero, _mm256_castsi256_pd(v), sel);
            acc[0] = _mm256_add_epi64(acc[0], _mm256_castpd_si256(kept));
            w = _mm256_srli_epi64(w, 4);
        }
    }
    let sum = _mm256_add_epi64(
        _mm256_add_epi64(acc[0], acc[1]),
        _mm256_add_epi64(acc[2], acc[3]),
    );
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` holds four u64, one register.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sum) };
    lanes.iter().fold(0, |s, &l| s.wrapping_add(l))
}

/// Rows of `out` a matmul block holds in registers.
const ROWS: usize = 2;
/// Columns of `out` a matmul block holds: two registers of four.
const COLS: usize = 8;

/// Wrapping out (m×n) = a (m×k) · b (k×n), row-major: blocks of 2 rows × 8 columns of `out`,
/// each column register with two sums (a_lo·b_lo in 64-bit lanes, the cross terms in 32-bit
/// lanes). As in the AVX-512 product, each block's columns of b are first copied into one
/// contiguous panel (k × 8), so that the inner loop reads b sequentially. Slices shorter than
/// the dimensions make it panic: it reads and writes them only through checked indexes.
#[target_feature(enable = "avx2")]
pub(super) fn matmul(a: &[u64], b: &[u64], m: usize, k: usize, n: usize, out: &mut [u64]) {
    if m == 0 || n == 0 {
        return;
    }
    // a with its 32-bit halves swapped, for the cross terms.
    let swapped: Vec<u64> = a.iter().map(|x| x.rotate_left(32)).collect();
    let high_halves = _mm256_set1_epi64x(-1i64 << 32);
    let mut panel = vec![0u64; k * COLS];
    for j in (0..n).step_by(COLS) {
        let cols = (n - j).min(COLS);
        // Columns beyond `cols` keep stale values; they are never stored.
        for (p, row) in panel.as_chunks_mut::<COLS>().0.iter_mut().enumerate() {
            let from = &b[p * n + j..p * n + j + cols];
            // A whole block copies as one fixed-size move, not a call to memcpy per row.
            match <&[u64; COLS]>::try_from(from) {
                Ok(whole) => *row = *whole,
                Err(_) => row[..cols].copy_from_slice(from),
            }
        }
        for i in (0..m).step_by(ROWS) {
            // A last block past row m - 1 recomputes row m - 1 and stores nothing for it.
            let row_of = |r: usize| (i + r).min(m - 1) * k;
            let mut low = [[_mm256_setzero_si256(); 2]; ROWS];
            let mut cross = [[_mm256_setzero_si256(); 2]; ROWS];
            for (p, row) in panel.chunks_exact(COLS).enumerate() {
                // SAFETY: a panel row holds 8 elements, two full registers.
                let (b0, b1) = unsafe {
                    (
                        _mm256_loadu_si256(row.as_ptr().cast()),
                        _mm256_loadu_si256(row.as_ptr().add(4).cast()),
                    )
                };
                for r in 0..ROWS {
                    let x = _mm256_set1_epi64x(a[row_of(r) + p] as i64);
                    let xs = _mm256_set1_epi64x(swapped[row_of(r) + p] as i64);
                    low[r][0] = _mm256_add_epi64(low[r][0], _mm256_mul_epu32(x, b0));
                    low[r][1] = _mm256_add_epi64(low[r][1], _mm256_mul_epu32(x, b1));
                    cross[r][0] = _mm256_add_epi32(cross[r][0], _mm256_mullo_epi32(xs, b0));
                    cross[r][1] = _mm256_add_epi32(cross[r][1], _mm256_mullo_epi32(xs, b1));
                }
            }
            for r in 0..ROWS.min(m - i) {
                let mut sums = [0u64; COLS];
                for h in 0..2 {
                    // (c_lo + c_hi)·2^32 mod 2^64 from a lane holding c_lo and c_hi.
                    let c = cross[r][h];
                    let c = _mm256_add_epi64(
                        _mm256_slli_epi64(c, 32),
                        _mm256_and_si256(c, high_halves),
                    );
                    let s = _mm256_add_epi64(low[r][h], c);
                    // SAFETY: `sums` holds 8 elements, two registers.
                    unsafe { _mm256_storeu_si256(sums.as_mut_ptr().add(4 * h).cast(), s) };
                }
                let at = (i + r) * n + j;
                out[at..at + cols].copy_from_slice(&sums[..cols]);
            }
        }
    }
}
