//! What placing a download's audio on its timeline found: the time the audio covers, the gaps
//! between objects, and the overlaps trimmed, each in milliseconds and in exact samples.
//!
//! The timelines (`read/timeline.rs`) record into a [`PlacementLog`] as they place audio, so a
//! download's [`MergeReport`] (`PcmStream::report`) and the audit
//! ([`ChunkService::audit`](crate::ChunkService::audit)) describe exactly what the download
//! did, by the same code that did it.

use std::sync::Arc;

/// A stretch of audio time: from `start_ms` to `end_ms` (milliseconds since the epoch,
/// rounded down from sample positions) and exactly `samples` samples long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TimeSpan {
    /// Start, ms since the epoch (rounded down).
    pub start_ms: u64,
    /// End (exclusive), ms since the epoch (rounded down).
    pub end_ms: u64,
    /// Exact length in samples.
    pub samples: u64,
}

/// Time between two pieces of audio where no object has any (at least one sample).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    /// Where and how long.
    #[serde(flatten)]
    pub span: TimeSpan,
    /// Whether the download filled it with silence (`fill_gaps`); else it was collapsed.
    pub filled: bool,
}

/// Audio that two objects both hold: the earlier object's is used and the later one's is
/// trimmed (dropped from the output).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Overlap {
    /// The trimmed stretch.
    #[serde(flatten)]
    pub span: TimeSpan,
    /// The object whose audio is used there.
    pub kept: String,
    /// The object whose audio there is dropped.
    pub trimmed: String,
}

/// What placing a download's audio found (complete once the stream has ended).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MergeReport {
    /// The stretches the output's audio covers, in time order, adjacent pieces merged.
    pub covered: Vec<TimeSpan>,
    /// The gaps between them (and, for a timestamp request with gap filling, from the
    /// earliest instant asked for to the first audio).
    pub gaps: Vec<Gap>,
    /// The overlaps trimmed.
    pub overlaps: Vec<Overlap>,
}

impl MergeReport {
    /// Samples of audio in the output (each instant once).
    pub fn covered_samples(&self) -> u64 {
        self.covered.iter().map(|s| s.samples).sum()
    }

    /// Samples of gaps.
    pub fn gap_samples(&self) -> u64 {
        self.gaps.iter().map(|g| g.span.samples).sum()
    }

    /// Samples trimmed as overlaps.
    pub fn overlap_samples(&self) -> u64 {
        self.overlaps.iter().map(|o| o.span.samples).sum()
    }

    fn merge(&mut self, later: MergeReport) {
        for span in later.covered {
            push_covered(&mut self.covered, span);
        }
        self.gaps.extend(later.gaps);
        for overlap in later.overlaps {
            push_overlap(&mut self.overlaps, overlap);
        }
    }
}

/// Appends `span` to `covered`, extending the last span when `span` continues it.
fn push_covered(covered: &mut Vec<TimeSpan>, span: TimeSpan) {
    match covered.last_mut() {
        Some(last) if last.end_ms == span.start_ms => {
            last.end_ms = span.end_ms;
            last.samples += span.samples;
        }
        _ => covered.push(span),
    }
}

/// Appends `overlap`, extending the last one when it continues it between the same objects.
fn push_overlap(overlaps: &mut Vec<Overlap>, overlap: Overlap) {
    match overlaps.last_mut() {
        Some(last)
            if last.span.end_ms == overlap.span.start_ms
                && last.kept == overlap.kept
                && last.trimmed == overlap.trimmed =>
        {
            last.span.end_ms = overlap.span.end_ms;
            last.span.samples += overlap.span.samples;
        }
        _ => overlaps.push(overlap),
    }
}

/// Decoded samples of one placed object (before trimming and clipping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlacedObject {
    pub(crate) path: Arc<str>,
    pub(crate) samples: u64,
}

/// The recorder the timelines write into (sans-IO).
#[derive(Debug, Default)]
pub(crate) struct PlacementLog {
    report: MergeReport,
    placed: Vec<PlacedObject>,
    /// The object being placed.
    current: Option<Arc<str>>,
    /// The object whose audio was placed last (what a trimmed overlap lost against).
    owner: Option<Arc<str>>,
}

