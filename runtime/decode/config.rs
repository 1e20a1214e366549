//! Decoder settings as a model bundle's `[decoder]` table declares them (the manifest
//! re-exports these types): softmax or sigmoid, smoothing, thresholds, hysteresis.

use serde::{Deserialize, Serialize};

/// How the output scores are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderKind {
    /// Single-label: softmax over classes.
    Softmax,
    /// Multi-label: an independent sigmoid per class.
    Sigmoid,
}

/// Decoder settings: smoothing, thresholds and hysteresis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    /// Softmax or sigmoid.
    pub kind: DecoderKind,
    /// A label that never becomes an event (e.g. `background`).
    #[serde(default)]
    pub background: Option<String>,
    /// Labels reported per prediction.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Moving-average length over windows (1 = none).
    #[serde(default = "default_smoothing")]
    pub smoothing: usize,
    /// Smoothed score at which an event starts.
    pub enter: f32,
    /// Smoothed score below which an event ends (<= enter).
    pub exit: f32,
    /// Minimum duration of an event in seconds; shorter activity is not reported.
    #[serde(default)]
    pub min_duration_s: f64,
}

fn default_top_k() -> usize {
    3
}
fn default_smoothing() -> usize {
    1
}
