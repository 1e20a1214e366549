//! `model.toml`: the manifest of a model bundle, parsed with unknown keys refused and
//! checked for consistency (shapes agree with the window, frontends have their
//! settings).

use super::limits::{
    elements, Limits, MAX_BRANCHES, MAX_CAPTURE_SIDE, MAX_FLOW_BOUND, MAX_FPS, MAX_MEL_FRAMES,
    MAX_MIN_DURATION_S, MAX_NORM, MAX_RANK, MAX_TEMPERATURE, MIN_STD,
};
pub use crate::capture::Downmix;
pub use crate::decode::vocabulary::BranchSpec;
pub use crate::decode::{DecoderConfig, DecoderKind};
use crate::frontend::flow::{FlowEncoding, TvL1Params, MOV_FLOW_BOUND};
use crate::frontend::image::{Crop, ImageNormalize, PreprocessConfig, ResizeFilter, ResizeTo};
use crate::frontend::logmel::FbankConfig;
use crate::{err, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format: absent or 1 (the first format), 2 (adds input layouts,
    /// `context_s`, frame `stride`, `[audio]`, raw head inputs, encoder graph names, flow
    /// `scale` and `dxdy_magnitude`). A manifest using a key of version 2 must say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_version: Option<u32>,
    /// Short model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// ONNX file, relative to the bundle folder.
    pub graph: String,
    /// Labels file (one label per line), relative to the bundle folder.
    pub labels: String,
    /// Window length, rate and hop.
    pub window: WindowSpec,
    /// Capture size and in-runtime resize/crop; absent: GStreamer scales frames straight
    /// to the model size (stretching them).
    #[serde(default)]
    pub video: Option<VideoSpec>,
    /// How the audio the model hears is made (version 2); absent: the defaults of
    /// [`AudioSpec`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioSpec>,
    /// Model inputs and the frontend that fills each.
    pub inputs: Vec<InputSpec>,
    /// The model's one output: class scores `[1, classes]`, or window embeddings
    /// `[1, dim]` / `[1, branches, dim]` matched against label embeddings (`[vocabulary]`).
    pub output: OutputSpec,
    /// Staged execution: per-frame / per-segment encoders and a head (see [`StagesSpec`]);
    /// absent: the single graph runs on every window.
    #[serde(default)]
    pub stages: Option<StagesSpec>,
    /// Open vocabulary: labels are sentences matched to the output embeddings by cosine
    /// similarity (see [`VocabularySpec`]); absent: the output holds one score per label.
    #[serde(default)]
    pub vocabulary: Option<VocabularySpec>,
    /// How scores become predictions and events.
    pub decoder: DecoderConfig,
}

/// The `[stages]` table: the model split so that work done for a frame is done once.
/// Each encoder turns one frame (image), one flow field (flow) or one segment of
/// `segment` log-mel frames (logmel) into a token of `dim` values; the runtime keeps
/// tokens in rings keyed by frame number or mel-frame number, runs the encoders only on
/// what is new in a window, and runs `head` on the tokens of the whole window every hop.
/// The encoder graphs read `image [1, C, H, W]` or `logmel [1, segment, bins]` and
/// write `token [1, dim]`; the head reads one `[1, n, dim]` input per encoder (named
/// `tokens`), in encoder order, and writes the model output. `graph` stays the
/// equivalent single graph (tests check staged == single).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagesSpec {
    /// Per-frame / per-segment encoders: one per model input in version 1; in version 2
    /// an input without an encoder goes to the head whole (a raw head input).
    pub encoders: Vec<EncoderSpec>,
    /// The head's ONNX file, relative to the bundle folder.
    pub head: String,
    /// Version 2: the order of the head graph's inputs (each encoder's `tokens` and each
    /// raw input's name, once). Absent: the encoders' tokens in encoder order, then the
    /// raw inputs in `[[inputs]]` order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_inputs: Option<Vec<String>>,
}

/// One encoder of a staged model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSpec {
    /// The model input (`[[inputs]] name`) it encodes.
    pub input: String,
    /// Its ONNX file, relative to the bundle folder.
    pub graph: String,
    /// The head input its tokens fill.
    pub tokens: String,
    /// Values per token.
    pub dim: usize,
    /// Logmel only: mel frames per token (the window's mel frames must be a multiple).
    #[serde(default)]
    pub segment: Option<usize>,
    /// Version 2: the encoder graph's input name (default `image`, or `logmel` for a
    /// log-mel encoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_input: Option<String>,
    /// Version 2: the encoder graph's output name (default `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_output: Option<String>,
}

/// The `[vocabulary]` table of an open-vocabulary model: each label is a sentence,
/// embedded by all-MiniLM-L6-v2. `sentences` lists the sentences whose embeddings are
/// precomputed in `embeddings` (every label of the labels file, and possibly more, e.g.
/// held-out classes), so the model runs without the text model; other sentences need it. The output holds one window
/// embedding per branch; each branch scores label `j` as
/// `softmax_j(cos(embedding, text_j) / temperature)`, and a label's probability is the
/// weighted sum over branches, with `weight_base` for the bundle's labels and
/// `weight_novel` for labels added at run time (MOV's `P = β·P_f + (1-β)·P_v`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VocabularySpec {
    /// Text model the embeddings come from (`all-MiniLM-L6-v2`).
    pub text_model: String,
    /// Sentences file (one per line), relative to the bundle folder.
    pub sentences: String,
    /// Float32 little-endian `[sentences, dim]` file, relative to the bundle folder.
    pub embeddings: String,
    /// One entry per output branch, in output order.
    pub branches: Vec<BranchSpec>,
}

