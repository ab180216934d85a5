//! Compaction: merging a conversation's small objects (Omi singles and batches, short packs)
//! into packs of a target duration, plan first, then execute.
//!
//! [`ChunkService::plan_compaction`] looks at one listing (plus, for key rotation, the tail of
//! each pack) and returns what would be merged and what it costs in operations;
//! [`ChunkService::compact`] executes a plan group by group in the write-verify-delete order:
//! the new pack is written create-only and read back before any source is deleted, so a crash
//! leaves at worst a duplicate (which downloads trim as overlap). New packs are sealed under the
//! key ring's *active* key whenever any source was sealed — which is also how stored data is
//! re-sealed after a key rotation.
//!
//! Placement: a group's audio is placed by the read pipeline itself
//! ([`ChunkService::download`]'s code, over everything stored that overlaps the group), and
//! the new pack holds exactly the pieces it serves from the group's sources, at the instants
//! it serves them: where objects overlap, the audio a download uses is what the pack keeps,
//! and audio no download serves (shadowed) is listed in the plan
//! ([`CompactionPlan::shadowed`]) and not written. Every range download is therefore
//! byte-identical before and after, chunk boundaries off whole milliseconds included (for
//! chunk starts on whole samples, as at 8, 16 and 48 kHz).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use chunk_format::pack::{KeyScheme, PackConfig, PackTail, SealInfo};
use chunk_format::{ObjectKind, Timestamp};
use chunk_store::{ConversationId, UserId};

use crate::error::ServiceError;
use crate::level::ProtectionLevel;
use crate::read::audit::AuditOptions;
use crate::read::download::{DownloadOptions, DownloadRequest, PlaceOptions, Placed, PlacedAudio};
use crate::read::list::ListEntry;
use crate::read::placement::Overlap;
use crate::read::policy::PackSealing;
use crate::service::ChunkService;
use crate::write::pack::PackInput;
use futures::StreamExt;

/// Whether compaction also re-seals packs sealed under another key than the active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyRotation {
    /// Leave packs that are large enough alone, whatever their key.
    #[default]
    Keep,
    /// Re-seal every sealed pack whose key id is not the active one, or that is sealed under
    /// the old key scheme (a version-1 pack, whose key is bound to the user only), one tail
    /// read per pack while planning.
    ResealToActive,
}

/// How to compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionOptions {
    /// Packs are filled up to this much audio; packs at least this long are left alone.
    pub target_duration: Duration,
    /// Key rotation of existing packs.
    pub rotation: KeyRotation,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            target_duration: Duration::from_secs(600),
            rotation: KeyRotation::Keep,
        }
    }
}

/// One new pack and the objects it replaces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CompactionGroup {
    /// The objects merged (deleted once the new pack is verified).
    pub sources: Vec<ListEntry>,
    /// Start of the first source.
    pub start: Timestamp,
}

/// Estimated operations of a plan (Class A: writes; Class B: reads and stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CompactionCost {
    /// Whole-object reads of the sources plus one read-back per new pack.
    pub reads: u64,
    /// Bytes read from the sources.
    pub read_bytes: u64,
    /// New packs written (one PUT each below the multipart size).
    pub writes: u64,
    /// Existence probes for fresh pack names.
    pub stats: u64,
    /// Objects deleted.
    pub deletes: u64,
    /// Objects in the conversation before and after.
    pub objects_before: u64,
    /// Objects in the conversation after (assuming every group succeeds).
    pub objects_after: u64,
}

/// What [`ChunkService::plan_compaction`] proposes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CompactionPlan {
    /// The user.
    #[serde(serialize_with = "as_str")]
    pub uid: UserId,
    /// The conversation.
    #[serde(serialize_with = "as_str")]
    pub conversation: ConversationId,
    /// The packs to write, in time order.
    pub groups: Vec<CompactionGroup>,
    /// Audio that no download serves (trimmed behind earlier audio of the same group, as the
    /// conversation's audit finds it) and that the new packs therefore will not hold: listed
    /// here, with where and how long, before anything is discarded.
    pub shadowed: Vec<Overlap>,
    /// How long the shadowed audio is, in ms (rounded down).
    pub shadowed_ms: u64,
    /// What executing it costs.
    pub cost: CompactionCost,
}

