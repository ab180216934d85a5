//! Compaction keeps every download byte-identical: Omi-layout conversations (the vendored
//! vectors, made by Omi's own code) and random mixes of singles, batches and packs are
//! compacted into packs, and downloads of many ranges are compared before and after. Also key
//! rotation: packs re-sealed under a new active key stay readable after the old key is dropped.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::sync::Arc;

use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::{ObjectKind, Timestamp};
use chunk_service::{
    BatchLayout, Chunk, ChunkService, CompactionOptions, DownloadOptions, DownloadRequest,
    InMemoryLevels, KeyRotation, ProtectionLevel, ServiceConfig, ServiceError, UploadOptions,
};
use chunk_store::{ConversationId, Store, UserId};
use chunkvault_tests::omi::{SCENARIOS, Scenario};
use proptest::prelude::*;

const OMI_SECRET: &str = "omi_000000000000000000000000000000000000000000000000000000000000";

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

/// Ranges to compare: every 5 s window from the first object, windows at odd offsets, and the
/// whole conversation with and without gap filling (chosen before compacting).
async fn ranges(
    service: &ChunkService,
    uid: &UserId,
    conv: &ConversationId,
) -> Vec<(u64, u64, bool)> {
    let listing = service.list(uid, conv).await.unwrap();
    let first = listing.chunks.first().map_or(0, |e| e.start.as_millis());
    let last = listing
        .chunks
        .iter()
        .map(|e| e.end.as_millis())
        .max()
        .unwrap_or(0)
        + 120_000;
    let mut ranges = vec![(first, last, true), (first, last, false)];
    let mut t = first;
    while t < last {
        ranges.push((t, t + 5_000, true));
        ranges.push((t + 1_250, t + 3_750, false));
        t += 5_000;
    }
    ranges
}

/// Downloads every range. Omi's buckets hold objects Omi cannot open either (vector E has a
/// truncated `.enc`), which Omi skips: `skip_bad` does the same.
async fn snapshot_ranges_with(
    service: &ChunkService,
    uid: &UserId,
    conv: &ConversationId,
    ranges: &[(u64, u64, bool)],
    skip_bad: bool,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for &(from, to, fill_gaps) in ranges {
        let request = DownloadRequest::Range {
            from: ts(from),
            to: ts(to),
        };
        let options = DownloadOptions {
            fill_gaps,
            sample_rate: 16_000,
            skip_bad,
            ..DownloadOptions::default()
        };
        let pcm = match service.download(uid, conv, &request, options).await {
            Ok(stream) => match stream.collect_vec().await {
                Ok(pcm) => Some(pcm),
                Err(ServiceError::NoAudio { .. }) => None,
                Err(other) => panic!("{other}"),
            },
            Err(ServiceError::NoAudio { .. }) => None,
            Err(other) => panic!("{other}"),
        };
        out.push((format!("{from}..{to} fill={fill_gaps}"), pcm));
    }
    out
}

/// [`snapshot_ranges_with`] where every object must open.
async fn snapshot_ranges(
    service: &ChunkService,
    uid: &UserId,
    conv: &ConversationId,
    ranges: &[(u64, u64, bool)],
) -> Vec<(String, Option<Vec<u8>>)> {
    snapshot_ranges_with(service, uid, conv, ranges, false).await
}

fn assert_same(before: &[(String, Option<Vec<u8>>)], after: &[(String, Option<Vec<u8>>)]) {
    assert_eq!(before.len(), after.len());
    for ((range, a), (_, b)) in before.iter().zip(after) {
        assert_eq!(
            a.as_ref().map(Vec::len),
            b.as_ref().map(Vec::len),
            "length of {range}"
        );
        let first_difference = a
            .iter()
            .flatten()
            .zip(b.iter().flatten())
            .position(|(x, y)| x != y);
        assert!(
            a == b,
            "bytes of {range} (first difference at byte {first_difference:?})"
        );
    }
}

