//! Download and merge: resolve a request through one listing, fetch each object once with
//! bounded concurrency, decode, and place the audio on a timeline, streamed.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chunk_crypto::UserKey;
use chunk_format::{ObjectKind, Timestamp};
use chunk_store::{ConversationId, StoreError, UserId};
use futures::stream::{self, BoxStream, Stream, StreamExt};

use crate::error::ServiceError;
use crate::read::decode::{decode_omi_keeping_opus, on_decode_pool};
use crate::read::format::{AudioFormat, FormatCheck};
use crate::read::list::ListEntry;
use crate::read::pack::LoadedPack;
use crate::read::placement::{MergeReport, PlacedObject, SharedReport};
use crate::read::policy::{OpenFor, PackSealing};
use crate::read::timeline::{
    Joining, Piece, Placing, SpanTimeline, Timeline, continues, stretches,
};
use crate::service::ChunkService;

/// Which audio to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadRequest {
    /// Omi style: the chunks starting at these timestamps (matched at millisecond precision; a
    /// timestamp inside a batch's range selects that batch; duplicates are used once).
    Timestamps(Vec<Timestamp>),
    /// All audio in `[from, to)`, clipped to the range.
    Range {
        /// Inclusive start.
        from: Timestamp,
        /// Exclusive end.
        to: Timestamp,
    },
}

impl DownloadRequest {
    /// An Omi-style request from float seconds, each rounded to the millisecond exactly like
    /// Python's `round(t, 3)` / `'%.3f'`.
    pub fn from_f64_timestamps(
        timestamps: impl IntoIterator<Item = f64>,
    ) -> Result<DownloadRequest, ServiceError> {
        timestamps
            .into_iter()
            .map(|t| Timestamp::from_f64(t).map_err(|e| ServiceError::InvalidInput(e.to_string())))
            .collect::<Result<_, _>>()
            .map(DownloadRequest::Timestamps)
    }
}

/// How to merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadOptions {
    /// Fill gaps between objects with silence (Omi's `fill_gaps`, default on). Without it,
    /// timestamp requests are concatenated in request order (Omi) and range requests in time
    /// order with holes collapsed.
    pub fill_gaps: bool,
    /// Sample rate of Omi objects, which carry none (Omi's default: 16 000). Packs carry
    /// their own rate in their header; the download's rate ([`PcmStream::sample_rate`]) is
    /// the rate of the data, and a request whose objects disagree fails with
    /// [`ServiceError::MixedFormats`] before any byte is produced.
    pub sample_rate: u32,
    /// Longest output a download may produce, in audio time (default 24 h): a request whose
    /// output would span more (a gap of years between two timestamps, say) is refused with
    /// [`ServiceError::SpanTooLong`] before any byte is produced.
    pub max_span: Duration,
    /// Skip objects that cannot be opened (wrong key, damage) or that vanished between the
    /// listing and the read, and report them in [`PcmStream::skipped`], instead of failing.
    /// Off by default: a partial result is never a success unless asked for. (Omi skips such
    /// objects; its compatible behaviour is this option on.)
    pub skip_bad: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            fill_gaps: true,
            sample_rate: 16_000,
            max_span: Duration::from_secs(24 * 3600),
            skip_bad: false,
        }
    }
}

/// An object a download with [`DownloadOptions::skip_bad`] left out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedObject {
    /// The object path.
    pub path: String,
    /// Where its audio would have started.
    #[serde(serialize_with = "crate::compact::as_str")]
    pub start: Timestamp,
    /// Why it was skipped (the error, one line).
    pub reason: String,
}

/// Merged PCM16LE mono audio, streamed in pieces; never holds the whole result in memory.
///
/// Ends with [`ServiceError::NoAudio`] if no object yielded any audio.
pub struct PcmStream {
    inner: BoxStream<'static, Result<Bytes, ServiceError>>,
    sample_rate: u32,
    max_bytes: u64,
    skipped: Skipped,
    report: SharedReport,
}

/// The objects a download skipped, shared between the stream and its fetches.
type Skipped = Arc<Mutex<Vec<SkippedObject>>>;

impl std::fmt::Debug for PcmStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmStream")
            .field("sample_rate", &self.sample_rate)
            .finish_non_exhaustive()
    }
}

impl PcmStream {
    /// The sample rate of the merged audio: the one rate of every object the download used
    /// (from pack headers; Omi objects at [`DownloadOptions::sample_rate`]).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// An upper bound of the bytes the stream yields, known before the first one: what a
    /// caller needs to refuse an output format that cannot hold the result (a WAV file holds
    /// at most 4 GiB) before writing anything.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The objects skipped so far (only with [`DownloadOptions::skip_bad`]); complete once
    /// the stream has ended.
    pub fn skipped(&self) -> Vec<SkippedObject> {
        self.skipped
            .lock()
            .map(|skipped| skipped.clone())
            .unwrap_or_default()
    }

    /// What placing the audio found so far: the time it covers, the gaps filled (or
    /// collapsed) and the overlaps trimmed, each with its objects; complete once the stream
    /// has ended. Timestamp requests without gap filling (Omi's plain concatenation) report
    /// no covered time, gaps or overlaps.
    pub fn report(&self) -> MergeReport {
        self.report.report()
    }

    /// Decoded samples of each object placed so far, in placement order (the audit's view).
    pub(crate) fn placed(&self) -> Vec<PlacedObject> {
        self.report.placed()
    }

    /// Collects the whole stream (for tests and small requests).
    pub async fn collect_vec(mut self) -> Result<Vec<u8>, ServiceError> {
        let mut out = Vec::new();
        while let Some(piece) = self.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }
}

