//! Evidence clips: on an event onset, the original video and audio around it, written
//! as one playable file with a JSON sidecar.
//!
//! The video capture encodes its frames on a branch of its own into a bounded ring in
//! memory ([`ClipTap`]), and the window stream keeps the audio there too. When an onset
//! of a chosen label arrives, the clip's span is `[onset - pre_roll, onset + post_roll]`
//! on the runtime timeline; the recorder waits until the post-roll has been captured
//! and scored (or the source ended, or the wait ran `post_roll + 10 s` of wall time),
//! then writes:
//!
//! - `DIR/ID-LABEL.webm` (VP8 + Opus; `.mkv` with H.264 + Opus for the H.264
//!   encoders): the frames as encoded, from the keyframe at or before the span's start
//!   (keyframes come every second), and the audio of the same span (silence where none
//!   arrived), at the frames' own size up to [`ClipOptions::max_height`] lines;
//! - `DIR/ID-LABEL.json`: the event (with its id), the score timeline of the span, the
//!   model's name, version and SHA-256 of each graph, the runtime's version, and the
//!   capture timestamps (on the runtime timeline, the clock of the event's `time_s`).
//!
//! Files are written under a hidden `.part` name, synced, then renamed: a clip either
//! exists whole or not at all. After each clip, the folder is pruned to
//! [`ClipOptions::max_bytes`] and [`ClipOptions::max_age`] (oldest clips first; other
//! files are never touched). Clips are delivered through the [`Sink`] trait: their
//! counters are a sink's (`delivered` = clips written, `spooled` = clips waiting for
//! their post-roll, `spool_dropped` = onsets skipped because too many were waiting).
//!
//! ```no_run
//! use avaction::deliver::clips::ClipOptions;
//! use avaction::{AudioSource, Runtime, VideoSource};
//! use std::time::Duration;
//!
//! let mut clips = ClipOptions::new("/var/lib/avaction/clips");
//! clips.pre_roll = Duration::from_secs(5);
//! clips.labels = vec!["a person falls".into()];
//! let runtime = Runtime::builder()
//!     .model("cavnet-ov-small")
//!     .video(VideoSource::parse("camera"))
//!     .audio(AudioSource::parse("mic"))
//!     .clips(clips)
//!     .build()?;
//! # Ok::<(), avaction::Error>(())
//! ```

mod retention;
mod writer;

use super::{Output, Record, Sink, SinkStats};
use crate::capture::clip::{ClipEncoder, ClipTap};
use crate::clock::{Nanos, TimeSpan, Timeline};
use crate::decode::EventKind;
use crate::{err, Result};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Settings of evidence clips.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipOptions {
    /// Where clips are written (created if missing).
    pub dir: PathBuf,
    /// Media kept before the onset (default 5 s; at most 120 s).
    pub pre_roll: Duration,
    /// Media kept after the onset (default 5 s; at most 120 s).
    pub post_roll: Duration,
    /// Labels whose onsets make a clip; empty: every label.
    pub labels: Vec<String>,
    /// Most bytes of clips kept in `dir` (default 1 GiB); the oldest go first.
    pub max_bytes: u64,
    /// Oldest clip kept in `dir` (default 7 days).
    pub max_age: Duration,
    /// The video encoder; `None`: the target profile's (`[clips] encoder`), else `vp8enc`.
    pub encoder: Option<ClipEncoder>,
    /// Largest picture height in clips (default 720; taller sources are scaled down).
    pub max_height: u32,
    /// Most bytes of encoded video kept in memory for pre-roll (default 64 MiB).
    pub memory_bytes: usize,
}

/// Longest pre-roll or post-roll.
const MAX_ROLL: Duration = Duration::from_secs(120);

/// How much longer than pre-roll + post-roll media stay in memory: room for the time
/// between a frame's capture and its window's scores.
const RING_SLACK: Duration = Duration::from_secs(10);

/// Onsets that may wait for their post-roll at once; more are skipped and counted.
const MAX_PENDING: usize = 16;

/// Longest wait, once the source ended or the sink closed, for the clip branch's last
/// frames.
const FINISH_GRACE: Duration = Duration::from_secs(3);

/// Longest [`Sink::close`] waits for clips being written.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

