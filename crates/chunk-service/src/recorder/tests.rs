use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chunk_format::Timestamp;
use chunk_store::{ConversationId, UserId};

use super::*;
use crate::config::BatchLayout;
use crate::config::{EncryptionPolicy, ServiceConfig};
use crate::level::InMemoryLevels;
use crate::service::ChunkService;
use chunk_store::layers::{FaultKind, FaultLayer, FaultOp, FaultPlan, FaultRule, FaultSchedule};
use chunk_store::{RetryOptions, Store};

/// 0.5 s of 16 kHz PCM16 per chunk.
const CHUNK_MS: u64 = 500;
const CHUNK_BYTES: usize = 16_000;
const T0: u64 = 1_786_961_845_727;

fn ts(i: u64) -> Timestamp {
    Timestamp::from_millis(T0 + i * CHUNK_MS).unwrap()
}

fn pcm(i: u64) -> Bytes {
    Bytes::from(
        (0..CHUNK_BYTES)
            .map(|j| (i as usize * 31 + j * 7) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn ids(conv: &str) -> (UserId, ConversationId) {
    (
        UserId::new("user-1").unwrap(),
        ConversationId::new(conv).unwrap(),
    )
}

fn store(plan: Option<FaultPlan>) -> (Store, Option<FaultLayer>) {
    let mut builder = Store::builder_from_uri("memory://").unwrap();
    builder.options_mut().retry = RetryOptions::none();
    let fault = plan.map(FaultLayer::new);
    if let Some(fault) = &fault {
        builder = builder.fault_layer(fault.clone());
    }
    (builder.build(), fault)
}

/// A service writing Omi batches (raw PCM concatenated, so tests compare object bytes).
fn service(store: Store) -> ChunkService {
    service_with(store, BatchLayout::Omi)
}

fn service_with(store: Store, layout: BatchLayout) -> ChunkService {
    let config = ServiceConfig {
        batch_layout: layout,
        encryption: EncryptionPolicy::Disabled,
        ..ServiceConfig::default()
    };
    let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Standard));
    ChunkService::new(store, None, levels, config).unwrap()
}

/// Batches of 6 chunks (3 s), fast retries.
fn config(spool: Option<&std::path::Path>) -> RecorderConfig {
    RecorderConfig {
        max_batch_duration: Duration::from_millis(6 * CHUNK_MS),
        max_age: Duration::from_secs(60),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            held_retry_max: Duration::from_millis(4),
        },
        spool_dir: spool.map(|p| p.to_path_buf()),
        ..RecorderConfig::omi()
    }
}

/// Every object of the conversation as (name, bytes), in listing order.
async fn objects(service: &ChunkService, conv: &str) -> Vec<(String, Vec<u8>)> {
    let (uid, conv) = ids(conv);
    let listing = service.list(&uid, &conv).await.unwrap();
    let mut out = Vec::new();
    for entry in listing.chunks {
        let body = service.store().read(&entry.path).await.unwrap();
        out.push((entry.name.to_string(), body.to_vec()));
    }
    out
}

/// Every object of the conversation, concatenated in listing order.
async fn stored(service: &ChunkService, conv: &str) -> Vec<u8> {
    objects(service, conv)
        .await
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect()
}

fn expected(range: std::ops::Range<u64>) -> Vec<u8> {
    range.flat_map(|i| pcm(i).to_vec()).collect()
}

/// Batches the spool holds (opened and not retired).
fn segments(dir: &std::path::Path) -> usize {
    crate::spool::inspect(dir).unwrap().batches
}

/// The newest log segment file of a spool.
fn newest_log(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()
        .unwrap()
}

