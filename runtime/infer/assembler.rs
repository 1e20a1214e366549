//! Turns a [`Window`] (raw frames, 8-bit or float flow, raw log-mel) into the model's
//! normalised input tensors, in manifest order and each input's layout (`NTCHW`,
//! `NCTHW`, `NTHWC`; log-mel `[T, M]` in any rank), reusing the tensors' buffers.

use crate::backend::Tensor;
use crate::frontend::image::ImageNormalize;
use crate::model::{FlowInput, Frontend, Layout, Manifest};
use crate::window::{Window, WindowFlow};
use crate::{err, Result};

/// How one input is filled.
#[derive(Debug)]
struct Spec {
    frontend: Frontend,
    layout: Layout,
    norm: ImageNormalize,
    /// Frames, fields or mel frames.
    steps: usize,
    /// Channels per frame or field.
    channels: usize,
}

/// Fills model inputs from windows; holds one tensor per manifest input.
#[derive(Debug)]
pub struct InputAssembler {
    specs: Vec<Spec>,
    mel: (f32, f32),
    /// Float flow: scale, clip and whether a magnitude plane follows dx and dy.
    flow: Option<FlowInput>,
    /// The model was trained with modality dropout: missing audio is given as absent
    /// (zero after normalisation, as in training) instead of as silence.
    audio_optional: bool,
    width: usize,
    height: usize,
    /// Values of each input (the tensor sizes).
    lens: Vec<usize>,
    tensors: Vec<Tensor>,
    /// One frame or field, for the inputs whose frames are not contiguous (`NCTHW`).
    scratch: Vec<f32>,
}

impl InputAssembler {
    /// Prepares buffers for `manifest`'s inputs.
    pub fn new(manifest: &Manifest) -> InputAssembler {
        let (w, h) = manifest.frame_size();
        let mel = manifest.logmel().map_or((0.0, 1.0), |l| (l.mean, l.std));
        let specs: Vec<Spec> = manifest
            .inputs
            .iter()
            .map(|i| Spec {
                frontend: i.frontend,
                layout: i.layout(),
                norm: i.normalize3(),
                steps: i.steps(),
                channels: i.frame_dims().0,
            })
            .collect();
        let scratch = if specs.iter().any(|s| s.layout == Layout::NCTHW) {
            3 * w as usize * h as usize
        } else {
            0
        };
        InputAssembler {
            audio_optional: manifest.window.audio_optional,
            specs,
            mel,
            flow: manifest.flow(),
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
            scratch: vec![0.0; scratch],
        }
    }

    /// Normalises `window` into the input tensors and returns them.
    ///
    /// # Errors
    /// As [`InputAssembler::fill_item`], for the first item that fails.
    pub fn fill(&mut self, window: &Window) -> Result<&[Tensor]> {
        // Moved out and back (no allocation) so that `fill_input` can borrow `self`.
        let mut tensors = std::mem::take(&mut self.tensors);
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut result = Ok(());
        for (k, tensor) in tensors.iter_mut().enumerate() {
            result = self.fill_input(k, window, &mut tensor.data, &mut scratch);
            if result.is_err() {
                break;
            }
        }
        self.tensors = tensors;
        self.scratch = scratch;
        result.map(|()| &self.tensors[..])
    }

    /// Normalises the whole of input `k` (manifest order) of `window` into `out` (the
    /// input's size), in its layout; `scratch` holds one frame for `NCTHW`.
    ///
    /// # Errors
    /// As [`InputAssembler::fill_item`].
    pub fn fill_input(
        &self,
        k: usize,
        window: &Window,
        out: &mut [f32],
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        let spec = self
            .specs
            .get(k)
            .ok_or_else(|| err!(Model, "no model input {k}"))?;
        if spec.frontend == Frontend::Logmel {
            return self.fill_item(k, window, 0, out);
        }
        let item = spec.channels * self.width * self.height;
        if spec.layout != Layout::NCTHW {
            for (n, out) in out.chunks_exact_mut(item).enumerate() {
                self.fill_item(k, window, n, out)?;
            }
            return Ok(());
        }
        // [1, C, T, H, W]: frame n's plane c goes to (c * T + n) * H * W.
        scratch.resize(item, 0.0);
        let px = self.width * self.height;
        for n in 0..spec.steps {
            self.fill_item(k, window, n, scratch)?;
            for c in 0..spec.channels {
                let at = (c * spec.steps + n) * px;
                let len = out.len();
                let dst = out
                    .get_mut(at..at + px)
                    .ok_or_else(|| err!(Model, "input {k}: {len} values, too few for its shape"))?;
                dst.copy_from_slice(&scratch[c * px..(c + 1) * px]);
            }
        }
        Ok(())
    }

    /// Whether `window`'s audio is given to the model as absent (zeros): the model is
    /// audio-optional and most of the window's audio is missing.
    pub(crate) fn audio_as_absent(&self, window: &Window) -> bool {
        self.audio_optional && window.audio_absent()
    }

