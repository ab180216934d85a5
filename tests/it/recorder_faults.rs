//! The recorder under store faults (issue 7): with the fault-injection layer failing writes for
//! a while — temporarily, then permanently — every push is still acknowledged from the spool,
//! `flush_due` / `close` report the held batches as typed errors, no chunk is lost, and no
//! partial object (or fs temp file) remains at any point; once the fault clears, everything
//! lands exactly once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chunk_format::{ObjectKind, Timestamp};
use chunk_service::{
    ChunkService, DownloadOptions, DownloadRequest, Durability, EncryptionPolicy, FlushReason,
    InMemoryLevels, ProtectionLevel, Recorder, RecorderConfig, RecorderError, RetryPolicy,
    ServiceConfig,
};
use chunk_store::layers::{FaultKind, FaultLayer, FaultOp, FaultPlan, FaultRule, FaultSchedule};
use chunk_store::{ConversationId, FS_TMP_DIR, RetryOptions, Store, UserId};
use chunkvault_tests::spool_segments;

const T0: u64 = 1_786_961_845_727;
/// 0.5 s of 16 kHz PCM16 per chunk; 6 chunks per batch.
const CHUNK_MS: u64 = 500;
const CHUNK_BYTES: usize = 16_000;
const BATCH: u64 = 6;

fn ts(i: u64) -> Timestamp {
    Timestamp::from_millis(T0 + i * CHUNK_MS).expect("timestamp")
}