#[tokio::test]
async fn omi_conversations_compact_into_packs_with_identical_downloads() {
    let mut compacted = 0;
    for name in SCENARIOS {
        let scenario = Scenario::load(name).unwrap();
        let bucket = scenario.copy_bucket_to_tempdir().unwrap();
        let store = Store::from_uri(&format!("fs://{}", bucket.path().display())).unwrap();
        let service = ChunkService::new(
            store,
            Some(Keyring::single(
                KeyId::new(1),
                MasterSecret::new(OMI_SECRET.as_bytes().to_vec()).unwrap(),
            )),
            Arc::new(InMemoryLevels::new(ProtectionLevel::Standard)),
            ServiceConfig::default(),
        )
        .unwrap();
        let uid = UserId::new("oracle-uid").unwrap();
        for conversation in scenario.list.keys() {
            let conv = ConversationId::new(conversation.clone()).unwrap();
            let ranges = ranges(&service, &uid, &conv).await;
            let before = snapshot_ranges_with(&service, &uid, &conv, &ranges, true).await;
            let plan = service
                .plan_compaction(&uid, &conv, &CompactionOptions::default())
                .await
                .unwrap();
            let report = service.compact(&plan).await.unwrap();
            let after = snapshot_ranges_with(&service, &uid, &conv, &ranges, true).await;
            assert_same(&before, &after);
            let listing = service.list(&uid, &conv).await.unwrap();
            if !plan.groups.is_empty() {
                compacted += 1;
                assert_eq!(
                    listing.chunks.len() as u64,
                    plan.cost.objects_after + report.skipped.len() as u64,
                    "{name}/{conversation}: {report:?}"
                );
                assert!(listing.chunks.iter().any(|e| e.kind == ObjectKind::Pack));
            }
            eprintln!(
                "{name}/{conversation}: {} objects -> {} ({} packs written, skipped {:?})",
                plan.cost.objects_before,
                listing.chunks.len(),
                report.written.len(),
                report.skipped
            );
        }
    }
    assert!(
        compacted >= 3,
        "only {compacted} conversations were compacted"
    );
}

fn rotation_keyring(keys: &[u32], active: u32) -> Keyring {
    let secret =
        |id: u32| MasterSecret::new(format!("secret-{id}-").repeat(8).into_bytes()).unwrap();
    let mut keyring = Keyring::single(KeyId::new(keys[0]), secret(keys[0]));
    for &id in &keys[1..] {
        keyring.insert(KeyId::new(id), secret(id)).unwrap();
    }
    keyring.set_active(KeyId::new(active)).unwrap();
    keyring
}

#[tokio::test]
async fn key_rotation_reseals_packs_under_the_active_key() {
    let store = Store::from_uri("memory://").unwrap();
    let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Enhanced));
    let service_with = |keyring: Keyring| {
        ChunkService::new(
            store.clone(),
            Some(keyring),
            levels.clone(),
            ServiceConfig::default(),
        )
        .unwrap()
    };
    let (uid, conv) = (UserId::new("u").unwrap(), ConversationId::new("c").unwrap());
    let chunks: Vec<Chunk> = (0..24u64)
        .map(|i| Chunk::new(ts(1_000_000 + i * 5_000), vec![(i % 251) as u8; 160_000]))
        .collect();
    let old = service_with(rotation_keyring(&[1], 1));
    for batch in chunks.chunks(12) {
        old.upload_batch(&uid, &conv, batch.to_vec(), UploadOptions::default())
            .await
            .unwrap();
    }
    let ranges = ranges(&old, &uid, &conv).await;
    let before = snapshot_ranges(&old, &uid, &conv, &ranges).await;

    let rotated = service_with(rotation_keyring(&[1, 2], 2));
    let options = CompactionOptions {
        rotation: KeyRotation::ResealToActive,
        ..CompactionOptions::default()
    };
    let plan = rotated
        .plan_compaction(&uid, &conv, &options)
        .await
        .unwrap();
    assert_eq!(
        plan.groups.len(),
        1,
        "both packs merge into one under the new key"
    );
    rotated.compact(&plan).await.unwrap();

    // Only the new secret is left: everything still reads, byte for byte.
    let new_only = service_with(rotation_keyring(&[2], 2));
    let after = snapshot_ranges(&new_only, &uid, &conv, &ranges).await;
    assert_same(&before, &after);
    // And nothing is readable with only the old secret any more.
    let old_only = service_with(rotation_keyring(&[1], 1));
    let request = DownloadRequest::Range {
        from: ts(1_000_000),
        to: ts(1_120_000),
    };
    let result = match old_only
        .download(&uid, &conv, &request, DownloadOptions::default())
        .await
    {
        Ok(stream) => stream.collect_vec().await.map(|_| ()),
        Err(error) => Err(error),
    };
    assert!(
        result.is_err(),
        "the old key no longer opens the re-sealed pack"
    );
}

