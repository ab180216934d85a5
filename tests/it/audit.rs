//! The timeline audit on a conversation built to hold one of everything it reports: a
//! duplicate (`.enc` and `.bin` at one instant), a gap, a pack overlapped by a single, an
//! undecodable object, a range batch whose name claims more than it holds, a foreign object.
//! The expected figures are worked out by hand below, in samples at 16 kHz; the export of
//! the same conversation reports the same gaps and overlaps.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::sync::Arc;

use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::Timestamp;
use chunk_service::{
    AuditOptions, Chunk, ChunkService, DownloadOptions, DownloadRequest, InMemoryLevels,
    ProtectionLevel, ServiceConfig, TimeSpan,
};
use chunk_store::{ConversationId, PutMode, Store, UserId};
use futures::StreamExt;

const T0: u64 = 1_786_961_845_000;
/// One second of PCM16 mono at 16 kHz.
const SECOND: usize = 32_000;

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

fn pcm(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(seed) | 1).collect()
}

fn span(start: u64, end: u64, samples: u64) -> (u64, u64, u64) {
    (T0 + start, T0 + end, samples)
}

fn spans(list: impl IntoIterator<Item = TimeSpan>) -> Vec<(u64, u64, u64)> {
    list.into_iter()
        .map(|s| (s.start_ms, s.end_ms, s.samples))
        .collect()
}

async fn conversation() -> (ChunkService, UserId, ConversationId) {
    let store = Store::from_uri("memory://").unwrap();
    let keyring = Keyring::single(
        KeyId::new(1),
        MasterSecret::new(b"omi_".repeat(16)).unwrap(),
    );
    let service = ChunkService::new(
        store.clone(),
        Some(keyring),
        Arc::new(InMemoryLevels::new(ProtectionLevel::Enhanced)),
        ServiceConfig::default(),
    )
    .unwrap();
    let (uid, conv) = (UserId::new("u").unwrap(), ConversationId::new("c").unwrap());
    let dir = "chunks/u/c";
    let put = |name: String, bytes: Vec<u8>| {
        let store = store.clone();
        async move {
            store
                .put(&format!("{dir}/{name}"), bytes, PutMode::CreateOnly)
                .await
                .unwrap()
        }
    };
    // [0, 1 s): the same second as `.enc` (sealed by the service) and as `.bin`.
    service
        .upload_chunk(&uid, &conv, Chunk::new(ts(T0), pcm(3, SECOND)), None)
        .await
        .unwrap();
    put(format!("{}.bin", ts(T0)), pcm(3, SECOND)).await;
    // [2 s, 4 s): a sealed pack of two 1 s chunks; a 1 s `.bin` at 2.5 s lies inside it.
    let chunks = vec![
        Chunk::new(ts(T0 + 2_000), pcm(5, SECOND)),
        Chunk::new(ts(T0 + 3_000), pcm(7, SECOND)),
    ];
    service
        .upload_batch(&uid, &conv, chunks, None)
        .await
        .unwrap();
    put(format!("{}.bin", ts(T0 + 2_500)), pcm(9, SECOND)).await;
    // 5 s: an `.enc` that is not Omi frames.
    put(format!("{}.enc", ts(T0 + 5_000)), vec![0xAB; 100]).await;
    // 6 s: a batch named for chunks at 6 s … 9 s that holds 1 s.
    put(
        format!("{}-{}.batch.bin", ts(T0 + 6_000), ts(T0 + 9_000)),
        pcm(11, SECOND),
    )
    .await;
    put("notes.txt".to_owned(), b"not audio".to_vec()).await;
    (service, uid, conv)
}

#[tokio::test]
async fn audit_reports_every_kind_of_finding() {
    let (service, uid, conv) = conversation().await;
    let audit = service
        .audit(&uid, &conv, AuditOptions::default())
        .await
        .unwrap();
    assert_eq!(audit.sample_rate, Some(16_000));
    assert_eq!(audit.audio_objects, 6);
    assert_eq!(
        spans(audit.covered.clone()),
        [
            span(0, 1_000, 16_000),
            span(2_000, 4_000, 32_000),
            span(6_000, 7_000, 16_000)
        ]
    );
    assert_eq!(audit.covered_samples, 64_000);
    assert_eq!(audit.covered_seconds, 4.0);
    assert_eq!(
        spans(audit.gaps.iter().map(|g| g.span)),
        [span(1_000, 2_000, 16_000), span(4_000, 6_000, 32_000)]
    );
    assert_eq!(audit.overlaps.len(), 1, "{:?}", audit.overlaps);
    let overlap = &audit.overlaps[0];
    assert_eq!(spans([overlap.span]), [span(2_500, 3_500, 16_000)]);
    assert!(overlap.kept.ends_with(".pack"), "{}", overlap.kept);
    assert!(
        overlap
            .trimmed
            .ends_with(&format!("{}.bin", ts(T0 + 2_500)))
    );
    assert_eq!(audit.duplicates.len(), 1);
    let duplicate = &audit.duplicates[0];
    assert_eq!(duplicate.at, ts(T0));
    let enc = format!("chunks/u/c/{}.enc", ts(T0));
    assert_eq!(
        duplicate.paths,
        [enc.clone(), format!("chunks/u/c/{}.bin", ts(T0))]
    );
    assert_eq!(duplicate.used.as_deref(), Some(enc.as_str()));
    assert_eq!(audit.undecodable.len(), 1, "{:?}", audit.undecodable);
    assert!(
        audit.undecodable[0]
            .path
            .ends_with(&format!("{}.enc", ts(T0 + 5_000)))
    );
    assert_eq!(audit.name_mismatches.len(), 1);
    assert!(audit.name_mismatches[0].path.ends_with(".batch.bin"));
    assert!(
        audit.name_mismatches[0]
            .reason
            .contains("its audio ends at"),
        "{}",
        audit.name_mismatches[0].reason
    );
    assert_eq!(audit.foreign.len(), 1);
    assert!(audit.has_undecodable() && audit.has_timeline_findings());
    // The user-wide audit finds the one conversation.
    let all = service
        .audit_user(&uid, AuditOptions::default())
        .await
        .unwrap();
    assert_eq!(all, [audit]);
}

#[tokio::test]
async fn an_export_reports_the_gaps_it_fills_and_the_overlaps_it_trims() {
    let (service, uid, conv) = conversation().await;
    let audit = service
        .audit(&uid, &conv, AuditOptions::default())
        .await
        .unwrap();
    let request = DownloadRequest::Range {
        from: ts(T0),
        to: ts(T0 + 10_000),
    };
    let options = DownloadOptions {
        skip_bad: true,
        ..DownloadOptions::default()
    };
    let mut stream = service
        .download(&uid, &conv, &request, options)
        .await
        .unwrap();
    assert!(stream.report().gaps.is_empty(), "nothing placed yet");
    let mut bytes = 0usize;
    while let Some(piece) = stream.next().await {
        bytes += piece.unwrap().len();
    }
    let report = stream.report();
    // Filled gaps: the same stretches the audit found.
    assert_eq!(
        spans(report.gaps.iter().map(|g| g.span)),
        spans(audit.gaps.iter().map(|g| g.span))
    );
    assert!(report.gaps.iter().all(|g| g.filled));
    assert_eq!(report.overlaps, audit.overlaps);
    assert_eq!(report.covered, audit.covered);
    // The output is the covered audio plus the silence of the gaps.
    assert_eq!(
        bytes as u64,
        2 * (report.covered_samples() + report.gap_samples())
    );
}