impl Stream for PcmStream {
    type Item = Result<Bytes, ServiceError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// One fetch: an Omi object (candidates in preference order, the first that decodes wins) or a
/// run of adjacent chunks of a pack (one ranged read), each part of a placement [`Unit`].
#[derive(Debug, Clone)]
enum Job {
    Omi {
        candidates: Vec<ListEntry>,
        unit: Unit,
    },
    PackRun {
        pack: LoadedPack,
        run: Range<usize>,
        unit: Unit,
    },
}

/// What a job's audio is placed as: an Omi object, or one stretch of a pack's chunks that
/// follow each other without a gap ([`crate::read::timeline::continues`]). Units are placed in
/// order of their start, ties in plan order (multi-chunk objects first, then Omi's format
/// preference); the jobs of one unit (a long stretch is several reads) stay together, so how
/// the reads are cut never changes which audio wins an overlap. Compaction places by the same
/// units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Unit {
    start: Timestamp,
    serial: usize,
}

impl Job {
    /// Start and an upper bound of the end of the job's audio, in ms (Omi objects at
    /// `omi_rate`).
    fn bounds_ms(&self, omi_rate: u32) -> (u64, u64) {
        match self {
            Job::Omi { candidates, .. } => {
                let start = candidates.first().map_or(0, |c| c.start.as_millis());
                let longest = candidates
                    .iter()
                    .map(|c| c.max_duration_ms(omi_rate))
                    .max()
                    .unwrap_or(0);
                let (start, end) = (start, start.saturating_add(longest));
                // A span may place the audio elsewhere than the name: cover both.
                match candidates
                    .first()
                    .and_then(|c| c.span_start_ms().zip(c.span))
                {
                    Some((span_start, span)) => {
                        let span_ms = (span.duration_secs() * 1000.0).ceil() as u64;
                        (
                            start.min(span_start),
                            end.max(span_start.saturating_add(span_ms)),
                        )
                    }
                    None => (start, end),
                }
            }
            Job::PackRun { pack, run, .. } => {
                let start = pack.chunk_span(run.start).map_or(0, |(s, _)| s);
                let end = run
                    .end
                    .checked_sub(1)
                    .and_then(|last| pack.chunk_span(last))
                    .map_or(start, |(_, e)| e);
                (start, end)
            }
        }
    }

    /// The object the job reads and the format of its audio (Omi objects at `omi_rate`).
    fn format(&self, omi_rate: u32) -> (&str, AudioFormat) {
        match self {
            // A span records the object's rate; other Omi objects carry none.
            Job::Omi { candidates, .. } => (
                candidates.first().map_or("", |c| c.path.as_str()),
                AudioFormat::mono(
                    candidates
                        .first()
                        .and_then(|c| c.span)
                        .map_or(omi_rate, |span| span.sample_rate),
                ),
            ),
            Job::PackRun { pack, .. } => {
                let header = pack.index.header();
                (
                    pack.path.as_str(),
                    AudioFormat {
                        rate: header.sample_rate(),
                        channels: header.channels(),
                    },
                )
            }
        }
    }

    /// The start of the job's span, when the job is one spanned Omi object.
    fn span_start(&self) -> Option<f64> {
        match self {
            Job::Omi { candidates, .. } => candidates.first().and_then(|c| c.span).map(|s| s.start),
            Job::PackRun { .. } => None,
        }
    }

    /// The unit the job belongs to: the order jobs are placed in.
    fn unit(&self) -> Unit {
        match self {
            Job::Omi { unit, .. } | Job::PackRun { unit, .. } => *unit,
        }
    }

    fn start(&self) -> Timestamp {
        match self {
            Job::Omi { candidates, .. } => candidates.first().map_or(Timestamp::ZERO, |c| c.start),
            Job::PackRun { pack, run, .. } => pack
                .index
                .entries()
                .get(run.start)
                .map_or(Timestamp::ZERO, |e| e.start),
        }
    }
    /// Bytes the job holds at its peak: what is read plus what it decodes to (an Omi `.enc`
    /// is opened in place; Opus decodes to ~15x its size; a pack run's frames are read, then
    /// decoded next to them).
    fn peak_bytes(&self) -> u64 {
        match self {
            Job::Omi { candidates, .. } => candidates
                .iter()
                .map(|c| match c.kind {
                    // Raw PCM, or sealed PCM opened in place.
                    ObjectKind::Bin
                    | ObjectKind::BatchBin
                    | ObjectKind::Enc
                    | ObjectKind::BatchEnc => c.size,
                    ObjectKind::Opus | ObjectKind::OpusEnc => c.size * 17,
                    _ => c.size * 2,
                })
                .max()
                .unwrap_or(0),
            Job::PackRun { pack, run, .. } => {
                let plain: u64 = pack.index.entries()[run.clone()]
                    .iter()
                    .map(|e| u64::from(e.plain_len))
                    .sum();
                pack.stored_bytes(run) + plain
            }
        }
    }
}

/// A planned fetch before pack indexes are read.
#[derive(Debug, Clone)]
enum Planned {
    Omi(Vec<ListEntry>),
    /// A pack and the part of it the request selects.
    Pack(ListEntry, Selection),
}

/// Which chunks of a pack a request selects.
#[derive(Debug, Clone)]
enum Selection {
    /// Chunks holding any of these instants.
    Instants(Vec<Timestamp>),
    /// Chunks overlapping `[from, to)`.
    Range(Timestamp, Timestamp),
    /// Instants, each flagged when some chunk starts exactly there (then only that chunk).
    Exact(Vec<(Timestamp, bool)>),
}

