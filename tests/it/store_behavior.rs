//! The store's behaviour suite: one set of async cases, run against every backend.
//!
//! - `fs`: a fresh temporary directory per case;
//! - `memory`: a fresh in-process store per case;
//! - `s3`, `gcs`, `azblob`: the servers named by `CHUNKVAULT_TEST_S3_URI` (Garage, set by
//!   `cargo xtask s3`), `CHUNKVAULT_TEST_GCS_URI` (fake-gcs-server, `cargo xtask gcs`) and
//!   `CHUNKVAULT_TEST_AZBLOB_URI` (Azurite, `cargo xtask azure`), each case under its own root
//!   so cases never see each other's objects. When a variable is unset its cases print a skip
//!   line and pass, unless `CHUNKVAULT_REQUIRE_S3` / `_GCS` / `_AZBLOB` is `1` (CI), where
//!   they fail. The harness adds the options a server needs (`chunkvault_tests::backends`):
//!   Garage and fake-gcs-server do not enforce create-only writes (`create_only=stat`), and
//!   fake-gcs-server cannot parse batch deletes (`batch_delete=false`).
//!
//! What an emulator lacks is checked where it shows, so a fixed emulator fails the test that
//! documents the gap: fake-gcs-server has no XML multipart upload (`streaming_writer_10_mib`
//! checks the refusal, then streams the 10 MiB through a resumable upload), nor a batch
//! delete it can parse (`fake_gcs_batch_delete_fails_as_documented`); which servers enforce
//! create-only writes is `emulators_enforce_create_only_as_documented`.

use bytes::Bytes;
use chunk_format::ObjectName;
use chunk_store::layers::{FaultKind, FaultLayer, FaultOp, FaultPlan, FaultRule, FaultSchedule};
use chunk_store::layout::{self, ConversationId, UserId};
use chunk_store::{PutMode, RetryOptions, Store, StoreError};
use chunkvault_tests::backends;
use futures::StreamExt;

const MIB: usize = 1024 * 1024;

/// One backend under test, with whatever keeps it alive.
struct Backend {
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// Fast retries so the fault cases take milliseconds, not seconds.
    fn from_store(store: Store, dir: Option<tempfile::TempDir>) -> Self {
        let mut options = store.options().clone();
        options.retry = RetryOptions::fast(3);
        Backend {
            store: store.with_options(options),
            _dir: dir,
        }
    }

    fn fs() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let uri = format!("fs://{}", dir.path().join("bucket").display());
        let store = Store::from_uri(&uri).expect("fs store opens");
        Self::from_store(store, Some(dir))
    }

    fn memory() -> Self {
        Self::from_store(
            Store::from_uri("memory://").expect("memory store opens"),
            None,
        )
    }

    /// A store on a real server (see `chunkvault_tests::backends`), under a root of its own.
    fn server(server: backends::Server, case: &str) -> Option<Self> {
        let store = backends::open(server, case)?;
        Some(Self::from_store(store, None))
    }

    /// The same backend with a fault layer added.
    fn with_faults(&self, rules: impl IntoIterator<Item = FaultRule>) -> (Store, FaultLayer) {
        let fault = FaultLayer::new(FaultPlan {
            rules: rules.into_iter().collect(),
        });
        (self.store.with_fault_layer(fault.clone()), fault)
    }

    fn scheme(&self) -> &'static str {
        self.store.scheme()
    }

    /// The fs store's root directory (fs backends only).
    fn fs_root(&self) -> std::path::PathBuf {
        let dir = self._dir.as_ref().expect("an fs backend");
        dir.path().join("bucket").canonicalize().expect("root")
    }
}

fn ids(uid: &str, conv: &str) -> (UserId, ConversationId) {
    (
        UserId::new(uid).expect("valid uid"),
        ConversationId::new(conv).expect("valid conversation id"),
    )
}

fn path_of(uid: &UserId, conv: &ConversationId, name: &str) -> String {
    let name: ObjectName = name.parse().expect("valid object name");
    layout::chunk_path(uid, conv, &name)
}

/// Deterministic non-repeating-ish bytes, so misplaced ranges are caught.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

