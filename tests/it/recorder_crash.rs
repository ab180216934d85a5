//! The recorder's crash test (issue 7): `kill -9` loses nothing that was acknowledged.
//!
//! A child process (`recorder-child`, src/bin/recorder_child) records four users — packs and
//! Omi batches, each plaintext (`standard`) and sealed (`enhanced`) — through spooled recorders
//! into an fs bucket, printing `ACK <user> <millis>` after every acknowledged push.
//! The test kills it with SIGKILL at random moments (during replay at start, or a random number
//! of ACKs plus a random delay into a run) at least 20 times, restarting it each time, then lets
//! one run finish. It then checks, per user:
//!
//! - ACKs are strictly increasing over all runs (no chunk was acknowledged twice);
//! - the objects' chunk ranges do not overlap, and every chunk 0..N is stored in exactly one
//!   object (so every ACKed chunk is there exactly once, and nothing was skipped on resume);
//! - each object, downloaded alone, is byte-identical to its chunks, and each conversation
//!   downloaded whole is the expected PCM in order;
//! - the bucket holds nothing but audio objects: no foreign or partial object; OpenDAL's fs
//!   temp files (in `.chunkvault-tmp/`, invisible to listings) can only be left by killed
//!   writers, and the final, unkilled run leaves none;
//! - the spool is empty at the end;
//! - once those temp files are older than an hour (their clocks are set back, plus one made
//!   up so the check never runs on none), the next start of the recorder removes them all.
//!
//! The seed is printed; `RECORDER_CRASH_SEED=<n>` replays a run.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chunk_format::{ObjectKind, Timestamp};
use chunk_service::{BatchLayout, DownloadOptions, DownloadRequest, ProtectionLevel};

#[path = "../src/bin/recorder_child/stream.rs"]
#[allow(dead_code)]
mod stream;

use stream::{CHUNK_BYTES, CHUNK_MS, CHUNKS_PER_CONVERSATION, USERS};

/// Chunks per user: more than the kill phase can reach (at most 60 ACKs, 15 per user, per
/// killed run).
const CHUNKS: u64 = 500;
/// Kills to make; the bar is 20.
const KILLS: usize = 25;
/// A run that prints nothing for this long is stuck.
const STALL: Duration = Duration::from_secs(30);
/// Bytes an Omi frame adds to a chunk (length, nonce, tag).
const FRAME_OVERHEAD: usize = 32;

/// SplitMix64: a small seeded generator, so a failing run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// When to kill a run.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after the start (often during spool replay or resume).
    AfterStart(Duration),
    /// After this many ACK lines, plus a delay.
    AfterAcks(usize, Duration),
    /// Never: the run must finish.
    Never,
}

/// What one run of the child did.
#[derive(Debug, Default)]
struct Run {
    /// (user, millis) of every ACK line.
    acks: Vec<(usize, u64)>,
    done: bool,
    killed: bool,
}

struct Paths {
    bucket: PathBuf,
    spool: PathBuf,
}