/// A retired key opens packs only for compaction to re-seal them: downloads refuse them, naming
/// the pack; after the re-seal everything reads, and an old pack put back into the bucket is
/// refused instead of served.
#[tokio::test]
async fn a_retired_key_opens_packs_only_to_reseal_them() {
    let store = Store::from_uri("memory://").unwrap();
    let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Enhanced));
    let service_with = |keyring: Keyring| {
        ChunkService::new(
            store.clone(),
            Some(keyring),
            levels.clone(),
            ServiceConfig::default(),
        )
        .unwrap()
    };
    let (uid, conv) = (UserId::new("u").unwrap(), ConversationId::new("c").unwrap());
    let chunks: Vec<Chunk> = (0..24u64)
        .map(|i| Chunk::new(ts(1_000_000 + i * 5_000), vec![(i % 251) as u8; 160_000]))
        .collect();
    let old = service_with(rotation_keyring(&[1], 1));
    let mut paths = Vec::new();
    for batch in chunks.chunks(12) {
        paths.extend(
            old.upload_batch(&uid, &conv, batch.to_vec(), UploadOptions::default())
                .await
                .unwrap()
                .paths,
        );
    }
    let old_bytes = store.read(&paths[0]).await.unwrap();
    let ranges = ranges(&old, &uid, &conv).await;
    let before = snapshot_ranges(&old, &uid, &conv, &ranges).await;

    let mut keyring = rotation_keyring(&[1, 2], 2);
    keyring.set_omi_key(KeyId::new(2)).unwrap();
    keyring.retire(KeyId::new(1)).unwrap();
    let retired = service_with(keyring);
    let request = DownloadRequest::Range {
        from: ts(1_000_000),
        to: ts(1_120_000),
    };
    let refused = |error: &ServiceError, path: &str| matches!(error, ServiceError::Crypto { path: p, source: chunk_crypto::CryptoError::KeyRetired { .. } } if p == path);
    let error = retired
        .download(&uid, &conv, &request, DownloadOptions::default())
        .await
        .unwrap_err();
    assert!(refused(&error, &paths[0]), "{error}");

    let options = CompactionOptions {
        rotation: KeyRotation::ResealToActive,
        ..CompactionOptions::default()
    };
    let plan = retired
        .plan_compaction(&uid, &conv, &options)
        .await
        .unwrap();
    retired.compact(&plan).await.unwrap();
    assert_same(
        &before,
        &snapshot_ranges(&retired, &uid, &conv, &ranges).await,
    );

    // Put back: the old pack, authentic under the retired key, is not served.
    store
        .put(&paths[0], old_bytes, chunk_store::PutMode::CreateOnly)
        .await
        .unwrap();
    let error = retired
        .download(&uid, &conv, &request, DownloadOptions::default())
        .await
        .unwrap_err();
    assert!(refused(&error, &paths[0]), "{error}");
}

