//! Oblivious transfer: two in-process parties run each protocol through the public API.

use curve25519_dalek::ristretto::CompressedRistretto;
use curve25519_dalek::traits::IsIdentity;
use securerouter_core::Error;
use securerouter_core::ot::{
    BaseCotReceiver, BaseCotSender, Block, ChoiceMessage, ChouOrlandiReceiver, ChouOrlandiSender,
    CotReceiver, CotSender, MAX_N, NaorPinkasReceiver, NaorPinkasSender, OneOfNHeader,
    OneOfNReceiver, OneOfNRequest, OneOfNSender, OtReceiver, OtSender, POINT_LEN, ReceiverKey,
    SenderSetup,
};
use securerouter_core::prg::{AesCtr, Domain, Seed};

fn rng(tag: u8) -> AesCtr {
    AesCtr::new(&Seed::from_bytes([tag; 16]), Domain::OT)
}

fn random_bits(rng: &mut AesCtr, n: usize) -> Vec<bool> {
    (0..n).map(|_| rng.next_bit()).collect()
}

fn random_pairs<const L: usize>(rng: &mut AesCtr, n: usize) -> Vec<[[u8; L]; 2]> {
    (0..n)
        .map(|_| {
            let mut pair = [[0u8; L]; 2];
            rng.fill(&mut pair[0]);
            rng.fill(&mut pair[1]);
            pair
        })
        .collect()
}

/// What one batch of 1-of-2 OTs leaves behind: the ciphertexts the sender sent, the
/// receiver's states, and the receiver's outputs.
struct Batch<St, const L: usize> {
    ciphertexts: Vec<[[u8; L]; 2]>,
    states: Vec<St>,
    out: Vec<[u8; L]>,
}

/// Runs one batch of 1-of-2 OTs through the traits only.
fn run_batch<S, R, const L: usize>(
    sender: &mut S,
    receiver: &mut R,
    rng: &mut AesCtr,
    choices: &[bool],
    messages: &[[[u8; L]; 2]],
) -> Batch<R::State, L>
where
    S: OtSender,
    R: OtReceiver<Response = S::Response>,
{
    let n = choices.len();
    let mut responses = vec![R::Response::default(); n];
    let mut states = vec![R::State::default(); n];
    receiver
        .respond(rng, choices, &mut responses, &mut states)
        .unwrap();
    let mut ciphertexts = vec![[[0u8; L]; 2]; n];
    sender
        .encrypt(&responses, messages, &mut ciphertexts)
        .unwrap();
    let mut out = vec![[0u8; L]; n];
    receiver.decrypt(&states, &ciphertexts, &mut out).unwrap();
    Batch {
        ciphertexts,
        states,
        out,
    }
}

fn base_pair(tag: u8) -> (ChouOrlandiSender, ChouOrlandiReceiver) {
    let sender = ChouOrlandiSender::new(&mut rng(tag));
    // The setup travels as bytes, as it would over a channel.
    let wire = sender.first_message().to_bytes();
    let receiver = ChouOrlandiReceiver::new(&SenderSetup::from_bytes(&wire).unwrap()).unwrap();
    (sender, receiver)
}

fn check_chosen_only<const L: usize>(tag: u8) {
    let (mut sender, mut receiver) = base_pair(tag);
    let mut r = rng(tag.wrapping_add(100));
    let choices = random_bits(&mut r, 128);
    assert!(choices.iter().any(|&c| c) && choices.iter().any(|&c| !c));
    let messages = random_pairs::<L>(&mut r, 128);
    let Batch {
        ciphertexts,
        states,
        out,
    } = run_batch(&mut sender, &mut receiver, &mut r, &choices, &messages);
    for i in 0..128 {
        let c = usize::from(choices[i]);
        assert_eq!(out[i], messages[i][c], "OT {i}");
        assert_ne!(
            ciphertexts[i][c], messages[i][c],
            "OT {i} sent in the clear"
        );
    }

    // Swapping each pair makes the receiver apply its key to the other ciphertext: that does
    // not give the other message (nor the chosen one).
    let swapped: Vec<_> = ciphertexts.iter().map(|&[e0, e1]| [e1, e0]).collect();
    let mut other = vec![[0u8; L]; 128];
    receiver.decrypt(&states, &swapped, &mut other).unwrap();
    for i in 0..128 {
        let c = usize::from(choices[i]);
        assert_ne!(other[i], messages[i][1 - c], "OT {i} leaked m^(1-c)");
        assert_ne!(other[i], messages[i][c], "OT {i}");
    }
}

