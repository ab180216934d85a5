//! The service's behaviour matrix: one set of `chunk-service` cases, each run on every backend.
//!
//! Every case in [`cases`] becomes one test per backend, named `<backend>::<case>`:
//!
//! - `fs`: a fresh temporary directory per case;
//! - `memory`: a fresh in-process store per case;
//! - `s3`, `gcs`, `azblob`: Garage, fake-gcs-server and Azurite, named by
//!   `CHUNKVAULT_TEST_S3_URI` / `_GCS_URI` / `_AZBLOB_URI` (`cargo xtask s3`, `gcs`, `azure`),
//!   each case under a root of its own with the options its server needs (`create_only=stat`
//!   on Garage and fake-gcs-server, `batch_delete=false` on fake-gcs-server; see
//!   `chunkvault_tests::backends`). An unset variable prints a skip line and passes, unless
//!   `CHUNKVAULT_REQUIRE_S3` / `_GCS` / `_AZBLOB` is `1` (CI), where it fails.
//!
//! The cases: Omi-layout batches end to end (both levels, listing with a foreign object,
//! ranged and timestamp downloads, delete, conversation delete, purge); packs plain and
//! sealed (ranges across packs, `check_object`, no plaintext in a sealed object); the spooling
//! recorder, also with the first uploads failing (the fault case opens the backend's URI again
//! with a fault layer and no store retries); compaction of Omi batches and packs with
//! unchanged downloads; deleting one chunk inside a pack; a user purge that leaves a user whose
//! id shares the prefix alone. `cargo xtask ci` prints the number of cases per backend.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::{ObjectKind, Timestamp};
use chunk_service::{
    BatchLayout, Chunk, ChunkService, CompactionOptions, DownloadOptions, DownloadRequest,
    Durability, EncryptionPolicy, FlushReason, InMemoryLevels, ObjectCheck, ProtectionLevel,
    Recorder, RecorderConfig, RecorderError, RetryPolicy, Sealing, ServiceConfig, ServiceError,
    UploadOptions,
};
use chunk_store::layers::{FaultKind, FaultLayer, FaultOp, FaultPlan, FaultRule, FaultSchedule};
use chunk_store::{ConversationId, PutMode, RetryOptions, Store, UserId, layout};
use chunkvault_tests::backends::TestBackend;
use chunkvault_tests::spool_segments;

const T0: u64 = 1_786_961_845_727;
/// The chunks of most cases: 0.5 s of 16 kHz PCM16 each.
const CHUNK_MS: u64 = 500;
const CHUNK_BYTES: usize = 16_000;
/// Half a chunk: the offset of ranges that start or end inside a chunk.
const HALF_MS: u64 = CHUNK_MS / 2;
const HALF_BYTES: usize = CHUNK_BYTES / 2;

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).expect("a valid timestamp")
}

/// The start of chunk `i`.
fn chunk_ts(i: u64) -> Timestamp {
    ts(T0 + i * CHUNK_MS)
}

