//! A durable local spool: append-only, checksummed, fsync'd segment files, one per pending batch.
//!
//! The recorder acknowledges a chunk only after [`Spool::append`] returned, i.e. after the chunk's
//! record and everything before it reached the disk (`fsync`). Each pending batch is one
//! segment file; a batch is removed from the spool ([`Spool::remove`]) only after the object
//! store confirmed its write. After a crash, [`Spool::open`] finds every segment left behind,
//! cuts a torn tail record, and hands the segments back for replay.
//!
//! Segment file layout (all integers little-endian):
//!
//! ```text
//! file    := magic "CVSPOOL1" record*
//! record  := len: u32 | crc32c(payload): u32 | payload[len]
//! payload := 0x01 header | 0x02 chunk
//! header  := version u8 (=1) | level u8 (0 none, 1 standard, 2 enhanced, 3 e2ee)
//!            | uid_len u16 | uid | conv_len u16 | conv
//! chunk   := timestamp_ms u64 | pcm bytes (rest of the payload)
//! ```
//!
//! The first record of a segment is its header; chunk timestamps increase strictly within a
//! segment. Recovery rules:
//!
//! - a record that runs past the end of the file, a record whose checksum fails and that ends
//!   exactly at the end of the file, and a zero-filled tail are a *torn tail*: the write that
//!   made it never returned, so it held no acknowledged chunk; it is cut (and the cut fsync'd);
//! - a bad record with more data after it, or a record whose checksum holds but whose content
//!   is invalid, is [`SpoolError::Corrupt`]: acknowledged data may follow, so nothing is cut and
//!   nothing is guessed;
//! - a segment whose header is missing or torn, or that holds no chunk, held no acknowledged
//!   chunk and is deleted.
//!
//! One process at a time: [`Spool::open`] takes an exclusive lock on `spool.lock` in the
//! directory (released by the OS when the process dies, also on `kill -9`).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use chunk_format::Timestamp;
use chunk_store::{ConversationId, UserId};

use crate::level::ProtectionLevel;

const MAGIC: &[u8; 8] = b"CVSPOOL1";
const RECORD_HEADER: usize = 8;
const KIND_HEADER: u8 = 1;
const KIND_CHUNK: u8 = 2;
/// Bytes of a chunk record's payload before the PCM (kind and timestamp).
const CHUNK_PREFIX: usize = 9;
/// The lock file of a spool directory.
pub const LOCK_FILE: &str = "spool.lock";
/// Largest record payload accepted (a 10-minute 48 kHz chunk is 57.6 MB).
pub const MAX_RECORD: usize = 64 * 1024 * 1024;
/// Bytes a chunk record takes on disk beyond its PCM.
pub const RECORD_OVERHEAD: usize = RECORD_HEADER + CHUNK_PREFIX;

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Another process (or another [`Spool`] in this one) holds the directory's lock.
    #[error("spool {path} is locked by another process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A chunk is larger than [`MAX_RECORD`].
    #[error("chunk of {len} bytes is larger than the spool's record limit {max}")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No open segment has this id.
    #[error("spool segment {0} is not open for appending")]
    NotOpen(u64),
    /// A chunk's timestamp is not after the segment's previous chunk.
    #[error(
        "spool segment {segment}: chunk at {timestamp} is not after the previous chunk ({previous})"
    )]
    OutOfOrder {
        /// The segment.
        segment: u64,
        /// The rejected chunk's start.
        timestamp: Timestamp,
        /// The previous chunk's start.
        previous: Timestamp,
    },
    /// An append failed and the segment could not be cut back to its last good record; the
    /// spool refuses all further writes (reopen it, which recovers the segment).
    #[error("spool {path} is failed after an unrecoverable write error; reopen it to recover")]
    Failed {
        /// The segment whose write failed.
        path: PathBuf,
    },
    /// A segment holds data that no crash can produce (not a torn tail): nothing was cut.
    #[error("spool segment {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
}

/// Which batch a segment holds: user, conversation and (if the caller gave it) level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The user.
    pub uid: UserId,
    /// The conversation.
    pub conversation: ConversationId,
    /// The level the caller passed with the chunks, if any.
    pub level: Option<ProtectionLevel>,
}

