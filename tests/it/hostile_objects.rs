//! Hostile objects through the service, on the filesystem backend: decompression bombs and
//! oversized claims are refused before anything is decoded, plaintext packs are refused where
//! sealing is required, and a rewrite copies chunks without decoding them. Every hostile object
//! is built here, with the format crate's own encoder or by hand.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::sync::Arc;

use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::pack::{Codec, PackConfig, PackEncoder, PackIndex};
use chunk_format::{ObjectName, Timestamp};
use chunk_service::{
    Chunk, ChunkService, CompactionOptions, DecodeError, DownloadOptions, DownloadRequest,
    EncryptionPolicy, InMemoryLevels, ProtectionLevel, ServiceConfig, ServiceError, UploadOptions,
};
use chunk_store::{ConversationId, PutMode, Store, UserId, layout};

const T0: u64 = 1_786_961_845_000;
const MIB: usize = 1 << 20;

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    uid: UserId,
    conv: ConversationId,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_uri(&format!("fs://{}", dir.path().display())).unwrap();
        Fixture {
            _dir: dir,
            store,
            uid: UserId::new("u").unwrap(),
            conv: ConversationId::new("c").unwrap(),
        }
    }

    /// A service at `level` for every user, with a key ring, and `config` tweaks.
    fn service(
        &self,
        level: ProtectionLevel,
        tweak: impl FnOnce(&mut ServiceConfig),
    ) -> ChunkService {
        let mut config = ServiceConfig::default();
        tweak(&mut config);
        let secret = MasterSecret::new(b"omi_".repeat(16)).unwrap();
        ChunkService::new(
            self.store.clone(),
            Some(Keyring::single(KeyId::new(1), secret)),
            Arc::new(InMemoryLevels::new(level)),
            config,
        )
        .unwrap()
    }

    fn path(&self, name: &str) -> String {
        layout::chunk_path(&self.uid, &self.conv, &name.parse::<ObjectName>().unwrap())
    }

    /// Stores a plaintext pack of `codec` made without any key, named as its index says.
    async fn put_plain_pack(&self, codec: Codec, chunks: &[(u64, Vec<u8>)]) -> String {
        let mut enc = PackEncoder::new(PackConfig::new(codec, 16_000, 1), None).unwrap();
        let mut object = Vec::new();
        for (start, pcm) in chunks {
            object.extend(enc.push_chunk(ts(*start), pcm).unwrap());
        }
        object.extend(enc.finish().unwrap());
        let name = PackIndex::from_object(&object, None)
            .unwrap()
            .object_name()
            .unwrap();
        let path = layout::chunk_path(&self.uid, &self.conv, &name);
        self.store
            .put(&path, object, PutMode::CreateOnly)
            .await
            .unwrap();
        path
    }

    async fn range(
        &self,
        service: &ChunkService,
        from: u64,
        to: u64,
        options: DownloadOptions,
    ) -> Result<Vec<u8>, ServiceError> {
        let request = DownloadRequest::Range {
            from: ts(from),
            to: ts(to),
        };
        service
            .download(&self.uid, &self.conv, &request, options)
            .await?
            .collect_vec()
            .await
    }
}

fn speech(len: usize, seed: u32) -> Vec<u8> {
    (0..len / 2)
        .flat_map(|i| (((i as f32 * 0.05 + seed as f32).sin() * 8000.0) as i16).to_le_bytes())
        .collect()
}

/// The parsed name of the object at `path`.
fn name_of(path: &str) -> ObjectName {
    path.rsplit('/').next().unwrap().parse().unwrap()
}

fn is_too_large(error: &ServiceError, path: &str) -> bool {
    matches!(error, ServiceError::TooLarge { path: p, .. } if p == path)
}

fn is_unsealed(error: &ServiceError, path: &str) -> bool {
    matches!(error, ServiceError::Unsealed { path: p } if p == path)
}

