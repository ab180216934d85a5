//! Placing decoded audio on a timeline: gap filling with silence, overlap trimming, clipping.
//!
//! Sans-IO: the download pipeline feeds it each object's (or each pack chunk's) start and its
//! PCM in pieces, and it emits [`Piece`]s in output order. Positions are whole samples from an
//! origin, computed from integer milliseconds (`ms * rate / 1000`, rounded down), so the output
//! length never depends on floating-point error.

use std::sync::Arc;

use bytes::Bytes;

use crate::read::placement::{PlacementLog, TimeSpan};

/// Whether audio starting at `next_ms` follows audio that started at `prev_ms` and lasted
/// `prev_samples` at `rate` without a gap of a sample or more (overlapping it is following it).
/// The one rule that makes a pack's chunks one placement unit, a *stretch*, for downloads and
/// compaction alike: a stretch is placed as a whole at its start, so an object starting in a
/// hole between two stretches of a pack is placed in that hole, not trimmed away behind the
/// pack's later audio.
pub(crate) fn continues(prev_ms: u64, prev_samples: u64, next_ms: u64, rate: u32) -> bool {
    let position = |ms: u64| u128::from(ms) * u128::from(rate) / 1000;
    position(next_ms) <= position(prev_ms) + u128::from(prev_samples)
}

/// Splits `items` into maximal stretches in which each item `follows` the one before it.
pub(crate) fn stretches<T: Copy>(
    items: &[T],
    follows: impl Fn(T, T) -> bool,
) -> impl Iterator<Item = &[T]> {
    items.chunk_by(move |a, b| follows(*a, *b))
}

/// What both timelines share: a [`PlacementLog`] of what placing did, and the object the
/// audio being fed belongs to.
pub(crate) trait Placing {
    /// What placing has recorded.
    fn log(&mut self) -> &mut PlacementLog;

    /// The audio fed from now on belongs to `object` (named in overlaps).
    fn object(&mut self, object: Arc<str>) {
        self.log().object(object);
    }
}

impl Placing for Timeline {
    fn log(&mut self) -> &mut PlacementLog {
        &mut self.log
    }
}

impl Placing for SpanTimeline {
    fn log(&mut self) -> &mut PlacementLog {
        &mut self.log
    }
}

/// How placed audio is joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joining {
    /// Audio in time order: gaps become silence (when `fill_gaps`), overlaps are trimmed from
    /// the later object, and nothing before the origin or after the clip end is emitted.
    Timeline {
        /// Insert silence for gaps (else gaps are collapsed).
        fill_gaps: bool,
        /// Emit silence from the origin up to the first audio.
        leading_silence: bool,
    },
    /// Audio concatenated in the order it is placed, untouched (Omi's `fill_gaps = false` mode
    /// for timestamp requests).
    Concat,
}

/// A piece of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// This many samples of silence (zero PCM16).
    Silence(u64),
    /// PCM16LE bytes (always an even count).
    Audio(Bytes),
}

/// The timeline state.
#[derive(Debug)]
pub(crate) struct Timeline {
    rate: u64,
    joining: Joining,
    origin_ms: u64,
    /// Samples emitted so far, measured from the origin; `None` before the first audio when no
    /// leading silence is wanted.
    cursor: Option<i128>,
    /// Exclusive end of the output in samples from the origin.
    clip_end: Option<i128>,
    /// Position of the next sample of the current object, in samples from the origin.
    next: i128,
    emitted_any: bool,
    /// What placing found: covered spans, gaps, overlaps.
    log: PlacementLog,
}

impl Timeline {
    /// A timeline whose sample 0 is at `origin_ms`, at `rate` samples per second.
    pub(crate) fn new(rate: u32, joining: Joining, origin_ms: u64) -> Timeline {
        let leading = matches!(
            joining,
            Joining::Timeline {
                leading_silence: true,
                ..
            }
        );
        Timeline {
            rate: u64::from(rate),
            joining,
            origin_ms,
            cursor: leading.then_some(0),
            clip_end: None,
            next: 0,
            emitted_any: false,
            log: PlacementLog::default(),
        }
    }

