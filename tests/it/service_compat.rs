//! Replays Omi's compatibility vectors (scenarios A–E, made by running Omi's own storage code)
//! through `chunk-service` on the fs backend: listings, download-and-merge results, deletes and
//! writers. Where a case records an Omi bug, the corrected result is asserted instead and the
//! case is named in `chunkvault_tests::omi::corrections` (and in docs/COMPATIBILITY.md). Cases that need an Opus decoder
//! are counted as pending until the Opus codec is built in.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::sync::Arc;

use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::Timestamp;
use chunk_service::codec::opus::OpusBackend;
use chunk_service::{
    BatchLayout, ChunkService, DownloadOptions, DownloadRequest, InMemoryLevels, ProtectionLevel,
    ServiceConfig, ServiceError, SingleFormat, UploadOptions,
};
use chunk_store::{ConversationId, Store, UserId};
use chunkvault_tests::omi::corrections::{Correction, correction};
use chunkvault_tests::omi::{
    Call, DeleteFn, DownloadResult, Frame, Level, ObjectFormat, SCENARIOS, Scenario,
};
use chunkvault_tests::sha256_hex;

const SECRET: &str = "omi_000000000000000000000000000000000000000000000000000000000000";

/// The corrected result of E `iii_subset_*` (850 `.opus`, interior 875 of the range batch
/// 870-885, 920 `.batch.enc`), built from the objects themselves: Opus decoded (checked against
/// Omi's recorded decode), the batch's raw PCM, the sealed frame opened.
fn subset_with_batch(scenario: &Scenario, fill_gaps: bool) -> DownloadResult {
    let object = |n: &str| {
        scenario
            .object_bytes(&format!("chunks/oracle-uid/conv-e/{n}"))
            .unwrap()
    };
    let opus_entry = scenario
        .objects
        .iter()
        .find(|o| o.name.ends_with("1786961850.727.opus"))
        .unwrap();
    let opus = chunk_service::codec::opus::decode_omi_opus(&object("1786961850.727.opus")).unwrap();
    assert_eq!(
        Some(sha256_hex(&opus)),
        opus_entry.opus_decoded.as_ref().map(|d| d.sha256.clone()),
        "our Opus decode equals libopus 1.3.1's"
    );
    let batch = object("1786961870.727-1786961885.727.batch.bin");
    let key = chunk_crypto::UserKey::derive(
        &MasterSecret::new(SECRET.as_bytes().to_vec()).unwrap(),
        "oracle-uid",
    );
    let sealed: Vec<u8> = chunk_crypto::omi::open_object(&key, &object("1786961920.727.batch.enc"))
        .flat_map(|frame| frame.unwrap())
        .collect();
    let silence = |seconds: usize| vec![0u8; seconds * 32_000];
    let mut pcm = opus;
    if fill_gaps {
        pcm.extend(silence(15));
    }
    pcm.extend(batch);
    if fill_gaps {
        pcm.extend(silence(30));
    }
    pcm.extend(sealed);
    DownloadResult::Audio {
        len: pcm.len() as u64,
        sha256: sha256_hex(&pcm),
        samples_equivalent_seconds: pcm.len() as f64 / 32_000.0,
        file: None,
        file_note: None,
    }
}

fn keyring() -> Keyring {
    let secret = MasterSecret::new(SECRET.as_bytes().to_vec()).expect("secret");
    Keyring::single(KeyId::new(1), secret)
}

fn service_on(dir: &std::path::Path, levels: Arc<InMemoryLevels>) -> ChunkService {
    let store = Store::from_uri(&format!("fs://{}", dir.display())).expect("fs store");
    let config = ServiceConfig {
        batch_layout: BatchLayout::Omi,
        ..ServiceConfig::default()
    };
    ChunkService::new(store, Some(keyring()), levels, config).expect("service")
}

fn uid() -> UserId {
    UserId::new("oracle-uid").unwrap()
}

fn level(level: Level) -> ProtectionLevel {
    match level {
        Level::Standard => ProtectionLevel::Standard,
        Level::Enhanced => ProtectionLevel::Enhanced,
    }
}

#[tokio::test]
async fn listings_equal_omi() {
    for name in SCENARIOS {
        let scenario = Scenario::load(name).unwrap();
        let service = service_on(
            &scenario.bucket_dir(),
            Arc::new(InMemoryLevels::new(ProtectionLevel::Standard)),
        );
        for (conversation, expected) in &scenario.list {
            let conv = ConversationId::new(conversation.clone()).unwrap();
            let listing = service.list(&uid(), &conv).await.unwrap();
            let got: Vec<_> = listing
                .chunks
                .iter()
                .map(|e| (e.start.as_f64(), e.path.clone(), e.size, e.is_batch))
                .collect();
            let want: Vec<_> = expected
                .iter()
                .map(|e| (e.timestamp, e.path.clone(), e.size, e.is_batch))
                .collect();
            assert_eq!(got, want, "scenario {name} conversation {conversation}");
        }
    }
}