/// A compaction killed between writing its pack and deleting the sources (here: every delete
/// fails, as if the process died there) leaves two packs at one start, each long enough to be
/// left alone. The next compaction recognises them and finishes the job: one pack, the same
/// downloads.
#[tokio::test]
async fn a_compaction_killed_before_its_deletes_is_finished_by_the_next() {
    use chunk_store::RetryOptions;
    use chunk_store::layers::{
        FaultKind, FaultLayer, FaultOp, FaultPlan, FaultRule, FaultSchedule,
    };
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("fs://{}", dir.path().display());
    let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Enhanced));
    let service_with = |keyring: Keyring, fault: Option<FaultLayer>| {
        let mut builder = Store::builder_from_uri(&uri).unwrap();
        builder.options_mut().retry = RetryOptions::none();
        if let Some(fault) = fault {
            builder = builder.fault_layer(fault);
        }
        ChunkService::new(
            builder.build(),
            Some(keyring),
            levels.clone(),
            ServiceConfig::default(),
        )
        .unwrap()
    };
    let (uid, conv) = (UserId::new("u").unwrap(), ConversationId::new("c").unwrap());
    let chunks: Vec<Chunk> = (0..120u64)
        .map(|i| Chunk::new(ts(2_200_000 + i * 5_000), vec![(i % 251) as u8; 160_000]))
        .collect();
    let old = service_with(rotation_keyring(&[1], 1), None);
    old.upload_batch(&uid, &conv, chunks, UploadOptions::default())
        .await
        .unwrap();
    let ranges = ranges(&old, &uid, &conv).await;
    let before = snapshot_ranges(&old, &uid, &conv, &ranges).await;

    // Re-sealing the 10-minute pack under key 2 writes 2200.000-2800.001.pack next to it; the
    // delete of the old one never happens.
    let deletes_fail = FaultLayer::new(FaultPlan::new().rule(FaultRule::new(
        FaultOp::Delete,
        FaultKind::Permanent,
        FaultSchedule::Always,
    )));
    let killed = service_with(rotation_keyring(&[1, 2], 2), Some(deletes_fail));
    let reseal = CompactionOptions {
        rotation: KeyRotation::ResealToActive,
        ..CompactionOptions::default()
    };
    let plan = killed.plan_compaction(&uid, &conv, &reseal).await.unwrap();
    assert!(killed.compact(&plan).await.is_err());
    let rotated = service_with(rotation_keyring(&[1, 2], 2), None);
    let names = |listing: chunk_service::ConversationListing| -> Vec<String> {
        listing.chunks.iter().map(|e| e.name.to_string()).collect()
    };
    assert_eq!(
        names(rotated.list(&uid, &conv).await.unwrap()),
        ["2200.000-2800.000.pack", "2200.000-2800.001.pack"]
    );
    assert_same(
        &before,
        &snapshot_ranges(&rotated, &uid, &conv, &ranges).await,
    );

    // A plain compaction (no rotation asked) finishes it.
    let plan = rotated
        .plan_compaction(&uid, &conv, &CompactionOptions::default())
        .await
        .unwrap();
    assert_eq!(plan.groups.len(), 1, "{plan:?}");
    let report = rotated.compact(&plan).await.unwrap();
    assert_eq!(report.deleted.len(), 2);
    assert_eq!(
        names(rotated.list(&uid, &conv).await.unwrap()),
        ["2200.000-2800.002.pack"]
    );
    assert_same(
        &before,
        &snapshot_ranges(&rotated, &uid, &conv, &ranges).await,
    );
    let again = rotated
        .plan_compaction(&uid, &conv, &CompactionOptions::default())
        .await
        .unwrap();
    assert!(again.groups.is_empty(), "{again:?}");
}

