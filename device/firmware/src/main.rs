//! Example firmware for QEMU's `mps2-an386` board (Cortex-M4, `thumbv7em-none-eabihf`).
//!
//! It streams P1's share of three embeddings of 128 tokens — 128 wide (BERT-tiny), 384
//! (MiniLM) and 768 (BERT-base) — with `securerouter-device`, exactly as a client would before
//! sending each row, and checks every row: P0's share, expanded from the seed alone, plus the
//! streamed row gives back the encoded input. For each shape it prints the peak stack, the
//! static RAM, the flash image size, the bytes a query uploads and the instructions spent.
//! Then it does the same for rows it embeds itself from WordPiece ids and an int8 table in
//! flash, and runs a whole query against recorded servers.
//!
//! RAM is limited to 64 KiB by `memory.x` (the device budget), so the linker refuses more
//! static data, and the stack is painted before each run and measured after it. Run it with
//! `cargo run --release` in this directory (QEMU's `-icount shift=0` makes one instruction one
//! nanosecond of virtual time, so SysTick, clocked at 25 MHz, counts 40 instructions a tick).
//! It exits through semihosting: status 0 when every check passes, 1 otherwise.

#![no_std]
#![no_main]

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll, Waker};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_core::share::{SeededShareStream, reconstruct};
use securerouter_device::replay::Replay;
use securerouter_device::session::{Circuit, RouteMode, ServerKeys};
use securerouter_device::{
    EmbeddingSource, EmbeddingTable, ShareStreamer, StaticKey, TokenEmbedder, query,
};

/// Tokens per sequence.
const ROWS: usize = 128;
/// The stack paint.
const PAINT: u32 = 0xA5A5_A5A5;
/// QEMU's MPS2 system clock, which drives SysTick; with `-icount shift=0` one tick is 40
/// instructions.
const INSTRUCTIONS_PER_TICK: u64 = 1_000_000_000 / 25_000_000;

/// SysTick wraps (every 2^24 ticks).
static WRAPS: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" {
    static __sdata: u32;
    static __edata: u32;
    static __sbss: u32;
    static __ebss: u32;
    static __sidata: u32;
    static __sheap: u32;
    static _stack_start: u32;
}

/// A deterministic synthetic embedding in [−4, 4), already in fixed point (a multiple of
/// 2^−12, as a quantised flash table or a sensor pipeline would supply it), so the instruction
/// counts are those of share generation, not of soft-float encoding (the M4 has no f64 unit).
struct Synthetic {
    width: usize,
}

impl Synthetic {
    fn value(&self, row: usize, col: usize) -> u64 {
        let h = ((row * self.width + col) as u32).wrapping_mul(2_654_435_761) >> 16;
        // h / 8192 − 4 with 12 fractional bits: h / 2 − 4 · 4096, as a ring element.
        (i64::from(h / 2) - 4 * 4096) as u64
    }
}

impl EmbeddingSource for Synthetic {
    fn rows(&self) -> usize {
        ROWS
    }

    fn width(&self) -> usize {
        self.width
    }

    fn read_row(&mut self, index: usize, out: &mut [u64]) -> Result<(), securerouter_core::Error> {
        for (col, o) in out.iter_mut().enumerate() {
            *o = self.value(index, col);
        }
        Ok(())
    }
}

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// SysTick ticks since it was started (it counts down from 2^24 − 1).
fn ticks() -> u64 {
    loop {
        let before = WRAPS.load(Ordering::Relaxed);
        let current = SYST::get_current();
        if WRAPS.load(Ordering::Relaxed) == before {
            return u64::from(before) * (1 << 24) + u64::from(0x00FF_FFFF - current);
        }
    }
}

fn addr(sym: &u32) -> usize {
    sym as *const u32 as usize
}

