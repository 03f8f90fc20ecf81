//! A counting global allocator for the smoke harness: it tracks, per thread, the bytes live and
//! their peak, so the harness can fail an input that makes a decoder commit far more memory than
//! the input justifies (per thread, so that concurrent tests do not see each other's memory). Install it in a binary with
//! `#[global_allocator] static A: CountingAlloc = CountingAlloc;`; without it the counters
//! stay at zero and the check passes (libFuzzer has its own `-rss_limit_mb`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // Const-initialised without destructors: safe to touch from inside the allocator.
    /// Bytes allocated minus bytes freed by this thread (negative when it frees others').
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// [`System`] with counters.
#[derive(Debug)]
pub struct CountingAlloc;

fn grew(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(size as isize);
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    });
}

fn shrank(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().wrapping_sub(size as isize)));
}

// SAFETY: every call forwards to `System` with the caller's arguments; the counters only
// observe sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc` and `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

/// What the allocator saw on this thread since the last [`reset_peak`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocStats {
    /// Bytes live at the reset.
    pub base: isize,
    /// Most bytes live at once since.
    pub peak: isize,
    /// The largest single allocation since.
    pub largest: usize,
}

impl AllocStats {
    /// Bytes above the starting point at the peak.
    pub fn grown(&self) -> usize {
        self.peak.saturating_sub(self.base).max(0) as usize
    }
}

/// Starts a measurement on this thread: the peak restarts from the bytes live now.
pub fn reset_peak() -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    LARGEST.with(|l| l.set(0));
    live
}

/// This thread's measurement since [`reset_peak`] returned `base`.
pub fn stats(base: isize) -> AllocStats {
    AllocStats {
        base,
        peak: PEAK.with(Cell::get),
        largest: LARGEST.with(Cell::get),
    }
}
