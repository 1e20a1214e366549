//! Staged execution: a model split into per-frame / per-segment encoders and a head
//! (`[stages]` in `model.toml`). Consecutive windows share all but `hop` frames, so
//! the encoders run only on what is new: each encoder keeps its tokens in a ring keyed
//! by the stream number of the frame, flow field or mel segment they came from, and
//! every hop the head runs on the tokens of the whole window.
//!
//! Keys make the cache exact: a frame's number always means the same pixels, a mel
//! frame's number the same audio. Log-mel segments that hold silence in place of
//! missing audio are computed but never cached, since the real audio may come later.

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
            encoders.push(Encoder::new(e, backend, bundle)?);
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

    /// Encodes the frames and flow fields of `window` (video complete, audio still to
    /// come, see [`crate::window::WindowStreamStep::VideoReady`]) into the token rings, so
    /// that [`run`](Self::run) on the complete window only encodes its audio and runs the
    /// head. Nothing for a single graph, which needs the whole window at once.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn prefetch_video(&mut self, window: &Window, assembler: &InputAssembler) -> Result<()> {
        let ModelRunner::Staged(s) = self else {
            return Ok(());
        };
        for (slot, tensor) in s.head_slots.iter().zip(s.head_inputs.iter_mut()) {
            let HeadSlot::Tokens(n) = *slot else {
                continue;
            };
            let enc = encoder(&mut s.encoders, n)?;
            if enc.frontend != Frontend::Logmel {
                // the head input is a scratch here: `run` fills it again
                enc.encode(window, assembler, &mut tensor.data)?;
            }
        }
        Ok(())
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
                    encoder(&mut self.encoders, n)?.encode(window, assembler, &mut tensor.data)?
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

/// Encoder `n` of a head slot.
fn encoder(encoders: &mut [Encoder], n: usize) -> Result<&mut Encoder> {
    encoders
        .get_mut(n)
        .ok_or_else(|| err!(Model, "stages: no encoder {n}"))
}

/// One encoder: its backend, a one-token input buffer and the token ring.
struct Encoder {
    frontend: Frontend,
    /// Index of the manifest input it reads.
    input: usize,
    backend: Box<dyn Backend>,
    one: Tensor,
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
    fn new(e: EncoderGraph, backend: Box<dyn Backend>, bundle: &Bundle) -> Result<Encoder> {
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
    /// running the encoder only for tokens the ring does not hold; the time it takes is
    /// counted in [`stage_ns`](ModelRunner::stage_ns).
    fn encode(
        &mut self,
        window: &Window,
        assembler: &InputAssembler,
        out: &mut [f32],
    ) -> Result<()> {
        let t0 = Instant::now();
        let done = self.encode_uncounted(window, assembler, out);
        self.ns += t0.elapsed().as_nanos() as u64;
        done
    }

    fn encode_uncounted(
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
        for (n, token) in out.chunks_exact_mut(self.dim).enumerate() {
            let absent = self.frontend == Frontend::Logmel && assembler.audio_as_absent(window);
            let key = if absent { None } else { self.key(window, n) };
            if let Some(cached) = key.and_then(|k| self.ring.get(k, k / step)) {
                token.copy_from_slice(cached);
                self.reused += 1;
                continue;
            }
            assembler.fill_item(self.input, window, n, &mut self.one.data)?;
            let t = self.backend.run(std::slice::from_ref(&self.one))?;
            if t.data.len() != self.dim {
                return Err(err!(
                    Backend,
                    "staged: encoder gave {} values, manifest says dim = {}",
                    t.data.len(),
                    self.dim
                ));
            }
            token.copy_from_slice(&t.data);
            if let Some(k) = key {
                self.ring.put(k, k / step, &t.data);
            }
            self.computed += 1;
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