#[test]
fn base_ot_receiver_gets_exactly_the_chosen_16_byte_message() {
    check_chosen_only::<16>(1);
}

#[test]
fn base_ot_receiver_gets_exactly_the_chosen_32_byte_message() {
    check_chosen_only::<32>(2);
}

#[test]
fn base_ot_pads_longer_than_one_hash_block() {
    check_chosen_only::<70>(3);
}

#[test]
fn base_ot_batches_in_order_share_one_setup() {
    let (mut sender, mut receiver) = base_pair(4);
    let mut r = rng(5);
    for size in [1usize, 7, 33] {
        let choices = random_bits(&mut r, size);
        let messages = random_pairs::<16>(&mut r, size);
        let out = run_batch(&mut sender, &mut receiver, &mut r, &choices, &messages).out;
        for i in 0..size {
            assert_eq!(out[i], messages[i][usize::from(choices[i])]);
        }
    }
}

#[test]
fn base_ot_keys_are_bound_to_the_ot_index() {
    // The receiver responds to two batches; the sender encrypts them in the wrong order, so
    // each OT is processed under another index and the receiver gets garbage.
    let (mut sender, mut receiver) = base_pair(6);
    let mut r = rng(7);
    let choices = [false, true, true, false];
    let messages = random_pairs::<16>(&mut r, 4);
    let mut resp1 = [ChoiceMessage::default(); 4];
    let mut st1 = [ReceiverKey::default(); 4];
    let mut resp2 = [ChoiceMessage::default(); 4];
    let mut st2 = [ReceiverKey::default(); 4];
    receiver
        .respond(&mut r, &choices, &mut resp1, &mut st1)
        .unwrap();
    receiver
        .respond(&mut r, &choices, &mut resp2, &mut st2)
        .unwrap();
    let mut ct2 = [[[0u8; 16]; 2]; 4];
    sender.encrypt(&resp2, &messages, &mut ct2).unwrap(); // indices 0..4, meant for 4..8
    let mut out = [[0u8; 16]; 4];
    receiver.decrypt(&st2, &ct2, &mut out).unwrap();
    for i in 0..4 {
        assert_ne!(out[i], messages[i][usize::from(choices[i])]);
    }
}

#[test]
fn choice_messages_are_valid_distinct_points_for_either_choice() {
    let (sender, mut receiver) = base_pair(8);
    let a_bytes = sender.first_message().to_bytes();
    let n = 64;
    let choices: Vec<bool> = (0..n).map(|i| i % 2 == 1).collect();
    let mut responses = vec![ChoiceMessage::default(); n];
    let mut states = vec![ReceiverKey::default(); n];
    receiver
        .respond(&mut rng(9), &choices, &mut responses, &mut states)
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    for (i, resp) in responses.iter().enumerate() {
        let bytes = resp.to_bytes();
        let point = CompressedRistretto(bytes)
            .decompress()
            .unwrap_or_else(|| panic!("B_{i} (choice {}) does not decompress", choices[i]));
        assert!(!point.is_identity());
        // The encoding is canonical: it round-trips.
        assert_eq!(point.compress().to_bytes(), bytes);
        assert_ne!(bytes, a_bytes);
        assert!(seen.insert(bytes), "B_{i} repeats");
        assert_eq!(ChoiceMessage::from_bytes(&bytes).unwrap(), *resp);
    }

    // The same randomness with the opposite choices gives other, equally valid points.
    let mut receiver2 = ChouOrlandiReceiver::new(&sender.first_message()).unwrap();
    let flipped: Vec<bool> = choices.iter().map(|c| !c).collect();
    let mut responses2 = vec![ChoiceMessage::default(); n];
    receiver2
        .respond(&mut rng(9), &flipped, &mut responses2, &mut states)
        .unwrap();
    for (b1, b2) in responses.iter().zip(&responses2) {
        assert_ne!(b1, b2);
        assert!(CompressedRistretto(b2.to_bytes()).decompress().is_some());
    }
}

