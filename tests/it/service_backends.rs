//! `chunk-service` end to end on every backend (fs, memory, and Garage S3 in CI): uploads of
//! both levels, listing with a foreign object, ranged and timestamp downloads, delete by an
//! interior timestamp, idempotent retry, conversation delete and a user purge that leaves a
//! user whose id shares the prefix alone.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::sync::Arc;

use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::Timestamp;
use chunk_service::{
    BatchLayout, Chunk, ChunkService, DownloadOptions, DownloadRequest, InMemoryLevels,
    ProtectionLevel, ServiceConfig, ServiceError,
};
use chunk_store::{ConversationId, PutMode, UserId};

const T0: u64 = 1_786_961_845_727;

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

/// 5 s of 16 kHz PCM whose samples depend on `seed`.
fn chunk_pcm(seed: u16) -> Vec<u8> {
    (0..80_000u32)
        .flat_map(|i| ((i as u16).wrapping_mul(31).wrapping_add(seed)).to_le_bytes())
        .collect()
}

#[tokio::test]
async fn service_end_to_end_on_every_backend() {
    for backend in chunkvault_tests::backends::all("service-e2e") {
        let name = backend.name;
        let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Standard));
        let secret = MasterSecret::new(b"omi_".repeat(16)).unwrap();
        let service = ChunkService::new(
            backend.store.clone(),
            Some(Keyring::single(KeyId::new(1), secret)),
            levels.clone(),
            ServiceConfig {
                batch_layout: BatchLayout::Omi,
                ..ServiceConfig::default()
            },
        )
        .unwrap();
        let uid = UserId::new("u1").unwrap();
        let neighbour = UserId::new("u10").unwrap();
        let conv = ConversationId::new("c1").unwrap();
        levels.set(&uid, ProtectionLevel::Enhanced);

        // 12 chunks as an encrypted batch, then 2 standard singles after a 10 s hole.
        let batch: Vec<Chunk> = (0..12)
            .map(|i| Chunk::new(ts(T0 + i * 5_000), chunk_pcm(i as u16)))
            .collect();
        let report = service
            .upload_batch(&uid, &conv, batch.clone(), None)
            .await
            .unwrap();
        assert_eq!(levels.lookups(), 1, "{name}: one level lookup per batch");
        assert_eq!(report.objects_written, 1);
        let again = service
            .upload_batch(&uid, &conv, batch.clone(), None)
            .await
            .unwrap();
        assert_eq!(
            again.objects_written, 0,
            "{name}: identical retry is a no-op"
        );
        for i in 0..2u64 {
            let chunk = Chunk::new(ts(T0 + 70_000 + i * 5_000), chunk_pcm(100 + i as u16));
            service
                .upload_chunk(&uid, &conv, chunk, Some(ProtectionLevel::Standard))
                .await
                .unwrap();
        }
        let stray = format!("chunks/{uid}/{conv}/notes.txt");
        backend
            .store
            .put(&stray, b"hi".to_vec(), PutMode::Overwrite)
            .await
            .unwrap();
        service
            .upload_chunk(&neighbour, &conv, Chunk::new(ts(T0), chunk_pcm(7)), None)
            .await
            .unwrap();

        let listing = service.list(&uid, &conv).await.unwrap();
        let names: Vec<&str> = listing
            .chunks
            .iter()
            .map(|e| e.path.rsplit('/').next().unwrap())
            .collect();
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
        let pcm = service
            .download(
                &uid,
                &conv,
                &DownloadRequest::Timestamps(all),
                DownloadOptions::default(),
            )
            .await
            .unwrap()
            .collect_vec()
            .await
            .unwrap();
        assert_eq!(pcm.len(), 80 * 32_000, "{name}");
        assert_eq!(&pcm[..160_000], &chunk_pcm(0)[..], "{name}");
        assert!(
            pcm[60 * 32_000..70 * 32_000].iter().all(|&b| b == 0),
            "{name}: silence"
        );
        assert_eq!(&pcm[75 * 32_000..], &chunk_pcm(101)[..], "{name}");

        // A range inside the batch is clipped to the range.
        let range = DownloadRequest::Range {
            from: ts(T0 + 7_500),
            to: ts(T0 + 12_500),
        };
        let clipped = service
            .download(&uid, &conv, &range, DownloadOptions::default())
            .await
            .unwrap()
            .collect_vec()
            .await
            .unwrap();
        let mut expected = chunk_pcm(1)[80_000..].to_vec();
        expected.extend_from_slice(&chunk_pcm(2)[..80_000]);
        assert!(clipped == expected, "{name}: clipped range");

        // Deleting an interior timestamp removes the whole batch (Omi would keep it).
        let deleted = service
            .delete(&uid, &conv, &[ts(T0 + 30_000)])
            .await
            .unwrap();
        assert_eq!(deleted.deleted.len(), 1, "{name}");
        let request = DownloadRequest::Timestamps(vec![ts(T0)]);
        assert!(matches!(
            service
                .download(&uid, &conv, &request, DownloadOptions::default())
                .await,
            Err(ServiceError::NoAudio { .. })
        ));

        assert_eq!(
            service.delete_conversation(&uid, &conv).await.unwrap(),
            3,
            "{name}"
        );
        assert!(service.list(&uid, &conv).await.unwrap().chunks.is_empty());
        service
            .upload_chunk(&uid, &conv, Chunk::new(ts(T0), chunk_pcm(9)), None)
            .await
            .unwrap();
        assert_eq!(service.purge_user(&uid).await.unwrap(), 1, "{name}");
        assert_eq!(
            service.list(&neighbour, &conv).await.unwrap().chunks.len(),
            1,
            "{name}: a user sharing the id prefix is untouched"
        );
        eprintln!("service end to end passed on {name}");
    }
}