#[derive(Debug, Clone)]
struct Piece {
    /// How far before the end of the audio so far the piece starts (recordings that
    /// overlap: a second device, a re-upload, a pack with a hole a single falls into).
    back_ms: u64,
    gap_ms: u64,
    chunks: Vec<u64>,
    layout: u8,
    enhanced: bool,
}

/// How a piece's chunk lengths are read: milliseconds (16 samples each, so every boundary is
/// a whole millisecond) or samples (boundaries anywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millis,
    Samples,
}

fn piece() -> impl Strategy<Value = Piece> {
    (
        prop::sample::select(vec![0u64, 0, 5, 250, 3_000, 40_000]),
        prop::collection::vec(prop::sample::select(vec![1u64, 16, 80, 800]), 1..5),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(gap_ms, chunks, layout, enhanced)| Piece {
            back_ms: 0,
            gap_ms,
            chunks,
            layout,
            enhanced,
        })
}

async fn compaction_case(pieces: Vec<Piece>, target_s: u64) {
    compaction_case_in(pieces, target_s, Unit::Millis).await;
}

/// Uploads `pieces` (each chunk's length in `unit`) and checks that compacting them into packs
/// of `target_s` seconds changes no range download. With [`Unit::Samples`] a chunk is named at
/// the millisecond its first sample falls in.
async fn compaction_case_in(
    pieces: Vec<Piece>,
    target_s: u64,
    unit: Unit,
) -> chunk_service::CompactionReport {
    let store = Store::from_uri("memory://").unwrap();
    let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Standard));
    let make = |layout| {
        ChunkService::new(
            store.clone(),
            Some(rotation_keyring(&[1], 1)),
            levels.clone(),
            ServiceConfig {
                batch_layout: layout,
                ..ServiceConfig::default()
            },
        )
        .unwrap()
    };
    let (omi, packs) = (make(BatchLayout::Omi), make(BatchLayout::Pack));
    let (uid, conv) = (UserId::new("u").unwrap(), ConversationId::new("c").unwrap());
    // The recording's clock, in samples at 16 kHz since the epoch.
    let mut at = 1_786_961_845_727u64 * 16;
    for (n, piece) in pieces.iter().enumerate() {
        at = at.saturating_sub(piece.back_ms * 16) + piece.gap_ms * 16;
        let level = if piece.enhanced {
            ProtectionLevel::Enhanced
        } else {
            ProtectionLevel::Standard
        };
        // Chunks back to back, each named by the millisecond its first sample falls in (so a
        // chunk after a boundary off a whole millisecond overlaps its predecessor by under a
        // millisecond, as a recorder that floors its timestamps makes them).
        let chunks: Vec<Chunk> = piece
            .chunks
            .iter()
            .map(|&len| {
                let samples = match unit {
                    Unit::Millis => len * 16,
                    Unit::Samples => len,
                };
                let chunk =
                    Chunk::new(ts(at / 16), vec![(n * 7 + 1) as u8; (samples * 2) as usize]);
                at += samples;
                chunk
            })
            .collect();
        match piece.layout {
            0 => {
                for chunk in chunks {
                    let _ = omi
                        .upload_chunk(&uid, &conv, chunk, UploadOptions::at_level(level))
                        .await;
                }
            }
            1 => {
                let _ = omi
                    .upload_batch(&uid, &conv, chunks, UploadOptions::at_level(level))
                    .await;
            }
            _ => {
                let _ = packs
                    .upload_batch(&uid, &conv, chunks, UploadOptions::at_level(level))
                    .await;
            }
        }
    }
    let ranges = ranges(&packs, &uid, &conv).await;
    let before = snapshot_ranges(&packs, &uid, &conv, &ranges).await;
    let options = CompactionOptions {
        target_duration: std::time::Duration::from_secs(target_s),
        ..CompactionOptions::default()
    };
    let plan = packs.plan_compaction(&uid, &conv, &options).await.unwrap();
    let report = packs.compact(&plan).await.unwrap();
    let after = snapshot_ranges(&packs, &uid, &conv, &ranges).await;
    assert_same(&before, &after);
    report
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(chunkvault_tests::expensive_proptest_cases(16, 100))
}

