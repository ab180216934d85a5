//! Spool format 2: the shared append log's segment files, their records, and recovery.
//!
//! Recovery is sans-I/O over a reader: [`Recovery::scan`] takes one segment's bytes, oldest
//! segment first, and keeps the batches that were opened and not retired, with where each of
//! their chunks is.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use chunk_format::Timestamp;

use super::record::{
    Next, RecordReader, decode_header, encode_header, frame, frame_head, timestamp_at, u64_at,
};
use super::{BatchHeader, BatchId, ChunkLocation, RecoveredBatch, SpoolError};

pub(super) const MAGIC: &[u8; 8] = b"CVSPOOL2";
/// The file name suffix of log segments.
pub(super) const SUFFIX: &str = ".log";
const KIND_OPEN: u8 = 1;
const KIND_CHUNK: u8 = 2;
const KIND_RETIRE: u8 = 3;
/// Bytes of a chunk record's payload before the PCM (kind, batch, timestamp).
pub(super) const CHUNK_PREFIX: usize = 17;

/// The path of log segment `id` in `dir`.
pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SUFFIX}"))
}

/// The id of a log segment's file name.
pub(super) fn segment_id(name: &str) -> Option<u64> {
    name.strip_suffix(SUFFIX)?.parse().ok()
}

/// Appends an `open` record.
pub(super) fn open_record(
    out: &mut Vec<u8>,
    batch: BatchId,
    header: &BatchHeader,
) -> Result<(), SpoolError> {
    let mut payload = vec![KIND_OPEN];
    payload.extend_from_slice(&batch.0.to_le_bytes());
    encode_header(&mut payload, header).ok_or(SpoolError::TooLarge {
        len: header
            .uid
            .as_str()
            .len()
            .max(header.conversation.as_str().len()),
        max: usize::from(u16::MAX),
    })?;
    frame(out, &payload, &[]);
    Ok(())
}

/// Appends a `chunk` record.
pub(super) fn chunk_record(out: &mut Vec<u8>, batch: BatchId, timestamp: Timestamp, pcm: &[u8]) {
    chunk_record_head(out, batch, timestamp, pcm);
    out.extend_from_slice(pcm);
}

/// Appends a `chunk` record up to its PCM, which the caller writes after it.
pub(super) fn chunk_record_head(
    out: &mut Vec<u8>,
    batch: BatchId,
    timestamp: Timestamp,
    pcm: &[u8],
) {
    let mut prefix = [0u8; CHUNK_PREFIX];
    prefix[0] = KIND_CHUNK;
    prefix[1..9].copy_from_slice(&batch.0.to_le_bytes());
    prefix[9..17].copy_from_slice(&timestamp.as_millis().to_le_bytes());
    frame_head(out, &prefix, pcm);
}

/// Appends a `retire` record.
pub(super) fn retire_record(out: &mut Vec<u8>, batch: BatchId) {
    let mut payload = [0u8; 9];
    payload[0] = KIND_RETIRE;
    payload[1..].copy_from_slice(&batch.0.to_le_bytes());
    frame(out, &payload, &[]);
}

/// One record's meaning.
pub(super) enum Entry<'a> {
    Open(BatchId, BatchHeader),
    Chunk(BatchId, Timestamp, &'a [u8]),
    Retire(BatchId),
}

/// Decodes a payload whose checksum held; `None` if its content is invalid.
pub(super) fn decode(payload: &[u8]) -> Option<Entry<'_>> {
    let (&kind, rest) = payload.split_first()?;
    let batch = BatchId(u64_at(rest)?);
    let rest = &rest[8..];
    match kind {
        KIND_OPEN => Some(Entry::Open(batch, decode_header(rest)?)),
        KIND_CHUNK => Some(Entry::Chunk(batch, timestamp_at(rest)?, &rest[8..])),
        KIND_RETIRE if rest.is_empty() => Some(Entry::Retire(batch)),
        _ => None,
    }
}

