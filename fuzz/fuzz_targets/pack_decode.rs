//! Pack container reader: tails and frames of random bytes never panic, never over-allocate
//! (libFuzzer's malloc limit catches that), and whatever parses is consistent. No frame decodes
//! to more than its entry claims, and no entry claims more than `MAX_CHUNK_BYTES`.
//!
//! The first byte selects the mode:
//! - even: the rest is an object. It is read whole (`PackIndex::from_object`) and as a tail of
//!   a longer object (`PackTail::parse`), with an opener that accepts any sealed segment (so
//!   the fuzzer reaches the index and frame checks of sealed packs without forging tags); every
//!   frame of a parsed index is decoded.
//! - odd: the rest describes chunks; a *valid* pack is encoded from them (codec and sealing
//!   chosen by the byte), must round-trip exactly, and is then damaged at positions the input
//!   picks; the damaged pack must fail or give back exactly the original audio when sealed.
#![no_main]

use chunk_format::Timestamp;
use chunk_format::pack::{
    Codec, KeyScheme, MAX_CHUNK_BYTES, PackConfig, PackEncoder, PackError, PackIndex, PackTail,
    SealError, SealInfo, SegmentOpener, SegmentSealer, TRAILER_LEN,
};
use libfuzzer_sys::fuzz_target;

const TAG: usize = 16;

/// Accepts every sealed segment: strips the 16-byte "tag".
struct AnyOpener;

impl SegmentOpener for AnyOpener {
    fn overhead(&self) -> usize {
        TAG
    }
    fn open(&self, _: u32, _: &[u8], sealed: &[u8], _: bool) -> Result<Vec<u8>, SealError> {
        sealed
            .len()
            .checked_sub(TAG)
            .map(|n| sealed[..n].to_vec())
            .ok_or_else(|| SealError::new("shorter than the tag"))
    }
}

/// A keyed checksum standing in for an AEAD: binds counter, last flag, AAD and plaintext.
#[derive(Clone, Copy)]
struct Checked;

fn tag(counter: u32, aad: &[u8], plaintext: &[u8], last: bool) -> [u8; TAG] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&counter.to_le_bytes());
    eat(&[u8::from(last)]);
    eat(&(aad.len() as u64).to_le_bytes());
    eat(aad);
    eat(plaintext);
    let mut out = [0u8; TAG];
    out[..8].copy_from_slice(&h.to_le_bytes());
    out[8..].copy_from_slice(&h.rotate_left(29).to_le_bytes());
    out
}

impl SegmentSealer for Checked {
    fn seal_info(&self) -> SealInfo {
        SealInfo {
            scheme: KeyScheme::V2,
            key_id: 1,
            salt: [7; 16],
            nonce_prefix: [9; 7],
        }
    }
    fn overhead(&self) -> usize {
        TAG
    }
    fn seal(
        &mut self,
        counter: u32,
        aad: &[u8],
        pt: &[u8],
        last: bool,
    ) -> Result<Vec<u8>, SealError> {
        let mut out = pt.to_vec();
        out.extend_from_slice(&tag(counter, aad, pt, last));
        Ok(out)
    }
}

impl SegmentOpener for Checked {
    fn overhead(&self) -> usize {
        TAG
    }
    fn open(
        &self,
        counter: u32,
        aad: &[u8],
        sealed: &[u8],
        last: bool,
    ) -> Result<Vec<u8>, SealError> {
        let n = sealed
            .len()
            .checked_sub(TAG)
            .ok_or_else(|| SealError::new("short"))?;
        let (pt, t) = sealed.split_at(n);
        if t != tag(counter, aad, pt, last) {
            return Err(SealError::new("bad tag"));
        }
        Ok(pt.to_vec())
    }
}