/// A segment found on disk by [`Spool::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's id (its sequence number).
    pub id: u64,
    /// Whose batch it is.
    pub header: SegmentHeader,
    /// Chunk records it holds (at least one).
    pub chunks: usize,
    /// PCM bytes of those chunks.
    pub pcm_bytes: u64,
    /// Start of its first chunk.
    pub first: Timestamp,
    /// Start of its last chunk.
    pub last: Timestamp,
    /// Bytes cut from a torn tail during recovery.
    pub cut_bytes: u64,
}

/// One chunk read back from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledChunk {
    /// The chunk's start.
    pub timestamp: Timestamp,
    /// Its PCM.
    pub pcm: Vec<u8>,
}

/// A segment open for appending.
#[derive(Debug)]
struct OpenSegment {
    id: u64,
    file: File,
    /// Bytes of the file up to its last durable record.
    len: u64,
    last: Option<Timestamp>,
}

/// The spool directory and its open (appendable) segments.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    next_id: u64,
    open: Vec<OpenSegment>,
    /// Set after a write that could not be undone; every later write is refused.
    failed: Option<PathBuf>,
    /// Holds the directory's exclusive lock for the spool's lifetime.
    _lock: File,
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

fn level_code(level: Option<ProtectionLevel>) -> u8 {
    match level {
        None => 0,
        Some(ProtectionLevel::Standard) => 1,
        Some(ProtectionLevel::Enhanced) => 2,
        Some(ProtectionLevel::E2ee) => 3,
    }
}

fn level_from_code(code: u8) -> Option<Option<ProtectionLevel>> {
    match code {
        0 => Some(None),
        1 => Some(Some(ProtectionLevel::Standard)),
        2 => Some(Some(ProtectionLevel::Enhanced)),
        3 => Some(Some(ProtectionLevel::E2ee)),
        _ => None,
    }
}

fn encode_header(header: &SegmentHeader) -> Result<Vec<u8>, SpoolError> {
    let uid = header.uid.as_str().as_bytes();
    let conv = header.conversation.as_str().as_bytes();
    let too_long = |len: usize| SpoolError::TooLarge {
        len,
        max: usize::from(u16::MAX),
    };
    let uid_len = u16::try_from(uid.len()).map_err(|_| too_long(uid.len()))?;
    let conv_len = u16::try_from(conv.len()).map_err(|_| too_long(conv.len()))?;
    let mut out = Vec::with_capacity(7 + uid.len() + conv.len());
    out.push(KIND_HEADER);
    out.push(1);
    out.push(level_code(header.level));
    out.extend_from_slice(&uid_len.to_le_bytes());
    out.extend_from_slice(uid);
    out.extend_from_slice(&conv_len.to_le_bytes());
    out.extend_from_slice(conv);
    Ok(out)
}

fn decode_header(payload: &[u8]) -> Option<SegmentHeader> {
    let (&kind, rest) = payload.split_first()?;
    let (&version, rest) = rest.split_first()?;
    let (&level, rest) = rest.split_first()?;
    if kind != KIND_HEADER || version != 1 {
        return None;
    }
    let level = level_from_code(level)?;
    let take = |bytes: &[u8]| -> Option<(String, usize)> {
        let len = usize::from(u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?));
        let text = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
        Some((text.to_owned(), 2 + len))
    };
    let (uid, used) = take(rest)?;
    let (conv, used2) = take(rest.get(used..)?)?;
    if rest.len() != used + used2 {
        return None;
    }
    Some(SegmentHeader {
        uid: UserId::new(uid).ok()?,
        conversation: ConversationId::new(conv).ok()?,
        level,
    })
}

/// Splits a chunk record's payload into its timestamp and PCM.
fn decode_chunk(payload: &[u8]) -> Option<(Timestamp, &[u8])> {
    let (&kind, rest) = payload.split_first()?;
    if kind != KIND_CHUNK {
        return None;
    }
    let millis = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    Some((Timestamp::from_millis(millis)?, rest.get(8..)?))
}

/// What the next record of a segment is.
enum Next {
    /// A record whose checksum holds.
    Record(Vec<u8>),
    /// A clean end of file.
    End,
    /// A torn tail starting at the record's offset: cut it.
    Torn,
    /// A bad record with data after it.
    Corrupt(&'static str),
}

/// Reads records of one segment file, knowing the file's length so that it can tell a torn
/// tail from corruption without allocating more than one record.
struct RecordReader {
    reader: BufReader<File>,
    pos: u64,
    total: u64,
}

impl RecordReader {
    fn new(file: File, total: u64) -> RecordReader {
        RecordReader {
            reader: BufReader::new(file),
            pos: 0,
            total,
        }
    }

