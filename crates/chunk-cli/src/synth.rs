//! Procedural speech-like audio for the demo: voiced syllables with formants, words, phrases
//! and pauses, over a faint noise floor. Deterministic for a given seed, streamed chunk by chunk.
//!
//! The source is a band-limited-enough pulse train at a wandering pitch (the voice's f0 with
//! intonation), shaped by three two-pole resonators at vowel formants that change per syllable,
//! under a raised-cosine syllable envelope. Syllables form words (short gaps), words form phrases
//! (longer gaps), and phrases are separated by pauses of up to a few seconds — so the audio has
//! the silences a real recording has, which is what compression and gap handling see.

use std::f64::consts::PI;

/// A small deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// Vowel formants (F1, F2, F3) in Hz, roughly those of an adult voice.
const VOWELS: [[f64; 3]; 6] = [
    [730.0, 1090.0, 2440.0], // a
    [530.0, 1840.0, 2480.0], // e
    [270.0, 2290.0, 3010.0], // i
    [570.0, 840.0, 2410.0],  // o
    [300.0, 870.0, 2240.0],  // u
    [490.0, 1350.0, 1690.0], // schwa
];

/// A two-pole resonator (bandpass-like) at a centre frequency and bandwidth.
#[derive(Debug, Clone, Default)]
struct Resonator {
    a1: f64,
    a2: f64,
    gain: f64,
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn tune(&mut self, freq: f64, bandwidth: f64, rate: f64) {
        let r = (-PI * bandwidth / rate).exp();
        self.a1 = 2.0 * r * (2.0 * PI * freq / rate).cos();
        self.a2 = -r * r;
        self.gain = 1.0 - r;
    }

