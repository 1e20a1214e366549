//! The options of `avaction run`, from the command line and from a TOML config file
//! (`--config FILE`). One struct serves both: every flag of `run` is a key of the file
//! with the same name (`events_only` for `--events-only`), and the settings that have
//! no flag (supervision) are tables. A flag given on the command line wins over the
//! file; a flag that is on in the file cannot be turned off on the command line.
//!
//! Relative paths in a file (`model`, `label_file`, `engine_cache`, a `target` ending in
//! `.toml`) are taken relative to the file's folder; a `model` that is not a folder there
//! is a bundle name, searched as `runtime/model/search.rs` says.
//!
//! `examples/configs/reference.toml` sets and documents every key; the tests check that
//! it names them all.

use crate::args;
use avaction::supervise::Policy;
use avaction::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The bundle `run` uses when neither the command line nor the file names one.
pub const DEFAULT_MODEL: &str = "cavnet-ov-small";
/// The video `run` reads when neither the command line nor the file names one.
pub const DEFAULT_VIDEO: &str = "camera";

/// Everything `avaction run` can be told.
#[derive(clap::Args, Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunOptions {
    /// Read options from this TOML file (see examples/configs/reference.toml); flags
    /// given here win over it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Model bundle: a folder, or the name of an installed bundle (searched in
    /// $AVACTION_MODELS, ~/.local/share/avaction/models, /usr/share/avaction/models, then
    /// the source tree) [default: cavnet-ov-small].
    #[arg(long, short)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Video: `camera`, `camera:/dev/video0`, `test:ball`, a file path, a URI (rtsp://…)
    /// or `gst:DESCRIPTION` (a gst-launch pipeline ending in a video pad) [default:
    /// camera].
    #[arg(long, short)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    /// Audio: `mic`, `mic:NAME`, `video` (the file's own track) or `none`.
    /// Default: `video` for files and URIs, `mic` otherwise.
    #[arg(long, short)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
    /// Backend: auto, tract, onnxruntime or tensorrt (default: the target's order, else auto:
    /// TensorRT > onnxruntime > tract, where present).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Device profile: `auto` (detect this machine), a name from targets/ (e.g.
    /// `jetson-orin-nano`, `cpu`) or a .toml file. Sets backend order, window stride and
    /// flow estimator; --backend and --hop still win.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// TensorRT precision: fp16 or fp32 (default: the target's, else fp16).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    /// Threads tract may use per inference (default: the target's, else 1).
    #[arg(long, value_parser = args::threads)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// TensorRT engine cache folder (default: $AVACTION_CACHE_DIR, else the user cache).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_cache: Option<PathBuf>,
    /// Play files at real time instead of as fast as possible.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime: Option<bool>,
    /// Write one JSON object per line (predictions, events, health changes and, for
    /// files, a final end record).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<bool>,
    /// Print events only (no per-window predictions).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_only: Option<bool>,
    /// Frames between windows (default: the model's).
    #[arg(long, value_parser = args::hop)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop: Option<usize>,
    /// Stop after this many seconds (finite, above 0).
    #[arg(long, value_parser = args::seconds)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Show the frames with the current label in a window (GStreamer sink, default
    /// autovideosink; needs a display).
    #[arg(long, num_args = 0..=1, default_missing_value = "autovideosink")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Print run statistics to stderr at the end (as JSON with --json).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<bool>,
    /// Open-vocabulary models: add a label sentence (repeatable), e.g.
    /// --labels "a disc falls with a thud". Sentences without a precomputed embedding
    /// in the bundle are embedded on this device (needs scripts/setup-minilm.sh).
    #[arg(long, value_name = "SENTENCE", value_parser = args::sentence)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Open-vocabulary models: add the label sentences of a file, one per line.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub label_file: Vec<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or per module
    /// (`avaction::supervise=debug`) [default: warn; $RUST_LOG wins over both].
    #[arg(long, value_name = "FILTER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Also deliver events to a sink (repeatable): `jsonl:PATH`, `mqtt://HOST:PORT/PREFIX`,
    /// `mqtts://…`, `http(s)://…` (a webhook); see README "Deliver events".
    #[arg(long, value_name = "SPEC")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sink: Vec<String>,
    /// Folder for the network sinks' spools (default: $AVACTION_STATE_DIR, else
    /// ~/.local/state/avaction).
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Most events a network sink's spool keeps through an outage before dropping the
    /// oldest (default 10000).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_max: Option<usize>,
    /// Serve Prometheus metrics on http://ADDR/metrics and the health as JSON on
    /// /health (e.g. 127.0.0.1:9108; 0.0.0.0:9108 for other machines).
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// Serve a live view (picture, label, top-k, events, sound, health) as a web page
    /// on ADDR: a port alone binds 127.0.0.1 (this machine only), HOST:PORT as given
    /// (0.0.0.0:8090 for other machines); also serves /health, and /metrics with
    /// --metrics at the same address. See README "Live view".
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui: Option<String>,
    /// A file holding a secret the live view's requests must carry
    /// (`?token=…` or `Authorization: Bearer …`).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui_token_file: Option<PathBuf>,
    /// Publish ROS 2 topics (node NAMESPACE/avaction: ~/classification, ~/events,
    /// ~/label_info, /diagnostics) [NAMESPACE default: /]; needs a build with
    /// the `ros2` feature (on by default). See README "ROS 2".
    #[arg(long, value_name = "NAMESPACE", num_args = 0..=1, require_equals = true, default_missing_value = "/")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ros2: Option<String>,
    /// `header.frame_id` of the ROS 2 messages [default: camera].
    #[arg(long, value_name = "FRAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ros2_frame_id: Option<String>,
    /// A ROS 2 topic's QoS (repeatable): TOPIC=reliable|best_effort[:DEPTH], TOPIC one
    /// of classification, events, diagnostics.
    #[arg(long, value_name = "TOPIC=QOS")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ros2_qos: Vec<String>,
    /// Write an evidence clip (video + audio around each event onset, with a JSON
    /// sidecar) into this folder; see README "Evidence clips".
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clips: Option<PathBuf>,
    /// Only onsets of this label make a clip (repeatable) [default: every label].
    #[arg(long, value_name = "LABEL")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clip_label: Vec<String>,
    /// Seconds of a clip before the onset [default: 5; 0 to 120].
    #[arg(long, value_name = "SECS", value_parser = args::roll)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_pre_roll: Option<f64>,
    /// Seconds of a clip after the onset [default: 5; 0 to 120].
    #[arg(long, value_name = "SECS", value_parser = args::roll)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_post_roll: Option<f64>,
    /// Most megabytes of clips kept in the folder; the oldest go first [default: 1024].
    #[arg(long, value_name = "MB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_max_mb: Option<u64>,
    /// Days a clip is kept [default: 7].
    #[arg(long, value_name = "DAYS", value_parser = args::days)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_max_days: Option<f64>,
    /// Video encoder of clips: vp8enc (WebM), openh264enc, x264enc or nvv4l2h264enc
    /// (H.264 in Matroska) [default: the target's, else vp8enc].
    #[arg(long, value_name = "ELEMENT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_encoder: Option<String>,
    /// Source supervision (config file only): when a source counts as stalled, frozen
    /// or silent, and how reconnects back off.
    #[arg(skip)]
    pub supervision: Supervision,
}