/// The minimal input of issue 12 (CI's failing case): an object whose audio ends exactly at
/// the start of a 5 s window used to start that window's clock, so the download before
/// compaction began with 5 ms of silence that the one after it (exact pack bounds) did not.
#[tokio::test]
async fn compaction_regression_audio_ending_at_a_window_start() {
    let piece = |gap_ms, chunks: &[u64], enhanced| Piece {
        back_ms: 0,
        gap_ms,
        chunks: chunks.to_vec(),
        layout: 0,
        enhanced,
    };
    compaction_case(
        vec![
            piece(0, &[80, 800, 1], false),
            piece(5, &[1, 16, 80], false),
            piece(40_000, &[16, 800, 800, 800], false),
            piece(0, &[1, 800, 800], true),
            piece(5, &[1], false),
        ],
        1,
    )
    .await;
}

/// Chunk boundaries half a millisecond off (8 samples at 16 kHz) where a later object
/// overlaps: compaction used to round the resumed audio's start up to the next millisecond and
/// drop the 8 samples in between.
#[tokio::test]
async fn compaction_regression_overlap_ending_off_a_whole_millisecond() {
    for layout in 0..3 {
        let piece = |gap_ms, chunks: &[u64]| Piece {
            back_ms: 0,
            gap_ms,
            chunks: chunks.to_vec(),
            layout,
            enhanced: false,
        };
        // 80,024 samples (5.0015 s), then a chunk named at 5.001 s, overlapping by 8 samples.
        compaction_case_in(
            vec![piece(0, &[80_000, 24]), piece(0, &[1_600])],
            600,
            Unit::Samples,
        )
        .await;
    }
}

/// Found by `prop_compaction_keeps_downloads_with_boundaries_off_whole_ms` (100,000-case
/// run): singles whose audio ends half a millisecond off, an `.enc` and a `.bin` at one
/// timestamp, compacted into packs of 1 s.
#[tokio::test]
async fn compaction_regression_singles_off_whole_ms_into_short_packs() {
    let piece = |gap_ms, chunks: &[u64], enhanced| Piece {
        back_ms: 0,
        gap_ms,
        chunks: chunks.to_vec(),
        layout: 0,
        enhanced,
    };
    compaction_case_in(
        vec![
            piece(0, &[80_000, 12_808], false),
            piece(3_000, &[8], false),
            piece(0, &[12_808, 8, 1], false),
            piece(0, &[12_808], true),
        ],
        1,
        Unit::Samples,
    )
    .await;
}

/// Found by the same property once the groups kept same-instant singles together: a `.bin`
/// and an `.enc` at the instant where a 5 s pack starts. The pack is long enough to be left
/// alone; merging the two singles made a second pack at that instant, which won the tie the
/// old pack had won over the singles.
#[tokio::test]
async fn compaction_regression_singles_at_the_start_of_a_pack_left_alone() {
    let piece = |chunks: &[u64], layout, enhanced| Piece {
        back_ms: 0,
        gap_ms: 0,
        chunks: chunks.to_vec(),
        layout,
        enhanced,
    };
    compaction_case_in(
        vec![
            piece(&[1], 0, false),
            piece(&[1], 0, true),
            piece(&[80_000], 2, false),
        ],
        1,
        Unit::Samples,
    )
    .await;
}