/// A zstd pack whose chunks are each a few hundred bytes stored and 17 MiB of zeros decoded:
/// every read path refuses it from the index's claims, before decoding a byte.
#[tokio::test]
async fn a_decompression_bomb_is_refused_before_decoding() {
    let fx = Fixture::new();
    let chunk_ms = 17 * MIB as u64 / 32; // 17 MiB of 16 kHz mono, in ms
    let bombs: Vec<(u64, Vec<u8>)> = (0..3)
        .map(|i| (T0 + i * chunk_ms, vec![0u8; 17 * MIB]))
        .collect();
    let path = fx.put_plain_pack(Codec::ZstdPcm16Le, &bombs).await;
    let stored = fx.store.stat(&path).await.unwrap().unwrap();
    assert!(stored < 64 * 1024, "the bomb is small: {stored} bytes");
    let service = fx.service(ProtectionLevel::Standard, |_| {});
    let name = name_of(&path);

    let error = fx
        .range(&service, T0, T0 + 1_000, DownloadOptions::default())
        .await
        .unwrap_err();
    assert!(is_too_large(&error, &path), "{error}");
    assert!(error.to_string().contains("chunk 0"), "{error}");
    // Skipped with skip_bad: then there is nothing else to serve.
    let options = DownloadOptions {
        skip_bad: true,
        ..DownloadOptions::default()
    };
    let error = fx
        .range(&service, T0, T0 + 1_000, options)
        .await
        .unwrap_err();
    assert!(matches!(error, ServiceError::NoAudio { .. }), "{error}");

    let error = service
        .check_object(&fx.uid, &fx.conv, &path, &name, stored)
        .await
        .unwrap_err();
    assert!(is_too_large(&error, &path), "{error}");
    let error = service
        .delete(&fx.uid, &fx.conv, &[ts(T0)])
        .await
        .unwrap_err();
    assert!(is_too_large(&error, &path), "{error}");
    assert!(
        fx.store.stat(&path).await.unwrap().is_some(),
        "left in place"
    );

    // A larger limit, set by the deployment, lets the same audio through.
    let roomy = fx.service(ProtectionLevel::Standard, |c| {
        c.max_decoded_chunk = 32 * MIB
    });
    let pcm = fx
        .range(&roomy, T0, T0 + 1_000, DownloadOptions::default())
        .await
        .unwrap();
    assert_eq!(pcm.len(), 32_000);
}

/// An Omi `.opus` object of 30,000 empty packets (60 KB) would decode to 19 MB: refused from
/// its header. With a declared PCM length, only that much is decoded.
#[tokio::test]
async fn an_opus_object_of_empty_packets_is_bounded_by_its_claims() {
    let fx = Fixture::new();
    let service = fx.service(ProtectionLevel::Standard, |_| {});
    let container = |packets: u32, original: u32| {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&packets.to_le_bytes());
        bytes.extend_from_slice(&original.to_le_bytes());
        bytes.extend(std::iter::repeat_n([0u8, 0u8], packets as usize).flatten());
        bytes
    };
    let bomb = fx.path(&format!("{}.000.opus", T0 / 1000));
    fx.store
        .put(&bomb, container(30_000, 0), PutMode::CreateOnly)
        .await
        .unwrap();
    let error = fx
        .range(&service, T0, T0 + 5_000, DownloadOptions::default())
        .await
        .unwrap_err();
    assert!(is_too_large(&error, &bomb), "{error}");
    assert!(error.to_string().contains("30000 packets"), "{error}");
    let name = name_of(&bomb);
    let error = service
        .check_object(&fx.uid, &fx.conv, &bomb, &name, 60_008)
        .await
        .unwrap_err();
    assert!(is_too_large(&error, &bomb), "{error}");
}

/// Omi objects whose stored size is above the limit are refused before they are read.
#[tokio::test]
async fn an_oversized_omi_object_is_refused_unread() {
    let fx = Fixture::new();
    let service = fx.service(ProtectionLevel::Standard, |c| c.max_decoded_chunk = MIB);
    let big = fx.path(&format!("{}.000.bin", T0 / 1000));
    fx.store
        .put(&big, vec![1u8; 2 * MIB], PutMode::CreateOnly)
        .await
        .unwrap();
    let error = fx
        .range(&service, T0, T0 + 5_000, DownloadOptions::default())
        .await
        .unwrap_err();
    assert!(is_too_large(&error, &big), "{error}");
    let before = service.store().op_counts();
    let name = name_of(&big);
    assert!(
        service
            .check_object(&fx.uid, &fx.conv, &big, &name, 2 * MIB as u64)
            .await
            .is_err()
    );
    assert_eq!(service.store().op_counts().read, before.read, "never read");
    // Uploads obey the same limit.
    let error = service
        .upload_batch(
            &fx.uid,
            &fx.conv,
            vec![Chunk::new(ts(T0 + 100_000), vec![0u8; 2 * MIB])],
            UploadOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ServiceError::TooLarge { .. }), "{error}");
}

