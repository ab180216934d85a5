//! Integrity of the committed Omi compatibility vectors.
//!
//! These tests assert facts about the bytes Omi's own code wrote (object sizes and digests,
//! frame and container layout) and about the regenerated input PCM, so a damaged or partial
//! fixture copy, or a wrong chirp generator, fails here before any replay test runs.

use chunkvault_tests::omi::{
    self, Call, DeleteFn, DownloadResult, Frame, ObjectEntry, ObjectFormat, OmiDecryptResult,
    Scenario, StoreOpKind, Writer, chirp, chirp_samples, sha256_hex,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};

fn scenarios() -> Vec<Scenario> {
    Scenario::load_all().expect("all scenarios parse into the models")
}

fn objects_by_name(s: &Scenario) -> BTreeMap<&str, &ObjectEntry> {
    s.objects.iter().map(|o| (o.name.as_str(), o)).collect()
}

#[test]
fn manifest_parses_and_names_the_expected_constants() {
    let m = omi::load_manifest().expect("manifest.json parses");
    assert_eq!(m.uid, "oracle-uid");
    assert_eq!(m.encryption_secret, format!("omi_{}", "0".repeat(60)));
    assert_eq!(m.key_for_uid_hex.len(), 64);
    assert_eq!(m.omi_sources.len(), 3);
    assert_eq!(m.libopus.version, "libopus 1.3.1");
}

#[test]
fn chirp_matches_manifest_self_test() {
    let m = omi::load_manifest().expect("manifest.json parses");
    let st = m.pcm_generator_self_test;
    assert_eq!(chirp_samples(0, 4), st.first4_samples_from_n0_0);
    assert_eq!(sha256_hex(&chirp(0, 160_000)), st.sha256_first_160000_bytes);
}

#[test]
fn every_input_chunk_regenerates_exactly() {
    let mut checked = 0;
    let mut distinct = HashSet::new();
    for s in scenarios() {
        assert_eq!(s.chunks.sample_rate, 16_000);
        for c in &s.chunks.chunks {
            let len = usize::try_from(c.len).expect("chunk len fits usize");
            let pcm = chirp(c.n0, len);
            assert_eq!(pcm.len(), len, "{} {}", s.name, c.id);
            assert_eq!(
                sha256_hex(&pcm),
                c.sha256,
                "{} {} n0={}",
                s.name,
                c.id,
                c.n0
            );
            // The loader path must agree with the direct generator.
            assert_eq!(s.input_pcm(&c.id).expect("input_pcm"), pcm);
            distinct.insert(c.sha256.clone());
            checked += 1;
        }
    }
    assert_eq!(checked, 54, "the vectors hold 54 input chunks");
    assert_eq!(distinct.len(), 17, "distinct input signals across A–E");
}

#[test]
fn every_bucket_object_matches_objects_json() {
    for s in scenarios() {
        let on_disk = s.bucket_object_names().expect("bucket lists");
        let described: Vec<&str> = objects_by_name(&s).into_keys().collect();
        assert_eq!(
            on_disk, described,
            "scenario {}: bucket files vs objects.json",
            s.name
        );
        assert_eq!(
            described.len(),
            s.objects.len(),
            "scenario {}: duplicate names in objects.json",
            s.name
        );
        for o in &s.objects {
            let bytes = s.object_bytes(&o.name).expect("object readable");
            assert_eq!(bytes.len() as u64, o.size, "{} {}", s.name, o.name);
            assert_eq!(sha256_hex(&bytes), o.sha256, "{} {}", s.name, o.name);
        }
    }
}

#[test]
fn object_fields_match_their_format() {
    for s in scenarios() {
        for o in &s.objects {
            let has = |present: bool, field: &str, expected: bool| {
                assert_eq!(present, expected, "{} {}: field {field}", s.name, o.name);
            };
            let encrypted = matches!(
                o.format,
                ObjectFormat::EncryptedFrames | ObjectFormat::EncryptedOpus
            );
            let opus = matches!(o.format, ObjectFormat::Opus | ObjectFormat::EncryptedOpus);
            has(o.frames.is_some(), "frames", encrypted);
            has(o.plaintext_len.is_some(), "plaintext_len", encrypted);
            has(o.plaintext_sha256.is_some(), "plaintext_sha256", encrypted);
            has(
                o.omi_decrypt_audio_file.is_some(),
                "omi_decrypt_audio_file",
                encrypted,
            );
            has(o.opus.is_some(), "opus", opus);
            has(o.opus_decoded.is_some(), "opus_decoded", opus);
            if o.format != ObjectFormat::RawPcm {
                has(
                    o.equals_inputs_concat_in_stored_order.is_some(),
                    "equals_inputs_concat_in_stored_order",
                    false,
                );
            }
            if !encrypted {
                has(
                    o.frames_equal_inputs_in_stored_order.is_some(),
                    "frames_equal_inputs_in_stored_order",
                    false,
                );
            }
            if o.source.writer == Writer::Harness {
                assert!(o.source.level.is_none() && o.source.note.is_some());
            } else {
                assert!(o.source.level.is_some() && o.source.note.is_none());
            }
        }
    }
}

