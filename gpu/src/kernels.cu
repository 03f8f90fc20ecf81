// CUDA kernels of the server parties, compiled at run time by NVRTC.
//
// Each kernel reproduces a CPU kernel of securerouter-core bit for bit:
// - matmul_u64:  core::ring::matmul (wrapping u64 products), batched over blockIdx.z;
// - dpf_prefix_parity: core::fss::BitDpf::eval_prefix_parity_batch (comparison), one thread
//                per key;
// - dpf_lookup:  CpuKernels::dpf_lookup, one thread per (key, leaf block), partial sums
//                added with 64-bit atomics (addition mod 2^64 is associative, so the order
//                does not change the result).
// The GGM tree PRG is fixed-key AES-128 in Matyas-Meyer-Oseas mode, MMO_k(s) = AES_k(s) ^ s,
// with the three public keys GGM_KEY_WORDS (defined by the host before this text, from
// core::prg::GGM_KEYS). AES uses T-tables in shared memory, as SIGMA's GPU code does.
// Key-derived bits (control bits, output bits) only ever select through all-ones masks.
// A 128-bit block is two u64 (lo, hi), in the byte order of Rust's u128::to_le_bytes.

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;

__constant__ u8 AES_SBOX[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
    0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
    0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
    0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
    0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
    0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
    0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
    0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
    0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
    0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
    0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
    0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
    0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
    0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
    0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
    0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
};

__constant__ u32 GGM_KEYS[12] = GGM_KEY_WORDS;

#define GGM_LEFT 0
#define GGM_RIGHT 1
#define GGM_VALUE 2

// Shared-memory AES state of a block: the four T-tables, the S-box and the round keys of the
// three fixed GGM keys. Column words are little-endian: byte r of column c is bits 8r..8r+7.
struct Aes {
    u32 t0[256], t1[256], t2[256], t3[256];
    u32 sbox[256];
    u32 rk[3][44];
};

__device__ __forceinline__ u32 rotl8(u32 x) { return (x << 8) | (x >> 24); }

__device__ __forceinline__ u32 sub_word(const u32* sbox, u32 w) {
    return sbox[w & 0xff] | (sbox[(w >> 8) & 0xff] << 8) | (sbox[(w >> 16) & 0xff] << 16) |
           (sbox[w >> 24] << 24);
}

// Fills the tables and the round keys; every thread of the block must call it, then sync.
__device__ void aes_setup(Aes* a) {
    for (u32 i = threadIdx.x; i < 256; i += blockDim.x) {
        u32 s = AES_SBOX[i];
        u32 s2 = ((s << 1) ^ ((s >> 7) * 0x1b)) & 0xff;
        u32 s3 = s2 ^ s;
        u32 t = s2 | (s << 8) | (s << 16) | (s3 << 24);
        a->sbox[i] = s;
        a->t0[i] = t;
        a->t1[i] = rotl8(t);
        a->t2[i] = rotl8(rotl8(t));
        a->t3[i] = rotl8(rotl8(rotl8(t)));
    }
    __syncthreads();
    for (u32 key = threadIdx.x; key < 3; key += blockDim.x) {
        u32* w = a->rk[key];
        for (int i = 0; i < 4; i++) w[i] = GGM_KEYS[4 * key + i];
        u32 rcon = 1;
        for (int i = 4; i < 44; i++) {
            u32 t = w[i - 1];
            if (i % 4 == 0) {
                t = sub_word(a->sbox, (t >> 8) | (t << 24)) ^ rcon;
                rcon = ((rcon << 1) ^ ((rcon >> 7) * 0x1b)) & 0xff;
            }
            w[i] = w[i - 4] ^ t;
        }
    }
    __syncthreads();
}

