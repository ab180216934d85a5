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
//! Timing: packs and single-chunk objects keep their exact starts; an Omi `.batch.bin` has no
//! interior timing, so it becomes one chunk at its start; a `.batch.enc` becomes one chunk per
//! frame when every frame boundary falls on a whole millisecond (else one chunk). Where objects
//! overlap, the earlier one wins, exactly as downloads place them (by the same placement
//! units: an Omi object, or a stretch of a pack without a gap), so every range download is
//! byte-identical before and after (for audio whose chunk boundaries fall on whole
//! milliseconds, as 16 kHz chunks of whole milliseconds always do).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chunk_format::pack::{KeyScheme, PackConfig, PackTail, SealInfo};
use chunk_format::{ObjectKind, Timestamp};
use chunk_store::{ConversationId, UserId};

use crate::error::ServiceError;
use crate::level::ProtectionLevel;
use crate::read::audit::AuditOptions;
use crate::read::decode::{decode_omi_object, omi_opus_container, trim_to_samples};
use crate::read::download::preference;
use crate::read::format::{AudioFormat, FormatCheck};
use crate::read::list::ListEntry;
use crate::read::placement::Overlap;
use crate::read::policy::PackSealing;
use crate::read::timeline::continues;
use crate::service::ChunkService;
use crate::write::pack::PackInput;
use chunk_format::omi_opus::OpusContainer;

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

    /// The audit's overlaps whose two objects go into the same new pack (audio that the merge
    /// trims and no download serves), and their length in ms.
    async fn shadowed_by_groups(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        groups: &[CompactionGroup],
        omi_rate: u32,
    ) -> Result<(Vec<Overlap>, u64), ServiceError> {
        let group_of: std::collections::HashMap<&str, usize> = groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.sources.iter().map(move |s| (s.path.as_str(), i)))
            .collect();
        let options = AuditOptions {
            sample_rate: omi_rate,
        };
        let audit = self.audit(uid, conversation, options).await?;
        let rate = u64::from(audit.sample_rate.unwrap_or(omi_rate).max(1));
        let shadowed: Vec<Overlap> = audit
            .overlaps
            .into_iter()
            .filter(|o| {
                group_of
                    .get(o.trimmed.as_str())
                    .is_some_and(|g| group_of.get(o.kept.as_str()) == Some(g))
            })
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
        for group in &plan.groups {
            self.compact_group(&plan.uid, &plan.conversation, group, &mut report)
                .await?;
        }
        Ok(report)
    }

    async fn compact_group(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        group: &CompactionGroup,
        report: &mut CompactionReport,
    ) -> Result<(), ServiceError> {
        let key = self.omi_key(uid)?;
        let sealing = self.pack_sealing(uid).await?;
        let mut sealed = sealing == PackSealing::Required;
        // The first plaintext pack among the sources: it may not go into sealed output.
        let mut plaintext_pack: Option<String> = None;
        // The group's one format, from the sources (pack headers; Omi objects at the
        // configured rate): the new pack is written in it, and a group that mixes formats is
        // refused before anything is written or deleted.
        let mut formats = FormatCheck::default();
        // Placement units (an Omi object, a stretch of a pack) in source order; and the
        // sources consumed.
        let mut units: Vec<Vec<Run>> = Vec::new();
        let mut consumed: Vec<String> = Vec::new();
        let mut singles: BTreeMap<Timestamp, Vec<&ListEntry>> = BTreeMap::new();
        let mut ordered: Vec<Vec<&ListEntry>> = Vec::new();
        for source in &group.sources {
            if source.is_batch {
                ordered.push(vec![source]);
            } else {
                singles.entry(source.start).or_default().push(source);
            }
        }
        for mut candidates in singles.into_values() {
            candidates.sort_by_key(|e| preference(e.kind));
            ordered.push(candidates);
        }
        // Same placement order as a download: by start, multi-chunk objects first on ties.
        ordered.sort_by_key(|c| (c[0].start, !c[0].is_batch));
        for candidates in ordered {
            let mut decoded = None;
            for candidate in &candidates {
                match self
                    .decode_for_compaction(uid, conversation, candidate, key.as_ref(), sealing)
                    .await
                {
                    Ok(found) => {
                        decoded = Some((candidate, found));
                        break;
                    }
                    Err(ServiceError::Store(error)) => return Err(error.into()),
                    // Refused, not undecodable: the compaction fails, naming the object.
                    Err(error @ ServiceError::Unsealed { .. }) => return Err(error),
                    Err(error) => report
                        .skipped
                        .push((candidate.path.clone(), error.to_string())),
                }
            }
            let Some((chosen, (chunks, was_sealed, format))) = decoded else {
                continue;
            };
            formats.see(&chosen.path, format)?;
            sealed |= was_sealed;
            if chosen.kind == ObjectKind::Pack && !was_sealed {
                plaintext_pack.get_or_insert_with(|| chosen.path.clone());
            }
            units.extend(placement_units(chunks, format.rate));
            // Every candidate of a decodable group is replaced (downloads used only `chosen`),
            // except the undecodable ones, which stay where they are.
            for candidate in &candidates {
                let skipped = report.skipped.iter().any(|(p, _)| p == &candidate.path);
                if !skipped || candidate.path == chosen.path {
                    consumed.push(candidate.path.clone());
                }
            }
        }
        let omi_rate = self.inner.config.pack.sample_rate;
        let format = formats.format().unwrap_or(AudioFormat::mono(omi_rate));
        if format.channels != 1 {
            return Err(ServiceError::InvalidInput(format!(
                "{}: compaction merges mono audio; this group has {} channels",
                group.sources[0].path, format.channels
            )));
        }
        if sealed && let Some(path) = plaintext_pack {
            // Sealing it would turn audio anyone could have written into authenticated audio.
            return Err(ServiceError::Unsealed { path });
        }
        // Placed as a download places them: units by start, ties in source order.
        units.sort_by_key(|unit| unit.first().map_or(0, |run| run.start_ms));
        let chunks = trim_overlaps(units.into_iter().flatten().collect(), format.rate);
        if chunks.is_empty() {
            return Ok(());
        }
        let config = PackConfig {
            sample_rate: format.rate,
            channels: format.channels,
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
        consumed.retain(|p| p != &path);
        self.inner.store.delete_many(consumed.iter()).await?;
        tracing::info!(%path, sources = consumed.len(), chunks = chunks.len(), "compacted");
        report.chunks += chunks.len();
        report.written.push(path);
        report.deleted.extend(consumed);
        Ok(())
    }

    /// Decodes one source into runs of audio and says whether it was sealed and what format
    /// its audio is in. Runs from Opus (an Opus pack's frames, an Omi `.opus` object) keep
    /// their container, so an Opus pack can store it unchanged.
    async fn decode_for_compaction(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        source: &ListEntry,
        key: Option<&chunk_crypto::UserKey>,
        sealing: PackSealing,
    ) -> Result<(Vec<Run>, bool, AudioFormat), ServiceError> {
        let omi_format = AudioFormat::mono(self.inner.config.pack.sample_rate);
        let limit = self.inner.config.max_decoded_chunk as u64;
        if source.kind == ObjectKind::Pack {
            let pack = self
                .read_pack_chunks(uid, conversation, &source.path, sealing)
                .await?;
            let chunks = pack
                .chunks
                .into_iter()
                .map(|c| Run {
                    start_ms: c.start.as_millis(),
                    pcm: c.pcm,
                    opus: c.opus,
                })
                .collect();
            let format = AudioFormat {
                rate: pack.sample_rate,
                channels: pack.channels,
            };
            return Ok((chunks, pack.sealed, format));
        }
        self.check_omi_size(&source.path, source.kind, source.size)?;
        let bytes = self.inner.store.read(&source.path).await?;
        if matches!(source.kind, ObjectKind::Opus | ObjectKind::OpusEnc) {
            let container = omi_opus_container(&source.path, source.kind, bytes, key)?;
            let pcm = decode_omi_object(
                &source.path,
                ObjectKind::Opus,
                container.clone(),
                None,
                limit,
            )?
            .into_iter()
            .next()
            .unwrap_or_default();
            // A container whose PCM was trimmed to whole samples (an odd original length)
            // does not decode to exactly `pcm`: keep only the PCM then.
            let exact = OpusContainer::parse(&container)
                .is_ok_and(|c| u64::from(c.original_pcm_len()) == pcm.len() as u64);
            let run = Run {
                start_ms: source.start.as_millis(),
                pcm,
                opus: exact.then_some(container),
            };
            return Ok((vec![run], source.kind.is_encrypted(), omi_format));
        }
        let pieces = decode_omi_object(&source.path, source.kind, bytes, key, limit)?;
        let start = source.start.as_millis();
        let rate = u64::from(omi_format.rate.max(1));
        let whole_ms = |pcm: &Bytes| (pcm.len() as u64 / 2 * 1000).is_multiple_of(rate);
        let chunks = if source.kind == ObjectKind::BatchEnc && pieces.iter().all(whole_ms) {
            let mut at = start;
            pieces
                .into_iter()
                .map(|pcm| {
                    let len = pcm.len() as u64;
                    let run = Run::pcm(at, pcm);
                    at += len / 2 * 1000 / rate;
                    run
                })
                .collect()
        } else {
            let mut all = Vec::new();
            for piece in pieces {
                all.extend_from_slice(&piece);
            }
            vec![Run::pcm(start, trim_to_samples(Bytes::from(all)))]
        };
        Ok((chunks, source.kind.is_encrypted(), omi_format))
    }
}