fn pcm(i: u64) -> Bytes {
    Bytes::from(
        (0..CHUNK_BYTES)
            .map(|j| ((i as usize * 131 + j * 17) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn ids() -> (UserId, ConversationId) {
    (
        UserId::new("fault-user").expect("uid"),
        ConversationId::new("fault-conv").expect("conversation"),
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    bucket: PathBuf,
    spool: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    Setup {
        bucket: dir.path().join("bucket"),
        spool: dir.path().join("spool"),
        _dir: dir,
    }
}

/// A service over the fs bucket, with `fault` (if any) and no store-level retries, so every
/// retry is the recorder's.
fn service(bucket: &Path, fault: Option<&FaultLayer>) -> ChunkService {
    let mut builder =
        Store::builder_from_uri(&format!("fs://{}", bucket.display())).expect("fs store");
    builder.options_mut().retry = RetryOptions::none();
    if let Some(fault) = fault {
        builder = builder.fault_layer(fault.clone());
    }
    let config = ServiceConfig {
        encryption: EncryptionPolicy::Disabled,
        ..ServiceConfig::default()
    };
    let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Standard));
    ChunkService::new(builder.build(), None, levels, config).expect("service")
}

/// 3 s batches, 3 attempts 1–4 ms apart, held batches due again at once.
fn config(spool: &Path) -> RecorderConfig {
    RecorderConfig {
        max_batch_duration: Duration::from_millis(BATCH * CHUNK_MS),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            held_retry_max: Duration::ZERO,
        },
        ..RecorderConfig::spool(spool)
    }
}

/// Files in the fs writers' temp directory: a failed write must leave none.
fn temp_files(bucket: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(bucket.join(FS_TMP_DIR)) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    }
}

/// Chunk index ranges of the conversation's objects, checked to be whole and disjoint, and
/// the conversation's merged PCM checked against chunks `0..count` in order.
async fn assert_stored_once(service: &ChunkService, bucket: &Path, count: u64) -> usize {
    let (uid, conv) = ids();
    let listing = service.list(&uid, &conv).await.expect("list");
    assert!(listing.foreign.is_empty(), "{:?}", listing.foreign);
    let mut ranges = Vec::new();
    for entry in &listing.chunks {
        assert_eq!(entry.kind, ObjectKind::Pack, "{}", entry.path);
        let first = (entry.start.as_millis() - T0) / CHUNK_MS;
        let end = (entry.end.as_millis() - T0) / CHUNK_MS; // exclusive
        ranges.push((first, end));
    }
    ranges.sort_unstable();
    let mut next = 0;
    for (first, end) in &ranges {
        assert_eq!(*first, next, "objects overlap or leave a hole: {ranges:?}");
        next = *end;
    }
    assert_eq!(next, count, "chunks stored: {ranges:?}");
    let pcm_all = service
        .download(
            &uid,
            &conv,
            &DownloadRequest::Timestamps((0..count).map(ts).collect()),
            DownloadOptions::default(),
        )
        .await
        .expect("download")
        .collect_vec()
        .await
        .expect("pcm");
    let expected: Vec<u8> = (0..count).flat_map(|i| pcm(i).to_vec()).collect();
    assert!(pcm_all == expected, "merged PCM differs");
    assert!(temp_files(bucket).is_empty(), "{:?}", temp_files(bucket));
    ranges.len()
}

async fn push(recorder: &Recorder, range: std::ops::Range<u64>) {
    let (uid, conv) = ids();
    for i in range {
        let durability = recorder
            .push(&uid, &conv, ts(i), pcm(i), None)
            .await
            .expect("push is acknowledged while uploads fail");
        assert_eq!(durability, Durability::Spooled);
    }
}

/// Asserts that nothing is visible in the bucket yet and no temp file is left.
async fn assert_nothing_stored(service: &ChunkService, bucket: &Path) {
    let (uid, conv) = ids();
    let listing = service.list(&uid, &conv).await.expect("list");
    assert!(listing.chunks.is_empty(), "{:?}", listing.chunks);
    assert!(listing.foreign.is_empty(), "{:?}", listing.foreign);
    assert!(temp_files(bucket).is_empty(), "{:?}", temp_files(bucket));
}

#[tokio::test]
async fn temporary_then_permanent_write_faults_lose_nothing() {
    let setup = setup();
    // Commits 0..4 fail temporarily, 4..8 permanently (like a 403), later ones pass.
    let fault = FaultLayer::new(
        FaultPlan::new()
            .rule(FaultRule::new(
                FaultOp::Close,
                FaultKind::Temporary,
                FaultSchedule::FirstN(4),
            ))
            .rule(FaultRule::new(
                FaultOp::Close,
                FaultKind::Permanent,
                FaultSchedule::FirstN(8),
            )),
    );
    let service = service(&setup.bucket, Some(&fault));
    let (recorder, _) = Recorder::open(service.clone(), config(&setup.spool))
        .await
        .expect("open");

    // Batch 1: three temporary failures (all its attempts), held; flush_due retries it at
    // once: one more temporary failure, then a permanent one, which is not retried.
    push(&recorder, 0..BATCH).await;
    let error = recorder.flush_due().await.expect_err("batch 1 is held");
    assert!(
        matches!(&error, RecorderError::Held { batches: 1, bytes, error } if *bytes == BATCH as usize * CHUNK_BYTES && !error.is_temporary()),
        "{error}"
    );
    assert_eq!(fault.injected(FaultOp::Close), 5);
    assert_eq!(recorder.stats().await.failed_attempts, 5);
    assert_eq!(spool_segments(&setup.spool), 1);
    assert_nothing_stored(&service, &setup.bucket).await;

    // Batch 2 fails permanently too; pushes are still acknowledged from the spool. A batch
    // that failed permanently is not retried by the ticks.
    push(&recorder, BATCH..2 * BATCH).await;
    let error = recorder.flush_due().await.expect_err("both batches held");
    assert!(
        matches!(&error, RecorderError::Held { batches: 2, .. }),
        "{error}"
    );
    recorder.flush_due().await.expect_err("still held");
    assert_eq!(fault.injected(FaultOp::Close), 6);
    assert_eq!(spool_segments(&setup.spool), 2);
    assert_nothing_stored(&service, &setup.bucket).await;

    // The operator retries while the fault lasts: both fail again.
    let error = recorder.retry_held().await.expect_err("both batches held");
    assert!(
        matches!(&error, RecorderError::Held { batches: 2, .. }),
        "{error}"
    );
    assert_eq!(fault.injected(FaultOp::Close), 8);

    // The fault has cleared: the next retry lands both held batches.
    push(&recorder, 2 * BATCH..2 * BATCH + 2).await;
    recorder.retry_held().await.expect("held batches land");
    assert_eq!(
        spool_segments(&setup.spool),
        1,
        "only the pending batch is left"
    );
    recorder.close().await.expect("close");
    assert_eq!(spool_segments(&setup.spool), 0);

    let stats = recorder.stats().await;
    assert_eq!(stats.flushes[&FlushReason::Retry].batches, 2);
    assert_eq!(stats.flushes[&FlushReason::Close].chunks, 2);
    assert_eq!(stats.held_batches, 0);
    let objects = assert_stored_once(&service, &setup.bucket, 2 * BATCH + 2).await;
    assert_eq!(objects, 3);
}

#[tokio::test]
async fn a_failed_write_mid_object_leaves_no_partial_object() {
    let setup = setup();
    // The first two pieces handed to the fs writer fail (temporarily): the attempts abort
    // their writers and the recorder retries.
    let fault = FaultLayer::new(FaultPlan::new().rule(FaultRule::new(
        FaultOp::Write,
        FaultKind::Temporary,
        FaultSchedule::FirstN(2),
    )));
    let service = service(&setup.bucket, Some(&fault));
    let (recorder, _) = Recorder::open(service.clone(), config(&setup.spool))
        .await
        .expect("open");
    push(&recorder, 0..BATCH).await;
    recorder
        .flush_due()
        .await
        .expect("retried within the flush");
    assert_eq!(fault.injected(FaultOp::Write), 2);
    assert_eq!(recorder.stats().await.failed_attempts, 2);
    recorder.close().await.expect("close");
    assert_eq!(assert_stored_once(&service, &setup.bucket, BATCH).await, 1);
}

#[tokio::test]
async fn batches_held_at_close_land_after_a_restart() {
    let setup = setup();
    let fault = FaultLayer::new(FaultPlan::new().rule(FaultRule::new(
        FaultOp::Close,
        FaultKind::Permanent,
        FaultSchedule::Always,
    )));
    {
        let service = service(&setup.bucket, Some(&fault));
        let (recorder, _) = Recorder::open(service.clone(), config(&setup.spool))
            .await
            .expect("open");
        push(&recorder, 0..BATCH + 3).await;
        let error = recorder.close().await.expect_err("nothing can be stored");
        assert!(
            matches!(&error, RecorderError::Held { batches: 2, bytes, .. } if *bytes == (BATCH as usize + 3) * CHUNK_BYTES),
            "{error}"
        );
        // Closing again retries, and fails again: still nothing dropped.
        assert!(matches!(
            recorder.close().await,
            Err(RecorderError::Held { batches: 2, .. })
        ));
        assert_nothing_stored(&service, &setup.bucket).await;
    }
    assert_eq!(spool_segments(&setup.spool), 2);

    // A new process, the store healthy again: the spool replays both batches.
    let service = service(&setup.bucket, None);
    let (recorder, report) = Recorder::open(service.clone(), config(&setup.spool))
        .await
        .expect("open");
    assert_eq!((report.batches, report.uploaded, report.held), (2, 2, 0));
    assert_eq!(report.chunks, BATCH as usize + 3);
    assert_eq!(spool_segments(&setup.spool), 0);
    recorder.close().await.expect("close");
    assert_eq!(
        assert_stored_once(&service, &setup.bucket, BATCH + 3).await,
        2
    );
}