impl CompactionPlan {
    /// Samples of audio the plan discards as shadowed.
    pub fn shadowed_samples(&self) -> u64 {
        self.shadowed.iter().map(|o| o.span.samples).sum()
    }
}

pub(crate) fn as_str<S: serde::Serializer, T: std::fmt::Display>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// What [`ChunkService::compact`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct CompactionReport {
    /// New packs, written and verified.
    pub written: Vec<String>,
    /// Sources deleted after their pack was verified.
    pub deleted: Vec<String>,
    /// Sources left in place because they could not be decoded (path, reason); nothing of
    /// theirs was copied, and downloads skip them as before.
    pub skipped: Vec<(String, String)>,
    /// Chunks in the new packs.
    pub chunks: usize,
    /// Groups left as they are (first source, why): their audio could not be written as a
    /// pack that downloads place exactly as they place it now. This happens only where audio
    /// of an object outside the group wins the start of a source's stretch: the new pack's
    /// stretch would start later, and so lose overlaps it wins now (or the source's audio
    /// resumes off a whole millisecond, where no pack chunk can start). Nothing is written
    /// or deleted.
    pub declined: Vec<(String, String)>,
}

impl ChunkService {
    /// Plans the compaction of one conversation: groups of adjacent objects (Omi objects,
    /// packs shorter than the target, packs sharing their start with another object — what a
    /// killed compaction leaves — and with [`KeyRotation::ResealToActive`] packs under an
    /// old key) that each become one pack of about `target_duration`. Groups of one object are
    /// left alone unless the object is a pack to re-seal. Omi batches carrying a v2 span are
    /// left alone too (read with one stat each where the store keeps metadata): Omi and
    /// chunkvault place them by the span's float start, which a pack's millisecond chunk
    /// times cannot hold. When there is something to merge, the conversation is audited
    /// ([`ChunkService::audit`]: every object read and decoded once) to list the shadowed audio
    /// the merge discards ([`CompactionPlan::shadowed`]). Makes no change.
    pub async fn plan_compaction(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        options: &CompactionOptions,
    ) -> Result<CompactionPlan, ServiceError> {
        let listing = self.list_with_spans(uid, conversation).await?;
        let target_ms = options.target_duration.as_millis() as u64;
        let omi_rate = self.inner.config.pack.sample_rate;
        let active = self.inner.keyring.as_ref().map(|k| k.active_id().get());
        // Objects per start: a long pack that shares its start with another object is the
        // leftover of a compaction or rewrite killed between writing its output (same START)
        // and deleting its sources; it is merged with them, not left alone, so the next
        // compaction finishes the job.
        let mut per_start: std::collections::HashMap<u64, usize> = Default::default();
        for entry in &listing.chunks {
            *per_start.entry(entry.start.as_millis()).or_default() += 1;
        }
        let shares_start = |entry: &ListEntry| {
            per_start
                .get(&entry.start.as_millis())
                .is_some_and(|&n| n > 1)
        };
        // The seal of every pack that may be merged or re-sealed (`None`: plaintext), from
        // one tail read each.
        let mut seals: std::collections::HashMap<String, Option<SealInfo>> = Default::default();
        for entry in &listing.chunks {
            let is_pack = entry.kind == ObjectKind::Pack;
            let long =
                is_pack && entry.end_bound_ms(omi_rate) - entry.start.as_millis() >= target_ms;
            if is_pack
                && (!long || shares_start(entry) || options.rotation == KeyRotation::ResealToActive)
            {
                seals.insert(entry.path.clone(), self.pack_seal(entry).await?);
            }
        }
        // Plaintext never goes into sealed output: where the new packs would be sealed (the
        // user's packs must be, or some source is sealed), plaintext sources — packs, and
        // Omi objects, which downloads serve as Omi does — are left as they are.
        let sealing = self.pack_sealing(uid).await?;
        let any_sealed = sealing == PackSealing::Required
            || seals.values().any(Option::is_some)
            || listing.chunks.iter().any(|e| e.kind.is_encrypted());
        let is_plaintext = |entry: &ListEntry| match entry.kind {
            ObjectKind::Pack => seals.get(&entry.path).is_some_and(Option::is_none),
            kind => !kind.is_encrypted(),
        };
        let mut groups: Vec<(Vec<ListEntry>, bool)> = Vec::new();
        // Starts of the packs left alone (long enough already).
        let mut alone_starts: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut current: Vec<ListEntry> = Vec::new();
        let mut current_reseal = false;
        let flush = |current: &mut Vec<ListEntry>, reseal: &mut bool, groups: &mut Vec<_>| {
            if !current.is_empty() {
                groups.push((std::mem::take(current), *reseal));
            }
            *reseal = false;
        };
        for entry in listing.chunks {
            if sealing == PackSealing::Required
                && entry.kind == ObjectKind::Pack
                && is_plaintext(&entry)
            {
                // Not history to keep: a pack this user's writes never make.
                return Err(ServiceError::Unsealed { path: entry.path });
            }
            let is_pack = entry.kind == ObjectKind::Pack;
            let long =
                is_pack && entry.end_bound_ms(omi_rate) - entry.start.as_millis() >= target_ms;
            let reseal = is_pack
                && options.rotation == KeyRotation::ResealToActive
                && seals
                    .get(&entry.path)
                    .copied()
                    .flatten()
                    .is_some_and(|seal| {
                        Some(seal.key_id) != active || seal.scheme != KeyScheme::V2
                    });
            if (long && !reseal && !shares_start(&entry))
                || (any_sealed && is_plaintext(&entry))
                || entry.span.is_some()
            {
                alone_starts.insert(entry.start.as_millis());
                flush(&mut current, &mut current_reseal, &mut groups);
                continue;
            }
            let group_start = current.first().map(|e| e.start.as_millis());
            // Objects starting at one instant stay in one group: downloads place them by a
            // tie-break (batches first, then Omi's format preference), which two new packs
            // starting at that instant would replace with the order of their names.
            let same_instant = current.last().is_some_and(|last| last.start == entry.start);
            if let Some(start) = group_start
                && !same_instant
                && entry.end_bound_ms(omi_rate).saturating_sub(start) > target_ms
            {
                flush(&mut current, &mut current_reseal, &mut groups);
            }
            current_reseal |= reseal;
            current.push(entry);
        }
        flush(&mut current, &mut current_reseal, &mut groups);
        // For the same reason, nothing that starts where a pack left alone starts is merged:
        // the new pack would tie with it and could win where the old objects lost.
        for (sources, _) in &mut groups {
            sources.retain(|e| !alone_starts.contains(&e.start.as_millis()));
        }

        let mut cost = CompactionCost::default();
        let mut planned = Vec::new();
        let objects_before = self.list(uid, conversation).await?.chunks.len() as u64;
        let mut removed = 0;
        for (sources, reseal) in groups {
            if sources.is_empty() || (sources.len() < 2 && !reseal) {
                continue;
            }
            cost.reads += sources.len() as u64 + 1;
            cost.read_bytes += sources.iter().map(|s| s.size).sum::<u64>();
            cost.writes += 1;
            cost.stats += 1;
            cost.deletes += sources.len() as u64;
            removed += sources.len() as u64;
            planned.push(CompactionGroup {
                start: sources[0].start,
                sources,
            });
        }
        cost.objects_before = objects_before;
        cost.objects_after = objects_before - removed + planned.len() as u64;
        let (shadowed, shadowed_ms) = if planned.is_empty() {
            (Vec::new(), 0)
        } else {
            self.shadowed_by_groups(uid, conversation, &planned, omi_rate)
                .await?
        };
        Ok(CompactionPlan {
            uid: uid.clone(),
            conversation: conversation.clone(),
            groups: planned,
            shadowed,
            shadowed_ms,
            cost,
        })
    }

