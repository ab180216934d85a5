//! The timeline audit: what a conversation's objects hold, placed by the download's own code.
//!
//! [`ChunkService::audit`] runs one range download over the whole conversation (gaps collapsed,
//! bad objects skipped, the audio discarded as it streams) and reports what placing found
//! ([`MergeReport`]): the spans the audio covers, the gaps between them (≥ 1 sample), the
//! overlaps trimmed and which objects they lie between. To that it adds what only the listing
//! and the decoders know: duplicates (one instant stored in several formats, of which a
//! download uses one), objects whose name disagrees with their content, undecodable objects
//! and foreign ones. Because the placement is the download's, every figure is what an export
//! of the conversation does: an audit that reports no gap means an export fills none.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chunk_format::{ObjectKind, Timestamp};
use chunk_store::{ChunkPath, ConversationId, UserId};
use futures::StreamExt;

use crate::error::ServiceError;
use crate::read::download::{DownloadOptions, DownloadRequest, SkippedObject, Skips, preference};
use crate::read::list::{ForeignEntry, ListEntry};
use crate::read::placement::{MergeReport, Overlap, TimeSpan};
use crate::service::ChunkService;

/// Options of [`ChunkService::audit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Sample rate of Omi objects, which carry none (packs carry theirs); as
    /// [`DownloadOptions::sample_rate`]. Default 16 000.
    pub sample_rate: u32,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            sample_rate: DownloadOptions::default().sample_rate,
        }
    }
}

/// One instant stored in several objects (one chunk in several formats, e.g. `.bin` and
/// `.opus`): a download uses one of them, the others are the same audio stored again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Duplicate {
    /// The instant.
    #[serde(serialize_with = "crate::compact::as_str")]
    pub at: Timestamp,
    /// The objects, in the order a download tries them (Omi's preference).
    pub paths: Vec<String>,
    /// The one a download uses (`None` when none decodes).
    pub used: Option<String>,
}

/// An object whose name disagrees with what it decodes to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NameMismatch {
    /// The object path.
    pub path: String,
    /// What disagrees (one line).
    pub reason: String,
}

/// What [`ChunkService::audit`] found in one conversation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConversationAudit {
    /// The user.
    pub uid: String,
    /// The conversation.
    pub conversation: String,
    /// Sample rate of the audio (`None` when nothing decoded).
    pub sample_rate: Option<u32>,
    /// Audio objects listed.
    pub audio_objects: usize,
    /// The stretches the audio covers, in time order.
    pub covered: Vec<TimeSpan>,
    /// Covered time in samples (each instant once, however many objects hold it).
    pub covered_samples: u64,
    /// Covered time in seconds (`covered_samples / sample_rate`).
    pub covered_seconds: f64,
    /// Gaps between the covered stretches (at least one sample each).
    pub gaps: Vec<TimeSpan>,
    /// Audio held twice, by two objects: the earlier one's is used.
    pub overlaps: Vec<Overlap>,
    /// Instants stored in several formats.
    pub duplicates: Vec<Duplicate>,
    /// Objects whose name disagrees with their content.
    pub name_mismatches: Vec<NameMismatch>,
    /// Objects that cannot be opened or decoded, with the reason.
    pub undecodable: Vec<SkippedObject>,
    /// Objects under the conversation that are not audio.
    pub foreign: Vec<ForeignEntry>,
}

impl ConversationAudit {
    /// Whether some object cannot be decoded.
    pub fn has_undecodable(&self) -> bool {
        !self.undecodable.is_empty()
    }

    /// Whether the timeline has a gap, an overlap or a duplicate (what `audit --strict`
    /// fails on).
    pub fn has_timeline_findings(&self) -> bool {
        !(self.gaps.is_empty() && self.overlaps.is_empty() && self.duplicates.is_empty())
    }
}

impl ChunkService {
    /// Audits every conversation of user `uid` (one listing of `chunks/{uid}/`), in
    /// conversation order.
    pub async fn audit_user(
        &self,
        uid: &UserId,
        options: AuditOptions,
    ) -> Result<Vec<ConversationAudit>, ServiceError> {
        let listing = self
            .inner
            .store
            .list_prefix(&format!("chunks/{uid}/"))
            .await?;
        let mut conversations: Vec<ConversationId> = listing
            .objects
            .iter()
            .map(|(path, _)| path)
            .chain(listing.foreign.iter().map(|f| &f.path))
            .filter_map(|path| conversation_of(path))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        conversations.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut audits = Vec::with_capacity(conversations.len());
        for conversation in conversations {
            audits.push(self.audit(uid, &conversation, options).await?);
        }
        Ok(audits)
    }

