//! `export`: download and merge a conversation's audio to WAV or raw PCM, streamed.
//!
//! To a file, the output is written to a temporary file next to it and renamed into place only
//! when complete (a failed export leaves no partial file and keeps an older file intact). Only
//! a regular file is ever replaced: an existing symbolic link, FIFO, device or directory at the
//! output path is refused before anything is downloaded (`-o -` is the way to a pipe). WAV
//! goes out with a placeholder header, the data is streamed, then the header is rewritten with
//! the real lengths. To stdout (`-o -`), PCM streams straight through; WAV, whose header needs
//! the length first, is spooled through a temporary file in the system temp directory and then
//! copied out (one download, memory bounded; disk use is the size of the output).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use chunk_format::wav::{WAV_HEADER_LEN, wav_header};
use chunk_service::{ChunkService, DownloadOptions, DownloadRequest, MergeReport, SkippedObject};
use chunk_store::{ConversationId, UserId};
use futures::StreamExt;
use serde_json::json;

use crate::cli::{ExportArgs, ExportFormat};
use crate::context::{self, Context};
use crate::{output, progress};

/// The most PCM bytes a WAV file's 32-bit sizes can describe (RIFF size = 36 + data).
const WAV_MAX_DATA: u32 = u32::MAX - 36;

/// What an export wrote.
#[derive(Debug, Clone)]
pub(crate) struct Exported {
    /// PCM bytes (without the WAV header).
    pub(crate) pcm_bytes: u64,
    /// Bytes written in total.
    pub(crate) file_bytes: u64,
    /// Sample rate of the audio (from the data; Omi objects at `--sample-rate`).
    pub(crate) sample_rate: u32,
    /// Objects left out (`--skip-bad` only).
    pub(crate) skipped: Vec<SkippedObject>,
    /// The gaps filled (or collapsed) and the overlaps trimmed.
    pub(crate) report: MergeReport,
}

/// What streaming the download into an output gave.
struct Streamed {
    pcm_bytes: u64,
    sample_rate: u32,
    skipped: Vec<SkippedObject>,
    report: MergeReport,
}

/// Runs `export`.
pub(crate) async fn run(ctx: &Context, args: &ExportArgs) -> Result<()> {
    let uid = context::user(&args.target.uid)?;
    let conversation = context::conversation(&args.target.conversation)?;
    let request = match (args.from, args.to) {
        (Some(from), Some(to)) => {
            if to <= from {
                bail!("--to {to} must be after --from {from}");
            }
            DownloadRequest::Range { from, to }
        }
        _ => DownloadRequest::Timestamps(args.timestamps.clone()),
    };
    let options = DownloadOptions {
        fill_gaps: !args.no_fill_gaps,
        sample_rate: args.sample_rate,
        max_span: std::time::Duration::from_secs(args.max_span),
        skip_bad: args.skip_bad,
    };
    let service = ctx.reader()?;
    let started = Instant::now();
    let job = Job {
        service: &service,
        uid: &uid,
        conversation: &conversation,
        request: &request,
        options,
        format: args.format,
        progress: ctx.progress(),
    };
    let exported = if args.output == "-" {
        job.to_stdout().await?
    } else {
        job.to_file(Path::new(&args.output)).await?
    };
    let seconds = exported.pcm_bytes as f64 / (2.0 * f64::from(exported.sample_rate.max(1)));
    let to_stdout = args.output == "-";
    if ctx.json && !to_stdout {
        output::print_json(&json!({
            "output": args.output,
            "format": match args.format { ExportFormat::Wav => "wav", ExportFormat::Pcm => "pcm" },
            "sample_rate": exported.sample_rate,
            "pcm_bytes": exported.pcm_bytes,
            "file_bytes": exported.file_bytes,
            "audio_seconds": seconds,
            "skipped": exported.skipped,
            "gaps": exported.report.gaps,
            "overlaps": exported.report.overlaps,
        }))?;
    } else if !ctx.json {
        let line = format!(
            "exported {} of audio ({} PCM, {} written) to {} in {}",
            output::duration(std::time::Duration::from_secs_f64(seconds)),
            output::bytes(exported.pcm_bytes),
            output::bytes(exported.file_bytes),
            if to_stdout { "stdout" } else { &args.output },
            output::duration(started.elapsed()),
        );
        if to_stdout {
            output::note(&line);
        } else {
            outln!("{line}")?;
        }
    }
    if (!ctx.json || to_stdout)
        && let Some(line) = timeline_note(&exported.report, exported.sample_rate)
    {
        output::note(&line);
    }
    if !exported.skipped.is_empty() && (!ctx.json || to_stdout) {
        output::note(&format!(
            "skipped {} object(s) (--skip-bad):",
            exported.skipped.len()
        ));
        for skip in &exported.skipped {
            output::note(&format!(
                "  {} at {}: {}",
                output::escaped(&skip.path),
                skip.start,
                output::escaped(&skip.reason)
            ));
        }
    }
    Ok(())
}