    /// The audit's overlaps whose trimmed object goes into a new pack (audio of a source that
    /// no download serves, so the new pack will not hold it), and their length in ms.
    async fn shadowed_by_groups(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        groups: &[CompactionGroup],
        omi_rate: u32,
    ) -> Result<(Vec<Overlap>, u64), ServiceError> {
        let merged: HashSet<&str> = groups
            .iter()
            .flat_map(|g| g.sources.iter().map(|s| s.path.as_str()))
            .collect();
        let options = AuditOptions {
            sample_rate: omi_rate,
        };
        let audit = self.audit(uid, conversation, options).await?;
        let rate = u64::from(audit.sample_rate.unwrap_or(omi_rate).max(1));
        let shadowed: Vec<Overlap> = audit
            .overlaps
            .into_iter()
            // Audio of a source that a download does not serve, whichever object wins there:
            // the new pack holds only what downloads serve.
            .filter(|o| merged.contains(o.trimmed.as_str()))
            .collect();
        let samples: u64 = shadowed.iter().map(|o| o.span.samples).sum();
        Ok((shadowed, samples * 1000 / rate))
    }

    /// What the pack's header records about its seal (`None`: plaintext), from one tail read.
    async fn pack_seal(&self, entry: &ListEntry) -> Result<Option<SealInfo>, ServiceError> {
        let tail_len = PackTail::read_len(entry.size);
        let tail = self
            .inner
            .store
            .read_range(&entry.path, entry.size - tail_len..entry.size)
            .await?;
        let tail =
            PackTail::new(&tail, entry.size).map_err(|e| ServiceError::decode(&entry.path, e))?;
        Ok(tail.header().seal().copied())
    }