impl Selection {
    /// The selection with, for every instant at which some chunk starts, only chunks starting
    /// exactly there (a chunk that merely covers such an instant is another chunk's audio).
    fn preferring_starts(self, starts: &HashSet<u64>) -> Selection {
        match self {
            Selection::Instants(instants) => Selection::Exact(
                instants
                    .into_iter()
                    .map(|t| (t, starts.contains(&t.as_millis())))
                    .collect(),
            ),
            other => other,
        }
    }

    fn selects(&self, start_ms: u64, end_ms: u64) -> bool {
        let covers =
            |t: &Timestamp| start_ms <= t.as_millis() && t.as_millis() < end_ms.max(start_ms + 1);
        match self {
            Selection::Instants(instants) => instants.iter().any(covers),
            Selection::Exact(instants) => instants.iter().any(|(t, exact)| {
                if *exact {
                    start_ms == t.as_millis()
                } else {
                    covers(t)
                }
            }),
            Selection::Range(from, to) => start_ms < to.as_millis() && end_ms > from.as_millis(),
        }
    }
}

/// Audio of one job: the object it came from, whether it was sealed, its runs of audio, and
/// the candidates tried before it that did not decode.
#[derive(Debug, Default)]
struct Decoded {
    path: Arc<str>,
    /// Start (ms) of the placement unit the job belongs to: what orders it among the others.
    unit_ms: u64,
    sealed: bool,
    runs: Vec<DecodedRun>,
    passed_over: Vec<SkippedObject>,
}

/// Contiguous audio of one job placed at `start_ms`: one pack chunk, or an Omi object's pieces
/// (one per chunk it records). `opus` is the Omi Opus container of a run of one piece that
/// decodes to exactly that piece (kept only when asked for: compaction).
#[derive(Debug)]
struct DecodedRun {
    start_ms: u64,
    pieces: Vec<Bytes>,
    opus: Option<Bytes>,
}

/// How the placing pipeline reads: what a download needs, or what compaction needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlaceOptions {
    /// How skipped objects are logged.
    skips: Skips,
    /// Keep the Omi Opus container of chunks that decode to exactly their PCM.
    keep_opus: bool,
    /// Why sealed packs are opened (compaction may open retired keys' packs to re-seal them).
    purpose: OpenFor,
    /// A plaintext pack where sealing is required fails the read even with `skip_bad`.
    refuse_unsealed: bool,
    /// [`DownloadOptions::skip_bad`], set by [`ChunkService::place`].
    skip_bad: bool,
}

impl PlaceOptions {
    /// A download's (or the audit's, with [`Skips::Debug`]).
    pub(crate) fn download(skips: Skips) -> PlaceOptions {
        PlaceOptions {
            skips,
            keep_opus: false,
            purpose: OpenFor::Reading,
            refuse_unsealed: false,
            skip_bad: false,
        }
    }

    /// Compaction's: Opus containers kept, retired keys opened to re-seal, and a plaintext pack
    /// that sealing requires refused (it is not undecodable, it is not allowed).
    pub(crate) fn compaction() -> PlaceOptions {
        PlaceOptions {
            skips: Skips::Debug,
            keep_opus: true,
            purpose: OpenFor::Resealing,
            refuse_unsealed: true,
            skip_bad: false,
        }
    }

    /// Whether a bad object is skipped (with `skip_bad`) rather than failing the read.
    fn skips_over(&self, error: &ServiceError) -> bool {
        self.skip_bad && !(self.refuse_unsealed && matches!(error, ServiceError::Unsealed { .. }))
    }
}

/// What the placing pipeline yields, in output order.
#[derive(Debug)]
pub(crate) enum Placed {
    /// The audio that follows, up to the next `Object`, is this object's.
    Object(PlacedFrom),
    /// This many samples of silence (a filled gap).
    Silence(u64),
    /// Audio placed on the timeline.
    Audio(PlacedAudio),
}

/// An object whose audio is placed next.
#[derive(Debug)]
pub(crate) struct PlacedFrom {
    pub(crate) path: Arc<str>,
    /// Whether the object was sealed (an Omi `.enc` kind, a sealed pack).
    pub(crate) sealed: bool,
    /// Candidates at the same instant tried before it that did not decode (they stay stored).
    pub(crate) passed_over: Vec<SkippedObject>,
}

/// A piece of placed audio.
#[derive(Debug)]
pub(crate) struct PlacedAudio {
    /// First sample's position, in samples from the timeline's origin (`None` when audio is
    /// concatenated, not placed in time).
    pub(crate) at: Option<i128>,
    /// PCM16LE, as placed (trimmed where earlier audio overlaps it).
    pub(crate) pcm: Bytes,
    /// The start (ms) of the chunk or object this piece begins, when nothing before its first
    /// sample was trimmed: a chunk written at this start is placed exactly where it is.
    pub(crate) head_ms: Option<u64>,
    /// Start (ms) of the placement unit the audio belongs to: where it stands in the order in
    /// which overlaps are won (earlier wins).
    pub(crate) unit_ms: u64,
    /// The Omi Opus container that decodes to exactly `pcm` (see [`PlaceOptions::compaction`]).
    pub(crate) opus: Option<Bytes>,
}

/// The placing pipeline's output: placed pieces, streamed, and what the read found.
pub(crate) struct PlacedStream {
    pub(crate) pieces: BoxStream<'static, Result<Placed, ServiceError>>,
    /// The one sample rate of the objects read.
    pub(crate) sample_rate: u32,
    /// An upper bound of the PCM bytes the pieces add up to.
    pub(crate) max_bytes: u64,
    /// How many fetch jobs the plan had (none: nothing to read).
    pub(crate) jobs: usize,
    pub(crate) skipped: Skipped,
    pub(crate) report: SharedReport,
}