    fn remaining(&self) -> u64 {
        self.total.saturating_sub(self.pos)
    }

    /// Reads exactly `buf.len()` bytes (the caller checked they exist).
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Whether every byte from the current position to the end is zero (a zero-filled tail
    /// left by a crash that extended the file before its data reached the disk).
    fn rest_is_zero(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 8192];
        loop {
            let n = self.reader.read(&mut buf)?;
            if n == 0 {
                return Ok(true);
            }
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
        }
    }

    /// Reads the next record. On `Torn` / `Corrupt` the position is the bad record's offset
    /// only as far as [`RecordReader::pos`] was before the call (the caller keeps it).
    fn next(&mut self) -> io::Result<Next> {
        let remaining = self.remaining();
        if remaining == 0 {
            return Ok(Next::End);
        }
        if remaining < RECORD_HEADER as u64 {
            return Ok(Next::Torn);
        }
        let mut head = [0u8; RECORD_HEADER];
        self.fill(&mut head)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let len = u64::from(len);
        if len == 0 {
            return Ok(if head == [0; RECORD_HEADER] && self.rest_is_zero()? {
                Next::Torn
            } else {
                Next::Corrupt("record of length zero")
            });
        }
        if len > self.remaining() {
            // The write of this record never completed.
            return Ok(Next::Torn);
        }
        if len > MAX_RECORD as u64 {
            return Ok(Next::Corrupt("record longer than the spool's limit"));
        }
        let mut payload = vec![0u8; len as usize];
        self.fill(&mut payload)?;
        if crc32c::crc32c(&payload) != crc {
            return Ok(if self.remaining() == 0 {
                Next::Torn
            } else {
                Next::Corrupt("checksum mismatch before the end of the segment")
            });
        }
        Ok(Next::Record(payload))
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

/// A whole segment read from disk: its header, chunks, and where valid data ends.
struct Scanned {
    header: Option<SegmentHeader>,
    chunks: Vec<SpooledChunk>,
    chunk_count: usize,
    pcm_bytes: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    valid_end: u64,
    total: u64,
}

/// Reads a segment. `keep_pcm` keeps the chunks (for upload); recovery only counts them.
/// `tolerate_torn` accepts a torn tail (recovery); otherwise a torn tail is corruption.
fn scan_segment(path: &Path, keep_pcm: bool, tolerate_torn: bool) -> Result<Scanned, SpoolError> {
    let file = File::open(path).map_err(io_err(path, "open segment"))?;
    let total = file.metadata().map_err(io_err(path, "stat segment"))?.len();
    let mut reader = RecordReader::new(file, total);
    let mut scanned = Scanned {
        header: None,
        chunks: Vec::new(),
        chunk_count: 0,
        pcm_bytes: 0,
        first: None,
        last: None,
        valid_end: 0,
        total,
    };
    let corrupt = |offset: u64, reason: &str| SpoolError::Corrupt {
        path: path.to_owned(),
        offset,
        reason: reason.to_owned(),
    };
    let mut magic = [0u8; 8];
    if total < MAGIC.len() as u64 {
        return if tolerate_torn {
            Ok(scanned)
        } else {
            Err(corrupt(0, "shorter than the magic"))
        };
    }
    reader
        .fill(&mut magic)
        .map_err(io_err(path, "read segment"))?;
    if &magic != MAGIC {
        // A zero-filled file: created, then the crash came before its first bytes were durable.
        if tolerate_torn
            && magic == [0; 8]
            && reader
                .rest_is_zero()
                .map_err(io_err(path, "read segment"))?
        {
            return Ok(scanned);
        }
        return Err(corrupt(0, "bad magic"));
    }
    scanned.valid_end = reader.pos;
    loop {
        let offset = reader.pos;
        match reader.next().map_err(io_err(path, "read segment"))? {
            Next::End => break,
            Next::Torn if tolerate_torn => break,
            Next::Torn => return Err(corrupt(offset, "torn record in a recovered segment")),
            Next::Corrupt(reason) => return Err(corrupt(offset, reason)),
            Next::Record(payload) => {
                if scanned.header.is_none() {
                    let header = decode_header(&payload)
                        .ok_or_else(|| corrupt(offset, "bad header record"))?;
                    scanned.header = Some(header);
                } else {
                    let (timestamp, pcm) = decode_chunk(&payload)
                        .ok_or_else(|| corrupt(offset, "bad chunk record"))?;
                    if scanned.last.is_some_and(|last| timestamp <= last) {
                        return Err(corrupt(offset, "chunk timestamps do not increase"));
                    }
                    scanned.first.get_or_insert(timestamp);
                    scanned.last = Some(timestamp);
                    scanned.chunk_count += 1;
                    scanned.pcm_bytes += pcm.len() as u64;
                    if keep_pcm {
                        scanned.chunks.push(SpooledChunk {
                            timestamp,
                            pcm: pcm.to_vec(),
                        });
                    }
                }
                scanned.valid_end = reader.pos;
            }
        }
    }
    Ok(scanned)
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, locks it, and recovers what an earlier
    /// process left: torn tails are cut (and the cut made durable), segments without a valid
    /// header or without chunks are deleted, and the remaining segments are returned oldest
    /// first for replay.
    ///
    /// Fails with [`SpoolError::Locked`] if another spool holds the directory, and with
    /// [`SpoolError::Corrupt`] if a segment holds damage that is not a torn tail.
    pub fn open(dir: impl Into<PathBuf>) -> Result<(Spool, Vec<SegmentInfo>), SpoolError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir, "create directory"))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path, "open lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(SpoolError::Locked { path: lock_path }),
            Err(TryLockError::Error(source)) => {
                return Err(SpoolError::Io {
                    path: lock_path,
                    op: "lock",
                    source,
                });
            }
        }
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir, "read directory"))? {
            let entry = entry.map_err(io_err(&dir, "read directory"))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            ids.push(id);
        }
        ids.sort_unstable();
        let mut recovered = Vec::new();
        for &id in &ids {
            if let Some(info) = Self::recover_segment(&dir, id)? {
                recovered.push(info);
            }
        }
        sync_dir(&dir)?;
        let next_id = ids.last().map_or(0, |last| last + 1);
        Ok((
            Spool {
                dir,
                next_id,
                open: Vec::new(),
                failed: None,
                _lock: lock,
            },
            recovered,
        ))
    }

    fn recover_segment(dir: &Path, id: u64) -> Result<Option<SegmentInfo>, SpoolError> {
        let path = segment_path(dir, id);
        let scanned = scan_segment(&path, false, true)?;
        let (Some(header), Some(first), Some(last)) = (scanned.header, scanned.first, scanned.last)
        else {
            tracing::warn!(
                path = %path.display(),
                bytes = scanned.total,
                "spool segment without a header or without chunks (no acknowledged chunk); deleting"
            );
            fs::remove_file(&path).map_err(io_err(&path, "delete segment"))?;
            return Ok(None);
        };
        let cut_bytes = scanned.total - scanned.valid_end;
        if cut_bytes > 0 {
            tracing::warn!(path = %path.display(), cut_bytes, "cutting a torn tail record from a spool segment");
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path, "open segment for truncation"))?;
            file.set_len(scanned.valid_end)
                .and_then(|()| file.sync_all())
                .map_err(io_err(&path, "truncate segment"))?;
        }
        Ok(Some(SegmentInfo {
            id,
            header,
            chunks: scanned.chunk_count,
            pcm_bytes: scanned.pcm_bytes,
            first,
            last,
            cut_bytes,
        }))
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_usable(&self) -> Result<(), SpoolError> {
        match &self.failed {
            Some(path) => Err(SpoolError::Failed { path: path.clone() }),
            None => Ok(()),
        }
    }

    /// Starts a new segment for one batch; durable (file and directory entry fsync'd) when it
    /// returns.
    pub fn begin_segment(&mut self, header: &SegmentHeader) -> Result<u64, SpoolError> {
        self.check_usable()?;
        let payload = encode_header(header)?;
        let id = self.next_id;
        self.next_id += 1;
        let path = segment_path(&self.dir, id);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path, "create segment"))?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + RECORD_HEADER + payload.len());
        bytes.extend_from_slice(MAGIC);
        push_record(&mut bytes, &payload);
        let written = file
            .write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(io_err(&path, "write segment header"));
        if let Err(error) = written {
            // A segment without a complete header holds nothing; recovery would delete it too.
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(error);
        }
        sync_dir(&self.dir)?;
        self.open.push(OpenSegment {
            id,
            file,
            len: bytes.len() as u64,
            last: None,
        });
        Ok(id)
    }

    /// Appends one chunk to an open segment and fsyncs it: when this returns `Ok`, the chunk
    /// survives a crash. When it returns an error, the segment is as it was before the call
    /// (the partial record is cut), or — if even that failed — the spool is
    /// [`SpoolError::Failed`] and refuses further writes until it is reopened.
    pub fn append(
        &mut self,
        segment: u64,
        timestamp: Timestamp,
        pcm: &[u8],
    ) -> Result<(), SpoolError> {
        self.check_usable()?;
        let len = CHUNK_PREFIX + pcm.len();
        if len > MAX_RECORD {
            return Err(SpoolError::TooLarge {
                len,
                max: MAX_RECORD,
            });
        }
        let path = segment_path(&self.dir, segment);
        let open = self
            .open
            .iter_mut()
            .find(|s| s.id == segment)
            .ok_or(SpoolError::NotOpen(segment))?;
        if let Some(previous) = open.last
            && timestamp <= previous
        {
            return Err(SpoolError::OutOfOrder {
                segment,
                timestamp,
                previous,
            });
        }
        let mut record = Vec::with_capacity(RECORD_HEADER + len);
        let mut payload = Vec::with_capacity(len);
        payload.push(KIND_CHUNK);
        payload.extend_from_slice(&timestamp.as_millis().to_le_bytes());
        payload.extend_from_slice(pcm);
        push_record(&mut record, &payload);
        match open
            .file
            .write_all(&record)
            .and_then(|()| open.file.sync_data())
        {
            Ok(()) => {
                open.len += record.len() as u64;
                open.last = Some(timestamp);
                Ok(())
            }
            Err(source) => {
                // Undo the partial record so the segment stays a clean prefix of acknowledged
                // chunks; if that fails too, stop writing altogether.
                let undone = open
                    .file
                    .set_len(open.len)
                    .and_then(|()| open.file.sync_data());
                if let Err(undo) = undone {
                    tracing::error!(path = %path.display(), %undo, "could not cut a failed spool append; the spool stops accepting writes");
                    self.failed = Some(path.clone());
                }
                Err(SpoolError::Io {
                    path,
                    op: "append chunk",
                    source,
                })
            }
        }
    }

    /// Stops appending to a segment (it is about to be uploaded); its file stays until
    /// [`Spool::remove`].
    pub fn seal(&mut self, segment: u64) {
        self.open.retain(|s| s.id != segment);
    }

    /// Reads a segment's chunks back, in append order. Any damage is [`SpoolError::Corrupt`]
    /// (segments are recovered by [`Spool::open`] and appended only by this spool).
    pub fn read_segment(&self, segment: u64) -> Result<Vec<SpooledChunk>, SpoolError> {
        let path = segment_path(&self.dir, segment);
        let scanned = scan_segment(&path, true, false)?;
        if scanned.header.is_none() {
            return Err(SpoolError::Corrupt {
                path,
                offset: MAGIC.len() as u64,
                reason: "segment without a header".to_owned(),
            });
        }
        Ok(scanned.chunks)
    }

    /// Deletes a segment after its batch was confirmed by the object store; durable on return.
    pub fn remove(&mut self, segment: u64) -> Result<(), SpoolError> {
        self.seal(segment);
        let path = segment_path(&self.dir, segment);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, "delete segment")(e)),
        }
        sync_dir(&self.dir)
    }

    /// Bytes currently on disk in segment files (for metrics).
    pub fn disk_bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".seg")))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