impl ClipOptions {
    /// Clips in `dir` with the defaults.
    pub fn new(dir: impl Into<PathBuf>) -> ClipOptions {
        ClipOptions {
            dir: dir.into(),
            pre_roll: Duration::from_secs(5),
            post_roll: Duration::from_secs(5),
            labels: Vec::new(),
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(7 * 24 * 3600),
            encoder: None,
            max_height: 720,
            memory_bytes: 64 << 20,
        }
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) naming the setting out of range.
    pub fn validate(&self) -> Result<()> {
        for (name, roll) in [("pre-roll", self.pre_roll), ("post-roll", self.post_roll)] {
            if roll > MAX_ROLL {
                return Err(err!(
                    Config,
                    "clip {name} {:.1} s is longer than {} s",
                    roll.as_secs_f64(),
                    MAX_ROLL.as_secs()
                ));
            }
        }
        if !(16..=4320).contains(&self.max_height) {
            return Err(err!(
                Config,
                "clip max height {} is outside 16..=4320",
                self.max_height
            ));
        }
        if self.memory_bytes < 1 << 20 {
            return Err(err!(
                Config,
                "clip memory {} bytes is below 1 MiB",
                self.memory_bytes
            ));
        }
        if self.max_bytes == 0 {
            return Err(err!(Config, "clip max bytes must be above 0"));
        }
        Ok(())
    }

    /// Checks the values, creates the folder and checks it can be written in.
    ///
    /// # Errors
    /// As [`validate`](Self::validate); [`Io`](crate::ErrorKind::Io) naming the folder
    /// when it cannot be created or written in.
    pub fn prepare(&self) -> Result<()> {
        self.validate()?;
        let dir = &self.dir;
        std::fs::create_dir_all(dir).map_err(|e| {
            err!(Io, "cannot create the clips folder {}", dir.display()).caused_by(e)
        })?;
        let probe = dir.join(format!(".avaction-probe-{}.part", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| {
                err!(Io, "cannot write in the clips folder {}", dir.display()).caused_by(e)
            })
    }

    /// The video encoder: [`encoder`](Self::encoder), else `vp8enc`.
    pub fn video_encoder(&self) -> ClipEncoder {
        self.encoder.clone().unwrap_or_default()
    }

    /// The time span the tap must keep.
    pub fn ring_span(&self) -> Nanos {
        Nanos::from(self.pre_roll + self.post_roll + RING_SLACK)
    }
}

/// What the sidecar says about the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipModel {
    /// The model's name.
    pub name: String,
    /// The model's version.
    pub version: String,
    /// Each graph file of the bundle (name within the bundle) and its SHA-256 (hex).
    pub graphs: Vec<(String, String)>,
}

impl ClipModel {
    /// Hashes `files` (paths within `dir`), each read as a stream (a large model is
    /// never held in memory whole).
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) for a file that cannot be read.
    pub fn hash(name: &str, version: &str, dir: &Path, files: &[PathBuf]) -> Result<ClipModel> {
        use sha2::{Digest, Sha256};
        let mut graphs = Vec::new();
        for path in files {
            let mut hasher = Sha256::new();
            std::fs::File::open(path)
                .and_then(|mut f| std::io::copy(&mut f, &mut hasher))
                .map_err(|e| err!(Io, "cannot read {} to hash it", path.display()).caused_by(e))?;
            let hex = crate::backend::engine_cache::hex(&hasher.finalize());
            let shown = path.strip_prefix(dir).unwrap_or(path);
            graphs.push((shown.display().to_string(), hex));
        }
        Ok(ClipModel {
            name: name.into(),
            version: version.into(),
            graphs,
        })
    }
}

/// Counters shared with the worker.
#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    failed: AtomicU64,
    pending: AtomicUsize,
    skipped: AtomicU64,
}

enum Job {
    /// A prediction: its window's span and the prediction as JSON text.
    Scores {
        start_s: f64,
        end_s: f64,
        json: String,
    },
    Onset {
        event: Value,
        id: String,
        label: String,
        time_s: f64,
    },
    /// The source ended; its last frame ends at this time.
    Ended(Nanos),
}

/// The clip recorder, as a [`Sink`] (see the module docs).
pub struct ClipSink {
    tx: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    labels: Vec<String>,
    dir: PathBuf,
}

impl std::fmt::Debug for ClipSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipSink").field("dir", &self.dir).finish()
    }
}