/// The `[supervision]` table: [`Policy`] in seconds. Unset keys keep the defaults.
#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Supervision {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_after_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_grace_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_after_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent_after_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_retry_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retry_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

impl Supervision {
    /// The policy: defaults where a key is unset.
    ///
    /// # Errors
    /// [`Config`](ErrorKind::Config) naming the key, for a value that is not a usable
    /// number of seconds or a policy [`Policy::validate`] refuses.
    pub fn policy(&self) -> Result<Policy> {
        let mut policy = Policy::default();
        let fields = [
            ("stall_after_s", self.stall_after_s, &mut policy.stall_after),
            ("start_grace_s", self.start_grace_s, &mut policy.start_grace),
            (
                "frozen_after_s",
                self.frozen_after_s,
                &mut policy.frozen_after,
            ),
            (
                "silent_after_s",
                self.silent_after_s,
                &mut policy.silent_after,
            ),
            ("first_retry_s", self.first_retry_s, &mut policy.first_retry),
            ("max_retry_s", self.max_retry_s, &mut policy.max_retry),
        ];
        for (key, value, slot) in fields {
            if let Some(v) = value {
                let s = args::seconds_value(v).map_err(|why| config_error(key, why))?;
                *slot = Duration::from_secs_f64(s);
            }
        }
        policy.max_attempts = self.max_attempts;
        policy.validate()?;
        Ok(policy)
    }

