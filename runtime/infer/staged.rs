//! Staged execution: a model split into per-frame / per-segment encoders and a head
//! (`[stages]` in `model.toml`). Consecutive windows share all but `hop` frames, so
//! the encoders run only on what is new: each encoder keeps its tokens in a ring keyed
//! by the stream number of the frame, flow field or mel segment they came from, and
//! every hop the head runs on the tokens of the whole window.
//!
//! Keys make the cache exact: a frame's number always means the same pixels, a mel
//! frame's number the same audio. Log-mel segments that hold silence in place of
//! missing audio are computed but never cached, since the real audio may come later.
//!
//! Batches: where onnxruntime serves an encoder whose graph has a free first axis, the
//! encoder is opened a second time for the number of items a hop brings (4 frames at a
//! hop of 4), and the missing tokens go through it that many at a time, the rest one by
//! one (`AVACTION_TUNING=off` turns this off, see [`crate::backend::tuning_enabled`]).

use super::InputAssembler;
use crate::backend::{open, Backend, BackendOptions, BackendStatus, Tensor};
use crate::model::{Bundle, EncoderGraph, Frontend, HeadSlot};
use crate::window::Window;
use crate::{err, Result};
use std::sync::Arc;
use std::time::Instant;

/// Runs a bundle on windows: the single graph, or its stages with token caches.
pub enum ModelRunner {
    /// One graph on the whole window.
    Single(Box<dyn Backend>),
    /// Encoders with token rings, then the head.
    Staged(StagedModel),
}

impl std::fmt::Debug for ModelRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelRunner::Single(b) => write!(f, "ModelRunner::Single({})", b.name()),
            ModelRunner::Staged(s) => {
                write!(f, "ModelRunner::Staged({} encoders)", s.encoders.len())
            }
        }
    }
}

impl ModelRunner {
    /// Opens every graph the bundle runs (see [`open`](crate::backend::open) for how the backend is
    /// chosen); the status returned is the head's (or the single graph's).
    ///
    /// # Errors
    /// As [`crate::backend::open`] for each graph; [`Model`](crate::ErrorKind::Model) when
    /// a stage names an input the manifest lacks.
    pub fn open(
        bundle: &Bundle,
        opts: &BackendOptions,
    ) -> Result<(ModelRunner, Arc<BackendStatus>)> {
        let Some(staged) = bundle.staged() else {
            let (backend, status) = open(&bundle.graph(), opts)?;
            return Ok((ModelRunner::Single(backend), status));
        };
        let mut encoders = Vec::new();
        for e in staged.encoders {
            let (backend, _) = open(&e.graph, opts)?;
            let batch = Batch::open(&e, backend.name(), bundle, opts);
            encoders.push(Encoder::new(e, backend, batch, bundle)?);
        }
        let (head, status) = open(&staged.head, opts)?;
        let head_inputs = staged
            .head
            .inputs
            .iter()
            .map(|t| Tensor::zeros(&t.dims))
            .collect();
        Ok((
            ModelRunner::Staged(StagedModel {
                encoders,
                head,
                head_inputs,
                head_slots: staged.head_slots,
                scratch: Vec::new(),
                head_ns: 0,
            }),
            status,
        ))
    }

