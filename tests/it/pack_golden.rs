//! Golden pack files: packs written once and committed under `tests/fixtures/pack/`, which every
//! later version must still read to the same audio. A format change that breaks old packs fails
//! here.
//!
//! For each pack, `expected.json` records the object's SHA-256 and, per chunk, its start and the
//! SHA-256 of its decoded PCM; `<name>.dump` is the human-readable `PackIndex` dump (also an insta
//! snapshot). The sealed packs use fixed test keys and fixed seal parameters, recorded in
//! `expected.json` (test material, not a secret): `sealed-zstd` is a version-1 pack (key from
//! the user key alone), `sealed-zstd-v2` a version-2 pack (key from the pack root key of a test
//! master secret, bound to its user and conversation); sealing with fixed parameters needs
//! chunk-crypto's `insecure-fixed-nonces` feature, enabled for this crate's tests in
//! tests/Cargo.toml (never in production: it allows nonce reuse).
//!
//! The files are never rewritten: `CHUNKVAULT_WRITE_PACK_GOLDEN=1 cargo test -p chunkvault-tests
//! --test pack_golden` only creates the packs listed in `GOLDEN` that do not exist yet (for a new
//! codec or option), keeping every existing pack and its recorded expectations.

use std::path::PathBuf;

use chunk_crypto::pack::{KeyScheme, PackOpener, PackPlace, PackSealer, SealParams};
use chunk_crypto::{KeyId, MasterSecret, PackRootKey, UserKey};
use chunk_format::Timestamp;
use chunk_format::pack::{Codec, PackConfig, PackEncoder, PackIndex, SegmentOpener, SegmentSealer};
use chunkvault_tests::{fixtures_dir, sha256_hex, speech};
use serde::{Deserialize, Serialize};

/// The fixed user key of the version-1 sealed golden pack.
const TEST_USER_KEY: [u8; 32] = [0x42; 32];

/// The master secret (as text), user and conversation of the version-2 sealed golden pack.
const V2_SECRET: &str = "omi_000000000000000000000000000000000000000000000000000000000000";
const V2_UID: &str = "test-uid";
const V2_CONVERSATION: &str = "conv-1";

/// How a golden pack is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seal {
    Plain,
    V1,
    V2,
}

impl Seal {
    fn is_sealed(self) -> bool {
        self != Seal::Plain
    }
}

fn v2_root() -> PackRootKey {
    let secret = MasterSecret::new(V2_SECRET.as_bytes().to_vec()).expect("secret");
    PackRootKey::derive(&secret, V2_UID)
}

fn v2_place() -> PackPlace<'static> {
    PackPlace::new(V2_UID, V2_CONVERSATION)
}

fn seal_params() -> SealParams {
    SealParams {
        key_id: KeyId::new(3),
        salt: *b"0123456789abcdef",
        nonce_prefix: *b"nonce-p",
    }
}

