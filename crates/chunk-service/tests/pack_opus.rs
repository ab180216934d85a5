//! Opus packs through the service: `upload_batch` with `ServiceConfig::pack.codec = Opus`, then
//! ranged downloads with exact timing. Encoding needs the `libopus` feature; without it the
//! upload must fail with an error that names the feature.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::Timestamp;
use chunk_format::pack::{Codec, PackConfig};
use chunk_service::{
    Chunk, ChunkService, EncryptionPolicy, InMemoryLevels, ProtectionLevel, ServiceConfig,
    ServiceError, UploadOptions,
};
use chunk_store::{ConversationId, Store, UserId};

const T0: u64 = 1_786_961_845_000;
const CHUNK_MS: u64 = 5_000;

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

/// The 60 s speech fixture as twelve 5 s chunks, back to back from `T0`.
fn speech_chunks() -> Vec<Chunk> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/speech/speech-60s.wav"
    );
    let file = std::fs::read(path).expect("speech-60s.wav readable");
    let info = chunk_format::wav::parse_wav_pcm16(&file).expect("a PCM16 WAV");
    assert_eq!((info.sample_rate, info.channels), (16_000, 1));
    file[info.data_range()]
        .chunks(16_000 * 2 * 5)
        .enumerate()
        .map(|(i, pcm)| Chunk::new(ts(T0 + i as u64 * CHUNK_MS), pcm.to_vec()))
        .collect()
}

fn service() -> ChunkService {
    let secret = MasterSecret::new(b"omi_".repeat(16)).unwrap();
    ChunkService::new(
        Store::from_uri("memory://").unwrap(),
        Some(Keyring::single(KeyId::new(1), secret)),
        Arc::new(InMemoryLevels::new(ProtectionLevel::Standard)),
        ServiceConfig {
            pack: PackConfig::new(Codec::Opus, 16_000, 1),
            encryption: EncryptionPolicy::Required,
            ..ServiceConfig::default()
        },
    )
    .unwrap()
}

#[cfg(feature = "libopus")]
mod with_libopus {
    use super::*;
    use chunk_service::codec::opus::{decode_omi_opus, encode_omi_opus};
    use chunk_service::{DownloadOptions, DownloadRequest};

    /// What Omi's Opus makes of each chunk (deterministic with libopus), concatenated.
    fn expected(chunks: &[Chunk]) -> Vec<u8> {
        chunks
            .iter()
            .flat_map(|c| decode_omi_opus(&encode_omi_opus(&c.pcm).unwrap()).unwrap())
            .collect()
    }

    fn samples(pcm: &[u8]) -> Vec<f64> {
        pcm.chunks_exact(2)
            .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
            .collect()
    }

    /// Signal-to-noise ratio of `decoded` against `reference`, at the best delay up to 20 ms
    /// (Omi's Opus does not compensate the codec's delay).
    fn snr_db(reference: &[u8], decoded: &[u8]) -> f64 {
        let (a, b) = (samples(reference), samples(decoded));
        let signal: f64 = a.iter().map(|x| x * x).sum();
        (0..=320)
            .map(|lag| {
                let noise: f64 = a.iter().zip(&b[lag..]).map(|(x, y)| (x - y).powi(2)).sum();
                10.0 * (signal / noise.max(1.0)).log10()
            })
            .fold(f64::MIN, f64::max)
    }

