//! The committed speech fixture is 16 kHz mono 16-bit PCM, about 60 s long, with pauses.

use chunkvault_tests::speech::{self, WAVE_FORMAT_PCM};

#[test]
fn speech_fixture_is_16khz_mono_16bit_and_about_60s() {
    let bytes = std::fs::read(speech::speech_60s_path()).expect("speech-60s.wav readable");
    let wav = speech::parse_wav(&bytes).expect("valid WAV");
    assert_eq!(wav.format.format_tag, WAVE_FORMAT_PCM);
    assert_eq!(wav.format.sample_rate, 16_000);
    assert_eq!(wav.format.channels, 1);
    assert_eq!(wav.format.bits_per_sample, 16);
    let secs = wav.duration_secs();
    assert!((57.0..=63.0).contains(&secs), "duration {secs} s");

    let pcm = speech::pcm_60s().expect("pcm_60s loads");
    assert_eq!(pcm, wav.data);
    assert_eq!(pcm.len() % 2, 0);
}

#[test]
fn speech_fixture_alternates_speech_and_pauses() {
    let pcm = speech::pcm_60s().expect("pcm_60s loads");
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    // Classify 100 ms windows by peak amplitude.
    let window = 1_600;
    let peaks: Vec<i32> = samples
        .chunks(window)
        .map(|w| w.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0))
        .collect();
    let loud = peaks.iter().filter(|&&p| p > 3_000).count();
    let quiet = peaks.iter().filter(|&&p| p < 100).count();
    let total = peaks.len();
    assert!(
        loud * 2 > total,
        "mostly speech: {loud} of {total} windows loud"
    );
    assert!(
        quiet * 10 > total,
        "real pauses: {quiet} of {total} windows near-silent"
    );
    // At least one pause of a second or more, and several of 300 ms or more.
    let mut runs = Vec::new();
    let mut run = 0;
    for &p in &peaks {
        if p < 100 {
            run += 1;
        } else {
            if run > 0 {
                runs.push(run);
            }
            run = 0;
        }
    }
    assert!(
        runs.iter().any(|&r| r >= 10),
        "a pause of at least 1 s: {runs:?}"
    );
    assert!(
        runs.iter().filter(|&&r| r >= 3).count() >= 5,
        "pauses: {runs:?}"
    );
    // Not clipped.
    let clipped = samples
        .iter()
        .filter(|&&s| s == i16::MAX || s == i16::MIN)
        .count();
    assert!(clipped * 1_000 < samples.len(), "{clipped} clipped samples");
}
