//! Omi Opus decoding (chunk-service's `codec::opus`): any bytes either decode or fail with a
//! typed error — never a panic — and a decode never yields more than 640 bytes (one 320-sample
//! frame) per packet, nor more than the container's claim (`decoded_pcm_len`). Fuzzes the pure-Rust decoder that default builds use, and libopus too when
//! this crate is built with its `libopus` feature (`cargo fuzz run --features libopus ...`).
#![no_main]

use chunk_format::omi_opus::{OMI_OPUS_FRAME_BYTES, OpusContainer};
use chunk_service::codec::opus::{OpusBackend, decode_omi_opus_with};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for backend in [OpusBackend::PureRust, OpusBackend::Libopus] {
        if !backend.is_available() {
            continue;
        }
        if let Ok(pcm) = decode_omi_opus_with(backend, data) {
            let container = OpusContainer::parse(data).expect("decoded input parses");
            assert!(
                pcm.len() <= container.packet_count() as usize * OMI_OPUS_FRAME_BYTES,
                "{backend}: {} bytes from {} packets",
                pcm.len(),
                container.packet_count()
            );
            // What the container claims (packets × 20 ms, cut to its declared PCM length) is
            // what readers check against their budget before decoding: never exceeded.
            assert!(
                pcm.len() as u64 <= container.decoded_pcm_len(),
                "{backend}: {} bytes, {} claimed",
                pcm.len(),
                container.decoded_pcm_len()
            );
        }
    }
});