/// The golden packs: (file stem, codec, seal).
const GOLDEN: [(&str, Codec, Seal); 4] = [
    ("plain-pcm16", Codec::Pcm16Le, Seal::Plain),
    ("plain-zstd", Codec::ZstdPcm16Le, Seal::Plain),
    ("sealed-zstd", Codec::ZstdPcm16Le, Seal::V1),
    ("sealed-zstd-v2", Codec::ZstdPcm16Le, Seal::V2),
];

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Expected {
    /// How the version-1 sealed pack's key was made.
    sealed_key: SealedKey,
    /// How the version-2 sealed pack's key was made (same salt, nonce prefix and key id).
    /// Absent from files written before version 2 (read as empty, which the test refuses).
    #[serde(default)]
    sealed_v2_key: SealedV2Key,
    packs: Vec<ExpectedPack>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct SealedV2Key {
    master_secret: String,
    uid: String,
    conversation: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SealedKey {
    user_key_hex: String,
    key_id: u32,
    salt_hex: String,
    nonce_prefix_hex: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ExpectedPack {
    file: String,
    name: String,
    object_sha256: String,
    chunks: Vec<ExpectedChunk>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ExpectedChunk {
    start_ms: u64,
    pcm_len: usize,
    pcm_sha256: String,
}

fn dir() -> PathBuf {
    fixtures_dir().join("pack")
}

fn opener(seal: Seal) -> Option<PackOpener> {
    match seal {
        Seal::Plain => None,
        Seal::V1 => Some(PackOpener::v1(
            &UserKey::from_bytes(TEST_USER_KEY),
            &seal_params(),
        )),
        Seal::V2 => Some(PackOpener::new(&v2_root(), v2_place(), &seal_params())),
    }
}

fn encode(codec: Codec, seal: Seal, chunks: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let sealer = match seal {
        Seal::Plain => None,
        Seal::V1 => Some(PackSealer::v1_with_params_for_tests(
            &UserKey::from_bytes(TEST_USER_KEY),
            seal_params(),
        )),
        Seal::V2 => Some(PackSealer::with_params_for_tests(
            &v2_root(),
            v2_place(),
            seal_params(),
        )),
    }
    .map(|sealer| Box::new(sealer) as Box<dyn SegmentSealer>);
    let mut enc = PackEncoder::new(PackConfig::new(codec, 16_000, 1), sealer).expect("config");
    let mut object = Vec::new();
    for (start, pcm) in chunks {
        let start = Timestamp::from_millis(*start).expect("start");
        object.extend(enc.push_chunk(start, pcm).expect("push"));
    }
    object.extend(enc.finish().expect("finish"));
    object
}

/// Decodes every chunk of `object`: (start ms, PCM).
fn decode(object: &[u8], seal: Seal) -> (PackIndex, Vec<(u64, Vec<u8>)>) {
    let opener = opener(seal);
    let opener = opener.as_ref().map(|o| o as &dyn SegmentOpener);
    let index = PackIndex::from_object(object, opener).expect("golden pack opens");
    let chunks = (0..index.len())
        .map(|i| {
            let frame = index.frame_bytes(i, object).expect("frame");
            let pcm = index.decode_frame(i, frame, opener).expect("frame decodes");
            (index.entries()[i].start.as_millis(), pcm)
        })
        .collect();
    (index, chunks)
}

/// Three slices of the speech fixture with gaps between them, 100 ms, 50 ms and 150 ms long.
fn source_chunks() -> Vec<(u64, Vec<u8>)> {
    let pcm = speech::pcm_60s().expect("speech fixture");
    let t0 = 1_786_961_845_727;
    [
        (0, 16_000, 1_600),
        (250, 24_000, 800),
        (1_000, 40_000, 2_400),
    ]
    .into_iter()
    .map(|(offset_ms, first_sample, samples)| {
        (
            t0 + offset_ms,
            pcm[first_sample * 2..(first_sample + samples) * 2].to_vec(),
        )
    })
    .collect()
}

/// Creates the golden packs that do not exist yet (with their dump and `expected.json` entry).
/// Existing packs and their recorded expectations are never touched.
fn write_golden() {
    let chunks = source_chunks();
    std::fs::create_dir_all(dir()).expect("mkdir");
    let old = dir()
        .join("expected.json")
        .exists()
        .then(load_expected)
        .map_or_else(Vec::new, |e| e.packs);
    let mut packs = Vec::new();
    for (stem, codec, seal) in GOLDEN {
        let file = format!("{stem}.pack");
        if dir().join(&file).exists() {
            let kept = old.iter().find(|p| p.file == file);
            let kept = kept.unwrap_or_else(|| panic!("{file} exists but expected.json lacks it"));
            packs.push(kept.clone());
            continue;
        }
        let object = encode(codec, seal, &chunks);
        let (index, decoded) = decode(&object, seal);
        assert_eq!(decoded, chunks);
        std::fs::write(dir().join(&file), &object).expect("write pack");
        std::fs::write(dir().join(format!("{stem}.dump")), index.to_string()).expect("dump");
        packs.push(ExpectedPack {
            file,
            name: index.object_name().expect("name").to_string(),
            object_sha256: sha256_hex(&object),
            chunks: decoded
                .iter()
                .map(|(start_ms, pcm)| ExpectedChunk {
                    start_ms: *start_ms,
                    pcm_len: pcm.len(),
                    pcm_sha256: sha256_hex(pcm),
                })
                .collect(),
        });
    }
    let params = seal_params();
    let expected = Expected {
        sealed_key: SealedKey {
            user_key_hex: hex::encode(TEST_USER_KEY),
            key_id: params.key_id.get(),
            salt_hex: hex::encode(params.salt),
            nonce_prefix_hex: hex::encode(params.nonce_prefix),
        },
        sealed_v2_key: SealedV2Key {
            master_secret: V2_SECRET.to_owned(),
            uid: V2_UID.to_owned(),
            conversation: V2_CONVERSATION.to_owned(),
        },
        packs,
    };
    let json = serde_json::to_string_pretty(&expected).expect("json") + "\n";
    std::fs::write(dir().join("expected.json"), json).expect("write expected.json");
}

fn load_expected() -> Expected {
    let text = std::fs::read_to_string(dir().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

#[test]
fn golden_packs_decode_to_the_recorded_audio() {
    if std::env::var_os("CHUNKVAULT_WRITE_PACK_GOLDEN").is_some() {
        write_golden();
    }
    let expected = load_expected();
    let params = seal_params();
    assert_eq!(expected.sealed_key.user_key_hex, hex::encode(TEST_USER_KEY));
    assert_eq!(expected.sealed_key.salt_hex, hex::encode(params.salt));
    assert_eq!(
        expected.sealed_key.nonce_prefix_hex,
        hex::encode(params.nonce_prefix)
    );
    assert_eq!(expected.sealed_v2_key.master_secret, V2_SECRET);
    assert_eq!(
        (
            expected.sealed_v2_key.uid.as_str(),
            expected.sealed_v2_key.conversation.as_str()
        ),
        (V2_UID, V2_CONVERSATION)
    );
    assert_eq!(expected.packs.len(), GOLDEN.len());
    for ((stem, codec, seal), pack) in GOLDEN.into_iter().zip(&expected.packs) {
        assert_eq!(pack.file, format!("{stem}.pack"));
        let object = std::fs::read(dir().join(&pack.file)).expect("golden pack");
        assert_eq!(
            sha256_hex(&object),
            pack.object_sha256,
            "{stem}: file changed"
        );
        let (index, decoded) = decode(&object, seal);
        assert_eq!(index.header().codec(), codec, "{stem}");
        assert_eq!(index.header().is_encrypted(), seal.is_sealed(), "{stem}");
        let version = if seal == Seal::V2 { 2 } else { 1 };
        assert_eq!(index.header().version(), version, "{stem}");
        assert_eq!(index.object_name().expect("name").to_string(), pack.name);
        assert_eq!(decoded.len(), pack.chunks.len(), "{stem}");
        for ((start, pcm), want) in decoded.iter().zip(&pack.chunks) {
            assert_eq!(*start, want.start_ms, "{stem}");
            assert_eq!(pcm.len(), want.pcm_len, "{stem}");
            assert_eq!(sha256_hex(pcm), want.pcm_sha256, "{stem} chunk at {start}");
        }
        // The committed dump and the snapshot both show what this version reads.
        let dump = index.to_string();
        let committed = std::fs::read_to_string(dir().join(format!("{stem}.dump"))).expect("dump");
        assert_eq!(dump, committed, "{stem}.dump");
        insta::assert_snapshot!(format!("dump_{stem}"), dump);
    }
}

#[test]
fn the_golden_packs_hold_the_same_audio() {
    let expected = load_expected();
    let chunks = |i: usize| -> Vec<(u64, &str)> {
        expected.packs[i]
            .chunks
            .iter()
            .map(|c| (c.start_ms, c.pcm_sha256.as_str()))
            .collect()
    };
    for i in 1..GOLDEN.len() {
        assert_eq!(chunks(0), chunks(i));
        assert_eq!(expected.packs[0].name, expected.packs[i].name);
    }
}

#[test]
fn deterministic_packs_are_reproduced_byte_for_byte() {
    // PCM16LE has no compressor whose output could change with the zstd version, so today's
    // encoder must write exactly the committed bytes, plaintext and sealed (fixed parameters).
    let object = std::fs::read(dir().join("plain-pcm16.pack")).expect("golden pack");
    let (_, chunks) = decode(&object, Seal::Plain);
    assert_eq!(encode(Codec::Pcm16Le, Seal::Plain, &chunks), object);

    for (file, seal, scheme) in [
        ("sealed-zstd.pack", Seal::V1, KeyScheme::V1),
        ("sealed-zstd-v2.pack", Seal::V2, KeyScheme::V2),
    ] {
        let sealed = std::fs::read(dir().join(file)).expect("golden pack");
        let (index, sealed_chunks) = decode(&sealed, seal);
        assert_eq!(sealed_chunks, chunks);
        let header_seal = index.header().seal().copied().expect("sealed");
        assert_eq!(header_seal.scheme, scheme, "{file}");
        assert_eq!(SealParams::from(header_seal), seal_params(), "{file}");
    }
}

/// Flipping a byte of a golden pack never changes the audio it reads to: the pack fails to
/// open, a frame fails, or (only possible in plaintext zstd frames, whose bitstreams have bits
/// that do not affect the output) every frame still decodes to the recorded PCM.
#[test]
fn a_changed_golden_byte_never_reads_as_other_audio() {
    let expected = load_expected();
    for ((stem, codec, seal), pack) in GOLDEN.into_iter().zip(&expected.packs) {
        let object = std::fs::read(dir().join(&pack.file)).expect("golden pack");
        let opener = opener(seal);
        let opener = opener.as_ref().map(|o| o as &dyn SegmentOpener);
        let mut unnoticed = 0;
        for pos in (0..object.len()).step_by(3) {
            let mut bad = object.clone();
            bad[pos] ^= 0x10;
            let Ok(index) = PackIndex::from_object(&bad, opener) else {
                continue;
            };
            let mut failed = false;
            for (i, want) in pack.chunks.iter().enumerate() {
                match index
                    .frame_bytes(i, &bad)
                    .and_then(|f| index.decode_frame(i, f, opener))
                {
                    Ok(pcm) => {
                        assert_eq!(sha256_hex(&pcm), want.pcm_sha256, "{stem}: flip at {pos}");
                        assert_eq!(index.entries()[i].start.as_millis(), want.start_ms);
                    }
                    Err(_) => failed = true,
                }
            }
            if !failed {
                unnoticed += 1;
            }
        }
        if seal.is_sealed() || codec == Codec::Pcm16Le {
            assert_eq!(
                unnoticed, 0,
                "{stem}: flips that changed nothing detectable"
            );
        }
    }
}
