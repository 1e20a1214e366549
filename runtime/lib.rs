//! avaction: real-time action recognition from a camera and a microphone.

#![warn(missing_docs)]

pub mod capture;
pub mod clock;
mod error;
pub mod frontend;
pub mod synth;

pub use capture::{AudioSource, VideoSource};
pub use error::{Error, ErrorKind, Result};