/// The rolling window a model sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Frames per window.
    pub frames: usize,
    /// Frame rate the model was trained at (capture is converted to it).
    pub fps: u32,
    /// Captured frames between two windows (the hop).
    pub hop_frames: usize,
    /// Version 2: the model sees every `stride`-th captured frame, so a window spans
    /// `(frames - 1) * stride + 1` captured frames (MOV samples 16 frames at stride 4).
    /// Flow stays the motion between consecutive captured frames, taken at the sampled
    /// frames. Absent: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// Whether the model may run with no audio (its audio input then holds the
    /// normalised log floor, i.e. silence); otherwise a missing microphone is an error.
    #[serde(default)]
    pub audio_optional: bool,
}

/// The `[video]` table: frames are captured at `capture` size (GStreamer scales the
/// source to it, stretching if the aspect ratio differs) and resized and cropped to the
/// model size in the runtime, as training did (see
/// [`Preprocess`](crate::frontend::image::Preprocess)), e.g. `capture = [640, 480]`,
/// `resize_to = 256`, `crop = "center"` for a 224 x 224 model trained with torchvision's
/// `Resize(256)` + `CenterCrop(224)`. The image and flow inputs both see the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSpec {
    /// `[width, height]` of the captured frames.
    pub capture: [u32; 2],
    /// `"bilinear"` (antialiased, torchvision / PIL) or `"area"` (OpenCV INTER_AREA).
    #[serde(default)]
    pub resize: ResizeFilter,
    /// Short side (`256`) or `[width, height]` after the resize; absent: the model size.
    #[serde(default)]
    pub resize_to: Option<ResizeTo>,
    /// `"center"`, `"top-left"`, `"top-right"`, `"bottom-left"`, `"bottom-right"` or
    /// `"none"` (the resized frame must be the model size).
    #[serde(default)]
    pub crop: Crop,
}

impl WindowSpec {
    /// Captured frames between two frames of the window: `stride`, 1 when absent.
    pub fn frame_stride(&self) -> usize {
        self.stride.unwrap_or(1)
    }

    /// Captured frames a window spans: `(frames - 1) * stride + 1`.
    pub fn span(&self) -> usize {
        self.frames
            .saturating_sub(1)
            .saturating_mul(self.frame_stride())
            .saturating_add(1)
    }
}

impl VideoSpec {
    /// The resize and crop settings.
    pub fn preprocess(&self) -> PreprocessConfig {
        PreprocessConfig {
            resize: self.resize,
            resize_to: self.resize_to,
            crop: self.crop,
        }
    }
}

/// Which frontend fills an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frontend {
    /// RGB frames, `[1, T, 3, H, W]`, normalised by `mean`/`std`.
    Image,
    /// Optical flow between consecutive frames: MOV-encoded `[1, T-1, 3, H, W]`, or
    /// displacements in pixels `[1, T-1, 2, H, W]` with `encoding = "float"`.
    Flow,
    /// Log-mel frames covering the window, `[1, A, bins]`.
    Logmel,
}

/// One model input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The ONNX input name.
    pub name: String,
    /// The frontend that fills it.
    pub frontend: Frontend,
    /// The full shape, batch included (batch must be 1).
    pub shape: Vec<usize>,
    /// Element type; only `float32` is supported.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Per-channel mean (image, flow: 3 values in 0..1 units; logmel: 1 value).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, same layout as `mean`.
    pub std: Vec<f32>,
    /// Flow only: estimator name (`dis-ultrafast`, `dis-fast`, `dis-medium`, `tvl1`).
    #[serde(default)]
    pub estimator: Option<String>,
    /// Flow only: displacement clip bound in pixels of the MOV encoding (default 20).
    #[serde(default)]
    pub bound: Option<f32>,
    /// Flow only: `"mov"` (8-bit images, the default), `"float"` (pixels) or
    /// `"dxdy_magnitude"` (version 2: dx, dy and the magnitude, in pixels).
    #[serde(default)]
    pub encoding: Option<FlowEncodingName>,
    /// Version 2, flow with `float` or `dxdy_magnitude`: displacements are multiplied by
    /// `scale` (default 1) before `bound` clips them (and the magnitude).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f32>,
    /// Version 2: the memory layout of the input. Image and flow: `NTCHW` (the default),
    /// `NCTHW` or `NTHWC`. Logmel: `TM` (`[T, M]`, no batch), `NTM` (`[1, T, M]`) or
    /// `NCTM` (`[1, 1, T, M]`); absent: from the shape's rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    /// Version 2, logmel: the seconds of audio the input covers (`T` x the frame shift),
    /// ending at the window's end. Absent: `T` frames, also ending at the window's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_s: Option<f64>,
    /// Flow only, with `estimator = "tvl1"`: an `[inputs.tvl1]` table of TV-L1 parameters
    /// (tau, lambda, theta, gamma, scales, warps, epsilon, ...); missing keys keep
    /// OpenCV's defaults.
    #[serde(default)]
    pub tvl1: Option<TvL1Params>,
    /// Logmel only: filterbank settings.
    #[serde(default)]
    pub fbank: Option<FbankConfig>,
}