    async fn download(
        service: &ChunkService,
        uid: &UserId,
        conv: &ConversationId,
        from: u64,
        to: u64,
    ) -> Vec<u8> {
        let request = DownloadRequest::Range {
            from: ts(from),
            to: ts(to),
        };
        service
            .download(uid, conv, &request, DownloadOptions::default())
            .await
            .unwrap()
            .collect_vec()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn opus_packs_keep_exact_timing_through_upload_and_download() {
        let chunks = speech_chunks();
        let raw: Vec<u8> = chunks.iter().flat_map(|c| c.pcm.clone()).collect();
        let want = expected(&chunks);
        let service = service();
        let conv = ConversationId::new("opus-conv").unwrap();
        for (uid, level) in [
            ("plain-user", ProtectionLevel::Standard),
            ("sealed-user", ProtectionLevel::Enhanced),
        ] {
            let uid = UserId::new(uid).unwrap();
            let report = service
                .upload_batch(&uid, &conv, chunks.clone(), UploadOptions::at_level(level))
                .await
                .unwrap();
            assert_eq!(report.objects_written, 1);
            let path = &report.paths[0];
            assert!(path.ends_with(".pack"), "{path}");
            let stored = service.store().read(path).await.unwrap().len();
            println!(
                "opus pack ({level:?}), 60 s of speech in 5 s chunks: {stored} bytes, {:.1} % of \
                 {} bytes of PCM",
                stored as f64 * 100.0 / raw.len() as f64,
                raw.len()
            );
            assert!(
                stored * 5 < raw.len(),
                "Opus should be far smaller than PCM"
            );

            // The whole conversation: exact length, exactly Omi's Opus of each chunk.
            let all = download(&service, &uid, &conv, T0, T0 + 60_000).await;
            assert_eq!(all.len(), raw.len());
            assert!(
                all == want,
                "the download differs from decode(encode(chunk))"
            );
            let snr = snr_db(&raw, &all);
            println!("SNR {snr:.1} dB");
            assert!(snr > 8.0, "SNR {snr:.1} dB");

            // A range cutting two chunks: 15 s exactly, at the right place.
            let part = download(&service, &uid, &conv, T0 + 7_500, T0 + 22_500).await;
            assert_eq!(part.len(), 15 * 32_000);
            assert!(part[..] == want[7_500 * 32..22_500 * 32]);

            // An identical retry is recognised; different audio under the same name is not.
            let again = service
                .upload_batch(&uid, &conv, chunks.clone(), UploadOptions::at_level(level))
                .await
                .unwrap();
            assert_eq!(again.objects_written, 0);
            let mut other = chunks.clone();
            other[3] = Chunk::new(other[3].timestamp, vec![0u8; other[3].pcm.len()]);
            assert!(matches!(
                service
                    .upload_batch(&uid, &conv, other, UploadOptions::at_level(level))
                    .await,
                Err(ServiceError::Conflict { .. })
            ));
        }
    }

    /// Each kept chunk's audio, downloaded alone.
    async fn chunk_audio(
        service: &ChunkService,
        uid: &UserId,
        conv: &ConversationId,
        chunks: &[usize],
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &i in chunks {
            let from = T0 + i as u64 * CHUNK_MS;
            out.push(download(service, uid, conv, from, from + CHUNK_MS).await);
        }
        out
    }

    /// Deleting a chunk rewrites its pack and compaction merges packs and Omi `.opus` objects,
    /// and neither encodes Opus again: every kept chunk downloads to the very samples it had
    /// (a second encode would change them: Opus is lossy).
    #[tokio::test]
    async fn deleting_from_and_compacting_opus_audio_never_encodes_it_again() {
        use chunk_service::{CompactionOptions, SingleFormat};

        let chunks = speech_chunks();
        let kept: Vec<usize> = (0..12).filter(|&i| i != 5).collect();
        for level in [ProtectionLevel::Standard, ProtectionLevel::Enhanced] {
            let uid = UserId::new(format!("user-{level:?}")).unwrap();
            let conv = ConversationId::new("rewrite").unwrap();
            let service = service();
            // Chunks 0-3 as Omi `.opus` objects; 4-7 and 8-11 as two Opus packs.
            let omi = ChunkService::new(
                service.store().clone(),
                Some(Keyring::single(
                    KeyId::new(1),
                    MasterSecret::new(b"omi_".repeat(16)).unwrap(),
                )),
                Arc::new(InMemoryLevels::new(ProtectionLevel::Standard)),
                ServiceConfig {
                    single_format: SingleFormat::Opus,
                    ..ServiceConfig::default()
                },
            )
            .unwrap();
            for chunk in &chunks[..4] {
                omi.upload_chunk(&uid, &conv, chunk.clone(), UploadOptions::at_level(level))
                    .await
                    .unwrap();
            }
            for batch in chunks[4..].chunks(4) {
                service
                    .upload_batch(&uid, &conv, batch.to_vec(), UploadOptions::at_level(level))
                    .await
                    .unwrap();
            }
            let before = chunk_audio(&service, &uid, &conv, &kept).await;
            assert_eq!(before.len(), 11);
            assert!(before.iter().all(|pcm| pcm.len() == 160_000));

            let report = service
                .delete(&uid, &conv, &[ts(T0 + 5 * CHUNK_MS)])
                .await
                .unwrap();
            assert_eq!(
                report.written.len(),
                1,
                "the pack was rewritten: {report:?}"
            );
            assert!(
                chunk_audio(&service, &uid, &conv, &kept).await == before,
                "{level:?}: a chunk's audio changed when its pack was rewritten"
            );

            let plan = service
                .plan_compaction(&uid, &conv, &CompactionOptions::default())
                .await
                .unwrap();
            let compacted = service.compact(&plan).await.unwrap();
            assert_eq!(compacted.written.len(), 1, "{compacted:?}");
            assert_eq!(compacted.deleted.len(), 6, "{compacted:?}");
            assert_eq!(compacted.chunks, 11);
            assert!(
                chunk_audio(&service, &uid, &conv, &kept).await == before,
                "{level:?}: a chunk's audio changed when it was compacted"
            );
            let listing = service.list(&uid, &conv).await.unwrap();
            assert_eq!(listing.chunks.len(), 1);
        }
    }
}

#[cfg(not(feature = "libopus"))]
#[tokio::test]
async fn opus_packs_need_libopus_to_be_written() {
    let service = service();
    let uid = UserId::new("plain-user").unwrap();
    let conv = ConversationId::new("opus-conv").unwrap();
    let chunks = speech_chunks();
    match service
        .upload_batch(
            &uid,
            &conv,
            chunks,
            UploadOptions::at_level(ProtectionLevel::Standard),
        )
        .await
    {
        Err(ServiceError::InvalidInput(message)) => {
            assert!(message.contains("Opus packs"), "{message}");
            assert!(message.contains("`libopus` feature"), "{message}");
        }
        other => panic!("expected InvalidInput naming the libopus feature, got {other:?}"),
    }
    let listing = service.list(&uid, &conv).await.unwrap();
    assert!(listing.chunks.is_empty(), "nothing may be stored");
}
