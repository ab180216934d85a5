//! `recorder-child`: the process the recorder crash test (`it/recorder_crash.rs`) kills.
//!
//! `recorder-child BUCKET_DIR SPOOL_DIR CHUNKS` records `CHUNKS` chunks per user (see
//! `stream.rs`) into the fs bucket, through one spooled [`Recorder`] per batch layout (spools in
//! `SPOOL_DIR/<layout>`), resuming after whatever an earlier (killed) run already stored or
//! spooled. It prints `READY <first index>` once the spools are replayed, `ACK <user> <millis>`
//! after each acknowledged push (stdout flushed, so a line the parent sees is a chunk the
//! recorder acknowledged; the users' pushes of one chunk index run concurrently), and `DONE` after a clean `close`. Any error exits with status 3.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chunk_format::Timestamp;
use chunk_service::{Recorder, RecorderConfig};

// Shared with it/recorder_crash.rs, which uses a few items the child does not.
#[allow(dead_code)]
mod stream;

use stream::{CHUNK_MS, CHUNKS_PER_BATCH, LAYOUTS, USERS};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("recorder-child: {error}");
            ExitCode::from(3)
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(bucket), Some(spool), Some(chunks)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: recorder-child BUCKET_DIR SPOOL_DIR CHUNKS".into());
    };
    let (bucket, spool) = (PathBuf::from(bucket), PathBuf::from(spool));
    let chunks: u64 = chunks.to_str().ok_or("CHUNKS is not UTF-8")?.parse()?;

    let mut recorders = Vec::new();
    for (layout, name) in LAYOUTS {
        let config = RecorderConfig {
            max_batch_duration: Duration::from_millis(CHUNKS_PER_BATCH * CHUNK_MS),
            ..RecorderConfig::spool(spool.join(name))
        };
        let (recorder, _report) = Recorder::open(stream::service(&bucket, layout)?, config).await?;
        recorders.push((layout, recorder));
    }
    let recorder_of = |user: usize| {
        recorders
            .iter()
            .find(|(layout, _)| *layout == USERS[user].2)
            .map(|(_, recorder)| recorder)
            .ok_or("no recorder for the user's layout")
    };

    // Resume each user after the last chunk the store or the spool holds: that chunk may be
    // durable without its ACK line ever having been printed.
    let conversations = stream::conversation_of(chunks.saturating_sub(1)) + 1;
    let mut next = [0u64; USERS.len()];
    for (user, next) in next.iter_mut().enumerate() {
        let uid = stream::user_id(user)?;
        for number in 0..conversations {
            let conversation = stream::conversation_id(number)?;
            if let Some(last) = recorder_of(user)?.resume_point(&uid, &conversation).await? {
                *next = (*next).max(stream::next_after(last.as_millis()));
            }
        }
    }
    let first = next.iter().copied().min().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {first}")?;
    out.flush()?;

    // Every user's push of one index runs at once, so the spool's log commits several
    // streams' chunks together (group commit) and kills land between and inside those rounds.
    for index in first..chunks {
        let conversation = stream::conversation_id(stream::conversation_of(index))?;
        let millis = stream::timestamp_ms(index);
        let timestamp = Timestamp::from_millis(millis).ok_or("timestamp out of range")?;
        let mut pushes = Vec::new();
        for (user, (_, level, _)) in USERS.iter().enumerate() {
            if index < next[user] {
                continue;
            }
            let uid = stream::user_id(user)?;
            let recorder = recorder_of(user)?.clone();
            let conversation = conversation.clone();
            let pcm = stream::pcm(user, index);
            let level = *level;
            pushes.push(async move {
                recorder
                    .push(&uid, &conversation, timestamp, pcm, Some(level))
                    .await
                    .map(|_| user)
            });
        }
        for pushed in futures::future::join_all(pushes).await {
            writeln!(out, "ACK {} {millis}", pushed?)?;
            out.flush()?;
        }
    }
    for (_, recorder) in &recorders {
        recorder.close().await?;
    }
    writeln!(out, "DONE")?;
    out.flush()?;
    Ok(())
}