/// Omi's lookup order for single-chunk objects sharing one timestamp.
pub(crate) fn preference(kind: ObjectKind) -> u8 {
    match kind {
        ObjectKind::OpusEnc => 0,
        ObjectKind::Enc => 1,
        ObjectKind::Opus => 2,
        ObjectKind::Bin => 3,
        _ => 4,
    }
}

impl ChunkService {
    /// Downloads and merges audio of a conversation as a stream of PCM16LE bytes.
    ///
    /// Resolves the request through one listing; fetches each object at most once, with at most
    /// `download_concurrency` objects in flight (fewer when large objects would exceed the
    /// memory budget); decrypts and decodes per object, trimming odd byte counts per chunk;
    /// for single-chunk objects sharing a timestamp, uses the first that decodes in Omi's order
    /// (`.opus.enc`, `.enc`, `.opus`, `.bin`), once. Undecodable objects are skipped with a
    /// warning (as Omi does); store errors fail the download.
    pub async fn download(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        request: &DownloadRequest,
        options: DownloadOptions,
    ) -> Result<PcmStream, ServiceError> {
        self.download_logged(uid, conversation, request, options, Skips::Warn)
            .await
    }

    /// [`ChunkService::download`], logging what `skip_bad` skips as `skips` says: the audit
    /// reports skipped objects as findings and logs them at debug level only.
    pub(crate) async fn download_logged(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        request: &DownloadRequest,
        options: DownloadOptions,
        skips: Skips,
    ) -> Result<PcmStream, ServiceError> {
        if options.sample_rate == 0 {
            return Err(ServiceError::InvalidInput(
                "sample rate must be positive".into(),
            ));
        }
        let listing = self.list(uid, conversation).await?;
        let placed = self
            .place(
                uid,
                conversation,
                &listing.chunks,
                request,
                options,
                PlaceOptions::download(skips),
            )
            .await?;
        if placed.jobs == 0 {
            return Err(ServiceError::NoAudio {
                uid: uid.to_string(),
                conversation: conversation.to_string(),
            });
        }
        let bytes = placed.pieces.flat_map(|item| match item {
            Ok(placed) => stream::iter(placed_bytes(placed).map(Ok)).left_stream(),
            Err(error) => stream::iter([Err(error)]).right_stream(),
        });
        Ok(PcmStream {
            inner: bytes.boxed(),
            sample_rate: placed.sample_rate,
            max_bytes: placed.max_bytes,
            skipped: placed.skipped,
            report: placed.report,
        })
    }