/// Found by the property once compaction placed groups among everything stored: sealed
/// singles whose first one resumes 8 samples (half a millisecond) after a plaintext `.bin`
/// that stays out of the sealed group. No pack chunk can start there, and writing it one
/// millisecond early or late would move audio: the group is declined, and said so.
#[tokio::test]
async fn compaction_declines_a_group_resuming_off_a_millisecond_after_another_object() {
    let piece = |chunks: &[u64], enhanced| Piece {
        back_ms: 0,
        gap_ms: 0,
        chunks: chunks.to_vec(),
        layout: 0,
        enhanced,
    };
    let report = compaction_case_in(
        vec![piece(&[24], false), piece(&[1_600, 1_600], true)],
        600,
        Unit::Samples,
    )
    .await;
    assert!(report.written.is_empty(), "{report:?}");
    assert_eq!(report.declined.len(), 1, "{report:?}");
    assert!(report.declined[0].0.ends_with(".enc"), "{report:?}");
}

/// A service over a fresh memory store, every user standard, and user `u`'s conversation `c`.
fn standard_service() -> (ChunkService, UserId, ConversationId) {
    let service = ChunkService::builder(Store::from_uri("memory://").unwrap())
        .keyring(rotation_keyring(&[1], 1))
        .build()
        .unwrap();
    let (uid, conv) = (UserId::new("u").unwrap(), ConversationId::new("c").unwrap());
    (service, uid, conv)
}

/// A single in the hole between two stretches of a pack (a pack with chunks at 0 s and 8 s,
/// a `.bin` at 5 s) is the only audio there: downloads used to place the whole pack first and
/// trim the `.bin` away behind the pack's later chunk. Each stretch of a pack is now placed
/// at its own start, by downloads and compaction alike.
#[tokio::test]
async fn a_single_in_a_hole_of_a_pack_is_served_and_survives_compaction() {
    let (service, uid, conv) = standard_service();
    let t0 = 1_786_961_845_000u64;
    let second = |byte: u8| vec![byte; 32_000];
    let chunks = vec![
        Chunk::new(ts(t0), second(1)),
        Chunk::new(ts(t0 + 8_000), second(2)),
    ];
    service
        .upload_batch(&uid, &conv, chunks, UploadOptions::default())
        .await
        .unwrap();
    service
        .upload_chunk(
            &uid,
            &conv,
            Chunk::new(ts(t0 + 5_000), second(3)),
            UploadOptions::default(),
        )
        .await
        .unwrap();
    let ranges = ranges(&service, &uid, &conv).await;
    let before = snapshot_ranges(&service, &uid, &conv, &ranges).await;
    let whole = DownloadRequest::Range {
        from: ts(t0),
        to: ts(t0 + 9_000),
    };
    let pcm = service
        .download(&uid, &conv, &whole, DownloadOptions::default())
        .await
        .unwrap()
        .collect_vec()
        .await
        .unwrap();
    let mut expected = second(1);
    expected.extend(vec![0; 4 * 32_000]);
    expected.extend(second(3));
    expected.extend(vec![0; 2 * 32_000]);
    expected.extend(second(2));
    assert_eq!(pcm, expected);
    let options = CompactionOptions {
        target_duration: std::time::Duration::from_secs(60),
        ..CompactionOptions::default()
    };
    let plan = service
        .plan_compaction(&uid, &conv, &options)
        .await
        .unwrap();
    assert_eq!(plan.groups.len(), 1, "{plan:?}");
    service.compact(&plan).await.unwrap();
    let after = snapshot_ranges(&service, &uid, &conv, &ranges).await;
    assert_same(&before, &after);
}