    /// Audits one conversation: reads and decodes every audio object once and reports the
    /// covered time, gaps, overlaps, duplicates, name mismatches, undecodable and foreign
    /// objects (see the module docs). Fails on store errors and on a conversation whose
    /// objects disagree on the sample rate ([`ServiceError::MixedFormats`], naming both);
    /// an object that cannot be decoded is a finding, not an error.
    pub async fn audit(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        options: AuditOptions,
    ) -> Result<ConversationAudit, ServiceError> {
        let listing = self.list_with_spans(uid, conversation).await?;
        let mut audit = ConversationAudit {
            uid: uid.to_string(),
            conversation: conversation.to_string(),
            sample_rate: None,
            audio_objects: listing.chunks.len(),
            covered: Vec::new(),
            covered_samples: 0,
            covered_seconds: 0.0,
            gaps: Vec::new(),
            overlaps: Vec::new(),
            duplicates: Vec::new(),
            name_mismatches: Vec::new(),
            undecodable: Vec::new(),
            foreign: listing.foreign.clone(),
        };
        let Some(from) = listing
            .chunks
            .iter()
            .map(|e| {
                e.span_start_ms()
                    .unwrap_or(u64::MAX)
                    .min(e.start.as_millis())
            })
            .min()
            .and_then(Timestamp::from_millis)
        else {
            return Ok(audit);
        };
        let request = DownloadRequest::Range {
            from,
            to: Timestamp::MAX,
        };
        let download = DownloadOptions {
            // Gaps collapsed: nothing is made of silence, however long a gap is.
            fill_gaps: false,
            sample_rate: options.sample_rate,
            max_span: Duration::MAX,
            skip_bad: true,
        };
        let downloaded = self
            .download_logged(uid, conversation, &request, download, Skips::Debug)
            .await;
        let (report, placed) = match downloaded {
            Ok(mut stream) => {
                audit.sample_rate = Some(stream.sample_rate());
                while let Some(piece) = stream.next().await {
                    match piece {
                        Ok(_) => {}
                        // Every object was skipped: a finding, reported below.
                        Err(ServiceError::NoAudio { .. }) => break,
                        Err(error) => return Err(error),
                    }
                }
                audit.undecodable = stream.skipped();
                (stream.report(), stream.placed())
            }
            // Nothing could be placed (every pack unreadable): check each object for why.
            Err(ServiceError::NoAudio { .. }) => (MergeReport::default(), Vec::new()),
            Err(error) => return Err(error),
        };
        let placed: HashMap<&str, u64> = placed.iter().map(|p| (&*p.path, p.samples)).collect();
        let rate = audit.sample_rate.unwrap_or(options.sample_rate);
        // Objects a download tried but did not place (a format that fell through, a pack
        // whose every chunk was skipped) are checked one by one for the reason.
        let skipped: HashSet<String> = audit.undecodable.iter().map(|s| s.path.clone()).collect();
        for entry in &listing.chunks {
            if placed.contains_key(entry.path.as_str()) || skipped.contains(&entry.path) {
                continue;
            }
            if let Err(error) = self
                .check_object(uid, conversation, &entry.path, &entry.name, entry.size)
                .await
            {
                if let ServiceError::Store(store) = &error
                    && !matches!(store, chunk_store::StoreError::NotFound { .. })
                {
                    return Err(error);
                }
                audit.undecodable.push(SkippedObject {
                    path: entry.path.clone(),
                    start: entry.start,
                    reason: error.to_string(),
                });
            }
        }
        audit
            .undecodable
            .sort_by(|a, b| (a.start, &a.path).cmp(&(b.start, &b.path)));
        audit.duplicates = duplicates(&listing.chunks, &placed);
        audit.name_mismatches = listing
            .chunks
            .iter()
            .filter_map(|entry| {
                let samples = *placed.get(entry.path.as_str())?;
                name_mismatch(entry, samples, rate)
            })
            .collect();
        audit.covered_samples = report.covered_samples();
        audit.covered_seconds = audit.covered_samples as f64 / f64::from(rate.max(1));
        audit.covered = report.covered;
        audit.gaps = report.gaps.into_iter().map(|gap| gap.span).collect();
        audit.overlaps = report.overlaps;
        Ok(audit)
    }
}

/// The conversation of an object path under `chunks/{uid}/{conversation}/`.
fn conversation_of(path: &str) -> Option<ConversationId> {
    if let Ok(parsed) = ChunkPath::parse(path) {
        return Some(parsed.conversation);
    }
    // A foreign object: its conversation directory, if its path has one.
    let mut parts = path.strip_prefix("chunks/")?.split('/');
    let (_uid, conversation, _name) = (parts.next()?, parts.next()?, parts.next()?);
    ConversationId::new(conversation).ok()
}

/// Instants stored as more than one single-chunk object, each with the object a download
/// uses: the first in Omi's order that was placed.
fn duplicates(entries: &[ListEntry], placed: &HashMap<&str, u64>) -> Vec<Duplicate> {
    let mut singles: BTreeMap<Timestamp, Vec<&ListEntry>> = BTreeMap::new();
    for entry in entries.iter().filter(|e| !e.is_batch) {
        singles.entry(entry.start).or_default().push(entry);
    }
    singles
        .into_iter()
        .filter(|(_, group)| group.len() > 1)
        .map(|(at, mut group)| {
            group.sort_by_key(|e| (preference(e.kind), e.path.clone()));
            Duplicate {
                at,
                used: group
                    .iter()
                    .find(|e| placed.contains_key(e.path.as_str()))
                    .map(|e| e.path.clone()),
                paths: group.into_iter().map(|e| e.path.clone()).collect(),
            }
        })
        .collect()
}

/// Whether an object's name (or span) disagrees with the `samples` it decoded to at `rate`:
/// a range batch `FIRST-LAST` whose audio ends at or before LAST (its last chunk starts
/// there), or a spanned batch whose sample count is not its span's. Pack names are checked
/// against their index whenever a pack is opened, and single objects name no end.
fn name_mismatch(entry: &ListEntry, samples: u64, rate: u32) -> Option<NameMismatch> {
    if let Some(span) = entry.span
        && span.samples != samples
    {
        return Some(NameMismatch {
            path: entry.path.clone(),
            reason: format!(
                "its v2 span says {} samples, it decodes to {samples}",
                span.samples
            ),
        });
    }
    let last = entry.name.range_end()?;
    if entry.kind == ObjectKind::Pack {
        return None;
    }
    let decoded_ms = samples.saturating_mul(1000) / u64::from(rate.max(1));
    let end = entry.start.saturating_add_millis(decoded_ms);
    (end <= last).then(|| NameMismatch {
        path: entry.path.clone(),
        reason: format!(
            "its name says its last chunk starts at {last}, its audio ends at {end} \
             ({decoded_ms} ms from {})",
            entry.start
        ),
    })
}