    /// The read pipeline under downloads and compaction: plans `entries` (one conversation's
    /// objects, or a part of them) for `request`, fetches and decodes them with bounded
    /// concurrency and memory, and places their audio on one timeline, streamed in output
    /// order. Every rule of which audio is served where lives here, so what compaction writes
    /// is what a download serves. A plan without jobs yields a stream that ends in
    /// [`ServiceError::NoAudio`].
    pub(crate) async fn place(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        entries: &[ListEntry],
        request: &DownloadRequest,
        options: DownloadOptions,
        how: PlaceOptions,
    ) -> Result<PlacedStream, ServiceError> {
        if options.sample_rate == 0 {
            return Err(ServiceError::InvalidInput(
                "sample rate must be positive".into(),
            ));
        }
        let no_audio = || ServiceError::NoAudio {
            uid: uid.to_string(),
            conversation: conversation.to_string(),
        };
        let how = PlaceOptions {
            skip_bad: options.skip_bad,
            ..how
        };
        let mut planned = plan(entries, request, options.sample_rate);
        // Omi's v2 spans of the batches planned (one stat each where the store keeps
        // metadata).
        self.read_spans(
            planned
                .iter_mut()
                .filter_map(|p| match p {
                    Planned::Omi(candidates) => Some(candidates.iter_mut()),
                    Planned::Pack(..) => None,
                })
                .flatten(),
        )
        .await?;
        let sealing = self.pack_sealing(uid).await?;
        let (mut jobs, mut skipped_packs) = self
            .expand(uid, conversation, entries, planned, how, sealing)
            .await?;
        let job_count = jobs.len();
        // One format for the whole output, from the data.
        let mut formats = FormatCheck::default();
        for job in &jobs {
            let (path, format) = job.format(options.sample_rate);
            formats.see(path, format)?;
        }
        let format = formats
            .format()
            .unwrap_or(AudioFormat::mono(options.sample_rate));
        if format.channels != 1 {
            return Err(ServiceError::InvalidInput(format!(
                "{}: downloads merge mono audio; this object has {} channels",
                jobs.first()
                    .map_or("", |job| job.format(options.sample_rate).0),
                format.channels
            )));
        }
        let rate = format.rate;
        let span = output_span(request, &jobs, options);
        let max_span_ms = u64::try_from(options.max_span.as_millis()).unwrap_or(u64::MAX);
        if span.millis > max_span_ms {
            return Err(ServiceError::SpanTooLong {
                uid: uid.to_string(),
                conversation: conversation.to_string(),
                span_ms: span.millis,
                max_ms: max_span_ms,
            });
        }
        let max_bytes = span.millis.saturating_mul(u64::from(rate)).div_ceil(1000) * 2;
        // Omi's span mode: a timestamp request whose every object is a spanned batch.
        let span_starts: Option<Vec<f64>> = match request {
            DownloadRequest::Timestamps(_) => jobs.iter().map(Job::span_start).collect(),
            DownloadRequest::Range { .. } => None,
        };
        let place_by_span = matches!(request, DownloadRequest::Range { .. });
        let timeline = match request {
            DownloadRequest::Timestamps(_) if span_starts.is_some() => {
                jobs.sort_by_key(Job::unit);
                Joiner::Span(
                    SpanTimeline::new(rate, options.fill_gaps),
                    jobs.iter().filter_map(Job::span_start).collect(),
                )
            }
            DownloadRequest::Timestamps(requested) => {
                let joining = if options.fill_gaps {
                    jobs.sort_by_key(Job::unit);
                    Joining::Timeline {
                        fill_gaps: true,
                        leading_silence: true,
                    }
                } else {
                    Joining::Concat
                };
                let origin = requested
                    .iter()
                    .copied()
                    .chain(jobs.iter().map(Job::start))
                    .min()
                    .unwrap_or(Timestamp::ZERO);
                Joiner::Ms(Timeline::new(rate, joining, origin.as_millis()))
            }
            DownloadRequest::Range { from, to } => {
                jobs.sort_by_key(Job::unit);
                let joining = Joining::Timeline {
                    fill_gaps: options.fill_gaps,
                    leading_silence: false,
                };
                let mut timeline = Timeline::new(rate, joining, from.as_millis());
                timeline.clip_end_ms(to.as_millis());
                Joiner::Ms(timeline)
            }
        };
        let key = self.omi_key(uid)?;
        // Jobs in flight, plus the one being emitted, must fit the memory budget.
        let largest = jobs.iter().map(Job::peak_bytes).max().unwrap_or(1).max(1);
        let budget_slots = usize::try_from(
            (self.inner.config.download_memory_budget as u64 / largest)
                .saturating_sub(1)
                .max(1),
        )
        .unwrap_or(usize::MAX);
        let concurrency = self
            .inner
            .config
            .download_concurrency
            .get()
            .min(budget_slots);
        let service = self.clone();
        let skipped: Skipped = Arc::default();
        if let Ok(mut all) = skipped.lock() {
            all.append(&mut skipped_packs);
        }
        let fetch_skipped = skipped.clone();
        let decoded = stream::iter(jobs)
            .map(move |job| {
                let unit_ms = job.unit().start.as_millis();
                let service = service.clone();
                let key = key.clone();
                let skipped = fetch_skipped.clone();
                async move {
                    match service
                        .fetch_job(job, key.as_ref(), place_by_span, how)
                        .await
                    {
                        Err(Fetch::Bad(skip)) if how.skips_over(&skip.error) => {
                            how.skips
                                .log(&skip.path, &skip.reason, "object skipped (skip_bad)");
                            if let Ok(mut all) = skipped.lock() {
                                all.extend(skip.into_skipped());
                            }
                            Ok(Decoded::default())
                        }
                        Err(Fetch::Bad(skip)) => Err(skip.error),
                        Err(Fetch::Failed(error)) => Err(error),
                        Ok(decoded) => Ok(Decoded { unit_ms, ..decoded }),
                    }
                }
            })
            .buffered(concurrency);
        let no_audio = no_audio();
        let report = SharedReport::default();
        let state = Some((decoded.boxed(), timeline, no_audio, report.clone()));
        let pieces = stream::unfold(state, |state| async move {
            let (mut decoded, mut timeline, no_audio, report) = state?;
            loop {
                match decoded.next().await {
                    Some(Ok(job)) => {
                        let out: Vec<Result<Placed, ServiceError>> =
                            timeline.place(job, &report).into_iter().map(Ok).collect();
                        if !out.is_empty() {
                            let state = Some((decoded, timeline, no_audio, report));
                            return Some((stream::iter(out), state));
                        }
                    }
                    Some(Err(error)) => return Some((stream::iter(vec![Err(error)]), None)),
                    None if timeline.emitted_any() => return None,
                    None => return Some((stream::iter(vec![Err(no_audio)]), None)),
                }
            }
        })
        .flatten();
        Ok(PlacedStream {
            pieces: pieces.boxed(),
            sample_rate: rate,
            max_bytes,
            jobs: job_count,
            skipped,
            report,
        })
    }