    /// The serving backend's name (the head's for a staged model).
    pub fn name(&self) -> &'static str {
        match self {
            ModelRunner::Single(b) => b.name(),
            ModelRunner::Staged(s) => s.head.name(),
        }
    }

    /// Runs the model on `window`, normalised by `assembler`: the whole window for a
    /// single graph, only the frames, fields and segments not in the rings for a staged
    /// model.
    ///
    /// # Errors
    /// As [`InputAssembler::fill`] and [`crate::backend::Backend::run`];
    /// [`Backend`](crate::ErrorKind::Backend) when an encoder's token has the wrong size.
    pub fn run(&mut self, window: &Window, assembler: &mut InputAssembler) -> Result<Tensor> {
        match self {
            ModelRunner::Single(b) => b.run(assembler.fill(window)?),
            ModelRunner::Staged(s) => s.run(window, assembler),
        }
    }

    /// Time spent in each stage so far, in nanoseconds: each encoder (by its input's
    /// name) and `head`; empty for a single graph (its time is the whole inference).
    pub fn stage_ns(&self) -> Vec<(&str, u64)> {
        match self {
            ModelRunner::Single(_) => Vec::new(),
            ModelRunner::Staged(s) => s
                .encoders
                .iter()
                .map(|e| (e.name.as_str(), e.ns))
                .chain(std::iter::once(("head", s.head_ns)))
                .collect(),
        }
    }

    /// Items per encoder call, by the encoder's input name: a hop's new items where the
    /// encoder runs batched (see the module docs), else 1; empty for a single graph.
    pub fn encoder_batches(&self) -> Vec<(&str, usize)> {
        match self {
            ModelRunner::Single(_) => Vec::new(),
            ModelRunner::Staged(s) => s
                .encoders
                .iter()
                .map(|e| (e.name.as_str(), e.batch.as_ref().map_or(1, |b| b.size)))
                .collect(),
        }
    }

    /// Tokens computed and tokens reused from the rings so far (0, 0 for a single graph).
    pub fn token_counts(&self) -> (u64, u64) {
        match self {
            ModelRunner::Single(_) => (0, 0),
            ModelRunner::Staged(s) => s
                .encoders
                .iter()
                .fold((0, 0), |(c, r), e| (c + e.computed, r + e.reused)),
        }
    }
}

/// Encoders with token rings and a head; see the module docs.
pub struct StagedModel {
    encoders: Vec<Encoder>,
    head: Box<dyn Backend>,
    head_inputs: Vec<Tensor>,
    /// What fills each head input.
    head_slots: Vec<HeadSlot>,
    /// One frame, for raw `NCTHW` head inputs.
    scratch: Vec<f32>,
    head_ns: u64,
}

impl StagedModel {
    fn run(&mut self, window: &Window, assembler: &InputAssembler) -> Result<Tensor> {
        for (slot, tensor) in self.head_slots.iter().zip(self.head_inputs.iter_mut()) {
            match *slot {
                HeadSlot::Tokens(n) => {
                    let enc = self
                        .encoders
                        .get_mut(n)
                        .ok_or_else(|| err!(Model, "stages: no encoder {n}"))?;
                    let t0 = Instant::now();
                    enc.encode(window, assembler, &mut tensor.data)?;
                    enc.ns += t0.elapsed().as_nanos() as u64;
                }
                HeadSlot::Raw(k) => {
                    assembler.fill_input(k, window, &mut tensor.data, &mut self.scratch)?
                }
            }
        }
        let t0 = Instant::now();
        let out = self.head.run(&self.head_inputs);
        self.head_ns += t0.elapsed().as_nanos() as u64;
        out
    }
}

/// The same encoder graph opened for `size` items per call: the items a hop brings in
/// steady state, so each hop costs one call per encoder instead of one per item.
struct Batch {
    backend: Box<dyn Backend>,
    input: Tensor,
    size: usize,
}

impl Batch {
    /// Opens the batched graph where it helps and can work: tuning on (see
    /// [`crate::backend::tuning_enabled`]), onnxruntime serving, more than one new item
    /// per hop, and a graph whose first axis is free. Otherwise `None`, and items go one
    /// by one. Measured on the 224x224 bench bundles (benches/realscale.rs): batches make
    /// onnxruntime ~10% faster end to end, and tract slower (at a batch above 1 it
    /// materialises every patch of every image at once instead of gathering them lazily),
    /// so tract is not batched; a TensorRT engine per batch size would cost a build.
    fn open(
        e: &EncoderGraph,
        serving: &str,
        bundle: &Bundle,
        opts: &BackendOptions,
    ) -> Option<Batch> {
        if !crate::backend::tuning_enabled() || serving != "onnxruntime" {
            return None;
        }
        let size = items_per_hop(e, bundle).filter(|&n| n > 1)?;
        let mut graph = e.graph.clone();
        let first = |dims: &mut Vec<usize>| dims.first_mut().map(|d| *d = size);
        first(&mut graph.inputs.first_mut()?.dims)?;
        first(&mut graph.output.dims)?;
        let opts = BackendOptions {
            choice: crate::backend::BackendChoice::OnnxRuntime,
            ..opts.clone()
        };
        match open(&graph, &opts) {
            Ok((backend, _)) => {
                log::debug!("{}: {size} items per call", e.graph.path.display());
                let input = Tensor::zeros(&graph.inputs[0].dims);
                Some(Batch {
                    backend,
                    input,
                    size,
                })
            }
            Err(err) => {
                log::debug!("{}: one item per call ({err})", e.graph.path.display());
                None
            }
        }
    }
}