/// The `encoding` key of a flow input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowEncodingName {
    /// MOV's 8-bit flow images: u, v and a zero plane, clipped to `bound`.
    Mov,
    /// The displacements in pixels: u and v planes.
    Float,
    /// Version 2: dx, dy and the magnitude `sqrt(dx² + dy²)`, in pixels (3 planes).
    #[serde(rename = "dxdy_magnitude")]
    DxdyMagnitude,
}

/// The memory layout of an input (`layout`): the letters name the dimensions in order,
/// N batch, T time (frames or mel frames), C channels, H height, W width, M mel bins.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// `[1, T, C, H, W]`: frames one after another, each channel-planar.
    NTCHW,
    /// `[1, C, T, H, W]`: one plane-sequence per channel (3-D CNNs).
    NCTHW,
    /// `[1, T, H, W, C]`: frames one after another, channels interleaved.
    NTHWC,
    /// `[T, M]`: log-mel frames, no batch dimension.
    TM,
    /// `[1, T, M]`.
    NTM,
    /// `[1, 1, T, M]`: a one-channel spectrogram image.
    NCTM,
}

impl Layout {
    /// The layout's name as written in `model.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::NTCHW => "NTCHW",
            Layout::NCTHW => "NCTHW",
            Layout::NTHWC => "NTHWC",
            Layout::TM => "TM",
            Layout::NTM => "NTM",
            Layout::NCTM => "NCTM",
        }
    }
}

/// The `[audio]` table (version 2): how the audio track or microphone becomes the mono
/// signal the filterbank reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSpec {
    /// Multi-channel to mono, as the model's training data was made.
    #[serde(default)]
    pub downmix: Downmix,
}

fn default_dtype() -> String {
    "float32".into()
}

/// Settings of a flow input, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowInput {
    /// Estimator name.
    pub estimator: String,
    /// TV-L1 parameters, when the manifest sets any.
    pub tvl1: Option<TvL1Params>,
    /// How fields become input values.
    pub encoding: FlowEncoding,
    /// Normalisation applied to the encoded planes (`[0, 1]` units for MOV, pixels for
    /// float; the third value is unused with float).
    pub normalize: ImageNormalize,
    /// Float flow (`float`, `dxdy_magnitude`): displacements are multiplied by this.
    pub scale: f32,
    /// Float flow: the clip bound of the scaled displacements and magnitude, if any.
    pub clip: Option<f32>,
    /// `dxdy_magnitude`: a third plane holds the magnitude.
    pub magnitude: bool,
}

/// Settings of a log-mel input, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMelInput {
    /// Filterbank settings.
    pub fbank: FbankConfig,
    /// Mel frames per window.
    pub frames: usize,
    /// Mean subtracted from every log-mel value.
    pub mean: f32,
    /// Standard deviation every log-mel value is divided by.
    pub std: f32,
}

/// The model output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// The ONNX output name.
    pub name: String,
    /// Its shape, `[1, classes]`.
    pub shape: Vec<usize>,
}