    /// Executes a plan group by group: decode the sources, write one pack create-only, read it
    /// back, then delete the sources. A group that fails stops the compaction with its error;
    /// groups already done stay done, and the failed group's sources are untouched.
    pub async fn compact(&self, plan: &CompactionPlan) -> Result<CompactionReport, ServiceError> {
        let mut report = CompactionReport::default();
        if plan.groups.is_empty() {
            return Ok(report);
        }
        // What is stored now: each group is placed among everything that overlaps it.
        let listing = self.list(&plan.uid, &plan.conversation).await?;
        for group in &plan.groups {
            self.compact_group(
                &plan.uid,
                &plan.conversation,
                &listing.chunks,
                group,
                &mut report,
            )
            .await?;
        }
        Ok(report)
    }

    /// Compacts one group: places the conversation's audio over the group's time with the
    /// read pipeline ([`ChunkService::place`], the code downloads use), keeps the pieces that
    /// come from the group's sources, writes them as one pack, verifies it, then deletes the
    /// sources. Audio no download serves (trimmed behind earlier audio) is not in the pieces,
    /// and audio other objects win keeps being theirs: every range download is the same
    /// before and after, by construction.
    async fn compact_group(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        listing: &[ListEntry],
        group: &CompactionGroup,
        report: &mut CompactionReport,
    ) -> Result<(), ServiceError> {
        let sealing = self.pack_sealing(uid).await?;
        let omi_rate = self.inner.config.pack.sample_rate;
        let sources: HashMap<&str, &ListEntry> = group
            .sources
            .iter()
            .map(|source| (source.path.as_str(), source))
            .collect();
        let end_ms = group
            .sources
            .iter()
            .map(|source| source.end_bound_ms(omi_rate))
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let request = DownloadRequest::Range {
            from: group.start,
            to: Timestamp::from_millis(end_ms).unwrap_or(Timestamp::MAX),
        };
        let options = DownloadOptions {
            fill_gaps: false,
            sample_rate: omi_rate,
            max_span: Duration::MAX,
            skip_bad: true,
        };
        let mut placed = self
            .place(
                uid,
                conversation,
                listing,
                &request,
                options,
                PlaceOptions::compaction(),
            )
            .await?;
        let mut sealed = sealing == PackSealing::Required;
        // The first plaintext pack among the sources: it may not go into sealed output.
        let mut plaintext_pack: Option<String> = None;
        let mut failed: HashSet<String> = HashSet::new();
        let mut chunks = PackChunker::new(placed.sample_rate, group.start);
        // Whether the audio being placed is a source's.
        let mut ours = false;
        while let Some(item) = placed.pieces.next().await {
            match item {
                Ok(Placed::Object(from)) => {
                    ours = false;
                    if let Some(source) = sources.get(&*from.path) {
                        ours = true;
                        sealed |= from.sealed;
                        if source.kind == ObjectKind::Pack && !from.sealed {
                            plaintext_pack.get_or_insert_with(|| source.path.clone());
                        }
                    }
                    for skip in from.passed_over {
                        if sources.contains_key(skip.path.as_str()) {
                            failed.insert(skip.path.clone());
                            report.skipped.push((skip.path, skip.reason));
                        }
                    }
                }
                Ok(Placed::Audio(audio)) if ours => {
                    if let Err(Unplaceable) = chunks.push(audio) {
                        let first = group.sources.first().map(|s| s.path.clone());
                        report.declined.push((
                            first.unwrap_or_default(),
                            "a source's audio, after audio of an object outside the group, \
                             starts neither where its own unit starts nor on a whole \
                             millisecond after the pack's previous chunk: no pack can hold it \
                             and be placed as it is now"
                                .to_owned(),
                        ));
                        tracing::info!(start = %group.start, "compaction group declined");
                        return Ok(());
                    }
                }
                Ok(_) => {}
                // Every object was skipped: nothing to write.
                Err(ServiceError::NoAudio { .. }) => break,
                Err(error) => return Err(error),
            }
        }
        if let Ok(skipped) = placed.skipped.lock() {
            for skip in skipped.iter() {
                if sources.contains_key(skip.path.as_str()) {
                    failed.insert(skip.path.clone());
                    report
                        .skipped
                        .push((skip.path.clone(), skip.reason.clone()));
                }
            }
        }
        if sealed && let Some(path) = plaintext_pack {
            // Sealing it would turn audio anyone could have written into authenticated audio.
            return Err(ServiceError::Unsealed { path });
        }
        let chunks = chunks.finish();
        if chunks.is_empty() {
            return Ok(());
        }
        let config = PackConfig {
            sample_rate: placed.sample_rate,
            channels: 1,
            ..self.inner.config.pack
        };
        let level = if sealed {
            ProtectionLevel::Enhanced
        } else {
            ProtectionLevel::Standard
        };
        let path = self
            .write_fresh_pack(uid, conversation, &chunks, level, config)
            .await?;
        // Undecodable sources stay where they are (nothing of theirs was copied).
        let consumed: Vec<String> = group
            .sources
            .iter()
            .map(|source| source.path.clone())
            .filter(|source| !failed.contains(source) && *source != path)
            .collect();
        self.inner.store.delete_many(consumed.iter()).await?;
        tracing::info!(%path, sources = consumed.len(), chunks = chunks.len(), "compacted");
        report.chunks += chunks.len();
        report.written.push(path);
        report.deleted.extend(consumed);
        Ok(())
    }
}

