//! The wire format as bytes: every message kind against golden bytes (what the host and the
//! device encode), so that any change to the format fails here.

use securerouter_wire::frame::{self, PlainCodec};
use securerouter_wire::session::{
    ClientHello, Hello, InputShare, OutputShares, PeerHello, ServerReply, WordsError,
    words_hello_header,
};
use securerouter_wire::{CircuitKind, MAX_ROWS, RouteMode, SessionId, check_rows};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const SESSION: SessionId = SessionId([0x11; 16]);

/// `Hello::Client`, P0's seed: tag, session, `Routed(Hide)`, 3 rows, a batch of 3, `Seed`,
/// the seed.
const HELLO_SEED: &str = concat!(
    "00",
    "11111111111111111111111111111111",
    "0301",
    "03",
    "03",
    "00",
    "22222222222222222222222222222222"
);
/// `Hello::Client`, P1's words: tag, session, `Expert(5)`, 1 row, a batch of 1, `Words`, 16
/// bytes, the words 1 and `u64::MAX` in little-endian.
const HELLO_WORDS: &str = concat!(
    "00",
    "11111111111111111111111111111111",
    "0405",
    "01",
    "01",
    "01",
    "10",
    "0100000000000000",
    "ffffffffffffffff"
);
/// `Hello::Peer`: tag, session, `Bert`, 4096 rows, a batch of 16.
const HELLO_PEER: &str = "011111111111111111111111111111111101802010";
/// `ServerReply::Ok`: tag, widths [64, 1], shares [[5, u64::MAX], [0, 1]] (varints).
const REPLY_OK_SHARES: &str = "00024001020205ffffffffffffffffff01020001";
/// Bytes of the host's `SessionStats::default()` that follow them.
const DEFAULT_STATS_LEN: usize = 70;
/// `ServerReply::Failed("no such circuit")`.
const REPLY_FAILED: &str = "010f6e6f20737563682063697263756974";
/// The message "hi" in one frame under the stand-in cipher: length 26, total 2, "hi", tag.
const FRAME_HI: &str = "0000001a0000000000000002686900000000000000000000000000000000";

#[test]
fn circuit_names_have_fixed_tags() {
    let kinds = [
        (CircuitKind::RouterHead, "00"),
        (CircuitKind::Bert, "01"),
        (CircuitKind::Router, "02"),
        (CircuitKind::Routed(RouteMode::Reveal), "0300"),
        (CircuitKind::Routed(RouteMode::Hide), "0301"),
        (CircuitKind::Expert(5), "0405"),
    ];
    for (kind, want) in kinds {
        assert_eq!(postcard::to_allocvec(&kind).unwrap(), hex(want), "{kind}");
        assert_eq!(
            postcard::from_bytes::<CircuitKind>(&hex(want)).unwrap(),
            kind
        );
    }
    assert_eq!(
        CircuitKind::Routed(RouteMode::Hide).to_string(),
        "routed (hide-route)"
    );
}

#[test]
fn hellos_are_their_golden_bytes_from_owned_and_borrowed_containers() {
    fn seed<B>() -> Hello<B> {
        Hello::Client(ClientHello {
            session: SESSION,
            circuit: CircuitKind::Routed(RouteMode::Hide),
            rows: 3,
            batch: 3,
            input: InputShare::Seed([0x22; 16]),
        })
    }
    let (owned, borrowed): (Hello<Vec<u8>>, Hello<&[u8]>) = (seed(), seed());
    assert_eq!(postcard::to_allocvec(&owned).unwrap(), hex(HELLO_SEED));
    assert_eq!(postcard::to_allocvec(&borrowed).unwrap(), hex(HELLO_SEED));
    assert_eq!(
        postcard::from_bytes::<Hello<Vec<u8>>>(&hex(HELLO_SEED)).unwrap(),
        owned
    );

    let words = [1, u64::MAX];
    let owned: Hello<Vec<u8>> = Hello::Client(ClientHello {
        session: SESSION,
        circuit: CircuitKind::Expert(5),
        rows: 1,
        batch: 1,
        input: InputShare::words(&words),
    });
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let borrowed: Hello<&[u8]> = Hello::Client(ClientHello {
        session: SESSION,
        circuit: CircuitKind::Expert(5),
        rows: 1,
        batch: 1,
        input: InputShare::Words(&bytes),
    });
    assert_eq!(postcard::to_allocvec(&owned).unwrap(), hex(HELLO_WORDS));
    assert_eq!(postcard::to_allocvec(&borrowed).unwrap(), hex(HELLO_WORDS));
    // A streaming client's header, then the words, is the same message.
    let mut buf = [0u8; 64];
    let head = words_hello_header(SESSION, CircuitKind::Expert(5), 1, 1, 16, &mut buf).unwrap();
    assert_eq!([head, &bytes[..]].concat(), hex(HELLO_WORDS));
    let Hello::Client(back) = postcard::from_bytes::<Hello<Vec<u8>>>(&hex(HELLO_WORDS)).unwrap()
    else {
        panic!("not a client hello")
    };
    assert_eq!(back.input.into_words(2).unwrap(), words);

    let peer: Hello<Vec<u8>> = Hello::Peer(PeerHello {
        session: SESSION,
        circuit: CircuitKind::Bert,
        rows: MAX_ROWS,
        batch: 16,
    });
    assert_eq!(postcard::to_allocvec(&peer).unwrap(), hex(HELLO_PEER));
    assert_eq!(
        postcard::from_bytes::<Hello<Vec<u8>>>(&hex(HELLO_PEER)).unwrap(),
        peer
    );
}