/// Paints the free stack between the end of static data and just below the current stack
/// pointer, so a later scan finds how deep the stack went.
fn paint_stack() {
    let bottom = addr(unsafe { &__sheap });
    let sp = cortex_m::register::msp::read() as usize - 256;
    let mut p = bottom;
    while p < sp {
        // SAFETY: [bottom, sp) is RAM that neither static data (below `__sheap`) nor the live
        // stack (above sp − 256) uses; painting it changes no live value.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack used at the deepest point since [`paint_stack`].
fn peak_stack() -> usize {
    let bottom = addr(unsafe { &__sheap });
    let top = addr(unsafe { &_stack_start });
    let mut p = bottom;
    // SAFETY: reads of RAM words between the end of static data and the stack top.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}

#[inline(never)]
/// Streams P1's share of `source`'s rows with a `W`-word buffer; returns a wrapping
/// sum of every streamed word, or `None` if the stream failed.
fn stream<S: EmbeddingSource, const W: usize>(source: S, seed: &Seed) -> Option<u64> {
    let mut streamer = ShareStreamer::<_, W>::new(source, seed).ok()?;
    let mut sum = 0u64;
    while let Some(row) = streamer.next_p1_row() {
        // A client would send `row` to P1 here.
        sum = row.ok()?.iter().fold(sum, |s, &w| s.wrapping_add(w));
    }
    Some(sum)
}

#[inline(never)]
/// Streams `source`'s shares again and checks every row: P0's expansion of the seed plus the
/// streamed row gives back `reference`'s row (the same input, read directly); the streamed
/// words must also sum to `sum`.
fn verify<S: EmbeddingSource, R: EmbeddingSource, const W: usize>(
    source: S,
    mut reference: R,
    seed: &Seed,
    sum: u64,
) -> bool {
    let width = source.width();
    let Ok(mut streamer) = ShareStreamer::<_, W>::new(source, seed) else {
        return false;
    };
    let mut p0 = SeededShareStream::new(seed);
    let (mut s0, mut x, mut want) = ([0u64; W], [0u64; W], [0u64; W]);
    let (mut rows, mut total) = (0, 0u64);
    while let Some(row) = streamer.next_p1_row() {
        let Ok(p1) = row else { return false };
        total = p1.iter().fold(total, |s, &w| s.wrapping_add(w));
        let (s0, x, want) = (&mut s0[..width], &mut x[..width], &mut want[..width]);
        p0.expand_row(s0);
        if reconstruct(s0, p1, x).is_err() || reference.read_row(rows, want).is_err() {
            return false;
        }
        if x != want {
            return false;
        }
        rows += 1;
    }
    rows == ROWS && total == sum
}

#[inline(never)]
/// Streams, measures and verifies one shape; prints its line and returns whether it passed.
fn run<const W: usize>(name: &str, seed: &Seed) -> bool {
    paint_stack();
    let start = ticks();
    let sum = stream::<_, W>(Synthetic { width: W }, seed);
    let spent = ticks() - start;
    let stack = peak_stack();
    let Some(sum) = sum else {
        hprintln!("{}: the share stream failed", name);
        return false;
    };
    let ok = verify::<_, _, W>(Synthetic { width: W }, Synthetic { width: W }, seed, sum);
    let upload = ROWS * W * 8;
    hprintln!(
        "{} (128 x {}): peak stack {} B; upload {} B to P1 + 16 B seed to P0; \
         {} instructions ({} per row); reconstruction {}",
        name,
        W,
        stack,
        upload,
        spent * INSTRUCTIONS_PER_TICK,
        spent * INSTRUCTIONS_PER_TICK / ROWS as u64,
        if ok { "ok" } else { "FAILED" }
    );
    ok
}

/// An int8 embedding table in flash, read in place (`tests/tests/device_embedding.rs` checks it
/// is what the host's `device-table` writes): MiniLM-shaped (hidden 384, 128 positions), with a
/// 32-word vocabulary so that it stays small.
const TABLE: &[u8] = include_bytes!("../table.bin");
/// Real tokens in the table run (the rest of the 128 rows are padding).
const TOKENS: usize = 100;

/// The table run's WordPiece ids: [CLS], words drawn from the table's vocabulary, [SEP].
fn token_ids() -> [u32; TOKENS] {
    core::array::from_fn(|i| match i {
        0 => 2,
        i if i == TOKENS - 1 => 3,
        i => 4 + (i as u32 * 7919) % 28,
    })
}

#[inline(never)]
/// The WordPiece-ids path: 128 rows computed from the flash table (LayerNorm of the summed
/// int8 rows, attention bias, pooling weight) while P1's share is streamed, then streamed again
/// and checked row by row against P0's expansion and the embedder's own rows. Prints its RAM
/// and instruction figures; returns whether it passed.
fn table_path(seed: &Seed) -> bool {
    const WIDTH: usize = 386;
    let fp = match FixedPoint::new(12, BitWidth::FULL) {
        Ok(fp) => fp,
        Err(_) => return false,
    };
    let table = match EmbeddingTable::parse(TABLE) {
        Ok(t) => t,
        Err(e) => {
            hprintln!("table: {}", e);
            return false;
        }
    };
    let ids = token_ids();
    let types = [0u32; TOKENS];
    let embedder = || TokenEmbedder::new(table, &ids, &types, ROWS, fp);
    let Ok(source) = embedder() else {
        hprintln!("table: the token ids were refused");
        return false;
    };
    paint_stack();
    let start = ticks();
    let sum = stream::<_, WIDTH>(source, seed);
    let spent = ticks() - start;
    let stack = peak_stack();
    let ok = sum.is_some_and(|sum| match (embedder(), embedder()) {
        (Ok(source), Ok(reference)) => verify::<_, _, WIDTH>(source, reference, seed, sum),
        _ => false,
    });
    hprintln!(
        "table path (128 x {}, {} tokens from a {} B int8 table in flash): peak stack {} B; \
         {} instructions ({} per row); reconstruction {}",
        WIDTH,
        TOKENS,
        TABLE.len(),
        stack,
        spent * INSTRUCTIONS_PER_TICK,
        spent * INSTRUCTIONS_PER_TICK / ROWS as u64,
        if ok { "ok" } else { "FAILED" }
    );
    ok
}

/// Two servers' side of a recorded session (`tests/tests/device_link.rs` records it and checks
/// that it still replays): the device's key and random seed, the servers' keys, the values the
/// servers' output shares add up to, and each server's bytes to the device.
const TRANSCRIPT: &[u8] = include_bytes!("../transcript.bin");

/// Polls `f` to completion (replayed streams never make it wait).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = core::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

/// A server's recorded stream at `*at` (a little-endian u32 length, then the bytes).
fn recorded_stream<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(array(bytes, *at)?) as usize;
    let s = bytes.get(*at + 4..*at + 4 + len)?;
    *at += 4 + len;
    Some(s)
}

#[inline(never)]
/// A whole query as a device makes it: Noise handshakes with both servers, P1's share of a
/// 128 × 770 input (BERT-base's 768 columns and the 2 the client adds) streamed through the
/// link's encryption, P0's seed, and both replies read and added up, against the recorded
/// servers. Prints its RAM, upload and instruction figures; returns whether it passed.
fn session() -> bool {
    const WIDTH: usize = 770;
    let t = TRANSCRIPT;
    let (Some(secret), Some(rng_seed), Some(p0), Some(p1)) = (
        array::<32>(t, 8),
        array::<16>(t, 40),
        array::<32>(t, 56),
        array::<32>(t, 88),
    ) else {
        hprintln!("session: the transcript is truncated");
        return false;
    };
    let mut want = [0u64; 5];
    for (i, w) in want.iter_mut().enumerate() {
        *w = u64::from_le_bytes(array(t, 120 + 8 * i).unwrap_or_default());
    }
    let mut at = 160;
    let (Some(in0), Some(in1)) = (recorded_stream(t, &mut at), recorded_stream(t, &mut at)) else {
        hprintln!("session: the transcript is truncated");
        return false;
    };
    if t.get(..8) != Some(b"SRTRANS1".as_slice()) {
        hprintln!("session: not a transcript");
        return false;
    }
    let me = StaticKey::from_secret(secret);
    let keys = ServerKeys { p0, p1 };
    let mut rng = AesCtr::new(&Seed::from_bytes(rng_seed), Domain(0));
    let (sent0, sent1) = (Cell::new(0), Cell::new(0));

    paint_stack();
    let start = ticks();
    let future = query::<_, _, _, _, WIDTH>(
        Replay::new(in0, &sent0),
        Replay::new(in1, &sent1),
        &me,
        &keys,
        Circuit::Routed(RouteMode::Reveal),
        Synthetic { width: WIDTH },
        &mut rng,
    );
    let future_bytes = core::mem::size_of_val(&future);
    let out = block_on(future);
    let spent = ticks() - start;
    let stack = peak_stack();
    let ok = match &out {
        Ok(o) => {
            o.values.first().map(|v| &v[..]) == Some(&want[..2])
                && o.values.get(1).map(|v| &v[..]) == Some(&want[2..])
        }
        Err(_) => false,
    };
    let share = ROWS * WIDTH * 8;
    hprintln!(
        "session (128 x {}, routed query): peak stack {} B (the query's future {} B); \
         upload {} B to P1 (share {} B + {} B handshake, hello and framing), {} B to P0; \
         {} instructions; outputs {}",
        WIDTH,
        stack,
        future_bytes,
        sent1.get(),
        share,
        sent1.get() - share.min(sent1.get()),
        sent0.get(),
        spent * INSTRUCTIONS_PER_TICK,
        if ok { "ok" } else { "FAILED" }
    );
    if let Err(e) = out {
        hprintln!("session failed: {}", e);
    }
    ok
}

#[entry]
fn main() -> ! {
    let mut core = cortex_m::Peripherals::take().expect("core peripherals, taken once");
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(0x00FF_FFFF);
    core.SYST.clear_current();
    core.SYST.enable_interrupt();
    core.SYST.enable_counter();

    // A real device draws this from its TRNG; a fixed seed keeps the run reproducible.
    let seed = Seed::from_bytes(*b"mps2-an386-seed!");
    let data = addr(unsafe { &__edata }) - addr(unsafe { &__sdata });
    let bss = addr(unsafe { &__ebss }) - addr(unsafe { &__sbss });
    let flash = addr(unsafe { &__sidata }) + data;
    hprintln!(
        "securerouter-device on mps2-an386 (Cortex-M4): flash image {} B, static RAM {} B \
         (.data {}, .bss {})",
        flash,
        data + bss,
        data,
        bss
    );
    let passed = [
        run::<128>("BERT-tiny", &seed),
        run::<384>("MiniLM", &seed),
        run::<768>("BERT-base", &seed),
        table_path(&seed),
        session(),
    ];
    let total_ram = 64 * 1024;
    if passed.iter().all(|&p| p) {
        hprintln!(
            "success: every streamed share reconstructs and the whole session adds up; RAM budget {} B",
            total_ram
        );
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        hprintln!("FAILURE: a share did not reconstruct or the session failed");
        debug::exit(debug::EXIT_FAILURE);
    }
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
