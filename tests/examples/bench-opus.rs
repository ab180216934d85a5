//! Opus storage and speed on the committed speech recording (tests/fixtures/speech), for
//! docs/BENCHMARKS.md: 60 s of 16 kHz mono speech in 5 s chunks, each encoded as Omi does
//! (`encode_omi_opus`), against raw PCM and per-chunk zstd (level 3, the pack default).
//! Encoding needs libopus:
//!
//! ```text
//! cargo run --release -p chunkvault-tests --features libopus --example bench-opus
//! ```

use std::time::{Duration, Instant};

use chunk_service::codec::opus::{
    OpusBackend, decode_omi_opus_with, encode_omi_opus, libopus_version,
};

/// Bytes of one 5 s chunk of 16 kHz PCM16 mono.
const CHUNK_BYTES: usize = 160_000;
/// Timed repetitions; the fastest is reported.
const ROUNDS: usize = 5;

/// Runs `work` [`ROUNDS`] times and returns the fastest duration.
fn fastest(mut work: impl FnMut()) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !OpusBackend::Libopus.can_encode() {
        eprintln!(
            "bench-opus: encoding needs libopus; run\n  cargo run --release -p chunkvault-tests \
             --features libopus --example bench-opus"
        );
        return Ok(());
    }
    let pcm = chunkvault_tests::speech::pcm_60s()?;
    let seconds = pcm.len() as f64 / 32_000.0;
    let chunks: Vec<&[u8]> = pcm.chunks(CHUNK_BYTES).collect();

    let mut containers = Vec::new();
    let encode = fastest(|| {
        containers = chunks
            .iter()
            .map(|chunk| encode_omi_opus(chunk))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_default();
    });
    if containers.len() != chunks.len() {
        return Err("encoding failed".into());
    }
    let opus_bytes: usize = containers.iter().map(Vec::len).sum();
    let zstd_bytes = chunks
        .iter()
        .map(|chunk| zstd::bulk::compress(chunk, 3).map(|z| z.len()))
        .sum::<Result<usize, _>>()?;

    println!(
        "speech-60s.wav: {seconds:.1} s, {} chunks of 5 s",
        chunks.len()
    );
    println!("{}", libopus_version().unwrap_or_default());
    println!("| storage | bytes | of raw PCM | smaller by |");
    println!("|---|---:|---:|---:|");
    for (name, bytes) in [
        ("raw PCM16", pcm.len()),
        ("zstd level 3 per chunk", zstd_bytes),
        ("Omi Opus container per chunk", opus_bytes),
    ] {
        println!(
            "| {name} | {bytes} | {:.1} % | {:.1}x |",
            100.0 * bytes as f64 / pcm.len() as f64,
            pcm.len() as f64 / bytes as f64
        );
    }
    println!(
        "Opus bitrate: {:.1} kbit/s",
        opus_bytes as f64 * 8.0 / seconds / 1000.0
    );
    println!("| operation | time for 60 s | x realtime (1 core) |");
    println!("|---|---:|---:|");
    println!(
        "| encode (libopus) | {:.1} ms | {:.0} |",
        encode.as_secs_f64() * 1e3,
        seconds / encode.as_secs_f64()
    );
    for backend in [OpusBackend::Libopus, OpusBackend::PureRust] {
        let mut decoded = 0;
        let time = fastest(|| {
            decoded = containers
                .iter()
                .filter_map(|c| decode_omi_opus_with(backend, c).ok())
                .map(|p| p.len())
                .sum();
        });
        if decoded != pcm.len() {
            return Err(format!("{backend} decoded {decoded} of {} bytes", pcm.len()).into());
        }
        println!(
            "| decode ({backend}) | {:.1} ms | {:.0} |",
            time.as_secs_f64() * 1e3,
            seconds / time.as_secs_f64()
        );
    }
    Ok(())
}
