//! AVX-512 kernels (F and DQ, IFMA where present): 64-bit lane products (`vpmullq`), 52-bit
//! multiply-adds (`vpmadd52luq`) and masked adds.

use std::arch::x86_64::*;

/// Σ_j bit_j(e)·`entries[j]` in Z_2^64 (bit j = bit j mod 64 of word j / 64; bits of e beyond
/// `entries.len()` are zero). Each byte of e is the lane mask of one masked add of eight
/// entries: key bits only ever select lanes, never a branch or an address.
#[target_feature(enable = "avx512f")]
pub(super) fn masked_dot(e: &[u64], entries: &[u64]) -> u64 {
    let mut acc = [_mm512_setzero_si512(); 4];
    let full = entries.len() / 64;
    // Whole words: 64 entries, eight masked adds into four independent sums.
    for (k, &word) in e[..full].iter().enumerate() {
        let base = entries[64 * k..64 * (k + 1)].as_ptr();
        for group in 0..8 {
            let keep = (word >> (8 * group)) as u8;
            // SAFETY: entries 64k + 8·group .. +8 lie inside the slice (k < full).
            let v = unsafe { _mm512_loadu_epi64(base.add(8 * group).cast()) };
            let a = &mut acc[group % 4];
            *a = _mm512_mask_add_epi64(*a, keep, *a, v);
        }
    }
    // Tables of fewer than 64 entries: one partial word, lanes past the end masked off.
    if let Some(&word) = e.get(full).filter(|_| !entries.len().is_multiple_of(64)) {
        for group in 0..8 {
            let start = 64 * full + 8 * group;
            if start >= entries.len() {
                break; // a public length
            }
            let valid = (entries.len() - start).min(8);
            let lanes: __mmask8 = if valid == 8 { 0xff } else { (1u8 << valid) - 1 };
            let keep = (word >> (8 * group)) as u8 & lanes;
            // SAFETY: lanes outside `valid` are masked off, so nothing beyond the slice
            // is read (masked loads do not touch masked-off lanes).
            let v = unsafe { _mm512_maskz_loadu_epi64(lanes, entries.as_ptr().add(start).cast()) };
            acc[0] = _mm512_mask_add_epi64(acc[0], keep, acc[0], v);
        }
    }
    let sum = _mm512_add_epi64(
        _mm512_add_epi64(acc[0], acc[1]),
        _mm512_add_epi64(acc[2], acc[3]),
    );
    _mm512_reduce_add_epi64(sum) as u64
}

/// [`masked_dot`] over entries of 32 bits, 16 to a register (half the masked adds), for
/// tables whose selected entries cannot sum past 2^32: the lanes' wrapping 32-bit sums are
/// then the exact sum. `entries.len()` must be a multiple of 64 (windows are).
#[target_feature(enable = "avx512f")]
pub(super) fn masked_dot32(e: &[u64], entries: &[u32]) -> u64 {
    let mut acc = [_mm512_setzero_si512(); 4];
    for (word, block) in e.iter().zip(entries.chunks_exact(64)) {
        for (group, a) in acc.iter_mut().enumerate() {
            let keep = (word >> (16 * group)) as u16;
            // SAFETY: 16 entries from 16·group lie inside the 64-entry block.
            let v = unsafe { _mm512_loadu_epi32(block.as_ptr().add(16 * group).cast()) };
            *a = _mm512_mask_add_epi32(*a, keep, *a, v);
        }
    }
    let sum = _mm512_add_epi32(
        _mm512_add_epi32(acc[0], acc[1]),
        _mm512_add_epi32(acc[2], acc[3]),
    );
    u64::from(_mm512_reduce_add_epi32(sum) as u32)
}

/// Wrapping out (m×n) = a (m×k) · b (k×n), row-major, with 64-bit lane products
/// (`vpmullq`): see [`panel_product`].
#[target_feature(enable = "avx512f,avx512dq")]
pub(super) fn matmul(a: &[u64], b: &[u64], m: usize, k: usize, n: usize, out: &mut [u64]) {
    let mac = |acc, x, y| _mm512_add_epi64(acc, _mm512_mullo_epi64(x, y));
    // SAFETY: this function enables AVX-512F and the DQ that `mac`'s `vpmullq` needs.
    unsafe { panel_product::<4>(a, b, (m, k, n), u64::MAX, mac, out) }
}

