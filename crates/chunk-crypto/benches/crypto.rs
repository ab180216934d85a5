//! Seal and open throughput of chunkvault's two sealed-frame paths next to raw `aes-gcm`.
//!
//! Buffers: one 5 s chunk (160 000 B of 16 kHz PCM16) and one 60 s batch (1 920 000 B).
//! For each size and direction, three lines in one criterion group:
//! - `raw_aes_gcm`: seal = `Aes256Gcm::encrypt_in_place` on the buffer itself; open =
//!   `decrypt_inout_detached` from the ciphertext into a preallocated buffer (no copy at all);
//! - `omi_frame`: `omi::seal_frame` into a reused output buffer / `omi::open_frame_body_into`;
//! - `pack_frame`: `PackSealer::seal_into` / `PackOpener::open_into`, with 64 bytes of AAD.
//!
//! After criterion, a short interleaved run (raw and chunkvault alternating, median of many
//! rounds) prints the ratio chunkvault / raw for every line; the bar is >= 0.85.
//!
//! Run: `cargo xtask bench crypto` (pass criterion flags after `--`, e.g.
//! `-- --measurement-time 2`).

#![allow(clippy::unwrap_used, reason = "benchmark setup on fixed, valid inputs")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use chunk_crypto::pack::{PackOpener, PackPlace, PackSealer};
use chunk_crypto::{KeyId, PackRootKey, UserKey, omi};
use criterion::{Criterion, Throughput};

const SIZES: [(&str, usize); 2] = [("5s", 160_000), ("60s", 1_920_000)];
const AAD: [u8; 64] = [0x5a; 64];