/// Places runs of audio at `rate` like a download does (earlier audio wins where they overlap) and returns
/// chunks that do not overlap, ready for a pack. A run that loses audio to an overlap
/// loses its Opus container too (it no longer decodes to the kept PCM).
///
/// A pack chunk starts on a whole millisecond, but placed audio can end between two (a
/// chunk of 8 samples at 16 kHz ends half a millisecond in). The part of a trimmed run up to
/// the next instant that is both a whole millisecond and a whole sample therefore extends
/// the chunk placed last, which ends exactly where the run resumes; the rest starts a new
/// chunk at that instant. Rounding the resumed chunk's start instead would drop those
/// samples, which downloads before compaction serve.
fn trim_overlaps(runs: Vec<Run>, rate: u32) -> Vec<PackInput> {
    let rate = u64::from(rate.max(1));
    let mut out: Vec<(Timestamp, Run)> = Vec::new();
    // End of the audio placed so far, in samples since the epoch (exact for whole ms).
    let mut cursor: Option<u64> = None;
    for Run {
        start_ms,
        pcm,
        mut opus,
    } in runs
    {
        let start = start_ms * rate / 1000;
        let untrimmed = pcm.len();
        let mut pcm = trim_to_samples(pcm);
        let mut start_ms = start_ms;
        if let Some(end) = cursor
            && start < end
        {
            let drop = ((end - start) * 2).min(pcm.len() as u64) as usize;
            pcm = pcm.slice(drop..);
            if pcm.is_empty() {
                continue;
            }
            // The rest resumes exactly at `end`, right after the last chunk in `out`.
            start_ms = next_exact_ms(end, rate);
            let head = (((start_ms * rate / 1000) - end) * 2).min(pcm.len() as u64) as usize;
            if head > 0
                && let Some((_, last)) = out.last_mut()
            {
                let mut joined = Vec::with_capacity(last.pcm.len() + head);
                joined.extend_from_slice(&last.pcm);
                joined.extend_from_slice(&pcm[..head]);
                last.pcm = Bytes::from(joined);
                last.opus = None;
                cursor = Some(end + head as u64 / 2);
            }
            pcm = pcm.slice(head..);
        }
        if pcm.is_empty() {
            continue;
        }
        let samples = pcm.len() as u64 / 2;
        let chunk_start = start_ms * rate / 1000;
        cursor = Some(cursor.map_or(chunk_start + samples, |c| c.max(chunk_start + samples)));
        if pcm.len() != untrimmed {
            opus = None;
        }
        if let Some(ts) = Timestamp::from_millis(start_ms) {
            out.push((
                ts,
                Run {
                    start_ms,
                    pcm,
                    opus,
                },
            ));
        }
    }
    out.into_iter()
        .map(|(ts, run)| PackInput::decoded(ts, run.pcm, run.opus))
        .collect()
}