#[tokio::test]
async fn spooled_batches_flush_when_full_and_leave_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(None);
    let service = service(store);
    let (recorder, report) = Recorder::open(service.clone(), config(Some(dir.path())))
        .await
        .unwrap();
    assert_eq!(report.batches, 0);
    let (uid, conv) = ids("c1");
    for i in 0..14 {
        let durability = recorder
            .push(&uid, &conv, ts(i), pcm(i), None)
            .await
            .unwrap();
        assert_eq!(durability, Durability::Spooled);
    }
    recorder.flush_due().await.unwrap(); // waits for the background uploads
    let stats = recorder.stats().await;
    assert_eq!(stats.chunks_acked, 14);
    assert_eq!(
        stats.flushes[&FlushReason::Full],
        FlushCounts {
            batches: 2,
            chunks: 12,
            bytes: 12 * CHUNK_BYTES as u64
        }
    );
    assert_eq!(
        (stats.pending_batches, stats.pending_bytes),
        (1, 2 * CHUNK_BYTES)
    );
    assert_eq!(segments(dir.path()), 1, "only the pending batch is spooled");
    recorder.close().await.unwrap();
    assert_eq!(segments(dir.path()), 0);
    assert_eq!(
        recorder.stats().await.flushes[&FlushReason::Close].chunks,
        2
    );

    let objects = objects(&service, "c1").await;
    let names: Vec<&str> = objects.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{}-{}.batch.bin", ts(0), ts(5)),
            format!("{}-{}.batch.bin", ts(6), ts(11)),
            format!("{}-{}.batch.bin", ts(12), ts(13)),
        ]
    );
    let all: Vec<u8> = objects.into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(all, expected(0..14));
    assert!(matches!(
        recorder.push(&uid, &conv, ts(20), pcm(20), None).await,
        Err(RecorderError::Closed)
    ));
}

#[tokio::test]
async fn memory_mode_acks_in_memory_and_flushes_on_close() {
    let (store, _) = store(None);
    let service = service(store);
    let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
    let (uid, conv) = ids("c1");
    for i in 0..3 {
        assert_eq!(
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap(),
            Durability::Memory
        );
    }
    assert!(objects(&service, "c1").await.is_empty());
    recorder.close().await.unwrap();
    let objects = objects(&service, "c1").await;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].1, expected(0..3));
}

#[tokio::test]
async fn duplicates_and_out_of_order_chunks_are_refused() {
    let (store, _) = store(None);
    let (recorder, _) = Recorder::open(service(store), config(None)).await.unwrap();
    let (uid, conv) = ids("c1");
    recorder
        .push(&uid, &conv, ts(5), pcm(5), None)
        .await
        .unwrap();
    for i in [5, 4] {
        let error = recorder
            .push(&uid, &conv, ts(i), pcm(i), None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, RecorderError::Duplicate { timestamp, last, .. } if timestamp == ts(i) && last == ts(5)),
            "{error}"
        );
    }
    // Another conversation has its own mark.
    let (_, other) = ids("c2");
    recorder
        .push(&uid, &other, ts(0), pcm(0), None)
        .await
        .unwrap();
    assert_eq!(recorder.last_held(&uid, &conv).await, Some(ts(5)));
    assert_eq!(recorder.stats().await.duplicates, 2);
    // The mark survives the flush of the batch.
    recorder.close().await.unwrap();
    assert_eq!(recorder.last_held(&uid, &conv).await, Some(ts(5)));
}

