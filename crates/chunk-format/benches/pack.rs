//! Pack encode / decode throughput and size on speech, per zstd level.
//!
//! Input: `tests/fixtures/speech/speech-60s.wav` (60 s of 16 kHz mono espeak-ng speech with
//! pauses and a faint noise floor) cut into twelve 5 s chunks (160 000 B each), as a recorder
//! would push them. For PCM16LE and zstd levels 1, 3, 6, 9 and 19 it first prints the size of the
//! whole pack (header, frames, index, trailer) over the raw PCM, then criterion measures:
//! - `pack/encode/<codec>`: `PackEncoder` over the 12 chunks, including `finish`;
//! - `pack/decode/<codec>`: `PackIndex::from_object` and `decode_frame` of every chunk.
//!
//! Throughput is in bytes of raw PCM per second. Run: `cargo xtask bench pack`
//! (criterion flags after `--`, e.g. `-- --measurement-time 2`).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use chunk_format::Timestamp;
use chunk_format::pack::{Codec, PackConfig, PackEncoder, PackIndex};
use chunk_format::wav::parse_wav_pcm16;
use criterion::{Criterion, Throughput};

const CHUNK_BYTES: usize = 160_000; // 5 s of 16 kHz mono PCM16
const LEVELS: [i32; 5] = [1, 3, 6, 9, 19];

fn speech_chunks() -> Vec<Vec<u8>> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/speech/speech-60s.wav");
    let file = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let info = parse_wav_pcm16(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        (info.sample_rate, info.channels),
        (16_000, 1),
        "fixture format"
    );
    file[info.data_range()]
        .chunks(CHUNK_BYTES)
        .map(|c| c[..c.len() - c.len() % 2].to_vec())
        .collect()
}

fn encode(config: PackConfig, chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut enc = PackEncoder::new(config, None).expect("config");
    let mut object = Vec::new();
    for (i, pcm) in chunks.iter().enumerate() {
        let start = Timestamp::from_millis(1_786_961_845_727 + 5_000 * i as u64).expect("ts");
        object.extend(enc.push_chunk(start, pcm).expect("push"));
    }
    object.extend(enc.finish().expect("finish"));
    object
}

fn decode(object: &[u8]) -> usize {
    let index = PackIndex::from_object(object, None).expect("index");
    (0..index.len())
        .map(|i| {
            let frame = index.frame_bytes(i, object).expect("frame");
            index.decode_frame(i, frame, None).expect("decode").len()
        })
        .sum()
}

fn configs() -> Vec<(String, PackConfig)> {
    let mut out = vec![(
        "pcm16le".to_owned(),
        PackConfig::new(Codec::Pcm16Le, 16_000, 1),
    )];
    for level in LEVELS {
        out.push((
            format!("zstd-{level}"),
            PackConfig::new(Codec::ZstdPcm16Le, 16_000, 1).with_zstd_level(level),
        ));
    }
    out
}

fn bench(c: &mut Criterion) {
    let chunks = speech_chunks();
    let raw: usize = chunks.iter().map(Vec::len).sum();
    eprintln!(
        "pack size on {} chunks, {raw} bytes of raw PCM:",
        chunks.len()
    );
    for (name, config) in configs() {
        let object = encode(config, &chunks);
        assert_eq!(decode(&object), raw);
        eprintln!(
            "  {name:<8} {:>9} bytes  ratio {:.4}",
            object.len(),
            object.len() as f64 / raw as f64
        );
    }

    let mut group = c.benchmark_group("pack");
    group
        .throughput(Throughput::Bytes(raw as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, config) in configs() {
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| encode(black_box(config), black_box(&chunks)))
        });
        let object = encode(config, &chunks);
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode(black_box(&object)))
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