/// `len` bytes of PCM from `seed` (xorshift): incompressible, so zstd stores it verbatim in a
/// plain pack, and different per seed, so misplaced audio is caught.
fn pcm(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Chunks `range`, back to back from [`T0`].
fn chunks(range: Range<u64>) -> Vec<Chunk> {
    range
        .map(|i| Chunk::new(chunk_ts(i), pcm(i, CHUNK_BYTES)))
        .collect()
}

/// The PCM of chunks `range`, concatenated.
fn pcm_of(range: Range<u64>) -> Vec<u8> {
    range.flat_map(|i| pcm(i, CHUNK_BYTES)).collect()
}

fn ids(uid: &str, conv: &str) -> (UserId, ConversationId) {
    (
        UserId::new(uid).expect("valid uid"),
        ConversationId::new(conv).expect("valid conversation id"),
    )
}

/// A service over `store` writing batches as `layout`, every user at `level` unless the
/// returned levels say otherwise. An `enhanced` service holds a key ring; a `standard` one holds
/// none (`EncryptionPolicy::Disabled`).
fn service(
    store: &Store,
    level: ProtectionLevel,
    layout: BatchLayout,
) -> (ChunkService, Arc<InMemoryLevels>) {
    let levels = Arc::new(InMemoryLevels::new(level));
    let (keyring, encryption) = if level == ProtectionLevel::Standard {
        (None, EncryptionPolicy::Disabled)
    } else {
        let secret = MasterSecret::new(b"omi_".repeat(16)).expect("a valid secret");
        (
            Some(Keyring::single(KeyId::new(1), secret)),
            EncryptionPolicy::Required,
        )
    };
    let config = ServiceConfig {
        batch_layout: layout,
        encryption,
        ..ServiceConfig::default()
    };
    let service = ChunkService::new(store.clone(), keyring, levels.clone(), config)
        .expect("the service starts");
    (service, levels)
}

/// The merged PCM of a download, whichever step reports an error.
async fn download(
    service: &ChunkService,
    uid: &UserId,
    conv: &ConversationId,
    request: DownloadRequest,
    fill_gaps: bool,
) -> Result<Vec<u8>, ServiceError> {
    let options = DownloadOptions {
        fill_gaps,
        ..DownloadOptions::default()
    };
    service
        .download(uid, conv, &request, options)
        .await?
        .collect_vec()
        .await
}

/// Uploads chunks `0..12` as three packs of four at `level`, and checks listing, a range across
/// two packs, a timestamp download across all three, `check_object` of each pack, and whether
/// the stored bytes hold a chunk's PCM in the clear.
async fn packs_at(b: &TestBackend, level: ProtectionLevel) {
    let name = b.name;
    let sealed = level == ProtectionLevel::Enhanced;
    let (service, _) = service(&b.store, level, BatchLayout::Pack);
    let (uid, conv) = ids("u1", "c1");
    let mut paths = Vec::new();
    for first in [0, 4, 8] {
        let report = service
            .upload_batch(
                &uid,
                &conv,
                chunks(first..first + 4),
                UploadOptions::default(),
            )
            .await
            .expect("upload");
        assert_eq!(report.objects_written, 1, "{name}");
        let sealing = if sealed {
            Sealing::Service
        } else {
            Sealing::Plaintext
        };
        assert_eq!(report.sealing, Some(sealing), "{name}");
        paths.extend(report.paths);
    }

    let listing = service.list(&uid, &conv).await.expect("list");
    assert!(listing.foreign.is_empty(), "{name}: {:?}", listing.foreign);
    let listed: Vec<&str> = listing.chunks.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(listed, paths, "{name}");
    for entry in &listing.chunks {
        assert_eq!(entry.kind, ObjectKind::Pack, "{name}: {}", entry.path);
        let check = service
            .check_object(&uid, &conv, &entry.path, &entry.name, entry.size)
            .await
            .unwrap_or_else(|e| panic!("{name}: {} checks: {e}", entry.path));
        let expected = ObjectCheck {
            chunks: 4,
            pcm_bytes: 4 * CHUNK_BYTES as u64,
            sealed,
        };
        assert_eq!(check, expected, "{name}: {}", entry.path);
    }

    // From the middle of chunk 2 (pack 0) to the middle of chunk 5 (pack 1).
    let range = DownloadRequest::Range {
        from: ts(T0 + 2 * CHUNK_MS + HALF_MS),
        to: ts(T0 + 5 * CHUNK_MS + HALF_MS),
    };
    let got = download(&service, &uid, &conv, range, true)
        .await
        .expect("range download");
    let all = pcm_of(2..6);
    let expected = &all[HALF_BYTES..all.len() - HALF_BYTES];
    assert!(
        got == expected,
        "{name}: range across two packs ({} bytes, expected {})",
        got.len(),
        expected.len()
    );

    // Chunk 3 (pack 0), chunk 4 (pack 1), chunk 10 (pack 2): the gap is silence.
    let stamps = DownloadRequest::Timestamps(vec![chunk_ts(3), chunk_ts(4), chunk_ts(10)]);
    let got = download(&service, &uid, &conv, stamps, true)
        .await
        .expect("timestamp download");
    let mut expected = pcm_of(3..5);
    expected.resize(expected.len() + 5 * CHUNK_BYTES, 0);
    expected.extend(pcm_of(10..11));
    assert!(
        got == expected,
        "{name}: timestamps across three packs ({} bytes, expected {})",
        got.len(),
        expected.len()
    );

    // The PCM is incompressible, so a plain pack holds it verbatim (which is what makes the
    // sealed pack's absence of it mean something).
    let stored = b.store.read(&paths[0]).await.expect("read the pack");
    let secret = &pcm(1, CHUNK_BYTES)[1_000..1_064];
    let in_clear = stored.windows(secret.len()).any(|w| w == secret);
    assert_eq!(
        in_clear, !sealed,
        "{name}: chunk 1's PCM in the stored object of a {level} pack"
    );
}

/// Pushes chunks `range` and checks that each is acknowledged from the spool.
async fn push(recorder: &Recorder, uid: &UserId, conv: &ConversationId, range: Range<u64>) {
    for i in range {
        let durability = recorder
            .push(uid, conv, chunk_ts(i), pcm(i, CHUNK_BYTES), None)
            .await
            .expect("push is acknowledged");
        assert_eq!(durability, Durability::Spooled, "chunk {i}");
    }
}

/// Checks that the conversation holds chunks `0..count` exactly once (packs whose chunk ranges
/// are whole, disjoint and cover `0..count`) and that their merged download is the input.
/// Returns the number of objects.
async fn assert_stored_once(
    name: &str,
    service: &ChunkService,
    uid: &UserId,
    conv: &ConversationId,
    count: u64,
) -> usize {
    let listing = service.list(uid, conv).await.expect("list");
    assert!(listing.foreign.is_empty(), "{name}: {:?}", listing.foreign);
    let mut ranges = Vec::new();
    for entry in &listing.chunks {
        assert_eq!(entry.kind, ObjectKind::Pack, "{name}: {}", entry.path);
        let (start, end) = (entry.start.as_millis() - T0, entry.end.as_millis() - T0);
        assert!(
            start % CHUNK_MS == 0 && end % CHUNK_MS == 0,
            "{name}: {} holds part of a chunk",
            entry.path
        );
        ranges.push((start / CHUNK_MS, end / CHUNK_MS));
    }
    ranges.sort_unstable();
    let mut next = 0;
    for (first, end) in &ranges {
        assert_eq!(*first, next, "{name}: overlap or hole: {ranges:?}");
        next = *end;
    }
    assert_eq!(next, count, "{name}: chunks stored: {ranges:?}");
    let all = DownloadRequest::Timestamps((0..count).map(chunk_ts).collect());
    let got = download(service, uid, conv, all, true)
        .await
        .expect("download");
    assert!(got == pcm_of(0..count), "{name}: merged PCM differs");
    ranges.len()
}

/// Every case, written once.
mod cases {
    use super::*;

    /// Omi's layout end to end: uploads of both levels, listing with a foreign object, ranged
    /// and timestamp downloads, delete by an interior timestamp, idempotent retry,
    /// conversation delete and a user purge that leaves a user whose id shares the prefix
    /// alone.
    pub(crate) async fn omi_batches_end_to_end(b: &TestBackend) {
        let name = b.name;
        let (service, levels) = service(&b.store, ProtectionLevel::Enhanced, BatchLayout::Omi);
        let uid = UserId::new("u1").expect("uid");
        let neighbour = UserId::new("u10").expect("uid");
        let conv = ConversationId::new("c1").expect("conversation");
        // 5 s chunks, as devices send them.
        let chunk_pcm = |seed: u64| pcm(seed, 160_000);

        // 12 chunks as an encrypted batch, then 2 standard singles after a 10 s hole.
        let batch: Vec<Chunk> = (0..12)
            .map(|i| Chunk::new(ts(T0 + i * 5_000), chunk_pcm(i)))
            .collect();
        let report = service
            .upload_batch(&uid, &conv, batch.clone(), UploadOptions::default())
            .await
            .expect("upload");
        assert_eq!(levels.lookups(), 1, "{name}: one level lookup per batch");
        assert_eq!(report.objects_written, 1);
        let again = service
            .upload_batch(&uid, &conv, batch.clone(), UploadOptions::default())
            .await
            .expect("retry");
        assert_eq!(
            again.objects_written, 0,
            "{name}: identical retry is a no-op"
        );
        for i in 0..2u64 {
            let chunk = Chunk::new(ts(T0 + 70_000 + i * 5_000), chunk_pcm(100 + i));
            service
                .upload_chunk(
                    &uid,
                    &conv,
                    chunk,
                    UploadOptions::at_level(ProtectionLevel::Standard),
                )
                .await
                .expect("upload single");
        }
        let stray = format!("chunks/{uid}/{conv}/notes.txt");
        b.store
            .put(&stray, b"hi".to_vec(), PutMode::Overwrite)
            .await
            .expect("put stray");
        service
            .upload_chunk(
                &neighbour,
                &conv,
                Chunk::new(ts(T0), chunk_pcm(7)),
                UploadOptions::default(),
            )
            .await
            .expect("upload neighbour");

        let listing = service.list(&uid, &conv).await.expect("list");
        let names: Vec<String> = listing.chunks.iter().map(|e| e.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "1786961845.727-1786961900.727.batch.enc",
                "1786961915.727.bin",
                "1786961920.727.bin"
            ],
            "{name}"
        );
        assert_eq!(listing.foreign.len(), 1, "{name}");
        assert_eq!(listing.foreign[0].path, stray);

        // Everything, gap-filled: 60 s batch + 10 s silence + 10 s.
        let all: Vec<Timestamp> = listing.chunks.iter().map(|e| e.start).collect();
        let merged = download(
            &service,
            &uid,
            &conv,
            DownloadRequest::Timestamps(all),
            true,
        )
        .await
        .expect("download");
        assert_eq!(merged.len(), 80 * 32_000, "{name}");
        assert_eq!(&merged[..160_000], &chunk_pcm(0)[..], "{name}");
        assert!(
            merged[60 * 32_000..70 * 32_000].iter().all(|&b| b == 0),
            "{name}: silence"
        );
        assert_eq!(&merged[75 * 32_000..], &chunk_pcm(101)[..], "{name}");

        // A range inside the batch is clipped to the range.
        let range = DownloadRequest::Range {
            from: ts(T0 + 7_500),
            to: ts(T0 + 12_500),
        };
        let clipped = download(&service, &uid, &conv, range, true)
            .await
            .expect("range download");
        let mut expected = chunk_pcm(1)[80_000..].to_vec();
        expected.extend_from_slice(&chunk_pcm(2)[..80_000]);
        assert!(clipped == expected, "{name}: clipped range");

        // Deleting an interior timestamp removes the whole batch (Omi would keep it).
        let deleted = service
            .delete(&uid, &conv, &[ts(T0 + 30_000)])
            .await
            .expect("delete");
        assert_eq!(deleted.deleted.len(), 1, "{name}");
        let first = DownloadRequest::Timestamps(vec![ts(T0)]);
        let gone = download(&service, &uid, &conv, first, true).await;
        assert!(
            matches!(gone, Err(ServiceError::NoAudio { .. })),
            "{name}: {gone:?}"
        );

        assert_eq!(
            service
                .delete_conversation(&uid, &conv)
                .await
                .expect("delete conversation"),
            3,
            "{name}"
        );
        let listing = service.list(&uid, &conv).await.expect("list");
        assert!(listing.chunks.is_empty(), "{name}");
        service
            .upload_chunk(
                &uid,
                &conv,
                Chunk::new(ts(T0), chunk_pcm(9)),
                UploadOptions::default(),
            )
            .await
            .expect("upload");
        assert_eq!(service.purge_user(&uid).await.expect("purge"), 1, "{name}");
        let listing = service.list(&neighbour, &conv).await.expect("list");
        assert_eq!(
            listing.chunks.len(),
            1,
            "{name}: a user sharing the id prefix is untouched"
        );
    }

    /// Plain packs: `standard`, no key ring.
    pub(crate) async fn packs_plain(b: &TestBackend) {
        packs_at(b, ProtectionLevel::Standard).await;
    }

    /// Sealed packs: `enhanced`, one key.
    pub(crate) async fn packs_sealed(b: &TestBackend) {
        packs_at(b, ProtectionLevel::Enhanced).await;
    }

    /// The spool preset with short batches: every push is acknowledged from the spool, and
    /// after `close` every chunk is stored once and the spool is empty.
    pub(crate) async fn recorder_with_spool(b: &TestBackend) {
        const BATCH: u64 = 4;
        const COUNT: u64 = 10;
        let name = b.name;
        let spool = tempfile::tempdir().expect("temp dir");
        let (service, _) = service(&b.store, ProtectionLevel::Standard, BatchLayout::Pack);
        let config = RecorderConfig {
            max_batch_duration: Duration::from_millis(BATCH * CHUNK_MS),
            ..RecorderConfig::spool(spool.path())
        };
        let (recorder, report) = Recorder::open(service.clone(), config).await.expect("open");
        assert_eq!(report.batches, 0, "{name}");
        let (uid, conv) = ids("rec-user", "rec-conv");
        push(&recorder, &uid, &conv, 0..COUNT).await;
        recorder.close().await.expect("close");
        assert_eq!(spool_segments(spool.path()), 0, "{name}");
        let stats = recorder.stats().await;
        assert_eq!(
            stats.flushes[&FlushReason::Full].chunks,
            2 * BATCH,
            "{name}"
        );
        assert_eq!(
            stats.flushes[&FlushReason::Close].chunks,
            COUNT % BATCH,
            "{name}"
        );
        let objects = assert_stored_once(name, &service, &uid, &conv, COUNT).await;
        assert_eq!(objects as u64, COUNT.div_ceil(BATCH), "{name}");
    }

    /// A store whose first commits fail temporarily and that does no retries of its own:
    /// pushes are still acknowledged, the recorder retries and then holds the batch
    /// (`flush_due` says so), and once the fault clears everything lands exactly once.
    pub(crate) async fn recorder_retries_a_failed_upload(b: &TestBackend) {
        const BATCH: u64 = 4;
        const ATTEMPTS: u32 = 2;
        // The upload the full batch starts, then flush_due's retry: every attempt fails.
        const FAILING: u64 = 2 * ATTEMPTS as u64;
        let name = b.name;
        let fault = FaultLayer::new(FaultPlan::new().rule(FaultRule::new(
            FaultOp::Close,
            FaultKind::Temporary,
            FaultSchedule::FirstN(FAILING),
        )));
        let mut builder = Store::builder_from_uri(&b.uri).expect("the backend's URI opens");
        builder.options_mut().retry = RetryOptions::none();
        let store = builder.fault_layer(fault.clone()).build();
        let (service, _) = service(&store, ProtectionLevel::Standard, BatchLayout::Pack);
        let spool = tempfile::tempdir().expect("temp dir");
        let config = RecorderConfig {
            max_batch_duration: Duration::from_millis(BATCH * CHUNK_MS),
            retry: RetryPolicy {
                max_attempts: ATTEMPTS,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(4),
                held_retry_max: Duration::ZERO,
            },
            ..RecorderConfig::spool(spool.path())
        };
        let (recorder, _) = Recorder::open(service.clone(), config).await.expect("open");
        let (uid, conv) = ids("fault-user", "fault-conv");

        push(&recorder, &uid, &conv, 0..BATCH).await;
        let error = recorder.flush_due().await.expect_err("the batch is held");
        assert!(
            matches!(&error, RecorderError::Held { batches: 1, bytes, error } if *bytes == BATCH as usize * CHUNK_BYTES && error.is_temporary()),
            "{name}: {error}"
        );
        assert_eq!(fault.injected(FaultOp::Close), FAILING, "{name}");
        assert_eq!(recorder.stats().await.failed_attempts, FAILING, "{name}");
        assert_eq!(spool_segments(spool.path()), 1, "{name}");
        let listing = service.list(&uid, &conv).await.expect("list");
        assert!(listing.chunks.is_empty(), "{name}: {:?}", listing.chunks);

        // The fault has cleared: the next tick lands the held batch, close the rest.
        push(&recorder, &uid, &conv, BATCH..BATCH + 2).await;
        recorder.flush_due().await.expect("the held batch lands");
        recorder.close().await.expect("close");
        assert_eq!(spool_segments(spool.path()), 0, "{name}");
        assert_eq!(fault.injected(FaultOp::Close), FAILING, "{name}");
        let stats = recorder.stats().await;
        assert_eq!(stats.flushes[&FlushReason::Retry].chunks, BATCH, "{name}");
        assert_eq!(stats.held_batches, 0, "{name}");
        let objects = assert_stored_once(name, &service, &uid, &conv, BATCH + 2).await;
        assert_eq!(objects, 2, "{name}");
    }

    /// Six Omi batches of two chunks (sealed), then four sealed packs of three: compaction
    /// writes fewer objects, and a range across both kinds and a list of timestamps download
    /// the same bytes before and after.
    pub(crate) async fn compaction_keeps_downloads(b: &TestBackend) {
        let name = b.name;
        let (omi, _) = service(&b.store, ProtectionLevel::Enhanced, BatchLayout::Omi);
        let (packs, _) = service(&b.store, ProtectionLevel::Enhanced, BatchLayout::Pack);
        let (uid, conv) = ids("u1", "c1");
        for first in (0..12).step_by(2) {
            omi.upload_batch(
                &uid,
                &conv,
                chunks(first..first + 2),
                UploadOptions::default(),
            )
            .await
            .expect("Omi batch");
        }
        for first in (12..24).step_by(3) {
            packs
                .upload_batch(
                    &uid,
                    &conv,
                    chunks(first..first + 3),
                    UploadOptions::default(),
                )
                .await
                .expect("pack");
        }
        let before = packs.list(&uid, &conv).await.expect("list").chunks;
        assert_eq!(before.len(), 10, "{name}");

        let range = || DownloadRequest::Range {
            from: ts(T0 + CHUNK_MS + HALF_MS),
            to: ts(T0 + 20 * CHUNK_MS + HALF_MS),
        };
        // Every chunk of the Omi batches named (0-1, 6-7), and single pack chunks. Compaction
        // promises identical *range* downloads (compact.rs); an instant names a whole Omi
        // batch but one pack chunk, and a `.batch.enc` becomes one pack chunk per frame, so a
        // list naming part of a sealed batch gets the whole batch before and less after.
        let named = [0, 1, 6, 7, 12, 16, 23];
        let stamps = || DownloadRequest::Timestamps(named.map(chunk_ts).to_vec());
        let range_before = download(&packs, &uid, &conv, range(), true)
            .await
            .expect("range");
        let all = pcm_of(1..21);
        assert!(
            range_before == all[HALF_BYTES..all.len() - HALF_BYTES],
            "{name}: the range is the input"
        );
        let stamps_before = download(&packs, &uid, &conv, stamps(), true)
            .await
            .expect("timestamps");
        let gap_filled: Vec<u8> = (0..24)
            .flat_map(|i| {
                if named.contains(&i) {
                    pcm(i, CHUNK_BYTES)
                } else {
                    vec![0; CHUNK_BYTES]
                }
            })
            .collect();
        assert!(
            stamps_before == gap_filled,
            "{name}: the named chunks, silence between"
        );

        let plan = packs
            .plan_compaction(&uid, &conv, &CompactionOptions::default())
            .await
            .expect("plan");
        assert!(!plan.groups.is_empty(), "{name}: {plan:?}");
        let report = packs.compact(&plan).await.expect("compact");
        assert!(report.skipped.is_empty(), "{name}: {:?}", report.skipped);
        let after = packs.list(&uid, &conv).await.expect("list").chunks;
        assert!(
            after.len() < before.len(),
            "{name}: {} objects after, {} before",
            after.len(),
            before.len()
        );
        assert_eq!(after.len() as u64, plan.cost.objects_after, "{name}");
        assert!(after.iter().all(|e| e.kind == ObjectKind::Pack), "{name}");

        let range_after = download(&packs, &uid, &conv, range(), true)
            .await
            .expect("range");
        assert!(range_after == range_before, "{name}: range changed");
        let stamps_after = download(&packs, &uid, &conv, stamps(), true)
            .await
            .expect("timestamps");
        assert!(
            stamps_after == stamps_before,
            "{name}: timestamps changed ({} bytes, {} before)",
            stamps_after.len(),
            stamps_before.len()
        );
    }

    /// One sealed pack of six chunks loses chunk 2: the pack is rewritten without it, and the
    /// other five download byte for byte.
    pub(crate) async fn delete_inside_a_pack(b: &TestBackend) {
        let name = b.name;
        let (service, _) = service(&b.store, ProtectionLevel::Enhanced, BatchLayout::Pack);
        let (uid, conv) = ids("u1", "c1");
        let old = service
            .upload_batch(&uid, &conv, chunks(0..6), UploadOptions::default())
            .await
            .expect("upload")
            .paths;
        let report = service
            .delete(&uid, &conv, &[chunk_ts(2)])
            .await
            .expect("delete");
        assert_eq!(report.deleted, old, "{name}");
        assert_eq!(report.written.len(), 1, "{name}: {report:?}");
        assert_eq!(b.store.stat(&old[0]).await.expect("stat"), None, "{name}");

        let listing = service.list(&uid, &conv).await.expect("list");
        let listed: Vec<&str> = listing.chunks.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(listed, report.written, "{name}");
        let entry = &listing.chunks[0];
        let check = service
            .check_object(&uid, &conv, &entry.path, &entry.name, entry.size)
            .await
            .expect("check");
        assert_eq!(
            (check.chunks, check.pcm_bytes),
            (5, 5 * CHUNK_BYTES as u64),
            "{name}"
        );

        let gone = DownloadRequest::Timestamps(vec![chunk_ts(2)]);
        let gone = download(&service, &uid, &conv, gone, true).await;
        assert!(
            matches!(gone, Err(ServiceError::NoAudio { .. })),
            "{name}: chunk 2 still downloads: {gone:?}"
        );
        let mut five = pcm_of(0..2);
        five.extend(pcm_of(3..6));
        let kept = DownloadRequest::Timestamps([0, 1, 3, 4, 5].map(chunk_ts).to_vec());
        let got = download(&service, &uid, &conv, kept, false)
            .await
            .expect("download");
        assert!(got == five, "{name}: the other five chunks");
        let whole = DownloadRequest::Range {
            from: chunk_ts(0),
            to: chunk_ts(6),
        };
        let got = download(&service, &uid, &conv, whole, true)
            .await
            .expect("download");
        let mut expected = pcm_of(0..2);
        expected.resize(3 * CHUNK_BYTES, 0);
        expected.extend(pcm_of(3..6));
        assert!(got == expected, "{name}: silence where chunk 2 was");
    }

    /// Users `u` and `u-2` (the prefix `chunks/u` is shared) each hold a pack, an Omi batch
    /// and an Omi single, and `u` also a foreign object: purging `u` removes all four of its
    /// objects and leaves every per-user prefix of `u` empty, and `u-2` untouched.
    pub(crate) async fn purge_with_verify(b: &TestBackend) {
        let name = b.name;
        let store = &b.store;
        let (packs, _) = service(store, ProtectionLevel::Standard, BatchLayout::Pack);
        let (omi, _) = service(store, ProtectionLevel::Standard, BatchLayout::Omi);
        let (uid, conv) = ids("u", "c1");
        let other = UserId::new("u-2").expect("uid");
        for user in [&uid, &other] {
            packs
                .upload_batch(user, &conv, chunks(0..3), UploadOptions::default())
                .await
                .expect("pack");
            omi.upload_batch(user, &conv, chunks(3..5), UploadOptions::default())
                .await
                .expect("Omi batch");
            let single = chunks(5..6).remove(0);
            omi.upload_chunk(user, &conv, single, UploadOptions::default())
                .await
                .expect("Omi single");
        }
        let stray = format!("chunks/{uid}/{conv}/notes.txt");
        store
            .put(&stray, b"hi".to_vec(), PutMode::Overwrite)
            .await
            .expect("put stray");
        let objects_of = |user: UserId| async move {
            let mut objects = Vec::new();
            for prefix in layout::user_prefixes(&user) {
                let listing = store.list_prefix(&prefix).await.expect("list prefix");
                objects.extend(listing.objects);
            }
            objects
        };
        let everything = DownloadRequest::Timestamps((0..6).map(chunk_ts).collect());
        let other_before = objects_of(other.clone()).await;
        assert_eq!(other_before.len(), 3, "{name}: {other_before:?}");
        let other_pcm = download(&packs, &other, &conv, everything.clone(), true)
            .await
            .expect("download");
        assert!(other_pcm == pcm_of(0..6), "{name}: u-2's audio");
        let owned = objects_of(uid.clone()).await;
        assert_eq!(owned.len(), 4, "{name}: {owned:?}");

        let purged = packs.purge_user(&uid).await.expect("purge");
        assert_eq!(purged, owned.len(), "{name}");
        let left = objects_of(uid.clone()).await;
        assert!(left.is_empty(), "{name}: left after the purge: {left:?}");
        let listing = packs.list(&uid, &conv).await.expect("list");
        assert!(
            listing.chunks.is_empty() && listing.foreign.is_empty(),
            "{name}: {listing:?}"
        );

        assert_eq!(objects_of(other.clone()).await, other_before, "{name}");
        let after = download(&packs, &other, &conv, everything, true)
            .await
            .expect("download");
        assert!(after == other_pcm, "{name}: u-2's audio changed");
    }
}

/// Generates one test per case and backend: `mod <backend> { async fn <case>() }`.
macro_rules! matrix {
    ($($case:ident),* $(,)?) => {
        matrix!(@backend fs, $($case),*);
        matrix!(@backend memory, $($case),*);
        matrix!(@backend s3, $($case),*);
        matrix!(@backend gcs, $($case),*);
        matrix!(@backend azblob, $($case),*);
    };
    (@backend $backend:ident, $($case:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = chunkvault_tests::backends::one(
                        stringify!($backend),
                        stringify!($case),
                    );
                    if let Some(backend) = backend {
                        super::cases::$case(&backend).await;
                    }
                }
            )*
        }
    };
}

matrix!(
    omi_batches_end_to_end,
    packs_plain,
    packs_sealed,
    recorder_with_spool,
    recorder_retries_a_failed_upload,
    compaction_keeps_downloads,
    delete_inside_a_pack,
    purge_with_verify,
);
