//! Running a model on windows: [`InputAssembler`] normalises a window into the model's
//! input tensors, [`ModelRunner`] runs the single graph or the staged encoders (token
//! rings keyed by frame and mel-frame number) and the head on a backend, and
//! [`LabelSet`] gathers the label sentences an open-vocabulary model scores. [`plan`]
//! derives the capture and window settings a model needs.

mod assembler;
mod labels;
pub mod plan;
mod staged;
pub mod verify;

pub use assembler::InputAssembler;
pub use labels::{decoder_labels, EmbedFn, LabelSet};
pub use staged::{ModelRunner, StagedModel};