/// Splits one source's runs into the units a download places it as: stretches of runs that
/// each follow the one before ([`continues`]).
fn placement_units(runs: Vec<Run>, rate: u32) -> Vec<Vec<Run>> {
    let mut units: Vec<Vec<Run>> = Vec::new();
    for run in runs {
        let follows = units
            .last()
            .and_then(|unit| unit.last())
            .is_some_and(|prev| {
                continues(prev.start_ms, prev.pcm.len() as u64 / 2, run.start_ms, rate)
            });
        match units.last_mut() {
            Some(unit) if follows => unit.push(run),
            _ => units.push(vec![run]),
        }
    }
    units
}

/// The first instant at or after sample `position` (samples since the epoch at `rate`) that is
/// a whole millisecond falling on a whole sample, in milliseconds. At 16 kHz that is every
/// millisecond; at 44.1 kHz every tenth.
fn next_exact_ms(position: u64, rate: u64) -> u64 {
    let step = 1000 / gcd(rate, 1000);
    (position * 1000).div_ceil(rate).div_ceil(step) * step
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Audio from one source, placed at `start_ms`; `opus` is the Omi Opus container it was
/// decoded from, when it decodes to exactly `pcm`.
#[derive(Debug)]
struct Run {
    start_ms: u64,
    pcm: Bytes,
    opus: Option<Bytes>,
}

impl Run {
    fn pcm(start_ms: u64, pcm: Bytes) -> Run {
        Run {
            start_ms,
            pcm,
            opus: None,
        }
    }
}