#[test]
fn a_words_header_carries_any_length() {
    // The length is a varint of one to ten bytes; the header ends with it.
    for len in [0u64, 127, 128, 786_432, u64::MAX] {
        let mut buf = [0u8; 64];
        let head = words_hello_header(SESSION, CircuitKind::Bert, 1, 1, len, &mut buf)
            .unwrap()
            .to_vec();
        let mut varint = [0u8; 16];
        let varint = postcard::to_slice(&len, &mut varint).unwrap();
        assert!(head.ends_with(varint), "{len}");
        // Tag, session, circuit, rows, batch, `Words`, the length.
        assert_eq!(head.len(), 1 + 16 + 1 + 1 + 1 + 1 + varint.len());
    }
    // Too small a buffer is refused.
    assert!(
        words_hello_header(SESSION, CircuitKind::Bert, 1, 1, 1 << 40, &mut [0u8; 20]).is_none()
    );
}

#[test]
fn replies_are_their_golden_bytes_and_a_reader_may_skip_the_accounting() {
    type Shares = OutputShares<Vec<u8>, Vec<Vec<u64>>, ()>;
    let mut full = hex(REPLY_OK_SHARES);
    full.extend([0u8; DEFAULT_STATS_LEN]);
    let (reply, rest) = postcard::take_from_bytes::<ServerReply<Shares, &str>>(&full).unwrap();
    let want = OutputShares {
        widths: vec![64, 1],
        shares: vec![vec![5, u64::MAX], vec![0, 1]],
        stats: (),
    };
    assert_eq!(reply, ServerReply::Ok(want.clone()));
    assert_eq!(rest.len(), DEFAULT_STATS_LEN);
    let ok: ServerReply<Shares, &str> = ServerReply::Ok(want);
    assert_eq!(postcard::to_allocvec(&ok).unwrap(), hex(REPLY_OK_SHARES));

    let failed: ServerReply<Shares, &str> = ServerReply::Failed("no such circuit");
    assert_eq!(postcard::to_allocvec(&failed).unwrap(), hex(REPLY_FAILED));
    assert_eq!(
        postcard::from_bytes::<ServerReply<Shares, String>>(&hex(REPLY_FAILED)).unwrap(),
        ServerReply::Failed("no such circuit".to_string())
    );
}

#[test]
fn session_ids_and_their_stages() {
    assert_eq!(
        SESSION.stage(0).0.to_vec(),
        hex("a56513150acd0c29b09655314f1059f2")
    );
    assert_eq!(
        SESSION.stage(1).0.to_vec(),
        hex("859b43a58a785fb001b5422f1602cdeb")
    );
    assert_eq!(
        format!("{SESSION:?} {}", SessionId([0xab; 16])),
        "111111111111 abababababab"
    );
    assert_eq!(postcard::to_allocvec(&SESSION).unwrap(), [0x11; 16]);
}

#[test]
fn rows_and_words_are_checked() {
    assert_eq!(check_rows(1), Ok(1));
    assert_eq!(check_rows(MAX_ROWS), Ok(MAX_ROWS as usize));
    assert_eq!(
        check_rows(0).unwrap_err().to_string(),
        "0 rows is outside 1..=4096"
    );
    assert!(check_rows(MAX_ROWS + 1).is_err());
    let seed: InputShare<Vec<u8>> = InputShare::Seed([0; 16]);
    assert_eq!(seed.into_words(1), Err(WordsError::Seed));
    assert_eq!(
        WordsError::Seed.to_string(),
        "expected the input share as words, got a seed"
    );
    let err = InputShare::words(&[1, 2]).into_words(3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the input share has 16 bytes, 3 words need 24"
    );
}

#[test]
fn a_frame_is_its_golden_bytes() {
    let mut out = Vec::new();
    frame::encode_message(b"hi", &mut PlainCodec, &mut out).unwrap();
    assert_eq!(out, hex(FRAME_HI));
    let mut d = frame::FrameDecoder::new(1 << 10);
    assert_eq!(
        d.decode_all(&out, &mut PlainCodec).unwrap(),
        vec![b"hi".to_vec()]
    );
    assert_eq!(frame::parse_len([0, 0, 0, 0x1a]), Ok(26));
    assert_eq!(frame::encode_len(26), Some([0, 0, 0, 0x1a]));
    assert_eq!(frame::encode_len(15), None);
}
