//! Omi's v2 span metadata (`omi-layout.md` §1.4, §4.5a) on every backend.
//!
//! The fixture `tests/fixtures/omi/spans/` is built by its `make.py` from the layout document:
//! batch objects as Omi writes them for a `standard` user, their custom metadata exactly as
//! Omi sets it, and the PCM Omi's download-and-merge returns for each request, computed by
//! following §4.5 step by step in Python floats. Here, on each backend:
//!
//! - S3, GCS and Azure store the metadata: listings carry the spans, downloads of spanned
//!   batches use Omi's span mode and equal Omi's output (with and without gap filling), a
//!   conversation mixing a spanned batch with an unspanned object falls back to names as Omi
//!   does, range downloads place spanned batches by their span, compaction leaves them alone,
//!   and `upload_spanned_batch` writes the three keys exactly as Omi does, once (an identical
//!   retry writes nothing; a different span or different audio is a conflict);
//! - fs and memory keep no metadata: the spanned write is refused with
//!   `StoreError::MetadataUnsupported` and nothing is written, and the same objects copied
//!   without their metadata download by names, as Omi's legacy mode does.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chunk_format::Timestamp;
use chunk_format::span::OmiSpan;
use chunk_service::{
    BatchLayout, Chunk, ChunkService, CompactionOptions, DownloadOptions, DownloadRequest,
    EncryptionPolicy, InMemoryLevels, ProtectionLevel, ServiceConfig, ServiceError, UploadOptions,
};
use chunk_store::{ConversationId, PutMode, Store, StoreError, UserId, UserMetadata};
use chunkvault_tests::{backends, fixtures_dir, sha256_hex};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Expected {
    uid: String,
    sample_rate: u32,
    requests: Vec<Request>,
}

#[derive(Debug, Deserialize)]
struct Request {
    conversation: String,
    timestamps: Vec<f64>,
    fill_gaps: bool,
    with_metadata: Digest,
    without_metadata: Option<Digest>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Digest {
    bytes: usize,
    sha256: String,
}

fn spans_dir() -> std::path::PathBuf {
    fixtures_dir().join("omi/spans")
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture parses")
}

/// Every object of the fixture bucket: (path, bytes), in path order.
fn bucket_objects() -> Vec<(String, Bytes)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Bytes)>) {
        for entry in std::fs::read_dir(dir).expect("fixture dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let bytes = std::fs::read(&path).expect("fixture object");
                out.push((rel.to_string_lossy().into_owned(), Bytes::from(bytes)));
            }
        }
    }
    let root = spans_dir().join("bucket");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

/// Loads the fixture into `store`: with its metadata where the store keeps metadata, else
/// (after checking that the spanned write is refused and writes nothing) without.
async fn load(store: &Store) {
    let metadata: BTreeMap<String, UserMetadata> = read_json(&spans_dir().join("metadata.json"));
    for (path, bytes) in bucket_objects() {
        match metadata.get(&path) {
            Some(meta) if store.supports_user_metadata() => {
                let mut writer = store
                    .writer_with_metadata(&path, PutMode::CreateOnly, meta)
                    .await
                    .expect("writer");
                writer.write(bytes).await.expect("write");
                writer.close().await.expect("close");
            }
            Some(meta) => {
                let refused = store
                    .writer_with_metadata(&path, PutMode::CreateOnly, meta)
                    .await;
                assert!(
                    matches!(refused, Err(StoreError::MetadataUnsupported { .. })),
                    "{}: {refused:?}",
                    store.scheme()
                );
                assert_eq!(store.stat(&path).await.expect("stat"), None);
                store
                    .put(&path, bytes, PutMode::CreateOnly)
                    .await
                    .expect("put");
            }
            None => store
                .put(&path, bytes, PutMode::CreateOnly)
                .await
                .expect("put"),
        }
    }
}

fn service(store: &Store) -> ChunkService {
    let config = ServiceConfig {
        batch_layout: BatchLayout::Omi,
        encryption: EncryptionPolicy::Disabled,
        ..ServiceConfig::default()
    };
    let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Standard));
    ChunkService::new(store.clone(), None, levels, config).expect("service")
}