#[tokio::test]
async fn downloads_equal_omi_or_the_documented_fix() {
    let mut checked = 0;
    let mut opus_cases = 0;
    for name in SCENARIOS {
        let scenario = Scenario::load(name).unwrap();
        let service = service_on(
            &scenario.bucket_dir(),
            Arc::new(InMemoryLevels::new(ProtectionLevel::Standard)),
        );
        for case in &scenario.downloads {
            let model;
            let expected = match correction(name, &case.case) {
                Some(Correction::SameAs(other)) => {
                    let other = scenario
                        .downloads
                        .iter()
                        .find(|c| c.case == *other)
                        .expect("referenced case");
                    &other.result
                }
                Some(Correction::SubsetWithBatch) => {
                    model = subset_with_batch(&scenario, case.fill_gaps);
                    &model
                }
                Some(Correction::AlsoDeletes(_)) => unreachable!("delete fix on a download case"),
                None => &case.result,
            };
            if case.involves_opus_decode {
                opus_cases += 1;
            }
            let conv = ConversationId::new(case.conversation_id.clone()).unwrap();
            let request =
                DownloadRequest::from_f64_timestamps(case.timestamps.iter().copied()).unwrap();
            // Omi skips objects it cannot open; chunkvault does so when asked (skip_bad).
            let options = DownloadOptions {
                fill_gaps: case.fill_gaps,
                sample_rate: case.sample_rate,
                skip_bad: true,
                ..DownloadOptions::default()
            };
            let result = match service.download(&uid(), &conv, &request, options).await {
                Ok(stream) => stream.collect_vec().await,
                Err(error) => Err(error),
            };
            match (expected, result) {
                (DownloadResult::Audio { len, sha256, .. }, Ok(pcm)) => {
                    assert_eq!(pcm.len() as u64, *len, "{name}/{}", case.case);
                    assert_eq!(&sha256_hex(&pcm), sha256, "{name}/{}", case.case);
                }
                (DownloadResult::Failed { .. }, Err(ServiceError::NoAudio { .. })) => {}
                (expected, got) => panic!(
                    "{name}/{}: expected {expected:?}, got {:?}",
                    case.case,
                    got.map(|pcm| pcm.len())
                ),
            }
            checked += 1;
        }
    }
    eprintln!("download cases checked: {checked}, of which {opus_cases} decode Opus");
    assert_eq!(checked, 46, "every download case of A-E runs");
}

#[tokio::test]
async fn deletes_leave_what_omi_leaves_or_the_documented_fix() {
    for name in SCENARIOS {
        let scenario = Scenario::load(name).unwrap();
        for case in &scenario.deletes {
            let bucket = scenario.copy_bucket_to_tempdir().unwrap();
            let service = service_on(
                bucket.path(),
                Arc::new(InMemoryLevels::new(ProtectionLevel::Standard)),
            );
            let conv = ConversationId::new(case.conversation_id.clone()).unwrap();
            match case.function {
                DeleteFn::DeleteAudioChunks => {
                    let timestamps: Vec<Timestamp> = case
                        .timestamps
                        .as_ref()
                        .unwrap()
                        .iter()
                        .map(|&t| Timestamp::from_f64(t).unwrap())
                        .collect();
                    service.delete(&uid(), &conv, &timestamps).await.unwrap();
                }
                DeleteFn::DeleteConversationAudioFiles => {
                    service.delete_conversation(&uid(), &conv).await.unwrap();
                }
            }
            let mut expected: BTreeSet<String> = case.remaining.iter().cloned().collect();
            if let Some(Correction::AlsoDeletes(path)) = correction(name, &case.case) {
                assert!(
                    expected.remove(*path),
                    "{name}/{}: {path} not in remaining",
                    case.case
                );
            }
            let remaining: BTreeSet<String> = chunkvault_tests::omi::list_objects(bucket.path())
                .unwrap()
                .into_iter()
                .collect();
            assert_eq!(remaining, expected, "{name}/{}", case.case);
        }
    }
}

