//! The dealer's key sink: the generator's bytes batched into chunks for the two servers'
//! socket tasks, with back-pressure.

use crate::messages::DealerChunk;
use bytes::{Bytes, BytesMut};
use securerouter_core::gate::KeySink;
use tokio::sync::mpsc;

use super::CHUNK_BYTES;

/// Batches the dealer's key bytes into chunks and hands them to the two servers' socket tasks
/// (P1-only bytes to P1's alone), blocking when a queue is full (back-pressure). A stream whose
/// receiver is gone (its server left, or never came) is no longer fed. A chunk is cut from the
/// buffer without a copy, and a shared chunk is one allocation in both queues.
pub(super) struct StreamingSink {
    /// P0's and P1's queues.
    txs: [Option<mpsc::Sender<DealerChunk>>; 2],
    p1: BytesMut,
    shared: BytesMut,
}

impl StreamingSink {
    pub(super) fn new([tx0, tx1]: [mpsc::Sender<DealerChunk>; 2]) -> Self {
        StreamingSink {
            txs: [Some(tx0), Some(tx1)],
            p1: BytesMut::new(),
            shared: BytesMut::new(),
        }
    }

    fn push(&mut self, party: usize, chunk: DealerChunk) {
        if let Some(tx) = &self.txs[party]
            && tx.blocking_send(chunk).is_err()
        {
            self.txs[party] = None;
        }
    }

    fn push_both(&mut self, chunk: DealerChunk) {
        self.push(0, chunk.clone());
        self.push(1, chunk);
    }

    /// Sends every full chunk; the remainder stays buffered.
    fn flush_full(&mut self) {
        for chunk in split_full(&mut self.p1) {
            self.push(1, DealerChunk::P1(chunk));
        }
        for chunk in split_full(&mut self.shared) {
            self.push_both(DealerChunk::Shared(chunk));
        }
    }

    /// Sends everything buffered, full chunks or not.
    fn send_buffered(&mut self) {
        self.send_p1();
        self.send_shared();
    }

    /// Sends all of the P1-only buffer.
    fn send_p1(&mut self) {
        for chunk in split_all(&mut self.p1) {
            self.push(1, DealerChunk::P1(chunk));
        }
    }

    /// Sends all of the shared buffer.
    fn send_shared(&mut self) {
        for chunk in split_all(&mut self.shared) {
            self.push_both(DealerChunk::Shared(chunk));
        }
    }

    pub(super) fn finish(&mut self) {
        self.send_buffered();
        self.push_both(DealerChunk::End);
    }

    pub(super) fn fail(&mut self, why: String) {
        self.push_both(DealerChunk::Refused(why));
    }
}

/// Bytes are held back only while the same stream goes on: switching streams first sends what
/// the other one holds. Otherwise P1 could wait for P1-only bytes held here while the generator
/// blocks on P0's full queue, and P0 waits for P1 online: a deadlock of servers that stream
/// their keys alongside the online phase.
impl KeySink for StreamingSink {
    fn to_p1(&mut self, bytes: &[u8]) {
        self.send_shared();
        self.p1.extend_from_slice(bytes);
        self.flush_full();
    }

    fn to_both(&mut self, bytes: &[u8]) {
        self.send_p1();
        self.shared.extend_from_slice(bytes);
        self.flush_full();
    }

    /// Linear records go out at once, after whatever the other streams hold (one record per
    /// layer: a few chunks, never held back).
    fn to_linear(&mut self, both: &[u8], p1_only: &[u8]) {
        self.send_buffered();
        self.push(0, DealerChunk::Linear(Bytes::copy_from_slice(both)));
        let mut p1 = BytesMut::with_capacity(both.len() + p1_only.len());
        p1.extend_from_slice(both);
        p1.extend_from_slice(p1_only);
        for chunk in split_all(&mut p1) {
            self.push(1, DealerChunk::Linear(chunk));
        }
    }
}