/// What the worker needs.
struct Recorder {
    options: ClipOptions,
    encoder: ClipEncoder,
    tap: Arc<ClipTap>,
    model: ClipModel,
    timeline: Timeline,
    live: bool,
    frame_period: Nanos,
    counters: Arc<Counters>,
}

impl ClipSink {
    /// Creates `options.dir` (checking it is writable), prunes it, and starts the
    /// recorder's thread reading `tap`. `live`: the timeline is the wall clock's (live
    /// sources, real-time playback), so the sidecar can give Unix times too.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for invalid options;
    /// [`Io`](crate::ErrorKind::Io) for a folder that cannot be created or written.
    pub fn start(
        options: &ClipOptions,
        tap: Arc<ClipTap>,
        model: ClipModel,
        timeline: Timeline,
        (live, fps): (bool, u32),
    ) -> Result<ClipSink> {
        options.prepare()?;
        let dir = &options.dir;
        retention::prune(dir, options.max_bytes, options.max_age);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::sync_channel(256);
        let recorder = Recorder {
            options: options.clone(),
            encoder: options.video_encoder(),
            tap,
            model,
            timeline,
            live,
            frame_period: Nanos::from_count(1, u64::from(fps.max(1))),
            counters: counters.clone(),
        };
        let worker = std::thread::Builder::new()
            .name("avaction-clips".into())
            .spawn(move || recorder.run(rx))
            .map_err(|e| err!(Stopped, "cannot start the clip thread").caused_by(e))?;
        Ok(ClipSink {
            tx: Some(tx),
            worker: Some(worker),
            counters,
            labels: options.labels.clone(),
            dir: dir.clone(),
        })
    }
}

impl Sink for ClipSink {
    fn name(&self) -> String {
        format!("clips:{}", self.dir.display())
    }

    fn deliver(&mut self, record: &Record) -> Result<()> {
        let job = match record.output {
            Output::Prediction(p) => Job::Scores {
                start_s: p.start_s,
                end_s: p.end_s,
                json: record.to_json().to_string(),
            },
            Output::Event(e) if e.kind == EventKind::Onset => {
                if !self.labels.is_empty() && !self.labels.contains(&e.label) {
                    return Ok(());
                }
                Job::Onset {
                    event: record.to_json(),
                    id: record.id.unwrap_or("event").to_string(),
                    label: e.label.clone(),
                    time_s: e.time_s,
                }
            }
            Output::End(e) => Job::Ended(Nanos::from_secs_f64(e.media_end_s)),
            _ => return Ok(()),
        };
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Job::Scores { .. })) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                Err(err!(
                    Stopped,
                    "clips: the recorder is behind; an onset was skipped"
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                Err(err!(Stopped, "clips: the recorder thread has stopped"))
            }
        }
    }

    fn close(&mut self, within: Duration) {
        self.tx = None;
        if let Some(worker) = self.worker.take() {
            super::join_by(worker, Instant::now() + within.max(CLOSE_WAIT));
        }
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.name(),
            delivered: self.counters.written.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            spooled: self.counters.pending.load(Ordering::Relaxed),
            spool_dropped: self.counters.skipped.load(Ordering::Relaxed),
            connected: true,
        }
    }
}

impl Drop for ClipSink {
    fn drop(&mut self) {
        self.close(Duration::ZERO);
    }
}

/// The predictions of the last seconds, as JSON text in one contiguous ring with an
/// index of (start, end, length), for the same reason as the capture's rings
/// ([`ClipTap`]): parsed JSON values, dozens of heap blocks per prediction living for
/// seconds, fragmented the C heap that GStreamer's full-size frames churn through.
#[derive(Debug, Default)]
struct ScoreRing {
    index: VecDeque<(f64, f64, usize)>,
    text: VecDeque<u8>,
}

impl ScoreRing {
    /// Keeps a prediction of the window `start..end` (seconds) as JSON text; forgets
    /// those that ended more than `keep_s` before it.
    fn push(&mut self, (start, end): (f64, f64), text: &str, keep_s: f64) {
        self.text.extend(text.as_bytes());
        self.index.push_back((start, end, text.len()));
        while self.index.front().is_some_and(|s| end - s.1 > keep_s) {
            let len = self
                .index
                .pop_front()
                .map_or(0, |s| s.2)
                .min(self.text.len());
            self.text.drain(..len);
        }
    }

