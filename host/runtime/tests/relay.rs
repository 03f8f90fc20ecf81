//! The link relay against its own settings, with real TCP sockets on loopback: round trips take
//! the model's rtt, a bulk transfer moves at its rate, bytes arrive intact and in order, and
//! closes and resets reach the other side. These check the relay, not our services' speed.
//!
//! The tests run one at a time (a lock), so that their timings do not disturb each other on a
//! small machine.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use securerouter_runtime::relay::{LinkModel, Relay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Held by each test while it runs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `test` alone, on a two-worker runtime, within 10 s.
fn run<F: Future<Output = ()>>(test: F) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), test)
            .await
            .expect("the test ran past 10 s");
    });
}

fn model(text: &str) -> LinkModel {
    text.parse().unwrap()
}

const LOCAL: &str = "127.0.0.1:0";

fn local() -> SocketAddr {
    LOCAL.parse().unwrap()
}

/// A server that echoes every connection's bytes back until its EOF, then closes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(LOCAL).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
        }
    });
    addr
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Deterministic pseudo-random bytes (xorshift), different for each `seed`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The round trips of `n` 64-byte pings through a relay with `link` to an echo server.
async fn ping_pong(link: LinkModel, n: usize) -> Vec<Duration> {
    let relay = Relay::start(local(), echo_server().await, link)
        .await
        .unwrap();
    let mut s = connect(relay.addr()).await;
    let mut rtts = Vec::with_capacity(n);
    let mut back = [0u8; 64];
    // The first round trip also opens the relay's connection to the target: not counted.
    for i in 0..=n {
        let ping = pattern(64, i as u64 + 1);
        let t = Instant::now();
        s.write_all(&ping).await.unwrap();
        s.read_exact(&mut back).await.unwrap();
        let rtt = t.elapsed();
        assert_eq!(back[..], ping[..], "round trip {i}");
        if i > 0 {
            rtts.push(rtt);
        }
    }
    rtts
}

/// Checks round trips against the model's rtt: none shorter, and the median within 5 % plus
/// 0.5 ms of loopback slack (the median, so one scheduling hiccup on a busy machine does not
/// fail the test; the mean is printed).
fn check_round_trips(link: LinkModel, mut rtts: Vec<Duration>) {
    rtts.sort();
    let n = rtts.len();
    let mean = rtts.iter().sum::<Duration>() / n as u32;
    let median = rtts[n / 2];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "{link}: {n} round trips, median {:.3} ms, mean {:.3} ms, min {:.3} ms, max {:.3} ms \
         (setting {:.3} ms; median {:+.2} %)",
        ms(median),
        ms(mean),
        ms(rtts[0]),
        ms(rtts[n - 1]),
        ms(link.rtt),
        (ms(median) / ms(link.rtt) - 1.0) * 100.0
    );
    assert!(
        rtts[0] >= link.rtt,
        "a round trip of {:?} beat the rtt {:?}",
        rtts[0],
        link.rtt
    );
    let slack = link.rtt / 20 + Duration::from_micros(500);
    assert!(
        median <= link.rtt + slack,
        "median round trip {median:?}, setting {:?} (+{slack:?} allowed)",
        link.rtt
    );
}

#[test]
fn relay_round_trips_take_the_rtt() {
    run(async {
        let link = model("rtt=20ms");
        check_round_trips(link, ping_pong(link, 25).await);
    });
}

#[test]
fn relay_lan_round_trips_take_the_rtt() {
    // 1 ms: with tokio's millisecond timer these would take 3 ms or more.
    run(async {
        check_round_trips(LinkModel::LAN, ping_pong(LinkModel::LAN, 50).await);
    });
}

#[test]
fn relay_paces_a_bulk_transfer_at_the_rate() {
    run(async {
        const BYTES: usize = 8_000_000;
        let link = model("rtt=1ms,rate=100mbit");
        let data = pattern(BYTES, 7);
        // A sink that checks the bytes and says when the last one came.
        let listener = TcpListener::bind(LOCAL).await.unwrap();
        let target = listener.local_addr().unwrap();
        let want = data.clone();
        let sink = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::with_capacity(BYTES);
            let mut buf = vec![0u8; 64 * 1024];
            let mut last = Instant::now();
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                last = Instant::now();
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got == want, "the bytes changed on the way");
            last
        });
        let relay = Relay::start(local(), target, link).await.unwrap();
        let mut s = connect(relay.addr()).await;
        let start = Instant::now();
        for chunk in data.chunks(100_000) {
            s.write_all(chunk).await.unwrap();
        }
        s.shutdown().await.unwrap();
        let last = sink.await.unwrap();
        // The last byte arrives BYTES * 8 / rate after the first left, plus rtt/2.
        let seconds = (last - start - link.rtt / 2).as_secs_f64();
        let rate = BYTES as f64 * 8.0 / seconds;
        let setting = link.rate_bits_per_s as f64;
        eprintln!(
            "{link}: {BYTES} bytes in {:.1} ms, {:.2} Mbit/s ({:+.2} %)",
            (last - start).as_secs_f64() * 1e3,
            rate / 1e6,
            (rate / setting - 1.0) * 100.0
        );
        assert!(
            (rate - setting).abs() <= 0.05 * setting,
            "measured {:.2} Mbit/s, setting {:.2} Mbit/s",
            rate / 1e6,
            setting / 1e6
        );
    });
}

