//! Model-based property test of `chunk-service`: any sequence of single and batch uploads
//! (random timestamps, sizes, levels, identical retries) followed by list, download-all and
//! delete of random timestamps gives the same results as a small in-memory model. Runs against
//! the memory and fs backends.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;

use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::pack::{Codec, PackConfig, pack_name_end};
use chunk_format::{ObjectName, Timestamp};
use chunk_service::{
    BatchLayout, Chunk, ChunkService, DownloadOptions, DownloadRequest, InMemoryLevels,
    ProtectionLevel, ServiceConfig, ServiceError, UploadOptions,
};
use chunk_store::{ConversationId, Store, UserId, layout};
use proptest::prelude::*;

/// Samples per second used by the test (small, so chunks stay tiny).
const RATE: u32 = 1_000;
const T0: u64 = 1_786_961_845_727;

#[derive(Debug, Clone)]
struct Upload {
    /// Gap in whole seconds after the previous upload's audio.
    gap_s: u64,
    /// Chunk lengths in samples; a batch's chunks are 1 s apart (all but the last exactly 1 s).
    chunks: Vec<u32>,
    batch: bool,
    enhanced: bool,
    retry: bool,
}

fn upload() -> impl Strategy<Value = Upload> {
    (
        0u64..3,
        prop::collection::vec(1u32..=1_000, 1..4),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(gap_s, mut chunks, batch, enhanced, retry)| {
            if !batch {
                chunks.truncate(1);
            }
            // Inside a batch every chunk but the last fills its second, so Omi's concatenation
            // keeps the timing the model assumes.
            let last = chunks.len() - 1;
            for samples in &mut chunks[..last] {
                *samples = 1_000;
            }
            Upload {
                gap_s,
                chunks,
                batch,
                enhanced,
                retry,
            }
        })
}

/// What the model knows of one stored object.
#[derive(Debug, Clone)]
struct ModelObject {
    /// `None` once a pack was rewritten under a fresh name by a delete.
    path: Option<String>,
    pack: bool,
    start_ms: u64,
    /// Chunk starts (ms) and PCM.
    chunks: Vec<(u64, Vec<u8>)>,
}

impl ModelObject {
    fn covers(&self, ts: u64) -> bool {
        let last = self.chunks.last().map_or(self.start_ms, |c| c.0);
        self.start_ms <= ts && ts <= last
    }
}

fn pcm(seed: u64, samples: u32) -> Vec<u8> {
    (0..samples)
        .flat_map(|i| ((seed as u32).wrapping_mul(7919).wrapping_add(i) as i16).to_le_bytes())
        .collect()
}

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

async fn run_case(
    store: Store,
    layout: BatchLayout,
    uploads: Vec<Upload>,
    delete_picks: Vec<usize>,
) {
    let secret = MasterSecret::new(b"omi_".repeat(16)).unwrap();
    let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Standard));
    let service = ChunkService::new(
        store,
        Some(Keyring::single(KeyId::new(1), secret)),
        levels,
        ServiceConfig {
            batch_layout: layout,
            pack: PackConfig::new(Codec::ZstdPcm16Le, RATE, 1),
            ..ServiceConfig::default()
        },
    )
    .unwrap();
    let packs = layout == BatchLayout::Pack;
    let uid = UserId::new("model-user").unwrap();
    let conv = ConversationId::new("model-conv").unwrap();

    let mut model: Vec<ModelObject> = Vec::new();
    let mut cursor_ms = T0;
    for (n, upload) in uploads.iter().enumerate() {
        let start = cursor_ms + upload.gap_s * 1_000;
        let chunks: Vec<(u64, Vec<u8>)> = upload
            .chunks
            .iter()
            .enumerate()
            .map(|(i, &samples)| {
                (
                    start + i as u64 * 1_000,
                    pcm(n as u64 * 16 + i as u64, samples),
                )
            })
            .collect();
        let last = chunks.last().unwrap();
        cursor_ms = last.0 + u64::from(*upload.chunks.last().unwrap());
        let level = if upload.enhanced {
            ProtectionLevel::Enhanced
        } else {
            ProtectionLevel::Standard
        };
        let to_chunks = || {
            chunks
                .iter()
                .map(|(ms, pcm)| Chunk::new(ts(*ms), pcm.clone()))
                .collect::<Vec<_>>()
        };
        let attempts = if upload.retry { 2 } else { 1 };
        for attempt in 0..attempts {
            let report = if upload.batch {
                service
                    .upload_batch(&uid, &conv, to_chunks(), UploadOptions::at_level(level))
                    .await
            } else {
                service
                    .upload_chunk(
                        &uid,
                        &conv,
                        to_chunks().remove(0),
                        UploadOptions::at_level(level),
                    )
                    .await
            }
            .unwrap();
            assert_eq!(
                report.objects_written,
                usize::from(attempt == 0),
                "retry is a no-op"
            );
            assert_eq!(report.paths.len(), 1);
            if attempt == 0 {
                let last_samples = *upload.chunks.last().unwrap();
                let name = if upload.batch && packs {
                    let end = pack_name_end(ts(last.0), last_samples, RATE).unwrap();
                    ObjectName::pack(ts(start), end)
                } else if upload.batch {
                    ObjectName::batch(ts(start), ts(last.0), chunks.len(), upload.enhanced)
                } else {
                    ObjectName::single(
                        ts(start),
                        if upload.enhanced {
                            chunk_format::ObjectKind::Enc
                        } else {
                            chunk_format::ObjectKind::Bin
                        },
                    )
                }
                .unwrap();
                assert_eq!(report.paths[0], layout::chunk_path(&uid, &conv, &name));
                model.push(ModelObject {
                    path: Some(report.paths[0].clone()),
                    pack: upload.batch && packs,
                    start_ms: start,
                    chunks: chunks.clone(),
                });
            }
        }
        // Different audio under an existing name is refused, never overwritten.
        let mut altered = to_chunks();
        // Same length (so a pack gets the same name), different samples.
        let mut changed = altered[0].pcm.to_vec();
        changed[0] ^= 0x55;
        altered[0].pcm = changed.into();
        let conflict = if upload.batch {
            service
                .upload_batch(&uid, &conv, altered, UploadOptions::at_level(level))
                .await
        } else {
            service
                .upload_chunk(
                    &uid,
                    &conv,
                    altered.remove(0),
                    UploadOptions::at_level(level),
                )
                .await
        };
        assert!(
            matches!(conflict, Err(ServiceError::Conflict { .. })),
            "{conflict:?}"
        );
    }

    check_against_model(&service, &uid, &conv, &model).await;

    // Delete random chunk timestamps (interior batch timestamps included).
    let all_ts: Vec<u64> = model
        .iter()
        .flat_map(|o| o.chunks.iter().map(|c| c.0))
        .collect();
    let picked: Vec<u64> = delete_picks
        .iter()
        .map(|&i| all_ts[i % all_ts.len()])
        .collect();
    let report = service
        .delete(
            &uid,
            &conv,
            &picked.iter().map(|&ms| ts(ms)).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let mut gone_paths = Vec::new();
    let mut rewritten = 0;
    let mut kept = Vec::new();
    for mut object in model {
        if !picked.iter().any(|&t| object.covers(t)) {
            kept.push(object);
            continue;
        }
        gone_paths.push(object.path.clone().unwrap());
        if object.pack {
            // A pack loses exactly the chunks holding a picked instant (1 kHz: samples = ms).
            object.chunks.retain(|(start, pcm)| {
                let end = start + (pcm.len() / 2) as u64;
                !picked.iter().any(|&t| *start <= t && t < end)
            });
            if !object.chunks.is_empty() {
                rewritten += 1;
                object.start_ms = object.chunks[0].0;
                object.path = None;
                kept.push(object);
            }
        }
    }
    gone_paths.sort();
    let mut deleted = report.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, gone_paths);
    assert_eq!(report.written.len(), rewritten);
    check_against_model(&service, &uid, &conv, &kept).await;
}