/// The stderr line on what placing did to the audio, if it filled, collapsed or trimmed any.
fn timeline_note(report: &MergeReport, rate: u32) -> Option<String> {
    if report.gaps.is_empty() && report.overlaps.is_empty() {
        return None;
    }
    let secs = |samples: u64| samples as f64 / f64::from(rate.max(1));
    let filled = report.gaps.iter().filter(|g| g.filled).count();
    let collapsed = report.gaps.len() - filled;
    let mut parts = Vec::new();
    if filled > 0 {
        let samples = report
            .gaps
            .iter()
            .filter(|g| g.filled)
            .map(|g| g.span.samples)
            .sum();
        parts.push(format!(
            "filled {filled} gap(s) with {:.3} s of silence",
            secs(samples)
        ));
    }
    if collapsed > 0 {
        let samples = report
            .gaps
            .iter()
            .filter(|g| !g.filled)
            .map(|g| g.span.samples)
            .sum();
        parts.push(format!(
            "collapsed {collapsed} gap(s) of {:.3} s",
            secs(samples)
        ));
    }
    if !report.overlaps.is_empty() {
        parts.push(format!(
            "trimmed {} overlap(s) of {:.3} s (audio stored twice; `chunkvault audit` lists them)",
            report.overlaps.len(),
            secs(report.overlap_samples())
        ));
    }
    Some(format!("timeline: {}", parts.join(", ")))
}

/// Refuses an output path where something other than a regular file exists: the rename of
/// the finished export would replace it (as root, `-o /dev/null` once replaced the system's
/// `/dev/null` with a regular file).
pub(crate) fn check_output_target(path: &Path) -> Result<()> {
    let meta = match path.symlink_metadata() {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("checking the output path {}", path.display()));
        }
    };
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(());
    }
    let what = if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file (FIFO, socket or device)"
    };
    bail!(
        "refusing to replace {}: it is {what}; export writes regular files only (use -o - to \
         write to a pipe or device)",
        output::escaped_path(path)
    )
}

/// One export: what to download and how to write it.
pub(crate) struct Job<'a> {
    pub(crate) service: &'a ChunkService,
    pub(crate) uid: &'a UserId,
    pub(crate) conversation: &'a ConversationId,
    pub(crate) request: &'a DownloadRequest,
    pub(crate) options: DownloadOptions,
    pub(crate) format: ExportFormat,
    pub(crate) progress: bool,
}

