//! Spool format 1, read only: one segment file per batch, written by chunkvault before the
//! group-commit log. [`super::Spool::open`] moves what such files hold into the log, so a node
//! upgraded with a non-empty spool loses nothing.
//!
//! ```text
//! file    := magic "CVSPOOL1" record*
//! payload := 0x01 header | 0x02 chunk
//! header  := version u8 (=1) | level u8 | uid_len u16 | uid | conv_len u16 | conv
//! chunk   := timestamp_ms u64 | pcm bytes (rest of the payload)
//! ```
//!
//! The first record is the header; timestamps increase strictly. A torn tail is dropped (it
//! held no acknowledged chunk), a file without header or chunks held nothing, and any other
//! damage is [`SpoolError::Corrupt`].

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::record::{Next, RecordReader, decode_header, timestamp_at};
use super::{BatchHeader, SpoolError, SpooledChunk, io_err};

const MAGIC: &[u8; 8] = b"CVSPOOL1";
const KIND_HEADER: u8 = 1;
const KIND_CHUNK: u8 = 2;
/// The file name suffix of format-1 segments.
pub(super) const SUFFIX: &str = ".seg";

/// What a format-1 segment held.
pub(super) struct LegacySegment {
    pub(super) header: BatchHeader,
    pub(super) chunks: Vec<SpooledChunk>,
    pub(super) cut_bytes: u64,
}

/// The format-1 segment files of `dir`, oldest first.
pub(super) fn find(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir, "read directory"))? {
        let entry = entry.map_err(io_err(dir, "read directory"))?;
        let name = entry.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push((id, entry.path()));
        }
    }
    found.sort_unstable();
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

/// Reads one format-1 segment; `None` if it held no acknowledged chunk.
pub(super) fn read(path: &Path) -> Result<Option<LegacySegment>, SpoolError> {
    let file = File::open(path).map_err(io_err(path, "open segment"))?;
    let total = file.metadata().map_err(io_err(path, "stat segment"))?.len();
    let mut reader = RecordReader::new(BufReader::new(file), total);
    let corrupt = |offset: u64, reason: &str| SpoolError::Corrupt {
        path: path.to_owned(),
        offset,
        reason: reason.to_owned(),
    };
    if total < MAGIC.len() as u64 {
        return Ok(None);
    }
    let mut magic = [0u8; 8];
    reader
        .fill(&mut magic)
        .map_err(io_err(path, "read segment"))?;
    if &magic != MAGIC {
        if magic == [0; 8]
            && reader
                .rest_is_zero()
                .map_err(io_err(path, "read segment"))?
        {
            return Ok(None);
        }
        return Err(corrupt(0, "bad magic"));
    }
    let mut header = None;
    let mut chunks: Vec<SpooledChunk> = Vec::new();
    let mut valid_end = reader.pos;
    loop {
        let offset = reader.pos;
        match reader.next().map_err(io_err(path, "read segment"))? {
            Next::End | Next::Torn => break,
            Next::Corrupt(reason) => return Err(corrupt(offset, reason)),
            Next::Record(payload) => {
                let (&kind, rest) = payload
                    .split_first()
                    .ok_or_else(|| corrupt(offset, "empty record"))?;
                match (&header, kind) {
                    (None, KIND_HEADER) => {
                        header = Some(
                            decode_header(rest)
                                .ok_or_else(|| corrupt(offset, "bad header record"))?,
                        );
                    }
                    (Some(_), KIND_CHUNK) => {
                        let timestamp = timestamp_at(rest)
                            .ok_or_else(|| corrupt(offset, "bad chunk record"))?;
                        if chunks.last().is_some_and(|c| timestamp <= c.timestamp) {
                            return Err(corrupt(offset, "chunk timestamps do not increase"));
                        }
                        chunks.push(SpooledChunk {
                            timestamp,
                            pcm: rest[8..].to_vec(),
                        });
                    }
                    _ => return Err(corrupt(offset, "unexpected record kind")),
                }
                valid_end = reader.pos;
            }
        }
    }
    Ok(match header {
        Some(header) if !chunks.is_empty() => Some(LegacySegment {
            header,
            chunks,
            cut_bytes: total - valid_end,
        }),
        _ => None,
    })
}

#[cfg(test)]
pub(super) mod write {
    //! Writes format-1 segments, for tests of the migration.

    use super::super::record::{encode_header, frame};
    use super::*;

    /// Bytes of a format-1 segment holding `chunks` of `header`.
    pub(in crate::spool) fn segment(header: &BatchHeader, chunks: &[SpooledChunk]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let mut head = vec![KIND_HEADER];
        encode_header(&mut head, header).expect("short ids");
        frame(&mut out, &head, &[]);
        for chunk in chunks {
            let mut prefix = vec![KIND_CHUNK];
            prefix.extend_from_slice(&chunk.timestamp.as_millis().to_le_bytes());
            frame(&mut out, &prefix, &chunk.pcm);
        }
        out
    }
}
