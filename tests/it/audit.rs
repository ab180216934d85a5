//! The timeline audit on a conversation built to hold one of everything it reports: a
//! duplicate (`.enc` and `.bin` at one instant), a gap, a pack overlapped by a single, an
//! undecodable object, a range batch whose name claims more than it holds, a foreign object.
//! The expected figures are worked out by hand below, in samples at 16 kHz; the export of
//! the same conversation reports the same gaps and overlaps.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::Timestamp;
use chunk_service::{
    AuditOptions, Chunk, ChunkService, DownloadOptions, DownloadRequest, ProtectionLevel, TimeSpan,
    UploadOptions,
};
use chunk_store::{ConversationId, PutMode, Store, UserId};
use futures::StreamExt;
use proptest::prelude::*;

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

/// A service over `store` with one key and every user at `level`.
fn service(store: &Store, level: ProtectionLevel) -> ChunkService {
    let keyring = Keyring::single(
        KeyId::new(1),
        MasterSecret::new(b"omi_".repeat(16)).unwrap(),
    );
    ChunkService::builder(store.clone())
        .keyring(keyring)
        .default_level(level)
        .build()
        .unwrap()
}

async fn conversation() -> (ChunkService, UserId, ConversationId) {
    let store = Store::from_uri("memory://").unwrap();
    let service = service(&store, ProtectionLevel::Enhanced);
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
        .upload_chunk(
            &uid,
            &conv,
            Chunk::new(ts(T0), pcm(3, SECOND)),
            UploadOptions::default(),
        )
        .await
        .unwrap();
    put(format!("{}.bin", ts(T0)), pcm(3, SECOND)).await;
    // [2 s, 4 s): a sealed pack of two 1 s chunks; a 1 s `.bin` at 2.5 s lies inside it.
    let chunks = vec![
        Chunk::new(ts(T0 + 2_000), pcm(5, SECOND)),
        Chunk::new(ts(T0 + 3_000), pcm(7, SECOND)),
    ];
    service
        .upload_batch(&uid, &conv, chunks, UploadOptions::default())
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
        spans(audit.gaps.iter().copied()),
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
        spans(audit.gaps.iter().copied())
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

// ---- The audit against a model ---------------------------------------------------------------

/// One object of a random conversation: where it starts (ms after the previous object's
/// start, or before it), what it is, and its chunks' lengths in samples (16 kHz) with the ms
/// of silence before each (packs only: holes inside a pack).
#[derive(Debug, Clone)]
struct Object {
    offset_ms: i64,
    kind: u8,
    chunks: Vec<(u64, u64)>,
}

fn object() -> impl Strategy<Value = Object> {
    (
        prop::sample::select(vec![-3_000i64, -700, -1, 0, 1, 40, 900, 2_500, 6_000]),
        0u8..3,
        prop::collection::vec(
            (
                prop::sample::select(vec![0u64, 0, 1, 300, 2_000]),
                prop::sample::select(vec![1u64, 16, 160, 800, 16_000]),
            ),
            1..4,
        ),
    )
        .prop_map(|(offset_ms, kind, chunks)| Object {
            offset_ms,
            kind,
            chunks,
        })
}

/// A placement unit of the model: its start (ms) and its audio as (start sample, samples).
struct ModelUnit {
    start_ms: u64,
    multi: bool,
    path: String,
    intervals: Vec<(u64, u64)>,
}

/// What the model expects: covered spans and gaps as (start ms, end ms, samples) from the
/// first start, and the samples trimmed as overlaps.
#[derive(Debug, PartialEq, Eq)]
struct ModelAudit {
    covered: Vec<(u64, u64, u64)>,
    gaps: Vec<(u64, u64, u64)>,
    overlap_samples: u64,
}

/// Places the units as the read pipeline's rules say (docs/ARCHITECTURE.md): units by start,
/// multi-chunk objects before singles and then by path on ties; a pack's chunks form one unit
/// per stretch without a gap; audio behind the audio placed so far is trimmed.
fn model(mut units: Vec<ModelUnit>) -> ModelAudit {
    units.sort_by(|a, b| (a.start_ms, !a.multi, &a.path).cmp(&(b.start_ms, !b.multi, &b.path)));
    let mut placed: Vec<(u64, u64)> = Vec::new();
    let mut gaps = Vec::new();
    let mut overlap_samples = 0;
    let mut cursor: Option<u64> = None;
    for unit in &units {
        for &(at, len) in &unit.intervals {
            let end = at + len;
            let from = match cursor {
                None => at,
                Some(c) if at > c => {
                    gaps.push((c, at));
                    at
                }
                Some(c) => {
                    overlap_samples += end.min(c) - at;
                    c
                }
            };
            if end > from {
                match placed.last_mut() {
                    Some(last) if last.1 == from => last.1 = end,
                    _ => placed.push((from, end)),
                }
                cursor = Some(end);
            }
        }
    }
    let ms = |(a, b): (u64, u64)| (a / 16, b / 16, b - a);
    ModelAudit {
        covered: placed.into_iter().map(ms).collect(),
        gaps: gaps.into_iter().map(ms).collect(),
        overlap_samples,
    }
}

/// Stores `objects` (plain `.bin` singles, `.batch.bin` batches, packs through the service)
/// and returns the model's units of those that were stored (a name already taken is skipped).
async fn store_objects(
    service: &ChunkService,
    store: &Store,
    objects: &[Object],
) -> Vec<ModelUnit> {
    let (uid, conv) = (UserId::new("u").unwrap(), ConversationId::new("c").unwrap());
    let mut start = T0 as i64;
    let mut units = Vec::new();
    for (n, object) in objects.iter().enumerate() {
        start += object.offset_ms;
        let start_ms = start as u64;
        let bytes = |samples: u64| pcm(n as u8 + 1, (samples * 2) as usize);
        match object.kind {
            0 | 1 => {
                let samples: u64 = object.chunks.iter().map(|c| c.1).sum();
                let name = if object.kind == 0 {
                    format!("{}.bin", ts(start_ms))
                } else {
                    format!("{}.batch.bin", ts(start_ms))
                };
                let path = format!("chunks/u/c/{name}");
                if store
                    .put(&path, bytes(samples), PutMode::CreateOnly)
                    .await
                    .is_ok()
                {
                    units.push(ModelUnit {
                        start_ms,
                        multi: object.kind == 1,
                        path,
                        intervals: vec![(start_ms * 16, samples)],
                    });
                }
            }
            _ => {
                let mut at = start_ms;
                let mut chunks = Vec::new();
                let mut intervals = Vec::new();
                for &(hole_ms, samples) in &object.chunks {
                    at += hole_ms;
                    chunks.push(Chunk::new(ts(at), bytes(samples)));
                    intervals.push((at * 16, samples));
                    at += samples.div_ceil(16);
                }
                let Ok(report) = service
                    .upload_batch(&uid, &conv, chunks, UploadOptions::default())
                    .await
                else {
                    continue;
                };
                let path = report.paths[0].clone();
                // One unit per stretch of chunks without a gap.
                let mut stretch: Vec<(u64, u64)> = Vec::new();
                for interval in intervals {
                    if let Some(&(a, len)) = stretch.last()
                        && interval.0 > a + len
                    {
                        units.push(ModelUnit {
                            start_ms: stretch[0].0 / 16,
                            multi: true,
                            path: path.clone(),
                            intervals: std::mem::take(&mut stretch),
                        });
                    }
                    stretch.push(interval);
                }
                units.push(ModelUnit {
                    start_ms: stretch[0].0 / 16,
                    multi: true,
                    path,
                    intervals: stretch,
                });
            }
        }
    }
    units
}

async fn audit_case(objects: Vec<Object>) {
    let store = Store::from_uri("memory://").unwrap();
    let service = service(&store, ProtectionLevel::Standard);
    let units = store_objects(&service, &store, &objects).await;
    let (uid, conv) = (UserId::new("u").unwrap(), ConversationId::new("c").unwrap());
    let audit = service
        .audit(&uid, &conv, AuditOptions::default())
        .await
        .unwrap();
    let expected = model(units);
    let got = ModelAudit {
        covered: spans(audit.covered.clone()),
        gaps: spans(audit.gaps.iter().copied()),
        overlap_samples: audit.overlaps.iter().map(|o| o.span.samples).sum(),
    };
    assert_eq!(got, expected, "{objects:?}");
    assert_eq!(
        audit.covered_samples,
        expected.covered.iter().map(|c| c.2).sum::<u64>()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        chunkvault_tests::expensive_proptest_cases(64, 500),
    ))]

    /// On random conversations of overlapping singles, batches and packs with holes, the
    /// audit's covered spans, gaps and trimmed overlaps equal an interval model of the
    /// placement rules.
    #[test]
    fn prop_audit_equals_the_placement_model(objects in prop::collection::vec(object(), 1..7)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(audit_case(objects));
    }
}