impl Job<'_> {
    /// Writes the export to `path` atomically (temporary file, then rename).
    pub(crate) async fn to_file(&self, path: &Path) -> Result<Exported> {
        check_output_target(path)?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".chunkvault-export-")
            .tempfile_in(&dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let (file, temp_path) = temp.into_parts();
        let exported = self.write_seekable(file).await?;
        // Again, right before the rename: the target may have changed during the download.
        check_output_target(path)?;
        temp_path
            .persist(path)
            .with_context(|| format!("moving the export into place at {}", path.display()))?;
        Ok(exported)
    }

    /// Writes the export to stdout (see the module docs for WAV).
    async fn to_stdout(&self) -> Result<Exported> {
        match self.format {
            ExportFormat::Pcm => {
                let stdout = std::io::stdout().lock();
                let mut out = BufWriter::with_capacity(256 * 1024, stdout);
                let streamed = self.stream_into(&mut out).await?;
                out.flush().context("writing to stdout")?;
                Ok(Exported {
                    pcm_bytes: streamed.pcm_bytes,
                    file_bytes: streamed.pcm_bytes,
                    sample_rate: streamed.sample_rate,
                    skipped: streamed.skipped,
                    report: streamed.report,
                })
            }
            ExportFormat::Wav => {
                let mut spool = tempfile::tempfile().context("creating a temporary file")?;
                let exported = self.write_seekable(spool.try_clone()?).await?;
                spool.seek(SeekFrom::Start(0))?;
                let mut stdout = std::io::stdout().lock();
                std::io::copy(&mut spool, &mut stdout).context("writing to stdout")?;
                stdout.flush().context("writing to stdout")?;
                Ok(exported)
            }
        }
    }

    /// Writes header placeholder (WAV), data, then the real header into a seekable file.
    async fn write_seekable(&self, file: File) -> Result<Exported> {
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let header_len = match self.format {
            ExportFormat::Wav => {
                out.write_all(&[0u8; WAV_HEADER_LEN])
                    .context("writing the WAV header")?;
                WAV_HEADER_LEN as u64
            }
            ExportFormat::Pcm => 0,
        };
        let streamed = self.stream_into(&mut out).await?;
        let (pcm_bytes, sample_rate) = (streamed.pcm_bytes, streamed.sample_rate);
        let mut file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing the output")?;
        if self.format == ExportFormat::Wav {
            let data_len = u32::try_from(pcm_bytes)
                .ok()
                .filter(|len| len.checked_add(36).is_some())
                .with_context(|| {
                    format!(
                        "{pcm_bytes} bytes of audio do not fit a WAV file (4 GiB); use --format pcm"
                    )
                })?;
            let header = wav_header(data_len, sample_rate, 1)?;
            file.seek(SeekFrom::Start(0))
                .context("rewriting the WAV header")?;
            file.write_all(&header)
                .context("rewriting the WAV header")?;
        }
        file.sync_all().context("syncing the output")?;
        Ok(Exported {
            pcm_bytes,
            file_bytes: header_len + pcm_bytes,
            sample_rate,
            skipped: streamed.skipped,
            report: streamed.report,
        })
    }

    /// Downloads and writes the merged PCM; returns its length, its sample rate and what was
    /// skipped. A WAV output that could not hold the result is refused before any byte.
    async fn stream_into(&self, out: &mut impl Write) -> Result<Streamed> {
        let mut stream = self
            .service
            .download(self.uid, self.conversation, self.request, self.options)
            .await?;
        if self.format == ExportFormat::Wav && stream.max_bytes() > u64::from(WAV_MAX_DATA) {
            bail!(
                "the export may hold up to {} of audio, more than a WAV file can (4 GiB); use \
                 --format pcm, or a shorter range",
                output::bytes(stream.max_bytes())
            );
        }
        let bar = progress::bytes(self.progress, "exporting");
        let mut written = 0u64;
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            out.write_all(&piece).context("writing the output")?;
            written += piece.len() as u64;
            bar.set_position(written);
        }
        bar.finish_and_clear();
        Ok(Streamed {
            pcm_bytes: written,
            sample_rate: stream.sample_rate(),
            skipped: stream.skipped(),
            report: stream.report(),
        })
    }
}