/// Cuts the full chunks off the front of `buffer`, leaving the remainder: no byte is copied
/// (the chunks share the buffer's allocation), however much a gate wrote at a time (a batch
/// of comparisons writes ~100 MB at once).
fn split_full(buffer: &mut BytesMut) -> Vec<Bytes> {
    let mut chunks = Vec::with_capacity(buffer.len() / CHUNK_BYTES);
    while buffer.len() >= CHUNK_BYTES {
        chunks.push(buffer.split_to(CHUNK_BYTES).freeze());
    }
    chunks
}

/// Cuts all of `buffer` into chunks, the last one possibly short.
fn split_all(buffer: &mut BytesMut) -> Vec<Bytes> {
    let mut chunks = split_full(buffer);
    if !buffer.is_empty() {
        chunks.push(buffer.split().freeze());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::super::QUEUE_CHUNKS;
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Nothing is held back once the other stream moves on: P1 gets its few P1-only bytes
    /// before the shared bytes generated after them, and P0 its shared remainder before P1 gets
    /// later P1-only bytes (otherwise servers that stream keys online can deadlock).
    #[test]
    fn the_streams_keep_generation_order() {
        let (tx0, mut rx0) = mpsc::channel(64);
        let (tx1, mut rx1) = mpsc::channel(64);
        let mut sink = StreamingSink::new([tx0, tx1]);
        sink.to_p1(&[1; 10]);
        sink.to_both(&vec![2; 2 * CHUNK_BYTES + 5]);
        sink.to_p1(&[3; 7]);
        let kinds = |rx: &mut mpsc::Receiver<DealerChunk>| {
            let mut v = Vec::new();
            while let Ok(c) = rx.try_recv() {
                v.push(match c {
                    DealerChunk::P1(b) => format!("p1:{}", b.len()),
                    DealerChunk::Shared(b) => format!("shared:{}", b.len()),
                    _ => "other".into(),
                });
            }
            v
        };
        let full = format!("shared:{CHUNK_BYTES}");
        assert_eq!(kinds(&mut rx1), ["p1:10", &full, &full, "shared:5"]);
        assert_eq!(kinds(&mut rx0), [&full, &full, "shared:5"]);
        // The last P1-only bytes wait for more (or the end).
        sink.finish();
        assert_eq!(kinds(&mut rx1), ["p1:7", "other"]);
    }

    /// A reader that stops reading makes the generator wait: it never gets more than the
    /// queue's worth of chunks ahead, however many keys the circuit has.
    #[test]
    fn the_generator_waits_for_a_slow_reader() {
        let (tx0, mut rx0) = mpsc::channel(QUEUE_CHUNKS);
        let (tx1, mut rx1) = mpsc::channel(QUEUE_CHUNKS);
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = produced.clone();
        let generator = std::thread::spawn(move || {
            let mut sink = StreamingSink::new([tx0, tx1]);
            for _ in 0..(QUEUE_CHUNKS * 10) {
                sink.to_both(&vec![7u8; CHUNK_BYTES]);
                counter.fetch_add(1, Ordering::SeqCst);
            }
            sink.finish();
        });
        // P0 reads everything; P1 reads nothing yet.
        let p0 = std::thread::spawn(move || {
            let mut chunks = 0;
            while let Some(c) = rx0.blocking_recv() {
                chunks += matches!(c, DealerChunk::Shared(_)) as usize;
            }
            chunks
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        // P1's queue holds QUEUE_CHUNKS chunks; the generator is blocked on the next one.
        let ahead = produced.load(Ordering::SeqCst);
        assert!(
            ahead <= QUEUE_CHUNKS + 1,
            "{ahead} chunks produced without a reader"
        );
        assert!(!generator.is_finished());
        // Reading drains it to the end marker.
        let mut chunks = 0;
        loop {
            match rx1.blocking_recv() {
                Some(DealerChunk::Shared(b)) => {
                    assert_eq!(b.len(), CHUNK_BYTES);
                    chunks += 1;
                }
                Some(DealerChunk::End) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(chunks, QUEUE_CHUNKS * 10);
        generator.join().unwrap();
        assert_eq!(p0.join().unwrap(), QUEUE_CHUNKS * 10);
    }

    /// A stream nobody reads (its receiver dropped) does not stop the other one.
    #[test]
    fn a_dropped_stream_does_not_block_the_other() {
        let (tx0, rx0) = mpsc::channel(1);
        let (tx1, mut rx1) = mpsc::channel(QUEUE_CHUNKS);
        drop(rx0);
        let generator = std::thread::spawn(move || {
            let mut sink = StreamingSink::new([tx0, tx1]);
            for _ in 0..4 {
                sink.to_both(&vec![1u8; CHUNK_BYTES]);
            }
            sink.finish();
        });
        let mut chunks = 0;
        while let Some(c) = rx1.blocking_recv() {
            chunks += matches!(c, DealerChunk::Shared(_)) as usize;
        }
        assert_eq!(chunks, 4);
        generator.join().unwrap();
    }

    #[test]
    fn full_chunks_leave_in_order_and_the_rest_stays() {
        let bytes: Vec<u8> = (0..5 * CHUNK_BYTES / 2).map(|i| (i % 251) as u8).collect();
        let mut buffer = BytesMut::from(&bytes[..]);
        let chunks = split_full(&mut buffer);
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|c| c.len() == CHUNK_BYTES));
        assert_eq!(chunks.concat(), bytes[..2 * CHUNK_BYTES]);
        assert_eq!(buffer[..], bytes[2 * CHUNK_BYTES..]);
        assert!(split_full(&mut buffer).is_empty());
        assert_eq!(buffer.len(), CHUNK_BYTES / 2);
        let rest = split_all(&mut buffer);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0][..], bytes[2 * CHUNK_BYTES..]);
        assert!(buffer.is_empty() && split_all(&mut buffer).is_empty());
    }

    /// A shared chunk reaches both queues as one allocation, not a copy.
    #[test]
    fn a_shared_chunk_is_one_allocation_in_both_queues() {
        let (tx0, mut rx0) = mpsc::channel(4);
        let (tx1, mut rx1) = mpsc::channel(4);
        let mut sink = StreamingSink::new([tx0, tx1]);
        sink.to_both(&vec![9u8; CHUNK_BYTES]);
        let (Ok(DealerChunk::Shared(a)), Ok(DealerChunk::Shared(b))) =
            (rx0.try_recv(), rx1.try_recv())
        else {
            panic!("no shared chunk in both queues");
        };
        assert_eq!(a.len(), CHUNK_BYTES);
        assert_eq!(a.as_ptr(), b.as_ptr());
    }

    #[test]
    fn p0s_stream_carries_no_p1_bytes() {
        let (tx0, mut rx0) = mpsc::channel(4);
        let (tx1, mut rx1) = mpsc::channel(4);
        let mut sink = StreamingSink::new([tx0, tx1]);
        sink.to_p1(&[1, 2, 3]);
        sink.to_both(&[4, 5]);
        sink.finish();
        drop(sink);
        let drain = |rx: &mut mpsc::Receiver<DealerChunk>| {
            let mut got = Vec::new();
            while let Some(c) = rx.blocking_recv() {
                got.push(c);
            }
            got
        };
        assert!(matches!(
            drain(&mut rx0).as_slice(),
            [DealerChunk::Shared(b), DealerChunk::End] if b[..] == [4, 5]
        ));
        assert!(matches!(
            drain(&mut rx1).as_slice(),
            [DealerChunk::P1(a), DealerChunk::Shared(b), DealerChunk::End]
                if a[..] == [1, 2, 3] && b[..] == [4, 5]
        ));
    }
}