impl PlacementLog {
    /// The next audio belongs to `object`.
    pub(crate) fn object(&mut self, object: Arc<str>) {
        if self.placed.last().is_none_or(|p| p.path != object) {
            self.placed.push(PlacedObject {
                path: object.clone(),
                samples: 0,
            });
        }
        self.current = Some(object);
    }

    /// `samples` were decoded from the current object.
    pub(crate) fn decoded(&mut self, samples: u64) {
        if let Some(last) = self.placed.last_mut() {
            last.samples += samples;
        }
    }

    /// Whether audio was placed before (an overlap needs an earlier owner).
    pub(crate) fn has_owner(&self) -> bool {
        self.owner.is_some()
    }

    /// A gap of `span`.
    pub(crate) fn gap(&mut self, span: TimeSpan, filled: bool) {
        if span.samples > 0 {
            self.report.gaps.push(Gap { span, filled });
        }
    }

    /// `span` of the current object trimmed against the audio placed last.
    pub(crate) fn overlap(&mut self, span: TimeSpan) {
        if span.samples == 0 {
            return;
        }
        let name = |o: &Option<Arc<str>>| o.as_deref().unwrap_or_default().to_owned();
        push_overlap(
            &mut self.report.overlaps,
            Overlap {
                span,
                kept: name(&self.owner),
                trimmed: name(&self.current),
            },
        );
    }

    /// `span` of the current object's audio placed.
    pub(crate) fn audio(&mut self, span: TimeSpan) {
        if span.samples == 0 {
            return;
        }
        push_covered(&mut self.report.covered, span);
        self.owner = self.current.clone();
    }

    /// Takes what was recorded since the last call.
    pub(crate) fn take(&mut self) -> (MergeReport, Vec<PlacedObject>) {
        (
            std::mem::take(&mut self.report),
            std::mem::take(&mut self.placed),
        )
    }
}

/// A download's report as its stream fills it, shared with the stream's owner.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedReport(Arc<std::sync::Mutex<(MergeReport, Vec<PlacedObject>)>>);

impl SharedReport {
    /// Adds what a log recorded since it was last taken.
    pub(crate) fn publish(&self, log: &mut PlacementLog) {
        let (report, placed) = log.take();
        if let Ok(mut shared) = self.0.lock() {
            shared.0.merge(report);
            for object in placed {
                match shared.1.last_mut() {
                    Some(last) if last.path == object.path => last.samples += object.samples,
                    _ => shared.1.push(object),
                }
            }
        }
    }

    /// The report so far.
    pub(crate) fn report(&self) -> MergeReport {
        self.0
            .lock()
            .map(|shared| shared.0.clone())
            .unwrap_or_default()
    }

    /// Decoded samples per object so far, in placement order.
    pub(crate) fn placed(&self) -> Vec<PlacedObject> {
        self.0
            .lock()
            .map(|shared| shared.1.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start_ms: u64, end_ms: u64, samples: u64) -> TimeSpan {
        TimeSpan {
            start_ms,
            end_ms,
            samples,
        }
    }

    #[test]
    fn adjacent_audio_and_overlaps_merge_across_publishes() {
        let shared = SharedReport::default();
        let mut log = PlacementLog::default();
        log.object("a".into());
        log.decoded(32);
        log.audio(span(0, 2, 32));
        shared.publish(&mut log);
        log.object("b".into());
        log.decoded(16);
        log.overlap(span(0, 1, 16));
        shared.publish(&mut log);
        log.object("b".into());
        log.decoded(32);
        log.overlap(span(1, 2, 16));
        log.audio(span(2, 3, 16));
        shared.publish(&mut log);
        let report = shared.report();
        assert_eq!(report.covered, [span(0, 3, 48)]);
        assert_eq!(report.overlaps.len(), 1);
        assert_eq!(report.overlaps[0].span, span(0, 2, 32));
        assert_eq!(
            (&*report.overlaps[0].kept, &*report.overlaps[0].trimmed),
            ("a", "b")
        );
        let placed = shared.placed();
        assert_eq!(placed.len(), 2);
        assert_eq!((&*placed[1].path, placed[1].samples), ("b", 48));
    }

    #[test]
    fn empty_records_are_not_kept() {
        let mut log = PlacementLog::default();
        log.gap(span(0, 0, 0), true);
        log.overlap(span(0, 0, 0));
        log.audio(span(0, 0, 0));
        assert!(!log.has_owner());
        assert_eq!(log.take().0, MergeReport::default());
    }
}