#[test]
fn wire_messages_of_the_wrong_length_are_rejected() {
    for len in [0usize, 31, 33, 64] {
        let bytes = vec![0u8; len];
        let expected = Error::LengthMismatch {
            expected: POINT_LEN,
            got: len,
        };
        assert_eq!(SenderSetup::from_bytes(&bytes), Err(expected));
        assert_eq!(ChoiceMessage::from_bytes(&bytes), Err(expected));
    }
}

/// Encodings that are not canonical Ristretto points (s ≥ p, or s "negative" i.e. odd).
const INVALID_ENCODINGS: [[u8; 32]; 3] = [[0xff; 32], one_le(), [0xed; 32]];

const fn one_le() -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
}

#[test]
fn receiver_rejects_a_malformed_or_identity_setup() {
    for bytes in INVALID_ENCODINGS {
        assert!(CompressedRistretto(bytes).decompress().is_none());
        let setup = SenderSetup::from_bytes(&bytes).unwrap();
        assert!(matches!(
            ChouOrlandiReceiver::new(&setup),
            Err(Error::MalformedMessage(_))
        ));
        assert!(matches!(
            NaorPinkasReceiver::new(&setup),
            Err(Error::MalformedMessage(_))
        ));
        assert!(matches!(
            BaseCotReceiver::new(&setup),
            Err(Error::MalformedMessage(_))
        ));
    }
    // The identity's encoding is all zeros.
    let identity = SenderSetup::from_bytes(&[0u8; 32]).unwrap();
    assert!(matches!(
        ChouOrlandiReceiver::new(&identity),
        Err(Error::MalformedMessage(_))
    ));
}

#[test]
fn sender_rejects_malformed_or_identity_responses_and_stays_usable() {
    let (mut sender, mut receiver) = base_pair(10);
    let mut r = rng(11);
    let choices = [true, false, true];
    let messages = random_pairs::<16>(&mut r, 3);
    let mut responses = [ChoiceMessage::default(); 3];
    let mut states = [ReceiverKey::default(); 3];
    receiver
        .respond(&mut r, &choices, &mut responses, &mut states)
        .unwrap();

    let mut bad_inputs: Vec<[u8; 32]> = INVALID_ENCODINGS.to_vec();
    bad_inputs.push([0u8; 32]); // identity
    for bad in bad_inputs {
        let mut tampered = responses;
        tampered[2] = ChoiceMessage::from_bytes(&bad).unwrap();
        let mut ciphertexts = [[[0xaau8; 16]; 2]; 3];
        assert!(matches!(
            sender.encrypt(&tampered, &messages, &mut ciphertexts),
            Err(Error::MalformedMessage(_))
        ));
        // Nothing partly encrypted is left for the caller to send by mistake.
        assert_eq!(ciphertexts, [[[0u8; 16]; 2]; 3]);
    }
    // A default (never filled) response is the identity and is rejected too.
    let mut ciphertexts = [[[0u8; 16]; 2]; 1];
    assert!(
        sender
            .encrypt(
                &[ChoiceMessage::default()],
                &messages[..1],
                &mut ciphertexts
            )
            .is_err()
    );

    // The failed calls used up no indices: the honest batch still goes through.
    let mut ciphertexts = [[[0u8; 16]; 2]; 3];
    sender
        .encrypt(&responses, &messages, &mut ciphertexts)
        .unwrap();
    let mut out = [[0u8; 16]; 3];
    receiver.decrypt(&states, &ciphertexts, &mut out).unwrap();
    for i in 0..3 {
        assert_eq!(out[i], messages[i][usize::from(choices[i])]);
    }
}