// MMO under fixed key `key`: (lo, hi) <- AES_key(lo, hi) ^ (lo, hi).
__device__ __forceinline__ void mmo(const Aes* a, int key, u64 lo, u64 hi, u64* olo, u64* ohi) {
    const u32* rk = a->rk[key];
    u32 s0 = (u32)lo ^ rk[0], s1 = (u32)(lo >> 32) ^ rk[1];
    u32 s2 = (u32)hi ^ rk[2], s3 = (u32)(hi >> 32) ^ rk[3];
#pragma unroll
    for (int r = 1; r < 10; r++) {
        u32 t0 = a->t0[s0 & 0xff] ^ a->t1[(s1 >> 8) & 0xff] ^ a->t2[(s2 >> 16) & 0xff] ^
                 a->t3[s3 >> 24] ^ rk[4 * r];
        u32 t1 = a->t0[s1 & 0xff] ^ a->t1[(s2 >> 8) & 0xff] ^ a->t2[(s3 >> 16) & 0xff] ^
                 a->t3[s0 >> 24] ^ rk[4 * r + 1];
        u32 t2 = a->t0[s2 & 0xff] ^ a->t1[(s3 >> 8) & 0xff] ^ a->t2[(s0 >> 16) & 0xff] ^
                 a->t3[s1 >> 24] ^ rk[4 * r + 2];
        u32 t3 = a->t0[s3 & 0xff] ^ a->t1[(s0 >> 8) & 0xff] ^ a->t2[(s1 >> 16) & 0xff] ^
                 a->t3[s2 >> 24] ^ rk[4 * r + 3];
        s0 = t0; s1 = t1; s2 = t2; s3 = t3;
    }
    const u32* sb = a->sbox;
    u32 o0 = (sb[s0 & 0xff] | (sb[(s1 >> 8) & 0xff] << 8) | (sb[(s2 >> 16) & 0xff] << 16) |
              (sb[s3 >> 24] << 24)) ^ rk[40];
    u32 o1 = (sb[s1 & 0xff] | (sb[(s2 >> 8) & 0xff] << 8) | (sb[(s3 >> 16) & 0xff] << 16) |
              (sb[s0 >> 24] << 24)) ^ rk[41];
    u32 o2 = (sb[s2 & 0xff] | (sb[(s3 >> 8) & 0xff] << 8) | (sb[(s0 >> 16) & 0xff] << 16) |
              (sb[s1 >> 24] << 24)) ^ rk[42];
    u32 o3 = (sb[s3 & 0xff] | (sb[(s0 >> 8) & 0xff] << 8) | (sb[(s1 >> 16) & 0xff] << 16) |
              (sb[s2 >> 24] << 24)) ^ rk[43];
    *olo = ((u64)o0 | ((u64)o1 << 32)) ^ lo;
    *ohi = ((u64)o2 | ((u64)o3 << 32)) ^ hi;
}

// One step down an FSS tree: the child of seed (slo, shi) with control bit t in direction
// `dir`, corrected by the key's words for its level `at` (seed word masked by t, control bit
// correction of that direction).
__device__ __forceinline__ void ggm_step(const Aes* a, u32 dir, u64 at, const u64* seeds,
                                         const u8* controls, u64* slo, u64* shi, u64* t) {
    const u64 mask = 0 - *t;
    u64 clo, chi;
    mmo(a, dir ? GGM_RIGHT : GGM_LEFT, *slo, *shi, &clo, &chi);
    const u64 tc = clo & 1;
    *slo = (clo & ~1ull) ^ (seeds[2 * at] & mask);
    *shi = chi ^ (seeds[2 * at + 1] & mask);
    *t = tc ^ (*t & controls[2 * at + dir]);
}

// A one-bit DPF key's leaf block at seed (slo, shi) with control bit t: Convert(s) (the value
// key's MMO) cut to its 2^leaf_bits outputs (fewer than 128 only when there are no levels),
// corrected by the key's last block (lo, hi at last[0], last[1]) when t is set.
__device__ __forceinline__ void leaf_block(const Aes* a, u64 slo, u64 shi, u64 t, u32 leaf_bits,
                                           const u64* last, u64* blo, u64* bhi) {
    mmo(a, GGM_VALUE, slo, shi, blo, bhi);
    const u32 per_leaf = 1u << leaf_bits;
    if (per_leaf < 128) {
        *bhi = 0;
        *blo &= (per_leaf == 64) ? ~0ull : ((1ull << per_leaf) - 1);
    }
    const u64 tmask = 0 - t;
    *blo ^= last[0] & tmask;
    *bhi ^= last[1] & tmask;
}

// AES-128 of one block under the first GGM key, for the host's self-check of the tables.
extern "C" __global__ void aes_left(const u64* in, u64* out, u32 count) {
    __shared__ Aes a;
    aes_setup(&a);
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    u64 lo, hi;
    mmo(&a, GGM_LEFT, in[2 * i], in[2 * i + 1], &lo, &hi);
    out[2 * i] = lo ^ in[2 * i];
    out[2 * i + 1] = hi ^ in[2 * i + 1];
}