/// Two recordings of one conversation overlapping by 10 s: the plan names the 10 s of the
/// second that no download serves (and the merge discards) before anything is discarded,
/// and the merge changes no download.
#[tokio::test]
async fn the_plan_lists_the_shadowed_audio_it_discards() {
    let (service, uid, conv) = standard_service();
    let t0 = 1_786_961_845_000u64;
    let recording = |from_s: u64, byte: u8| -> Vec<Chunk> {
        (0..4)
            .map(|i| Chunk::new(ts(t0 + (from_s + 5 * i) * 1000), vec![byte; 160_000]))
            .collect()
    };
    service
        .upload_batch(&uid, &conv, recording(0, 1), UploadOptions::default())
        .await
        .unwrap();
    service
        .upload_batch(&uid, &conv, recording(10, 2), UploadOptions::default())
        .await
        .unwrap();
    let ranges = ranges(&service, &uid, &conv).await;
    let before = snapshot_ranges(&service, &uid, &conv, &ranges).await;
    let plan = service
        .plan_compaction(&uid, &conv, &CompactionOptions::default())
        .await
        .unwrap();
    assert_eq!(plan.groups.len(), 1, "{plan:?}");
    assert_eq!(plan.shadowed_samples(), 10 * 16_000);
    assert_eq!(plan.shadowed_ms, 10_000);
    let overlap = &plan.shadowed[0];
    assert_eq!(overlap.span.start_ms, t0 + 10_000);
    assert!(overlap.kept.contains(&ts(t0).to_string()), "{overlap:?}");
    assert!(
        overlap.trimmed.contains(&ts(t0 + 10_000).to_string()),
        "{overlap:?}"
    );
    service.compact(&plan).await.unwrap();
    assert_same(
        &before,
        &snapshot_ranges(&service, &uid, &conv, &ranges).await,
    );
    // Nothing left to merge: nothing shadowed to list (no audit is run).
    let again = service
        .plan_compaction(&uid, &conv, &CompactionOptions::default())
        .await
        .unwrap();
    assert!(again.groups.is_empty() && again.shadowed.is_empty());
}

fn samples_piece() -> impl Strategy<Value = Piece> {
    (
        prop::sample::select(vec![0u64, 0, 5, 250, 3_000]),
        prop::collection::vec(
            prop::sample::select(vec![1u64, 8, 15, 16, 24, 1_000, 1_280, 12_808, 80_000]),
            1..5,
        ),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(gap_ms, chunks, layout, enhanced)| Piece {
            back_ms: 0,
            gap_ms,
            chunks,
            layout,
            enhanced,
        })
}

/// Pieces that may start inside audio already recorded: packs with gaps between their chunks
/// and singles or batches falling into those gaps or across them.
fn overlapping_piece() -> impl Strategy<Value = Piece> {
    (
        prop::sample::select(vec![0u64, 0, 3, 500, 2_000, 7_000]),
        prop::sample::select(vec![0u64, 5, 1_000, 4_000]),
        prop::collection::vec(prop::sample::select(vec![16u64, 80, 800, 1_000]), 1..5),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(back_ms, gap_ms, chunks, layout, enhanced)| Piece {
            back_ms,
            gap_ms,
            chunks,
            layout,
            enhanced,
        })
}

proptest! {
    #![proptest_config(config())]

    /// As `prop_compaction_keeps_every_range_download`, with recordings that overlap: each
    /// piece may start before the audio so far ends, inside a pack or across its chunks.
    #[test]
    fn prop_compaction_keeps_downloads_of_overlapping_recordings(
        pieces in prop::collection::vec(overlapping_piece(), 1..8),
        target_s in prop::sample::select(vec![1u64, 10, 600]),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(compaction_case(pieces, target_s));
    }

    /// As `prop_compaction_keeps_every_range_download`, with chunks of any number of samples,
    /// so boundaries fall off whole milliseconds and recordings overlap by fractions of one.
    #[test]
    fn prop_compaction_keeps_downloads_with_boundaries_off_whole_ms(
        pieces in prop::collection::vec(samples_piece(), 1..8),
        target_s in prop::sample::select(vec![1u64, 10, 600]),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(compaction_case_in(pieces, target_s, Unit::Samples));
    }

    #[test]
    fn prop_compaction_keeps_every_range_download(
        pieces in prop::collection::vec(piece(), 1..8),
        target_s in prop::sample::select(vec![1u64, 10, 600]),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(compaction_case(pieces, target_s));
    }
}