    /// The span between two sample positions.
    fn span(&self, from: i128, to: i128) -> TimeSpan {
        let ms = |p: i128| {
            let delta = (p * 1000).div_euclid(i128::from(self.rate.max(1)));
            u64::try_from(i128::from(self.origin_ms) + delta).unwrap_or(0)
        };
        TimeSpan {
            start_ms: ms(from),
            end_ms: ms(to),
            samples: u64::try_from(to - from).unwrap_or(0),
        }
    }

    /// Stops the output at `end_ms` (exclusive).
    pub(crate) fn clip_end_ms(&mut self, end_ms: u64) {
        self.clip_end = Some(self.position(end_ms));
    }

    /// The sample position of `ms`, counted from the origin (rounded down).
    pub(crate) fn position(&self, ms: u64) -> i128 {
        let delta = i128::from(ms) - i128::from(self.origin_ms);
        // Floor division, also for audio that starts before the origin.
        (delta * i128::from(self.rate)).div_euclid(1000)
    }

    /// Starts a new object (or pack chunk) whose audio begins at `start_ms`; returns the silence
    /// to emit before it, if any.
    ///
    /// Before the first audio (without leading silence) nothing is decided here: the output's
    /// clock starts at the first sample that [`Timeline::audio`] actually places at or after the
    /// origin. An object whose audio ends before the origin therefore leaves no trace, so the
    /// output depends only on the audio, never on which objects a size-based bound selected.
    pub(crate) fn start_object(&mut self, start_ms: u64) -> Option<Piece> {
        let start = self.position(start_ms);
        self.next = start;
        let Joining::Timeline { fill_gaps, .. } = self.joining else {
            return None;
        };
        let cursor = self.cursor?;
        if start > cursor && fill_gaps {
            let end = self.clip_end.map_or(start, |clip| start.min(clip));
            let silence = end - cursor;
            if silence <= 0 {
                return None;
            }
            self.log.gap(self.span(cursor, end), true);
            self.cursor = Some(end);
            self.emitted_any = true;
            Some(Piece::Silence(u64::try_from(silence).unwrap_or(0)))
        } else if start > cursor {
            // A gap that is not filled is skipped: the cursor still follows the timeline, so
            // later overlaps and the clip end are judged in real time, not in output bytes.
            let end = self.clip_end.map_or(start, |clip| start.min(clip));
            if end > cursor {
                self.log.gap(self.span(cursor, end), false);
            }
            self.cursor = Some(start);
            None
        } else {
            None
        }
    }

    /// Feeds the next PCM bytes of the current object (even length); returns what to emit.
    ///
    /// Samples placed before the cursor (an overlap: earlier audio wins) or before the origin
    /// are dropped, and so are samples at or after the clip end.
    pub(crate) fn audio(&mut self, mut pcm: Bytes) -> Option<Piece> {
        let samples = (pcm.len() / 2) as i128;
        let first = self.next;
        self.next += samples;
        self.log.decoded(u64::try_from(samples).unwrap_or(0));
        if matches!(self.joining, Joining::Concat) {
            if pcm.is_empty() {
                return None;
            }
            self.emitted_any = true;
            return Some(Piece::Audio(pcm));
        }
        // Nothing before the cursor, nor (before the first audio) before the origin.
        let floor = self.cursor.unwrap_or(0);
        let drop = (floor - first).clamp(0, samples);
        // Dropped behind audio already placed (not merely before the origin): an overlap.
        if self.log.has_owner() && drop > 0 {
            self.log.overlap(self.span(first.max(0), first + drop));
        }
        let at = first + drop;
        let mut keep = samples - drop;
        if let Some(clip) = self.clip_end {
            keep = keep.min((clip - at).max(0));
        }
        if keep <= 0 {
            return None;
        }
        let drop_bytes = usize::try_from(drop * 2).unwrap_or(usize::MAX);
        let keep_bytes = usize::try_from(keep * 2).unwrap_or(usize::MAX);
        pcm = pcm.slice(drop_bytes..drop_bytes + keep_bytes);
        self.log.audio(self.span(at, at + keep));
        self.cursor = Some(at + keep);
        self.emitted_any = true;
        Some(Piece::Audio(pcm))
    }