async fn check_against_model(
    service: &ChunkService,
    uid: &UserId,
    conv: &ConversationId,
    model: &[ModelObject],
) {
    let listing = service.list(uid, conv).await.unwrap();
    let listed: Vec<u64> = listing.chunks.iter().map(|e| e.start.as_millis()).collect();
    let mut expected: Vec<u64> = model.iter().map(|o| o.start_ms).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for object in model {
        if let Some(path) = &object.path {
            assert!(
                listing.chunks.iter().any(|e| &e.path == path),
                "{path} listed"
            );
        }
    }
    assert!(listing.foreign.is_empty());

    let request = DownloadRequest::Timestamps(
        model
            .iter()
            .flat_map(|o| o.chunks.iter().map(|c| ts(c.0)))
            .collect(),
    );
    let filled = service
        .download(
            uid,
            conv,
            &request,
            DownloadOptions {
                fill_gaps: true,
                sample_rate: RATE,
                ..DownloadOptions::default()
            },
        )
        .await;
    if model.is_empty() {
        assert!(matches!(filled, Err(ServiceError::NoAudio { .. })));
        return;
    }
    let got = filled.unwrap().collect_vec().await.unwrap();

    // The model timeline: every chunk at its start, silence in between.
    let mut timeline: BTreeMap<u64, &[u8]> = BTreeMap::new();
    for object in model {
        for (ms, pcm) in &object.chunks {
            timeline.insert(*ms, pcm);
        }
    }
    let origin = *timeline.keys().next().unwrap();
    let mut want = Vec::new();
    for (ms, pcm) in &timeline {
        let position = ((ms - origin) * u64::from(RATE) / 1000 * 2) as usize;
        assert!(want.len() <= position, "model chunks overlap");
        want.resize(position, 0);
        want.extend_from_slice(pcm);
    }
    assert_eq!(got.len(), want.len());
    assert!(got == want, "merged audio differs from the model");

    // A range over everything without gap filling is the audio back to back.
    let range = DownloadRequest::Range {
        from: ts(origin),
        to: ts(origin + 3_600_000),
    };
    let collapsed = service
        .download(
            uid,
            conv,
            &range,
            DownloadOptions {
                fill_gaps: false,
                sample_rate: RATE,
                ..DownloadOptions::default()
            },
        )
        .await
        .unwrap()
        .collect_vec()
        .await
        .unwrap();
    let back_to_back: Vec<u8> = timeline
        .values()
        .flat_map(|pcm| pcm.iter().copied())
        .collect();
    assert!(
        collapsed == back_to_back,
        "range download differs from the model"
    );
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(chunkvault_tests::expensive_proptest_cases(24, 200))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_service_matches_model_on_memory(
        uploads in prop::collection::vec(upload(), 1..6),
        picks in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_case(Store::from_uri("memory://").unwrap(), BatchLayout::Omi, uploads, picks));
    }

    #[test]
    fn prop_service_matches_model_with_packs_on_memory(
        uploads in prop::collection::vec(upload(), 1..6),
        picks in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_case(Store::from_uri("memory://").unwrap(), BatchLayout::Pack, uploads, picks));
    }

    #[test]
    fn prop_service_matches_model_on_fs(
        uploads in prop::collection::vec(upload(), 1..6),
        picks in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_uri(&format!("fs://{}", dir.path().display())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_case(store, BatchLayout::Pack, uploads, picks));
    }
}
