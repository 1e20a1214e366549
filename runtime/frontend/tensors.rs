//! Turns a [`Window`] (raw frames, 8-bit or float flow, raw log-mel) into the model's
//! normalised input tensors, in manifest order, reusing the tensors' buffers.

use crate::backend::Tensor;
use crate::clock::Window;
use crate::frontend::image::ImageNormalize;
use crate::model::{Frontend, Manifest};
use crate::{err, Result};

/// Fills model inputs from windows; holds one tensor per manifest input.
#[derive(Debug)]
pub struct InputAssembler {
    specs: Vec<(Frontend, ImageNormalize)>,
    mel: (f32, f32),
    width: usize,
    height: usize,
    tensors: Vec<Tensor>,
}

impl InputAssembler {
    /// Prepares buffers for `manifest`'s inputs.
    pub fn new(manifest: &Manifest) -> InputAssembler {
        let (w, h) = manifest.frame_size();
        let mel = manifest.logmel().map_or((0.0, 1.0), |l| (l.mean, l.std));
        InputAssembler {
            specs: manifest
                .inputs
                .iter()
                .map(|i| (i.frontend, i.normalize3()))
                .collect(),
            mel,
            width: w as usize,
            height: h as usize,
            tensors: manifest
                .inputs
                .iter()
                .map(|i| Tensor::zeros(&i.shape))
                .collect(),
        }
    }

    /// Normalises `window` into the input tensors and returns them.
    pub fn fill(&mut self, window: &Window) -> Result<&[Tensor]> {
        let px = self.width * self.height;
        for ((frontend, norm), tensor) in self.specs.iter().zip(self.tensors.iter_mut()) {
            match frontend {
                Frontend::Image => {
                    let need = tensor.data.len() / (3 * px) * 3 * px;
                    if window.frames.len() != need {
                        return Err(err!(
                            Model,
                            "window has {} frame bytes, image input needs {need}",
                            window.frames.len()
                        ));
                    }
                    for (rgb, out) in window
                        .frames
                        .chunks_exact(3 * px)
                        .zip(tensor.data.chunks_exact_mut(3 * px))
                    {
                        norm.rgb_to_chw(rgb, self.width, self.height, out)?;
                    }
                }
                Frontend::Flow if !window.flow_uv.is_empty() => {
                    normalize_planes(
                        &window.flow_uv,
                        &mut tensor.data,
                        2,
                        px,
                        norm,
                        "float flow",
                        |v| v,
                    )?;
                }
                Frontend::Flow => {
                    normalize_planes(&window.flow, &mut tensor.data, 3, px, norm, "flow", |v| {
                        v as f32 / 255.0
                    })?;
                }
                Frontend::Logmel => {
                    if window.logmel.len() != tensor.data.len() {
                        return Err(err!(
                            Model,
                            "window has {} log-mel values, audio input needs {}",
                            window.logmel.len(),
                            tensor.data.len()
                        ));
                    }
                    let (m, s) = self.mel;
                    for (o, &v) in tensor.data.iter_mut().zip(&window.logmel) {
                        *o = (v - m) / s;
                    }
                }
            }
        }
        Ok(&self.tensors)
    }
}

/// `(value(v) - mean[c]) / std[c]` for planar fields of `channels` planes of `px`
/// values each, `src` and `out` laid out alike; `what` names the window part in errors.
fn normalize_planes<T: Copy>(
    src: &[T],
    out: &mut [f32],
    channels: usize,
    px: usize,
    norm: &ImageNormalize,
    what: &str,
    value: impl Fn(T) -> f32,
) -> Result<()> {
    if src.len() != out.len() {
        return Err(err!(
            Model,
            "window has {} {what} values, flow input needs {}",
            src.len(),
            out.len()
        ));
    }
    let plane = channels * px;
    for (field, out) in src.chunks_exact(plane).zip(out.chunks_exact_mut(plane)) {
        for c in 0..channels {
            let (m, s) = (norm.mean[c], norm.std[c]);
            let src = &field[c * px..(c + 1) * px];
            for (o, &v) in out[c * px..(c + 1) * px].iter_mut().zip(src) {
                *o = (value(v) - m) / s;
            }
        }
    }
    Ok(())
}