    /// Reads the index of every planned pack (bounded concurrency) and turns the plan into
    /// fetch jobs: Omi objects as they are, packs as runs of the selected chunks.
    async fn expand(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        entries: &[ListEntry],
        planned: Vec<Planned>,
        how: PlaceOptions,
        sealing: PackSealing,
    ) -> Result<(Vec<Job>, Vec<SkippedObject>), ServiceError> {
        let concurrency = self.inner.config.download_concurrency.get();
        // Read every planned pack's index first (bounded concurrency), keeping plan order.
        // An error is Ok(skip) for a pack skipped under `skip_bad`, Err(error) otherwise.
        type Loaded =
            Result<(Planned, Option<LoadedPack>), Result<Vec<SkippedObject>, ServiceError>>;
        let loaded: Vec<Loaded> = stream::iter(planned)
            .map(|planned| async move {
                match &planned {
                    Planned::Omi(_) => Ok((planned, None)),
                    Planned::Pack(entry, _) => {
                        match self
                            .load_pack(uid, conversation, entry, sealing, how.purpose)
                            .await
                        {
                            Ok(pack) => Ok((planned, Some(pack))),
                            Err(error) => match bad_object(&entry.path, entry.start, error) {
                                Fetch::Bad(skip) if how.skips_over(&skip.error) => {
                                    how.skips.log(
                                        &skip.path,
                                        &skip.reason,
                                        "pack skipped (skip_bad)",
                                    );
                                    Err(Ok(skip.into_skipped()))
                                }
                                Fetch::Bad(skip) => Err(Err(skip.error)),
                                Fetch::Failed(error) => Err(Err(error)),
                            },
                        }
                    }
                }
            })
            .buffered(concurrency)
            .collect()
            .await;
        let mut skipped = Vec::new();
        let mut kept = Vec::new();
        for result in loaded {
            match result {
                Ok(found) => kept.push(found),
                Err(Ok(skip)) => skipped.extend(skip),
                Err(Err(error)) => return Err(error),
            }
        }
        let loaded = kept;
        // Instants at which some chunk or object *starts*: a request for such an instant means
        // that chunk, not the end of an earlier chunk that happens to cover it.
        let mut starts: HashSet<u64> = entries
            .iter()
            .filter(|e| e.kind != ObjectKind::Pack)
            .map(|e| e.start.as_millis())
            .collect();
        for pack in loaded.iter().filter_map(|(_, pack)| pack.as_ref()) {
            starts.extend(pack.index.entries().iter().map(|e| e.start.as_millis()));
        }
        let mut jobs = Vec::new();
        for (planned, pack) in loaded {
            match (planned, pack) {
                (Planned::Pack(_, selection), Some(pack)) => {
                    let selection = selection.preferring_starts(&starts);
                    let chunks: Vec<usize> = (0..pack.index.len())
                        .filter(|&i| {
                            pack.chunk_span(i)
                                .is_some_and(|(start, end)| selection.selects(start, end))
                        })
                        .collect();
                    // Units are the pack's stretches, whatever the request selects of
                    // them, so a range places a pack's audio as the whole pack does.
                    let entries = pack.index.entries();
                    let rate = pack.index.header().sample_rate();
                    let mut selected = vec![false; entries.len()];
                    for &i in &chunks {
                        selected[i] = true;
                    }
                    let all: Vec<usize> = (0..entries.len()).collect();
                    for stretch in stretches(&all, |a, b| {
                        continues(
                            entries[a].start.as_millis(),
                            u64::from(entries[a].sample_count),
                            entries[b].start.as_millis(),
                            rate,
                        )
                    }) {
                        let chosen: Vec<usize> =
                            stretch.iter().copied().filter(|&i| selected[i]).collect();
                        if chosen.is_empty() {
                            continue;
                        }
                        let unit = Unit {
                            start: entries[stretch[0]].start,
                            serial: jobs.len(),
                        };
                        jobs.extend(pack.read_runs(&chosen).into_iter().map(|run| Job::PackRun {
                            pack: pack.clone(),
                            run,
                            unit,
                        }));
                    }
                }
                (Planned::Omi(candidates), _) => {
                    let unit = Unit {
                        start: candidates.first().map_or(Timestamp::ZERO, |c| c.start),
                        serial: jobs.len(),
                    };
                    jobs.push(Job::Omi { candidates, unit });
                }
                (Planned::Pack(..), None) => {}
            }
        }
        Ok((jobs, skipped))
    }

    /// Fetches and decodes one job. An Omi job tries its candidates in Omi's order and
    /// uses the first that decodes; only when none does is the job bad (naming every
    /// candidate). A spanned Omi object is placed at its span's start (to the ms) when
    /// `place_by_span`, else by its name.
    async fn fetch_job(
        &self,
        job: Job,
        key: Option<&UserKey>,
        place_by_span: bool,
        how: PlaceOptions,
    ) -> Result<Decoded, Fetch> {
        let candidates = match job {
            Job::PackRun { pack, run, .. } => {
                let start = pack
                    .index
                    .entries()
                    .get(run.start)
                    .map_or(Timestamp::ZERO, |e| e.start);
                return match self.read_pack_run(&pack, run, how.keep_opus).await {
                    Ok(chunks) => Ok(Decoded {
                        path: pack.path.as_str().into(),
                        // Set by the caller, which knows the job's unit.
                        unit_ms: 0,
                        sealed: pack.index.header().is_encrypted(),
                        runs: chunks
                            .into_iter()
                            .map(|chunk| DecodedRun {
                                start_ms: chunk.start_ms,
                                pieces: vec![chunk.pcm],
                                opus: chunk.opus,
                            })
                            .collect(),
                        passed_over: Vec::new(),
                    }),
                    Err(error) => Err(bad_object(&pack.path, start, error)),
                };
            }
            Job::Omi { candidates, .. } => candidates,
        };
        let mut failed: Vec<BadObject> = Vec::new();
        let limit = self.inner.config.max_decoded_chunk as u64;
        for candidate in &candidates {
            let bad = |error| match bad_object(&candidate.path, candidate.start, error) {
                Fetch::Bad(bad) => Ok(bad),
                Fetch::Failed(error) => Err(error),
            };
            if let Err(error) = self.check_omi_size(&candidate.path, candidate.kind, candidate.size)
            {
                failed.push(bad(error).map_err(Fetch::Failed)?);
                continue;
            }
            // The size was bounded by `check_omi_size` above.
            let bytes = match self
                .inner
                .store
                .read_sized(&candidate.path, candidate.size)
                .await
            {
                Ok(bytes) => bytes,
                // Deleted between listing and fetch: try the next format, like a 404 in Omi.
                Err(error @ StoreError::NotFound { .. }) => {
                    failed.push(bad(error.into()).map_err(Fetch::Failed)?);
                    continue;
                }
                Err(other) => return Err(Fetch::Failed(other.into())),
            };
            let (path, kind, key) = (candidate.path.clone(), candidate.kind, key.cloned());
            let decoded = on_decode_pool(&candidate.path, move || {
                decode_omi_keeping_opus(&path, kind, bytes, key.as_ref(), limit)
            })
            .await;
            match decoded {
                Ok((pieces, opus)) => {
                    let start_ms = candidate
                        .span_start_ms()
                        .filter(|_| place_by_span)
                        .unwrap_or(candidate.start.as_millis());
                    return Ok(Decoded {
                        path: candidate.path.as_str().into(),
                        unit_ms: 0,
                        sealed: candidate.kind.is_encrypted(),
                        runs: vec![DecodedRun {
                            start_ms,
                            pieces,
                            opus: opus.filter(|_| how.keep_opus),
                        }],
                        passed_over: failed
                            .into_iter()
                            .flat_map(BadObject::into_skipped)
                            .collect(),
                    });
                }
                Err(error) => {
                    how.skips.log(
                        &candidate.path,
                        &error.to_string(),
                        "undecodable object; trying the next format",
                    );
                    failed.push(bad(error).map_err(Fetch::Failed)?);
                }
            }
        }
        let mut failed = failed.into_iter();
        match failed.next() {
            Some(mut first) => {
                first.others = failed.flat_map(BadObject::into_skipped).collect();
                Err(Fetch::Bad(first))
            }
            None => Ok(Decoded::default()),
        }
    }
}

