//! Open-vocabulary scoring: a model's window embeddings (one per branch) are matched
//! to label sentences' text embeddings by cosine similarity. Each branch gives
//! `softmax_j(cos(e_b, t_j) / τ_b)`; a label's probability is the weighted sum over
//! branches, with the branch's `weight_base` for the bundle's own labels and
//! `weight_novel` for labels added at run time (MOV, paper 001, eq. 11-12:
//! `P = β·P_f + (1-β)·P_v`).
//!
//! ```
//! use avaction::decode::vocabulary::{BranchSpec, LabelScorer};
//! let branch = BranchSpec { name: "fused".into(), temperature: 0.1, weight_base: 1.0, weight_novel: 1.0 };
//! // two labels in a 2-d text space; the window embedding points at the first
//! let mut scorer = LabelScorer::new(vec![branch], 2, vec![1.0, 0.0, 0.0, 1.0], vec![false, false])?;
//! let p = scorer.probabilities(&[0.9, 0.1])?;
//! assert!(p[0] > 0.99 && (p[0] + p[1] - 1.0).abs() < 1e-6);
//! # Ok::<(), avaction::Error>(())
//! ```

use crate::{err, Result};
use serde::{Deserialize, Serialize};

/// One branch of an open-vocabulary output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchSpec {
    /// Name for logs (`fused`, `video`).
    pub name: String,
    /// Softmax temperature τ.
    pub temperature: f32,
    /// Weight of this branch for the bundle's own labels.
    pub weight_base: f32,
    /// Weight of this branch for labels added at run time.
    pub weight_novel: f32,
}

/// Scores window embeddings against label embeddings; buffers allocated once.
#[derive(Debug, Clone)]
pub struct LabelScorer {
    branches: Vec<BranchSpec>,
    dim: usize,
    /// `[labels, dim]`, each row of unit length.
    text: Vec<f32>,
    novel: Vec<bool>,
    sims: Vec<f32>,
    probs: Vec<f32>,
}

impl LabelScorer {
    /// `text` holds one `dim`-value embedding per label (normalised here); `novel[j]`
    /// says whether label `j` was added at run time.
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model) when `text` is not `novel.len() * dim` values, or
    /// a label's embedding is zero or not finite.
    pub fn new(
        branches: Vec<BranchSpec>,
        dim: usize,
        mut text: Vec<f32>,
        novel: Vec<bool>,
    ) -> Result<LabelScorer> {
        if dim == 0 || text.len() != novel.len() * dim || novel.is_empty() {
            return Err(err!(
                Model,
                "vocabulary: {} text values for {} labels of dim {dim}",
                text.len(),
                novel.len()
            ));
        }
        for (j, row) in text.chunks_exact_mut(dim).enumerate() {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if !(norm.is_finite() && norm > 0.0) {
                return Err(err!(
                    Model,
                    "vocabulary: label {j} has a zero or non-finite text embedding"
                ));
            }
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let n = novel.len();
        Ok(LabelScorer {
            branches,
            dim,
            text,
            novel,
            sims: vec![0.0; n],
            probs: vec![0.0; n],
        })
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.novel.len()
    }

    /// Whether there are no labels (never: [`new`](Self::new) refuses that).
    pub fn is_empty(&self) -> bool {
        self.novel.is_empty()
    }

    /// The probability of each label for a model output of `branches * dim` values.
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model) when `output` is not one `dim`-value embedding
    /// per branch.
    pub fn probabilities(&mut self, output: &[f32]) -> Result<&[f32]> {
        let dim = self.dim;
        if output.len() != self.branches.len() * dim {
            return Err(err!(
                Model,
                "vocabulary: model output has {} values, expected {} branch(es) x {dim}",
                output.len(),
                self.branches.len()
            ));
        }
        self.probs.iter_mut().for_each(|p| *p = 0.0);
        for (b, emb) in self.branches.iter().zip(output.chunks_exact(dim)) {
            let norm = emb.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            for (s, t) in self.sims.iter_mut().zip(self.text.chunks_exact(dim)) {
                let dot: f32 = emb.iter().zip(t).map(|(a, b)| a * b).sum();
                *s = dot / norm / b.temperature;
            }
            let max = self.sims.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for s in self.sims.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            for ((p, s), novel) in self.probs.iter_mut().zip(&self.sims).zip(&self.novel) {
                let w = if *novel {
                    b.weight_novel
                } else {
                    b.weight_base
                };
                *p += w * s / sum;
            }
        }
        if self.probs.iter().any(|p| !p.is_finite()) {
            return Err(err!(Backend, "vocabulary: the model output is not finite"));
        }
        Ok(&self.probs)
    }

    /// [`probabilities`](Self::probabilities) as log-probabilities, the logits a softmax
    /// [`Decoder`](super::Decoder) turns back into the same probabilities.
    ///
    /// # Errors
    /// As [`LabelScorer::probabilities`].
    pub fn logits(&mut self, output: &[f32], out: &mut Vec<f32>) -> Result<()> {
        let p = self.probabilities(output)?;
        out.clear();
        out.extend(p.iter().map(|p| p.max(1e-30).ln()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(name: &str, t: f32, base: f32, novel: f32) -> BranchSpec {
        BranchSpec {
            name: name.into(),
            temperature: t,
            weight_base: base,
            weight_novel: novel,
        }
    }

    #[test]
    fn mov_score_fusion_weights_branches_by_label_kind() {
        // labels: 0 base along x, 1 novel along y; fused branch points at x, video at y
        let mut s = LabelScorer::new(
            vec![
                branch("fused", 0.01, 1.0, 0.25),
                branch("video", 0.003, 0.0, 0.75),
            ],
            2,
            vec![2.0, 0.0, 0.0, 3.0],
            vec![false, true],
        )
        .unwrap();
        let p = s.probabilities(&[1.0, 0.0, 0.0, 1.0]).unwrap().to_vec();
        // fused: P_f = (1, 0); video: P_v = (0, 1)
        // base label 0: 1.0 * 1 + 0 * 0 = 1; novel label 1: 0.25 * 0 + 0.75 * 1 = 0.75
        assert!(
            (p[0] - 1.0).abs() < 1e-6 && (p[1] - 0.75).abs() < 1e-6,
            "{p:?}"
        );
        let mut logits = Vec::new();
        s.logits(&[1.0, 0.0, 0.0, 1.0], &mut logits).unwrap();
        assert!((logits[1] - 0.75f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn temperature_sharpens_and_shapes_are_checked() {
        let t = vec![1.0, 0.0, 0.6, 0.8];
        let mut soft = LabelScorer::new(
            vec![branch("f", 1.0, 1.0, 1.0)],
            2,
            t.clone(),
            vec![false; 2],
        )
        .unwrap();
        let mut sharp =
            LabelScorer::new(vec![branch("f", 0.01, 1.0, 1.0)], 2, t, vec![false; 2]).unwrap();
        let a = soft.probabilities(&[1.0, 0.0]).unwrap()[0];
        let b = sharp.probabilities(&[1.0, 0.0]).unwrap()[0];
        assert!(a < 0.7 && b > 0.99, "{a} {b}");
        assert!(sharp.probabilities(&[1.0, 0.0, 3.0]).is_err());
        assert!(LabelScorer::new(
            vec![branch("f", 1.0, 1.0, 1.0)],
            2,
            vec![0.0; 4],
            vec![false; 2]
        )
        .is_err());
    }
}
