use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn header(conv: &str) -> BatchHeader {
    BatchHeader {
        uid: UserId::new("u1").unwrap(),
        conversation: ConversationId::new(conv).unwrap(),
        level: Some(ProtectionLevel::Enhanced),
    }
}

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

fn open(dir: &Path) -> (Spool, Recovered) {
    Spool::open(dir, SpoolOptions::default()).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Appends `chunks` as one batch and returns its id and locations.
fn append_batch(
    spool: &Spool,
    conv: &str,
    chunks: &[(u64, Vec<u8>)],
) -> (BatchId, Vec<ChunkLocation>) {
    let id = spool.new_batch();
    let head = header(conv);
    let locations = runtime().block_on(async {
        let mut out = Vec::new();
        for (i, (ms, pcm)) in chunks.iter().enumerate() {
            let header = (i == 0).then_some(&head);
            out.push(
                spool
                    .append(id, header, ts(*ms), Bytes::copy_from_slice(pcm))
                    .await
                    .unwrap(),
            );
        }
        out
    });
    (id, locations)
}

#[test]
fn append_reopen_read_retire() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, found) = open(dir.path());
    assert!(found.batches.is_empty());
    let (id, locations) = append_batch(
        &spool,
        "c1",
        &[(1_000, vec![1, 2, 3, 4]), (6_000, vec![5, 6])],
    );
    let back = spool.read_batch(id, &locations).unwrap();
    assert_eq!(back[1].pcm, [5, 6]);
    drop(spool);

    let (spool, found) = open(dir.path());
    assert_eq!(found.batches.len(), 1);
    let batch = &found.batches[0];
    assert_eq!(
        (batch.id, &batch.header, batch.pcm_bytes),
        (id, &header("c1"), 6)
    );
    assert_eq!(batch.chunks, locations);
    let chunks = spool.read_batch(batch.id, &batch.chunks).unwrap();
    assert_eq!(chunks[0].timestamp, ts(1_000));
    assert_eq!(chunks[0].pcm, [1, 2, 3, 4]);
    assert_eq!(chunks[1].pcm, [5, 6]);
    // A new batch after the reopen gets a new id.
    assert!(spool.new_batch() > id);

    runtime().block_on(spool.retire(batch.id)).unwrap();
    drop(spool);
    let (_, found) = open(dir.path());
    assert!(found.batches.is_empty());
    let summary = inspect(dir.path()).unwrap();
    assert_eq!(
        (summary.batches, summary.segments),
        (0, 1),
        "only the active segment is left"
    );
}

#[test]
fn a_second_spool_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    assert!(matches!(
        Spool::open(dir.path(), SpoolOptions::default()),
        Err(SpoolError::Locked { .. })
    ));
    drop(spool);
    assert!(Spool::open(dir.path(), SpoolOptions::default()).is_ok());
}

