//! Synthetic audio-visual scenes with a ground-truth timeline: moving shapes and
//! synchronised sounds, deterministic from a seed. Used by tests, training
//! (`models/train/`) and the demo when no camera or microphone is present.