/// What scanning one segment found besides its records.
pub(super) struct Scanned {
    /// Where the last good record ends.
    pub(super) valid_end: u64,
    /// The segment's length.
    pub(super) total: u64,
}

/// The live batches of a log, built segment by segment, oldest first.
#[derive(Default)]
pub(super) struct Recovery {
    live: BTreeMap<BatchId, RecoveredBatch>,
    /// Every batch's segments holding its `open` and `chunk` records.
    segments_of: BTreeMap<BatchId, BTreeSet<u64>>,
    /// The segment holding each retired batch's `retire` record.
    retired_in: BTreeMap<BatchId, u64>,
    /// The largest batch id any record named.
    max_batch: Option<u64>,
}

impl Recovery {
    /// Scans one segment. A torn tail is accepted only where `tolerate_torn` (the newest
    /// segment: every older one was complete before the next was created).
    pub(super) fn scan(
        &mut self,
        segment: u64,
        path: &Path,
        reader: impl Read,
        total: u64,
        tolerate_torn: bool,
    ) -> Result<Scanned, SpoolError> {
        let corrupt = |offset: u64, reason: &str| SpoolError::Corrupt {
            path: path.to_owned(),
            offset,
            reason: reason.to_owned(),
        };
        let read_err = |source| SpoolError::Io {
            path: path.to_owned(),
            op: "read log segment",
            source,
        };
        let mut reader = RecordReader::new(reader, total);
        if total < MAGIC.len() as u64 {
            return if tolerate_torn {
                Ok(Scanned {
                    valid_end: 0,
                    total,
                })
            } else {
                Err(corrupt(0, "shorter than the magic"))
            };
        }
        let mut magic = [0u8; 8];
        reader.fill(&mut magic).map_err(read_err)?;
        if &magic != MAGIC {
            // Created, then the crash came before its first bytes were durable.
            if tolerate_torn && magic == [0; 8] && reader.rest_is_zero().map_err(read_err)? {
                return Ok(Scanned {
                    valid_end: 0,
                    total,
                });
            }
            return Err(corrupt(0, "bad magic"));
        }
        let mut valid_end = reader.pos;
        loop {
            let offset = reader.pos;
            match reader.next().map_err(read_err)? {
                Next::End => break,
                Next::Torn if tolerate_torn => break,
                Next::Torn => return Err(corrupt(offset, "torn record before the newest segment")),
                Next::Corrupt(reason) => return Err(corrupt(offset, reason)),
                Next::Record(payload) => {
                    let entry = decode(&payload).ok_or_else(|| corrupt(offset, "bad record"))?;
                    let len = (reader.pos - offset) as u32;
                    self.apply(entry, segment, offset, len)
                        .map_err(|reason| corrupt(offset, reason))?;
                    valid_end = reader.pos;
                }
            }
        }
        Ok(Scanned { valid_end, total })
    }