#[test]
fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        commit_interval: Duration::from_millis(20),
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(dir.path(), options).unwrap();
    let streams = 64;
    let rounds = 5;
    runtime().block_on(async {
        let mut tasks = Vec::new();
        for s in 0..streams {
            let spool = spool.clone();
            tasks.push(tokio::spawn(async move {
                let id = spool.new_batch();
                let head = header(&format!("c{s}"));
                for r in 0..rounds {
                    let header = (r == 0).then_some(&head);
                    spool
                        .append(id, header, ts(1_000 + r), Bytes::from(vec![s as u8; 64]))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let syncs = spool.syncs();
    // Each stream's appends are sequential, so at least `rounds` fsyncs; at one fsync per
    // append there would be streams × rounds.
    assert!(syncs >= rounds, "{syncs}");
    assert!(
        syncs < streams as u64 * rounds / 4,
        "{syncs} fsyncs for {} appends",
        streams as u64 * rounds
    );
    drop(spool);
    let summary = inspect(dir.path()).unwrap();
    assert_eq!(
        (summary.batches, summary.chunks),
        (streams, streams * rounds as usize)
    );
}

#[test]
fn retired_batches_free_their_segments_and_live_ones_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        segment_bytes: 200,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(dir.path(), options).unwrap();
    let (keep, keep_at) = append_batch(&spool, "keep", &[(1_000, vec![7; 100])]);
    let mut others = Vec::new();
    for i in 0..6 {
        others.push(
            append_batch(
                &spool,
                &format!("c{i}"),
                &[(1_000, vec![i; 150]), (2_000, vec![i; 150])],
            )
            .0,
        );
    }
    let before = inspect(dir.path()).unwrap();
    assert!(before.segments >= 6, "{before:?}");
    runtime().block_on(async {
        for id in others {
            spool.retire(id).await.unwrap();
        }
    });
    let after = inspect(dir.path()).unwrap();
    // The kept batch's segment (which also holds the first batch after it, retired), the
    // segment with that batch's `retire` record (kept while its other records exist), and
    // the active one.
    assert_eq!((after.batches, after.segments), (1, 3), "{after:?}");
    assert_eq!(
        spool.read_batch(keep, &keep_at).unwrap()[0].pcm,
        vec![7; 100]
    );
    drop(spool);
    let (_, found) = Spool::open(dir.path(), options).unwrap();
    assert_eq!(found.batches.len(), 1);
    assert_eq!(found.batches[0].id, keep);
}

#[test]
fn a_chunk_whose_open_record_is_gone_belongs_to_a_retired_batch() {
    // Batch 1 opens in segment 0 and continues in segment 1, where batch 2 lives. Batch 1 is
    // retired: segment 0 goes, segment 1 stays with batch 1's second chunk in it.
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        segment_bytes: 120,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(dir.path(), options).unwrap();
    let rt = runtime();
    let a = spool.new_batch();
    let b = spool.new_batch();
    rt.block_on(async {
        spool
            .append(a, Some(&header("a")), ts(1), Bytes::from(vec![1; 100]))
            .await
            .unwrap();
        spool
            .append(a, None, ts(2), Bytes::from(vec![1; 100]))
            .await
            .unwrap();
        spool
            .append(b, Some(&header("b")), ts(1), Bytes::from(vec![2; 10]))
            .await
            .unwrap();
        spool.retire(a).await.unwrap();
    });
    drop(spool);
    let (_, found) = Spool::open(dir.path(), options).unwrap();
    assert_eq!(found.batches.len(), 1);
    assert_eq!(found.batches[0].id, b);
}

#[test]
fn format_1_segments_are_moved_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = vec![
        SpooledChunk {
            timestamp: ts(1_000),
            pcm: vec![1; 10],
        },
        SpooledChunk {
            timestamp: ts(2_000),
            pcm: vec![2; 10],
        },
    ];
    let mut bytes = legacy::write::segment(&header("old"), &chunks);
    bytes.extend_from_slice(&[9, 0, 0]); // a torn tail
    fs::write(dir.path().join("00000000000000000007.seg"), &bytes).unwrap();
    let (spool, found) = open(dir.path());
    assert_eq!(
        (found.migrated, found.batches.len(), found.cut_bytes),
        (1, 1, 3)
    );
    let batch = &found.batches[0];
    assert_eq!(batch.header, header("old"));
    assert_eq!(spool.read_batch(batch.id, &batch.chunks).unwrap(), chunks);
    assert!(legacy::find(dir.path()).unwrap().is_empty());
    drop(spool);
    // Now in the log: found again without the old file.
    let (_, again) = open(dir.path());
    assert_eq!((again.migrated, again.batches.len()), (0, 1));
}

#[test]
fn an_oversized_chunk_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let pcm = vec![0u8; MAX_RECORD];
    let error = runtime()
        .block_on(spool.append(
            spool.new_batch(),
            Some(&header("c")),
            ts(1),
            Bytes::from(pcm),
        ))
        .unwrap_err();
    assert!(matches!(error, SpoolError::TooLarge { .. }), "{error}");
    assert_eq!(spool.syncs(), 0);
}

/// A log of one segment holding `batches` (each its chunks), damaged by truncation or a
/// flipped byte.
fn damaged_log(batches: &[Vec<Vec<u8>>], damage: (bool, usize, u8)) -> (tempfile::TempDir, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    for (b, chunks) in batches.iter().enumerate() {
        let timed: Vec<(u64, Vec<u8>)> = chunks
            .iter()
            .enumerate()
            .map(|(i, pcm)| (i as u64 * 1_000 + 1, pcm.clone()))
            .collect();
        append_batch(&spool, &format!("c{b}"), &timed);
    }
    drop(spool);
    let path = log::segment_path(dir.path(), 0);
    let mut bytes = fs::read(&path).unwrap();
    let (truncate, at, bits) = damage;
    let at = at % bytes.len();
    if truncate {
        bytes.truncate(at);
    } else {
        bytes[at] ^= bits.max(1);
    }
    fs::write(&path, &bytes).unwrap();
    (dir, at)
}

proptest! {
    /// Recovery is total: a damaged log recovers, per batch, a prefix of what was appended, or
    /// fails typed — never other chunks, never a panic.
    #[test]
    fn prop_damaged_logs_recover_a_prefix_or_fail_typed(
        batches in prop::collection::vec(
            prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 1..5), 1..4),
        damage in (any::<bool>(), any::<usize>(), any::<u8>()),
    ) {
        let (dir, _) = damaged_log(&batches, damage);
        match Spool::open(dir.path(), SpoolOptions::default()) {
            Ok((spool, found)) => {
                for batch in &found.batches {
                    let index: usize = batch.header.conversation.as_str()[1..].parse().unwrap();
                    let back = spool.read_batch(batch.id, &batch.chunks).expect("recovered batch reads");
                    prop_assert!(!back.is_empty());
                    prop_assert!(back.len() <= batches[index].len());
                    for (i, chunk) in back.iter().enumerate() {
                        prop_assert_eq!(&chunk.pcm, &batches[index][i]);
                        prop_assert_eq!(chunk.timestamp.as_millis(), i as u64 * 1_000 + 1);
                    }
                }
            }
            Err(SpoolError::Corrupt { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    /// Any bytes scan to batches or a typed error.
    #[test]
    fn prop_scanning_any_bytes_is_total(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut input = log::MAGIC.to_vec();
        input.extend_from_slice(&bytes);
        let _ = scan_segment(&input);
        let _ = scan_segment(&bytes);
    }
}

#[test]
fn every_torn_tail_is_cut_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    append_batch(&spool, "c", &[(1_000, vec![9; 100]), (2_000, vec![8; 100])]);
    drop(spool);
    let path = log::segment_path(dir.path(), 0);
    let full = fs::read(&path).unwrap();
    let second = full.len() - (RECORD_OVERHEAD + 100);
    for cut in 1..(RECORD_OVERHEAD + 100) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(log::segment_path(dir.path(), 0), &full[..full.len() - cut]).unwrap();
        let (spool, found) = open(dir.path());
        let batch = &found.batches[0];
        let chunks = spool.read_batch(batch.id, &batch.chunks).unwrap();
        assert_eq!(chunks.len(), 1, "cut {cut}");
        assert_eq!(chunks[0].pcm, vec![9; 100]);
        assert_eq!(found.cut_bytes as usize, full.len() - cut - second);
        drop(spool);
        assert_eq!(
            fs::metadata(log::segment_path(dir.path(), 0))
                .unwrap()
                .len() as usize,
            second
        );
    }
}

#[test]
fn damage_before_the_end_is_corruption_and_nothing_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    append_batch(&spool, "c", &[(1_000, vec![9; 100]), (2_000, vec![8; 100])]);
    drop(spool);
    let path = log::segment_path(dir.path(), 0);
    let mut bytes = fs::read(&path).unwrap();
    bytes[log::MAGIC.len() + 40] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let error = Spool::open(dir.path(), SpoolOptions::default()).unwrap_err();
    assert!(matches!(error, SpoolError::Corrupt { .. }), "{error}");
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

/// One step of [`prop_reopening_finds_exactly_the_live_batches`].
#[derive(Debug, Clone)]
enum Op {
    /// Append a chunk of `len` bytes to the batch in slot `slot` (a new batch if it has none).
    Append { slot: usize, len: usize },
    /// Retire the batch in the slot.
    Retire { slot: usize },
    /// Drop the spool and open it again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, 1..120usize).prop_map(|(slot, len)| Op::Append { slot, len }),
        3 => (0..4usize).prop_map(|slot| Op::Retire { slot }),
        1 => Just(Op::Reopen),
    ]
}

/// A batch of the model: its id, whether it was recovered (then it is only retired), and its
/// chunks.
type Modelled = (BatchId, bool, Vec<SpooledChunk>);

fn check_recovered(
    spool: &Spool,
    found: &Recovered,
    slots: &[Option<Modelled>],
) -> Result<(), TestCaseError> {
    let mut expected: Vec<&Modelled> = slots.iter().flatten().filter(|b| !b.2.is_empty()).collect();
    expected.sort_by_key(|b| b.0);
    let ids: Vec<BatchId> = found.batches.iter().map(|b| b.id).collect();
    prop_assert_eq!(ids, expected.iter().map(|b| b.0).collect::<Vec<_>>());
    for (batch, model) in found.batches.iter().zip(expected) {
        prop_assert_eq!(
            &spool.read_batch(batch.id, &batch.chunks).expect("reads"),
            &model.2
        );
    }
    Ok(())
}

proptest! {
    /// Whatever the interleaving of appends, retires and restarts across small segments,
    /// reopening finds exactly the batches appended to and not retired, with their chunks:
    /// no retired batch comes back, whole or in part, and no live chunk is lost.
    #[test]
    fn prop_reopening_finds_exactly_the_live_batches(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let options = SpoolOptions { segment_bytes: 160, commit_interval: Duration::ZERO };
        let rt = runtime();
        let (mut spool, _) = Spool::open(dir.path(), options).unwrap();
        let mut slots: Vec<Option<Modelled>> = vec![None, None, None, None];
        let mut clock = 1_000u64;
        for op in ops {
            match op {
                Op::Append { slot, len } => {
                    if slots[slot].as_ref().is_some_and(|b| b.1) {
                        let (id, _, _) = slots[slot].take().unwrap();
                        rt.block_on(spool.retire(id)).unwrap();
                        continue;
                    }
                    let batch = slots[slot].get_or_insert_with(|| (spool.new_batch(), false, Vec::new()));
                    clock += 1;
                    let pcm = vec![(clock % 251) as u8; len];
                    let head = header(&format!("c{slot}"));
                    let header = batch.2.is_empty().then_some(&head);
                    rt.block_on(spool.append(batch.0, header, ts(clock), Bytes::copy_from_slice(&pcm))).unwrap();
                    batch.2.push(SpooledChunk { timestamp: ts(clock), pcm });
                }
                Op::Retire { slot } => {
                    if let Some((id, _, _)) = slots[slot].take() {
                        rt.block_on(spool.retire(id)).unwrap();
                    }
                }
                Op::Reopen => {
                    drop(spool);
                    let (again, found) = Spool::open(dir.path(), options).unwrap();
                    spool = again;
                    check_recovered(&spool, &found, &slots)?;
                    for slot in slots.iter_mut() {
                        match slot {
                            // Opened and never durable: nothing to find.
                            Some(batch) if batch.2.is_empty() => *slot = None,
                            Some(batch) => batch.1 = true,
                            None => {}
                        }
                    }
                }
            }
        }
        drop(spool);
        let (spool, found) = Spool::open(dir.path(), options).unwrap();
        check_recovered(&spool, &found, &slots)?;
    }
}

#[test]
fn the_fuzz_seed_is_a_log_of_two_batches_one_retired() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/corpus/spool_log/seed-two-batches-one-retired"
    );
    let seed = fs::read(path).unwrap();
    // The fuzz target uses input after its first byte as is when that byte is odd.
    let batches = scan_segment(&seed[1..]).unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(
        (batches[0].id, batches[0].chunks.len(), batches[0].pcm_bytes),
        (BatchId(0), 2, 64)
    );
}