/// Checks a parsed index against the object length and decodes every frame `object` holds.
fn check_index(
    index: &PackIndex,
    object_len: u64,
    object: Option<&[u8]>,
    opener: Option<&dyn SegmentOpener>,
) {
    assert!(!index.is_empty());
    assert_eq!(index.object_len(), object_len);
    assert_eq!(index.index_range().end, object_len - TRAILER_LEN as u64);
    let mut next = 48;
    for (i, entry) in index.entries().iter().enumerate() {
        let range = index.frame_range(i).expect("entry");
        assert_eq!(range.start, next, "frames not contiguous");
        next = range.end;
        assert!(entry.sample_count > 0);
        assert!(index.chunk_end(entry) > entry.start);
        if let Some(object) = object {
            let frame = index
                .frame_bytes(i, object)
                .expect("frames lie inside the object");
            // Decoded size: never more than the entry claims, and no claim above the
            // format's per-chunk limit (what readers check against their own budgets before
            // decoding), whatever the frame's compression ratio.
            assert!(
                entry.plain_len <= MAX_CHUNK_BYTES,
                "chunk {i} claims {}",
                entry.plain_len
            );
            if let Ok(pcm) = index.decode_frame(i, frame, opener) {
                assert_eq!(pcm.len(), entry.plain_len as usize);
            }
            // Opening without decoding (what frame copies use) also runs on Opus packs.
            if let Ok(payload) = index.open_frame(i, frame, opener) {
                assert!(payload.len() <= entry.stored_len as usize);
                if opener.is_none() {
                    assert_eq!(payload.as_ref(), frame);
                }
            }
        }
    }
    assert_eq!(next, index.index_range().start);
    assert!(index.end() > index.start());
}

fn raw(selector: u8, object: &[u8]) {
    let sealed = PackTail::new(object, object.len() as u64)
        .map(|t| t.header().is_encrypted())
        .unwrap_or(selector & 2 != 0);
    let opener = sealed.then_some(&AnyOpener as &dyn SegmentOpener);
    if let Ok(index) = PackIndex::from_object(object, opener) {
        check_index(&index, object.len() as u64, Some(object), opener);
    }
    // The same bytes as the tail of a longer object.
    let extra = u64::from(selector >> 2) * 977;
    let object_len = object.len() as u64 + extra;
    match PackTail::parse(object, object_len, opener) {
        Ok(index) => check_index(&index, object_len, None, opener),
        Err(PackError::NeedMore { from_offset }) => {
            assert!(
                from_offset < object_len - object.len() as u64,
                "NeedMore inside the tail"
            );
        }
        Err(_) => {}
    }
}

fn structured(selector: u8, data: &[u8]) {
    let codec = if selector & 2 == 0 {
        Codec::Pcm16Le
    } else {
        Codec::ZstdPcm16Le
    };
    let sealed = selector & 4 != 0;
    let (specs, edits) = data.split_at(data.len().min(24));
    let mut chunks = Vec::new();
    let mut start = 1_786_961_845_727u64;
    for spec in specs.chunks_exact(3) {
        let samples = usize::from(spec[0]) + 1;
        let pcm: Vec<u8> = (0..samples * 2)
            .map(|i| spec[1].wrapping_mul(i as u8) ^ spec[2])
            .collect();
        chunks.push((start, pcm));
        start += (samples as u64 * 1000).div_ceil(16_000) + u64::from(spec[2]);
    }
    if chunks.is_empty() {
        return;
    }
    let sealer = sealed.then(|| Box::new(Checked) as Box<dyn SegmentSealer>);
    let mut enc = PackEncoder::new(PackConfig::new(codec, 16_000, 1), sealer).expect("config");
    let mut object = Vec::new();
    for (start, pcm) in &chunks {
        let ts = Timestamp::from_millis(*start).expect("ts");
        object.extend(enc.push_chunk(ts, pcm).expect("valid chunk"));
    }
    object.extend(enc.finish().expect("finish"));
    let opener = sealed.then_some(&Checked as &dyn SegmentOpener);
    let decode = |object: &[u8]| -> Option<Vec<Option<Vec<u8>>>> {
        let index = PackIndex::from_object(object, opener).ok()?;
        check_index(&index, object.len() as u64, Some(object), opener);
        Some(
            (0..index.len())
                .map(|i| {
                    let frame = index.frame_bytes(i, object).ok()?;
                    index.decode_frame(i, frame, opener).ok()
                })
                .collect(),
        )
    };
    let clean: Vec<Option<Vec<u8>>> = chunks.iter().map(|(_, pcm)| Some(pcm.clone())).collect();
    assert_eq!(
        decode(&object).as_ref(),
        Some(&clean),
        "valid pack did not round-trip"
    );
    if edits.len() < 3 {
        return;
    }
    for edit in edits.chunks_exact(3) {
        let pos = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % object.len();
        object[pos] ^= edit[2].max(1);
    }
    if let Some(frames) = decode(&object) {
        for (got, want) in frames.iter().zip(&clean) {
            if let (Some(got), Some(want)) = (got, want) {
                // Plaintext: the CRC-32C of the PCM; sealed: the binding tag.
                assert_eq!(got, want, "damaged pack decoded to other audio");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        raw(selector, rest);
    } else {
        structured(selector, rest);
    }
});