/// A delete inside a pack copies the kept chunks' stored frames as they are: no decode of the
/// whole pack, no second compression.
#[tokio::test]
async fn a_rewrite_copies_stored_frames() {
    let fx = Fixture::new();
    let chunks: Vec<(u64, Vec<u8>)> = (0..4)
        .map(|i| (T0 + i * 5_000, speech(160_000, i as u32)))
        .collect();
    let path = fx.put_plain_pack(Codec::ZstdPcm16Le, &chunks).await;
    let service = fx.service(ProtectionLevel::Standard, |c| c.pack.zstd_level = 1);
    let before = fx.store.read(&path).await.unwrap();
    let report = service
        .delete(&fx.uid, &fx.conv, &[ts(T0 + 5_000)])
        .await
        .unwrap();
    assert_eq!(report.deleted, vec![path.clone()]);
    let [written] = &report.written[..] else {
        panic!("one pack written: {report:?}");
    };
    let after = fx.store.read(written).await.unwrap();
    let (old, new) = (
        PackIndex::from_object(&before, None).unwrap(),
        PackIndex::from_object(&after, None).unwrap(),
    );
    assert_eq!(new.len(), 3);
    for (new_i, old_i) in [(0, 0), (1, 2), (2, 3)] {
        assert_eq!(
            new.frame_bytes(new_i, &after).unwrap(),
            old.frame_bytes(old_i, &before).unwrap(),
            "chunk {old_i} copied byte for byte (the service's zstd level differs)"
        );
        assert_eq!(new.entries()[new_i].crc32c, old.entries()[old_i].crc32c);
    }
    let pcm = fx
        .range(&service, T0, T0 + 20_000, DownloadOptions::default())
        .await
        .unwrap();
    assert_eq!(&pcm[..160_000], &chunks[0].1[..]);
    assert_eq!(&pcm[160_000..320_000], &vec![0u8; 160_000][..]);
    assert_eq!(
        &pcm[320_000..],
        &[&chunks[2].1[..], &chunks[3].1[..]].concat()[..]
    );
}

/// A plaintext pack made without any key, dropped at an `enhanced` user's path, is refused by
/// every path that would use it: download, check (verify), delete, compaction, and the
/// identical-retry check of an upload.
#[tokio::test]
async fn a_keyless_plaintext_pack_is_refused_for_an_enhanced_user() {
    let fx = Fixture::new();
    let chunks: Vec<(u64, Vec<u8>)> = vec![(T0, speech(160_000, 1))];
    let forged = fx.put_plain_pack(Codec::ZstdPcm16Le, &chunks).await;
    let service = fx.service(ProtectionLevel::Enhanced, |_| {});
    let name = name_of(&forged);

    let error = fx
        .range(&service, T0, T0 + 5_000, DownloadOptions::default())
        .await
        .unwrap_err();
    assert!(is_unsealed(&error, &forged), "{error}");
    assert!(error.to_string().starts_with(&forged), "{error}");
    let error = service
        .check_object(&fx.uid, &fx.conv, &forged, &name, 1)
        .await
        .unwrap_err();
    assert!(is_unsealed(&error, &forged), "{error}");
    let error = service
        .delete(&fx.uid, &fx.conv, &[ts(T0)])
        .await
        .unwrap_err();
    assert!(is_unsealed(&error, &forged), "{error}");
    // The upload this pack pretends to be: the retry finds it and refuses it.
    let upload = vec![Chunk::new(ts(T0), chunks[0].1.clone())];
    let error = service
        .upload_batch(&fx.uid, &fx.conv, upload, UploadOptions::default())
        .await
        .unwrap_err();
    assert!(is_unsealed(&error, &forged), "{error}");
    // Compaction with a genuine sealed pack next to it.
    service
        .upload_batch(
            &fx.uid,
            &fx.conv,
            vec![Chunk::new(ts(T0 + 5_000), speech(160_000, 2))],
            UploadOptions::default(),
        )
        .await
        .unwrap();
    let error = service
        .plan_compaction(&fx.uid, &fx.conv, &CompactionOptions::default())
        .await
        .unwrap_err();
    assert!(is_unsealed(&error, &forged), "{error}");
    assert!(fx.store.stat(&forged).await.unwrap().is_some());

    // A standard user's plaintext pack is fine, unless the deployment requires sealing.
    let standard = fx.service(ProtectionLevel::Standard, |_| {});
    assert_eq!(
        fx.range(&standard, T0, T0 + 5_000, DownloadOptions::default())
            .await
            .unwrap(),
        chunks[0].1
    );
    let strict = fx.service(ProtectionLevel::Standard, |c| c.require_sealed = true);
    let error = fx
        .range(&strict, T0, T0 + 5_000, DownloadOptions::default())
        .await
        .unwrap_err();
    assert!(is_unsealed(&error, &forged), "{error}");
}