impl Manifest {
    /// Reads and validates a manifest file: a regular file of at most
    /// [`MAX_MANIFEST_BYTES`](super::limits::MAX_MANIFEST_BYTES), read bounded.
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) when the file cannot be read;
    /// [`Model`](crate::ErrorKind::Model) when it is not a regular file, is over the cap
    /// or is not UTF-8; otherwise as [`Manifest::parse`], with the file named.
    pub fn load(path: &Path) -> Result<Manifest> {
        let limits = Limits::DEFAULT;
        let bytes = super::files::read_bounded(path, super::FileKind::Manifest, &limits)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| err!(Model, "{}: not UTF-8 text", path.display()))?;
        Manifest::parse_with(text, &limits).map_err(|e| e.context(path.display()))
    }

    /// Parses and validates manifest text under the default [`Limits`].
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model): invalid TOML, an unknown key, or a check of
    /// [`Manifest::validate`] that fails.
    pub fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse_with(text, &Limits::DEFAULT)
    }

    /// [`Manifest::parse`] under `limits`.
    ///
    /// # Errors
    /// As [`Manifest::parse`], with [`Manifest::validate_with`]'s checks.
    pub fn parse_with(text: &str, limits: &Limits) -> Result<Manifest> {
        let m: Manifest =
            toml::from_str(text).map_err(|e| err!(Model, "invalid manifest").caused_by(e))?;
        m.validate_with(limits)?;
        Ok(m)
    }

    /// [`Manifest::validate_with`] under the default [`Limits`].
    ///
    /// # Errors
    /// As [`Manifest::validate_with`].
    pub fn validate(&self) -> Result<()> {
        self.validate_with(&Limits::DEFAULT)
    }

    /// Checks that shapes, window and frontend settings agree and stay within `limits`
    /// (the caps of [`limits`](super::limits)): every shape's product is computed with
    /// overflow checks and bounded, every float is finite and in range.
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model), naming the key and what was expected, when
    /// shapes disagree with the window, a frontend lacks its settings, a value is out of
    /// range or over a cap, or `[stages]`, `[vocabulary]` or `[decoder]` are
    /// inconsistent.
    pub fn validate_with(&self, limits: &Limits) -> Result<()> {
        let w = &self.window;
        if w.frames < 2 || w.fps == 0 || w.hop_frames == 0 {
            return Err(err!(
                Model,
                "window: frames must be >= 2, fps and hop_frames >= 1 (got frames={}, fps={}, hop_frames={})",
                w.frames, w.fps, w.hop_frames
            ));
        }
        if w.frames > limits.window_frames || w.hop_frames > w.span() || w.fps > MAX_FPS {
            return Err(err!(
                Model,
                "window: need frames <= {}, hop_frames <= the captured frames a window spans, fps <= {MAX_FPS} (got frames={}, fps={}, hop_frames={}, span {})",
                limits.window_frames, w.frames, w.fps, w.hop_frames, w.span()
            ));
        }
        if w.stride == Some(0) || w.span() > limits.window_frames {
            return Err(err!(
                Model,
                "window: stride must be >= 1 and a window may span at most {} captured frames \
                 ((frames - 1) x stride + 1 = {})",
                limits.window_frames,
                w.span()
            ));
        }
        self.check_version()?;
        if self.inputs.is_empty() {
            return Err(err!(Model, "inputs: at least one input is required"));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            if self.inputs[..i].iter().any(|o| o.name == input.name) {
                return Err(err!(Model, "inputs: name `{}` appears twice", input.name));
            }
            input.validate(w, limits)?;
        }
        for frontend in [Frontend::Image, Frontend::Flow, Frontend::Logmel] {
            if self
                .inputs
                .iter()
                .filter(|i| i.frontend == frontend)
                .count()
                > 1
            {
                return Err(err!(
                    Model,
                    "inputs: more than one input uses frontend {frontend:?}"
                ));
            }
        }
        let sizes: Vec<(usize, usize)> = self
            .inputs
            .iter()
            .filter(|i| i.frontend != Frontend::Logmel)
            .map(|i| {
                let (_, h, w) = i.frame_dims();
                (h, w)
            })
            .collect();
        if sizes.windows(2).any(|p| p[0] != p[1]) {
            return Err(err!(
                Model,
                "inputs: image and flow inputs must have the same height and width"
            ));
        }
        if sizes.is_empty() {
            return Err(err!(
                Model,
                "inputs: a model needs an image or flow input (video drives the window)"
            ));
        }
        match &self.vocabulary {
            None => {
                if self.output.shape.len() != 2
                    || self.output.shape[0] != 1
                    || self.output.shape[1] == 0
                {
                    return Err(err!(
                        Model,
                        "output `{}`: shape must be [1, classes], got {:?}",
                        self.output.name,
                        self.output.shape
                    ));
                }
            }
            Some(labels) => labels.validate(&self.output, limits)?,
        }
        if self.output.shape.len() > MAX_RANK
            || elements(&self.output.shape, limits.tensor_elements).is_none()
        {
            return Err(err!(
                Model,
                "output `{}`: shape {:?} is over the cap of {MAX_RANK} dims and {} elements",
                self.output.name,
                self.output.shape,
                limits.tensor_elements
            ));
        }
        if self.vocabulary.is_none() && self.output.shape[1] > limits.labels {
            return Err(err!(
                Model,
                "output `{}`: {} classes, over the cap of {}",
                self.output.name,
                self.output.shape[1],
                limits.labels
            ));
        }
        if let Some(stages) = &self.stages {
            stages.validate(self, limits)?;
        }
        if let Some(video) = &self.video {
            let [w, h] = video.capture;
            if w > MAX_CAPTURE_SIDE
                || h > MAX_CAPTURE_SIDE
                || elements(&[w as usize, h as usize, 3], limits.tensor_elements).is_none()
            {
                return Err(err!(
                    Model,
                    "video: capture {w} x {h} is over the cap of {MAX_CAPTURE_SIDE} pixels a \
                     side and {} values (x 3 channels) a frame",
                    limits.tensor_elements
                ));
            }
            let (out_w, out_h) = self.frame_size();
            video
                .preprocess()
                .geometry((w as usize, h as usize), (out_w as usize, out_h as usize))
                .map_err(|e| {
                    err!(
                        Model,
                        "video: {}",
                        e.message().trim_start_matches("image preprocessing: ")
                    )
                })?;
        }
        let d = &self.decoder;
        if !(d.exit <= d.enter && d.exit >= 0.0 && d.enter <= 1.0) {
            return Err(err!(
                Model,
                "decoder: need 0 <= exit <= enter <= 1 (got enter={}, exit={})",
                d.enter,
                d.exit
            ));
        }
        if d.smoothing == 0 || d.top_k == 0 || d.min_duration_s < 0.0 {
            return Err(err!(
                Model,
                "decoder: smoothing and top_k must be >= 1, min_duration_s >= 0"
            ));
        }
        if d.smoothing > limits.smoothing || d.top_k > limits.top_k {
            return Err(err!(
                Model,
                "decoder: smoothing must be <= {} and top_k <= {} (got smoothing={}, top_k={})",
                limits.smoothing,
                limits.top_k,
                d.smoothing,
                d.top_k
            ));
        }
        if !(d.min_duration_s.is_finite() && d.min_duration_s <= MAX_MIN_DURATION_S) {
            return Err(err!(
                Model,
                "decoder: min_duration_s must be a finite number in 0..={MAX_MIN_DURATION_S} \
                 seconds (got {})",
                d.min_duration_s
            ));
        }
        Ok(())
    }

    /// The input filled by `frontend`, if any.
    pub fn input(&self, frontend: Frontend) -> Option<&InputSpec> {
        self.inputs.iter().find(|i| i.frontend == frontend)
    }

    /// Frame size `(width, height)` the capture delivers: `[video] capture`, or the model size.
    pub fn capture_size(&self) -> (u32, u32) {
        match &self.video {
            Some(video) => (video.capture[0], video.capture[1]),
            None => self.frame_size(),
        }
    }

    /// The resize and crop the runtime applies to captured frames, if `[video]` asks for it.
    pub fn preprocess(&self) -> Option<PreprocessConfig> {
        self.video.as_ref().map(VideoSpec::preprocess)
    }

    /// Frame size `(width, height)` the model's image and flow inputs need.
    pub fn frame_size(&self) -> (u32, u32) {
        let (_, h, w) = self
            .inputs
            .iter()
            .find(|i| i.frontend != Frontend::Logmel)
            .map_or((0, 0, 0), InputSpec::frame_dims);
        (w as u32, h as u32)
    }

    /// The manifest format version (1 when absent).
    pub fn version(&self) -> u32 {
        self.manifest_version.unwrap_or(1)
    }

    /// The downmix of multi-channel audio (`[audio] downmix`, default `mean`).
    pub fn downmix(&self) -> Downmix {
        self.audio.map(|a| a.downmix).unwrap_or_default()
    }

    /// The keys of version 2 this manifest uses.
    fn version_2_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if self.window.stride.is_some() {
            keys.push("window.stride".to_string());
        }
        if self.audio.is_some() {
            keys.push("[audio]".to_string());
        }
        for i in &self.inputs {
            let named = [
                ("layout", i.layout.is_some()),
                ("context_s", i.context_s.is_some()),
                ("scale", i.scale.is_some()),
                (
                    "encoding = \"dxdy_magnitude\"",
                    i.encoding == Some(FlowEncodingName::DxdyMagnitude),
                ),
                (
                    "bound with encoding = \"float\" (it clips in version 2)",
                    i.encoding == Some(FlowEncodingName::Float) && i.bound.is_some(),
                ),
            ];
            for (key, used) in named {
                if used {
                    keys.push(format!("inputs `{}`: {key}", i.name));
                }
            }
        }
        if let Some(stages) = &self.stages {
            if stages.head_inputs.is_some() {
                keys.push("stages.head_inputs".to_string());
            }
            for e in &stages.encoders {
                if e.graph_input.is_some() || e.graph_output.is_some() {
                    keys.push(format!(
                        "stages.encoders `{}`: graph_input/graph_output",
                        e.input
                    ));
                }
            }
        }
        keys
    }

    fn check_version(&self) -> Result<()> {
        match self.manifest_version {
            None | Some(1) => {
                let keys = self.version_2_keys();
                if keys.is_empty() {
                    Ok(())
                } else {
                    Err(err!(
                        Model,
                        "{} need(s) manifest_version = 2 (add it at the top of model.toml)",
                        keys.join(", ")
                    ))
                }
            }
            Some(2) => Ok(()),
            Some(v) => Err(err!(
                Model,
                "manifest_version = {v}: this avaction reads versions 1 and 2 (a newer avaction wrote this bundle?)"
            )),
        }
    }

    /// The flow input's settings, if the model has one.
    pub fn flow(&self) -> Option<FlowInput> {
        let i = self.input(Frontend::Flow)?;
        Some(FlowInput {
            estimator: i.estimator.clone().unwrap_or_default(),
            tvl1: i.tvl1,
            encoding: match i.encoding {
                Some(FlowEncodingName::Float | FlowEncodingName::DxdyMagnitude) => {
                    FlowEncoding::Float
                }
                _ => FlowEncoding::Mov {
                    bound: i.bound.unwrap_or(MOV_FLOW_BOUND),
                },
            },
            normalize: i.normalize3(),
            scale: i.scale.unwrap_or(1.0),
            clip: i
                .bound
                .filter(|_| i.encoding.is_some_and(|e| e != FlowEncodingName::Mov)),
            magnitude: i.encoding == Some(FlowEncodingName::DxdyMagnitude),
        })
    }

    /// The log-mel input's settings, if the model has one.
    pub fn logmel(&self) -> Option<LogMelInput> {
        let i = self.input(Frontend::Logmel)?;
        Some(LogMelInput {
            fbank: i.fbank.clone()?,
            frames: i.steps(),
            mean: i.mean[0],
            std: i.std[0],
        })
    }

    /// The image input's normalisation, if the model has one.
    pub fn image(&self) -> Option<ImageNormalize> {
        self.input(Frontend::Image).map(InputSpec::normalize3)
    }
}