    /// Normalises item `n` of input `k` (manifest order) of `window` into `out`: frame
    /// `n` (image) or flow field `n` (flow) as `[C, H, W]` (`[H, W, C]` for an `NTHWC`
    /// input), or the `out.len()` log-mel values from value `n * out.len()` on (logmel).
    /// [`fill`](Self::fill) does every item; staged models only the items their encoders
    /// have not seen.
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model) when the window's data does not have the size the
    /// input needs, or the item is beyond it.
    pub fn fill_item(&self, k: usize, window: &Window, n: usize, out: &mut [f32]) -> Result<()> {
        let spec = self
            .specs
            .get(k)
            .ok_or_else(|| err!(Model, "no model input {k}"))?;
        let px = self.width * self.height;
        let steps = spec.steps;
        // What the window holds for this input, and the values one item reads from it.
        let (have, need, src_item, what) = match (spec.frontend, &window.flow) {
            (Frontend::Image, _) => (
                window.frames.len(),
                steps * 3 * px,
                3 * px,
                "frame bytes, image",
            ),
            (Frontend::Flow, WindowFlow::Float(uv)) => {
                (uv.len(), steps * 2 * px, 2 * px, "float flow values, flow")
            }
            (Frontend::Flow, flow) => (flow.len(), steps * 3 * px, 3 * px, "flow values, flow"),
            (Frontend::Logmel, _) => (
                window.logmel.len(),
                self.lens[k],
                out.len(),
                "log-mel values, audio",
            ),
        };
        if have != need {
            return Err(err!(Model, "window has {have} {what} input needs {need}"));
        }
        let range = n * src_item..(n + 1) * src_item;
        let item_len = match spec.frontend {
            Frontend::Logmel => src_item,
            _ => spec.channels * px,
        };
        if range.end > have || out.len() != item_len {
            return Err(err!(
                Model,
                "window has {have} {what} input item {n} of {} values is beyond it",
                out.len()
            ));
        }
        let hwc = spec.layout == Layout::NTHWC;
        let norm = &spec.norm;
        match (spec.frontend, &window.flow) {
            (Frontend::Image, _) if hwc => {
                let (m, s) = (norm.mean, norm.std);
                for (o, (p, &v)) in out.iter_mut().zip(window.frames[range].iter().enumerate()) {
                    let c = p % 3;
                    *o = (f32::from(v) / 255.0 - m[c]) / s[c];
                }
                Ok(())
            }
            (Frontend::Image, _) => {
                norm.rgb_to_chw(&window.frames[range], self.width, self.height, out)
            }
            (Frontend::Flow, WindowFlow::Float(uv)) => {
                self.float_flow(&uv[range], out, spec, px);
                Ok(())
            }
            (Frontend::Flow, WindowFlow::Mov(mov)) => {
                normalize_planes(&mov[range], out, 3, px, norm, hwc, |v| v as f32 / 255.0);
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

    /// One float field (planes u, v) into `spec.channels` normalised planes: dx, dy
    /// (scaled, clipped) and, for `dxdy_magnitude`, the magnitude of the scaled vector
    /// (clipped).
    fn float_flow(&self, uv: &[f32], out: &mut [f32], spec: &Spec, px: usize) {
        let (scale, clip) = self
            .flow
            .as_ref()
            .map_or((1.0, None), |f| (f.scale, f.clip));
        let limit = |v: f32| clip.map_or(v, |b| v.clamp(-b, b));
        let (u, v) = uv.split_at(px);
        let (m, s) = (spec.norm.mean, spec.norm.std);
        let channels = spec.channels;
        let hwc = spec.layout == Layout::NTHWC;
        for p in 0..px {
            let (du, dv) = (u[p] * scale, v[p] * scale);
            let values = [limit(du), limit(dv), limit(du.hypot(dv))];
            for (c, &value) in values.iter().enumerate().take(channels) {
                let at = if hwc { p * channels + c } else { c * px + p };
                out[at] = (value - m[c]) / s[c];
            }
        }
    }
}

/// `(value(v) - mean[c]) / std[c]` for one planar field of `channels` planes of `px`
/// values, written planar (`out` as `src`) or interleaved (`hwc`).
fn normalize_planes<T: Copy>(
    src: &[T],
    out: &mut [f32],
    channels: usize,
    px: usize,
    norm: &ImageNormalize,
    hwc: bool,
    value: impl Fn(T) -> f32,
) {
    for c in 0..channels {
        let (m, s) = (norm.mean[c], norm.std[c]);
        let plane = &src[c * px..(c + 1) * px];
        if hwc {
            for (p, &v) in plane.iter().enumerate() {
                out[p * channels + c] = (value(v) - m) / s;
            }
        } else {
            for (o, &v) in out[c * px..(c + 1) * px].iter_mut().zip(plane) {
                *o = (value(v) - m) / s;
            }
        }
    }
}