    /// Every key set to the value in use (defaults filled in), for `config check`.
    fn effective(&self) -> Result<Supervision> {
        let p = self.policy()?;
        Ok(Supervision {
            stall_after_s: Some(p.stall_after.as_secs_f64()),
            start_grace_s: Some(p.start_grace.as_secs_f64()),
            frozen_after_s: Some(p.frozen_after.as_secs_f64()),
            silent_after_s: Some(p.silent_after.as_secs_f64()),
            first_retry_s: Some(p.first_retry.as_secs_f64()),
            max_retry_s: Some(p.max_retry.as_secs_f64()),
            max_attempts: p.max_attempts,
        })
    }
}

fn config_error(key: &str, why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("{key}: {why}"))
}

impl RunOptions {
    /// Reads and checks a config file: TOML, known keys only, values in range. Relative
    /// paths are made relative to the file's folder.
    ///
    /// # Errors
    /// [`Io`](ErrorKind::Io) when the file cannot be read, [`Config`](ErrorKind::Config)
    /// naming the file and the key (and for syntax errors the line) otherwise.
    pub fn load(path: &Path) -> Result<RunOptions> {
        use std::io::Read;
        let origin = path.display().to_string();
        let in_file = |e: Error| Error::new(e.kind(), format!("{origin}: {}", e.message()));
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::new(ErrorKind::Io, format!("config {origin}")).caused_by(e))?;
        if !meta.is_file() || meta.len() > MAX_CONFIG_BYTES {
            return Err(Error::new(
                ErrorKind::Config,
                format!("config {origin}: not a regular file of at most {MAX_CONFIG_BYTES} bytes"),
            ));
        }
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_BYTES).read_to_string(&mut text))
            .map_err(|e| Error::new(ErrorKind::Io, format!("config {origin}")).caused_by(e))?;
        let mut options: RunOptions = toml::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("{origin}: {}", e.to_string().trim_end()),
            )
        })?;
        options.check().map_err(in_file)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        options.resolve_paths(dir);
        Ok(options)
    }

    /// Checks the values clap checks on the command line, for values from a file.
    fn check(&self) -> Result<()> {
        if let Some(t) = self.threads {
            args::threads(&t.to_string()).map_err(|why| config_error("threads", why))?;
        }
        if let Some(h) = self.hop {
            args::hop(&h.to_string()).map_err(|why| config_error("hop", why))?;
        }
        if self.spool_max == Some(0) {
            return Err(config_error("spool_max", "must be at least 1"));
        }
        for spec in &self.sink {
            if spec.trim().is_empty() {
                return Err(config_error("sink", "an empty sink"));
            }
        }
        if let Some(d) = self.duration {
            args::seconds_value(d).map_err(|why| config_error("duration", why))?;
        }
        for (key, roll) in [
            ("clip_pre_roll", self.clip_pre_roll),
            ("clip_post_roll", self.clip_post_roll),
        ] {
            if let Some(r) = roll {
                args::roll_value(r).map_err(|why| config_error(key, why))?;
            }
        }
        if let Some(d) = self.clip_max_days {
            args::days_value(d).map_err(|why| config_error("clip_max_days", why))?;
        }
        if self.clip_max_mb == Some(0) {
            return Err(config_error("clip_max_mb", "must be at least 1"));
        }
        if let Some(e) = &self.clip_encoder {
            avaction::capture::clip::ClipEncoder::new(e)
                .map_err(|e| config_error("clip_encoder", e.message()))?;
        }
        for s in &self.labels {
            args::sentence(s).map_err(|why| config_error("labels", why))?;
        }
        for (key, value) in [
            ("model", &self.model),
            ("video", &self.video),
            ("audio", &self.audio),
            ("backend", &self.backend),
            ("target", &self.target),
            ("precision", &self.precision),
            ("display", &self.display),
            ("metrics", &self.metrics),
            ("ui", &self.ui),
            ("ros2", &self.ros2),
            ("ros2_frame_id", &self.ros2_frame_id),
            ("log", &self.log),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(config_error(
                    key,
                    "empty; leave the key out for the default",
                ));
            }
        }
        self.ui_address()?;
        self.ros2_options()?;
        if let Some(b) = &self.backend {
            b.parse::<avaction::backend::BackendChoice>()
                .map_err(|e| config_error("backend", e.message()))?;
        }
        if let Some(p) = &self.precision {
            p.parse::<avaction::backend::engine_cache::Precision>()
                .map_err(|e| config_error("precision", e.message()))?;
        }
        self.supervision.policy().map(|_| ())
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let join = |p: &Path| {
            if p.is_relative() {
                dir.join(p)
            } else {
                p.to_path_buf()
            }
        };
        if let Some(m) = &self.model {
            let beside = dir.join(m);
            if Path::new(m).is_relative() && beside.is_dir() {
                self.model = Some(beside.display().to_string());
            }
        }
        if let Some(t) = &self.target {
            if t.ends_with(".toml") {
                self.target = Some(join(Path::new(t)).display().to_string());
            }
        }
        self.engine_cache = self.engine_cache.as_deref().map(join);
        self.state_dir = self.state_dir.as_deref().map(join);
        self.clips = self.clips.as_deref().map(join);
        self.ui_token_file = self.ui_token_file.as_deref().map(join);
        self.label_file = self.label_file.iter().map(|p| join(p)).collect();
    }

    /// These options (the command line) over `file`'s: a value given here wins.
    pub fn over(self, file: RunOptions) -> RunOptions {
        /// Lists of values are replaced, not appended to.
        fn list<T>(cli: Vec<T>, file: Vec<T>) -> Vec<T> {
            if cli.is_empty() {
                file
            } else {
                cli
            }
        }
        RunOptions {
            config: self.config.or(file.config),
            model: self.model.or(file.model),
            video: self.video.or(file.video),
            audio: self.audio.or(file.audio),
            backend: self.backend.or(file.backend),
            target: self.target.or(file.target),
            precision: self.precision.or(file.precision),
            threads: self.threads.or(file.threads),
            engine_cache: self.engine_cache.or(file.engine_cache),
            realtime: self.realtime.or(file.realtime),
            json: self.json.or(file.json),
            events_only: self.events_only.or(file.events_only),
            hop: self.hop.or(file.hop),
            duration: self.duration.or(file.duration),
            display: self.display.or(file.display),
            stats: self.stats.or(file.stats),
            labels: list(self.labels, file.labels),
            label_file: list(self.label_file, file.label_file),
            log: self.log.or(file.log),
            sink: list(self.sink, file.sink),
            state_dir: self.state_dir.or(file.state_dir),
            spool_max: self.spool_max.or(file.spool_max),
            metrics: self.metrics.or(file.metrics),
            ui: self.ui.or(file.ui),
            ui_token_file: self.ui_token_file.or(file.ui_token_file),
            ros2: self.ros2.or(file.ros2),
            ros2_frame_id: self.ros2_frame_id.or(file.ros2_frame_id),
            ros2_qos: list(self.ros2_qos, file.ros2_qos),
            clips: self.clips.or(file.clips),
            clip_label: list(self.clip_label, file.clip_label),
            clip_pre_roll: self.clip_pre_roll.or(file.clip_pre_roll),
            clip_post_roll: self.clip_post_roll.or(file.clip_post_roll),
            clip_max_mb: self.clip_max_mb.or(file.clip_max_mb),
            clip_max_days: self.clip_max_days.or(file.clip_max_days),
            clip_encoder: self.clip_encoder.or(file.clip_encoder),
            supervision: file.supervision,
        }
    }

    /// The command line over the file it names (if any).
    ///
    /// # Errors
    /// As [`RunOptions::load`].
    pub fn with_file(self) -> Result<RunOptions> {
        match self.config.clone() {
            Some(path) => Ok(self.over(RunOptions::load(&path)?)),
            None => Ok(self),
        }
    }

    /// Whether files play at real time (off when unset).
    pub fn realtime(&self) -> bool {
        self.realtime.unwrap_or(false)
    }

    /// Whether output lines are JSON (off when unset).
    pub fn json(&self) -> bool {
        self.json.unwrap_or(false)
    }

    /// Whether only events are printed (off when unset).
    pub fn events_only(&self) -> bool {
        self.events_only.unwrap_or(false)
    }

    /// Whether stats are printed at the end (off when unset).
    pub fn stats(&self) -> bool {
        self.stats.unwrap_or(false)
    }

    /// The sinks' settings.
    pub fn sink_options(&self) -> avaction::deliver::SinkOptions {
        let mut o = avaction::deliver::SinkOptions::default();
        if let Some(d) = &self.state_dir {
            o.state_dir = d.clone();
        }
        if let Some(n) = self.spool_max {
            o.spool_max = n;
        }
        o
    }

    /// The evidence-clip settings, when `clips` is set.
    ///
    /// # Errors
    /// [`Config`](ErrorKind::Config) for an unknown encoder.
    pub fn clip_options(&self) -> Result<Option<avaction::deliver::clips::ClipOptions>> {
        let Some(dir) = &self.clips else {
            return Ok(None);
        };
        let mut o = avaction::deliver::clips::ClipOptions::new(dir);
        o.labels = self.clip_label.clone();
        if let Some(s) = self.clip_pre_roll {
            o.pre_roll = Duration::from_secs_f64(s);
        }
        if let Some(s) = self.clip_post_roll {
            o.post_roll = Duration::from_secs_f64(s);
        }
        if let Some(mb) = self.clip_max_mb {
            o.max_bytes = mb.saturating_mul(1 << 20);
        }
        if let Some(days) = self.clip_max_days {
            o.max_age = Duration::from_secs_f64(days * 86_400.0);
        }
        if let Some(e) = &self.clip_encoder {
            o.encoder = Some(avaction::capture::clip::ClipEncoder::new(e)?);
        }
        o.validate()?;
        Ok(Some(o))
    }

    /// The live view's address (`ui`), checked, and checked against `metrics`: one
    /// server hosts both, so they must name the same address.
    ///
    /// # Errors
    /// [`Config`](ErrorKind::Config) naming the key.
    pub fn ui_address(&self) -> Result<Option<String>> {
        let Some(ui) = &self.ui else {
            return Ok(None);
        };
        let at = avaction::ui::listen_address(ui).map_err(|e| config_error("ui", e.message()))?;
        if let Some(metrics) = &self.metrics {
            if avaction::ui::listen_address(metrics).ok().as_deref() != Some(at.as_str()) {
                return Err(config_error(
                    "metrics",
                    format!(
                        "with ui on, /metrics and /health are served by the live view's server: give metrics the same address as ui ({at}) or leave it out"
                    ),
                ));
            }
        }
        Ok(Some(at))
    }

    /// The live view's address and settings, with the token read from its file.
    ///
    /// # Errors
    /// As [`ui_address`](RunOptions::ui_address); [`Io`](ErrorKind::Io) when the token
    /// file cannot be read, [`Config`](ErrorKind::Config) when it is empty.
    pub fn ui_options(&self) -> Result<Option<(String, avaction::ui::UiOptions)>> {
        let Some(at) = self.ui_address()? else {
            return Ok(None);
        };
        let mut options = avaction::ui::UiOptions {
            clips_dir: self.clips.clone(),
            ..avaction::ui::UiOptions::default()
        };
        if let Some(file) = &self.ui_token_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("ui_token_file: cannot read {}", file.display()),
                )
                .caused_by(e)
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(config_error(
                    "ui_token_file",
                    format!("{} is empty", file.display()),
                ));
            }
            options.token = Some(token.to_string());
        }
        Ok(Some((at, options)))
    }

    /// The ROS 2 settings, checked (whether or not this build has the `ros2` feature).
    ///
    /// # Errors
    /// [`Config`](ErrorKind::Config) naming the key.
    pub fn ros2_options(&self) -> Result<Option<avaction::ros2::Ros2Options>> {
        let Some(namespace) = &self.ros2 else {
            return Ok(None);
        };
        let mut o = avaction::ros2::Ros2Options {
            namespace: namespace.clone(),
            ..avaction::ros2::Ros2Options::default()
        };
        if let Some(frame) = &self.ros2_frame_id {
            o.frame_id = frame.clone();
        }
        for spec in &self.ros2_qos {
            o.set_topic_qos(spec)
                .map_err(|e| config_error("ros2_qos", e.message()))?;
        }
        Ok(Some(o))
    }

    /// The bundle to run (the default when unset).
    pub fn model(&self) -> &str {
        self.model.as_deref().unwrap_or(DEFAULT_MODEL)
    }

    /// The video to read (the default when unset).
    pub fn video(&self) -> &str {
        self.video.as_deref().unwrap_or(DEFAULT_VIDEO)
    }

    /// The audio to read: as set, else the video's own track for files and URIs, the
    /// default microphone otherwise.
    pub fn audio(&self) -> avaction::AudioSource {
        use avaction::{AudioSource, VideoSource};
        match &self.audio {
            Some(a) => AudioSource::parse(a),
            None if matches!(VideoSource::parse(self.video()), VideoSource::Uri(_)) => {
                AudioSource::FromVideo
            }
            None => AudioSource::DefaultMicrophone,
        }
    }

    /// The effective options as a TOML document: every value in use, defaults filled
    /// in, and a comment for each key left to a default decided at run time.
    ///
    /// # Errors
    /// As [`Supervision::policy`].
    pub fn effective_toml(&self) -> Result<String> {
        let mut shown = self.clone();
        shown.model = Some(self.model().to_string());
        shown.video = Some(self.video().to_string());
        if self.audio.is_none() {
            let default = match self.audio() {
                avaction::AudioSource::FromVideo => "video",
                _ => "mic",
            };
            shown.audio = Some(default.to_string());
        }
        shown.log = Some(self.log.clone().unwrap_or_else(|| "warn".into()));
        shown.supervision = self.supervision.effective()?;
        let body = toml::to_string(&shown)
            .map_err(|e| Error::new(ErrorKind::Config, "effective config").caused_by(e))?;
        let unset: Vec<String> = [
            (
                "backend",
                self.backend.is_none(),
                "the target's order, else auto",
            ),
            ("target", self.target.is_none(), "built-in defaults"),
            (
                "precision",
                self.precision.is_none(),
                "the target's, else fp16",
            ),
            ("threads", self.threads.is_none(), "the target's, else 1"),
            (
                "engine_cache",
                self.engine_cache.is_none(),
                "$AVACTION_CACHE_DIR, else the user cache",
            ),
            ("hop", self.hop.is_none(), "the model's"),
            (
                "duration",
                self.duration.is_none(),
                "until stopped or the media ends",
            ),
            ("display", self.display.is_none(), "no window"),
            ("clips", self.clips.is_none(), "no evidence clips"),
            (
                "clip_encoder",
                self.clip_encoder.is_none(),
                "the target's, else vp8enc",
            ),
        ]
        .into_iter()
        .filter(|(_, unset, _)| *unset)
        .map(|(key, _, default)| format!("# {key} not set: {default}\n"))
        .collect();
        Ok(format!("{}{body}", unset.concat()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RunOptions> {
        let dir = std::env::temp_dir().join(format!("avaction-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "{:x}.toml",
            text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()
        ));
        std::fs::write(&path, text).unwrap();
        let r = RunOptions::load(&path);
        std::fs::remove_file(&path).ok();
        r
    }

    #[test]
    fn an_unknown_key_names_the_key_and_the_file() {
        let e = parse("modle = \"x\"\n").unwrap_err();
        assert!(
            e.message().contains("modle") && e.message().contains(".toml"),
            "{e}"
        );
        let e = parse("[supervision]\nstall_afte_s = 3\n").unwrap_err();
        assert!(e.message().contains("stall_afte_s"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("threads = 0", "threads"),
            ("hop = 0", "hop"),
            ("duration = -1", "duration"),
            ("duration = nan", "duration"),
            ("labels = [\"  \"]", "labels"),
            ("backend = \"gpu\"", "backend"),
            ("precision = \"int4\"", "precision"),
            ("video = \"\"", "video"),
            ("[supervision]\nstall_after_s = 0", "stall_after_s"),
            (
                "[supervision]\nfirst_retry_s = 10\nmax_retry_s = 1",
                "max_retry",
            ),
            ("[supervision]\nmax_attempts = 0", "max_attempts"),
            ("threads = \"two\"", "threads"),
            ("clip_pre_roll = 121", "clip_pre_roll"),
            ("clip_post_roll = -1", "clip_post_roll"),
            ("clip_max_mb = 0", "clip_max_mb"),
            ("clip_max_days = 0", "clip_max_days"),
            ("clip_encoder = \"nvh264enc\"", "clip_encoder"),
            ("ui = \"localhost\"", "ui"),
            ("ui = \"8090\"\nmetrics = \"127.0.0.1:9108\"", "metrics"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.message().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn ros2_keys_make_ros2_options() {
        let o = parse(
            "ros2 = \"/robot1\"\nros2_frame_id = \"cam\"\nros2_qos = [\"classification=best_effort:2\"]",
        )
        .unwrap();
        let r = o.ros2_options().unwrap().unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.frame_id.as_str()),
            ("/robot1", "cam")
        );
        assert!(!r.classification.reliable);
        assert_eq!(r.classification.depth, 2);
        assert!(r.events.reliable);
        assert!(parse("").unwrap().ros2_options().unwrap().is_none());
    }

    #[test]
    fn the_live_view_shares_its_server_with_metrics_and_reads_its_token() {
        let o = parse("ui = \"8090\"\nmetrics = \"127.0.0.1:8090\"\nclips = \"c\"").unwrap();
        let (at, options) = o.ui_options().unwrap().unwrap();
        assert_eq!(at, "127.0.0.1:8090");
        assert_eq!(options.token, None);
        assert!(options.clips_dir.is_some_and(|d| d.ends_with("c")));
        let dir = std::env::temp_dir().join(format!("avaction-ui-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), " secret \n").unwrap();
        std::fs::write(dir.join("empty"), "\n").unwrap();
        let mut o = parse("ui = \"0.0.0.0:1\"").unwrap();
        o.ui_token_file = Some(dir.join("token"));
        assert_eq!(
            o.ui_options().unwrap().unwrap().1.token.as_deref(),
            Some("secret")
        );
        o.ui_token_file = Some(dir.join("empty"));
        let e = o.ui_options().unwrap_err();
        assert!(e.message().contains("ui_token_file"), "{e}");
        o.ui_token_file = Some(dir.join("missing"));
        let e = o.ui_options().unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(parse("").unwrap().ui_options().unwrap().is_none());
    }

    #[test]
    fn clip_keys_make_clip_options_with_paths_beside_the_file() {
        let o = parse(
            "clips = \"clips\"\nclip_label = [\"a\", \"b\"]\nclip_pre_roll = 0\nclip_post_roll = 2.5\nclip_max_mb = 3\nclip_max_days = 0.5\nclip_encoder = \"openh264enc\"\n",
        )
        .unwrap();
        let c = o.clip_options().unwrap().unwrap();
        assert!(
            c.dir.is_absolute() && c.dir.ends_with("clips"),
            "{:?}",
            c.dir
        );
        assert_eq!(c.labels, ["a", "b"]);
        assert_eq!(c.pre_roll, Duration::ZERO);
        assert_eq!(c.post_roll, Duration::from_millis(2500));
        assert_eq!(c.max_bytes, 3 << 20);
        assert_eq!(c.max_age, Duration::from_secs(43_200));
        assert_eq!(c.encoder.unwrap().element, "openh264enc");
        assert!(parse("").unwrap().clip_options().unwrap().is_none());
    }

    #[test]
    fn the_command_line_wins_and_lists_are_replaced() {
        let file = RunOptions {
            model: Some("a".into()),
            video: Some("test:ball".into()),
            json: Some(true),
            stats: Some(true),
            labels: vec!["x y".into()],
            threads: Some(2),
            ..RunOptions::default()
        };
        let cli = RunOptions {
            model: Some("b".into()),
            stats: Some(false),
            labels: vec!["z w".into()],
            ..RunOptions::default()
        };
        let o = cli.over(file);
        assert_eq!(o.model(), "b");
        assert_eq!(o.video(), "test:ball");
        assert!(o.json());
        assert!(!o.stats(), "--stats=false wins over the file");
        assert_eq!(o.threads, Some(2));
        assert_eq!(o.labels, vec!["z w".to_string()]);
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let o = parse(
            "label_file = [\"labels.txt\"]\nengine_cache = \"cache\"\nmodel = \"cavnet-small\"\n",
        )
        .expect("loads");
        assert!(o.label_file[0].is_absolute() || o.label_file[0].starts_with(std::env::temp_dir()));
        assert!(o
            .engine_cache
            .as_deref()
            .is_some_and(|p| p.ends_with("cache") && p.components().count() > 1));
        assert_eq!(o.model(), "cavnet-small", "a bundle name stays a name");
    }

    #[test]
    fn the_effective_config_reads_back() {
        let o = parse("video = \"test:ball\"\n[supervision]\nstall_after_s = 3\n").expect("loads");
        let text = o.effective_toml().expect("effective");
        assert!(text.contains("# backend not set"), "{text}");
        let back: RunOptions = toml::from_str(&text).expect("reads back");
        assert_eq!(back.model(), DEFAULT_MODEL);
        assert_eq!(back.audio.as_deref(), Some("mic"));
        assert_eq!(back.supervision.stall_after_s, Some(3.0));
        assert_eq!(back.supervision.start_grace_s, Some(10.0));
    }
}