async fn assert_absent(store: &Store, path: &str) {
    assert_eq!(
        store.stat(path).await.expect("stat works"),
        None,
        "{path} must not exist"
    );
    assert!(matches!(
        store.read(path).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Streams 10 MiB in 1 MiB pieces to `path`; returns the bytes written.
async fn write_10_mib(s: &Store, path: &str, mode: PutMode) -> Result<Vec<u8>, StoreError> {
    let mut w = s.writer(path, mode).await?;
    let mut expected = Vec::with_capacity(10 * MIB);
    for i in 0..10 {
        let piece = pattern(MIB, i);
        expected.extend_from_slice(&piece);
        w.write(piece).await?;
    }
    assert_eq!(w.close().await?, (10 * MIB) as u64);
    Ok(expected)
}

/// Reads `path` back whole and its last bytes by range.
async fn check_10_mib(s: &Store, path: &str, expected: &[u8]) {
    let got = s.read(path).await.expect("read");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "content differs");
    let tail = s
        .read_range(path, (10 * MIB - 3) as u64..(10 * MIB) as u64)
        .await
        .expect("tail");
    assert_eq!(tail, &expected[10 * MIB - 3..]);
}

/// The same store with another create-only mode.
fn with_create_only(s: &Store, mode: chunk_store::CreateOnlyMode) -> Store {
    let mut options = s.options().clone();
    options.create_only = mode;
    s.with_options(options)
}

/// Tells whether `err` is fake-gcs-server (1.54) refusing an XML API multipart upload:
/// `POST /<bucket>/<object>?uploads` answers 404, as the emulator implements the JSON API's
/// uploads (media, multipart, resumable) and no XML multipart. OpenDAL's GCS writer uses XML
/// multipart for an unconditional write of more than one 5 MiB part, which real GCS serves.
fn fake_gcs_lacks_xml_multipart(err: &StoreError) -> bool {
    let text = format!("{err:?}");
    text.contains("CreateMultipartUpload") && text.contains("code: 404")
}

/// Every case, written once.
mod cases {
    use super::*;

    pub(crate) async fn put_read_stat(b: &Backend) {
        let s = &b.store;
        let (uid, conv) = ids("u1", "c1");
        let path = path_of(&uid, &conv, "1000.000.bin");
        let data = pattern(100_000, 7);
        s.put(&path, data.clone(), PutMode::Overwrite)
            .await
            .expect("put");
        assert_eq!(s.read(&path).await.expect("read"), data);
        assert_eq!(s.stat(&path).await.expect("stat"), Some(100_000));
        assert!(s.exists(&path).await.expect("exists"));
        for range in [
            0..1,
            0..100_000,
            99_999..100_000,
            4_096..65_536,
            12_345..12_346,
        ] {
            let got = s
                .read_range(&path, range.clone())
                .await
                .expect("ranged read");
            assert_eq!(
                got,
                data.slice(range.start as usize..range.end as usize),
                "{range:?}"
            );
        }
        assert_eq!(
            s.read_range(&path, 5..5).await.expect("empty range"),
            Bytes::new()
        );
        for bad in [99_000..100_001, 100_000..100_010, 200_000..200_001] {
            let got = s.read_range(&path, bad.clone()).await;
            assert!(
                matches!(got, Err(StoreError::BadRange { .. })),
                "{bad:?}: {got:?}"
            );
        }
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = 10..5;
        assert!(matches!(
            s.read_range(&path, inverted).await,
            Err(StoreError::BadRange { .. })
        ));
        let missing = path_of(&uid, &conv, "2000.000.bin");
        assert_absent(s, &missing).await;
        assert!(!s.exists(&missing).await.expect("exists"));
        assert!(matches!(
            s.read_range(&missing, 0..1).await,
            Err(StoreError::NotFound { .. })
        ));
        // Empty objects are objects.
        let empty = path_of(&uid, &conv, "3000.000.bin");
        s.put(&empty, Bytes::new(), PutMode::CreateOnly)
            .await
            .expect("empty put");
        assert_eq!(s.stat(&empty).await.expect("stat"), Some(0));
        assert_eq!(s.read(&empty).await.expect("read"), Bytes::new());
        // Paths that could escape the bucket never reach the backend.
        for bad in ["../x", "/abs", "a//b", "chunks/u1/", ""] {
            assert!(
                matches!(
                    s.put(bad, Bytes::new(), PutMode::Overwrite).await,
                    Err(StoreError::BadPath { .. })
                ),
                "{bad:?}"
            );
        }
    }

    /// User metadata round-trips where the backend keeps it (S3, GCS, Azure: Omi's span keys,
    /// written with a streamed create-only writer as the service writes batches); fs and memory
    /// refuse the write with a typed error and write nothing.
    pub(crate) async fn user_metadata(b: &Backend) {
        let s = &b.store;
        let (uid, conv) = ids("u1", "c1");
        let path = path_of(&uid, &conv, "1000.000-1005.000.batch.bin");
        let metadata: chunk_store::UserMetadata = [
            ("v2_start", "1000.0004"),
            ("v2_samples", "160000"),
            ("v2_sample_rate", "16000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let opened = s
            .writer_with_metadata(&path, PutMode::CreateOnly, &metadata)
            .await;
        let keeps = matches!(b.scheme(), "s3" | "gcs" | "azblob");
        assert_eq!(s.supports_user_metadata(), keeps, "{}", b.scheme());
        if !keeps {
            let err = opened.expect_err("fs and memory keep no metadata");
            assert!(
                matches!(&err, StoreError::MetadataUnsupported { path: p, .. } if *p == path),
                "{err}"
            );
            assert!(err.to_string().contains(b.scheme()), "{err}");
            assert_absent(s, &path).await;
            let plain = path_of(&uid, &conv, "2000.000.bin");
            s.put(&plain, pattern(10, 1), PutMode::CreateOnly)
                .await
                .expect("put");
            let meta = s.stat_meta(&plain).await.expect("stat").expect("found");
            assert_eq!((meta.size, meta.user.len()), (10, 0));
            return;
        }
        let mut writer = opened.expect("writer with metadata");
        for piece in 0..4u8 {
            writer.write(pattern(1000, piece)).await.expect("write");
        }
        writer.close().await.expect("close");
        let meta = s.stat_meta(&path).await.expect("stat").expect("found");
        assert_eq!(meta.size, 4000);
        assert_eq!(meta.user, metadata, "{}", b.scheme());
        let plain = path_of(&uid, &conv, "2000.000.bin");
        s.put(&plain, pattern(10, 1), PutMode::CreateOnly)
            .await
            .expect("put");
        let meta = s.stat_meta(&plain).await.expect("stat").expect("found");
        assert!(meta.user.is_empty(), "{:?}", meta.user);
        assert_eq!(
            s.stat_meta(&path_of(&uid, &conv, "3000.000.bin"))
                .await
                .expect("stat"),
            None
        );
    }

    pub(crate) async fn create_only(b: &Backend) {
        let s = &b.store;
        let (uid, conv) = ids("u1", "c1");
        let path = path_of(&uid, &conv, "1000.000.bin");
        s.put(&path, pattern(10, 1), PutMode::CreateOnly)
            .await
            .expect("first create-only put");
        match s.put(&path, pattern(20, 2), PutMode::CreateOnly).await {
            Err(StoreError::AlreadyExists { path: p }) => assert_eq!(p, path),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(
            s.read(&path).await.expect("read"),
            pattern(10, 1),
            "untouched"
        );
        // A streaming create-only writer refuses too, at start, first piece or close.
        let refused = async {
            let mut w = s.writer(&path, PutMode::CreateOnly).await?;
            w.write(pattern(30, 3)).await?;
            w.close().await
        }
        .await;
        assert!(
            matches!(refused, Err(StoreError::AlreadyExists { .. })),
            "{refused:?}"
        );
        assert_eq!(
            s.read(&path).await.expect("read"),
            pattern(10, 1),
            "untouched"
        );
        // Overwrite replaces.
        s.put(&path, pattern(40, 4), PutMode::Overwrite)
            .await
            .expect("overwrite");
        assert_eq!(s.read(&path).await.expect("read"), pattern(40, 4));
    }

    pub(crate) async fn streaming_writer_pieces(b: &Backend) {
        let s = &b.store;
        let (uid, conv) = ids("u1", "c1");
        let path = path_of(&uid, &conv, "1000.000-1010.000.batch.bin");
        let pieces: Vec<Bytes> = (0..5).map(|i| pattern(160_000 + i, i as u8)).collect();
        let mut w = s.writer(&path, PutMode::CreateOnly).await.expect("writer");
        for piece in &pieces {
            w.write(piece.clone()).await.expect("write piece");
        }
        assert_eq!(
            w.written(),
            pieces.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        let size = w.close().await.expect("close");
        let expected: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(size, expected.len() as u64);
        assert_eq!(s.read(&path).await.expect("read"), Bytes::from(expected));
    }

    pub(crate) async fn streaming_writer_10_mib(b: &Backend) {
        let (uid, conv) = ids("u1", "c1");
        let path = path_of(&uid, &conv, "1000.000-1600.000.batch.bin");
        if b.scheme() == "gcs" {
            // fake-gcs-server has no XML API multipart upload, which OpenDAL's GCS writer uses
            // for an unconditional write of more than one 5 MiB part (see
            // `fake_gcs_lacks_xml_multipart`): the overwrite fails with exactly that.
            let refused = write_10_mib(&b.store, &path, PutMode::Overwrite).await;
            assert!(
                refused.as_ref().is_err_and(fake_gcs_lacks_xml_multipart),
                "fake-gcs-server takes XML multipart uploads now? {refused:?}"
            );
            assert_absent(&b.store, &path).await;
            // The same 10 MiB through GCS's other streaming upload: a native create-only
            // writer (what real GCS, which enforces `ifGenerationMatch=0`, uses for every
            // create-only write) sends a resumable upload, which the emulator has. Its request
            // count is not the multipart one and is not checked here.
            let native = with_create_only(&b.store, chunk_store::CreateOnlyMode::Native);
            let expected = write_10_mib(&native, &path, PutMode::CreateOnly)
                .await
                .expect("resumable upload");
            check_10_mib(&native, &path, &expected).await;
            return;
        }
        let s = &b.store;
        s.reset_op_counts();
        let before = s.op_counts();
        let expected = write_10_mib(s, &path, PutMode::Overwrite)
            .await
            .expect("write");
        let counts = s.op_counts() - before;
        // fs and memory: one object write. S3: the 1 MiB pieces are buffered into two 5 MiB
        // parts: initiate + 2 parts + complete. Azure: the same two parts as blocks, then the
        // block list (chunk-store asks for 5 MiB parts; unbuffered, each piece was a block).
        let expected_writes = match b.scheme() {
            "s3" => 4,
            "azblob" => 3,
            _ => 1,
        };
        assert_eq!(counts.write, expected_writes, "{counts}");
        check_10_mib(s, &path, &expected).await;
    }

    pub(crate) async fn writer_abort_and_drop_leave_nothing(b: &Backend) {
        let s = &b.store;
        let (uid, conv) = ids("u1", "c1");
        // Small (single PUT on S3) and large (multipart on S3) writers.
        for (name, pieces) in [("1000.000.batch.bin", 2), ("2000.000.batch.bin", 7)] {
            let path = path_of(&uid, &conv, name);
            let mut w = s.writer(&path, PutMode::Overwrite).await.expect("writer");
            for i in 0..pieces {
                w.write(pattern(MIB, i)).await.expect("write");
            }
            w.abort().await.expect("abort");
            assert_absent(s, &path).await;

            let dropped = path_of(&uid, &conv, &name.replace(".batch", "-9000.000.batch"));
            let mut w = s
                .writer(&dropped, PutMode::Overwrite)
                .await
                .expect("writer");
            for i in 0..pieces {
                w.write(pattern(MIB, i)).await.expect("write");
            }
            drop(w);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert_absent(s, &dropped).await;
        }
        let listing = s.list_conversation(&uid, &conv).await.expect("list");
        assert!(
            listing.objects.is_empty() && listing.foreign.is_empty(),
            "{listing:?}"
        );
        assert!(
            s.list_prefix("")
                .await
                .expect("list all")
                .objects
                .is_empty()
        );
    }

    pub(crate) async fn writer_fault_on_write_leaves_nothing(b: &Backend) {
        let (uid, conv) = ids("u1", "c1");
        let path = path_of(&uid, &conv, "1000.000-1055.000.batch.bin");
        let (s, fault) = b.with_faults([FaultRule::new(
            FaultOp::Write,
            FaultKind::Permanent,
            FaultSchedule::AfterN(1),
        )]);
        let outcome = async {
            let mut w = s.writer(&path, PutMode::CreateOnly).await?;
            for i in 0..12 {
                w.write(pattern(MIB, i)).await?;
            }
            w.close().await
        }
        .await;
        let err = outcome.expect_err("the second backend write fails");
        assert!(!err.is_temporary(), "{err}");
        assert!(err.to_string().contains(&path), "{err}");
        assert_eq!(fault.injected(FaultOp::Write), 1, "permanent: not retried");
        assert_absent(&b.store, &path).await;
        assert!(
            b.store
                .list_prefix("")
                .await
                .expect("list")
                .objects
                .is_empty()
        );

        // A writer aborted by an error refuses later pieces.
        let (s, _fault) = b.with_faults([FaultRule::new(
            FaultOp::Write,
            FaultKind::Permanent,
            FaultSchedule::Always,
        )]);
        let mut w = s.writer(&path, PutMode::Overwrite).await.expect("writer");
        let mut failed = false;
        for i in 0..12 {
            if w.write(pattern(MIB, i)).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            assert!(matches!(
                w.write(pattern(1, 0)).await,
                Err(StoreError::WriterAborted { .. })
            ));
        } else {
            assert!(
                w.close().await.is_err(),
                "close flushes the last part and fails"
            );
        }
        assert_absent(&b.store, &path).await;
    }

    pub(crate) async fn writer_fault_on_close_leaves_nothing(b: &Backend) {
        let (uid, conv) = ids("u1", "c1");
        // On fake-gcs-server the 7 MiB overwrite would fail before its close, at the XML
        // multipart upload the emulator lacks (see `fake_gcs_lacks_xml_multipart`); native
        // create-only writers send resumable uploads instead, which reach the close. (The
        // options first: `with_options` rebuilds the store without a fault layer.)
        let (store, mode) = if b.scheme() == "gcs" {
            (
                with_create_only(&b.store, chunk_store::CreateOnlyMode::Native),
                PutMode::CreateOnly,
            )
        } else {
            (b.store.clone(), PutMode::Overwrite)
        };
        let fault = FaultLayer::new(FaultPlan {
            rules: vec![FaultRule::new(
                FaultOp::Close,
                FaultKind::Permanent,
                FaultSchedule::Always,
            )],
        });
        let s = store.with_fault_layer(fault.clone());
        for (name, pieces) in [("1000.000.batch.bin", 2), ("2000.000.batch.bin", 7)] {
            let path = path_of(&uid, &conv, name);
            let mut w = s.writer(&path, mode).await.expect("writer");
            for i in 0..pieces {
                w.write(pattern(MIB, i)).await.expect("write");
            }
            let err = w.close().await.expect_err("close fails");
            assert!(matches!(err, StoreError::Backend { .. }), "{err}");
            assert!(!err.is_temporary(), "{err}");
            assert_absent(&b.store, &path).await;
        }
        assert_eq!(fault.calls(FaultOp::Close), 2, "one attempt per writer");
        assert!(
            b.store
                .list_prefix("")
                .await
                .expect("list")
                .objects
                .is_empty()
        );
    }

    pub(crate) async fn temporary_faults_are_retried(b: &Backend) {
        let (uid, conv) = ids("u1", "c1");
        let path = path_of(&uid, &conv, "1000.000.bin");
        let (s, fault) = b.with_faults([
            FaultRule::new(
                FaultOp::Close,
                FaultKind::Temporary,
                FaultSchedule::FirstN(1),
            ),
            FaultRule::new(
                FaultOp::Read,
                FaultKind::Temporary,
                FaultSchedule::FirstN(2),
            ),
            FaultRule::new(
                FaultOp::Stat,
                FaultKind::Temporary,
                FaultSchedule::FirstN(1),
            ),
            FaultRule::new(
                FaultOp::List,
                FaultKind::Temporary,
                FaultSchedule::FirstN(1),
            ),
            FaultRule::new(
                FaultOp::Delete,
                FaultKind::Temporary,
                FaultSchedule::FirstN(1),
            ),
        ]);
        s.put(&path, pattern(1000, 1), PutMode::Overwrite)
            .await
            .expect("put succeeds after one retry");
        assert_eq!(fault.calls(FaultOp::Close), 2);
        assert_eq!(s.read(&path).await.expect("read"), pattern(1000, 1));
        assert_eq!(fault.injected(FaultOp::Read), 2);
        assert_eq!(s.stat(&path).await.expect("stat"), Some(1000));
        assert_eq!(fault.calls(FaultOp::Stat), 2);
        let listing = s.list_conversation(&uid, &conv).await.expect("list");
        assert_eq!(listing.objects.len(), 1);
        assert_eq!(fault.injected(FaultOp::List), 1);
        assert_eq!(s.delete_many([&path]).await.expect("delete"), 1);
        assert_eq!(fault.calls(FaultOp::Delete), 2);
        assert_absent(&b.store, &path).await;
    }

    pub(crate) async fn permanent_faults_are_not_retried(b: &Backend) {
        let (uid, conv) = ids("u1", "c1");
        let path = path_of(&uid, &conv, "1000.000.bin");
        b.store
            .put(&path, pattern(10, 1), PutMode::Overwrite)
            .await
            .expect("put");
        let (s, fault) = b.with_faults([
            FaultRule::new(FaultOp::Close, FaultKind::Permanent, FaultSchedule::Always),
            FaultRule::new(FaultOp::Read, FaultKind::Permanent, FaultSchedule::Always),
            FaultRule::new(FaultOp::Delete, FaultKind::Permanent, FaultSchedule::Always),
        ]);
        let other = path_of(&uid, &conv, "2000.000.bin");
        let err = s
            .put(&other, pattern(10, 2), PutMode::Overwrite)
            .await
            .expect_err("put fails");
        assert!(!err.is_temporary(), "{err}");
        assert_eq!(fault.calls(FaultOp::Close), 1, "exactly one attempt");
        assert_absent(&b.store, &other).await;
        let err = s.read(&path).await.expect_err("read fails");
        assert!(!err.is_temporary(), "{err}");
        assert_eq!(fault.calls(FaultOp::Read), 1);
        let err = s.delete_many([&path]).await.expect_err("delete fails");
        assert!(!err.is_temporary(), "{err}");
        assert_eq!(fault.calls(FaultOp::Delete), 1);
        assert!(b.store.exists(&path).await.expect("exists"), "still there");
        // Temporary faults that never stop exhaust the retries and stay temporary.
        let (s, fault) = b.with_faults([FaultRule::new(
            FaultOp::Stat,
            FaultKind::Temporary,
            FaultSchedule::Always,
        )]);
        let err = s.stat(&path).await.expect_err("stat keeps failing");
        assert!(err.is_temporary(), "{err}");
        assert_eq!(fault.calls(FaultOp::Stat), 4, "first attempt + 3 retries");
    }

    pub(crate) async fn listing_sorts_and_separates_foreign(b: &Backend) {
        let s = &b.store;
        let (uid, conv) = ids("u1", "conv-e");
        let prefix = layout::chunks_prefix(&uid, &conv);
        // Written in an order that is neither sorted nor reversed.
        let audio = [
            ("1005.000.opus.enc", 11),
            ("1000.000.opus", 12),
            ("1000.000-1005.000.batch.bin", 13),
            ("1000.000.bin", 14),
            ("999.999.enc", 15),
            ("1000.000-1010.000.pack", 16),
            ("1000.000.enc", 17),
        ];
        let foreign = [
            ("notes.txt", 3),
            ("1000.000.meta.json", 4),
            ("abc.bin", 5),
            ("sub/1000.000.bin", 6),
        ];
        for (name, len) in audio.iter().chain(foreign.iter()) {
            s.put(
                &format!("{prefix}{name}"),
                pattern(*len, 0),
                PutMode::CreateOnly,
            )
            .await
            .expect("put");
        }
        // Neighbours that must not appear: a conversation sharing the prefix characters,
        // another user sharing them, and the conversation's other prefixes.
        let (uid10, conv_e2) = ids("u10", "conv-e2");
        for other in [
            layout::chunks_prefix(&uid, &conv_e2),
            layout::chunks_prefix(&uid10, &conv),
            layout::audio_prefix(&uid, &conv),
            layout::merged_prefix(&uid, &conv),
        ] {
            s.put(
                &format!("{other}1000.000.bin"),
                pattern(1, 0),
                PutMode::Overwrite,
            )
            .await
            .expect("put neighbour");
        }
        let listing = s.list_conversation(&uid, &conv).await.expect("list");
        let got: Vec<(String, u64, bool)> = listing
            .objects
            .iter()
            .map(|o| {
                (
                    o.path.trim_start_matches(&prefix).to_owned(),
                    o.size,
                    o.is_batch(),
                )
            })
            .collect();
        let expected: Vec<(String, u64, bool)> = [
            ("999.999.enc", 15, false),
            ("1000.000-1005.000.batch.bin", 13, true),
            ("1000.000-1010.000.pack", 16, true),
            ("1000.000.bin", 14, false),
            ("1000.000.enc", 17, false),
            ("1000.000.opus", 12, false),
            ("1005.000.opus.enc", 11, false),
        ]
        .into_iter()
        .map(|(n, l, batch)| (n.to_owned(), l, batch))
        .collect();
        assert_eq!(got, expected);
        for object in &listing.objects {
            assert_eq!(
                object.name.to_string(),
                object.path.trim_start_matches(&prefix)
            );
        }
        let foreign_got: Vec<(String, u64)> = listing
            .foreign
            .iter()
            .map(|f| (f.path.trim_start_matches(&prefix).to_owned(), f.size))
            .collect();
        assert_eq!(
            foreign_got,
            [
                ("1000.000.meta.json".to_owned(), 4),
                ("abc.bin".to_owned(), 5),
                ("notes.txt".to_owned(), 3),
                ("sub/".to_owned(), 0),
            ]
        );
        assert!(listing.foreign.iter().all(|f| !f.reason.is_empty()));
        // An empty or missing conversation lists as empty.
        let (_, nobody) = ids("u1", "nobody");
        assert_eq!(
            s.list_conversation(&uid, &nobody).await.expect("list"),
            Default::default()
        );
    }

    pub(crate) async fn paging_many_objects(b: &Backend) {
        let s = &b.store;
        let count: usize = match b.scheme() {
            "memory" => 100_000,
            "fs" => 3_000,
            _ => 2_100,
        };
        let (uid, conv) = ids("u1", "many");
        let prefix = layout::chunks_prefix(&uid, &conv);
        // Names 5 s apart, written in a scrambled order (multiplying by a unit mod count).
        let name_of = |i: usize| {
            let ms = 1_700_000_000_000u64 + 5_000 * i as u64;
            format!("{}.{:03}.bin", ms / 1000, ms % 1000)
        };
        let stride = 7919 % count;
        futures::stream::iter(0..count)
            .map(|k| {
                let path = format!("{prefix}{}", name_of((k * stride) % count));
                async move {
                    s.put(&path, Bytes::from_static(b"x"), PutMode::Overwrite)
                        .await
                }
            })
            .buffer_unordered(32)
            .for_each(|r| async move { r.expect("put") })
            .await;
        s.reset_op_counts();
        let listing = s.list_conversation(&uid, &conv).await.expect("list");
        assert_eq!(listing.objects.len(), count);
        assert!(listing.foreign.is_empty());
        for (i, object) in listing.objects.iter().enumerate() {
            assert_eq!(object.path, format!("{prefix}{}", name_of(i)));
        }
        let counts = s.op_counts();
        match b.scheme() {
            "s3" | "gcs" => assert_eq!(counts.list, 3, "2100 keys: three 1000-key pages"),
            "azblob" => assert_eq!(counts.list, 1, "2100 keys: one 5000-key page"),
            _ => assert_eq!(counts.list, 1),
        }
        assert_eq!(
            s.list_prefix(&prefix)
                .await
                .expect("list prefix")
                .objects
                .len(),
            count
        );
    }

    pub(crate) async fn delete_many_and_purge(b: &Backend) {
        let s = &b.store;
        let (u1, c) = ids("u1", "c");
        let (u10, _) = ids("u10", "c");
        let mut u1_paths = Vec::new();
        for name in ["1000.000.bin", "1005.000.bin", "1010.000.opus", "notes.txt"] {
            u1_paths.push(format!("{}{name}", layout::chunks_prefix(&u1, &c)));
        }
        u1_paths.push(format!(
            "{}speaker-embeddings.v1.enc",
            layout::audio_prefix(&u1, &c)
        ));
        u1_paths.push(format!("{}x.wav", layout::merged_prefix(&u1, &c)));
        let u10_paths = [
            format!("{}1000.000.bin", layout::chunks_prefix(&u10, &c)),
            format!("{}x.wav", layout::merged_prefix(&u10, &c)),
        ];
        for path in u1_paths.iter().chain(u10_paths.iter()) {
            s.put(path, pattern(5, 0), PutMode::Overwrite)
                .await
                .expect("put");
        }
        // Batch delete: exactly the named objects; missing ones are not errors.
        let gone = [
            u1_paths[0].clone(),
            u1_paths[1].clone(),
            "chunks/u1/c/9.000.bin".to_owned(),
        ];
        assert_eq!(s.delete_many(gone.iter()).await.expect("delete_many"), 3);
        for path in &gone {
            assert_absent(s, path).await;
        }
        assert!(s.exists(&u1_paths[2]).await.expect("exists"));
        assert_eq!(
            s.delete_many(Vec::<String>::new()).await.expect("nothing"),
            0
        );
        assert!(matches!(
            s.delete_many(["ok/path", "../escape"]).await,
            Err(StoreError::BadPath { .. })
        ));

        // Purge: everything under each user prefix; u10 shares the characters, not the prefix.
        let mut deleted = 0;
        for prefix in layout::user_prefixes(&u1) {
            deleted += s.purge_prefix(&prefix).await.expect("purge").deleted;
        }
        assert_eq!(deleted, 4);
        for prefix in layout::user_prefixes(&u1) {
            assert!(
                s.list_prefix(&prefix)
                    .await
                    .expect("list")
                    .objects
                    .is_empty(),
                "{prefix}"
            );
        }
        for path in &u10_paths {
            assert!(s.exists(path).await.expect("exists"), "{path} survives");
        }
        let all: Vec<String> = s
            .list_prefix("")
            .await
            .expect("list all")
            .objects
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let mut expected = u10_paths.to_vec();
        expected.sort();
        assert_eq!(all, expected);
        // Purges refuse prefixes that could match siblings or the whole bucket.
        for bad in ["chunks/u1", "", "/", "chunks/../"] {
            assert!(
                matches!(s.purge_prefix(bad).await, Err(StoreError::BadPath { .. })),
                "{bad:?}"
            );
        }
        if b.scheme() == "fs" {
            assert!(
                s.list_prefix("")
                    .await
                    .expect("list")
                    .objects
                    .iter()
                    .all(|(p, _)| !p.contains("/u1/")),
                "no directory named after the purged user"
            );
        }
    }

    pub(crate) async fn purge_detects_survivors(b: &Backend) {
        let (u1, c) = ids("u1", "c");
        let prefix = format!("chunks/{u1}/");
        for name in ["1000.000.bin", "1005.000.bin"] {
            b.store
                .put(
                    &format!("{}{name}", layout::chunks_prefix(&u1, &c)),
                    pattern(3, 0),
                    PutMode::Overwrite,
                )
                .await
                .expect("put");
        }
        // A backend that acknowledges deletes it never performs.
        let (s, fault) = b.with_faults([FaultRule::new(
            FaultOp::Delete,
            FaultKind::Lost,
            FaultSchedule::FirstN(1),
        )]);
        match s.purge_prefix(&prefix).await {
            Err(StoreError::PurgeIncomplete {
                prefix: p,
                remaining,
                sample,
            }) => {
                assert_eq!(p, prefix);
                assert_eq!(remaining, 1);
                assert_eq!(sample.len(), 1);
                assert!(sample[0].starts_with(&prefix));
            }
            other => panic!("expected PurgeIncomplete, got {other:?}"),
        }
        assert_eq!(fault.injected(FaultOp::Delete), 1);
        // The next purge finishes the job.
        assert_eq!(s.purge_prefix(&prefix).await.expect("purge").deleted, 1);
    }

    pub(crate) async fn op_counts(b: &Backend) {
        let s = &b.store;
        let (uid, conv) = ids("u1", "c");
        let a = path_of(&uid, &conv, "1000.000.bin");
        let c = path_of(&uid, &conv, "1005.000.bin");
        s.reset_op_counts();
        assert_eq!(s.op_counts(), Default::default());
        s.put(&a, pattern(100, 0), PutMode::Overwrite)
            .await
            .expect("put");
        s.put(&c, pattern(100, 0), PutMode::Overwrite)
            .await
            .expect("put");
        let counts = s.op_counts();
        assert_eq!(
            (counts.write, counts.read, counts.list),
            (2, 0, 0),
            "{counts}"
        );
        s.reset_op_counts();
        s.read(&a).await.expect("read");
        s.read_range(&a, 10..20).await.expect("ranged read");
        s.stat(&a).await.expect("stat");
        let counts = s.op_counts();
        assert_eq!(counts.write, 0, "{counts}");
        assert_eq!(counts.read, 2, "one GET each: {counts}");
        assert_eq!(counts.stat, 1, "{counts}");
        assert_eq!(counts.class_b(), 3);
        s.reset_op_counts();
        s.list_conversation(&uid, &conv).await.expect("list");
        let counts = s.op_counts();
        assert_eq!(counts.list, 1, "{counts}");
        // Sizes come with the listing (memory's come from stats inside OpenDAL, below the
        // counting layer: memory requests cost nothing).
        assert_eq!(counts.stat, 0, "{counts}");
        assert_eq!(counts.class_a(), 1);
        s.reset_op_counts();
        s.delete_many([&a, &c]).await.expect("delete");
        let counts = s.op_counts();
        assert_eq!(counts.delete, 2, "{counts}");
        assert_eq!(counts.class_a() + counts.class_b(), 0, "{counts}");
        // Create-only in stat mode costs a stat before the write.
        s.reset_op_counts();
        s.put(&a, pattern(1, 0), PutMode::CreateOnly)
            .await
            .expect("put");
        let counts = s.op_counts();
        assert_eq!(counts.write, 1, "{counts}");
        let stat_first = s.options().create_only == chunk_store::CreateOnlyMode::StatThenWrite;
        assert_eq!(counts.stat, u64::from(stat_first), "{counts}");
    }
}

/// Generates one `#[tokio::test]` per case and backend.
macro_rules! behaviour {
    ($($case:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(&super::Backend::fs()).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(&super::Backend::memory()).await;
                }
            )*
        }
        behaviour!(@server s3, S3, $($case),*);
        behaviour!(@server gcs, GCS, $($case),*);
        behaviour!(@server azblob, AZBLOB, $($case),*);
    };
    (@server $module:ident, $server:ident, $($case:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = chunkvault_tests::backends::$server;
                    if let Some(backend) = super::Backend::server(server, stringify!($case)) {
                        super::cases::$case(&backend).await;
                    }
                }
            )*
        }
    };
}

behaviour!(
    put_read_stat,
    user_metadata,
    create_only,
    streaming_writer_pieces,
    streaming_writer_10_mib,
    writer_abort_and_drop_leave_nothing,
    writer_fault_on_write_leaves_nothing,
    writer_fault_on_close_leaves_nothing,
    temporary_faults_are_retried,
    permanent_faults_are_not_retried,
    listing_sorts_and_separates_foreign,
    paging_many_objects,
    delete_many_and_purge,
    purge_detects_survivors,
    op_counts,
);

/// fs and memory enforce create-only natively (no stat before the write).
#[tokio::test]
async fn native_create_only_is_enforced_without_stat() {
    for backend in [Backend::fs(), Backend::memory()] {
        let s = &backend.store;
        assert_eq!(s.options().create_only, chunk_store::CreateOnlyMode::Native);
        let (uid, conv) = ids("u1", "c");
        let path = path_of(&uid, &conv, "1000.000.bin");
        s.put(&path, pattern(3, 1), PutMode::CreateOnly)
            .await
            .expect("first create-only put");
        s.reset_op_counts();
        let refused = s.put(&path, pattern(3, 2), PutMode::CreateOnly).await;
        assert!(
            matches!(refused, Err(StoreError::AlreadyExists { .. })),
            "{refused:?}"
        );
        assert_eq!(
            s.op_counts().stat,
            0,
            "{}: no stat before a native create-only write",
            s.scheme()
        );
        assert_eq!(s.read(&path).await.expect("read"), pattern(3, 1));
    }
}

/// Two create-only writers racing on one path: memory checks at commit, and fs commits by
/// hard-linking a staging file (the kernel refuses an existing name), so on both the second
/// close is refused and the first writer's bytes stay. (fs used to check when the writer
/// started, so both committed and the last rename won.)
#[tokio::test]
async fn native_create_only_race() {
    for backend in [Backend::memory(), Backend::fs()] {
        let s = &backend.store;
        let (uid, conv) = ids("u1", "c");
        let path = path_of(&uid, &conv, "1000.000.bin");
        let mut first = s.writer(&path, PutMode::CreateOnly).await.expect("writer");
        let mut second = s.writer(&path, PutMode::CreateOnly).await.expect("writer");
        first.write(pattern(3, 1)).await.expect("write");
        second.write(pattern(3, 2)).await.expect("write");
        first.close().await.expect("first commit");
        let second = second.close().await;
        assert!(
            matches!(second, Err(StoreError::AlreadyExists { .. })),
            "{}: {second:?}",
            s.scheme()
        );
        assert_eq!(s.read(&path).await.expect("read"), pattern(3, 1));
    }
}

/// Many create-only writers of one path at once on fs, each with its own bytes, in several
/// rounds: exactly one succeeds per round, every other one is refused, and the object holds
/// the winner's bytes; no staging file is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_create_only_is_atomic_under_concurrency() {
    let backend = Backend::fs();
    let s = &backend.store;
    let (uid, conv) = ids("u1", "c");
    for round in 0..20u64 {
        let path = path_of(&uid, &conv, &format!("{}.000.bin", 1000 + round));
        let tasks: Vec<_> = (0..8u8)
            .map(|w| {
                let s = s.clone();
                let path = path.clone();
                tokio::spawn(async move {
                    s.put(&path, pattern(4096, w), PutMode::CreateOnly)
                        .await
                        .map(|()| w)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.expect("join") {
                Ok(w) => winners.push(w),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(other) => panic!("round {round}: {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(
            s.read(&path).await.expect("read"),
            pattern(4096, winners[0])
        );
    }
    let temp = backend.fs_root().join(chunk_store::FS_TMP_DIR);
    let left: Vec<_> = std::fs::read_dir(&temp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging files left: {left:?}");
}

/// The S3 harness URI gets a per-case root and Garage's create-only fallback.
#[test]
fn s3_case_uris() {
    let uri = chunkvault_tests::backends::case_uri(
        "s3://chunkvault-test?endpoint=http://127.0.0.1:3900&region=garage",
        "x",
    );
    assert!(uri.starts_with("s3://chunkvault-test/it-x-"), "{uri}");
    assert!(
        uri.ends_with("?endpoint=http://127.0.0.1:3900&region=garage&create_only=stat"),
        "{uri}"
    );
    let uri = chunkvault_tests::backends::case_uri("s3://b/?create_only=native", "y");
    assert!(uri.ends_with("?create_only=native"), "{uri}");
    assert!(!uri.contains("//it-"), "{uri}");
}

/// Whether a second create-only write (`what`) was refused with `AlreadyExists`, asserting
/// that this is what `server` is documented to do; any other error fails the test.
fn refused_as_expected<T: std::fmt::Debug>(
    second: Result<T, StoreError>,
    expect_enforced: bool,
    server: &str,
    what: &str,
) -> bool {
    let enforced = matches!(second, Err(StoreError::AlreadyExists { .. }));
    assert_eq!(
        enforced, expect_enforced,
        "{server}: second create-only {what}: {second:?}"
    );
    if !enforced {
        second.unwrap_or_else(|e| panic!("{server}: {e}"));
    }
    enforced
}

/// What each real server does with create-only writes of a path that exists when the store
/// trusts it (`create_only=native`): a second single PUT, and a second streamed write of
/// 6 MiB (S3 multipart, GCS resumable upload, Azure block list). Measured: Azurite refuses
/// both with 409 `BlobAlreadyExists`, as Azure does; Garage 2.5 and fake-gcs-server 1.54 store
/// both (they accept `If-None-Match: *` / `ifGenerationMatch=0` and overwrite). That is why the
/// harness adds `create_only=stat` for those two and nothing for Azurite: a server that
/// changes fails here, and its entry in `chunkvault_tests::backends` must change with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_enforce_create_only_as_documented() {
    for server in backends::SERVERS {
        let Some(store) = backends::open(server, "create-only-probe") else {
            continue;
        };
        let native = with_create_only(&store, chunk_store::CreateOnlyMode::Native);
        let expect_enforced = server
            .options
            .iter()
            .all(|(name, _)| *name != "create_only");
        let (uid, conv) = ids("u1", "c");
        let small = path_of(&uid, &conv, "1000.000.bin");
        native
            .put(&small, pattern(3, 1), PutMode::CreateOnly)
            .await
            .expect("first create-only put");
        let second = native.put(&small, pattern(3, 2), PutMode::CreateOnly).await;
        let enforced = refused_as_expected(second, expect_enforced, server.name, "PUT");
        let kept = if enforced { 1 } else { 2 };
        assert_eq!(native.read(&small).await.expect("read"), pattern(3, kept));

        let large = path_of(&uid, &conv, "2000.000-2600.000.pack");
        let stream = |seed: u8| {
            let native = native.clone();
            let large = large.clone();
            async move {
                let mut w = native.writer(&large, PutMode::CreateOnly).await?;
                for i in 0..6 {
                    w.write(pattern(MIB, seed + i)).await?;
                }
                w.close().await
            }
        };
        stream(10).await.expect("first streamed create-only write");
        let enforced =
            refused_as_expected(stream(20).await, expect_enforced, server.name, "stream");
        let head = native.read_range(&large, 0..4).await.expect("read");
        let seed = if enforced { 10 } else { 20 };
        assert_eq!(head, pattern(MIB, seed).slice(0..4), "{}", server.name);
    }
}

/// fake-gcs-server answers OpenDAL's batch delete with a 400 per sub-request (see
/// `chunkvault_tests::backends`), which is why the harness gives it `batch_delete=false`.
/// With batching on, deleting two objects fails with the emulator's message and deletes
/// neither; an emulator that parses the batch fails this test, and the option can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gcs_batch_delete_fails_as_documented() {
    let Some(store) = backends::open(backends::GCS, "batch-delete-probe") else {
        return;
    };
    assert!(!store.options().batch_delete);
    let mut options = store.options().clone();
    options.batch_delete = true;
    let batched = store.with_options(options);
    let (uid, conv) = ids("u1", "c");
    let paths = [
        path_of(&uid, &conv, "1000.000.bin"),
        path_of(&uid, &conv, "1005.000.bin"),
    ];
    for path in &paths {
        store
            .put(path, pattern(3, 0), PutMode::Overwrite)
            .await
            .expect("put");
    }
    let err = batched
        .delete_many(paths.iter())
        .await
        .expect_err("fake-gcs-server parses OpenDAL's batch delete now?");
    assert!(
        format!("{err:?}").contains("unable to process request"),
        "{err:?}"
    );
    for path in &paths {
        assert!(store.exists(path).await.expect("exists"), "{path} stays");
    }
    // One DELETE per object works.
    assert_eq!(store.delete_many(paths.iter()).await.expect("delete"), 2);
    for path in &paths {
        assert_absent(&store, path).await;
    }
}

/// Each server's URI gets the options its server needs, unless the URI sets them.
#[test]
fn server_case_uris_add_missing_options_only() {
    let uri = backends::case_uri_with(
        "gcs://chunkvault-test?endpoint=http://127.0.0.1:4443&skip_signature=true",
        "x",
        backends::GCS.options,
    );
    assert!(uri.starts_with("gcs://chunkvault-test/it-x-"), "{uri}");
    assert!(
        uri.ends_with(
            "?endpoint=http://127.0.0.1:4443&skip_signature=true&create_only=stat&batch_delete=false"
        ),
        "{uri}"
    );
    let uri = backends::case_uri_with("gcs://b?batch_delete=true", "y", backends::GCS.options);
    assert!(
        uri.ends_with("?batch_delete=true&create_only=stat"),
        "{uri}"
    );
    let uri = backends::case_uri_with(
        "azblob://c?endpoint=http://127.0.0.1:10000/devstoreaccount1",
        "z",
        backends::AZBLOB.options,
    );
    assert!(
        uri.starts_with("azblob://c/it-z-")
            && uri.ends_with("?endpoint=http://127.0.0.1:10000/devstoreaccount1"),
        "{uri}"
    );
}
