//! The record framing both spool formats share, and the reader that tells a torn tail from
//! corruption.
//!
//! ```text
//! record := len: u32 | crc32c(payload): u32 | payload[len]
//! ```

use std::io::{self, Read};

use chunk_format::Timestamp;
use chunk_store::{ConversationId, UserId};

use super::BatchHeader;
use crate::level::ProtectionLevel;

/// Bytes before a record's payload (length and checksum).
pub(super) const RECORD_HEADER: usize = 8;
/// Largest record payload accepted (a 10-minute 48 kHz chunk is 57.6 MB).
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

/// Frames `prefix ‖ body` as one record.
pub(super) fn frame(out: &mut Vec<u8>, prefix: &[u8], body: &[u8]) {
    frame_head(out, prefix, body);
    out.extend_from_slice(body);
}

/// Writes the start of the record `prefix ‖ body` (length, checksum, prefix): the record is
/// complete once `body` follows it, so a large body is written from where it is.
pub(super) fn frame_head(out: &mut Vec<u8>, prefix: &[u8], body: &[u8]) {
    let len = prefix.len() + body.len();
    // Payloads are bounded by MAX_RECORD (< 4 GiB), so the length fits in u32.
    out.reserve(RECORD_HEADER + prefix.len());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(prefix), body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(prefix);
}

/// Checks one framed record read back whole (`bytes` is exactly `RECORD_HEADER + len`) and
/// returns its payload.
pub(super) fn unframe(bytes: &[u8]) -> Option<&[u8]> {
    let head = bytes.get(..RECORD_HEADER)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let payload = bytes.get(RECORD_HEADER..)?;
    (payload.len() == len && crc32c::crc32c(payload) == crc).then_some(payload)
}

pub(super) fn level_code(level: Option<ProtectionLevel>) -> u8 {
    match level {
        None => 0,
        Some(ProtectionLevel::Standard) => 1,
        Some(ProtectionLevel::Enhanced) => 2,
        Some(ProtectionLevel::E2ee) => 3,
    }
}

pub(super) fn level_from_code(code: u8) -> Option<Option<ProtectionLevel>> {
    match code {
        0 => Some(None),
        1 => Some(Some(ProtectionLevel::Standard)),
        2 => Some(Some(ProtectionLevel::Enhanced)),
        3 => Some(Some(ProtectionLevel::E2ee)),
        _ => None,
    }
}

/// `version u8 (=1) | level u8 | uid_len u16 | uid | conv_len u16 | conv`, or `None` if an id
/// is longer than a u16 can count.
pub(super) fn encode_header(out: &mut Vec<u8>, header: &BatchHeader) -> Option<()> {
    let uid = header.uid.as_str().as_bytes();
    let conv = header.conversation.as_str().as_bytes();
    let uid_len = u16::try_from(uid.len()).ok()?;
    let conv_len = u16::try_from(conv.len()).ok()?;
    out.push(1);
    out.push(level_code(header.level));
    out.extend_from_slice(&uid_len.to_le_bytes());
    out.extend_from_slice(uid);
    out.extend_from_slice(&conv_len.to_le_bytes());
    out.extend_from_slice(conv);
    Some(())
}

/// The inverse of [`encode_header`]; the header must fill `bytes` exactly.
pub(super) fn decode_header(bytes: &[u8]) -> Option<BatchHeader> {
    let (&version, rest) = bytes.split_first()?;
    let (&level, rest) = rest.split_first()?;
    if version != 1 {
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
    Some(BatchHeader {
        uid: UserId::new(uid).ok()?,
        conversation: ConversationId::new(conv).ok()?,
        level,
    })
}

/// Reads a little-endian u64 at the start of `bytes`.
pub(super) fn u64_at(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// A timestamp in milliseconds at the start of `bytes`.
pub(super) fn timestamp_at(bytes: &[u8]) -> Option<Timestamp> {
    Timestamp::from_millis(u64_at(bytes)?)
}

/// What the next record of a file is.
pub(super) enum Next {
    /// A record whose checksum holds.
    Record(Vec<u8>),
    /// A clean end of file.
    End,
    /// A torn tail starting at the record's offset: cut it.
    Torn,
    /// A bad record with data after it.
    Corrupt(&'static str),
}

/// Reads the records of one spool file, knowing the file's length so that it can tell a torn
/// tail from corruption without allocating more than one record.
pub(super) struct RecordReader<R> {
    reader: R,
    pub(super) pos: u64,
    total: u64,
}

impl<R: Read> RecordReader<R> {
    pub(super) fn new(reader: R, total: u64) -> RecordReader<R> {
        RecordReader {
            reader,
            pos: 0,
            total,
        }
    }

    fn remaining(&self) -> u64 {
        self.total.saturating_sub(self.pos)
    }

    /// Reads exactly `buf.len()` bytes (the caller checked they exist).
    pub(super) fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Whether every byte from the current position to the end is zero (a zero-filled tail
    /// left by a crash that extended the file before its data reached the disk).
    pub(super) fn rest_is_zero(&mut self) -> io::Result<bool> {
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

    /// Reads the next record.
    pub(super) fn next(&mut self) -> io::Result<Next> {
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
                Next::Corrupt("checksum mismatch before the end of the file")
            });
        }
        Ok(Next::Record(payload))
    }
}