/// Cuts placed audio into pack chunks that a download places exactly where the audio was.
///
/// A piece that begins its chunk or object untrimmed keeps that start. A piece trimmed at its
/// head (it resumes right after earlier audio) starts a chunk at its first sample when that
/// sample falls on a whole millisecond counted from the group's start; otherwise its samples
/// up to the next such instant extend the chunk before it (which ends exactly where the piece
/// resumes), and the rest starts a chunk there. Rounding the resumed chunk's start instead
/// would move or drop samples that downloads serve. (At rates that are not a multiple of
/// 1 kHz, chunk starts that are not whole samples are placed by rounding down, relative to
/// each download's origin; the guarantee holds exactly for starts on whole samples, as at
/// 8, 16 and 48 kHz.)
struct PackChunker {
    rate: u64,
    /// The group's start, the origin of the placed positions.
    origin_ms: u64,
    chunks: Vec<(u64, Bytes, Option<Bytes>)>,
    /// Position just after the last chunk's audio, in samples from the origin.
    end: Option<i128>,
}

impl PackChunker {
    fn new(rate: u32, origin: Timestamp) -> PackChunker {
        PackChunker {
            rate: u64::from(rate.max(1)),
            origin_ms: origin.as_millis(),
            chunks: Vec::new(),
            end: None,
        }
    }

