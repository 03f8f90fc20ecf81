//! The targets, one module per area, and the list the harness runs.

pub mod device;
pub mod files;
pub mod fss;
pub mod net;
pub mod session;
pub mod wire;

use crate::Target;

/// Every target.
pub fn all() -> Vec<Target> {
    vec![
        Target {
            name: "fss_key",
            covers: "DPF, DCF and one-bit DPF keys and corrections (fss::encoding), bare and \
                     through postcard; decoded keys re-encode identically and evaluate",
            run: fss::fss_key,
            seeds: fss::fss_key_seeds,
        },
        Target {
            name: "fss_key_batch",
            covers: "key batches from the dealer (DcfKeys / BitDpfKeys via KeyBatch::decode, \
                     batch_chunks), checked against single-key decoding",
            run: fss::fss_key_batch,
            seeds: fss::fss_key_batch_seeds,
        },
        Target {
            name: "open_unpack",
            covers: "the other server's packed openings (gate::unpack), round trip with pack",
            run: fss::open_unpack,
            seeds: fss::open_unpack_seeds,
        },
        Target {
            name: "session_messages",
            covers: "Hello, ClientHello, PeerHello, PeerReady, DealerRequest, DealerChunk, ServerReply, \
                     InputShare (messages::decode, InputShare::into_words, check_rows)",
            run: session::session_messages,
            seeds: session::session_messages_seeds,
        },
        Target {
            name: "frame_decoder",
            covers: "the host's frame decoder and reassembler (net::frame), round trips",
            run: net::frame_decoder,
            seeds: net::frame_decoder_seeds,
        },
        Target {
            name: "host_link",
            covers: "the host's SecureLink: Noise handshake parsing as responder and initiator, \
                     then framed, authenticated transport messages (net::link)",
            run: net::host_link,
            seeds: net::host_link_seeds,
        },
        Target {
            name: "device_link",
            covers: "the device's link: handshake answer (noise.rs) and streamed transport \
                     messages (link.rs recv_into)",
            run: device::device_link,
            seeds: device::device_link_seeds,
        },
        Target {
            name: "device_session",
            covers: "a device query's reply decoding and combination (session.rs), checked \
                     against the host's decoder",
            run: device::device_session,
            seeds: device::device_session_seeds,
        },
        Target {
            name: "device_embedding",
            covers: "the device's flash embedding table (EmbeddingTable::parse) and its rows",
            run: device::device_embedding,
            seeds: device::device_embedding_seeds,
        },
        Target {
            name: "model_file",
            covers: "model files (ModelFile::load, into_dealer_weights, into_server_weights), save round \
                     trip",
            run: files::model_file,
            seeds: files::model_file_seeds,
        },
        Target {
            name: "client_bundle",
            covers: "client bundles (ClientBundle::load, device_table, embed_text); the device \
                     must accept the tables the host writes",
            run: files::client_bundle,
            seeds: files::client_bundle_seeds,
        },
    ]
}