#[test]
fn raw_objects_equal_their_concatenated_inputs() {
    let mut checked = 0;
    for s in scenarios() {
        for o in &s.objects {
            let Some(claim) = o.equals_inputs_concat_in_stored_order else {
                continue;
            };
            let bytes = s.object_bytes(&o.name).expect("object readable");
            let inputs = s
                .inputs_concat(&o.source.chunk_ids)
                .expect("inputs regenerate");
            assert_eq!(bytes == inputs, claim, "{} {}", s.name, o.name);
            assert_eq!(sha256_hex(&inputs) == o.sha256, claim);
            checked += 1;
        }
    }
    // B's 12-chunk .batch.bin, E's 4-chunk range .batch.bin and four legacy .bin singles.
    assert_eq!(checked, 6);
}

/// Walks the big-endian length-prefixed frames of an `.enc`-family object.
fn walk_frames(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut frames = Vec::new();
    let mut offset = 0usize;
    while let Some(prefix) = bytes.get(offset..offset + 4) {
        let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes"));
        frames.push((offset as u64, u64::from(len)));
        offset += 4 + len as usize;
    }
    frames
}

#[test]
fn encrypted_objects_have_the_recorded_frame_layout() {
    let mut checked = 0;
    for s in scenarios() {
        for o in &s.objects {
            let Some(frames) = &o.frames else { continue };
            let bytes = s.object_bytes(&o.name).expect("object readable");
            let walked = walk_frames(&bytes);
            let recorded: Vec<(u64, u64)> = frames
                .iter()
                .map(|f| (f.offset(), f.length_field()))
                .collect();
            assert_eq!(walked, recorded, "{} {}", s.name, o.name);

            let mut plaintext_total = 0;
            for (i, f) in frames.iter().enumerate() {
                match f {
                    Frame::Decrypted {
                        offset,
                        length_field,
                        plaintext_len,
                        plaintext_sha256,
                        consumed,
                    } => {
                        assert_eq!(*length_field, 12 + plaintext_len + 16);
                        assert_eq!(*consumed, 4 + length_field);
                        assert!(offset + consumed <= o.size);
                        plaintext_total += plaintext_len;
                        if o.frames_equal_inputs_in_stored_order == Some(true) {
                            let id = &o.source.chunk_ids[i];
                            let chunk = s.chunk(id).expect("chunk exists");
                            assert_eq!(plaintext_sha256, &chunk.sha256, "{} frame {i}", o.name);
                            assert_eq!(*plaintext_len, chunk.len);
                        }
                    }
                    Frame::Failed {
                        offset,
                        length_field,
                        ..
                    } => {
                        // The only failing frame in A–E is E's truncated legacy `.enc`.
                        assert!(offset + 4 + length_field > o.size, "{}", o.name);
                    }
                }
            }
            let all_ok = frames.iter().all(|f| matches!(f, Frame::Decrypted { .. }));
            if all_ok {
                let last = walked.last().expect("at least one frame");
                assert_eq!(
                    last.0 + 4 + last.1,
                    o.size,
                    "{}: frames fill the object",
                    o.name
                );
                assert_eq!(o.plaintext_len, Some(plaintext_total));
            }
            match o
                .omi_decrypt_audio_file
                .as_ref()
                .expect("encrypted objects record it")
            {
                OmiDecryptResult::Ok { len, sha256 } => {
                    assert!(all_ok);
                    assert_eq!(Some(*len), o.plaintext_len);
                    assert_eq!(Some(sha256), o.plaintext_sha256.as_ref());
                }
                OmiDecryptResult::Err { .. } => assert!(!all_ok),
            }
            if o.frames_equal_inputs_in_stored_order.is_some() {
                assert_eq!(frames.len(), o.source.chunk_ids.len().max(1));
            }
            checked += 1;
        }
    }
    // C: 1, D: 3, E: .enc, corrupt .enc, .batch.enc, .opus.enc, speaker-embeddings.
    assert_eq!(checked, 9);
}