// Wrapping u64 matrix products C[z] = A[z] (m x k) * B[z] (k x n), row-major, z = blockIdx.z.
// A 64 x 64 tile of C per block of 256 threads, 4 x 4 outputs per thread, k in steps of 16.
#define MM_TILE 64
#define MM_STEP 16
extern "C" __global__ void matmul_u64(const u64* A, const u64* B, u64* C, u32 m, u32 k, u32 n) {
    __shared__ u64 as[MM_STEP][MM_TILE];
    __shared__ u64 bs[MM_STEP][MM_TILE];
    const u64 z = blockIdx.z;
    A += z * m * k;
    B += z * k * n;
    C += z * m * n;
    const u32 tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const u32 row0 = blockIdx.y * MM_TILE, col0 = blockIdx.x * MM_TILE;
    u64 acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0;
    for (u32 k0 = 0; k0 < k; k0 += MM_STEP) {
        for (u32 e = threadIdx.x; e < MM_TILE * MM_STEP; e += blockDim.x) {
            u32 r = e / MM_STEP, c = e % MM_STEP;
            u32 gr = row0 + r, gc = k0 + c;
            as[c][r] = (gr < m && gc < k) ? A[(u64)gr * k + gc] : 0;
        }
        for (u32 e = threadIdx.x; e < MM_STEP * MM_TILE; e += blockDim.x) {
            u32 r = e / MM_TILE, c = e % MM_TILE;
            u32 gr = k0 + r, gc = col0 + c;
            bs[r][c] = (gr < k && gc < n) ? B[(u64)gr * n + gc] : 0;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < MM_STEP; kk++) {
            u64 a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = as[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        u32 r = row0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            u32 c = col0 + tx + 16 * j;
            if (r < m && c < n) C[(u64)r * n + c] = acc[i][j];
        }
    }
}

// Comparison on one-bit DPF keys, one thread per key (core::fss::BitDpf::eval_prefix_parity_batch):
// the prefix parity of key i at xs[i], this party's XOR share of [alpha <= x]. Walking x's top
// `levels` bits, every level where x turns right adds the left child's corrected control bit;
// the leaf adds the parity of its block's bits 0..=(x mod 2^leaf_bits).
extern "C" __global__ void dpf_prefix_parity(const u64* roots, const u64* seeds,
                                             const u8* controls, const u64* last, const u64* xs,
                                             u64* out, u32 count, u32 levels, u32 leaf_bits,
                                             u32 p1) {
    __shared__ Aes a;
    aes_setup(&a);
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    u64 slo = roots[2 * i], shi = roots[2 * i + 1];
    u64 t = p1;
    u64 parity = 0;
    const u64 x = xs[i];
    const u64 top = x >> leaf_bits;
    for (u32 level = 0; level < levels; level++) {
        // The direction is the input's bit: public, so the work may branch on it.
        const u32 dir = (u32)(top >> (levels - 1 - level)) & 1;
        const u64 at = (u64)i * levels + level;
        if (dir) {
            u64 llo, lhi;
            mmo(&a, GGM_LEFT, slo, shi, &llo, &lhi);
            parity ^= (llo & 1) ^ (t & controls[2 * at]);
        }
        ggm_step(&a, dir, at, seeds, controls, &slo, &shi, &t);
    }
    u64 blo, bhi;
    leaf_block(&a, slo, shi, t, leaf_bits, &last[2 * i], &blo, &bhi);
    const u32 per_leaf = 1u << leaf_bits;
    // Bits 0..=low of the block (low < per_leaf <= 128 is public).
    const u32 low = (u32)(x & (per_leaf - 1));
    u64 mlo, mhi;
    if (low >= 64) {
        mlo = ~0ull;
        mhi = (low == 127) ? ~0ull : ((1ull << (low - 63)) - 1);
    } else {
        mlo = (low == 63) ? ~0ull : ((1ull << (low + 1)) - 1);
        mhi = 0;
    }
    parity ^= (u64)(__popcll(blo & mlo) + __popcll(bhi & mhi));
    out[i] = parity & 1;
}

// Table lookup on one-bit DPF keys (CpuKernels::dpf_lookup): thread (key, leaf) walks from the
// root to its leaf block, takes the block's 2^leaf_bits output bits e(j) and adds
// sum_j e(j) * table[(x - j) mod 2^bits] and sum_j e(j) to dot[key] and ones[key].
extern "C" __global__ void dpf_lookup(const u64* roots, const u64* seeds, const u8* controls,
                                      const u64* last, const u64* xs, const u64* table,
                                      u64* dot, u64* ones, u32 count, u32 levels, u32 leaf_bits,
                                      u32 p1) {
    __shared__ Aes a;
    aes_setup(&a);
    const u64 gid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 key = gid >> levels;
    if (key >= count) return;
    const u32 leaf = (u32)(gid & ((1ull << levels) - 1));
    u64 slo = roots[2 * key], shi = roots[2 * key + 1];
    u64 t = p1;
    for (u32 level = 0; level < levels; level++) {
        // The path to this thread's leaf is public (its index), like x's bits in a comparison.
        const u32 dir = (leaf >> (levels - 1 - level)) & 1;
        ggm_step(&a, dir, key * levels + level, seeds, controls, &slo, &shi, &t);
    }
    u64 blo, bhi;
    leaf_block(&a, slo, shi, t, leaf_bits, &last[2 * key], &blo, &bhi);
    const u32 per_leaf = 1u << leaf_bits;
    const u64 size_mask = (1ull << (levels + leaf_bits)) - 1;
    const u64 x = xs[key];
    const u64 first = (u64)leaf * per_leaf;
    u64 acc = 0, count_ones = 0;
    for (u32 p = 0; p < per_leaf; p++) {
        const u64 bit = ((p < 64 ? blo >> p : bhi >> (p - 64))) & 1;
        const u64 entry = table[(x - (first + p)) & size_mask];
        acc += entry & (0 - bit);
        count_ones += bit;
    }
    atomicAdd(&dot[key], acc);
    atomicAdd(&ones[key], count_ones);
}
