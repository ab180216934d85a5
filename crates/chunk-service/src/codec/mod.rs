//! Audio codecs the service encodes and decodes object payloads with.
//!
//! - [`opus`]: Omi's Opus container (`.opus`, the plaintext of `.opus.enc`) ⇄ PCM16LE, with
//!   Omi's exact encoder and decoder settings.

pub mod opus;