async fn download(
    service: &ChunkService,
    uid: &UserId,
    conversation: &str,
    request: &DownloadRequest,
    fill_gaps: bool,
) -> Vec<u8> {
    let conversation = ConversationId::new(conversation).expect("conversation");
    let options = DownloadOptions {
        fill_gaps,
        ..DownloadOptions::default()
    };
    service
        .download(uid, &conversation, request, options)
        .await
        .expect("download")
        .collect_vec()
        .await
        .expect("pcm")
}

fn digest(pcm: &[u8]) -> Digest {
    Digest {
        bytes: pcm.len(),
        sha256: sha256_hex(pcm),
    }
}

/// Omi's requests from the fixture give Omi's output: span mode where the store kept the
/// spans, names where it did not or where Omi falls back.
#[tokio::test]
async fn span_mode_downloads_equal_omis() {
    let expected: Expected = read_json(&spans_dir().join("expected.json"));
    assert_eq!(expected.sample_rate, DownloadOptions::default().sample_rate);
    let uid = UserId::new(expected.uid.as_str()).expect("uid");
    let mut checked = 0;
    for backend in backends::all("omi-spans") {
        let store = &backend.store;
        load(store).await;
        let service = service(store);
        let spans = store.supports_user_metadata();
        for request in &expected.requests {
            let want = if spans {
                &request.with_metadata
            } else {
                match &request.without_metadata {
                    Some(want) => want,
                    None => continue,
                }
            };
            let timestamps = DownloadRequest::from_f64_timestamps(request.timestamps.clone())
                .expect("timestamps");
            let pcm = download(
                &service,
                &uid,
                &request.conversation,
                &timestamps,
                request.fill_gaps,
            )
            .await;
            assert_eq!(
                &digest(&pcm),
                want,
                "{} {} fill_gaps={}",
                backend.name,
                request.conversation,
                request.fill_gaps
            );
            checked += 1;
        }
    }
    // fs and memory: two requests each; every server: three.
    assert!(checked >= 4, "{checked}");
}

/// Listings carry the spans where the store keeps them; a range download places spanned
/// batches at their span's start (to the millisecond); compaction leaves them alone.
#[tokio::test]
async fn listings_ranges_and_compaction_follow_the_spans() {
    let objects = bucket_objects();
    let body = |name: &str| -> Bytes {
        objects
            .iter()
            .find(|(path, _)| path.ends_with(name))
            .map(|(_, bytes)| bytes.clone())
            .expect("fixture object")
    };
    let uid = UserId::new("span-user").expect("uid");
    let conv = ConversationId::new("c-span").expect("conversation");
    for backend in backends::all("omi-span-listing") {
        let store = &backend.store;
        load(store).await;
        let service = service(store);
        let listing = service.list_with_spans(&uid, &conv).await.expect("list");
        let spans: Vec<Option<f64>> = listing
            .chunks
            .iter()
            .map(|e| e.span.map(|s| s.start))
            .collect();
        if !store.supports_user_metadata() {
            assert_eq!(spans, [None; 4], "{}", backend.name);
            continue;
        }
        assert_eq!(
            spans,
            [
                Some(1000000000.0004),
                Some(1000000000.9903),
                Some(1000000003.0),
                Some(1000000003.50005)
            ],
            "{}",
            backend.name
        );
        // The plain listing reads no metadata.
        store.reset_op_counts();
        let plain = service.list(&uid, &conv).await.expect("list");
        assert!(plain.chunks.iter().all(|e| e.span.is_none()));
        assert_eq!(store.op_counts().stat, 0, "{}", store.op_counts());

        // [1000000000.000, 1000000005.000): the first at .000 (span .0004), the second at
        // .990 (span .9903; its first 10 ms overlap the first and are dropped), 1.010 s of
        // silence, the third at 3.000, the fourth at 3.500 (span 3.50005), then the end.
        let range = DownloadRequest::Range {
            from: Timestamp::from_millis(1_000_000_000_000).expect("ts"),
            to: Timestamp::from_millis(1_000_000_005_000).expect("ts"),
        };
        let pcm = download(&service, &uid, "c-span", &range, true).await;
        let mut want = Vec::new();
        want.extend_from_slice(&body("c-span/1000000000.000.batch.bin"));
        want.extend_from_slice(&body("c-span/1000000001.000.batch.bin")[320..]);
        want.extend(std::iter::repeat_n(0u8, 16_160 * 2));
        want.extend_from_slice(&body("c-span/1000000003.000.batch.bin"));
        want.extend_from_slice(&body("c-span/1000000003.500-1000000004.000.batch.bin"));
        assert_eq!(pcm.len(), want.len(), "{}", backend.name);
        assert!(pcm == want, "{}: range PCM differs", backend.name);

        let plan = service
            .plan_compaction(&uid, &conv, &CompactionOptions::default())
            .await
            .expect("plan");
        assert!(
            plan.groups.is_empty(),
            "{}: {:?}",
            backend.name,
            plan.groups
        );
    }
}

