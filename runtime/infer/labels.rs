//! The labels an open-vocabulary runtime scores: the bundle's sentences, then those
//! added at run time, with text embeddings from the bundle or from the on-device text
//! model ([`crate::text`]).

use crate::decode::vocabulary::LabelScorer;
use crate::model::Bundle;
use crate::{err, Result};

/// Embeds sentences with the on-device text model: one embedding per sentence, or why not.
pub type EmbedFn<'a> = dyn FnMut(&[String]) -> Result<Vec<Vec<f32>>> + 'a;

/// The labels an open-vocabulary runtime scores: the bundle's, then those added at run
/// time, with their text embeddings and where these came from.
#[derive(Debug, Clone)]
pub struct LabelSet {
    /// All labels, the bundle's first.
    pub labels: Vec<String>,
    /// Whether each label was added at run time (weighted with `weight_novel`).
    pub novel: Vec<bool>,
    /// `labels.len() * dim` values.
    pub embeddings: Vec<f32>,
    /// Where the embeddings came from, for logs and `avaction inspect`.
    pub source: String,
}

impl LabelSet {
    /// The bundle's labels plus `extra` sentences (duplicates ignored). Sentences the
    /// bundle has precomputed embeddings for use them; the rest are passed to `embed`
    /// (the on-device text model), which returns one embedding per sentence or says
    /// why it cannot.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a closed-set bundle; the error of `embed`;
    /// [`Model`](crate::ErrorKind::Model) when `embed` gives the wrong number or size of
    /// embeddings.
    pub fn build(bundle: &Bundle, extra: &[String], embed: &mut EmbedFn) -> Result<LabelSet> {
        let Some(vocab) = &bundle.vocabulary else {
            return Err(err!(
                Config,
                "model {} has a fixed label set; added labels need an open-vocabulary model \
                 (one with [vocabulary] in model.toml)",
                bundle.manifest.name
            ));
        };
        let mut labels = bundle.labels.clone();
        let mut novel = vec![false; labels.len()];
        for e in extra.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if !labels.iter().any(|l| l == e) {
                labels.push(e.to_string());
                novel.push(true);
            }
        }
        let missing: Vec<String> = labels
            .iter()
            .filter(|l| vocab.embedding(l).is_none())
            .cloned()
            .collect();
        let computed = if missing.is_empty() {
            Vec::new()
        } else {
            embed(&missing)?
        };
        if computed.len() != missing.len() || computed.iter().any(|c| c.len() != vocab.dim) {
            return Err(err!(
                Model,
                "text model gave {} embeddings for {} sentences (expected {} values each)",
                computed.len(),
                missing.len(),
                vocab.dim
            ));
        }
        // `missing` is in label order, so the computed embeddings come in that order too
        let mut computed = computed.iter();
        let mut embeddings = Vec::with_capacity(labels.len() * vocab.dim);
        for l in &labels {
            match vocab
                .embedding(l)
                .or_else(|| computed.next().map(Vec::as_slice))
            {
                Some(e) => embeddings.extend_from_slice(e),
                None => return Err(err!(Model, "vocabulary: no embedding for label {l:?}")),
            }
        }
        let precomputed = labels.len() - missing.len();
        let source = match missing.len() {
            0 => format!(
                "{precomputed} precomputed embeddings ({})",
                bundle
                    .manifest
                    .vocabulary
                    .as_ref()
                    .map_or("", |v| v.embeddings.as_str())
            ),
            n => {
                format!("{precomputed} precomputed, {n} embedded on this device by the text model")
            }
        };
        Ok(LabelSet {
            labels,
            novel,
            embeddings,
            source,
        })
    }

    /// A scorer for these labels with the bundle's branches.
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model) for a bundle that is not open-vocabulary, or as
    /// [`LabelScorer::new`].
    pub fn scorer(&self, bundle: &Bundle) -> Result<LabelScorer> {
        let (branches, dim) = match (&bundle.manifest.vocabulary, &bundle.vocabulary) {
            (Some(spec), Some(v)) => (spec.branches.clone(), v.dim),
            _ => {
                return Err(err!(
                    Model,
                    "model {} is not open-vocabulary",
                    bundle.manifest.name
                ))
            }
        };
        LabelScorer::new(branches, dim, self.embeddings.clone(), self.novel.clone())
    }
}

/// The labels a runtime reports for `bundle` with `extra` sentences added, and for an
/// open-vocabulary model the scorer that turns its embeddings into label scores. A
/// closed-set bundle with no extra sentences keeps its own labels and needs no scorer.
///
/// # Errors
/// Sentences added to a closed-set model; a sentence with no precomputed embedding
/// where the on-device text model is missing or fails; a bundle whose embeddings
/// disagree with its output.
pub fn decoder_labels(
    bundle: &Bundle,
    extra: &[String],
) -> Result<(Vec<String>, Option<LabelScorer>)> {
    if bundle.vocabulary.is_none() && extra.is_empty() {
        return Ok((bundle.labels.clone(), None));
    }
    let set = LabelSet::build(bundle, extra, &mut |sentences| {
        crate::text::embed_for_bundle(&bundle.dir, sentences)
    })?;
    log::info!("labels: {} ({})", set.labels.len(), set.source);
    let scorer = set.scorer(bundle)?;
    Ok((set.labels, Some(scorer)))
}