#[tokio::test]
async fn a_conversation_switch_flushes_the_previous_conversation() {
    let (store, _) = store(None);
    let service = service(store);
    let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
    let (uid, a) = ids("a");
    let (_, b) = ids("b");
    recorder.push(&uid, &a, ts(0), pcm(0), None).await.unwrap();
    recorder.push(&uid, &a, ts(1), pcm(1), None).await.unwrap();
    recorder.push(&uid, &b, ts(2), pcm(2), None).await.unwrap();
    recorder.flush_due().await.unwrap();
    let stats = recorder.stats().await;
    assert_eq!(stats.flushes[&FlushReason::ConversationSwitch].chunks, 2);
    assert_eq!(objects(&service, "a").await[0].1, expected(0..2));
    assert!(objects(&service, "b").await.is_empty());
    recorder.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn old_batches_are_flushed_by_age() {
    let (store, _) = store(None);
    let service = service(store);
    let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
    let (uid, conv) = ids("c1");
    recorder
        .push(&uid, &conv, ts(0), pcm(0), None)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    recorder.flush_due().await.unwrap();
    assert!(objects(&service, "c1").await.is_empty(), "not old yet");
    tokio::time::advance(Duration::from_secs(31)).await;
    recorder.flush_due().await.unwrap();
    assert_eq!(recorder.stats().await.flushes[&FlushReason::Age].batches, 1);
    assert_eq!(objects(&service, "c1").await.len(), 1);
}

#[tokio::test]
async fn temporary_errors_are_retried_with_backoff() {
    let plan = FaultPlan::new().rule(FaultRule::new(
        FaultOp::Close,
        FaultKind::Temporary,
        FaultSchedule::FirstN(2),
    ));
    let (store, fault) = store(Some(plan));
    let service = service(store);
    let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
    let (uid, conv) = ids("c1");
    for i in 0..6 {
        recorder
            .push(&uid, &conv, ts(i), pcm(i), None)
            .await
            .unwrap();
    }
    recorder.flush_due().await.unwrap();
    let stats = recorder.stats().await;
    assert_eq!(stats.failed_attempts, 2);
    assert_eq!(stats.flushes[&FlushReason::Full].batches, 1);
    assert_eq!(fault.unwrap().injected(FaultOp::Close), 2);
    assert_eq!(objects(&service, "c1").await[0].1, expected(0..6));
}

#[tokio::test]
async fn permanent_errors_hold_the_batch_and_nothing_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    // The first 3 commits fail permanently: no retry within a flush.
    let plan = FaultPlan::new().rule(FaultRule::new(
        FaultOp::Close,
        FaultKind::Permanent,
        FaultSchedule::FirstN(3),
    ));
    let (store, fault) = store(Some(plan));
    let fault = fault.unwrap();
    let service = service(store);
    let (recorder, _) = Recorder::open(service.clone(), config(Some(dir.path())))
        .await
        .unwrap();
    let (uid, conv) = ids("c1");
    for i in 0..6 {
        recorder
            .push(&uid, &conv, ts(i), pcm(i), None)
            .await
            .unwrap();
    }
    let error = recorder.flush_due().await.unwrap_err();
    assert!(
        matches!(&error, RecorderError::Held { batches: 1, bytes, error } if *bytes == 6 * CHUNK_BYTES && !error.is_temporary()),
        "{error}"
    );
    assert_eq!(
        fault.injected(FaultOp::Close),
        1,
        "a permanent error is not retried"
    );
    // Pushes keep being acknowledged while the batch is held.
    for i in 6..8 {
        recorder
            .push(&uid, &conv, ts(i), pcm(i), None)
            .await
            .unwrap();
    }
    // Close: the pending batch's commit fails too (the second fault). The held batch failed
    // permanently, so close does not retry it, and neither does flush_due.
    assert!(matches!(
        recorder.close().await,
        Err(RecorderError::Held { batches: 2, .. })
    ));
    assert_eq!(fault.injected(FaultOp::Close), 2);
    assert!(recorder.flush_due().await.is_err());
    assert_eq!(
        fault.injected(FaultOp::Close),
        2,
        "permanent failures are not retried"
    );
    assert_eq!(segments(dir.path()), 2, "both batches are still spooled");
    assert!(objects(&service, "c1").await.is_empty());
    // The operator retries: one of the two meets the third and last fault.
    assert!(matches!(
        recorder.retry_held().await,
        Err(RecorderError::Held { batches: 1, .. })
    ));
    // The fault has cleared: retrying again lands the other, each batch once.
    recorder.retry_held().await.unwrap();
    assert_eq!(fault.injected(FaultOp::Close), 3);
    assert_eq!(segments(dir.path()), 0);
    let objects = objects(&service, "c1").await;
    assert_eq!(objects.len(), 2);
    let all: Vec<u8> = objects.into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(all, expected(0..8));
}

