//! avaction: real-time action recognition from a camera and a microphone.
//!
//! # The house, in the order data flows
//!
//! - [`capture`]: where video (GStreamer: camera, file, URI, test source) and audio
//!   (cpal microphone, or the file's own track) enter, stamped on one timeline.
//! - [`window`]: the [`WindowStream`](window::WindowStream) turns capture events into
//!   rolling windows (frames, optical flow, log-mel of the same span, measured skew),
//!   running the [`frontend`]s (image resize, optical flow, log-mel: pure functions of
//!   samples) as frames and audio arrive.
//! - [`infer`]: normalises a window into the model's input tensors, runs the single
//!   graph or the staged encoders (token rings) and head on a [`backend`] (tract on the
//!   CPU, TensorRT on NVIDIA GPUs), and gathers an open-vocabulary model's labels
//!   (sentences embedded by [`text`]).
//! - [`decode`]: scores become smoothed top-k [`Prediction`]s and onset/offset
//!   [`Event`]s.
//! - [`deliver`]: sinks that take the outputs further: JSON-lines files, an MQTT
//!   broker, webhooks, with an on-disk spool through outages and restarts.
//! - [`api`]: the hub: [`Runtime`] wires the stages into threads and hands out
//!   [`Output`]s; [`metrics`] serves Prometheus metrics and a health endpoint over it,
//!   [`ui`] a live view in a web page, [`ros2`] ROS 2 topics;
//!   the `avaction` command (runtime/cli) sits on top.
//!
//! Beside the flow: [`supervise`] (watchdogs that reopen lost or stalled live sources),
//! [`health`] (one health model for sources and runtime), [`clock`] (the timeline and
//! the frame and audio-chunk types),
//! [`model`] (bundles and their manifest: schema and validation), [`target`] (device
//! profiles) and [`synth`] (synthetic audio-visual scenes with ground truth for tests,
//! training and the demo).
//!
//! # Layers
//!
//! Every `use crate::` points down this table: a folder imports only folders of a
//! lower layer (and itself); folders of one layer are independent of each other.
//! `tests/layers.rs` reads this table and the sources, and fails on an import back up.
//!
//! | layer | folders |
//! |---|---|
//! | 9 | cli |
//! | 8 | ui, ros2 |
//! | 7 | metrics |
//! | 6 | api |
//! | 5 | infer, target, deliver |
//! | 4 | model |
//! | 3 | window, supervise |
//! | 2 | capture, frontend, backend, decode, text, synth |
//! | 1 | clock, error, health |
//!
//! Run the shipped model on a synthetic scene rendered to a file (this example runs
//! as a doc test; for a camera use `VideoSource::Camera(None)` and
//! `AudioSource::DefaultMicrophone`):
//!
//! ```
//! use avaction::synth::{self, SceneConfig};
//! use avaction::{AudioSource, Output, Runtime, VideoSource};
//!
//! let path = std::env::temp_dir().join("avaction-doc-example.mkv");
//! synth::render_to_file(&SceneConfig { seed: 3, duration_s: 3.0, ..SceneConfig::default() }, &path)?;
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
//!         Output::End(end) => assert!(end.complete),
//!         _ => {} // health changes
//!     }
//! }
//! let stats = runtime.finish()?;
//! assert!(predictions > 20);
//! println!("{:.1} windows/s, p99 latency {:.1} ms", stats.windows_per_s, stats.latency_p99_ms);
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), avaction::Error>(())
//! ```

#![warn(missing_docs)]
#![warn(clippy::missing_errors_doc)]

pub mod api;
pub mod backend;
pub mod capture;
pub mod clock;
pub mod decode;
pub mod deliver;
mod error;
pub mod frontend;
pub mod health;
pub mod infer;
pub mod metrics;
pub mod model;
pub mod ros2;
pub mod supervise;
pub mod synth;
pub mod target;
pub mod text;
pub mod ui;
pub mod window;

pub use api::{Observer, Output, Runtime, RuntimeBuilder, Stats};
pub use backend::BackendChoice;
pub use capture::{AudioSource, VideoSource};
pub use decode::{Event, EventKind, Prediction};
pub(crate) use error::err;
pub use error::{Error, ErrorKind, Result};
pub use health::Health;
pub use supervise::Policy;
pub use window::End;