/// Compaction never puts a plaintext pack into sealed output, whatever the user's level: a
/// standard user's plaintext pack next to their sealed packs (written while they were
/// enhanced) is left as it is, and downloads do not change.
#[tokio::test]
async fn compaction_never_seals_a_plaintext_pack() {
    let fx = Fixture::new();
    let enhanced = fx.service(ProtectionLevel::Enhanced, |_| {});
    for i in 0..2 {
        enhanced
            .upload_batch(
                &fx.uid,
                &fx.conv,
                vec![Chunk::new(ts(T0 + i * 5_000), speech(160_000, i as u32))],
                UploadOptions::default(),
            )
            .await
            .unwrap();
    }
    let plain = fx
        .put_plain_pack(Codec::ZstdPcm16Le, &[(T0 + 10_000, speech(160_000, 9))])
        .await;
    let standard = fx.service(ProtectionLevel::Standard, |_| {});
    let before = fx
        .range(&standard, T0, T0 + 15_000, DownloadOptions::default())
        .await
        .unwrap();
    let plan = standard
        .plan_compaction(&fx.uid, &fx.conv, &CompactionOptions::default())
        .await
        .unwrap();
    let [group] = &plan.groups[..] else {
        panic!("one group: {plan:?}");
    };
    assert_eq!(group.sources.len(), 2);
    assert!(group.sources.iter().all(|s| s.path != plain), "{plan:?}");
    let report = standard.compact(&plan).await.unwrap();
    assert_eq!(report.written.len(), 1);
    assert!(fx.store.stat(&plain).await.unwrap().is_some());
    let after = fx
        .range(&standard, T0, T0 + 15_000, DownloadOptions::default())
        .await
        .unwrap();
    assert_eq!(before, after);
}

/// A pack whose index covers more than its name says is refused by the whole-pack reads too
/// (compaction, rewrite), not only by downloads.
#[tokio::test]
async fn whole_pack_reads_check_the_name() {
    let fx = Fixture::new();
    let chunks: Vec<(u64, Vec<u8>)> = (0..2)
        .map(|i| (T0 + i * 5_000, speech(160_000, i as u32)))
        .collect();
    let real = fx.put_plain_pack(Codec::ZstdPcm16Le, &chunks).await;
    let object = fx.store.read(&real).await.unwrap();
    fx.store.delete_many([real.clone()]).await.unwrap();
    // The same bytes under a name 5 s long: its index says 10 s.
    let short = fx.path(&format!("{}.000-{}.000.pack", T0 / 1000, T0 / 1000 + 5));
    fx.store
        .put(&short, object, PutMode::CreateOnly)
        .await
        .unwrap();
    let service = fx.service(ProtectionLevel::Standard, |c| {
        c.encryption = EncryptionPolicy::Required;
    });
    let error = service
        .delete(&fx.uid, &fx.conv, &[ts(T0)])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ServiceError::Decode { path, source: DecodeError::NameMismatch { .. } } if path == &short),
        "{error}"
    );
}

/// The path an error names, for the variants a refused read gives.
fn error_path(error: &ServiceError) -> Option<&str> {
    match error {
        ServiceError::Decode { path, .. } | ServiceError::Crypto { path, .. } => Some(path),
        _ => None,
    }
}

