//! Turns a [`Window`] (raw frames, 8-bit or float flow, raw log-mel) into the model's
//! normalised input tensors, in manifest order, reusing the tensors' buffers.

use crate::backend::Tensor;
use crate::frontend::image::ImageNormalize;
use crate::model::{Frontend, Manifest};
use crate::window::{Window, WindowFlow};
use crate::{err, Result};

/// Fills model inputs from windows; holds one tensor per manifest input.
#[derive(Debug)]
pub struct InputAssembler {
    specs: Vec<(Frontend, ImageNormalize)>,
    mel: (f32, f32),
    /// The model was trained with modality dropout: missing audio is given as absent
    /// (zero after normalisation, as in training) instead of as silence.
    audio_optional: bool,
    width: usize,
    height: usize,
    /// Values of each input (the tensor sizes).
    lens: Vec<usize>,
    tensors: Vec<Tensor>,
}

impl InputAssembler {
    /// Prepares buffers for `manifest`'s inputs.
    pub fn new(manifest: &Manifest) -> InputAssembler {
        let (w, h) = manifest.frame_size();
        let mel = manifest.logmel().map_or((0.0, 1.0), |l| (l.mean, l.std));
        InputAssembler {
            audio_optional: manifest.window.audio_optional,
            specs: manifest
                .inputs
                .iter()
                .map(|i| (i.frontend, i.normalize3()))
                .collect(),
            mel,
            width: w as usize,
            height: h as usize,
            lens: manifest
                .inputs
                .iter()
                .map(|i| i.shape.iter().product())
                .collect(),
            tensors: manifest
                .inputs
                .iter()
                .map(|i| Tensor::zeros(&i.shape))
                .collect(),
        }
    }

    /// Normalises `window` into the input tensors and returns them.
    ///
    /// # Errors
    /// As [`InputAssembler::fill_item`], for the first item that fails.
    pub fn fill(&mut self, window: &Window) -> Result<&[Tensor]> {
        let px = self.width * self.height;
        // Moved out and back (no allocation) so that `fill_item` can borrow `self`.
        let mut tensors = std::mem::take(&mut self.tensors);
        let mut result = Ok(());
        'inputs: for (k, tensor) in tensors.iter_mut().enumerate() {
            let item = match self.specs[k].0 {
                Frontend::Logmel => tensor.data.len(),
                Frontend::Flow if matches!(window.flow, WindowFlow::Float(_)) => 2 * px,
                _ => 3 * px,
            };
            for (n, out) in tensor.data.chunks_exact_mut(item).enumerate() {
                if let Err(e) = self.fill_item(k, window, n, out) {
                    result = Err(e);
                    break 'inputs;
                }
            }
        }
        self.tensors = tensors;
        result.map(|()| &self.tensors[..])
    }

    /// Whether `window`'s audio is given to the model as absent (zeros): the model is
    /// audio-optional and most of the window's audio is missing.
    pub(crate) fn audio_as_absent(&self, window: &Window) -> bool {
        self.audio_optional && window.audio_absent()
    }

    /// Normalises item `n` of input `k` (manifest order) of `window` into `out`: frame
    /// `n` (image), flow field `n` (flow), or the `out.len()` log-mel values from value
    /// `n * out.len()` on (logmel). [`fill`](Self::fill) does every item; staged models
    /// only the items their encoders have not seen.
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model) when the window's data does not have the size the
    /// input needs, or the item is beyond it.
    pub fn fill_item(&self, k: usize, window: &Window, n: usize, out: &mut [f32]) -> Result<()> {
        let (frontend, norm) = self
            .specs
            .get(k)
            .ok_or_else(|| err!(Model, "no model input {k}"))?;
        let px = self.width * self.height;
        let need = self.lens[k];
        let (have, what) = match (frontend, &window.flow) {
            (Frontend::Image, _) => (window.frames.len(), "frame bytes, image"),
            (Frontend::Flow, WindowFlow::Float(uv)) => (uv.len(), "float flow values, flow"),
            (Frontend::Flow, flow) => (flow.len(), "flow values, flow"),
            (Frontend::Logmel, _) => (window.logmel.len(), "log-mel values, audio"),
        };
        if have != need {
            return Err(err!(Model, "window has {have} {what} input needs {need}"));
        }
        let range = n * out.len()..(n + 1) * out.len();
        if range.end > have {
            return Err(err!(
                Model,
                "window has {have} {what} input item {n} of {} values is beyond it",
                out.len()
            ));
        }
        match (frontend, &window.flow) {
            (Frontend::Image, _) => {
                norm.rgb_to_chw(&window.frames[range], self.width, self.height, out)
            }
            (Frontend::Flow, WindowFlow::Float(uv)) => {
                normalize_planes(&uv[range], out, 2, px, norm, |v| v);
                Ok(())
            }
            (Frontend::Flow, WindowFlow::Mov(mov)) => {
                normalize_planes(&mov[range], out, 3, px, norm, |v| v as f32 / 255.0);
                Ok(())
            }
            // `have` is 0 and `need` is not (shapes are checked non-empty), so the
            // length check above has already refused this.
            (Frontend::Flow, WindowFlow::None) => Err(err!(Model, "window has no flow")),
            (Frontend::Logmel, _) if self.audio_as_absent(window) => {
                out.fill(0.0);
                Ok(())
            }
            (Frontend::Logmel, _) => {
                let (m, s) = self.mel;
                for (o, &v) in out.iter_mut().zip(&window.logmel[range]) {
                    *o = (v - m) / s;
                }
                Ok(())
            }
        }
    }
}

/// `(value(v) - mean[c]) / std[c]` for planar fields of `channels` planes of `px`
/// values each, `src` and `out` laid out alike (same length).
fn normalize_planes<T: Copy>(
    src: &[T],
    out: &mut [f32],
    channels: usize,
    px: usize,
    norm: &ImageNormalize,
    value: impl Fn(T) -> f32,
) {
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
}