    fn step(&mut self, x: f64) -> f64 {
        let y = self.gain * x + self.a1 * self.y1 + self.a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// What the generator is producing right now.
#[derive(Debug, Clone, Copy)]
enum Segment {
    /// A voiced syllable: `len` samples, `pos` done.
    Syllable { len: u64, pos: u64 },
    /// Silence (noise floor only) for `len` samples.
    Pause { len: u64 },
}

/// A speech-like PCM16 mono generator.
#[derive(Debug, Clone)]
pub(crate) struct Speech {
    rng: Rng,
    rate: f64,
    /// The voice's base pitch in Hz.
    f0: f64,
    phase: f64,
    formants: [Resonator; 3],
    segment: Segment,
    /// Syllables left in the current word, words left in the current phrase.
    syllables_left: u32,
    words_left: u32,
    /// Loudness of the current phrase.
    level: f64,
    /// Pitch drift of the current syllable (semitone-ish factor from start to end).
    glide: f64,
    /// Samples generated so far.
    produced: u64,
}

impl Speech {
    /// A voice at `sample_rate` whose pitch and rhythm come from `seed`.
    pub(crate) fn new(seed: u64, sample_rate: u32) -> Speech {
        let mut rng = Rng(seed ^ 0xC0FF_EE00_5EED_0001);
        let f0 = rng.range(95.0, 230.0);
        let mut speech = Speech {
            rng,
            rate: f64::from(sample_rate.max(1)),
            f0,
            phase: 0.0,
            formants: Default::default(),
            segment: Segment::Pause { len: 0 },
            syllables_left: 0,
            words_left: 0,
            level: 0.5,
            glide: 1.0,
            produced: 0,
        };
        // Start with a short lead-in silence, as a recording does.
        let lead_in = speech.rng.range(0.2, 0.8);
        speech.segment = Segment::Pause {
            len: speech.samples(lead_in),
        };
        speech
    }

    fn samples(&self, seconds: f64) -> u64 {
        (seconds * self.rate).round().max(1.0) as u64
    }

    /// Picks what follows the segment that just ended.
    fn next_segment(&mut self) {
        if self.syllables_left == 0 {
            if self.words_left == 0 {
                // New phrase after a pause.
                self.words_left = 2 + (self.rng.next_u64() % 9) as u32;
                self.level = self.rng.range(0.35, 0.8);
                let long = self.rng.unit() < 0.15;
                let pause = if long {
                    self.rng.range(1.5, 5.0)
                } else {
                    self.rng.range(0.3, 1.2)
                };
                self.syllables_left = 1 + (self.rng.next_u64() % 4) as u32;
                self.words_left -= 1;
                self.segment = Segment::Pause {
                    len: self.samples(pause),
                };
                return;
            }
            // Next word after a short gap.
            self.words_left -= 1;
            self.syllables_left = 1 + (self.rng.next_u64() % 4) as u32;
            let gap = self.rng.range(0.04, 0.15);
            self.segment = Segment::Pause {
                len: self.samples(gap),
            };
            return;
        }
        self.syllables_left -= 1;
        let vowel = VOWELS[(self.rng.next_u64() % VOWELS.len() as u64) as usize];
        let rate = self.rate;
        for (resonator, (freq, bandwidth)) in self
            .formants
            .iter_mut()
            .zip(vowel.iter().zip([90.0, 110.0, 170.0]))
        {
            // Keep every formant below Nyquist whatever the rate.
            resonator.tune(freq.min(rate * 0.45), bandwidth, rate);
        }
        self.glide = self.rng.range(0.85, 1.15);
        let syllable = self.rng.range(0.12, 0.32);
        self.segment = Segment::Syllable {
            len: self.samples(syllable),
            pos: 0,
        };
    }

    fn sample(&mut self) -> i16 {
        let noise = (self.rng.unit() - 0.5) * 40.0;
        let voiced = match &mut self.segment {
            Segment::Pause { len } if *len > 0 => {
                *len -= 1;
                0.0
            }
            Segment::Syllable { len, pos } if *pos < *len => {
                let t = *pos as f64 / *len as f64;
                *pos += 1;
                let envelope = 0.5 - 0.5 * (2.0 * PI * t).cos();
                let pitch = self.f0 * (1.0 + (self.glide - 1.0) * t);
                self.phase += pitch / self.rate;
                if self.phase >= 1.0 {
                    self.phase -= 1.0;
                }
                // A sawtooth glottal source, shaped by the formants.
                let source = 2.0 * self.phase - 1.0;
                let shaped: f64 = self.formants.iter_mut().map(|r| r.step(source)).sum();
                shaped * envelope * self.level * 9_000.0
            }
            _ => {
                self.next_segment();
                0.0
            }
        };
        self.produced += 1;
        (voiced + noise).round().clamp(-32_768.0, 32_767.0) as i16
    }

    /// The next `samples` samples as PCM16LE bytes.
    pub(crate) fn next_pcm(&mut self, samples: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(samples * 2);
        for _ in 0..samples {
            out.extend_from_slice(&self.sample().to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(pcm: &[u8]) -> f64 {
        let samples: Vec<f64> = pcm
            .chunks_exact(2)
            .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
            .collect();
        (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn deterministic_per_seed_and_different_across_seeds() {
        let a = Speech::new(7, 16_000).next_pcm(80_000);
        let b = Speech::new(7, 16_000).next_pcm(80_000);
        let c = Speech::new(8, 16_000).next_pcm(80_000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Chunked generation equals one long run.
        let mut chunked = Speech::new(7, 16_000);
        let mut joined = chunked.next_pcm(30_000);
        joined.extend(chunked.next_pcm(50_000));
        assert_eq!(joined, a);
    }

    #[test]
    fn has_speech_and_pauses() {
        let pcm = Speech::new(1, 16_000).next_pcm(16_000 * 60);
        // 100 ms windows: some loud (speech), some at the noise floor (pauses).
        let windows: Vec<f64> = pcm.chunks(3_200).map(rms).collect();
        let loud = windows.iter().filter(|&&r| r > 500.0).count();
        let quiet = windows.iter().filter(|&&r| r < 30.0).count();
        assert!(loud > windows.len() / 5, "loud {loud} of {}", windows.len());
        assert!(
            quiet > windows.len() / 10,
            "quiet {quiet} of {}",
            windows.len()
        );
        // Never clipping all the time.
        let clipped = pcm
            .chunks_exact(2)
            .filter(|b| i16::from_le_bytes([b[0], b[1]]).unsigned_abs() >= 32_767)
            .count();
        assert!(clipped < pcm.len() / 2 / 1000, "clipped {clipped}");
    }
}
