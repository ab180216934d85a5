//! Unit and property tests of the pack container, with a structural (not cryptographic) fake
//! sealer. The real AES-GCM tamper tests live in tests/it/pack_sealed.rs.

use proptest::prelude::*;

use super::*;
use crate::timestamp::Timestamp;

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

/// A fake STREAM sealer: `(plaintext XOR key) || crc32c(key, counter, last, aad, plaintext)`.
/// It binds position, last flag, associated data and content like an AEAD does (a CRC detects
/// every single-byte change), so the container's structure can be tested without crypto.
#[derive(Debug, Clone)]
struct Fake {
    info: SealInfo,
    next: u32,
    finished: bool,
}

const FAKE_OVERHEAD: usize = 4;

impl Fake {
    fn new(key: u8) -> Fake {
        Fake {
            info: SealInfo {
                scheme: KeyScheme::V2,
                key_id: 7,
                salt: [key; SALT_LEN],
                nonce_prefix: [key ^ 0xff; NONCE_PREFIX_LEN],
            },
            next: 0,
            finished: false,
        }
    }

    fn tag(&self, counter: u32, aad: &[u8], plaintext: &[u8], last: bool) -> u32 {
        let mut crc = crc32c::crc32c(&self.info.salt);
        crc = crc32c::crc32c_append(crc, &self.info.nonce_prefix);
        crc = crc32c::crc32c_append(crc, &counter.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &[u8::from(last)]);
        crc = crc32c::crc32c_append(crc, &(aad.len() as u32).to_le_bytes());
        crc = crc32c::crc32c_append(crc, aad);
        crc32c::crc32c_append(crc, plaintext)
    }

    fn xor(&self, bytes: &[u8]) -> Vec<u8> {
        bytes.iter().map(|b| b ^ self.info.salt[0] ^ 0x5a).collect()
    }
}

impl SegmentSealer for Fake {
    fn seal_info(&self) -> SealInfo {
        self.info
    }
    fn overhead(&self) -> usize {
        FAKE_OVERHEAD
    }
    fn seal(
        &mut self,
        counter: u32,
        aad: &[u8],
        plaintext: &[u8],
        last: bool,
    ) -> Result<Vec<u8>, SealError> {
        if self.finished || counter != self.next {
            return Err(SealError::new(format!(
                "out of order: {counter}, expected {}",
                self.next
            )));
        }
        let mut out = self.xor(plaintext);
        out.extend_from_slice(&self.tag(counter, aad, plaintext, last).to_le_bytes());
        self.next += 1;
        self.finished = last;
        Ok(out)
    }
}

impl SegmentOpener for Fake {
    fn overhead(&self) -> usize {
        FAKE_OVERHEAD
    }
    fn open(
        &self,
        counter: u32,
        aad: &[u8],
        sealed: &[u8],
        last: bool,
    ) -> Result<Vec<u8>, SealError> {
        let (body, tag) = sealed
            .split_last_chunk::<4>()
            .ok_or_else(|| SealError::new("too short"))?;
        let plaintext = self.xor(body);
        if self.tag(counter, aad, &plaintext, last) != u32::from_le_bytes(*tag) {
            return Err(SealError::new("authentication failed"));
        }
        Ok(plaintext)
    }
}

/// Encodes `chunks` into one object.
fn encode(
    config: PackConfig,
    sealer: Option<Fake>,
    chunks: &[(u64, Vec<u8>)],
) -> Result<Vec<u8>, PackError> {
    let mut enc = PackEncoder::new(
        config,
        sealer.map(|s| Box::new(s) as Box<dyn SegmentSealer>),
    )?;
    let mut object = Vec::new();
    for (start, pcm) in chunks {
        object.extend(enc.push_chunk(ts(*start), pcm)?);
        assert_eq!(enc.bytes_written(), object.len() as u64);
    }
    object.extend(enc.finish()?);
    Ok(object)
}

/// Decodes every chunk of a whole object.
fn decode(object: &[u8], opener: Option<&Fake>) -> Result<Vec<(u64, Vec<u8>)>, PackError> {
    let opener = opener.map(|o| o as &dyn SegmentOpener);
    let index = PackIndex::from_object(object, opener)?;
    (0..index.len())
        .map(|i| {
            let pcm = index.decode_frame(i, index.frame_bytes(i, object)?, opener)?;
            Ok((index.entries()[i].start.as_millis(), pcm))
        })
        .collect()
}

fn speechy(len: usize, seed: u32) -> Vec<u8> {
    (0..len / 2)
        .flat_map(|i| {
            let x = ((i as u32).wrapping_mul(2_654_435_761) ^ seed) >> 20;
            let s = (((i as f32) * 0.05).sin() * 3000.0) as i16 + (x as i16 & 0xff);
            s.to_le_bytes()
        })
        .collect()
}

const PCM: PackConfig = PackConfig::new(Codec::Pcm16Le, 16_000, 1);
const ZSTD: PackConfig = PackConfig::new(Codec::ZstdPcm16Le, 16_000, 1);