/// How many new items (frames, flow fields, log-mel segments) each hop brings to
/// encoder `e` in steady state, where that is a whole number.
fn items_per_hop(e: &EncoderGraph, bundle: &Bundle) -> Option<usize> {
    let w = &bundle.manifest.window;
    match e.input.frontend {
        Frontend::Image | Frontend::Flow => {
            let stride = w.frame_stride().max(1);
            w.hop_frames
                .is_multiple_of(stride)
                .then(|| w.hop_frames / stride)
        }
        Frontend::Logmel => {
            let shift_ms = f64::from(e.input.fbank.as_ref()?.frame_shift_ms);
            let mel = w.hop_frames as f64 * 1000.0 / (w.fps as f64 * shift_ms);
            let whole = mel.round();
            let segment = e.segment.max(1);
            ((mel - whole).abs() < 1e-6 && (whole as usize).is_multiple_of(segment))
                .then(|| whole as usize / segment)
        }
    }
}

/// One encoder: its backend, a one-token input buffer and the token ring.
struct Encoder {
    frontend: Frontend,
    /// Index of the manifest input it reads.
    input: usize,
    backend: Box<dyn Backend>,
    one: Tensor,
    batch: Option<Batch>,
    /// Token indices the ring does not hold, this window (allocated once).
    misses: Vec<usize>,
    tokens: usize,
    dim: usize,
    segment: usize,
    ring: TokenRing,
    computed: u64,
    reused: u64,
    /// The input's name, and the time spent encoding so far.
    name: String,
    ns: u64,
}

impl Encoder {
    fn new(
        e: EncoderGraph,
        backend: Box<dyn Backend>,
        batch: Option<Batch>,
        bundle: &Bundle,
    ) -> Result<Encoder> {
        let input = bundle
            .manifest
            .inputs
            .iter()
            .position(|i| i.name == e.input.name)
            .ok_or_else(|| err!(Model, "stages: no input `{}`", e.input.name))?;
        Ok(Encoder {
            frontend: e.input.frontend,
            input,
            backend,
            one: Tensor::zeros(&e.graph.inputs[0].dims),
            batch,
            misses: Vec::with_capacity(e.tokens),
            tokens: e.tokens,
            dim: e.dim,
            segment: e.segment,
            // two windows' worth: a skipped window does not flush the ring; frames are
            // keyed by capture number, `stride` apart
            ring: TokenRing::new(
                2 * e.tokens
                    * match e.input.frontend {
                        Frontend::Logmel => 1,
                        _ => bundle.manifest.window.frame_stride().max(1),
                    },
                e.dim,
            ),
            computed: 0,
            reused: 0,
            name: e.input.name.clone(),
            ns: 0,
        })
    }

    /// The cache key of token `n` of `window`, or `None` if it must not be cached.
    fn key(&self, window: &Window, n: usize) -> Option<u64> {
        match self.frontend {
            Frontend::Image => Some(window.frame_number(n)),
            Frontend::Flow => Some(window.frame_number(n + 1)),
            Frontend::Logmel => {
                let (start, end) = (n * self.segment, (n + 1) * self.segment);
                let real = &window.audio_slots;
                (start >= real.start && end <= real.end)
                    .then(|| window.audio_index + (start - real.start) as u64)
            }
        }
    }

