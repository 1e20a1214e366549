//! avaction: real-time action recognition from a camera and a microphone.
//!
//! Data flows through one folder per stage:
//! [`capture`] (GStreamer video, cpal audio) -> [`clock`] (one timeline, rolling
//! windows) -> [`frontend`] (image, optical flow, log-mel) -> [`backend`] (tract;
//! TensorRT later) -> [`decode`] (smoothing, events) -> [`api`] (the [`Runtime`]
//! handle). [`model`] reads model bundles; [`synth`] renders synthetic audio-visual
//! scenes with a ground-truth timeline for tests, training and the demo. [`text`]
//! embeds label sentences (all-MiniLM-L6-v2) for the open-vocabulary models.
//!
//! Run the shipped model on a synthetic scene rendered to a file (this example runs
//! as a doc test; for a camera use `VideoSource::Camera(None)` and
//! `AudioSource::DefaultMicrophone`):
//!
//! ```
//! use avaction::synth::{self, Scene, SceneConfig};
//! use avaction::{AudioSource, Output, Runtime, VideoSource};
//!
//! let scene = Scene::generate(&SceneConfig { seed: 3, duration_s: 3.0, ..SceneConfig::default() })?;
//! let path = std::env::temp_dir().join("avaction-doc-example.mkv");
//! synth::write_media(&scene, &path)?;
//!
//! let runtime = Runtime::builder()
//!     .model(concat!(env!("CARGO_MANIFEST_DIR"), "/models/cavnet-small"))
//!     .video(VideoSource::Uri(path.display().to_string()))
//!     .audio(AudioSource::FromVideo)
//!     .build()?;
//! let mut predictions = 0;
//! for output in runtime.outputs() {
//!     match output {
//!         Output::Prediction(p) => {
//!             predictions += 1;
//!             println!("{:.2}s {} {:.2}", p.end_s, p.top[0].label, p.top[0].score);
//!         }
//!         Output::Event(e) => println!("{:?} {} at {:.2}s", e.kind, e.label, e.time_s),
//!     }
//! }
//! let stats = runtime.finish()?;
//! assert!(predictions > 20);
//! println!("{:.1} windows/s, p99 latency {:.1} ms", stats.windows_per_s, stats.latency_p99_ms);
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), avaction::Error>(())
//! ```

#![warn(missing_docs)]

pub mod api;
pub mod backend;
pub mod capture;
pub mod clock;
pub mod decode;
mod error;
pub mod frontend;
pub mod model;
pub mod synth;
pub mod target;
pub mod text;

pub use api::{Output, Runtime, RuntimeBuilder, Stats};
pub use backend::BackendChoice;
pub use capture::{AudioSource, VideoSource};
pub use decode::{Event, EventKind, Prediction};
pub use error::{Error, ErrorKind, Result};