/// out (m×n) = a (m×k) · b (k×n) modulo 2^52, row-major, with 52-bit multiply-adds
/// (`vpmadd52luq`, one instruction where `vpmullq` and its add take four micro-ops): each adds
/// the low 52 bits of the product of its operands' low 52 bits, which is the product modulo
/// 2^52. `mask` (2^w − 1 for some w ≤ 52) reduces the result.
#[target_feature(enable = "avx512f,avx512ifma")]
pub(super) fn matmul52(
    a: &[u64],
    b: &[u64],
    (m, k, n): (usize, usize, usize),
    mask: u64,
    out: &mut [u64],
) {
    let mac = |acc, x, y| _mm512_madd52lo_epu64(acc, x, y);
    // SAFETY: this function enables AVX-512F and the IFMA that `mac`'s `vpmadd52luq` needs.
    unsafe { panel_product::<8>(a, b, (m, k, n), mask, mac, out) }
}

/// out = (a · b) AND `mask`, with `mac(acc, x, y)` the lane-wise multiply-add: blocks of ROWS
/// rows × 16 columns of `out` in 2·ROWS registers (4 rows for `vpmullq`, whose three
/// micro-ops keep the ports busy; 8 for the one-instruction `vpmadd52luq`, which needs more
/// independent sums in flight: 10–20 % faster than 4). Column blocks are outermost, and each
/// block's 16 columns of b are first copied into one contiguous panel (k × 16): read in place,
/// every step of the inner loop would touch another row of b, n·8 bytes on, and a wide b
/// (n = 3072) misses the TLB on nearly every step (the panel made such products 2.7 to 3.3
/// times faster here). Slices shorter than the dimensions make it panic.
///
/// # Safety
/// The CPU must support AVX-512F and whatever `mac` uses.
#[inline(always)]
unsafe fn panel_product<const ROWS: usize>(
    a: &[u64],
    b: &[u64],
    (m, k, n): (usize, usize, usize),
    mask: u64,
    mac: impl Fn(__m512i, __m512i, __m512i) -> __m512i,
    out: &mut [u64],
) {
    // The masked stores below write row i < m, column j < n of `out` at i·n + j.
    assert_eq!(m.checked_mul(n), Some(out.len()), "out holds m·n elements");
    // SAFETY: inlined only into callers that enable AVX-512F (and `mac`'s extension); every
    // load reads a full panel row and every store is masked to the columns inside `out`,
    // whose rows are all in it (asserted above).
    unsafe {
        let lanes =
            |count: usize| -> __mmask8 { if count >= 8 { 0xff } else { (1u8 << count) - 1 } };
        let mut panel = vec![0u64; k * 16];
        for j in (0..n).step_by(16) {
            let cols = (n - j).min(16);
            let (m0, m1) = (lanes(cols), lanes(cols.saturating_sub(8)));
            // Columns beyond `cols` keep stale values; their lanes are never stored.
            for (p, row) in panel.as_chunks_mut::<16>().0.iter_mut().enumerate() {
                let from = &b[p * n + j..p * n + j + cols];
                // A whole block copies as one fixed-size move, not a call to memcpy per row.
                match <&[u64; 16]>::try_from(from) {
                    Ok(whole) => *row = *whole,
                    Err(_) => row[..cols].copy_from_slice(from),
                }
            }
            for i in (0..m).step_by(ROWS) {
                let rows = (m - i).min(ROWS);
                let mut acc = [[_mm512_setzero_si512(); 2]; ROWS];
                for (p, row) in panel.chunks_exact(16).enumerate() {
                    // A panel row holds 16 elements, two full registers.
                    let b0 = _mm512_loadu_si512(row.as_ptr().cast());
                    let b1 = _mm512_loadu_si512(row.as_ptr().add(8).cast());
                    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                        let x = _mm512_set1_epi64(a[(i + r) * k + p] as i64);
                        acc[0] = mac(acc[0], x, b0);
                        acc[1] = mac(acc[1], x, b1);
                    }
                }
                let reduce = _mm512_set1_epi64(mask as i64);
                for (r, acc) in acc.iter().enumerate().take(rows) {
                    let acc = [
                        _mm512_and_si512(acc[0], reduce),
                        _mm512_and_si512(acc[1], reduce),
                    ];
                    let op = out.as_mut_ptr().wrapping_add((i + r) * n + j);
                    // Lanes m0 (m1) of out's row i + r, columns j.. (j + 8..), lie inside out;
                    // masked-off lanes are not written.
                    _mm512_mask_storeu_epi64(op.cast(), m0, acc[0]);
                    _mm512_mask_storeu_epi64(op.wrapping_add(8).cast(), m1, acc[1]);
                }
            }
        }
    }
}