    /// Fills `out` (`tokens * dim`) with the window's tokens, normalising the input and
    /// running the encoder only for tokens the ring does not hold.
    fn encode(
        &mut self,
        window: &Window,
        assembler: &InputAssembler,
        out: &mut [f32],
    ) -> Result<()> {
        if out.len() != self.tokens * self.dim {
            return Err(err!(
                Backend,
                "staged: {} token values for {} tokens of dim {}",
                out.len(),
                self.tokens,
                self.dim
            ));
        }
        // Log-mel keys step by `segment` within a window: divide so that ring slots are
        // consecutive.
        let step = if self.frontend == Frontend::Logmel {
            self.segment as u64
        } else {
            1
        };
        let absent = self.frontend == Frontend::Logmel && assembler.audio_as_absent(window);
        let key = |enc: &Encoder, n: usize| if absent { None } else { enc.key(window, n) };
        self.misses.clear();
        for (n, token) in out.chunks_exact_mut(self.dim).enumerate() {
            match key(self, n).and_then(|k| self.ring.get(k, k / step)) {
                Some(cached) => {
                    token.copy_from_slice(cached);
                    self.reused += 1;
                }
                None => self.misses.push(n),
            }
        }
        let mut done = 0;
        while done < self.misses.len() {
            let left = self.misses.len() - done;
            let (t, items) = match self.batch.as_mut().filter(|b| b.size <= left) {
                Some(b) => {
                    let item = b.input.data.len() / b.size;
                    for (slot, &n) in b
                        .input
                        .data
                        .chunks_exact_mut(item)
                        .zip(&self.misses[done..])
                    {
                        assembler.fill_item(self.input, window, n, slot)?;
                    }
                    (b.backend.run(std::slice::from_ref(&b.input))?, b.size)
                }
                None => {
                    let n = self.misses[done];
                    assembler.fill_item(self.input, window, n, &mut self.one.data)?;
                    (self.backend.run(std::slice::from_ref(&self.one))?, 1)
                }
            };
            if t.data.len() != items * self.dim {
                return Err(err!(
                    Backend,
                    "staged: encoder gave {} values for {items} item(s), manifest says dim = {}",
                    t.data.len(),
                    self.dim
                ));
            }
            for (j, value) in t.data.chunks_exact(self.dim).enumerate() {
                let n = self.misses[done + j];
                out[n * self.dim..(n + 1) * self.dim].copy_from_slice(value);
                if let Some(k) = key(self, n) {
                    self.ring.put(k, k / step, value);
                }
            }
            self.computed += items as u64;
            done += items;
        }
        Ok(())
    }
}

/// A direct-mapped cache of tokens: key `k` lives in slot `slot % capacity`, so
/// consecutive keys never evict each other and the oldest are overwritten first.
/// Allocated once.
struct TokenRing {
    keys: Vec<Option<u64>>,
    values: Vec<f32>,
    dim: usize,
}

impl TokenRing {
    fn new(capacity: usize, dim: usize) -> TokenRing {
        let capacity = capacity.max(1);
        TokenRing {
            keys: vec![None; capacity],
            values: vec![0.0; capacity * dim],
            dim,
        }
    }

    fn get(&self, key: u64, slot: u64) -> Option<&[f32]> {
        let s = (slot % self.keys.len() as u64) as usize;
        (self.keys[s] == Some(key)).then(|| &self.values[s * self.dim..(s + 1) * self.dim])
    }

    fn put(&mut self, key: u64, slot: u64, token: &[f32]) {
        let s = (slot % self.keys.len() as u64) as usize;
        self.keys[s] = Some(key);
        self.values[s * self.dim..(s + 1) * self.dim].copy_from_slice(token);
    }
}

#[cfg(test)]
mod tests {
    use super::TokenRing;

    #[test]
    fn ring_keeps_consecutive_keys_and_evicts_the_oldest() {
        let mut ring = TokenRing::new(4, 2);
        for k in 10..14u64 {
            ring.put(k, k, &[k as f32, -(k as f32)]);
        }
        for k in 10..14u64 {
            assert_eq!(ring.get(k, k), Some(&[k as f32, -(k as f32)][..]));
        }
        ring.put(14, 14, &[14.0, -14.0]);
        assert_eq!(ring.get(10, 10), None, "14 took 10's slot");
        assert_eq!(ring.get(11, 11), Some(&[11.0, -11.0][..]));
        assert_eq!(
            ring.get(99, 11),
            None,
            "a different key in the same slot is a miss"
        );
    }
}