/// The timeline a download places its audio on: chunkvault's, in whole milliseconds, or
/// Omi's span mode with the span start of each job still to come.
enum Joiner {
    Ms(Timeline),
    Span(SpanTimeline, std::collections::VecDeque<f64>),
}

impl Joiner {
    /// Places one job's decoded runs, recording what placing found in `report`; returns what
    /// to emit: the object (when the job decoded one), then its placed audio.
    fn place(&mut self, decoded: Decoded, report: &SharedReport) -> Vec<Placed> {
        let mut out = Vec::new();
        let Decoded {
            path,
            unit_ms,
            sealed,
            runs,
            passed_over,
        } = decoded;
        if !path.is_empty() {
            out.push(Placed::Object(PlacedFrom {
                path: path.clone(),
                sealed,
                passed_over,
            }));
        }
        match self {
            Joiner::Ms(timeline) => {
                timeline.object(path);
                for DecodedRun {
                    start_ms,
                    pieces,
                    opus,
                } in runs
                {
                    out.extend(timeline.start_object(start_ms).map(Placed::from));
                    let head = timeline.position(start_ms);
                    let single = pieces.len() == 1;
                    for (i, pcm) in pieces.into_iter().enumerate() {
                        let fed = pcm.len();
                        match timeline.audio(pcm) {
                            Some(Piece::Audio(kept)) => {
                                let at = timeline.placed_at(kept.len() as u64 / 2);
                                let untrimmed_head = i == 0 && at == Some(head);
                                let whole = single && untrimmed_head && kept.len() == fed;
                                out.push(Placed::Audio(PlacedAudio {
                                    at,
                                    head_ms: untrimmed_head.then_some(start_ms),
                                    unit_ms,
                                    opus: if whole { opus.clone() } else { None },
                                    pcm: kept,
                                }));
                            }
                            other => out.extend(other.map(Placed::from)),
                        }
                    }
                }
            }
            Joiner::Span(timeline, starts) => {
                // One job, one span, whatever it decoded to (nothing, for a skipped object).
                let start = starts.pop_front();
                if let Some(start) = start.filter(|_| !runs.is_empty()) {
                    timeline.object(path);
                    out.extend(timeline.start_object(start).map(Placed::from));
                    for pcm in runs.into_iter().flat_map(|run| run.pieces) {
                        out.extend(timeline.audio(pcm).map(Placed::from));
                    }
                }
            }
        }
        match self {
            Joiner::Ms(timeline) => report.publish(timeline.log()),
            Joiner::Span(timeline, _) => report.publish(timeline.log()),
        }
        out
    }

    fn emitted_any(&self) -> bool {
        match self {
            Joiner::Ms(timeline) => timeline.emitted_any(),
            Joiner::Span(timeline, _) => timeline.emitted_any(),
        }
    }
}

/// How a download logs the objects it skips or falls through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skips {
    /// As warnings: an export that leaves audio out says so.
    Warn,
    /// At debug level: the caller reports them itself (the audit).
    Debug,
}

impl Skips {
    fn log(self, path: &str, reason: &str, what: &str) {
        match self {
            Skips::Warn => tracing::warn!(%path, %reason, "{what}"),
            Skips::Debug => tracing::debug!(%path, %reason, "{what}"),
        }
    }
}

/// Why a fetch gave no audio.
enum Fetch {
    /// The object cannot be opened (key, damage) or vanished since the listing: it fails the
    /// download, or is skipped with [`DownloadOptions::skip_bad`].
    Bad(BadObject),
    /// Anything else (the store failed): always fails the download.
    Failed(ServiceError),
}

/// An object that gave no audio, and why; with the other candidates of its job that gave
/// none either.
struct BadObject {
    path: String,
    start: Timestamp,
    reason: String,
    error: ServiceError,
    others: Vec<SkippedObject>,
}

impl BadObject {
    /// The object and the others, as skipped objects.
    fn into_skipped(self) -> Vec<SkippedObject> {
        let mut all = vec![SkippedObject {
            path: self.path,
            start: self.start,
            reason: self.reason,
        }];
        all.extend(self.others);
        all
    }
}

/// Sorts an error reading the object at `path` into bad (skippable) and failed.
fn bad_object(path: &str, start: Timestamp, error: ServiceError) -> Fetch {
    let error = match error {
        ServiceError::Store(StoreError::NotFound { .. }) => ServiceError::Vanished {
            path: path.to_owned(),
        },
        ServiceError::Store(_) => return Fetch::Failed(error),
        other => other,
    };
    Fetch::Bad(BadObject {
        path: path.to_owned(),
        start,
        reason: error.to_string(),
        error,
        others: Vec::new(),
    })
}

