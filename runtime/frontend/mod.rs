//! Frontends turn captured samples into model inputs exactly as training did:
//! [`image`] (RGB -> normalised CHW floats), [`flow`] (optical flow between
//! consecutive frames, MOV encoding) and [`logmel`] (Kaldi-style log-mel filterbank).

pub mod flow;
pub mod image;
pub mod logmel;
