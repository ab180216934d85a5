//! Omi v2 span metadata: any three values either give no span or a span whose metadata, as
//! written, parses back to the same span (and writing it again gives the same text).
#![no_main]

use chunk_format::span::{OmiSpan, SPAN_KEYS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Three values separated by newlines: start, samples, rate.
    let values: Vec<&str> = text.splitn(3, '\n').collect();
    let get = |key: &str| {
        SPAN_KEYS
            .iter()
            .position(|k| *k == key)
            .and_then(|i| values.get(i).copied())
    };
    if let Some(span) = OmiSpan::from_metadata(get) {
        let pairs = span.metadata();
        let back = OmiSpan::from_metadata(|key| {
            pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
        });
        assert_eq!(back, Some(span), "span did not round-trip");
        let again = back.map(|s| s.metadata());
        assert_eq!(again.as_ref(), Some(&pairs));
    }
});