    /// Where the audio [`Timeline::audio`] just returned, `samples` long, starts (samples from
    /// the origin); `None` when audio is concatenated rather than placed in time.
    pub(crate) fn placed_at(&self, samples: u64) -> Option<i128> {
        match self.joining {
            Joining::Concat => None,
            Joining::Timeline { .. } => Some(self.cursor? - i128::from(samples)),
        }
    }

    /// Whether anything (audio or silence) was emitted.
    pub(crate) fn emitted_any(&self) -> bool {
        self.emitted_any
    }
}

/// Omi's v2 span mode (`omi-layout.md` §4.5a), reproduced operation for operation so that a
/// download of spanned batches equals Omi's: objects in key order, each at its span's start
/// (float seconds), with a cursor at the end of the audio so far.
///
/// - an object starting at least 1 ms before the cursor loses
///   `floor((cursor − start) · rate · 2)` bytes, rounded down to even, and starts at the
///   cursor (an object losing everything adds nothing);
/// - with gap filling, an object starting more than 1 ms after the cursor gets
///   `int((start − cursor) · rate)` samples of silence first;
/// - the cursor moves to `start + bytes / (2 · rate)`.
///
/// The first object starts the output: there is no leading silence.
#[derive(Debug)]
pub(crate) struct SpanTimeline {
    rate: f64,
    fill_gaps: bool,
    cursor: Option<f64>,
    /// The current object's start (after trimming) and the bytes of it emitted so far.
    current: Option<(f64, u64)>,
    /// Bytes still to drop from the head of the current object.
    drop: u64,
    /// The current object's own start (before trimming) and the bytes dropped from its head.
    head: (f64, u64),
    emitted_any: bool,
    /// What placing found: covered spans, gaps, overlaps.
    log: PlacementLog,
}

/// The span from `from` to `to` seconds, `samples` long.
fn secs_span(from: f64, to: f64, samples: u64) -> TimeSpan {
    let ms = |secs: f64| (secs * 1000.0).floor().max(0.0) as u64;
    TimeSpan {
        start_ms: ms(from),
        end_ms: ms(to),
        samples,
    }
}

/// Omi's tolerance in span mode: 1 ms.
const SPAN_SLACK_SECS: f64 = 0.001;

impl SpanTimeline {
    /// A span timeline at `rate` samples per second.
    pub(crate) fn new(rate: u32, fill_gaps: bool) -> SpanTimeline {
        SpanTimeline {
            rate: f64::from(rate),
            fill_gaps,
            cursor: None,
            current: None,
            drop: 0,
            head: (0.0, 0),
            emitted_any: false,
            log: PlacementLog::default(),
        }
    }

    /// Starts the next object, whose span starts at `start` seconds; returns the silence to
    /// emit before it, if any.
    pub(crate) fn start_object(&mut self, start: f64) -> Option<Piece> {
        if let Some((begun, bytes)) = self.current.take() {
            self.cursor = Some(begun + bytes as f64 / (2.0 * self.rate));
        }
        self.drop = 0;
        self.head = (start, 0);
        let Some(cursor) = self.cursor else {
            self.current = Some((start, 0));
            return None;
        };
        if start + SPAN_SLACK_SECS <= cursor {
            let drop = ((cursor - start) * self.rate * 2.0).floor() as u64;
            self.drop = drop - drop % 2;
            self.current = Some((cursor, 0));
            return None;
        }
        self.current = Some((start, 0));
        if self.fill_gaps && start > cursor + SPAN_SLACK_SECS {
            let samples = ((start - cursor) * self.rate) as u64;
            if samples > 0 {
                self.log.gap(secs_span(cursor, start, samples), true);
                self.emitted_any = true;
                return Some(Piece::Silence(samples));
            }
        }
        None
    }

