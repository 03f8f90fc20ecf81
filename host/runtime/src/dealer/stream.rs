//! A server's side of the dealer's stream: chunks read on demand, or all of them first
//! into spill files ([`super::spill`]).

use crate::error::invalid;
use crate::messages::{DealerChunk, DealerRequest, decode, encode};
use crate::net::{LinkConfig, LinkReader, PublicKey, SecureLink};
use securerouter_core::Error;
use securerouter_core::gate::KeySource;
use securerouter_core::prg::Seed;
use securerouter_core::share::Party;
use tokio::net::TcpStream;
use tracing::warn;

use super::spill::Spill;

/// The dealer's three streams as a server receives them, in the order of [`DealerStream`]'s
/// buffers.
#[derive(Clone, Copy)]
enum Stream {
    P1 = 0,
    Shared = 1,
    Linear = 2,
}

/// A server's view of the dealer's stream: reads chunks on demand into one buffer per stream,
/// or, after [`DealerStream::prefetch`], from spill files holding the whole streams.
pub struct DealerStream {
    party: Party,
    reader: LinkReader,
    buffers: [Buffer; 3],
    spilled: Option<[Spill; 3]>,
    ended: bool,
    received: u64,
    /// Seconds spent in the reads of the key stream (waiting for the dealer or the disk).
    read_s: f64,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    pos: usize,
}

impl Buffer {
    fn available(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn append(&mut self, more: &[u8]) {
        if self.pos > 0 && self.pos * 2 >= self.bytes.len() {
            self.bytes.drain(..self.pos);
            self.pos = 0;
        }
        self.bytes.extend_from_slice(more);
    }

    fn take(&mut self, out: &mut [u8]) {
        out.copy_from_slice(&self.bytes[self.pos..self.pos + out.len()]);
        self.pos += out.len();
    }
}

impl DealerStream {
    /// Connects to the dealer, asks for `request`'s keys and returns the server's seed and the
    /// stream of the rest.
    pub async fn open(
        addr: &crate::net::ServiceAddr,
        dealer_key: &PublicKey,
        me: &crate::net::Identity,
        link: &LinkConfig,
        request: DealerRequest,
    ) -> crate::Result<(Seed, Self)> {
        let stream = TcpStream::connect(addr.to_string())
            .await
            .map_err(crate::Error::connect("the dealer", addr))?;
        crate::net::tune_tcp(&stream)?;
        let mut link = SecureLink::connect(stream, me, dealer_key, link).await?;
        link.send(&encode(&request)?).await?;
        let seed = match decode::<DealerChunk>(&link.recv().await?, "dealer seed")? {
            DealerChunk::Seed(s) => Seed::from_bytes(s),
            DealerChunk::Refused(why) => return Err(crate::Error::DealerRefused(why)),
            _ => invalid!("the dealer's stream did not start with a seed"),
        };
        let party = if request.party == 0 {
            Party::P0
        } else {
            Party::P1
        };
        let (_, reader) = link.into_split();
        Ok((
            seed,
            DealerStream {
                party,
                reader,
                buffers: Default::default(),
                spilled: None,
                ended: false,
                received: 0,
                read_s: 0.0,
            },
        ))
    }

    /// Key bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Seconds the server spent reading keys (from the dealer's link, or from the spill files
    /// of a prefetched stream).
    pub fn read_seconds(&self) -> f64 {
        self.read_s
    }

    /// Receives the whole stream before the online phase (benchmarks time the online phase
    /// alone this way), writing it to spill files instead of memory: each chunk's bytes go
    /// from the received message to its file, unbuffered (chunks are 64 KiB).
    ///
    /// # Errors
    /// When a spill file cannot be created or written ([`crate::Error::Spill`]), or the
    /// stream fails ([`crate::Error::ProtocolIn`]); both say "prefetching the dealer's keys".
    pub async fn prefetch(&mut self) -> crate::Result<()> {
        use crate::Error::Spill as SpillFailed;
        use std::io::{Seek, Write};
        let create = || Spill::create().map_err(SpillFailed);
        let mut files = [create()?, create()?, create()?];
        let mut written = [0u64; 3];
        for (i, buf) in self.buffers.iter_mut().enumerate() {
            files[i]
                .write_all(&buf.bytes[buf.pos..])
                .map_err(SpillFailed)?;
            written[i] += buf.available() as u64;
            *buf = Buffer::default();
        }
        let failed = |source| crate::Error::ProtocolIn {
            what: "prefetching the dealer's keys".to_string(),
            source,
        };
        while !self.ended {
            let message = self.recv().await.map_err(failed)?;
            if let Some((stream, bytes)) = self.chunk(&message).map_err(failed)? {
                let i = stream as usize;
                files[i].write_all(bytes).map_err(SpillFailed)?;
                written[i] += bytes.len() as u64;
            }
        }
        let rewound = |mut file: std::fs::File, remaining| {
            file.seek(std::io::SeekFrom::Start(0))
                .map_err(SpillFailed)?;
            Ok::<_, crate::Error>(Spill { file, remaining })
        };
        let ([a, b, c], [na, nb, nc]) = (files, written);
        self.spilled = Some([rewound(a, na)?, rewound(b, nb)?, rewound(c, nc)?]);
        Ok(())
    }