impl VocabularySpec {
    /// Values per embedding.
    pub fn dim(output: &OutputSpec) -> usize {
        output.shape.last().copied().unwrap_or(0)
    }

    fn validate(&self, output: &OutputSpec, limits: &Limits) -> Result<()> {
        let n = self.branches.len();
        if n > MAX_BRANCHES {
            return Err(err!(
                Model,
                "vocabulary.branches: {n} branches, over the cap of {MAX_BRANCHES}"
            ));
        }
        let dim = VocabularySpec::dim(output);
        if dim > limits.dim {
            return Err(err!(
                Model,
                "output `{}`: embedding dim {dim} (the last dimension) is over the cap of {}",
                output.name,
                limits.dim
            ));
        }
        let shape_ok = match output.shape.as_slice() {
            [1, d] => n == 1 && *d > 0,
            [1, b, d] => *b == n && *d > 0,
            _ => false,
        };
        if n == 0 || !shape_ok {
            return Err(err!(
                Model,
                "output `{}`: with [vocabulary] and {n} branch(es) the shape must be [1, dim] \
                 (one branch) or [1, {n}, dim], got {:?}",
                output.name,
                output.shape
            ));
        }
        for b in &self.branches {
            if !(b.temperature.is_finite()
                && b.temperature > 0.0
                && b.temperature <= MAX_TEMPERATURE)
            {
                return Err(err!(
                    Model,
                    "vocabulary.branches `{}`: temperature must be > 0 and <= {MAX_TEMPERATURE} (got {})",
                    b.name,
                    b.temperature
                ));
            }
            for w in [b.weight_base, b.weight_novel] {
                if !(0.0..=1.0).contains(&w) {
                    return Err(err!(
                        Model,
                        "vocabulary.branches `{}`: weights must be in 0..=1 (got {w})",
                        b.name
                    ));
                }
            }
        }
        let sums = [
            self.branches.iter().map(|b| b.weight_base).sum::<f32>(),
            self.branches.iter().map(|b| b.weight_novel).sum::<f32>(),
        ];
        if sums.iter().any(|s| (s - 1.0).abs() > 1e-4) {
            return Err(err!(
                Model,
                "vocabulary.branches: weight_base and weight_novel must each sum to 1 over \
                 the branches (got {} and {})",
                sums[0],
                sums[1]
            ));
        }
        Ok(())
    }
}