#[test]
fn base_ot_rejects_mismatched_counts() {
    let (mut sender, mut receiver) = base_pair(12);
    let mut r = rng(13);
    let mut responses = [ChoiceMessage::default(); 4];
    let mut states = [ReceiverKey::default(); 4];

    assert_eq!(
        receiver.respond(&mut r, &[true; 3], &mut responses, &mut states),
        Err(Error::LengthMismatch {
            expected: 3,
            got: 4
        })
    );
    assert_eq!(
        receiver.respond(&mut r, &[true; 4], &mut responses, &mut states[..2]),
        Err(Error::LengthMismatch {
            expected: 4,
            got: 2
        })
    );
    receiver
        .respond(
            &mut r,
            &[true, false, false, true],
            &mut responses,
            &mut states,
        )
        .unwrap();

    let messages = random_pairs::<16>(&mut r, 4);
    let mut ciphertexts = [[[0u8; 16]; 2]; 4];
    assert_eq!(
        sender.encrypt(&responses[..3], &messages, &mut ciphertexts),
        Err(Error::LengthMismatch {
            expected: 3,
            got: 4
        })
    );
    assert_eq!(
        sender.encrypt(&responses, &messages, &mut ciphertexts[..1]),
        Err(Error::LengthMismatch {
            expected: 4,
            got: 1
        })
    );
    sender
        .encrypt(&responses, &messages, &mut ciphertexts)
        .unwrap();

    let mut out = [[0u8; 16]; 4];
    assert_eq!(
        receiver.decrypt(&states, &ciphertexts[..3], &mut out),
        Err(Error::LengthMismatch {
            expected: 4,
            got: 3
        })
    );
    assert_eq!(
        receiver.decrypt(&states, &ciphertexts, &mut out[..2]),
        Err(Error::LengthMismatch {
            expected: 4,
            got: 2
        })
    );
    receiver.decrypt(&states, &ciphertexts, &mut out).unwrap();
    assert_eq!(out[0], messages[0][1]);
    assert_eq!(out[1], messages[1][0]);
}

fn one_of_n_all_choices<const L: usize>(n: usize, tag: u8) {
    let mut sender = NaorPinkasSender::new(&mut rng(tag));
    let mut receiver = NaorPinkasReceiver::new(&sender.first_message()).unwrap();
    let mut r = rng(tag.wrapping_add(50));
    let messages: Vec<[u8; L]> = (0..n)
        .map(|_| {
            let mut m = [0u8; L];
            r.fill(&mut m);
            m
        })
        .collect();
    let expected_bits = (usize::BITS - (n - 1).leading_zeros()) as usize;
    for choice in 0..n {
        let (request, state) = receiver.respond(&mut r, choice, n).unwrap();
        assert_eq!(request.messages().len(), expected_bits);
        let mut ciphertexts = vec![[0u8; L]; n];
        let header = sender
            .encrypt(&mut r, &request, &messages, &mut ciphertexts)
            .unwrap();
        assert_eq!(header.ciphertexts().len(), expected_bits);
        let got = receiver.decrypt(&state, &header, &ciphertexts).unwrap();
        assert_eq!(got, messages[choice], "N = {n}, choice = {choice}");

        // Moving another message's ciphertext into slot `choice` does not reveal it: the
        // receiver's key only opens position `choice`.
        let other = (choice + 1) % n;
        let mut moved = ciphertexts.clone();
        moved[choice] = ciphertexts[other];
        let wrong = receiver.decrypt(&state, &header, &moved).unwrap();
        assert_ne!(wrong, messages[other], "N = {n}, choice = {choice}");
    }
}

#[test]
fn one_of_n_receiver_gets_exactly_the_chosen_message() {
    one_of_n_all_choices::<16>(2, 20);
    one_of_n_all_choices::<16>(3, 21);
    one_of_n_all_choices::<32>(5, 22);
    one_of_n_all_choices::<16>(16, 23);
    one_of_n_all_choices::<8>(MAX_N, 24);
}