fn run_child(paths: &Paths, kill: Kill) -> Run {
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_recorder-child"))
        .arg(&paths.bucket)
        .arg(&paths.spool)
        .arg(CHUNKS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("recorder-child starts");
    let started = Instant::now();
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (lines_tx, lines) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut run = Run::default();
    let record = |run: &mut Run, line: String| {
        if line == "DONE" {
            run.done = true;
        } else if let Some(ack) = line.strip_prefix("ACK ") {
            let (user, millis) = ack.split_once(' ').expect("ACK <user> <millis>");
            run.acks.push((
                user.parse().expect("user index"),
                millis.parse().expect("millis"),
            ));
        } else {
            assert!(line.starts_with("READY "), "unexpected child line {line:?}");
        }
    };
    let mut kill_now = false;
    match kill {
        Kill::Never => {}
        Kill::AfterStart(delay) => {
            thread::sleep(delay);
            kill_now = true;
        }
        Kill::AfterAcks(count, delay) => loop {
            match lines.recv_timeout(STALL) {
                Ok(line) => {
                    record(&mut run, line);
                    if run.acks.len() >= count {
                        thread::sleep(delay);
                        kill_now = true;
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("recorder-child printed nothing for {STALL:?}");
                }
            }
        },
    }
    if kill_now {
        // SIGKILL; if the child already exited this is a no-op and the status says so.
        let _ = child.kill();
    }
    // Every line the child wrote before it died is an acknowledged chunk.
    loop {
        match lines.recv_timeout(STALL) {
            Ok(line) => record(&mut run, line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "recorder-child stalled ({:?} into the run)",
                    started.elapsed()
                );
            }
        }
    }
    let _ = reader.join();
    let status = child.wait().expect("wait for recorder-child");
    let stderr = errors.join().unwrap_or_default();
    run.killed = status.signal() == Some(9);
    assert!(
        run.killed || status.success(),
        "recorder-child failed with {status}: {stderr}"
    );
    assert!(
        run.killed || run.done,
        "recorder-child exited without DONE: {stderr}"
    );
    run
}

/// Files under `dir`, relative to it.
fn files(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under dir");
                out.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    out
}

fn temp_files(bucket: &Path) -> BTreeSet<String> {
    files(bucket)
        .into_iter()
        .filter(|f| f.starts_with(".chunkvault-tmp/"))
        .collect()
}

fn expected_pcm(user: usize, indices: impl Iterator<Item = u64>) -> Vec<u8> {
    indices.flat_map(|i| stream::pcm(user, i)).collect()
}

#[test]
fn kill_9_loses_no_acknowledged_chunk() {
    let seed = std::env::var("RECORDER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    println!("recorder_crash: seed {seed} (RECORDER_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = Paths {
        bucket: dir.path().join("bucket"),
        spool: dir.path().join("spool"),
    };
    let started = Instant::now();

    let mut acks: Vec<Vec<u64>> = vec![Vec::new(); USERS.len()];
    let mut kills = 0;
    let mut runs = 0;
    let mut finished_early = false;
    while kills < KILLS && runs < 4 * KILLS {
        runs += 1;
        let kill = if rng.below(5) == 0 {
            Kill::AfterStart(Duration::from_millis(rng.below(80)))
        } else {
            Kill::AfterAcks(
                1 + rng.below(60) as usize,
                Duration::from_millis(rng.below(15)),
            )
        };
        let run = run_child(&paths, kill);
        for (user, millis) in run.acks {
            acks[user].push(millis);
        }
        if run.killed {
            kills += 1;
        }
        if run.done {
            finished_early = true;
            break;
        }
    }
    assert!(
        !finished_early,
        "the child finished before {KILLS} kills; raise CHUNKS"
    );
    assert!(kills >= 20, "only {kills} kills in {runs} runs");
    let temp_before_final = temp_files(&paths.bucket);
    let last = run_child(&paths, Kill::Never);
    for (user, millis) in last.acks {
        acks[user].push(millis);
    }
    println!(
        "recorder_crash: {kills} kills over {runs} runs, then a clean run; ACKs per user {:?}; {} temp files of killed writers; {:?}",
        acks.iter().map(Vec::len).collect::<Vec<_>>(),
        temp_before_final.len(),
        started.elapsed()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(verify(&paths, &acks));

    // The final run adds no temp file: only killed writers leave them.
    assert_eq!(temp_files(&paths.bucket), temp_before_final);
    // Every spooled batch was uploaded and removed.
    for layout in std::fs::read_dir(&paths.spool).expect("spool dir") {
        let layout = layout.expect("dir entry").path();
        let summary = chunk_service::spool::inspect(&layout).expect("spool reads");
        assert_eq!(
            summary.batches, 0,
            "spool {layout:?} holds batches: {summary:?}"
        );
        // The active segment (and one holding `retire` records, pinned at most by it).
        assert!(
            summary.segments <= 2,
            "spool {layout:?} keeps retired segments: {summary:?}"
        );
    }

    // An hour later, the recorder's next start sweeps the killed writers' temp files.
    let temp_dir = paths.bucket.join(".chunkvault-tmp");
    std::fs::write(temp_dir.join("made-up-killed-writer"), [0u8; 64]).expect("temp file");
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    for name in temp_files(&paths.bucket) {
        std::fs::File::options()
            .write(true)
            .open(paths.bucket.join(&name))
            .and_then(|f| f.set_modified(two_hours_ago))
            .expect("age a temp file");
    }
    let swept = run_child(&paths, Kill::Never);
    assert!(swept.done && swept.acks.is_empty(), "{swept:?}");
    assert_eq!(temp_files(&paths.bucket), BTreeSet::new());
    runtime.block_on(verify(&paths, &acks));
}

async fn verify(paths: &Paths, acks: &[Vec<u64>]) {
    let service = stream::service(&paths.bucket, BatchLayout::Pack).expect("service");
    let mut audio_files = BTreeSet::new();
    for (user, (_, level, layout)) in USERS.iter().enumerate() {
        let uid = stream::user_id(user).expect("uid");
        // No chunk was acknowledged twice.
        assert!(
            acks[user].windows(2).all(|w| w[0] < w[1]),
            "user {user}: ACKs are not strictly increasing"
        );
        let (kind, omi_chunk_bytes) = match (layout, level) {
            (BatchLayout::Pack, _) => (ObjectKind::Pack, None),
            (_, ProtectionLevel::Enhanced) => {
                (ObjectKind::BatchEnc, Some(CHUNK_BYTES + FRAME_OVERHEAD))
            }
            _ => (ObjectKind::BatchBin, Some(CHUNK_BYTES)),
        };
        // Chunk index ranges of every object, over every conversation.
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for number in 0..=stream::conversation_of(CHUNKS - 1) {
            let conv = stream::conversation_id(number).expect("conversation id");
            let listing = service.list(&uid, &conv).await.expect("list");
            assert!(
                listing.foreign.is_empty(),
                "foreign objects: {:?}",
                listing.foreign
            );
            for entry in &listing.chunks {
                audio_files.insert(entry.path.clone());
                assert_eq!(entry.kind, kind, "{}", entry.path);
                let first = stream::index_of(entry.start.as_millis()).expect("start on grid");
                // A batch names its last chunk's start; a pack the end of its audio.
                let last_start = match kind {
                    ObjectKind::Pack => entry.end.as_millis() - CHUNK_MS,
                    _ => entry.end.as_millis(),
                };
                let last = stream::index_of(last_start).expect("end on grid");
                assert!(first <= last, "{}", entry.path);
                assert!(
                    stream::conversation_of(first) == number
                        && stream::conversation_of(last) == number,
                    "{} holds chunks of another conversation",
                    entry.path
                );
                if let Some(chunk_bytes) = omi_chunk_bytes {
                    let count = (last - first + 1) as usize;
                    assert_eq!(
                        entry.size as usize,
                        count * chunk_bytes,
                        "{}: a partial or padded object",
                        entry.path
                    );
                }
                // The object's chunks, requested one by one, are exactly the stream's.
                let pcm = service
                    .download(
                        &uid,
                        &conv,
                        &DownloadRequest::Timestamps(
                            (first..=last)
                                .map(|i| {
                                    Timestamp::from_millis(stream::timestamp_ms(i)).expect("ts")
                                })
                                .collect(),
                        ),
                        DownloadOptions::default(),
                    )
                    .await
                    .expect("download object")
                    .collect_vec()
                    .await
                    .expect("object PCM");
                assert!(
                    pcm == expected_pcm(user, first..=last),
                    "{}: PCM differs from chunks {first}..={last}",
                    entry.path
                );
                ranges.push((first, last));
            }
            // The conversation as a whole, in order.
            let from = stream::timestamp_ms(number * CHUNKS_PER_CONVERSATION);
            let end = ((number + 1) * CHUNKS_PER_CONVERSATION).min(CHUNKS);
            let whole = service
                .download(
                    &uid,
                    &conv,
                    &DownloadRequest::Range {
                        from: Timestamp::from_millis(from).expect("ts"),
                        to: Timestamp::from_millis(stream::timestamp_ms(end)).expect("ts"),
                    },
                    DownloadOptions::default(),
                )
                .await
                .expect("download conversation")
                .collect_vec()
                .await
                .expect("conversation PCM");
            assert!(
                whole == expected_pcm(user, number * CHUNKS_PER_CONVERSATION..end),
                "user {user} conversation {number}: merged PCM differs"
            );
        }
        // Objects are disjoint and together hold every chunk exactly once.
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            assert!(
                pair[0].1 < pair[1].0,
                "user {user}: objects overlap: chunks {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
        let stored: u64 = ranges.iter().map(|(a, b)| b - a + 1).sum();
        assert_eq!(stored, CHUNKS, "user {user}: chunks stored");
        assert_eq!(ranges.first().map(|r| r.0), Some(0));
        assert_eq!(ranges.last().map(|r| r.1), Some(CHUNKS - 1));
        for &millis in &acks[user] {
            let index = stream::index_of(millis).expect("ACK on grid");
            assert!(
                ranges.iter().any(|&(a, b)| (a..=b).contains(&index)),
                "user {user}: acknowledged chunk {index} is missing"
            );
        }
        println!(
            "recorder_crash: user {user} ({level}, {layout:?}): {} objects, {} chunks, {} acknowledged",
            ranges.len(),
            stored,
            acks[user].len()
        );
    }
    // Nothing in the bucket but the audio objects and killed writers' temp files.
    let other: Vec<String> = files(&paths.bucket)
        .into_iter()
        .filter(|f| !f.starts_with(".chunkvault-tmp/") && !audio_files.contains(f))
        .collect();
    assert!(
        other.is_empty(),
        "unexpected files in the bucket: {other:?}"
    );
}