#[tokio::test]
async fn writers_reproduce_omi_objects() {
    let mut pending_opus = Vec::new();
    let mut compared = 0;
    for name in SCENARIOS {
        let scenario = Scenario::load(name).unwrap();
        let bucket = tempfile::tempdir().unwrap();
        let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Standard));
        let service = service_on(bucket.path(), levels.clone());
        // Omi's single uploads are Opus; re-encoding them byte for byte needs libopus itself.
        let opus_writer = OpusBackend::Libopus.can_encode().then(|| {
            let store = Store::from_uri(&format!("fs://{}", bucket.path().display())).unwrap();
            let config = ServiceConfig {
                batch_layout: BatchLayout::Omi,
                single_format: SingleFormat::Opus,
                ..ServiceConfig::default()
            };
            ChunkService::new(store, Some(keyring()), levels.clone(), config).unwrap()
        });
        let mut written = Vec::new();
        for call in &scenario.calls {
            match call {
                Call::HarnessPutObject(put) => {
                    let target = bucket.path().join(&put.name);
                    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                    std::fs::write(&target, scenario.object_bytes(&put.name).unwrap()).unwrap();
                }
                Call::UploadAudioChunk(call) if opus_writer.is_some() => {
                    let opus = opus_writer.as_ref().unwrap();
                    levels.set(&uid(), level(call.db_level));
                    let before = levels.lookups();
                    let conv = ConversationId::new(call.conversation_id.clone()).unwrap();
                    let chunk = chunk_service::Chunk::new(
                        Timestamp::from_f64(call.timestamp).unwrap(),
                        scenario.input_pcm(&call.chunk).unwrap(),
                    );
                    let report = opus
                        .upload_chunk(
                            &uid(),
                            &conv,
                            chunk,
                            UploadOptions::with_level(call.data_protection_level_arg.map(level)),
                        )
                        .await
                        .unwrap();
                    assert_eq!(
                        report.paths,
                        std::slice::from_ref(&call.returned),
                        "{name}: returned path"
                    );
                    assert_eq!((levels.lookups() - before) as u32, call.db_reads, "{name}");
                    written.extend(report.paths);
                }
                Call::UploadAudioChunk(call) => {
                    pending_opus.push(format!("{name}/{}", call.returned));
                    // The bucket still needs the object for later calls: copy Omi's.
                    let target = bucket.path().join(&call.returned);
                    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                    std::fs::write(&target, scenario.object_bytes(&call.returned).unwrap())
                        .unwrap();
                }
                Call::UploadAudioChunksBatch(call) => {
                    levels.set(&uid(), level(call.db_level));
                    let before = levels.lookups();
                    let chunks = call
                        .chunks_in_call_order
                        .iter()
                        .zip(&call.timestamps_in_call_order)
                        .map(|(id, &ts)| {
                            chunk_service::Chunk::new(
                                Timestamp::from_f64(ts).unwrap(),
                                scenario.input_pcm(id).unwrap(),
                            )
                        })
                        .collect();
                    let conv = ConversationId::new(call.conversation_id.clone()).unwrap();
                    let report = service
                        .upload_batch(
                            &uid(),
                            &conv,
                            chunks,
                            UploadOptions::with_level(call.data_protection_level_arg.map(level)),
                        )
                        .await
                        .unwrap();
                    assert_eq!(report.paths, call.returned, "{name}: returned paths");
                    assert_eq!(
                        (levels.lookups() - before) as u32,
                        call.db_reads,
                        "{name}: level lookups"
                    );
                    written.extend(report.paths);
                }
            }
        }
        let key = chunk_crypto::UserKey::derive(
            &MasterSecret::new(SECRET.as_bytes().to_vec()).unwrap(),
            "oracle-uid",
        );
        for path in written {
            let entry = scenario
                .objects
                .iter()
                .find(|o| o.name == path)
                .unwrap_or_else(|| panic!("{name}: {path} not written by Omi"));
            let ours = std::fs::read(bucket.path().join(&path)).unwrap();
            assert_eq!(ours.len() as u64, entry.size, "{name}: size of {path}");
            match &entry.format {
                ObjectFormat::RawPcm | ObjectFormat::Opus => {
                    assert_eq!(sha256_hex(&ours), entry.sha256, "{name}: bytes of {path}");
                }
                ObjectFormat::EncryptedFrames | ObjectFormat::EncryptedOpus => {
                    let frames = entry
                        .frames
                        .as_ref()
                        .expect("frames of an encrypted object");
                    let opened: Vec<Vec<u8>> = chunk_crypto::omi::open_object(&key, &ours)
                        .collect::<Result<_, _>>()
                        .unwrap();
                    assert_eq!(opened.len(), frames.len(), "{name}: frames of {path}");
                    let mut offset = 0u64;
                    for (plain, frame) in opened.iter().zip(frames) {
                        let Frame::Decrypted {
                            offset: want_offset,
                            length_field,
                            plaintext_sha256,
                            ..
                        } = frame
                        else {
                            panic!("{name}: Omi's frame of {path} did not decrypt");
                        };
                        assert_eq!(offset, *want_offset, "{name}: frame offset in {path}");
                        assert_eq!(plain.len() as u64 + 28, *length_field, "{name}: {path}");
                        assert_eq!(&sha256_hex(plain), plaintext_sha256, "{name}: {path}");
                        offset += 4 + length_field;
                    }
                }
                other => panic!("{name}: unexpected format {other:?} for {path}"),
            }
            compared += 1;
        }
    }
    eprintln!(
        "objects compared: {compared}; single uploads pending the Opus codec: {}",
        pending_opus.len()
    );
    let expected = if OpusBackend::Libopus.can_encode() {
        24
    } else {
        7
    };
    assert_eq!(compared, expected, "objects compared");
}