#[test]
fn opus_containers_have_the_recorded_structure() {
    let mut checked = 0;
    for s in scenarios() {
        for o in s.objects.iter().filter(|o| o.format == ObjectFormat::Opus) {
            let info = o.opus.expect("opus info");
            let bytes = s.object_bytes(&o.name).expect("object readable");
            let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
            let packet_count = u64::from(le32(0));
            let original_pcm_len = u64::from(le32(4));
            let mut offset = 8usize;
            let mut lens = Vec::new();
            for _ in 0..packet_count {
                let len = u16::from_le_bytes(bytes[offset..offset + 2].try_into().expect("2"));
                offset += 2 + usize::from(len);
                assert!(offset <= bytes.len(), "{}: packet past the end", o.name);
                lens.push(u64::from(len));
            }
            assert_eq!(packet_count, info.packet_count, "{}", o.name);
            assert_eq!(original_pcm_len, info.original_pcm_len);
            assert_eq!(lens.iter().min().copied(), Some(info.packet_len_min));
            assert_eq!(lens.iter().max().copied(), Some(info.packet_len_max));
            assert_eq!(bytes.len() as u64, info.container_len);
            assert_eq!((bytes.len() - offset) as u64, info.trailing_bytes);
            // 20 ms frames of 640 bytes: 250 packets per 5 s chunk.
            assert_eq!(packet_count, original_pcm_len.div_ceil(640));
            let chunk = s.chunk(&o.source.chunk_ids[0]).expect("chunk exists");
            assert_eq!(original_pcm_len, chunk.len);
            checked += 1;
        }
    }
    // A: 12, E: 4 (3 standard singles plus the dual-format timestamp).
    assert_eq!(checked, 16);
}

#[test]
fn listed_entries_describe_bucket_objects() {
    for s in scenarios() {
        let objects = objects_by_name(&s);
        assert!(!s.list.is_empty(), "scenario {}", s.name);
        for (conv, entries) in &s.list {
            assert!(!entries.is_empty());
            for pair in entries.windows(2) {
                assert!(
                    pair[0].timestamp <= pair[1].timestamp,
                    "{conv}: sorted by timestamp"
                );
            }
            for e in entries {
                let o = objects.get(e.path.as_str()).expect("listed object exists");
                assert_eq!(e.size, o.size, "{}", e.path);
                assert_eq!(e.is_batch, e.path.contains(".batch."), "{}", e.path);
                let prefix = format!("chunks/oracle-uid/{conv}/{:.3}", e.timestamp);
                assert!(e.path.starts_with(&prefix), "{} vs {prefix}", e.path);
            }
        }
    }
}