#[tokio::test]
async fn the_budget_pushes_back_when_uploads_fail() {
    let plan = FaultPlan::new().rule(FaultRule::new(
        FaultOp::Close,
        FaultKind::Permanent,
        FaultSchedule::Always,
    ));
    let (store, _) = store(Some(plan));
    let config = RecorderConfig {
        limits: StreamLimits {
            total_bytes: Some(8 * CHUNK_BYTES),
            ..RecorderConfig::omi().limits
        },
        ..config(None)
    };
    let (recorder, _) = Recorder::open(service(store), config).await.unwrap();
    let (uid, conv) = ids("c1");
    for i in 0..8 {
        recorder
            .push(&uid, &conv, ts(i), pcm(i), None)
            .await
            .unwrap();
    }
    let error = recorder
        .push(&uid, &conv, ts(8), pcm(8), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RecorderError::Backpressure { used_bytes, last_error: Some(_), .. } if *used_bytes == 8 * CHUNK_BYTES),
        "{error}"
    );
    let stats = recorder.stats().await;
    assert_eq!((stats.chunks_acked, stats.backpressure), (8, 1));
    assert_eq!(stats.held_bytes + stats.pending_bytes, 8 * CHUNK_BYTES);
    // The refused chunk was not taken: it can be pushed again later.
    assert_eq!(recorder.last_held(&uid, &conv).await, Some(ts(7)));
}

#[tokio::test]
async fn the_budget_flushes_the_oldest_batch_to_make_room() {
    let (store, _) = store(None);
    let service = service(store);
    let config = RecorderConfig {
        limits: StreamLimits {
            total_bytes: Some(4 * CHUNK_BYTES),
            ..RecorderConfig::omi().limits
        },
        ..config(None)
    };
    let (recorder, _) = Recorder::open(service.clone(), config).await.unwrap();
    let (uid, conv) = ids("c1");
    for i in 0..5 {
        recorder
            .push(&uid, &conv, ts(i), pcm(i), None)
            .await
            .unwrap();
    }
    assert_eq!(
        recorder.stats().await.flushes[&FlushReason::Budget].chunks,
        4
    );
    recorder.close().await.unwrap();
    assert_eq!(stored(&service, "c1").await, expected(0..5));
}

#[tokio::test]
async fn a_crash_leaves_acked_chunks_in_the_spool_and_open_replays_them() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(None);
    let service = service(store);
    let (uid, conv) = ids("c1");
    {
        let (recorder, _) = Recorder::open(service.clone(), config(Some(dir.path())))
            .await
            .unwrap();
        for i in 0..4 {
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
        // "Crash": the recorder goes away without close.
    }
    assert!(objects(&service, "c1").await.is_empty());
    let (recorder, report) = Recorder::open(service.clone(), config(Some(dir.path())))
        .await
        .unwrap();
    assert_eq!((report.batches, report.chunks, report.uploaded), (1, 4, 1));
    assert_eq!(
        report.conversations,
        [RecoveredConversation {
            uid: uid.clone(),
            conversation: conv.clone(),
            chunks: 4,
            last: ts(3),
        }]
    );
    assert_eq!(
        recorder.stats().await.flushes[&FlushReason::Replay].chunks,
        4
    );
    assert_eq!(segments(dir.path()), 0);
    // The caller resumes after the last spooled chunk; pushing it again is refused.
    assert_eq!(
        recorder.resume_point(&uid, &conv).await.unwrap(),
        Some(ts(3))
    );
    assert!(matches!(
        recorder.push(&uid, &conv, ts(3), pcm(3), None).await,
        Err(RecorderError::Duplicate { .. })
    ));
    recorder
        .push(&uid, &conv, ts(4), pcm(4), None)
        .await
        .unwrap();
    recorder.close().await.unwrap();
    assert_eq!(stored(&service, "c1").await, expected(0..5));
}

#[tokio::test]
async fn replaying_a_segment_that_was_already_stored_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(None);
    let service = service(store);
    let (uid, conv) = ids("c1");
    let (recorder, _) = Recorder::open(service.clone(), config(Some(dir.path())))
        .await
        .unwrap();
    for i in 0..3 {
        recorder
            .push(&uid, &conv, ts(i), pcm(i), None)
            .await
            .unwrap();
    }
    // Keep a copy of the segment, as if the process died between the store's confirmation
    // and the segment's removal.
    let segment = newest_log(dir.path());
    let saved = std::fs::read(&segment).unwrap();
    recorder.close().await.unwrap();
    drop(recorder);
    std::fs::write(&segment, saved).unwrap();

    let writes = service.store().op_counts().write;
    let (recorder, report) = Recorder::open(service.clone(), config(Some(dir.path())))
        .await
        .unwrap();
    assert_eq!((report.batches, report.uploaded, report.held), (1, 1, 0));
    assert_eq!(
        service.store().op_counts().write,
        writes,
        "identical replay is a no-op"
    );
    assert_eq!(segments(dir.path()), 0);
    let objects = objects(&service, "c1").await;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].1, expected(0..3));
    recorder.close().await.unwrap();
}

