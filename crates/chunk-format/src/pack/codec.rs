//! Frame payload codecs: zstd compression and its bounded decompression.

use zstd::zstd_safe;

/// The magic number that starts a standard zstd frame (`28 b5 2f fd`).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A reusable zstd compressor at a fixed level, writing frames with their content size.
pub(super) struct Compressor {
    inner: zstd::bulk::Compressor<'static>,
}

impl Compressor {
    /// A compressor at `level` (validated by the caller against zstd's range).
    pub(super) fn new(level: i32) -> Result<Compressor, String> {
        let mut inner = zstd::bulk::Compressor::new(level).map_err(|e| e.to_string())?;
        // Content size is what the reader checks against the index; checksums are the
        // pack's job (crc32c or AEAD), so zstd's own is off.
        inner
            .include_contentsize(true)
            .and_then(|()| inner.include_checksum(false))
            .map_err(|e| e.to_string())?;
        Ok(Compressor { inner })
    }

    /// One zstd frame holding `pcm`.
    pub(super) fn compress(&mut self, pcm: &[u8]) -> Result<Vec<u8>, String> {
        self.inner.compress(pcm).map_err(|e| e.to_string())
    }
}

/// Decodes one zstd frame that must decode to exactly `plain_len` bytes.
///
/// Refuses anything but exactly one standard zstd frame (no skippable or legacy frames, no
/// trailing bytes) whose header declares a content size of `plain_len`. The output buffer is
/// exactly `plain_len` bytes (which the caller bounds before calling); a frame that would
/// decode to more or less is an error.
pub(super) fn decompress_exact(frame: &[u8], plain_len: u32) -> Result<Vec<u8>, String> {
    if frame.get(..4) != Some(&ZSTD_MAGIC[..]) {
        return Err("does not start with the zstd frame magic 28 b5 2f fd".to_owned());
    }
    match zstd_safe::find_frame_compressed_size(frame) {
        Ok(len) if len == frame.len() => {}
        Ok(len) => {
            return Err(format!(
                "the zstd frame is {len} bytes but the pack frame is {}",
                frame.len()
            ));
        }
        Err(code) => {
            return Err(format!(
                "malformed frame: {}",
                zstd_safe::get_error_name(code)
            ));
        }
    }
    match zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size == u64::from(plain_len) => {}
        Ok(Some(size)) => {
            return Err(format!(
                "declares {size} decoded bytes, the index records {plain_len}"
            ));
        }
        Ok(None) => return Err("the zstd frame does not declare its content size".to_owned()),
        Err(_) => return Err("unreadable zstd frame header".to_owned()),
    }
    let limit = usize::try_from(plain_len).map_err(|_| "length overflows usize".to_owned())?;
    // One frame of exactly this size declaring exactly `plain_len`: decoded in one call into a
    // buffer of exactly that size (zstd refuses output that does not fit, and checks the
    // declared size), with this thread's reused context.
    let mut out = Vec::with_capacity(limit);
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match &mut *slot {
            Some(decompressor) => decompressor,
            empty => empty.insert(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?),
        };
        decompressor
            .decompress_to_buffer(frame, &mut out)
            .map_err(|e| e.to_string())
    })?;
    if out.len() != limit {
        return Err(format!(
            "decodes to {} bytes, the index records {plain_len}",
            out.len()
        ));
    }
    Ok(out)
}

thread_local! {
    /// A zstd decompression context per thread: creating one per frame (about 100 KiB of
    /// state, allocated and cleared) cost more than decoding a 5 s chunk's frame.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let pcm: Vec<u8> = (0..4000u32).map(|i| (i % 7) as u8).collect();
        let mut c = Compressor::new(3).unwrap();
        let frame = c.compress(&pcm).unwrap();
        assert_eq!(decompress_exact(&frame, 4000).unwrap(), pcm);
        // Wrong declared length, trailing bytes, truncation and a non-zstd frame all fail.
        assert!(
            decompress_exact(&frame, 3999)
                .unwrap_err()
                .contains("declares 4000")
        );
        let mut long = frame.clone();
        long.push(0);
        assert!(decompress_exact(&long, 4000).is_err());
        assert!(decompress_exact(&frame[..frame.len() - 1], 4000).is_err());
        assert!(decompress_exact(&pcm, 4000).unwrap_err().contains("magic"));
        assert!(decompress_exact(&[], 0).is_err());
    }
}