    /// Adds one placed piece.
    fn push(&mut self, audio: PlacedAudio) -> Result<(), Unplaceable> {
        let at = audio.at.ok_or(Unplaceable)?;
        let samples = i128::try_from(audio.pcm.len() / 2).unwrap_or(i128::MAX);
        if audio.pcm.is_empty() {
            return Ok(());
        }
        let follows = self.end == Some(at);
        // A piece after a gap in the new pack starts a stretch of its own, which is placed by
        // its first chunk's start. Unless that is exactly the start of the piece's own unit,
        // the audio would be placed later (or earlier) among other objects than it is now, and
        // an object starting in between would win where it lost: not placeable.
        if !follows && audio.head_ms != Some(audio.unit_ms) {
            return Err(Unplaceable);
        }
        let step = i128::from(self.rate / gcd(self.rate, 1000));
        let ms_at = |position: i128| {
            u64::try_from(position * 1000 / i128::from(self.rate))
                .map(|ms| self.origin_ms + ms)
                .map_err(|_| Unplaceable)
        };
        if let Some(start_ms) = audio.head_ms {
            self.chunks.push((start_ms, audio.pcm, audio.opus));
        } else if at.rem_euclid(step) == 0 {
            self.chunks.push((ms_at(at)?, audio.pcm, None));
        } else if follows && let Some((_, last, opus)) = self.chunks.last_mut() {
            let next = (at.div_euclid(step) + 1) * step;
            let head = usize::try_from((next - at) * 2)
                .unwrap_or(usize::MAX)
                .min(audio.pcm.len());
            let mut joined = Vec::with_capacity(last.len() + head);
            joined.extend_from_slice(last);
            joined.extend_from_slice(&audio.pcm[..head]);
            *last = Bytes::from(joined);
            *opus = None;
            let rest = audio.pcm.slice(head..);
            if !rest.is_empty() {
                self.chunks.push((ms_at(next)?, rest, None));
            }
        } else {
            return Err(Unplaceable);
        }
        self.end = Some(at + samples);
        Ok(())
    }

    /// The chunks, in order.
    fn finish(self) -> Vec<PackInput> {
        self.chunks
            .into_iter()
            .filter_map(|(start_ms, pcm, opus)| {
                Timestamp::from_millis(start_ms).map(|ts| PackInput::decoded(ts, pcm, opus))
            })
            .collect()
    }
}

/// A piece no pack chunk can hold and keep its place: after a gap in the new pack it does not
/// begin its own unit (a stretch starting there would be placed later among the other
/// objects than the audio is now), or it resumes off a whole millisecond.
#[derive(Debug)]
struct Unplaceable;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