#[test]
fn timestamps_agree_with_their_ts3_spelling() {
    // The JSON floats and the `%.3f` strings must name the same f64 (correctly rounded parsing)
    // and Rust's `{:.3}` must print them the way Python's `%.3f` did.
    let same = |ts: f64, ts3: &str, ctx: &str| {
        assert_eq!(ts3.parse::<f64>().expect("ts3 parses"), ts, "{ctx}");
        assert_eq!(format!("{ts:.3}"), ts3, "{ctx}");
    };
    let mut checked = 0;
    for s in scenarios() {
        for c in &s.chunks.chunks {
            same(c.timestamp, &c.ts3, &c.id);
            checked += 1;
        }
        for d in &s.downloads {
            assert_eq!(d.timestamps.len(), d.timestamps_ts3.len(), "{}", d.case);
            for (ts, ts3) in d.timestamps.iter().zip(&d.timestamps_ts3) {
                same(*ts, ts3, &d.case);
                checked += 1;
            }
        }
        for d in &s.deletes {
            let (Some(tss), Some(ts3s)) = (&d.timestamps, &d.timestamps_ts3) else {
                assert!(d.timestamps.is_none() && d.timestamps_ts3.is_none());
                continue;
            };
            assert_eq!(tss.len(), ts3s.len(), "{}", d.case);
            for (ts, ts3) in tss.iter().zip(ts3s) {
                same(*ts, ts3, &d.case);
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} timestamps checked");
}

#[test]
fn calls_reference_chunks_and_objects() {
    for s in scenarios() {
        let objects = objects_by_name(&s);
        let chunk_ids: HashSet<&str> = s.chunks.chunks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            chunk_ids.len(),
            s.chunks.chunks.len(),
            "{}: unique ids",
            s.name
        );
        assert!(!s.calls.is_empty());
        for call in &s.calls {
            match call {
                Call::UploadAudioChunk(c) => {
                    assert!(chunk_ids.contains(c.chunk.as_str()));
                    assert!(objects.contains_key(c.returned.as_str()), "{}", c.returned);
                    assert_eq!(c.db_reads, u32::from(c.data_protection_level_arg.is_none()));
                }
                Call::UploadAudioChunksBatch(c) => {
                    assert_eq!(
                        c.chunks_in_call_order.len(),
                        c.timestamps_in_call_order.len()
                    );
                    let mut call_order = c.chunks_in_call_order.clone();
                    let mut stored = c.chunks_in_stored_order.clone();
                    call_order.sort();
                    stored.sort();
                    assert_eq!(call_order, stored, "stored order is a permutation");
                    for name in &c.returned {
                        let o = objects.get(name.as_str()).expect("returned object exists");
                        assert_eq!(o.source.chunk_ids, c.chunks_in_stored_order);
                    }
                    assert_eq!(c.db_reads, u32::from(c.data_protection_level_arg.is_none()));
                }
                Call::HarnessPutObject(p) => {
                    let o = objects.get(p.name.as_str()).expect("placed object exists");
                    assert_eq!((o.size, &o.sha256), (p.len, &p.sha256), "{}", p.name);
                    assert_eq!(o.source.writer, Writer::Harness);
                }
            }
        }
        for o in &s.objects {
            for id in &o.source.chunk_ids {
                assert!(chunk_ids.contains(id.as_str()), "{}: {id}", o.name);
            }
        }
        assert!(s.checks.iter().all(|c| c.ok), "{}: checks.json", s.name);
    }
}

#[test]
fn download_cases_are_well_formed() {
    for s in scenarios() {
        let conversations: BTreeSet<&str> = s.list.keys().map(String::as_str).collect();
        assert!(!s.downloads.is_empty());
        for d in &s.downloads {
            assert_eq!(d.sample_rate, 16_000);
            assert!(
                conversations.contains(d.conversation_id.as_str()),
                "{}",
                d.case
            );
            match &d.result {
                DownloadResult::Audio {
                    len,
                    sha256,
                    samples_equivalent_seconds,
                    ..
                } => {
                    assert_eq!(*samples_equivalent_seconds, *len as f64 / 32_000.0);
                    assert_eq!(sha256.len(), 64);
                }
                DownloadResult::Failed { error_message, .. } => {
                    let expected =
                        format!("No chunks found for conversation {}", d.conversation_id);
                    assert_eq!(error_message, &expected);
                }
            }
        }
    }
}

#[test]
fn delete_cases_partition_the_bucket_and_count_their_ops() {
    for s in scenarios() {
        let all: BTreeSet<String> = s
            .bucket_object_names()
            .expect("bucket lists")
            .into_iter()
            .collect();
        assert!(!s.deletes.is_empty());
        for d in &s.deletes {
            assert!(d.result.ok, "{}", d.case);
            let deleted: BTreeSet<String> = d.deleted.iter().cloned().collect();
            let remaining: BTreeSet<String> = d.remaining.iter().cloned().collect();
            assert!(deleted.is_disjoint(&remaining), "{}", d.case);
            let union: BTreeSet<String> = deleted.union(&remaining).cloned().collect();
            assert_eq!(union, all, "{}: deleted + remaining = bucket", d.case);

            let count = |k| d.ops_in_order.iter().filter(|op| op.kind == k).count() as u32;
            assert_eq!(count(StoreOpKind::Exists), d.op_counts.exists, "{}", d.case);
            assert_eq!(count(StoreOpKind::List), d.op_counts.list, "{}", d.case);
            assert_eq!(count(StoreOpKind::Delete), d.op_counts.delete, "{}", d.case);
            let deletes: BTreeSet<String> = d
                .ops_in_order
                .iter()
                .filter(|op| op.kind == StoreOpKind::Delete)
                .map(|op| op.name.clone())
                .collect();
            assert_eq!(deletes, deleted, "{}", d.case);
            if d.function == DeleteFn::DeleteAudioChunks {
                let n = d.timestamps.as_ref().map_or(0, Vec::len) as u32;
                assert_eq!(
                    d.op_counts.exists,
                    6 * n,
                    "{}: six probes per timestamp",
                    d.case
                );
            }
        }
    }
}

#[test]
fn copy_bucket_to_tempdir_copies_every_object() {
    let s = Scenario::load("E").expect("scenario E loads");
    let tmp = s.copy_bucket_to_tempdir().expect("copy");
    let copied = omi::list_objects(tmp.path()).expect("copy lists");
    assert_eq!(copied, s.bucket_object_names().expect("bucket lists"));
    for o in &s.objects {
        let bytes = std::fs::read(tmp.path().join(&o.name)).expect("copied object readable");
        assert_eq!(sha256_hex(&bytes), o.sha256, "{}", o.name);
    }
    // The copy is writable, so delete cases can run on it.
    let victim = tmp.path().join(&s.objects[0].name);
    std::fs::remove_file(&victim).expect("copy is writable");
    assert_eq!(
        omi::list_objects(tmp.path()).expect("copy lists").len(),
        s.objects.len() - 1
    );
}