fn push_record(out: &mut Vec<u8>, payload: &[u8]) {
    // Payloads are bounded by MAX_RECORD (< 4 GiB), so the length fits in u32.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod damage {
    //! Recovery is total: any truncation or flipped byte of a segment file either recovers a
    //! prefix of what was appended, or is a typed error — never other chunks, never a panic.

    use proptest::prelude::*;

    use super::*;

    fn damaged_segment(
        chunks: &[Vec<u8>],
        damage: (bool, usize, u8),
    ) -> (tempfile::TempDir, u64, usize) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut spool, _) = Spool::open(dir.path()).expect("open");
        let header = SegmentHeader {
            uid: UserId::new("u").expect("uid"),
            conversation: ConversationId::new("c").expect("conv"),
            level: None,
        };
        let seg = spool.begin_segment(&header).expect("segment");
        for (i, pcm) in chunks.iter().enumerate() {
            let ts = Timestamp::from_millis(i as u64 * 1_000).expect("ts");
            spool.append(seg, ts, pcm).expect("append");
        }
        drop(spool);
        let path = segment_path(dir.path(), seg);
        let mut bytes = fs::read(&path).expect("read");
        let (truncate, at, bits) = damage;
        let at = at % bytes.len();
        if truncate {
            bytes.truncate(at);
        } else {
            bytes[at] ^= bits.max(1);
        }
        fs::write(&path, &bytes).expect("write");
        (dir, seg, at)
    }

    proptest! {
        #[test]
        fn prop_damaged_segments_recover_a_prefix_or_fail_typed(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 1..8),
            damage in (any::<bool>(), any::<usize>(), any::<u8>()),
        ) {
            let (dir, seg, _) = damaged_segment(&chunks, damage);
            match Spool::open(dir.path()) {
                Ok((spool, found)) => {
                    if let Some(info) = found.iter().find(|i| i.id == seg) {
                        let back = spool.read_segment(seg).expect("recovered segment reads");
                        prop_assert_eq!(back.len(), info.chunks);
                        prop_assert!(back.len() <= chunks.len());
                        for (i, chunk) in back.iter().enumerate() {
                            prop_assert_eq!(&chunk.pcm, &chunks[i]);
                            prop_assert_eq!(chunk.timestamp.as_millis(), i as u64 * 1_000);
                        }
                    }
                }
                Err(SpoolError::Corrupt { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            uid: UserId::new("u1").unwrap(),
            conversation: ConversationId::new("c1").unwrap(),
            level: Some(ProtectionLevel::Enhanced),
        }
    }

    fn ts(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    #[test]
    fn append_reopen_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, found) = Spool::open(dir.path()).unwrap();
        assert!(found.is_empty());
        let seg = spool.begin_segment(&header()).unwrap();
        spool.append(seg, ts(1_000), &[1, 2, 3, 4]).unwrap();
        spool.append(seg, ts(6_000), &[5, 6]).unwrap();
        drop(spool);

        let (spool, found) = Spool::open(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        let info = &found[0];
        assert_eq!(info.header, header());
        assert_eq!((info.chunks, info.pcm_bytes, info.cut_bytes), (2, 6, 0));
        assert_eq!((info.first, info.last), (ts(1_000), ts(6_000)));
        let chunks = spool.read_segment(info.id).unwrap();
        assert_eq!(chunks[0].timestamp, ts(1_000));
        assert_eq!(chunks[0].pcm, [1, 2, 3, 4]);
        assert_eq!(chunks[1].pcm, [5, 6]);

        let mut spool = spool;
        spool.remove(found[0].id).unwrap();
        drop(spool);
        let (_, found) = Spool::open(dir.path()).unwrap();
        assert!(found.is_empty());
    }

    #[test]
    fn a_second_spool_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path()).unwrap();
        assert!(matches!(
            Spool::open(dir.path()),
            Err(SpoolError::Locked { .. })
        ));
        drop(spool);
        assert!(Spool::open(dir.path()).is_ok());
    }

    #[test]
    fn every_torn_tail_is_cut_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let seg = spool.begin_segment(&header()).unwrap();
        spool.append(seg, ts(1_000), &[9; 100]).unwrap();
        spool.append(seg, ts(2_000), &[8; 100]).unwrap();
        drop(spool);
        let path = segment_path(dir.path(), seg);
        let full = fs::read(&path).unwrap();
        // Every possible tear inside the second record recovers exactly the first chunk.
        let second_start = full.len() - (RECORD_OVERHEAD + 100);
        for cut in second_start..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let (spool, found) = Spool::open(dir.path()).unwrap();
            assert_eq!(found[0].chunks, 1, "cut at {cut}");
            assert_eq!(found[0].cut_bytes, (cut - second_start) as u64);
            assert_eq!(fs::metadata(&path).unwrap().len(), second_start as u64);
            let chunks = spool.read_segment(seg).unwrap();
            assert_eq!(chunks.len(), 1);
            assert_eq!(chunks[0].pcm, vec![9; 100]);
        }
    }

    #[test]
    fn a_flipped_bit_in_the_last_record_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let seg = spool.begin_segment(&header()).unwrap();
        spool.append(seg, ts(1_000), &[9; 100]).unwrap();
        spool.append(seg, ts(2_000), &[8; 100]).unwrap();
        drop(spool);
        let path = segment_path(dir.path(), seg);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let (_, found) = Spool::open(dir.path()).unwrap();
        assert_eq!((found[0].chunks, found[0].last), (1, ts(1_000)));
    }

    #[test]
    fn a_zero_filled_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let seg = spool.begin_segment(&header()).unwrap();
        spool.append(seg, ts(1_000), &[7; 10]).unwrap();
        drop(spool);
        let path = segment_path(dir.path(), seg);
        let mut bytes = fs::read(&path).unwrap();
        let good = bytes.len();
        bytes.extend_from_slice(&[0; 4096]);
        fs::write(&path, &bytes).unwrap();
        let (_, found) = Spool::open(dir.path()).unwrap();
        assert_eq!((found[0].chunks, found[0].cut_bytes), (1, 4096));
        assert_eq!(fs::metadata(&path).unwrap().len(), good as u64);
    }

    #[test]
    fn damage_before_the_end_is_corruption_and_nothing_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let seg = spool.begin_segment(&header()).unwrap();
        spool.append(seg, ts(1_000), &[9; 100]).unwrap();
        spool.append(seg, ts(2_000), &[8; 100]).unwrap();
        drop(spool);
        let path = segment_path(dir.path(), seg);
        let mut bytes = fs::read(&path).unwrap();
        // A bit flip in the first chunk's PCM: acknowledged data follows it.
        let first_pcm = bytes.len() - 2 * (RECORD_OVERHEAD + 100) + RECORD_OVERHEAD;
        bytes[first_pcm] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let error = Spool::open(dir.path()).unwrap_err();
        assert!(
            matches!(&error, SpoolError::Corrupt { offset, .. } if *offset == (first_pcm - RECORD_OVERHEAD) as u64),
            "{error}"
        );
        assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was cut");
    }

    #[test]
    fn segments_without_header_or_chunks_are_deleted_and_ids_continue() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 7), b"CVSPOOL1\x05\x00").unwrap();
        fs::write(segment_path(dir.path(), 8), b"CVSP").unwrap();
        fs::write(segment_path(dir.path(), 6), [0u8; 300]).unwrap();
        {
            let (mut spool, _) = Spool::open(dir.path()).unwrap();
            assert_eq!(spool.begin_segment(&header()).unwrap(), 9);
        }
        let (mut spool, found) = Spool::open(dir.path()).unwrap();
        assert!(found.is_empty());
        for id in [6, 7, 8, 9] {
            assert!(!segment_path(dir.path(), id).exists(), "segment {id}");
        }
        assert_eq!(spool.begin_segment(&header()).unwrap(), 10);
    }

    #[test]
    fn appends_must_increase_and_sealed_segments_refuse_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let seg = spool.begin_segment(&header()).unwrap();
        spool.append(seg, ts(5), &[0, 0]).unwrap();
        assert!(matches!(
            spool.append(seg, ts(5), &[0, 0]),
            Err(SpoolError::OutOfOrder { .. })
        ));
        spool.seal(seg);
        assert!(matches!(
            spool.append(seg, ts(10), &[0, 0]),
            Err(SpoolError::NotOpen(_))
        ));
        assert_eq!(spool.read_segment(seg).unwrap().len(), 1);
    }

    #[test]
    fn an_oversized_chunk_is_refused_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let seg = spool.begin_segment(&header()).unwrap();
        let before = fs::metadata(segment_path(dir.path(), seg)).unwrap().len();
        let big = vec![0u8; MAX_RECORD];
        assert!(matches!(
            spool.append(seg, ts(1), &big),
            Err(SpoolError::TooLarge { .. })
        ));
        assert_eq!(
            fs::metadata(segment_path(dir.path(), seg)).unwrap().len(),
            before
        );
    }
}