#[test]
fn one_of_n_header_and_request_round_trip_through_their_parts() {
    let mut sender = NaorPinkasSender::new(&mut rng(25));
    let mut receiver = NaorPinkasReceiver::new(&sender.first_message()).unwrap();
    let mut r = rng(26);
    let messages: Vec<[u8; 16]> = (0..10u8).map(|i| [i; 16]).collect();
    let (request, state) = receiver.respond(&mut r, 9, 10).unwrap();
    let request = OneOfNRequest::from_messages(request.messages()).unwrap();
    let mut ciphertexts = vec![[0u8; 16]; 10];
    let header = sender
        .encrypt(&mut r, &request, &messages, &mut ciphertexts)
        .unwrap();
    let header = OneOfNHeader::from_ciphertexts(header.ciphertexts()).unwrap();
    assert_eq!(
        receiver.decrypt(&state, &header, &ciphertexts).unwrap(),
        [9u8; 16]
    );
}

#[test]
fn one_of_n_rejects_bad_parameters_and_counts() {
    let mut sender = NaorPinkasSender::new(&mut rng(27));
    let mut receiver = NaorPinkasReceiver::new(&sender.first_message()).unwrap();
    let mut r = rng(28);

    for (choice, n) in [(5usize, 5usize), (6, 5), (0, 1), (0, 0), (0, MAX_N + 1)] {
        assert!(
            matches!(
                receiver.respond(&mut r, choice, n),
                Err(Error::ProtocolMisuse(_))
            ),
            "choice {choice}, N {n}"
        );
    }

    // A request for N = 4 (2 bits) cannot be answered with 8 messages (3 bits).
    let (request, state) = receiver.respond(&mut r, 3, 4).unwrap();
    let eight = [[7u8; 16]; 8];
    let mut ct8 = [[0u8; 16]; 8];
    assert_eq!(
        sender.encrypt(&mut r, &request, &eight, &mut ct8),
        Err(Error::LengthMismatch {
            expected: 3,
            got: 2
        })
    );
    let four = [[1u8; 16], [2; 16], [3; 16], [4; 16]];
    let mut ct4 = [[0u8; 16]; 4];
    assert_eq!(
        sender.encrypt(&mut r, &request, &four, &mut ct4[..3]),
        Err(Error::LengthMismatch {
            expected: 4,
            got: 3
        })
    );
    assert!(matches!(
        sender.encrypt(&mut r, &request, &four[..1], &mut ct4[..1]),
        Err(Error::ProtocolMisuse(_))
    ));
    let header = sender.encrypt(&mut r, &request, &four, &mut ct4).unwrap();

    assert_eq!(
        receiver.decrypt(&state, &header, &ct4[..3]),
        Err(Error::LengthMismatch {
            expected: 4,
            got: 3
        })
    );
    let short_header = OneOfNHeader::from_ciphertexts(&header.ciphertexts()[..1]).unwrap();
    assert_eq!(
        receiver.decrypt(&state, &short_header, &ct4),
        Err(Error::LengthMismatch {
            expected: 2,
            got: 1
        })
    );
    assert!(matches!(
        receiver.decrypt(&Default::default(), &header, &ct4),
        Err(Error::ProtocolMisuse(_))
    ));
    assert_eq!(receiver.decrypt(&state, &header, &ct4).unwrap(), [4u8; 16]);

    // Wire parts with no or too many base-OT parts are malformed.
    assert!(matches!(
        OneOfNRequest::from_messages(&[]),
        Err(Error::MalformedMessage(_))
    ));
    assert!(matches!(
        OneOfNRequest::from_messages(&[ChoiceMessage::default(); 9]),
        Err(Error::MalformedMessage(_))
    ));
    assert!(matches!(
        OneOfNHeader::from_ciphertexts(&[[[0u8; 16]; 2]; 9]),
        Err(Error::MalformedMessage(_))
    ));

    // A request whose base-OT point is not a valid encoding is rejected.
    let (request, _) = receiver.respond(&mut r, 0, 4).unwrap();
    let mut parts = request.messages().to_vec();
    parts[1] = ChoiceMessage::from_bytes(&[0xff; 32]).unwrap();
    let tampered = OneOfNRequest::from_messages(&parts).unwrap();
    assert!(matches!(
        sender.encrypt(&mut r, &tampered, &four, &mut ct4),
        Err(Error::MalformedMessage(_))
    ));
}

