//! The builder's settings checked before anything starts: every number in range, every
//! label sentence non-empty and of sane length. A value out of range is refused with a
//! message naming the setting, the value and the range, never clamped silently.

use super::RuntimeBuilder;
use crate::{err, Result};
use std::time::Duration;

/// Most threads tract may be given for one inference.
pub const MAX_THREADS: usize = 256;
/// Largest hop, in frames.
pub const MAX_HOP_FRAMES: usize = 10_000;
/// Largest output channel.
pub const MAX_OUTPUT_CAPACITY: usize = 1 << 20;
/// Longest a live window may wait for its audio.
pub const MAX_AUDIO_WAIT: Duration = Duration::from_secs(10);
/// Most label sentences added at run time.
pub const MAX_LABELS: usize = 10_000;
/// Longest label sentence, in bytes (MiniLM reads at most 256 tokens anyway).
pub const MAX_LABEL_BYTES: usize = 1_000;

impl RuntimeBuilder {
    /// Checks every setting given to the builder; see the module docs.
    pub(super) fn check(&self) -> Result<()> {
        let threads = self.backend.threads;
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(err!(
                Config,
                "threads = {threads}: must be between 1 and {MAX_THREADS}"
            ));
        }
        if let Some(hop) = self.hop_frames {
            if !(1..=MAX_HOP_FRAMES).contains(&hop) {
                return Err(err!(
                    Config,
                    "hop_frames = {hop}: must be between 1 and {MAX_HOP_FRAMES}"
                ));
            }
        }
        if !(1..=MAX_OUTPUT_CAPACITY).contains(&self.capacity) {
            return Err(err!(
                Config,
                "output_capacity = {}: must be between 1 and {MAX_OUTPUT_CAPACITY}",
                self.capacity
            ));
        }
        if self.audio_wait > MAX_AUDIO_WAIT {
            return Err(err!(
                Config,
                "audio_wait = {:?}: must be at most {MAX_AUDIO_WAIT:?}",
                self.audio_wait
            ));
        }
        check_sentences(&self.labels)
    }
}

/// Label sentences added at run time: at most [`MAX_LABELS`], each non-empty (after
/// trimming) and at most [`MAX_LABEL_BYTES`] long.
///
/// # Errors
/// [`Config`](crate::ErrorKind::Config) naming the first sentence that breaks a rule.
pub fn check_sentences(sentences: &[String]) -> Result<()> {
    if sentences.len() > MAX_LABELS {
        return Err(err!(
            Config,
            "labels: {} sentences, at most {MAX_LABELS} can be added",
            sentences.len()
        ));
    }
    for (i, s) in sentences.iter().enumerate() {
        if s.trim().is_empty() {
            return Err(err!(
                Config,
                "labels: sentence {} is empty; a label must say something (e.g. \"a disc falls with a thud\")",
                i + 1
            ));
        }
        if s.len() > MAX_LABEL_BYTES {
            return Err(err!(
                Config,
                "labels: sentence {} is {} bytes long, at most {MAX_LABEL_BYTES}",
                i + 1,
                s.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Runtime;

    fn refused(b: RuntimeBuilder, what: &str) {
        let e = b.check().expect_err(what);
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.message().contains(what), "{e}");
    }

    #[test]
    fn out_of_range_settings_are_refused_by_name() {
        Runtime::builder().check().expect("defaults are valid");
        refused(Runtime::builder().threads(0), "threads");
        refused(Runtime::builder().threads(MAX_THREADS + 1), "threads");
        refused(Runtime::builder().hop_frames(0), "hop_frames");
        refused(Runtime::builder().output_capacity(0), "output_capacity");
        refused(
            Runtime::builder().audio_wait(Duration::from_secs(3600)),
            "audio_wait",
        );
        refused(Runtime::builder().labels([""]), "labels");
        refused(Runtime::builder().labels(["ok", "   "]), "sentence 2");
        refused(Runtime::builder().labels(["x".repeat(1001)]), "labels");
        Runtime::builder()
            .threads(4)
            .hop_frames(8)
            .labels(["a disc falls with a thud"])
            .check()
            .expect("valid");
    }
}