/// The worked example of docs/FORMAT.md: two 2-sample chunks, PCM16LE, plaintext.
#[test]
fn worked_example_bytes_are_fixed() {
    let object = encode(
        PCM,
        None,
        &[
            (1_700_000_000_000, vec![0x01, 0x00, 0xff, 0x7f]),
            (1_700_000_000_005, vec![0x00, 0x80, 0x02, 0x00]),
        ],
    )
    .unwrap();
    let hex: String = object.iter().map(|b| format!("{b:02x}")).collect();
    let expected = concat!(
        // header
        "4356504b",
        "01",
        "00",
        "00",
        "01",
        "803e0000",
        "3000",
        "0000",
        "00000000",
        "00000000000000000000000000000000",
        "00000000000000",
        "00",
        "a59ae500",
        // frames
        "0100ff7f",
        "00800200",
        // index
        "02000000",
        "0068e5cf8b010000",
        "02000000",
        "3000000000000000",
        "04000000",
        "04000000",
        "d5ad4a19",
        "0568e5cf8b010000",
        "02000000",
        "3400000000000000",
        "04000000",
        "04000000",
        "6a0c05e4",
        "1a5adba7",
        // trailer: header copy, index offset, index length, count, crc, magic
        "4356504b",
        "01",
        "00",
        "00",
        "01",
        "803e0000",
        "3000",
        "0000",
        "00000000",
        "00000000000000000000000000000000",
        "00000000000000",
        "00",
        "a59ae500",
        "3800000000000000",
        "48000000",
        "02000000",
        "b1ec16e8",
        "4356504b",
    );
    assert_eq!(hex, expected);
    let index = PackIndex::from_object(&object, None).unwrap();
    assert_eq!(
        index.object_name().unwrap().to_string(),
        "1700000000.000-1700000000.006.pack"
    );
}

#[test]
fn header_round_trip_and_field_errors() {
    let seal = SealInfo {
        scheme: KeyScheme::V2,
        key_id: 0x0102_0304,
        salt: [9; SALT_LEN],
        nonce_prefix: [8; NONCE_PREFIX_LEN],
    };
    let header = PackHeader::new(Codec::ZstdPcm16Le, 48_000, 2, Some(seal)).unwrap();
    let bytes = header.to_bytes();
    assert_eq!(
        PackHeader::parse(&bytes, 0, PackPart::Header).unwrap(),
        header
    );

    // Fixes the checksum after an edit, so the field check (not the CRC) is what fails.
    let edit = |off: usize, value: u8| {
        let mut b = bytes;
        b[off] = value;
        let crc = crc32c::crc32c(&b[..44]);
        b[44..].copy_from_slice(&crc.to_le_bytes());
        PackHeader::parse(&b, 100, PackPart::TrailerHeader)
    };
    assert!(matches!(
        edit(0, b'X'),
        Err(PackError::BadMagic { offset: 100, .. })
    ));
    assert_eq!(
        bytes[4], 2,
        "a pack sealed under KeyScheme::V2 is version 2"
    );
    for version in [0, 3, 0xff] {
        assert!(matches!(
            edit(4, version),
            Err(PackError::UnsupportedVersion {
                version: v,
                offset: 104,
                ..
            }) if v == version
        ));
    }
    // Version 1 is the same header with the other key scheme.
    let v1 = edit(4, 1).unwrap();
    assert_eq!(v1.seal().unwrap().scheme, KeyScheme::V1);
    assert_eq!(v1.version(), 1);
    assert_eq!(v1.to_bytes()[4], 1);
    assert!(matches!(
        edit(5, 3),
        Err(PackError::UnknownCodec {
            codec: 3,
            offset: 105,
            ..
        })
    ));
    // Opus is known, but only as 16 kHz mono: this header is 48 kHz stereo.
    assert!(matches!(
        edit(5, Codec::OPUS_RESERVED_ID),
        Err(PackError::BadHeader { offset: 107, .. })
    ));
    assert!(matches!(
        edit(6, 3),
        Err(PackError::BadHeader { offset: 106, .. })
    ));
    assert!(matches!(
        edit(7, 0),
        Err(PackError::BadHeader { offset: 107, .. })
    ));
    assert!(matches!(
        edit(11, 0xff),
        Err(PackError::BadHeader { offset: 108, .. })
    ));
    assert!(matches!(
        edit(12, 49),
        Err(PackError::BadHeader { offset: 112, .. })
    ));
    assert!(matches!(
        edit(15, 1),
        Err(PackError::BadHeader { offset: 114, .. })
    ));
    assert!(matches!(
        edit(43, 1),
        Err(PackError::BadHeader { offset: 143, .. })
    ));
    // A plaintext header with a salt byte set.
    let plain = PackHeader::new(Codec::Pcm16Le, 16_000, 1, None)
        .unwrap()
        .to_bytes();
    let mut b = plain;
    b[25] = 1;
    let crc = crc32c::crc32c(&b[..44]);
    b[44..].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        PackHeader::parse(&b, 0, PackPart::Header),
        Err(PackError::BadHeader { offset: 16, .. })
    ));
    // A plaintext header claiming version 2 (which only names a sealed key scheme).
    assert_eq!(plain[4], 1, "plaintext packs stay version 1");
    let mut b = plain;
    b[4] = 2;
    let crc = crc32c::crc32c(&b[..44]);
    b[44..].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        PackHeader::parse(&b, 0, PackPart::Header),
        Err(PackError::BadHeader { offset: 4, .. })
    ));
    // Any unrepaired byte change is a checksum error.
    let mut b = plain;
    b[9] ^= 1;
    assert!(matches!(
        PackHeader::parse(&b, 0, PackPart::Header),
        Err(PackError::Checksum {
            part: PackPart::Header,
            ..
        })
    ));
}