impl StagesSpec {
    /// The head's inputs in the order of its graph: `head_inputs`, or the encoders'
    /// tokens in encoder order followed by the raw inputs in `[[inputs]]` order.
    pub fn head_order(&self, manifest: &Manifest) -> Vec<String> {
        self.head_inputs
            .clone()
            .unwrap_or_else(|| self.default_head_inputs(manifest))
    }

    fn default_head_inputs(&self, m: &Manifest) -> Vec<String> {
        self.encoders
            .iter()
            .map(|e| e.tokens.clone())
            .chain(
                m.inputs
                    .iter()
                    .filter(|i| !self.encoders.iter().any(|e| e.input == i.name))
                    .map(|i| i.name.clone()),
            )
            .collect()
    }

    /// The number of tokens encoder `e` gives for one window.
    pub fn tokens_per_window(&self, manifest: &Manifest, e: &EncoderSpec) -> usize {
        match manifest.inputs.iter().find(|i| i.name == e.input) {
            Some(i) if i.frontend == Frontend::Logmel => i.steps() / e.segment.unwrap_or(1).max(1),
            Some(i) => i.steps(),
            None => 0,
        }
    }

    fn validate(&self, m: &Manifest, limits: &Limits) -> Result<()> {
        let bad = |what: String| Err(err!(Model, "stages: {what}"));
        for input in &m.inputs {
            let n = self
                .encoders
                .iter()
                .filter(|e| e.input == input.name)
                .count();
            // version 1: every input has its encoder; version 2: at most one (none: the
            // input goes to the head whole; check_version refuses that in version 1)
            if n > 1 || (n == 0 && m.version() < 2) {
                return bad(format!(
                    "input `{}` needs exactly one encoder (found {n}){}",
                    input.name,
                    if n == 0 {
                        "; with manifest_version = 2 an input without an encoder goes to the head whole"
                    } else {
                        ""
                    }
                ));
            }
        }
        let default_order = self.default_head_inputs(m);
        if let Some(order) = &self.head_inputs {
            let mut sorted = order.clone();
            sorted.sort();
            let mut expected = default_order.clone();
            expected.sort();
            if sorted != expected {
                return bad(format!(
                    "head_inputs = {order:?} must name each of {default_order:?} once (the \
                     encoders' tokens and the inputs without an encoder)"
                ));
            }
        }
        for (k, e) in self.encoders.iter().enumerate() {
            let Some(input) = m.inputs.iter().find(|i| i.name == e.input) else {
                return bad(format!(
                    "encoder {k}: `input = {:?}` is not a model input",
                    e.input
                ));
            };
            if e.dim == 0 {
                return bad(format!("encoder for `{}`: dim must be >= 1", e.input));
            }
            if e.dim > limits.dim {
                return bad(format!(
                    "encoder for `{}`: dim {} is over the cap of {}",
                    e.input, e.dim, limits.dim
                ));
            }
            if self.encoders[..k].iter().any(|o| o.tokens == e.tokens) {
                return bad(format!(
                    "head input `{}` is filled by two encoders",
                    e.tokens
                ));
            }
            if m.inputs.iter().any(|i| i.name == e.tokens) {
                return bad(format!(
                    "encoder for `{}`: tokens = {:?} is also the name of a model input",
                    e.input, e.tokens
                ));
            }
            match (input.frontend, e.segment) {
                (Frontend::Logmel, Some(seg)) if seg > 0 && input.steps() % seg == 0 => {}
                (Frontend::Logmel, seg) => {
                    return bad(format!(
                        "encoder for `{}`: segment = {seg:?} must divide the {} mel frames \
                         of a window",
                        e.input,
                        input.steps()
                    ))
                }
                (_, Some(_)) => {
                    return bad(format!(
                        "encoder for `{}`: key `segment` is only valid for a logmel input",
                        e.input
                    ))
                }
                (_, None) => {}
            }
            let tokens = self.tokens_per_window(m, e);
            if elements(&[tokens, e.dim], limits.tensor_elements).is_none() {
                return bad(format!(
                    "encoder for `{}`: {tokens} tokens x dim {} is over the cap of {} elements",
                    e.input, e.dim, limits.tensor_elements
                ));
            }
        }
        Ok(())
    }
}