    /// The end of the latest prediction.
    fn until(&self) -> f64 {
        self.index.back().map_or(f64::MIN, |s| s.1)
    }

    /// The predictions whose windows overlap `span`.
    fn within(&self, span: TimeSpan) -> Vec<Value> {
        let (a, b) = (span.start.as_secs_f64(), span.end.as_secs_f64());
        let mut offset = 0;
        let mut found = Vec::new();
        for &(start, end, len) in &self.index {
            if end > a && start < b {
                let bytes: Vec<u8> = self.text.range(offset..offset + len).copied().collect();
                if let Ok(v) = serde_json::from_slice(&bytes) {
                    found.push(v);
                }
            }
            offset += len;
        }
        found
    }
}

/// An onset waiting for its post-roll.
struct Pending {
    event: Value,
    id: String,
    label: String,
    span: TimeSpan,
    time: Nanos,
    give_up: Instant,
}

impl Recorder {
    fn run(self, rx: Receiver<Job>) {
        let mut scores = ScoreRing::default();
        let mut pending: Vec<Pending> = Vec::new();
        // When the source ended or the sink closed, and where the media ends.
        let mut finishing: Option<(Instant, Nanos)> = None;
        let mut open = true;
        let keep_s = self.options.ring_span().as_secs_f64();
        while open || !pending.is_empty() {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Job::Scores {
                    start_s,
                    end_s,
                    json,
                }) => scores.push((start_s, end_s), &json, keep_s),
                Ok(Job::Onset {
                    event,
                    id,
                    label,
                    time_s,
                }) => {
                    if pending.len() >= MAX_PENDING {
                        self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                        log::warn!("clips: {MAX_PENDING} clips are waiting; skipping {id}");
                    } else {
                        let time = Nanos::from_secs_f64(time_s);
                        pending.push(Pending {
                            event,
                            id,
                            label,
                            span: TimeSpan::new(
                                time - Nanos::from(self.options.pre_roll),
                                time + Nanos::from(self.options.post_roll),
                            ),
                            time,
                            give_up: Instant::now() + self.options.post_roll + RING_SLACK,
                        });
                    }
                }
                Ok(Job::Ended(media_end)) => finishing = Some((Instant::now(), media_end)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    open = false;
                    finishing.get_or_insert((Instant::now(), Nanos::from_nanos(i64::MAX)));
                }
            }
            let scored_until = scores.until();
            let captured_until = self.tap.newest_video();
            let now = Instant::now();
            let (ready, waiting): (Vec<Pending>, Vec<Pending>) =
                pending.into_iter().partition(|p| {
                    let end_s = p.span.end.as_secs_f64();
                    let complete =
                        captured_until.is_some_and(|t| t >= p.span.end) && scored_until >= end_s;
                    // Once the source ended, the clip branch may still be encoding the
                    // last frames: wait for them (a moment at most).
                    let flushed = finishing.is_some_and(|(since, media_end)| {
                        let last = media_end - self.frame_period * 2;
                        captured_until.is_some_and(|t| t >= p.span.end.min(last))
                            || now >= since + FINISH_GRACE
                    });
                    complete || flushed || now >= p.give_up
                });
            pending = waiting;
            self.counters
                .pending
                .store(pending.len(), Ordering::Relaxed);
            for p in ready {
                let timeline = scores.within(p.span);
                match self.write(&p, &timeline) {
                    Ok(path) => {
                        self.counters.written.fetch_add(1, Ordering::Relaxed);
                        log::info!("clip written: {}", path.display());
                    }
                    Err(e) => {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        log::error!("clip {}: {e}", p.id);
                    }
                }
            }
        }
    }

    /// Writes one clip and its sidecar; returns the media file's path.
    fn write(&self, p: &Pending, scores: &[Value]) -> Result<PathBuf> {
        let media = self.tap.take(p.span).ok_or_else(|| {
            err!(
                Video,
                "no video of {:.2}..{:.2} s is in memory (evicted or never captured)",
                p.span.start.as_secs_f64(),
                p.span.end.as_secs_f64()
            )
        })?;
        let dir = &self.options.dir;
        let stem = format!("{}-{}", file_safe(&p.id), file_safe(&p.label));
        let container = self.encoder.container();
        let file_name = format!("{stem}.{}", container.extension());
        let media_path = dir.join(&file_name);
        let part = dir.join(format!(".{file_name}.part"));
        let written = writer::write(&part, &media, container, self.frame_period)
            .and_then(|w| sync(&part).map(|_| w));
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        let start = media.video[0].t_ns;
        let unix = |t: Nanos| -> Option<f64> {
            self.live.then(|| {
                let now_unix = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                now_unix - (self.timeline.now() - t).as_secs_f64()
            })
        };
        let audio = media.audio.as_ref().map(|a| {
            json!({
                "codec": "opus",
                "rate": a.rate,
                "start_s": a.t_ns.as_secs_f64(),
                "seconds": a.samples.len() as f64 / f64::from(a.rate.max(1)),
                "missing_s": media.audio_missing as f64 / f64::from(a.rate.max(1)),
            })
        });
        let caps = media.video[0].caps.structure(0);
        let sidecar = json!({
            "clip": file_name,
            "event": p.event,
            "pre_roll_s": self.options.pre_roll.as_secs_f64(),
            "post_roll_s": self.options.post_roll.as_secs_f64(),
            "capture": {
                "clock": "runtime timeline, seconds (the clock of the event's time_s)",
                "event_s": p.time.as_secs_f64(),
                "asked_start_s": p.span.start.as_secs_f64(),
                "asked_end_s": p.span.end.as_secs_f64(),
                "start_s": start.as_secs_f64(),
                "end_s": written.end.as_secs_f64(),
                "event_offset_s": (p.time - start).as_secs_f64(),
                "start_unix_s": unix(start),
                "event_unix_s": unix(p.time),
            },
            "video": {
                "encoder": self.encoder.element,
                "caps": caps.map(|s| s.name().to_string()),
                "width": caps.and_then(|s| s.get::<i32>("width").ok()),
                "height": caps.and_then(|s| s.get::<i32>("height").ok()),
                "frames": written.frames,
            },
            "audio": audio,
            "scores": scores,
            "model": {
                "name": self.model.name,
                "version": self.model.version,
                "sha256": self.model.graphs.iter()
                    .map(|(f, h)| (f.clone(), Value::from(h.as_str())))
                    .collect::<serde_json::Map<String, Value>>(),
            },
            "runtime": {"name": "avaction", "version": env!("CARGO_PKG_VERSION")},
        });
        let sidecar_path = dir.join(format!("{stem}.json"));
        let sidecar_part = dir.join(format!(".{stem}.json.part"));
        let text = serde_json::to_string_pretty(&sidecar)
            .map_err(|e| err!(Io, "clip sidecar {stem}: cannot encode").caused_by(e))?;
        let saved = std::fs::write(&sidecar_part, text + "\n")
            .map_err(|e| err!(Io, "cannot write {}", sidecar_part.display()).caused_by(e))
            .and_then(|_| sync(&sidecar_part))
            .and_then(|_| rename(&part, &media_path))
            .and_then(|_| rename(&sidecar_part, &sidecar_path));
        if let Err(e) = saved {
            for f in [&part, &sidecar_part, &media_path] {
                let _ = std::fs::remove_file(f);
            }
            return Err(e);
        }
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        let pruned = retention::prune(dir, self.options.max_bytes, self.options.max_age);
        if pruned.clips > 0 {
            log::info!(
                "clips: removed {} old clips ({} bytes) to stay within the limits",
                pruned.clips,
                pruned.bytes
            );
        }
        Ok(media_path)
    }
}

fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| err!(Io, "cannot sync {}", path.display()).caused_by(e))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .map_err(|e| err!(Io, "cannot rename {} to {}", from.display(), to.display()).caused_by(e))
}

/// A label or id as part of a file name: letters, digits, `-` and `_`; anything else
/// becomes `_`; at most 60 characters.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_safe("a person/falls"), "a_person_falls");
        assert_eq!(file_safe("../x"), "___x");
        assert_eq!(file_safe(&"é".repeat(100)).len(), 60);
    }

    #[test]
    fn options_are_checked() {
        let mut o = ClipOptions::new("/tmp/x");
        assert!(o.validate().is_ok());
        o.pre_roll = Duration::from_secs(500);
        assert!(o.validate().unwrap_err().to_string().contains("pre-roll"));
        let mut o = ClipOptions::new("/tmp/x");
        o.max_height = 1;
        assert!(o.validate().is_err());
    }
}