    /// Feeds the next PCM bytes of the current object (even length); returns what to emit.
    pub(crate) fn audio(&mut self, mut pcm: Bytes) -> Option<Piece> {
        self.log.decoded(pcm.len() as u64 / 2);
        let (begun, placed) = self.current.unwrap_or((0.0, 0));
        let at = |bytes: u64| begun + bytes as f64 / (2.0 * self.rate);
        let drop = self.drop.min(pcm.len() as u64);
        self.drop -= drop;
        if drop > 0 && self.log.has_owner() {
            // The dropped head: from the object's own start, behind the audio so far.
            let (start, before) = self.head;
            let secs = |bytes: u64| start + bytes as f64 / (2.0 * self.rate);
            self.log
                .overlap(secs_span(secs(before), secs(before + drop), drop / 2));
        }
        self.head.1 += drop;
        pcm = pcm.slice(usize::try_from(drop).unwrap_or(pcm.len())..);
        if pcm.is_empty() {
            return None;
        }
        let len = pcm.len() as u64;
        self.log
            .audio(secs_span(at(placed), at(placed + len), len / 2));
        if let Some((_, bytes)) = self.current.as_mut() {
            *bytes += len;
        }
        self.emitted_any = true;
        Some(Piece::Audio(pcm))
    }

    /// Whether anything (audio or silence) was emitted.
    pub(crate) fn emitted_any(&self) -> bool {
        self.emitted_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::placement::MergeReport;

    fn run(timeline: &mut Timeline, objects: &[(u64, usize)]) -> Vec<Piece> {
        let mut out = Vec::new();
        for (i, &(start, samples)) in objects.iter().enumerate() {
            timeline.object(format!("o{i}").into());
            out.extend(timeline.start_object(start));
            out.extend(timeline.audio(Bytes::from(vec![i as u8 + 1; samples * 2])));
        }
        out
    }

    fn shape(pieces: &[Piece]) -> Vec<(char, u64)> {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Silence(n) => ('s', *n),
                Piece::Audio(b) => ('a', b.len() as u64 / 2),
            })
            .collect()
    }

    const FILL: Joining = Joining::Timeline {
        fill_gaps: true,
        leading_silence: true,
    };

    #[test]
    fn gaps_become_silence_at_16k() {
        let mut t = Timeline::new(16_000, FILL, 1_000);
        // Objects of 1 s at 1.0 s and 3.0 s: a 1 s hole.
        let out = run(&mut t, &[(1_000, 16_000), (3_000, 16_000)]);
        assert_eq!(shape(&out), [('a', 16_000), ('s', 16_000), ('a', 16_000)]);
    }

    #[test]
    fn leading_silence_from_origin() {
        let mut t = Timeline::new(16_000, FILL, 0);
        let out = run(&mut t, &[(5_000, 80_000)]);
        assert_eq!(shape(&out), [('s', 80_000), ('a', 80_000)]);
    }

    #[test]
    fn overlaps_are_trimmed_from_the_later_object() {
        let mut t = Timeline::new(16_000, FILL, 0);
        // 1 s of audio at 0, then 1 s at 0.5 s: the first 0.5 s of the second is dropped.
        let out = run(&mut t, &[(0, 16_000), (500, 16_000)]);
        assert_eq!(shape(&out), [('a', 16_000), ('a', 8_000)]);
        // A duplicate of the same object adds nothing.
        let mut t = Timeline::new(16_000, FILL, 0);
        let out = run(&mut t, &[(0, 16_000), (0, 16_000)]);
        assert_eq!(shape(&out), [('a', 16_000)]);
    }

    #[test]
    fn clipping_range_without_leading_silence() {
        let joining = Joining::Timeline {
            fill_gaps: true,
            leading_silence: false,
        };
        let mut t = Timeline::new(16_000, joining, 500);
        t.clip_end_ms(2_500);
        // Object at 0..1 s starts before the origin: its first 0.5 s is dropped.
        // Object at 2..3 s is clipped at 2.5 s.
        let out = run(&mut t, &[(0, 16_000), (2_000, 16_000)]);
        assert_eq!(shape(&out), [('a', 8_000), ('s', 16_000), ('a', 8_000)]);
    }

    #[test]
    fn range_starting_in_a_hole_has_no_leading_silence() {
        let joining = Joining::Timeline {
            fill_gaps: true,
            leading_silence: false,
        };
        let mut t = Timeline::new(16_000, joining, 0);
        let out = run(&mut t, &[(2_000, 100)]);
        assert_eq!(shape(&out), [('a', 100)]);
    }

    #[test]
    fn audio_ending_before_the_origin_does_not_start_the_clock() {
        // The regression of `prop_compaction_keeps_every_range_download`: a range starting at
        // 45 s, an object at 44.2 s whose audio ends exactly at 45 s (selected only because a
        // size-based bound could not rule it out), then 1 ms of audio at 45.005 s. The output
        // is that 1 ms alone, as when the first object is not selected at all.
        let joining = Joining::Timeline {
            fill_gaps: true,
            leading_silence: false,
        };
        let mut t = Timeline::new(16_000, joining, 45_000);
        t.clip_end_ms(50_000);
        let with = run(&mut t, &[(44_200, 12_800), (45_005, 16)]);
        let mut t = Timeline::new(16_000, joining, 45_000);
        t.clip_end_ms(50_000);
        let without = run(&mut t, &[(45_005, 16)]);
        assert_eq!(shape(&with), [('a', 16)]);
        assert_eq!(shape(&with), shape(&without));
        // Audio that reaches past the origin by one sample does start it.
        let mut t = Timeline::new(16_000, joining, 45_000);
        let out = run(&mut t, &[(44_200, 12_801), (45_005, 16)]);
        assert_eq!(shape(&out), [('a', 1), ('s', 79), ('a', 16)]);
    }

    #[test]
    fn without_fill_gaps_holes_collapse() {
        let joining = Joining::Timeline {
            fill_gaps: false,
            leading_silence: false,
        };
        let mut t = Timeline::new(16_000, joining, 0);
        let out = run(&mut t, &[(0, 100), (10_000, 100)]);
        assert_eq!(shape(&out), [('a', 100), ('a', 100)]);
    }

    #[test]
    fn collapsed_gaps_still_clip_in_real_time() {
        let joining = Joining::Timeline {
            fill_gaps: false,
            leading_silence: false,
        };
        let mut t = Timeline::new(16_000, joining, 0);
        t.clip_end_ms(2_000);
        // 0.5 s at 0, a 1 s hole, then 1 s at 1.5 s: only 0.5 s of it lies before the clip.
        let out = run(&mut t, &[(0, 8_000), (1_500, 16_000)]);
        assert_eq!(shape(&out), [('a', 8_000), ('a', 8_000)]);
        // And an object overlapping the previous one across a collapsed gap is trimmed.
        let mut t = Timeline::new(16_000, joining, 0);
        let out = run(&mut t, &[(0, 8_000), (1_000, 16_000), (1_500, 16_000)]);
        assert_eq!(shape(&out), [('a', 8_000), ('a', 16_000), ('a', 8_000)]);
    }

    #[test]
    fn concat_keeps_placement_order() {
        let mut t = Timeline::new(16_000, Joining::Concat, 0);
        let out = run(&mut t, &[(10_000, 100), (0, 100)]);
        assert_eq!(shape(&out), [('a', 100), ('a', 100)]);
        assert!(matches!(&out[0], Piece::Audio(b) if b[0] == 1));
    }

    #[test]
    fn non_integer_rates_floor_positions() {
        let mut t = Timeline::new(44_100, FILL, 0);
        // 1 ms at 44.1 kHz is 44.1 samples: position floors to 44.
        let out = run(&mut t, &[(1, 10)]);
        assert_eq!(shape(&out), [('s', 44), ('a', 10)]);
    }

    fn run_spans(timeline: &mut SpanTimeline, objects: &[(f64, usize)]) -> Vec<Piece> {
        let mut out = Vec::new();
        for (i, &(start, samples)) in objects.iter().enumerate() {
            timeline.object(format!("o{i}").into());
            out.extend(timeline.start_object(start));
            // In two pieces, as a two-chunk object arrives.
            let pcm = Bytes::from(vec![i as u8 + 1; samples * 2]);
            let half = (samples / 2) * 2;
            out.extend(timeline.audio(pcm.slice(..half)));
            out.extend(timeline.audio(pcm.slice(half..)));
        }
        out
    }

    fn merged(pieces: &[Piece]) -> Vec<(char, u64)> {
        let mut out: Vec<(char, u64)> = Vec::new();
        for (kind, n) in shape(pieces) {
            match out.last_mut() {
                Some((k, m)) if *k == kind && kind == 'a' => *m += n,
                _ => out.push((kind, n)),
            }
        }
        out
    }

    #[test]
    fn span_mode_follows_omi_arithmetic() {
        // 1 s objects at 16 kHz: the second starts 0.25 s early (trimmed by 4,000 samples),
        // the third 0.5 s after the second ends (8,000 samples of silence), the fourth within
        // the 1 ms slack of the cursor (appended as is).
        let mut t = SpanTimeline::new(16_000, true);
        let out = run_spans(
            &mut t,
            &[
                (100.0, 16_000),
                (100.75, 16_000),
                (102.25, 16_000),
                (103.2505, 16_000),
            ],
        );
        assert_eq!(
            merged(&out),
            [('a', 16_000 + 12_000), ('s', 8_000), ('a', 32_000)]
        );
        // Without gap filling the hole is skipped, the trim stays.
        let mut t = SpanTimeline::new(16_000, false);
        let out = run_spans(
            &mut t,
            &[(100.0, 16_000), (100.75, 16_000), (102.25, 16_000)],
        );
        assert_eq!(merged(&out), [('a', 16_000 + 12_000 + 16_000)]);
    }

    #[test]
    fn span_mode_skips_an_object_inside_the_audio_so_far() {
        let mut t = SpanTimeline::new(8_000, true);
        // The second object lies wholly inside the first; the third follows the first.
        let out = run_spans(&mut t, &[(10.0, 16_000), (10.5, 4_000), (12.0, 800)]);
        assert_eq!(merged(&out), [('a', 16_000 + 800)]);
    }

    #[test]
    fn span_mode_drops_what_omi_float_arithmetic_drops() {
        // The cursor ends at 1.0 s; the next span starts 1.25 ms earlier. In binary floating
        // point (1.0 − 0.99875) · 16,000 · 2 is 39.99999999999915 (CPython 3.11), so Omi
        // drops 39 bytes rounded down to even: 38 bytes, 19 samples, not the 20 of exact
        // arithmetic.
        let mut t = SpanTimeline::new(16_000, true);
        let out = run_spans(&mut t, &[(0.0, 16_000), (0.99875, 1_000)]);
        assert_eq!(merged(&out), [('a', 16_000 + 981)]);
    }

    /// A span as (start ms, end ms, samples).
    type Triple = (u64, u64, u64);

    /// The log's report, with its covered spans and its gaps as triples.
    fn logged(log: &mut PlacementLog) -> (MergeReport, Vec<Triple>, Vec<Triple>) {
        let (report, _) = log.take();
        let spans = |s: &[TimeSpan]| {
            s.iter()
                .map(|s| (s.start_ms, s.end_ms, s.samples))
                .collect()
        };
        let covered = spans(&report.covered);
        let gaps = spans(&report.gaps.iter().map(|g| g.span).collect::<Vec<_>>());
        (report, covered, gaps)
    }

    #[test]
    fn placement_reports_covered_time_gaps_and_overlaps() {
        let mut t = Timeline::new(16_000, FILL, 0);
        // 1 s at 0; 1 s at 2 s (a 1 s gap); 1 s at 2.5 s (0.5 s overlap with the second).
        run(&mut t, &[(0, 16_000), (2_000, 16_000), (2_500, 16_000)]);
        let (report, covered, gaps) = logged(t.log());
        assert_eq!(covered, [(0, 1_000, 16_000), (2_000, 3_500, 24_000)]);
        assert_eq!(gaps, [(1_000, 2_000, 16_000)]);
        assert!(report.gaps[0].filled);
        assert_eq!(report.overlaps.len(), 1);
        let overlap = &report.overlaps[0];
        assert_eq!(
            (
                overlap.span.start_ms,
                overlap.span.end_ms,
                overlap.span.samples
            ),
            (2_500, 3_000, 8_000)
        );
        assert_eq!((&*overlap.kept, &*overlap.trimmed), ("o1", "o2"));
        assert_eq!(report.covered_samples(), 40_000);
    }

    #[test]
    fn placement_off_whole_milliseconds_counts_exact_samples() {
        // At 22.05 kHz 1 ms is 22.05 samples: 1,000 samples at 0 end at 45.35 ms; the next
        // object at 45 ms overlaps by 8 samples (1,000 − floor(45 · 22.05) = 1,000 − 992).
        let joining = Joining::Timeline {
            fill_gaps: false,
            leading_silence: false,
        };
        let mut t = Timeline::new(22_050, joining, 0);
        run(&mut t, &[(0, 1_000), (45, 1_000), (1_000, 10)]);
        let (report, covered, gaps) = logged(t.log());
        assert_eq!(report.overlap_samples(), 8);
        assert_eq!(covered.iter().map(|c| c.2).sum::<u64>(), 1_992 + 10);
        // The gap up to 1 s is collapsed, not filled, and still reported.
        assert_eq!(gaps.len(), 1);
        assert!(!report.gaps[0].filled);
        assert_eq!(gaps[0].2, 22_050 - 1_992);
    }

    #[test]
    fn leading_silence_is_a_gap_and_before_the_origin_is_no_overlap() {
        let mut t = Timeline::new(16_000, FILL, 1_000);
        run(&mut t, &[(1_500, 160)]);
        let (report, _, gaps) = logged(t.log());
        assert_eq!(gaps, [(1_000, 1_500, 8_000)]);
        assert!(report.overlaps.is_empty());
        let joining = Joining::Timeline {
            fill_gaps: true,
            leading_silence: false,
        };
        let mut t = Timeline::new(16_000, joining, 500);
        run(&mut t, &[(0, 16_000)]);
        let (report, covered, gaps) = logged(t.log());
        assert!(report.overlaps.is_empty() && gaps.is_empty());
        assert_eq!(covered, [(500, 1_000, 8_000)]);
    }

    #[test]
    fn span_mode_reports_what_it_trims_and_fills() {
        let mut t = SpanTimeline::new(8_000, true);
        // 2 s at 10 s; 0.5 s inside it (trimmed whole); 0.1 s at 12 s (continues); 0.1 s at
        // 13 s (0.9 s of silence first).
        run_spans(
            &mut t,
            &[(10.0, 16_000), (10.5, 4_000), (12.0, 800), (13.0, 800)],
        );
        let (report, covered, gaps) = logged(t.log());
        assert_eq!(covered, [(10_000, 12_100, 16_800), (13_000, 13_100, 800)]);
        assert_eq!(gaps, [(12_100, 13_000, 7_200)]);
        assert_eq!(report.overlap_samples(), 4_000);
        assert_eq!(
            (&*report.overlaps[0].kept, &*report.overlaps[0].trimmed),
            ("o0", "o1")
        );
    }
}