impl InputSpec {
    /// The 3-channel normalisation of an image or flow input.
    pub(crate) fn normalize3(&self) -> ImageNormalize {
        let get = |v: &Vec<f32>, i: usize| v.get(i).copied().unwrap_or(1.0);
        ImageNormalize {
            mean: [get(&self.mean, 0), get(&self.mean, 1), get(&self.mean, 2)],
            std: [get(&self.std, 0), get(&self.std, 1), get(&self.std, 2)],
        }
    }

    /// The input's layout: `layout`, else `NTCHW` for image and flow and, for logmel, the
    /// one its rank implies (2: `TM`, 3: `NTM`, 4: `NCTM`).
    pub fn layout(&self) -> Layout {
        match (self.layout, self.frontend) {
            (Some(l), _) => l,
            (None, Frontend::Logmel) => match self.shape.len() {
                2 => Layout::TM,
                4 => Layout::NCTM,
                _ => Layout::NTM,
            },
            (None, _) => Layout::NTCHW,
        }
    }

    fn dim(&self, i: usize) -> usize {
        self.shape.get(i).copied().unwrap_or(0)
    }

    /// Steps in time: frames (image), fields (flow) or mel frames (logmel).
    pub fn steps(&self) -> usize {
        match self.layout() {
            Layout::NTCHW | Layout::NTHWC | Layout::NTM => self.dim(1),
            Layout::NCTHW | Layout::NCTM => self.dim(2),
            Layout::TM => self.dim(0),
        }
    }

    /// `(channels, height, width)` of one frame or field; `(1, 1, bins)` for logmel.
    pub fn frame_dims(&self) -> (usize, usize, usize) {
        match self.layout() {
            Layout::NTCHW => (self.dim(2), self.dim(3), self.dim(4)),
            Layout::NCTHW => (self.dim(1), self.dim(3), self.dim(4)),
            Layout::NTHWC => (self.dim(4), self.dim(2), self.dim(3)),
            Layout::TM | Layout::NTM | Layout::NCTM => {
                (1, 1, self.shape.last().copied().unwrap_or(0))
            }
        }
    }

    /// The shape of what a staged encoder reads: one frame or field (`[1, C, H, W]`, or
    /// `[1, H, W, C]` for `NTHWC`), or `segment` mel frames in the input's own rank.
    pub fn item_shape(&self, segment: usize) -> Vec<usize> {
        let (c, h, w) = self.frame_dims();
        match self.layout() {
            Layout::NTCHW | Layout::NCTHW => vec![1, c, h, w],
            Layout::NTHWC => vec![1, h, w, c],
            Layout::TM => vec![segment, w],
            Layout::NTM => vec![1, segment, w],
            Layout::NCTM => vec![1, 1, segment, w],
        }
    }

    /// The shape this input must have for `steps` steps of `channels` x `h` x `w` (image,
    /// flow) or `bins` (logmel, in `w`), in its layout.
    fn expected_shape(&self, steps: usize, channels: usize, h: usize, w: usize) -> Vec<usize> {
        match self.layout() {
            Layout::NTCHW => vec![1, steps, channels, h, w],
            Layout::NCTHW => vec![1, channels, steps, h, w],
            Layout::NTHWC => vec![1, steps, h, w, channels],
            Layout::TM => vec![steps, w],
            Layout::NTM => vec![1, steps, w],
            Layout::NCTM => vec![1, 1, steps, w],
        }
    }