#[test]
fn encoder_refuses_bad_chunks_and_changes_nothing() {
    let mut enc = PackEncoder::new(PackConfig::new(Codec::Pcm16Le, 16_000, 2), None).unwrap();
    assert!(matches!(
        enc.push_chunk(ts(0), &[]),
        Err(PackError::EmptyChunk { chunk: 0 })
    ));
    assert!(matches!(
        enc.push_chunk(ts(0), &[0; 6]),
        Err(PackError::MisalignedPcm {
            chunk: 0,
            len: 6,
            block_align: 4
        })
    ));
    assert_eq!(enc.bytes_written(), 0);
    let first = enc.push_chunk(ts(1000), &[0; 640]).unwrap(); // 160 frames = 10 ms
    assert_eq!(first.len(), HEADER_LEN + 640);
    assert!(matches!(
        enc.push_chunk(ts(1009), &[0; 4]),
        Err(PackError::Overlap { chunk: 1, .. })
    ));
    assert!(matches!(
        enc.push_chunk(ts(Timestamp::MAX.as_millis()), &[0; 4]),
        Err(PackError::EndOutOfRange { chunk: 1, .. })
    ));
    // Touching the previous end is allowed and emits no second header.
    assert_eq!(enc.push_chunk(ts(1010), &[0; 4]).unwrap().len(), 4);
    assert_eq!(enc.time_range(), Some((ts(1000), ts(1011))));
    assert_eq!(enc.chunk_count(), 2);

    let empty = PackEncoder::new(PCM, None).unwrap();
    assert!(matches!(empty.finish(), Err(PackError::EmptyPack)));
    for bad in [
        PackConfig::new(Codec::Pcm16Le, 0, 1),
        PackConfig::new(Codec::Pcm16Le, MAX_SAMPLE_RATE + 1, 1),
        PackConfig::new(Codec::Pcm16Le, 16_000, 0),
        ZSTD.with_zstd_level(1000),
    ] {
        assert!(
            matches!(
                PackEncoder::new(bad, None),
                Err(PackError::BadConfig { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(pack_name_end(ts(1000), 80_000, 16_000), Some(ts(6000)));
    assert_eq!(pack_name_end(ts(1000), 1, 16_000), Some(ts(1001)));
    assert_eq!(pack_name_end(ts(1000), 1, 0), None);
}

#[test]
fn tail_reads_ask_for_more_when_the_index_is_not_in_the_tail() {
    // 600 chunks: the index (19 208 bytes) is longer than TAIL_READ_LEN.
    let chunks: Vec<(u64, Vec<u8>)> = (0..600u64).map(|i| (i * 10, vec![i as u8; 4])).collect();
    let object = encode(PCM, None, &chunks).unwrap();
    let len = object.len() as u64;
    let first = &object[(len - PackTail::read_len(len)) as usize..];
    let Err(PackError::NeedMore { from_offset }) = PackTail::parse(first, len, None) else {
        panic!("expected NeedMore");
    };
    let index = PackTail::parse(&object[from_offset as usize..], len, None).unwrap();
    assert_eq!(index.index_range().start, from_offset);
    assert_eq!(index.len(), 600);
    assert_eq!(index, PackIndex::from_object(&object, None).unwrap());
    // Every tail that holds the index works; shorter ones ask for more (the trailer alone too).
    assert_eq!(
        PackTail::parse(&object[from_offset as usize - 1..], len, None).unwrap(),
        index
    );
    for cut in [from_offset + 1, len - TRAILER_LEN as u64, len - 100] {
        assert!(matches!(
            PackTail::parse(&object[cut as usize..], len, None),
            Err(PackError::NeedMore { from_offset: f }) if f == from_offset
        ));
    }
    assert!(matches!(
        PackTail::parse(&object[object.len() - TRAILER_LEN + 1..], len, None),
        Err(PackError::BadTail { .. })
    ));
    assert!(matches!(
        PackTail::parse(&object, len - 1, None),
        Err(PackError::BadTail { .. })
    ));
}

#[test]
fn openers_must_match_the_header() {
    let chunks = [(0, vec![1, 2, 3, 4])];
    let plain = encode(ZSTD, None, &chunks).unwrap();
    let sealed = encode(ZSTD, Some(Fake::new(1)), &chunks).unwrap();
    let fake = Fake::new(1);
    assert!(matches!(
        PackIndex::from_object(&plain, Some(&fake)),
        Err(PackError::NotEncrypted)
    ));
    assert!(matches!(
        PackIndex::from_object(&sealed, None),
        Err(PackError::OpenerRequired { key_id: 7 })
    ));
    let index = PackIndex::from_object(&sealed, Some(&fake)).unwrap();
    assert_eq!(index.header().seal(), Some(&fake.info));
    assert_eq!(index.entries()[0].crc32c, 0);
    let frame = index.frame_bytes(0, &sealed).unwrap();
    assert!(matches!(
        index.decode_frame(0, frame, None),
        Err(PackError::OpenerRequired { .. })
    ));
    // Another pack's key (salt) opens nothing.
    assert!(matches!(
        PackIndex::from_object(&sealed, Some(&Fake::new(2))),
        Err(PackError::Open {
            part: PackPart::Index,
            ..
        })
    ));
    assert_eq!(decode(&sealed, Some(&fake)).unwrap(), chunks);
}

#[test]
fn sealed_frames_cannot_be_moved_or_spliced() {
    let chunks = [(0, vec![1, 0, 2, 0]), (10, vec![1, 0, 2, 0])];
    let fake = Fake::new(3);
    let a = encode(PCM, Some(fake.clone()), &chunks).unwrap();
    let index = PackIndex::from_object(&a, Some(&fake)).unwrap();
    // Identical PCM at another position: same length, but bound to its counter and entry.
    let frame0 = index.frame_bytes(0, &a).unwrap();
    assert!(matches!(
        index.decode_frame(1, frame0, Some(&fake)),
        Err(PackError::Open {
            part: PackPart::Frame { chunk: 1 },
            ..
        })
    ));
    // A frame from another pack sealed with the same key (same salt) but other timing.
    let b = encode(
        PCM,
        Some(fake.clone()),
        &[(0, vec![1, 0, 2, 0]), (20, vec![1, 0, 2, 0])],
    )
    .unwrap();
    let b_index = PackIndex::from_object(&b, Some(&fake)).unwrap();
    assert!(
        index
            .decode_frame(1, b_index.frame_bytes(1, &b).unwrap(), Some(&fake))
            .is_err()
    );
    // Swapping the two frames in the object fails both.
    let mut swapped = a.clone();
    let (r0, r1) = (index.frame_range(0).unwrap(), index.frame_range(1).unwrap());
    swapped.copy_within(r1.start as usize..r1.end as usize, r0.start as usize);
    swapped[r1.start as usize..r1.end as usize].copy_from_slice(frame0);
    assert!(decode(&swapped, Some(&fake)).is_err());
}

#[test]
fn truncating_a_pack_fails() {
    let chunks: Vec<(u64, Vec<u8>)> = (0..3u64)
        .map(|i| (i * 100, speechy(64, i as u32)))
        .collect();
    for sealer in [None, Some(Fake::new(4))] {
        let object = encode(ZSTD, sealer.clone(), &chunks).unwrap();
        for cut in 0..object.len() {
            assert!(
                decode(&object[..cut], sealer.as_ref()).is_err(),
                "cut at {cut}"
            );
        }
    }
}

/// Flips bits 0 and 7 of every byte: the pack fails to open, or a frame fails, and no frame
/// ever decodes to anything but its original PCM. Plaintext zstd frames are the exception to
/// "something fails": a zstd bitstream has bits that do not change its output, so there the
/// CRC-32C guarantees the audio, not the bytes (`detect_all` = false).
fn assert_tamper_evident(
    object: &[u8],
    chunks: &[(u64, Vec<u8>)],
    opener: Option<&Fake>,
    detect_all: bool,
) {
    for pos in 0..object.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = object.to_vec();
            bad[pos] ^= bit;
            let op = opener.map(|o| o as &dyn SegmentOpener);
            let Ok(index) = PackIndex::from_object(&bad, op) else {
                continue;
            };
            let mut failures = 0;
            for (i, (start, pcm)) in chunks.iter().enumerate() {
                let frame = index.frame_bytes(i, &bad).unwrap();
                match index.decode_frame(i, frame, op) {
                    Ok(got) => {
                        assert_eq!(&got, pcm, "wrong audio: byte {pos} bit {bit:#x}");
                        assert_eq!(index.entries()[i].start.as_millis(), *start);
                    }
                    Err(_) => failures += 1,
                }
            }
            assert!(
                failures > 0 || !detect_all,
                "flip at byte {pos} went unnoticed"
            );
        }
    }
}

#[test]
fn flipping_any_byte_never_yields_wrong_audio() {
    let chunks: Vec<(u64, Vec<u8>)> = vec![
        (0, speechy(40, 1)),
        (50, speechy(20, 2)),
        (200, speechy(60, 3)),
    ];
    for config in [PCM, ZSTD] {
        let plain = encode(config, None, &chunks).unwrap();
        assert_tamper_evident(&plain, &chunks, None, config.codec == Codec::Pcm16Le);
        let fake = Fake::new(5);
        let sealed = encode(config, Some(fake.clone()), &chunks).unwrap();
        assert_tamper_evident(&sealed, &chunks, Some(&fake), true);
    }
}

#[test]
fn dump_lists_every_chunk() {
    let object = encode(
        ZSTD,
        None,
        &[(1_000, speechy(320, 1)), (2_000, speechy(32_000, 2))],
    )
    .unwrap();
    let index = PackIndex::from_object(&object, None).unwrap();
    let dump = index.to_string();
    assert!(
        dump.starts_with("pack v1 codec=zstd-pcm16le sample_rate=16000 channels=1 plaintext\n")
    );
    assert!(dump.contains("span 1.000-3.000 (2 chunks"), "{dump}");
    assert_eq!(dump.lines().count(), 5);
}

fn chunk_list() -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
    prop::collection::vec(
        (0u64..3_000, 1usize..600, any::<u32>(), any::<bool>()),
        1..8,
    )
    .prop_map(|specs| {
        let mut start = 1_786_961_845_727;
        specs
            .into_iter()
            .map(|(gap, samples, seed, silent)| {
                let pcm = if silent {
                    vec![0; samples * 2]
                } else {
                    speechy(samples * 2, seed)
                };
                let chunk = (start, pcm);
                start += (samples as u64 * 1000).div_ceil(16_000) + gap;
                chunk
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn prop_pack_round_trips(
        chunks in chunk_list(),
        zstd in any::<bool>(),
        sealed in any::<bool>(),
        level in 1i32..6,
    ) {
        let config = if zstd { ZSTD.with_zstd_level(level) } else { PCM };
        let fake = sealed.then(|| Fake::new(9));
        let object = encode(config, fake.clone(), &chunks).unwrap();
        prop_assert_eq!(decode(&object, fake.as_ref()).unwrap(), chunks.clone());
        // Tail reads agree with whole-object reads for every tail length that holds the index.
        let index = PackIndex::from_object(&object, fake.as_ref().map(|f| f as &dyn SegmentOpener)).unwrap();
        let len = object.len() as u64;
        let tail = &object[index.index_range().start as usize..];
        let from_tail = PackTail::parse(tail, len, fake.as_ref().map(|f| f as &dyn SegmentOpener)).unwrap();
        prop_assert_eq!(&from_tail, &index);
        let last = chunks.last().unwrap();
        prop_assert_eq!(
            Some(index.end()),
            pack_name_end(ts(last.0), (last.1.len() / 2) as u32, 16_000)
        );
    }

    #[test]
    fn prop_random_tails_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..400),
        extra in 0u64..1_000_000,
        sealed in any::<bool>(),
    ) {
        let fake = Fake::new(1);
        let opener = sealed.then_some(&fake as &dyn SegmentOpener);
        let _ = PackTail::parse(&tail, tail.len() as u64 + extra, opener);
        let _ = PackIndex::from_object(&tail, opener);
    }

    #[test]
    fn prop_mutated_packs_never_panic(
        chunks in chunk_list(),
        zstd in any::<bool>(),
        sealed in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let config = if zstd { ZSTD } else { PCM };
        let fake = sealed.then(|| Fake::new(2));
        let mut object = encode(config, fake.clone(), &chunks).unwrap();
        for (at, value) in edits {
            let i = at.index(object.len());
            object[i] = value;
        }
        let opener = fake.as_ref().map(|f| f as &dyn SegmentOpener);
        if let Ok(index) = PackIndex::from_object(&object, opener) {
            for i in 0..index.len() {
                if let Ok(frame) = index.frame_bytes(i, &object) {
                    let _ = index.decode_frame(i, frame, opener);
                }
            }
        }
    }

    #[test]
    fn prop_random_frames_never_panic(
        chunks in chunk_list(),
        zstd in any::<bool>(),
        frame in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let config = if zstd { ZSTD } else { PCM };
        let object = encode(config, None, &chunks).unwrap();
        let index = PackIndex::from_object(&object, None).unwrap();
        for i in 0..index.len() {
            let _ = index.decode_frame(i, &frame, None);
        }
    }
}

#[test]
fn encoder_and_index_can_cross_threads() {
    // The service holds them across `.await` points on a multi-threaded runtime.
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<PackEncoder>();
    send::<PackIndex>();
    sync::<PackIndex>();
    send::<PackError>();
    sync::<PackError>();
}

/// A toy frame codec: the frame is the PCM reversed, followed by a marker byte.
struct Reverse;

impl FrameCodec for Reverse {
    fn encode(&self, pcm: &[u8]) -> Result<Vec<u8>, CodecError> {
        if pcm.first() == Some(&0xee) {
            return Err(CodecError::new("refuses chunks starting with 0xee"));
        }
        let mut frame: Vec<u8> = pcm.iter().rev().copied().collect();
        frame.push(0xa5);
        Ok(frame)
    }
    fn decode(&self, frame: &[u8], _plain_len: u32) -> Result<Vec<u8>, CodecError> {
        match frame.split_last() {
            Some((0xa5, body)) => Ok(body.iter().rev().copied().collect()),
            _ => Err(CodecError::new("no marker byte")),
        }
    }
}

/// A codec that drops the last sample when decoding.
struct Short;

impl FrameCodec for Short {
    fn encode(&self, pcm: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(pcm.to_vec())
    }
    fn decode(&self, frame: &[u8], _plain_len: u32) -> Result<Vec<u8>, CodecError> {
        Ok(frame[..frame.len().saturating_sub(2)].to_vec())
    }
}

const OPUS: PackConfig = PackConfig::new(Codec::Opus, 16_000, 1);

fn encode_with(
    codec: Box<dyn FrameCodec>,
    sealer: Option<Fake>,
    chunks: &[(u64, Vec<u8>)],
) -> Result<Vec<u8>, PackError> {
    let sealer = sealer.map(|s| Box::new(s) as Box<dyn SegmentSealer>);
    let mut enc = PackEncoder::with_codec(OPUS, sealer, codec)?;
    let mut object = Vec::new();
    for (start, pcm) in chunks {
        object.extend(enc.push_chunk(ts(*start), pcm)?);
    }
    object.extend(enc.finish()?);
    Ok(object)
}

#[test]
fn frame_codec_packs_round_trip_with_exact_timing() {
    let chunks = vec![
        (1_000, speechy(3_200, 1)),
        (5_000, speechy(1_602, 2)),
        (9_999, speechy(2, 3)),
    ];
    for sealed in [false, true] {
        let fake = Fake::new(3);
        let object = encode_with(Box::new(Reverse), sealed.then(|| fake.clone()), &chunks).unwrap();
        let opener = sealed.then_some(&fake as &dyn SegmentOpener);
        let index = PackIndex::from_object(&object, opener).unwrap();
        assert_eq!(index.header().codec(), Codec::Opus);
        assert_eq!(
            index.object_name().unwrap().to_string(),
            "1.000-10.000.pack"
        );
        for (i, (start, pcm)) in chunks.iter().enumerate() {
            let entry = index.entries()[i];
            assert_eq!(entry.start.as_millis(), *start);
            assert_eq!(entry.sample_count as usize, pcm.len() / 2);
            assert_eq!(entry.plain_len as usize, pcm.len());
            let frame = index.frame_bytes(i, &object).unwrap();
            if sealed {
                assert_eq!(entry.crc32c, 0);
            } else {
                // Plaintext: the CRC covers the stored (encoded) frame.
                assert_eq!(entry.crc32c, crc32c::crc32c(frame));
                assert_eq!(frame, &Reverse.encode(pcm).unwrap()[..]);
            }
            assert_eq!(
                &index
                    .decode_frame_with(i, frame, opener, Some(&Reverse))
                    .unwrap(),
                pcm
            );
            // Without a codec: a typed error, not garbage.
            assert!(matches!(
                index.decode_frame(i, frame, opener),
                Err(PackError::CodecRequired { codec: Codec::Opus })
            ));
        }
    }
}

#[test]
fn frame_codec_crc_is_checked_before_decoding() {
    let chunks = vec![(0, speechy(640, 4))];
    let object = encode_with(Box::new(Reverse), None, &chunks).unwrap();
    let index = PackIndex::from_object(&object, None).unwrap();
    let range = index.frame_range(0).unwrap();
    // Flip a byte the toy codec would happily decode: only the CRC can catch it.
    let mut bad = object.clone();
    bad[range.start as usize + 10] ^= 0x40;
    let frame = index.frame_bytes(0, &bad).unwrap();
    assert!(matches!(
        index.decode_frame_with(0, frame, None, Some(&Reverse)),
        Err(PackError::Checksum {
            part: PackPart::Frame { chunk: 0 },
            ..
        })
    ));
    // A codec whose output is not exactly plain_len bytes is refused.
    let object = encode_with(Box::new(Short), None, &chunks).unwrap();
    let index = PackIndex::from_object(&object, None).unwrap();
    let frame = index.frame_bytes(0, &object).unwrap();
    assert!(matches!(
        index.decode_frame_with(0, frame, None, Some(&Short)),
        Err(PackError::DecodedLength {
            expected: 640,
            got: 638,
            ..
        })
    ));
    // A codec error names the chunk and keeps the codec's message.
    let err = index
        .decode_frame_with(0, frame, None, Some(&Reverse))
        .unwrap_err();
    assert!(matches!(err, PackError::FrameDecode { chunk: 0, .. }));
    assert!(err.to_string().contains("no marker byte"), "{err}");
}

#[test]
fn frame_codec_configuration_is_checked() {
    assert!(matches!(
        PackEncoder::new(OPUS, None),
        Err(PackError::CodecRequired { codec: Codec::Opus })
    ));
    assert!(matches!(
        PackEncoder::with_codec(ZSTD, None, Box::new(Reverse)),
        Err(PackError::BadConfig { .. })
    ));
    for (rate, channels) in [(48_000, 1), (16_000, 2)] {
        assert!(matches!(
            PackEncoder::with_codec(
                PackConfig::new(Codec::Opus, rate, channels),
                None,
                Box::new(Reverse)
            ),
            Err(PackError::BadConfig { .. })
        ));
    }
    // An encode failure changes nothing: the next chunk still goes in as chunk 0.
    let mut enc = PackEncoder::with_codec(OPUS, None, Box::new(Reverse)).unwrap();
    let err = enc.push_chunk(ts(0), &[0xee, 0]).unwrap_err();
    assert!(matches!(err, PackError::FrameEncode { chunk: 0, .. }));
    assert_eq!((enc.chunk_count(), enc.bytes_written()), (0, 0));
    let mut object = enc.push_chunk(ts(0), &[1, 2]).unwrap();
    object.extend(enc.finish().unwrap());
    let index = PackIndex::from_object(&object, None).unwrap();
    let frame = index.frame_bytes(0, &object).unwrap();
    assert_eq!(
        index
            .decode_frame_with(0, frame, None, Some(&Reverse))
            .unwrap(),
        vec![1, 2]
    );
}

/// Copies every frame of `object` (opened with `opener`) into a new pack sealed with `sealer`,
/// without decoding, dropping the chunks `drop` selects.
fn copy_frames(
    object: &[u8],
    opener: Option<&Fake>,
    sealer: Option<Fake>,
    drop: impl Fn(usize) -> bool,
) -> Result<Vec<u8>, PackError> {
    let opener = opener.map(|o| o as &dyn SegmentOpener);
    let index = PackIndex::from_object(object, opener)?;
    let sealer = sealer.map(|s| Box::new(s) as Box<dyn SegmentSealer>);
    let mut enc = PackEncoder::with_codec(OPUS, sealer, Box::new(Reverse))?;
    let mut out = Vec::new();
    for i in (0..index.len()).filter(|&i| !drop(i)) {
        let payload = index.open_frame(i, index.frame_bytes(i, object)?, opener)?;
        let entry = index.entries()[i];
        out.extend(enc.push_encoded_frame(entry.start, &payload, entry.plain_len)?);
    }
    out.extend(enc.finish()?);
    Ok(out)
}

#[test]
fn encoded_frames_are_copied_without_decoding() {
    let chunks = vec![
        (1_000, speechy(3_200, 1)),
        (5_000, speechy(1_602, 2)),
        (9_999, speechy(2, 3)),
    ];
    let plain = encode_with(Box::new(Reverse), None, &chunks).unwrap();
    // Copying every frame of a plaintext pack gives the very same bytes.
    assert_eq!(copy_frames(&plain, None, None, |_| false).unwrap(), plain);
    // Dropping a chunk and sealing: the others decode as before, with their timing.
    let fake = Fake::new(4);
    let sealed = copy_frames(&plain, None, Some(fake.clone()), |i| i == 1).unwrap();
    let opener = Some(&fake as &dyn SegmentOpener);
    let index = PackIndex::from_object(&sealed, opener).unwrap();
    assert_eq!(index.len(), 2);
    for (i, (start, pcm)) in [&chunks[0], &chunks[2]].into_iter().enumerate() {
        assert_eq!(index.entries()[i].start.as_millis(), *start);
        let frame = index.frame_bytes(i, &sealed).unwrap();
        assert_eq!(
            &index
                .decode_frame_with(i, frame, opener, Some(&Reverse))
                .unwrap(),
            pcm
        );
        // The opened payload is the codec's frame, unchanged.
        assert_eq!(
            index.open_frame(i, frame, opener).unwrap().as_ref(),
            &Reverse.encode(pcm).unwrap()[..]
        );
    }
    // And back from sealed to plaintext: the original pack without chunk 1, byte for byte.
    let back = copy_frames(&sealed, Some(&fake), None, |_| false).unwrap();
    let expected = encode_with(
        Box::new(Reverse),
        None,
        &[chunks[0].clone(), chunks[2].clone()],
    )
    .unwrap();
    assert_eq!(back, expected);
}

#[test]
fn encoded_frames_are_checked_like_chunks() {
    // Only a frame-codec pack takes encoded frames.
    let mut zstd = PackEncoder::new(ZSTD, None).unwrap();
    assert!(matches!(
        zstd.push_encoded_frame(ts(0), &[1, 2, 3], 2),
        Err(PackError::EncodedFrameUnsupported {
            codec: Codec::ZstdPcm16Le
        })
    ));
    let mut enc = PackEncoder::with_codec(OPUS, None, Box::new(Reverse)).unwrap();
    assert!(matches!(
        enc.push_encoded_frame(ts(0), &[], 2),
        Err(PackError::FrameEncode { chunk: 0, .. })
    ));
    assert!(matches!(
        enc.push_encoded_frame(ts(0), &[1], 0),
        Err(PackError::EmptyChunk { chunk: 0 })
    ));
    assert!(matches!(
        enc.push_encoded_frame(ts(0), &[1], 3),
        Err(PackError::MisalignedPcm { chunk: 0, .. })
    ));
    assert!(matches!(
        enc.push_encoded_frame(ts(0), &[1], MAX_CHUNK_BYTES + 2),
        Err(PackError::ChunkTooLong { chunk: 0, .. })
    ));
    assert_eq!((enc.chunk_count(), enc.bytes_written()), (0, 0));
    // 32 000 bytes = 1 s at 16 kHz: the next chunk may not start before 1 000 ms.
    enc.push_encoded_frame(ts(0), &[1, 0xa5], 32_000).unwrap();
    assert!(matches!(
        enc.push_encoded_frame(ts(999), &[1, 0xa5], 2),
        Err(PackError::Overlap { chunk: 1, .. })
    ));
    enc.push_encoded_frame(ts(1_000), &[1, 0xa5], 2).unwrap();
    assert_eq!(enc.chunk_count(), 2);
}

proptest! {
    #[test]
    fn prop_copying_frames_keeps_the_audio(
        chunks in chunk_list(),
        from_sealed in any::<bool>(),
        to_sealed in any::<bool>(),
        drop_mask in any::<u8>(),
    ) {
        // The toy codec refuses chunks starting with 0xee.
        prop_assume!(chunks.iter().all(|(_, pcm)| pcm.first() != Some(&0xee)));
        let from = from_sealed.then(|| Fake::new(1));
        let object = encode_with(Box::new(Reverse), from.clone(), &chunks).unwrap();
        let drop = |i: usize| drop_mask & (1 << (i % 8)) != 0 && i + 1 < chunks.len();
        let to = to_sealed.then(|| Fake::new(2));
        let copied = copy_frames(&object, from.as_ref(), to.clone(), drop).unwrap();
        let opener = to.as_ref().map(|f| f as &dyn SegmentOpener);
        let index = PackIndex::from_object(&copied, opener).unwrap();
        let kept: Vec<&(u64, Vec<u8>)> =
            chunks.iter().enumerate().filter(|(i, _)| !drop(*i)).map(|(_, c)| c).collect();
        prop_assert_eq!(index.len(), kept.len());
        for (i, (start, pcm)) in kept.into_iter().enumerate() {
            prop_assert_eq!(index.entries()[i].start.as_millis(), *start);
            let frame = index.frame_bytes(i, &copied).unwrap();
            prop_assert_eq!(
                &index.decode_frame_with(i, frame, opener, Some(&Reverse)).unwrap(),
                pcm
            );
        }
    }
}

/// Copies the stored payloads of `object` into a new pack of `config` (sealed with `sealer`),
/// giving each entry's CRC-32C, dropping the chunks `drop` selects.
fn copy_stored(
    object: &[u8],
    config: PackConfig,
    opener: Option<&Fake>,
    sealer: Option<Fake>,
    drop: impl Fn(usize) -> bool,
) -> Result<Vec<u8>, PackError> {
    let opener = opener.map(|o| o as &dyn SegmentOpener);
    let index = PackIndex::from_object(object, opener)?;
    let sealer = sealer.map(|s| Box::new(s) as Box<dyn SegmentSealer>);
    let mut enc = PackEncoder::new(config, sealer)?;
    let mut out = Vec::new();
    for i in (0..index.len()).filter(|&i| !drop(i)) {
        let payload = index.open_frame(i, index.frame_bytes(i, object)?, opener)?;
        let entry = index.entries()[i];
        let crc = (!index.header().is_encrypted()).then_some(entry.crc32c);
        out.extend(enc.push_stored(entry.start, &payload, entry.plain_len, crc)?);
    }
    out.extend(enc.finish()?);
    Ok(out)
}

#[test]
fn stored_payloads_are_copied_without_decoding() {
    let chunks = vec![
        (1_000, speechy(3_200, 1)),
        (5_000, speechy(1_602, 2)),
        (9_999, speechy(2, 3)),
    ];
    for codec in [Codec::Pcm16Le, Codec::ZstdPcm16Le] {
        let config = PackConfig::new(codec, 16_000, 1);
        let plain = encode(config, None, &chunks).unwrap();
        // Copying every payload of a plaintext pack gives the very same bytes.
        assert_eq!(
            copy_stored(&plain, config, None, None, |_| false).unwrap(),
            plain
        );
        // Dropping a chunk and sealing: the others decode as before, with their timing.
        let fake = Fake::new(4);
        let sealed = copy_stored(&plain, config, None, Some(fake.clone()), |i| i == 1).unwrap();
        let expected = vec![chunks[0].clone(), chunks[2].clone()];
        assert_eq!(decode(&sealed, Some(&fake)).unwrap(), expected);
        // And back from sealed to sealed (no CRC needed).
        let again =
            copy_stored(&sealed, config, Some(&fake), Some(fake.clone()), |_| false).unwrap();
        assert_eq!(decode(&again, Some(&fake)).unwrap(), expected);
    }
}

#[test]
fn stored_payloads_are_checked_like_chunks() {
    let pcm = PackConfig::new(Codec::Pcm16Le, 16_000, 1);
    let zstd = PackConfig::new(Codec::ZstdPcm16Le, 16_000, 1);
    let mut enc = PackEncoder::new(pcm, None).unwrap();
    assert!(matches!(
        enc.push_stored(ts(0), &[1, 2, 3, 4], 2, None),
        Err(PackError::FrameLength {
            chunk: 0,
            expected: 2,
            got: 4
        })
    ));
    assert!(matches!(
        enc.push_stored(ts(0), &[], 2, None),
        Err(PackError::FrameEncode { chunk: 0, .. })
    ));
    assert!(matches!(
        enc.push_stored(ts(0), &[1], 1, None),
        Err(PackError::MisalignedPcm { .. })
    ));
    let mut enc = PackEncoder::new(zstd, None).unwrap();
    assert!(matches!(
        enc.push_stored(ts(0), &[1, 2], 2, None),
        Err(PackError::ChecksumRequired { chunk: 0 })
    ));
    // Failures change nothing: the next chunk is still chunk 0, from offset 0.
    assert_eq!((enc.chunk_count(), enc.bytes_written()), (0, 0));
}