    fn apply(
        &mut self,
        entry: Entry<'_>,
        segment: u64,
        offset: u64,
        len: u32,
    ) -> Result<(), &'static str> {
        let id = match &entry {
            Entry::Open(id, _) | Entry::Chunk(id, _, _) | Entry::Retire(id) => *id,
        };
        self.max_batch = Some(self.max_batch.map_or(id.0, |max| max.max(id.0)));
        if matches!(entry, Entry::Retire(_)) {
            self.retired_in.insert(id, segment);
        } else {
            self.segments_of.entry(id).or_default().insert(segment);
        }
        match entry {
            Entry::Open(id, header) => {
                if self.live.contains_key(&id) {
                    return Err("batch opened twice");
                }
                self.live.insert(
                    id,
                    RecoveredBatch {
                        id,
                        header,
                        chunks: Vec::new(),
                        pcm_bytes: 0,
                    },
                );
            }
            Entry::Chunk(id, timestamp, pcm) => {
                // A chunk of a batch whose `open` is gone belongs to a retired batch: the
                // segment holding its `open` was deleted only after its `retire` was durable,
                // and the segment holding the `retire` outlives every other record of it.
                if let Some(batch) = self.live.get_mut(&id) {
                    if batch
                        .chunks
                        .last()
                        .is_some_and(|c| timestamp <= c.timestamp)
                    {
                        return Err("chunk timestamps of a batch do not increase");
                    }
                    batch.pcm_bytes += pcm.len() as u64;
                    batch.chunks.push(ChunkLocation {
                        segment,
                        offset,
                        len,
                        timestamp,
                    });
                }
            }
            Entry::Retire(id) => {
                self.live.remove(&id);
            }
        }
        Ok(())
    }

    /// The live batches that hold chunks (oldest first), batches opened whose first chunk
    /// never became durable dropped, what references each segment, and the next free id.
    pub(super) fn finish(self) -> (Vec<RecoveredBatch>, References, u64) {
        let next = self.max_batch.map_or(0, |max| max + 1);
        let batches: Vec<RecoveredBatch> = self
            .live
            .into_values()
            .filter(|b| !b.chunks.is_empty())
            .collect();
        let mut references = References::default();
        for batch in &batches {
            references.add_live(batch);
        }
        for (id, retire) in self.retired_in {
            for &segment in self.segments_of.get(&id).into_iter().flatten() {
                references.pin(segment, retire);
            }
        }
        (batches, references, next)
    }
}

/// What keeps each log segment: the live batches with records in it, and `retire` records
/// that must outlive the retired batch's other records (else recovery would find the batch
/// open again).
#[derive(Debug, Default)]
pub(super) struct References {
    /// The segments each live batch has records in.
    pub(super) of_batch: BTreeMap<BatchId, Vec<u64>>,
    /// Per segment: live batches with records in it, plus segments holding records of a
    /// batch whose `retire` it holds.
    pub(super) refs: BTreeMap<u64, usize>,
    /// Per segment: the segments holding `retire` records of batches it has records of.
    pub(super) pins: BTreeMap<u64, Vec<u64>>,
}

impl References {
    fn add_live(&mut self, batch: &RecoveredBatch) {
        let segments: BTreeSet<u64> = batch.chunks.iter().map(|c| c.segment).collect();
        for &segment in &segments {
            *self.refs.entry(segment).or_default() += 1;
        }
        self.of_batch
            .insert(batch.id, segments.into_iter().collect());
    }

    /// Keeps `retire` (holding a batch's `retire` record) while `records` (holding its other
    /// records) exists.
    pub(super) fn pin(&mut self, records: u64, retire: u64) {
        if records != retire {
            *self.refs.entry(retire).or_default() += 1;
            self.pins.entry(records).or_default().push(retire);
        }
    }

    /// Records that `batch` wrote a record into `segment`.
    pub(super) fn wrote(&mut self, batch: BatchId, segment: u64) {
        let segments = self.of_batch.entry(batch).or_default();
        if segments.last() != Some(&segment) {
            segments.push(segment);
            *self.refs.entry(segment).or_default() += 1;
        }
    }

    /// `batch` was retired by a record in `retire`: its segments lose it as a live batch,
    /// and `retire` is pinned by each of them.
    pub(super) fn retired(&mut self, batch: BatchId, retire: u64) {
        for segment in self.of_batch.remove(&batch).unwrap_or_default() {
            if let Some(count) = self.refs.get_mut(&segment) {
                *count = count.saturating_sub(1);
            }
            self.pin(segment, retire);
        }
    }

    /// Segments nothing keeps, but `active`.
    pub(super) fn unreferenced(&self, active: u64) -> Vec<u64> {
        self.refs
            .iter()
            .filter(|&(&segment, &count)| count == 0 && segment != active)
            .map(|(&segment, _)| segment)
            .collect()
    }

    /// Forgets a deleted segment, releasing the `retire` segments it pinned.
    pub(super) fn deleted(&mut self, segment: u64) {
        self.refs.remove(&segment);
        for retire in self.pins.remove(&segment).unwrap_or_default() {
            if let Some(count) = self.refs.get_mut(&retire) {
                *count = count.saturating_sub(1);
            }
        }
    }
}