fn pcm(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// The place every benchmarked pack belongs to.
const PLACE: PackPlace<'static> = PackPlace::new("bench-uid", "bench-conversation");

fn root() -> PackRootKey {
    PackRootKey::from_bytes([0x42; 32])
}

fn key() -> UserKey {
    UserKey::from_bytes([0x11; 32])
}

fn raw_cipher() -> Aes256Gcm {
    Aes256Gcm::new(key().expose_bytes().into())
}

fn nonce() -> Nonce<aes_gcm::aead::consts::U12> {
    Nonce::from([3u8; 12])
}

/// Raw open: AES-256-GCM decryption straight from the ciphertext into a preallocated buffer.
fn raw_open_fn(plain: &[u8]) -> impl FnMut() + use<> {
    let cipher = raw_cipher();
    let mut sealed = plain.to_vec();
    cipher.encrypt_in_place(&nonce(), b"", &mut sealed).unwrap();
    let tag = Tag::try_from(&sealed[plain.len()..]).unwrap();
    sealed.truncate(plain.len());
    let mut out = vec![0u8; plain.len()];
    move || {
        let buf = InOutBuf::new(&sealed, &mut out).unwrap();
        cipher
            .decrypt_inout_detached(&nonce(), b"", buf, &tag)
            .unwrap();
        black_box(&out);
    }
}

/// One timed operation of each kind, for the ratio run.
struct Ops {
    raw_seal: Box<dyn FnMut()>,
    omi_seal: Box<dyn FnMut()>,
    pack_seal: Box<dyn FnMut()>,
    raw_open: Box<dyn FnMut()>,
    omi_open: Box<dyn FnMut()>,
    pack_open: Box<dyn FnMut()>,
}

fn ops(len: usize) -> Ops {
    let plain = pcm(len);

    let cipher = raw_cipher();
    let mut raw_buf = plain.clone();
    let raw_seal = move || {
        cipher
            .encrypt_in_place(&nonce(), b"", &mut raw_buf)
            .unwrap();
        raw_buf.truncate(len);
        black_box(&raw_buf);
    };

    let k = key();
    let p = plain.clone();
    let mut out = Vec::with_capacity(len + 64);
    let omi_seal = move || {
        out.clear();
        omi::seal_frame(&k, &p, &mut out).unwrap();
        black_box(&out);
    };

    let mut sealer = PackSealer::new(&root(), PLACE, KeyId::new(1)).unwrap();
    let p = plain.clone();
    let mut out = Vec::with_capacity(len + 64);
    let mut counter = 0u32;
    let pack_seal = move || {
        out.clear();
        sealer
            .seal_into(counter, &AAD, &p, false, &mut out)
            .unwrap();
        counter += 1;
        black_box(&out);
    };

    let mut raw_open = raw_open_fn(&plain);
    let raw_open = move || raw_open();

    let k = key();
    let mut frame = Vec::new();
    omi::seal_frame(&k, &plain, &mut frame).unwrap();
    let mut out = Vec::with_capacity(len);
    let omi_open = move || {
        out.clear();
        omi::open_frame_body_into(&k, &frame[4..], 0, &mut out).unwrap();
        black_box(&out);
    };

    let mut sealer = PackSealer::new(&root(), PLACE, KeyId::new(1)).unwrap();
    let sealed = sealer.seal(0, &AAD, &plain, true).unwrap();
    let opener = PackOpener::new(&root(), PLACE, &sealer.params());
    let mut out = Vec::with_capacity(len);
    let pack_open = move || {
        out.clear();
        opener.open_into(0, &AAD, &sealed, true, &mut out).unwrap();
        black_box(&out);
    };

    Ops {
        raw_seal: Box::new(raw_seal),
        omi_seal: Box::new(omi_seal),
        pack_seal: Box::new(pack_seal),
        raw_open: Box::new(raw_open),
        omi_open: Box::new(omi_open),
        pack_open: Box::new(pack_open),
    }
}

fn criterion_benches(c: &mut Criterion) {
    for (name, len) in SIZES {
        let plain = pcm(len);

        let mut group = c.benchmark_group(format!("seal/{name}"));
        group.throughput(Throughput::BytesDecimal(len as u64));
        let cipher = raw_cipher();
        let mut buf = plain.clone();
        group.bench_function("raw_aes_gcm", |b| {
            b.iter(|| {
                cipher.encrypt_in_place(&nonce(), b"", &mut buf).unwrap();
                buf.truncate(len);
            });
        });
        let k = key();
        let mut out = Vec::with_capacity(len + 64);
        group.bench_function("omi_frame", |b| {
            b.iter(|| {
                out.clear();
                omi::seal_frame(&k, black_box(&plain), &mut out).unwrap();
            });
        });
        let mut sealer = PackSealer::new(&root(), PLACE, KeyId::new(1)).unwrap();
        let mut counter = 0u32;
        group.bench_function("pack_frame", |b| {
            b.iter(|| {
                out.clear();
                sealer
                    .seal_into(counter, &AAD, black_box(&plain), false, &mut out)
                    .unwrap();
                counter += 1;
            });
        });
        group.finish();

        let mut group = c.benchmark_group(format!("open/{name}"));
        group.throughput(Throughput::BytesDecimal(len as u64));
        let mut raw_open = raw_open_fn(&plain);
        group.bench_function("raw_aes_gcm", |b| b.iter(&mut raw_open));
        let mut frame = Vec::new();
        omi::seal_frame(&k, &plain, &mut frame).unwrap();
        group.bench_function("omi_frame", |b| {
            b.iter(|| {
                out.clear();
                omi::open_frame_body_into(&k, black_box(&frame[4..]), 0, &mut out).unwrap();
            });
        });
        let mut pack_sealer = PackSealer::new(&root(), PLACE, KeyId::new(1)).unwrap();
        let pack_frame = pack_sealer.seal(0, &AAD, &plain, true).unwrap();
        let opener = PackOpener::new(&root(), PLACE, &pack_sealer.params());
        group.bench_function("pack_frame", |b| {
            b.iter(|| {
                out.clear();
                opener
                    .open_into(0, &AAD, black_box(&pack_frame), true, &mut out)
                    .unwrap();
            });
        });
        group.finish();
    }
}

/// Median time of each closure over `rounds`; every round runs each closure once, starting
/// with a different one each round, so drift and ordering effects hit all of them alike.
fn interleaved_medians(fs: &mut [&mut dyn FnMut()], rounds: usize) -> Vec<Duration> {
    let n = fs.len();
    let mut times = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let start = Instant::now();
            fs[i]();
            times[i].push(start.elapsed());
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect()
}

fn ratio_summary() {
    println!();
    println!("chunkvault / raw aes-gcm (interleaved medians, same buffers; bar: >= 0.85)");
    println!(
        "{:<6} {:<5} {:>12} {:>12} {:>12} {:>7} {:>7}",
        "size", "op", "raw MB/s", "omi MB/s", "pack MB/s", "omi", "pack"
    );
    for (name, len) in SIZES {
        let rounds = if len > 1_000_000 { 300 } else { 3000 };
        let mut o = ops(len);
        let seal = interleaved_medians(
            &mut [&mut o.raw_seal, &mut o.omi_seal, &mut o.pack_seal],
            rounds,
        );
        let open = interleaved_medians(
            &mut [&mut o.raw_open, &mut o.omi_open, &mut o.pack_open],
            rounds,
        );
        let mbps = |d: Duration| len as f64 / d.as_secs_f64() / 1e6;
        for (op, raw, omi_t, pack_t) in [
            ("seal", seal[0], seal[1], seal[2]),
            ("open", open[0], open[1], open[2]),
        ] {
            println!(
                "{:<6} {:<5} {:>12.0} {:>12.0} {:>12.0} {:>7.3} {:>7.3}",
                name,
                op,
                mbps(raw),
                mbps(omi_t),
                mbps(pack_t),
                raw.as_secs_f64() / omi_t.as_secs_f64(),
                raw.as_secs_f64() / pack_t.as_secs_f64(),
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    // Only in a real benchmark run, not when `cargo test --benches` smoke-runs this binary.
    if std::env::args().any(|a| a == "--bench") {
        ratio_summary();
    }
}
