//! The audio format of a request: one sample rate and channel count for every object it
//! touches, read from the data (pack headers) or, for Omi objects, which carry none, from the
//! rate the call or the configuration gives. The one rule that downloads and compaction share.

use crate::error::ServiceError;

/// Sample rate and interleaved channels of PCM16 audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AudioFormat {
    /// Sample frames per second.
    pub(crate) rate: u32,
    /// Interleaved channels.
    pub(crate) channels: u8,
}

impl AudioFormat {
    /// Mono audio at `rate`: what an Omi object holds.
    pub(crate) fn mono(rate: u32) -> AudioFormat {
        AudioFormat { rate, channels: 1 }
    }
}

/// Collects the formats of a request's objects and fails on the first that disagrees.
#[derive(Debug, Default)]
pub(crate) struct FormatCheck {
    first: Option<(String, AudioFormat)>,
}

impl FormatCheck {
    /// Records that the object at `path` holds audio in `format`; an object whose format
    /// differs from the first one seen is [`ServiceError::MixedFormats`], naming both.
    pub(crate) fn see(&mut self, path: &str, format: AudioFormat) -> Result<(), ServiceError> {
        match &self.first {
            None => {
                self.first = Some((path.to_owned(), format));
                Ok(())
            }
            Some((_, seen)) if *seen == format => Ok(()),
            Some((first, seen)) => Err(ServiceError::MixedFormats {
                first: first.clone(),
                first_rate: seen.rate,
                first_channels: seen.channels,
                second: path.to_owned(),
                second_rate: format.rate,
                second_channels: format.channels,
            }),
        }
    }

    /// The format every object seen so far shares, or `None` when none was seen.
    pub(crate) fn format(&self) -> Option<AudioFormat> {
        self.first.as_ref().map(|(_, format)| *format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_format_rules_and_a_different_one_names_both_objects() {
        let mut check = FormatCheck::default();
        assert_eq!(check.format(), None);
        check.see("a.pack", AudioFormat::mono(48_000)).ok();
        assert!(check.see("b.pack", AudioFormat::mono(48_000)).is_ok());
        let mixed = check.see("c.bin", AudioFormat::mono(16_000));
        let text = mixed.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(text.contains("a.pack is 48000 Hz"), "{text}");
        assert!(text.contains("c.bin is 16000 Hz"), "{text}");
        let stereo = AudioFormat {
            rate: 48_000,
            channels: 2,
        };
        assert!(check.see("d.pack", stereo).is_err());
        assert_eq!(check.format(), Some(AudioFormat::mono(48_000)));
    }
}