fn run_cot<S, R>(
    sender: &mut S,
    receiver: &mut R,
    rng: &mut AesCtr,
    choices: &[bool],
) -> (Vec<Block>, Vec<Block>)
where
    S: CotSender,
    R: CotReceiver<Response = S::Response, Reply = S::Reply>,
{
    let n = choices.len();
    let mut responses = vec![R::Response::default(); n];
    let mut states = vec![R::State::default(); n];
    receiver
        .respond(rng, choices, &mut responses, &mut states)
        .unwrap();
    let mut x = vec![[0u8; 16]; n];
    let mut replies = vec![S::Reply::default(); n];
    sender.send(rng, &responses, &mut x, &mut replies).unwrap();
    let mut out = vec![[0u8; 16]; n];
    receiver.receive(&states, &replies, &mut out).unwrap();
    (x, out)
}

#[test]
fn correlated_ot_gives_x_xor_choice_times_delta() {
    let delta: Block = *b"global-delta-128";
    let mut sender = BaseCotSender::new(&mut rng(30), delta);
    assert_eq!(sender.delta(), delta);
    let mut receiver = BaseCotReceiver::new(&sender.first_message()).unwrap();
    let mut r = rng(31);
    for _batch in 0..2 {
        let choices = random_bits(&mut r, 128);
        let (x, out) = run_cot(&mut sender, &mut receiver, &mut r, &choices);
        let mut distinct = std::collections::HashSet::new();
        for i in 0..128 {
            let mut expected = x[i];
            if choices[i] {
                for (e, d) in expected.iter_mut().zip(delta) {
                    *e ^= d;
                }
            }
            assert_eq!(out[i], expected, "COT {i}");
            assert!(distinct.insert(x[i]), "x_{i} repeats");
        }
    }
}

#[test]
fn correlated_ot_rejects_mismatched_counts() {
    let mut sender = BaseCotSender::new(&mut rng(32), [1; 16]);
    let mut receiver = BaseCotReceiver::new(&sender.first_message()).unwrap();
    let mut r = rng(33);
    let mut responses = [ChoiceMessage::default(); 2];
    let mut states = [ReceiverKey::default(); 2];
    receiver
        .respond(&mut r, &[true, false], &mut responses, &mut states)
        .unwrap();
    let mut x = [[0u8; 16]; 2];
    let mut replies = [[[0u8; 16]; 2]; 2];
    assert_eq!(
        sender.send(&mut r, &responses, &mut x[..1], &mut replies),
        Err(Error::LengthMismatch {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        sender.send(&mut r, &responses[..1], &mut x[..1], &mut replies),
        Err(Error::LengthMismatch {
            expected: 1,
            got: 2
        })
    );
    let mut tampered = responses;
    tampered[0] = ChoiceMessage::from_bytes(&[0xff; 32]).unwrap();
    assert!(matches!(
        sender.send(&mut r, &tampered, &mut x, &mut replies),
        Err(Error::MalformedMessage(_))
    ));
    assert_eq!(x, [[0u8; 16]; 2]);
    assert_eq!(replies, [[[0u8; 16]; 2]; 2]);

    sender
        .send(&mut r, &responses, &mut x, &mut replies)
        .unwrap();
    let mut out = [[0u8; 16]; 2];
    assert_eq!(
        receiver.receive(&states, &replies[..1], &mut out),
        Err(Error::LengthMismatch {
            expected: 2,
            got: 1
        })
    );
    receiver.receive(&states, &replies, &mut out).unwrap();
    assert_eq!(out[1], x[1]);
    assert_eq!(out[0], core::array::from_fn(|i| x[0][i] ^ 1));
}

#[test]
fn debug_output_does_not_print_secrets() {
    let delta: Block = *b"DELTA-DELTA-DELT";
    let sender = BaseCotSender::new(&mut rng(34), delta);
    let text = format!("{sender:?}");
    assert!(
        !text.contains("DELTA") && !text.contains("68, 69"),
        "{text}"
    );
    assert_eq!(
        format!("{:?}", ReceiverKey::default()),
        "ReceiverKey(<secret>)"
    );
}