/// The audio time a download's output covers, from its jobs: what [`DownloadOptions::
/// max_span`] bounds.
struct OutputSpan {
    millis: u64,
}

/// The span of the output: from the origin (timestamp requests with gap filling start at the
/// earliest instant asked for) or the first audio, to the last audio's end bound, clipped to
/// a range request. Without gap filling, the sum of the jobs' durations.
fn output_span(request: &DownloadRequest, jobs: &[Job], options: DownloadOptions) -> OutputSpan {
    let rate = options.sample_rate;
    let bounds = jobs.iter().map(|job| job.bounds_ms(rate));
    let first = bounds.clone().map(|(s, _)| s).min().unwrap_or(0);
    let last = bounds.clone().map(|(_, e)| e).max().unwrap_or(0);
    let millis = match request {
        DownloadRequest::Range { from, to } if options.fill_gaps => last
            .min(to.as_millis())
            .saturating_sub(first.max(from.as_millis())),
        DownloadRequest::Timestamps(requested) if options.fill_gaps => {
            let origin = requested
                .iter()
                .map(|t| t.as_millis())
                .chain([first])
                .min()
                .unwrap_or(first);
            last.saturating_sub(origin)
        }
        _ => bounds.map(|(s, e)| e.saturating_sub(s)).sum(),
    };
    OutputSpan { millis }
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl From<Piece> for Placed {
    fn from(piece: Piece) -> Placed {
        match piece {
            Piece::Silence(samples) => Placed::Silence(samples),
            Piece::Audio(pcm) => Placed::Audio(PlacedAudio {
                at: None,
                pcm,
                head_ms: None,
                unit_ms: 0,
                opus: None,
            }),
        }
    }
}

/// Expands a placed piece into output bytes (an object marker adds none).
fn placed_bytes(placed: Placed) -> impl Iterator<Item = Bytes> {
    let piece = match placed {
        Placed::Object(_) => None,
        Placed::Silence(samples) => Some(Piece::Silence(samples)),
        Placed::Audio(audio) => Some(Piece::Audio(audio.pcm)),
    };
    piece.into_iter().flat_map(piece_bytes)
}

/// Expands a piece into output bytes: audio as is, silence as static zero slices of at most
/// 64 KiB each (no allocation however long the gap).
fn piece_bytes(piece: Piece) -> impl Iterator<Item = Bytes> {
    let (audio, mut silence_bytes) = match piece {
        Piece::Audio(bytes) => (Some(bytes), 0u64),
        Piece::Silence(samples) => (None, samples.saturating_mul(2)),
    };
    let silence = std::iter::from_fn(move || {
        if silence_bytes == 0 {
            return None;
        }
        let take = silence_bytes.min(ZEROS.len() as u64);
        silence_bytes -= take;
        Some(Bytes::from_static(&ZEROS[..take as usize]))
    });
    audio.into_iter().chain(silence)
}

/// Resolves a request against a listing into planned fetches, in request order (timestamp
/// requests) or time order (ranges). Each object appears once.
fn plan(entries: &[ListEntry], request: &DownloadRequest, omi_rate: u32) -> Vec<Planned> {
    let mut singles: HashMap<Timestamp, Vec<&ListEntry>> = HashMap::new();
    let mut multis: Vec<&ListEntry> = Vec::new();
    for entry in entries {
        if entry.is_batch {
            multis.push(entry);
        } else {
            singles.entry(entry.start).or_default().push(entry);
        }
    }
    for group in singles.values_mut() {
        group.sort_by_key(|e| preference(e.kind));
    }
    let single =
        |group: &Vec<&ListEntry>| Planned::Omi(group.iter().map(|e| (*e).clone()).collect());
    let mut planned = Vec::new();
    match request {
        DownloadRequest::Timestamps(requested) => {
            let mut seen_paths: HashSet<&str> = HashSet::new();
            let mut seen_ts: HashSet<Timestamp> = HashSet::new();
            for &ts in requested {
                let covering: Vec<&&ListEntry> =
                    multis.iter().filter(|m| m.name.covers(ts)).collect();
                if !covering.is_empty() {
                    for multi in covering {
                        if !seen_paths.insert(multi.path.as_str()) {
                            continue;
                        }
                        planned.push(if multi.kind == ObjectKind::Pack {
                            let instants = requested
                                .iter()
                                .copied()
                                .filter(|t| multi.name.covers(*t))
                                .collect();
                            Planned::Pack((*multi).clone(), Selection::Instants(instants))
                        } else {
                            Planned::Omi(vec![(*multi).clone()])
                        });
                    }
                }
                // Single objects at the instant are used too (a pack may have a gap there, or a
                // rewritten pack's END may be a bound past its audio); the timeline trims any
                // overlap, the multi-chunk object placed first winning.
                if let Some(group) = singles.get(&ts)
                    && seen_ts.insert(ts)
                {
                    planned.push(single(group));
                }
            }
        }
        DownloadRequest::Range { from, to } => {
            let overlaps = |entry: &ListEntry| {
                entry.start < *to
                    && entry.start.as_millis() + entry.max_duration_ms(omi_rate) > from.as_millis()
            };
            for multi in &multis {
                if overlaps(multi) {
                    planned.push(if multi.kind == ObjectKind::Pack {
                        Planned::Pack((*multi).clone(), Selection::Range(*from, *to))
                    } else {
                        Planned::Omi(vec![(*multi).clone()])
                    });
                }
            }
            let mut groups: Vec<&Vec<&ListEntry>> = singles.values().collect();
            groups.sort_by_key(|g| g.first().map(|e| e.start));
            for group in groups {
                if group.iter().any(|e| overlaps(e)) {
                    planned.push(single(group));
                }
            }
        }
    }
    planned
}