#[test]
fn relay_delivers_bytes_intact_and_in_order() {
    run(async {
        let target = echo_server().await;
        for link in [
            model("rtt=2ms,rate=1gbit"),
            model("rtt=1ms"),
            LinkModel::LOOPBACK,
        ] {
            let relay = Relay::start(local(), target, link).await.unwrap();
            // Four connections at once, each with writes of varied sizes both ways.
            let mut each = Vec::new();
            for c in 0..4u64 {
                let addr = relay.addr();
                each.push(tokio::spawn(async move {
                    let data = pattern(1_500_000 + 777 * c as usize, c + 11);
                    let s = connect(addr).await;
                    let (mut r, mut w) = s.into_split();
                    let sent = data.clone();
                    let writer = tokio::spawn(async move {
                        let mut rest = &sent[..];
                        let mut size = 1;
                        while !rest.is_empty() {
                            let (now, later) = rest.split_at(size.min(rest.len()));
                            w.write_all(now).await.unwrap();
                            rest = later;
                            size = size * 7 % 70_001 + 1;
                        }
                        w.shutdown().await.unwrap();
                    });
                    let mut back = Vec::new();
                    r.read_to_end(&mut back).await.unwrap();
                    writer.await.unwrap();
                    assert!(back == data, "connection {c}: the echo differs");
                }));
            }
            for c in each {
                c.await.unwrap();
            }
            relay.stop().await;
        }
    });
}

#[test]
fn relay_forwards_half_closes_after_the_bytes() {
    run(async {
        let link = model("rtt=10ms");
        let listener = TcpListener::bind(LOCAL).await.unwrap();
        let relay = Relay::start(local(), listener.local_addr().unwrap(), link)
            .await
            .unwrap();
        let mut client = connect(relay.addr()).await;
        let closed_at = Instant::now();
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        assert!(closed_at.elapsed() >= link.rtt / 2, "the EOF came early");
        // The other direction is still open.
        server.write_all(b"bye").await.unwrap();
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
    });
}

#[test]
fn relay_forwards_a_reset() {
    run(async {
        let listener = TcpListener::bind(LOCAL).await.unwrap();
        let relay = Relay::start(local(), listener.local_addr().unwrap(), model("rtt=2ms"))
            .await
            .unwrap();
        let mut client = connect(relay.addr()).await;
        client.write_all(b"x").await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut one = [0u8; 1];
        server.read_exact(&mut one).await.unwrap();
        server.write_all(b"last words").await.unwrap();
        server.set_zero_linger().unwrap();
        drop(server);
        // The bytes sent before the reset arrive, then the reset.
        let mut got = [0u8; 10];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"last words");
        let e = client.read(&mut one).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    });
}

#[test]
fn relay_closes_a_connection_it_cannot_forward() {
    run(async {
        // A port nobody listens on (taken after the relay's, so that it cannot be the same).
        let placeholder = TcpListener::bind(LOCAL).await.unwrap();
        let relay = Relay::start(local(), placeholder.local_addr().unwrap(), LinkModel::LAN)
            .await
            .unwrap();
        drop(placeholder);
        // The relay resets the connection, so fast on loopback that even the connect (or a
        // `set_nodelay` after it) may see the reset.
        let mut client = match TcpStream::connect(relay.addr()).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connecting to the relay: {e}"),
        };
        let mut buf = [0u8; 8];
        let read = client.read(&mut buf).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    });
}

#[test]
fn relay_stops_when_dropped() {
    run(async {
        let relay = Relay::start(local(), echo_server().await, LinkModel::LAN)
            .await
            .unwrap();
        let addr = relay.addr();
        let mut client = connect(addr).await;
        client.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.unwrap();
        drop(relay);
        // The open connection ends, and no new one is accepted.
        let read = client.read(&mut back).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(TcpStream::connect(addr).await.is_err());
    });
}
