//! The session messages servers, dealer and clients exchange (postcard inside the links),
//! decoded with the host's `messages::decode`.

use securerouter_circuits::CircuitKind;
use securerouter_circuits::pool::RouteMode;
use securerouter_runtime::messages::{
    ClientHello, DealerChunk, DealerRequest, Hello, InputShare, MAX_ROWS, OutputShares, PeerHello,
    PeerReady, PhaseStats, ServerReply, SessionId, SessionStats, check_rows, decode, encode,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `bytes` as a `T`; what decodes must re-encode to bytes that decode and re-encode
/// to themselves (postcard allows a few non-minimal forms, so the first re-encoding may
/// differ from the input, but never drift after).
fn check<T: Serialize + DeserializeOwned>(bytes: &[u8], what: &str) -> Option<T> {
    let msg: T = decode(bytes, what).ok()?;
    let once = encode(&msg).expect("a decoded message encodes");
    let again: T = decode(&once, what).expect("a re-encoded message decodes");
    assert_eq!(
        encode(&again).expect("encodes"),
        once,
        "{what}: re-encoding is not stable"
    );
    Some(msg)
}

/// A server's view of an input share: the words must be exactly 8 bytes each.
fn check_input(input: InputShare, rows: u32) {
    let InputShare::Words(bytes) = &input else {
        assert!(input.into_words(1).is_err(), "a seed read as words");
        return;
    };
    let words = bytes.len() / 8;
    let exact = bytes.len() % 8 == 0;
    match input.clone().into_words(words) {
        Ok(w) => {
            assert!(exact, "a share of {} bytes read as words", bytes.len());
            assert_eq!(InputShare::words(&w).into_words(words).unwrap(), w);
        }
        Err(_) => assert!(!exact, "a share of whole words refused"),
    }
    // What a server expects from the hello's row count: the count must match, or refusal.
    if let Ok(rows) = check_rows(rows) {
        for features in [1usize, 3, 8] {
            if let Ok(w) = input.clone().into_words(rows * features) {
                assert_eq!(w.len(), rows * features);
            }
        }
    }
}

/// Input: a selector byte (which message), then the message's postcard bytes.
pub fn session_messages(data: &[u8]) -> bool {
    let Some((&sel, bytes)) = data.split_first() else {
        return false;
    };
    match sel % 8 {
        0 => match check::<Hello>(bytes, "hello") {
            Some(Hello::Client(h)) => {
                check_input(h.input, h.rows);
                true
            }
            Some(Hello::Peer(_)) => true,
            None => false,
        },
        1 => check::<ClientHello>(bytes, "client hello")
            .map(|h| check_input(h.input, h.rows))
            .is_some(),
        2 => check::<PeerHello>(bytes, "peer hello").is_some(),
        3 => check::<DealerRequest>(bytes, "dealer request")
            .map(|r| {
                if check_rows(r.rows).is_ok() {
                    assert!((1..=MAX_ROWS).contains(&r.rows));
                }
            })
            .is_some(),
        4 => check::<DealerChunk>(bytes, "dealer chunk").is_some(),
        5 => check::<ServerReply>(bytes, "server reply").is_some(),
        6 => check::<PeerReady>(bytes, "P0's confirmation").is_some(),
        _ => check::<InputShare>(bytes, "input share")
            .map(|i| check_input(i, 1))
            .is_some(),
    }
}

/// Every message type, encoded by the host.
pub fn session_messages_seeds() -> Vec<Vec<u8>> {
    let session = SessionId([7; 16]);
    let circuits = [
        CircuitKind::RouterHead,
        CircuitKind::Bert,
        CircuitKind::Router,
        CircuitKind::Routed(RouteMode::Reveal),
        CircuitKind::Routed(RouteMode::Hide),
        CircuitKind::Expert(2),
    ];
    let hello = |circuit, input| ClientHello {
        session,
        circuit,
        rows: 2,
        batch: 2,
        input,
    };
    let with = |sel: u8, bytes: Vec<u8>| [vec![sel], bytes].concat();
    let mut out = Vec::new();
    for c in circuits {
        let words = InputShare::words(&[1, u64::MAX, 3, 1 << 40]);
        out.push(with(
            0,
            encode(&Hello::Client(hello(c, words.clone()))).unwrap(),
        ));
        out.push(with(
            1,
            encode(&hello(c, InputShare::Seed([9; 16]))).unwrap(),
        ));
        let request = DealerRequest {
            session,
            query: c,
            stage: 0,
            rows: 4,
            batch: 2,
            party: 1,
        };
        out.push(with(3, encode(&request).unwrap()));
    }
    let peer = PeerHello {
        session,
        circuit: CircuitKind::Routed(RouteMode::Reveal),
        rows: 3,
        batch: 1,
    };
    out.push(with(0, encode(&Hello::Peer(peer)).unwrap()));
    out.push(with(2, encode(&peer).unwrap()));
    out.push(with(6, encode(&PeerReady { session }).unwrap()));
    let chunks: [DealerChunk; 5] = [
        DealerChunk::Seed([3; 16]),
        DealerChunk::P1(vec![1, 2, 3, 4, 5].into()),
        DealerChunk::Shared((0..=255).collect::<Vec<u8>>().into()),
        DealerChunk::End,
        DealerChunk::Refused("no such model".into()),
    ];
    for chunk in chunks {
        out.push(with(4, encode(&chunk).unwrap()));
    }
    let stats = SessionStats {
        online_bytes_sent: 1 << 20,
        rounds: 12,
        phases: vec![PhaseStats {
            name: "softmax".into(),
            online_s: 0.5,
            bytes_sent: 100,
            rounds: 3,
        }],
        kernels: "cpu".into(),
        ..SessionStats::default()
    };
    let reply = ServerReply::Ok(OutputShares {
        widths: vec![64, 1],
        shares: vec![vec![5, u64::MAX, 7], vec![0, 1, 0]],
        stats,
    });
    out.push(with(5, encode(&reply).unwrap()));
    out.push(with(
        5,
        encode(&ServerReply::Failed("out of keys".into())).unwrap(),
    ));
    out.push(with(6, encode(&InputShare::words(&[42; 3])).unwrap()));
    out
}