    fn validate(&self, w: &WindowSpec, limits: &Limits) -> Result<()> {
        let name = &self.name;
        let bad = |what: String| Err(err!(Model, "input `{name}`: {what}"));
        if self.dtype != "float32" {
            return bad(format!(
                "dtype {:?} is not supported (expected \"float32\")",
                self.dtype
            ));
        }
        let layout = self.layout();
        if self.shape.contains(&0) || (layout != Layout::TM && self.shape.first() != Some(&1)) {
            return bad(format!(
                "shape {:?} must start with batch 1 (layout {}) and have no zero dims",
                self.shape,
                layout.name()
            ));
        }
        if self.shape.len() > MAX_RANK || elements(&self.shape, limits.tensor_elements).is_none() {
            return bad(format!(
                "shape {:?} is over the cap of {MAX_RANK} dims and {} elements",
                self.shape, limits.tensor_elements
            ));
        }
        let encoding = self.encoding.unwrap_or(FlowEncodingName::Mov);
        let channels = match self.frontend {
            Frontend::Logmel => 1,
            Frontend::Flow if encoding == FlowEncodingName::Float => 2,
            _ => 3,
        };
        if self.mean.len() != channels || self.std.len() != channels {
            return bad(format!(
                "mean and std need {channels} value(s) each (got {} and {})",
                self.mean.len(),
                self.std.len()
            ));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return bad("std must be finite and > 0, mean finite".into());
        }
        if self.std.iter().any(|s| !(MIN_STD..=MAX_NORM).contains(s))
            || self.mean.iter().any(|m| m.abs() > MAX_NORM)
        {
            return bad(format!(
                "std must be in {MIN_STD}..={MAX_NORM} and mean in -{MAX_NORM}..={MAX_NORM}"
            ));
        }
        let has_flow_keys = self.estimator.is_some()
            || self.bound.is_some()
            || self.encoding.is_some()
            || self.scale.is_some()
            || self.tvl1.is_some();
        let video_layout = matches!(layout, Layout::NTCHW | Layout::NCTHW | Layout::NTHWC);
        match self.frontend {
            Frontend::Image | Frontend::Flow => {
                if !video_layout {
                    return bad(format!(
                        "layout {} is for logmel inputs; image and flow take NTCHW, NCTHW or NTHWC",
                        layout.name()
                    ));
                }
                let t = if self.frontend == Frontend::Image {
                    w.frames
                } else {
                    w.frames - 1
                };
                let (_, h, wd) = self.frame_dims();
                let expected = self.expected_shape(t, channels, h, wd);
                if self.shape != expected {
                    return bad(format!(
                        "shape {:?} must be {} (layout {}, here {expected:?}) for a window of {} \
                         frames ({t} {}, {channels} channels)",
                        self.shape,
                        match layout {
                            Layout::NCTHW => format!("[1, {channels}, {t}, H, W]"),
                            Layout::NTHWC => format!("[1, {t}, H, W, {channels}]"),
                            _ => format!("[1, {t}, {channels}, H, W]"),
                        },
                        layout.name(),
                        w.frames,
                        if self.frontend == Frontend::Image {
                            "frames"
                        } else {
                            "flow fields"
                        }
                    ));
                }
                if h < 16 || wd < 16 {
                    return bad(format!("frame size {wd}x{h} is below 16x16"));
                }
                if self.fbank.is_some() || self.context_s.is_some() {
                    return bad(
                        "keys `fbank` and `context_s` are only valid for frontend = \"logmel\""
                            .into(),
                    );
                }
                if self.frontend == Frontend::Image && has_flow_keys {
                    return bad(
                        "keys `estimator`/`bound`/`encoding`/`scale`/`tvl1` are only valid for frontend = \"flow\""
                            .into(),
                    );
                }
                if self.frontend == Frontend::Flow {
                    self.validate_flow(encoding)?;
                }
            }
            Frontend::Logmel => {
                if has_flow_keys {
                    return bad(
                        "keys `estimator`/`bound`/`encoding`/`scale`/`tvl1` are only valid for frontend = \"flow\"".into(),
                    );
                }
                if video_layout {
                    return bad(format!(
                        "layout {} is for image and flow inputs; logmel takes TM, NTM or NCTM",
                        layout.name()
                    ));
                }
                let Some(fbank) = &self.fbank else {
                    return bad("frontend = \"logmel\" needs an [inputs.fbank] table".into());
                };
                let t = self.steps();
                let expected = self.expected_shape(t, 1, 1, fbank.num_features());
                if self.shape != expected {
                    return bad(format!(
                        "shape {:?} must be {} = {expected:?} (M = fbank.num_mel_bins{})",
                        self.shape,
                        match layout {
                            Layout::TM => "[T, M]",
                            Layout::NCTM => "[1, 1, T, M]",
                            _ => "[1, T, M]",
                        },
                        if fbank.use_energy {
                            " + 1 for use_energy"
                        } else {
                            ""
                        }
                    ));
                }
                if t > MAX_MEL_FRAMES {
                    return bad(format!(
                        "{t} mel frames is over the cap of {MAX_MEL_FRAMES}"
                    ));
                }
                if let Err(e) = fbank.validate() {
                    return bad(format!(
                        "table `fbank`: {}",
                        e.message().trim_start_matches("fbank config: ")
                    ));
                }
                if let Some(seconds) = self.context_s {
                    let frames = seconds * 1000.0 / f64::from(fbank.frame_shift_ms);
                    if !(seconds.is_finite() && seconds > 0.0) || (frames - t as f64).abs() > 0.01 {
                        return bad(format!(
                            "context_s = {seconds} s is {frames:.2} mel frames of {} ms, but \
                             the shape has {t} (context_s must be T x frame_shift_ms / 1000)",
                            fbank.frame_shift_ms
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_flow(&self, encoding: FlowEncodingName) -> Result<()> {
        let name = &self.name;
        let bad = |what: String| Err(err!(Model, "input `{name}`: {what}"));
        if let Some(params) = &self.tvl1 {
            if self.estimator.as_deref() != Some("tvl1") {
                return bad("table `tvl1` needs estimator = \"tvl1\"".into());
            }
            if let Err(e) = params.validate() {
                return bad(format!("table `tvl1`: {}", e.message()));
            }
        }
        if encoding == FlowEncodingName::Mov && self.scale.is_some() {
            return bad(
                "key `scale` applies to encoding = \"float\" or \"dxdy_magnitude\" (MOV images are clipped to `bound`)"
                    .into(),
            );
        }
        if self.estimator.is_none() {
            return bad("frontend = \"flow\" needs key `estimator` (e.g. \"dis-fast\")".into());
        }
        if let Some(b) = self.bound {
            if !(b.is_finite() && b > 0.0 && b <= MAX_FLOW_BOUND) {
                return bad(format!(
                    "bound must be > 0 and <= {MAX_FLOW_BOUND} (got {b})"
                ));
            }
        }
        if let Some(s) = self.scale {
            if !(s.is_finite() && s > 0.0 && s <= MAX_NORM) {
                return bad(format!("scale must be > 0 and <= {MAX_NORM} (got {s})"));
            }
        }
        Ok(())
    }
}