/// `upload_spanned_batch` writes Omi's three keys exactly, once; a retry with the same audio
/// and span writes nothing, anything different is a conflict; fs and memory refuse it.
#[tokio::test]
async fn spanned_uploads_write_omis_keys_once() {
    let uid = UserId::new("span-writer").expect("uid");
    let conv = ConversationId::new("c1").expect("conversation");
    let t0 = 1_786_961_845_727u64;
    let chunks: Vec<Chunk> = (0..3u64)
        .map(|i| {
            Chunk::new(
                Timestamp::from_millis(t0 + i * 500).expect("ts"),
                vec![i as u8 + 1; 16_000],
            )
        })
        .collect();
    let span = OmiSpan::new(1786961845.7271234, 24_000, 16_000).expect("span");
    let path = "chunks/span-writer/c1/1786961845.727-1786961846.727.batch.bin".to_owned();
    for backend in backends::all("omi-span-upload") {
        let store = &backend.store;
        let service = service(store);
        let upload = |chunks: Vec<Chunk>, span: OmiSpan| {
            let service = service.clone();
            let (uid, conv) = (uid.clone(), conv.clone());
            async move {
                service
                    .upload_spanned_batch(&uid, &conv, chunks, span, UploadOptions::default())
                    .await
            }
        };
        // A span that does not count the batch's samples is refused before any I/O.
        let short = OmiSpan::new(span.start, 23_999, 16_000).expect("span");
        assert!(matches!(
            upload(chunks.clone(), short).await,
            Err(ServiceError::InvalidInput(_))
        ));
        let first = upload(chunks.clone(), span).await;
        if !store.supports_user_metadata() {
            assert!(
                matches!(
                    &first,
                    Err(ServiceError::Store(StoreError::MetadataUnsupported { path: p, .. })) if *p == path
                ),
                "{}: {first:?}",
                backend.name
            );
            assert_eq!(store.stat(&path).await.expect("stat"), None);
            continue;
        }
        let first = first.expect("upload");
        assert_eq!(
            (first.paths.clone(), first.objects_written),
            (vec![path.clone()], 1)
        );
        let meta = store.stat_meta(&path).await.expect("stat").expect("stored");
        let want: UserMetadata = [
            ("v2_sample_rate", "16000"),
            ("v2_samples", "24000"),
            ("v2_start", "1786961845.7271235"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(meta.user, want, "{}", backend.name);
        assert_eq!(meta.size, 48_000);

        let retry = upload(chunks.clone(), span).await.expect("identical retry");
        assert_eq!(retry.objects_written, 0, "{}", backend.name);
        let moved = OmiSpan::new(span.start + 0.5, 24_000, 16_000).expect("span");
        assert!(
            matches!(
                upload(chunks.clone(), moved).await,
                Err(ServiceError::Conflict { .. })
            ),
            "{}",
            backend.name
        );
        let mut other = chunks.clone();
        other[1].pcm = Bytes::from(vec![9u8; 16_000]);
        assert!(
            matches!(
                upload(other, span).await,
                Err(ServiceError::Conflict { .. })
            ),
            "{}",
            backend.name
        );
        // Neither conflict touched the object.
        assert_eq!(
            store
                .stat_meta(&path)
                .await
                .expect("stat")
                .expect("kept")
                .user,
            want
        );
        let listing = service.list_with_spans(&uid, &conv).await.expect("list");
        assert_eq!(
            listing.chunks.iter().map(|e| e.span).collect::<Vec<_>>(),
            [Some(span)]
        );
    }
}