#[tokio::test]
async fn resume_point_finds_chunks_stored_before_the_spool_was_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(None);
    let service = service(store);
    let (uid, conv) = ids("c1");
    {
        let (recorder, _) = Recorder::open(service.clone(), config(Some(dir.path())))
            .await
            .unwrap();
        for i in 0..6 {
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
        recorder.flush_due().await.unwrap();
    }
    // The spool is empty: only the store knows chunk 5 is there.
    let (recorder, report) = Recorder::open(service.clone(), config(Some(dir.path())))
        .await
        .unwrap();
    assert_eq!(report.batches, 0);
    assert_eq!(recorder.last_held(&uid, &conv).await, None);
    assert_eq!(
        recorder.resume_point(&uid, &conv).await.unwrap(),
        Some(ts(5))
    );
    assert!(matches!(
        recorder.push(&uid, &conv, ts(5), pcm(5), None).await,
        Err(RecorderError::Duplicate { .. })
    ));
    let (_, empty) = ids("never-recorded");
    assert_eq!(recorder.resume_point(&uid, &empty).await.unwrap(), None);
}

#[tokio::test]
async fn a_torn_tail_after_a_crash_is_cut_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(None);
    let service = service(store);
    let (uid, conv) = ids("c1");
    {
        let (recorder, _) = Recorder::open(service.clone(), config(Some(dir.path())))
            .await
            .unwrap();
        for i in 0..3 {
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
    }
    // A fourth record whose write was cut short by the crash (never acknowledged).
    let segment = newest_log(dir.path());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut file, &[0x11, 0x3e, 0, 0, 1, 2, 3, 4, 2, 9, 9]).unwrap();
    drop(file);
    let (recorder, report) = Recorder::open(service.clone(), config(Some(dir.path())))
        .await
        .unwrap();
    assert_eq!(
        (report.chunks, report.cut_bytes, report.uploaded),
        (3, 11, 1)
    );
    assert_eq!(objects(&service, "c1").await[0].1, expected(0..3));
    recorder.close().await.unwrap();
}

#[tokio::test]
async fn pack_batches_split_where_chunks_overlap() {
    let (store, _) = store(None);
    let service = service_with(store, BatchLayout::Pack);
    let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
    let (uid, conv) = ids("c1");
    let jittered = Timestamp::from_millis(T0 + 900).unwrap(); // chunk 1 ends at T0 + 1000
    recorder
        .push(&uid, &conv, ts(0), pcm(0), None)
        .await
        .unwrap();
    recorder
        .push(&uid, &conv, ts(1), pcm(1), None)
        .await
        .unwrap();
    recorder
        .push(&uid, &conv, jittered, pcm(2), None)
        .await
        .unwrap();
    recorder.close().await.unwrap();
    let stats = recorder.stats().await;
    assert_eq!(stats.flushes[&FlushReason::Overlap].chunks, 2);
    assert_eq!(stats.flushes[&FlushReason::Close].chunks, 1);
    let listing = service.list(&uid, &conv).await.unwrap();
    let spans: Vec<(u64, u64)> = listing
        .chunks
        .iter()
        .map(|e| (e.start.as_millis() - T0, e.end.as_millis() - T0))
        .collect();
    assert_eq!(spans, [(0, 1_000), (900, 1_400)]);
    // Each pack holds exactly its chunks, whole.
    let mut stored = Vec::new();
    for entry in &listing.chunks {
        let object = service.store().read(&entry.path).await.unwrap();
        let index = chunk_format::pack::PackIndex::from_object(&object, None).unwrap();
        for (i, chunk) in index.entries().iter().enumerate() {
            let range = chunk.frame_range();
            let frame = &object[range.start as usize..range.end as usize];
            let audio = index.decode_frame(i, frame, None).unwrap();
            stored.push((chunk.start, audio));
        }
    }
    assert_eq!(stored.len(), 3);
    for ((start, audio), (expected_start, i)) in
        stored.iter().zip([(ts(0), 0), (ts(1), 1), (jittered, 2)])
    {
        assert_eq!(*start, expected_start);
        assert!(*audio == pcm(i), "chunk {i}");
    }
}

