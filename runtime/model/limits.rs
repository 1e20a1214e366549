//! The caps a bundle must stay under, in one place. A bundle is untrusted input: every
//! file it names is read with a size cap checked from its metadata before reading (and
//! the read itself stops one byte past the cap), and every shape, count and number of
//! the manifest is bounded before anything is allocated from it. [`Limits::default`]
//! holds the values below; [`Bundle::load_with`](super::Bundle::load_with) and
//! [`Manifest::parse_with`](super::Manifest::parse_with) take others.

/// Largest `model.toml`: 1 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest labels or sentences file: 1 MiB.
pub const MAX_TEXT_BYTES: u64 = 1 << 20;
/// Largest precomputed embeddings file: 64 MiB.
pub const MAX_EMBEDDINGS_BYTES: u64 = 64 << 20;
/// Largest ONNX graph (single graph, encoder or head): 512 MiB.
pub const MAX_GRAPH_BYTES: u64 = 512 << 20;
/// Most elements in one tensor a manifest declares (inputs, output, a window's tokens):
/// 64 Mi.
pub const MAX_TENSOR_ELEMENTS: usize = 64 << 20;
/// Most dimensions of a declared tensor.
pub const MAX_RANK: usize = 8;
/// Most frames in a window (`window.frames`); `hop_frames` is at most `frames`.
pub const MAX_WINDOW_FRAMES: usize = 512;
/// Highest frame rate (`window.fps`).
pub const MAX_FPS: u32 = 1000;
/// Most values per token or embedding (`stages.encoders.dim`, the vocabulary's dim).
pub const MAX_DIM: usize = 65536;
/// Longest moving average (`decoder.smoothing`).
pub const MAX_SMOOTHING: usize = 1000;
/// Most labels per prediction (`decoder.top_k`).
pub const MAX_TOP_K: usize = 1000;
/// Most labels, sentences or classes.
pub const MAX_LABELS: usize = 100_000;
/// Most output branches of an open-vocabulary model.
pub const MAX_BRANCHES: usize = 64;
/// Longest `decoder.min_duration_s`: one hour.
pub const MAX_MIN_DURATION_S: f64 = 3600.0;
/// Most log-mel frames in a window (a logmel input's `shape[1]`).
pub const MAX_MEL_FRAMES: usize = 65536;
/// Largest `[video] capture` side, in pixels.
pub const MAX_CAPTURE_SIDE: u32 = 16384;
/// Largest magnitude of a normalisation mean, and largest std (the smallest std is
/// [`MIN_STD`]).
pub const MAX_NORM: f32 = 1e6;
/// Smallest normalisation std (dividing by less overflows f32 for ordinary inputs).
pub const MIN_STD: f32 = 1e-6;
/// Largest flow clip bound of the MOV encoding, in pixels.
pub const MAX_FLOW_BOUND: f32 = 1000.0;
/// Largest vocabulary temperature.
pub const MAX_TEMPERATURE: f32 = 1000.0;

/// The caps applied to a bundle (see the module docs); [`Limits::default`] holds the
/// `MAX_*` constants of this module.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest `model.toml`, in bytes.
    pub manifest_bytes: u64,
    /// Largest labels or sentences file, in bytes.
    pub text_bytes: u64,
    /// Largest embeddings file, in bytes.
    pub embeddings_bytes: u64,
    /// Largest ONNX graph, in bytes.
    pub graph_bytes: u64,
    /// Most elements of one declared tensor.
    pub tensor_elements: usize,
    /// Most frames in a window.
    pub window_frames: usize,
    /// Most values per token or embedding.
    pub dim: usize,
    /// Longest moving average.
    pub smoothing: usize,
    /// Most labels per prediction.
    pub top_k: usize,
    /// Most labels, sentences or classes.
    pub labels: usize,
}

impl Limits {
    /// The `MAX_*` constants of this module.
    pub const DEFAULT: Limits = Limits {
        manifest_bytes: MAX_MANIFEST_BYTES,
        text_bytes: MAX_TEXT_BYTES,
        embeddings_bytes: MAX_EMBEDDINGS_BYTES,
        graph_bytes: MAX_GRAPH_BYTES,
        tensor_elements: MAX_TENSOR_ELEMENTS,
        window_frames: MAX_WINDOW_FRAMES,
        dim: MAX_DIM,
        smoothing: MAX_SMOOTHING,
        top_k: MAX_TOP_K,
        labels: MAX_LABELS,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The product of `dims`, or `None` when it overflows or passes `max`.
pub(crate) fn elements(dims: &[usize], max: usize) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= max)
}
