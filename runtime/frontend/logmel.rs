//! (temporary, replaced by the frontend-audio branch)
#![allow(missing_docs)]
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FbankConfig {
    pub sample_rate: u32,
    pub frame_length_ms: f32,
    pub frame_shift_ms: f32,
    pub num_mel_bins: usize,
}
pub struct LogMel {
    cfg: FbankConfig,
}
impl LogMel {
    pub fn new(cfg: &FbankConfig) -> crate::Result<Self> {
        Ok(LogMel { cfg: cfg.clone() })
    }
    pub fn num_bins(&self) -> usize {
        self.cfg.num_mel_bins
    }
    pub fn frame_len(&self) -> usize {
        400
    }
    pub fn frame_shift(&self) -> usize {
        160
    }
    pub fn push(&mut self, _samples: &[f32], _on_frame: &mut dyn FnMut(&[f32])) {}
    pub fn reset(&mut self) {}
}
