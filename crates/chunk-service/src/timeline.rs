//! Placing decoded audio on a timeline: gap filling with silence, overlap trimming, clipping.
//!
//! Sans-IO: the download pipeline feeds it each object's (or each pack chunk's) start and its
//! PCM in pieces, and it emits [`Piece`]s in output order. Positions are whole samples from an
//! origin, computed from integer milliseconds (`ms * rate / 1000`, rounded down), so the output
//! length never depends on floating-point error.

use bytes::Bytes;

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
        }
    }

    /// Stops the output at `end_ms` (exclusive).
    pub(crate) fn clip_end_ms(&mut self, end_ms: u64) {
        self.clip_end = Some(self.position(end_ms));
    }

    fn position(&self, ms: u64) -> i128 {
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
            self.cursor = Some(end);
            self.emitted_any = true;
            Some(Piece::Silence(u64::try_from(silence).unwrap_or(0)))
        } else if start > cursor {
            // A gap that is not filled is skipped: the cursor still follows the timeline, so
            // later overlaps and the clip end are judged in real time, not in output bytes.
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
        self.cursor = Some(at + keep);
        self.emitted_any = true;
        Some(Piece::Audio(pcm))
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
    emitted_any: bool,
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
            emitted_any: false,
        }
    }

    /// Starts the next object, whose span starts at `start` seconds; returns the silence to
    /// emit before it, if any.
    pub(crate) fn start_object(&mut self, start: f64) -> Option<Piece> {
        if let Some((begun, bytes)) = self.current.take() {
            self.cursor = Some(begun + bytes as f64 / (2.0 * self.rate));
        }
        self.drop = 0;
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
                self.emitted_any = true;
                return Some(Piece::Silence(samples));
            }
        }
        None
    }

    /// Feeds the next PCM bytes of the current object (even length); returns what to emit.
    pub(crate) fn audio(&mut self, mut pcm: Bytes) -> Option<Piece> {
        let drop = self.drop.min(pcm.len() as u64);
        self.drop -= drop;
        pcm = pcm.slice(usize::try_from(drop).unwrap_or(pcm.len())..);
        if pcm.is_empty() {
            return None;
        }
        if let Some((_, bytes)) = self.current.as_mut() {
            *bytes += pcm.len() as u64;
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

    fn run(timeline: &mut Timeline, objects: &[(u64, usize)]) -> Vec<Piece> {
        let mut out = Vec::new();
        for (i, &(start, samples)) in objects.iter().enumerate() {
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
}