/// Rollback across places: an authentic sealed pack copied by a bucket writer into another
/// conversation of the same user (same name, so the name still matches its index) does not
/// open there, because a version-2 pack key binds the user and the conversation.
#[tokio::test]
async fn a_sealed_pack_copied_to_another_conversation_does_not_open() {
    let fx = Fixture::new();
    let service = fx.service(ProtectionLevel::Enhanced, |_| {});
    let pcm = speech(160_000, 7);
    let report = service
        .upload_batch(
            &fx.uid,
            &fx.conv,
            vec![Chunk::new(ts(T0), pcm.clone())],
            UploadOptions::default(),
        )
        .await
        .unwrap();
    let [original] = &report.paths[..] else {
        panic!("one pack: {:?}", report.paths);
    };
    let object = fx.store.read(original).await.unwrap();
    let name = name_of(original);
    let other = ConversationId::new("c2").unwrap();
    let copy = layout::chunk_path(&fx.uid, &other, &name);
    fx.store
        .put(&copy, object.clone(), PutMode::CreateOnly)
        .await
        .unwrap();

    let request = DownloadRequest::Range {
        from: ts(T0),
        to: ts(T0 + 5_000),
    };
    let download = async {
        service
            .download(&fx.uid, &other, &request, DownloadOptions::default())
            .await?
            .collect_vec()
            .await
    };
    let error = download.await.unwrap_err();
    assert_eq!(error_path(&error), Some(copy.as_str()), "{error}");
    assert!(
        error.to_string().contains("authentication failed"),
        "{error}"
    );
    let error = service
        .check_object(&fx.uid, &other, &copy, &name, object.len() as u64)
        .await
        .unwrap_err();
    assert_eq!(error_path(&error), Some(copy.as_str()), "{error}");
    let error = service
        .delete(&fx.uid, &other, &[ts(T0)])
        .await
        .unwrap_err();
    assert_eq!(error_path(&error), Some(copy.as_str()), "{error}");
    assert!(fx.store.stat(&copy).await.unwrap().is_some());

    // At its own place it reads as it was written.
    assert_eq!(
        fx.range(&service, T0, T0 + 5_000, DownloadOptions::default())
            .await
            .unwrap(),
        pcm
    );
}

/// Packs sealed under the first key scheme (version 1, key bound to the user only) still read,
/// and compaction with `ResealToActive` rewrites them as version 2.
#[tokio::test]
async fn version_1_packs_read_and_are_resealed_to_version_2() {
    use chunk_crypto::pack::{PackSealer, SealParams};
    use chunk_format::pack::{PackTail, SegmentSealer};

    let fx = Fixture::new();
    let service = fx.service(ProtectionLevel::Enhanced, |_| {});
    let secret = MasterSecret::new(b"omi_".repeat(16)).unwrap();
    let ring = Keyring::single(KeyId::new(1), secret);
    let user_key = ring.user_key(KeyId::new(1), fx.uid.as_str()).unwrap();
    let params = SealParams::random(KeyId::new(1)).unwrap();
    let sealer = PackSealer::v1_with_params_for_tests(&user_key, params);
    let mut enc = PackEncoder::new(
        PackConfig::new(Codec::ZstdPcm16Le, 16_000, 1),
        Some(Box::new(sealer) as Box<dyn SegmentSealer>),
    )
    .unwrap();
    let chunks: Vec<(u64, Vec<u8>)> = (0..2)
        .map(|i| (T0 + i * 5_000, speech(160_000, 10 + i as u32)))
        .collect();
    let mut object = Vec::new();
    for (start, pcm) in &chunks {
        object.extend(enc.push_chunk(ts(*start), pcm).unwrap());
    }
    object.extend(enc.finish().unwrap());
    assert_eq!(object[4], 1, "a version-1 header");
    let name = format!("{}.000-{}.000.pack", T0 / 1000, T0 / 1000 + 10);
    let path = fx.path(&name);
    fx.store
        .put(&path, bytes::Bytes::from(object), PutMode::CreateOnly)
        .await
        .unwrap();
    let audio: Vec<u8> = chunks.iter().flat_map(|(_, pcm)| pcm.clone()).collect();
    let all = || fx.range(&service, T0, T0 + 10_000, DownloadOptions::default());
    assert_eq!(all().await.unwrap(), audio);

    let options = CompactionOptions {
        rotation: chunk_service::KeyRotation::ResealToActive,
        ..CompactionOptions::default()
    };
    let plan = service
        .plan_compaction(&fx.uid, &fx.conv, &options)
        .await
        .unwrap();
    assert_eq!(plan.groups.len(), 1, "{plan:?}");
    service.compact(&plan).await.unwrap();
    let listing = service.list(&fx.uid, &fx.conv).await.unwrap();
    let [pack] = &listing.chunks[..] else {
        panic!("one pack after compaction: {listing:?}");
    };
    let object = fx.store.read(&pack.path).await.unwrap();
    let tail = PackTail::new(&object, object.len() as u64).unwrap();
    assert_eq!(tail.header().version(), 2, "{}", pack.path);
    assert_eq!(all().await.unwrap(), audio);
}