#[tokio::test]
async fn chunks_without_a_whole_sample_are_refused() {
    let (store, _) = store(None);
    let (recorder, _) = Recorder::open(service_with(store, BatchLayout::Pack), config(None))
        .await
        .unwrap();
    let (uid, conv) = ids("c1");
    for bad in [Bytes::new(), Bytes::from_static(&[7])] {
        let error = recorder
            .push(&uid, &conv, ts(0), bad, None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, RecorderError::InvalidChunk { .. }),
            "{error}"
        );
    }
    // An odd trailing byte is trimmed by the service, so the chunk is accepted.
    let mut odd = pcm(0).to_vec();
    odd.push(1);
    recorder.push(&uid, &conv, ts(0), odd, None).await.unwrap();
    assert_eq!(recorder.stats().await.chunks_acked, 1);
    recorder.close().await.unwrap();
}

#[tokio::test]
async fn the_resume_point_of_a_pack_is_just_before_its_end() {
    let (store, _) = store(None);
    let service = service_with(store, BatchLayout::Pack);
    let (uid, conv) = ids("c1");
    let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
    for i in 0..3 {
        recorder
            .push(&uid, &conv, ts(i), pcm(i), None)
            .await
            .unwrap();
    }
    recorder.close().await.unwrap();
    let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
    let mark = recorder.resume_point(&uid, &conv).await.unwrap().unwrap();
    assert_eq!(mark.as_millis(), T0 + 3 * CHUNK_MS - 1);
    assert!(matches!(
        recorder.push(&uid, &conv, ts(2), pcm(2), None).await,
        Err(RecorderError::Duplicate { .. })
    ));
    recorder
        .push(&uid, &conv, ts(3), pcm(3), None)
        .await
        .unwrap();
    recorder.close().await.unwrap();
    assert_eq!(service.list(&uid, &conv).await.unwrap().chunks.len(), 2);
}

#[tokio::test]
async fn a_single_upload_permit_still_lands_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(None);
    let service = service(store);
    let config = RecorderConfig {
        max_concurrent_uploads: 1,
        ..config(Some(dir.path()))
    };
    let (recorder, _) = Recorder::open(service.clone(), config).await.unwrap();
    // Three conversations of three users fill their batches at once.
    for i in 0..6 {
        for user in ["a", "b", "c"] {
            let uid = UserId::new(user).unwrap();
            let (_, conv) = ids("c1");
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
    }
    recorder.flush_due().await.unwrap();
    let stats = recorder.stats().await;
    assert_eq!(stats.flushes[&FlushReason::Full].batches, 3);
    assert_eq!((stats.in_flight_batches, stats.held_batches), (0, 0));
    assert_eq!(segments(dir.path()), 0);
}

#[test]
fn presets() {
    let omi = RecorderConfig::omi();
    assert_eq!(omi.max_batch_duration, Duration::from_secs(60));
    assert!(omi.spool_dir.is_none());
    let spool = RecorderConfig::spool("/var/spool/chunkvault");
    assert_eq!(spool.max_batch_duration, Duration::from_secs(600));
    assert!(spool.max_age > spool.max_batch_duration);
    // 10-minute batches: at most 6 per recorded hour.
    assert!(3600 / spool.max_batch_duration.as_secs() <= 6);
    let retry = RetryPolicy::default();
    assert_eq!(retry.held_delay(1), retry.max_backoff);
    assert_eq!(retry.held_delay(2), retry.max_backoff * 2);
    assert_eq!(retry.held_delay(40), retry.held_retry_max);
}