    /// Reads one more chunk into the buffers.
    async fn fetch(&mut self) -> Result<(), Error> {
        let message = self.recv().await?;
        if let Some((stream, bytes)) = self.chunk(&message)? {
            self.buffers[stream as usize].append(bytes);
        }
        Ok(())
    }

    /// The next message of the dealer's link.
    async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        if self.ended {
            return Err(Error::ChannelClosed("the dealer's stream ended early"));
        }
        let bytes = self.reader.recv().await.map_err(|e| {
            warn!("dealer stream: {e}");
            Error::ChannelClosed("the dealer's stream failed")
        })?;
        self.received += bytes.len() as u64;
        Ok(bytes)
    }

    /// Reads a chunk in place: its stream and bytes, borrowed from `message`, or `None` for
    /// the end marker (which ends the stream).
    fn chunk<'m>(&mut self, message: &'m [u8]) -> Result<Option<(Stream, &'m [u8])>, Error> {
        let chunk: DealerChunk<&[u8]> = postcard::from_bytes(message)
            .map_err(|_| Error::MalformedMessage("malformed chunk on the dealer's stream"))?;
        Ok(Some(match chunk {
            DealerChunk::P1(b) if self.party == Party::P1 => (Stream::P1, b),
            DealerChunk::P1(_) => {
                return Err(Error::MalformedMessage(
                    "the dealer sent P1-only keys to P0",
                ));
            }
            DealerChunk::Shared(b) => (Stream::Shared, b),
            DealerChunk::Linear(b) => (Stream::Linear, b),
            DealerChunk::End => {
                self.ended = true;
                return Ok(None);
            }
            DealerChunk::Refused(why) => {
                warn!("dealer: {why}");
                return Err(Error::ChannelClosed("the dealer aborted the session"));
            }
            DealerChunk::Seed(_) => {
                return Err(Error::MalformedMessage(
                    "a second seed on the dealer's stream",
                ));
            }
        }))
    }
}

impl KeySource for DealerStream {
    async fn read_p1_stream(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let start = std::time::Instant::now();
        let read = self.read_p1(out).await;
        self.read_s += start.elapsed().as_secs_f64();
        read
    }

    async fn read_shared_stream(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let start = std::time::Instant::now();
        let read = self.read(Stream::Shared, out).await;
        self.read_s += start.elapsed().as_secs_f64();
        read
    }

    async fn read_linear_stream(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let start = std::time::Instant::now();
        let read = self.read(Stream::Linear, out).await;
        self.read_s += start.elapsed().as_secs_f64();
        read
    }
}

impl DealerStream {
    async fn read_p1(&mut self, out: &mut [u8]) -> Result<(), Error> {
        if self.party != Party::P1 {
            return Err(Error::ProtocolMisuse(
                "P0 receives nothing from the dealer but its seed and shared keys",
            ));
        }
        self.read(Stream::P1, out).await
    }

    async fn read(&mut self, stream: Stream, out: &mut [u8]) -> Result<(), Error> {
        let i = stream as usize;
        if let Some(spills) = &mut self.spilled {
            return spills[i].take(out);
        }
        while self.buffers[i].available() < out.len() {
            self.fetch().await?;
        }
        self.buffers[i].take(out);
        Ok(())
    }
}

impl DealerStream {
    /// Reads the end marker; an error if keys are left over (dealer and server disagree).
    pub async fn expect_end(&mut self) -> Result<(), Error> {
        while !self.ended {
            self.fetch().await?;
        }
        let spilled: u64 = self
            .spilled
            .iter()
            .flatten()
            .map(|spill| spill.remaining)
            .sum();
        let buffered: usize = self.buffers.iter().map(Buffer::available).sum();
        if buffered > 0 || spilled > 0 {
            return Err(Error::ProtocolMisuse("dealer keys left unread at the end"));
        }
        Ok(())
    }
}
