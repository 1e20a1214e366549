//! (temporary, replaced by the frontend-audio branch)
#![allow(missing_docs)]
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageNormalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}
impl ImageNormalize {
    pub fn validate(&self) -> crate::Result<()> {
        Ok(())
    }
    pub fn rgb_to_chw(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
        out: &mut [f32],
    ) -> crate::Result<()> {
        let n = width * height;
        for c in 0..3 {
            for i in 0..n {
                out[c * n + i] = (rgb[i * 3 + c] as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        Ok(())
    }
}
