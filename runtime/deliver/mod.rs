//! Where outputs go besides the runtime's channel: sinks. A [`Deliverer`] thread takes
//! every [`Output`] from the inference thread through a bounded queue and hands it to
//! each [`Sink`]:
//!
//! - [`jsonl`]: events (and optionally predictions and health) as JSON lines in a
//!   file, fsynced per event, rotated by size;
//! - [`mqtt`]: events on `PREFIX/events`, a retained ON/OFF state per label, retained
//!   availability and health, to an MQTT broker;
//! - [`webhook`]: an HTTP POST per event;
//! - [`clips`]: evidence clips, the video and audio around each onset with a JSON
//!   sidecar (made by the runtime builder's `clips`, which taps the capture).
//!
//! Network sinks never block the runtime: each event is first written to the sink's
//! [`spool`] on disk, then sent by the sink's own thread, oldest first, and removed only
//! once the broker or server acknowledged it. Events wait there through an outage,
//! survive a restart of avaction (sent at the next start), and past the spool's bound
//! the oldest are dropped and counted. Delivery is at least once: an event may arrive
//! twice (its `id` is stable, so receivers can deduplicate), and is lost only when
//! dropped from a full spool.
//!
//! Every event gets an id, `RUN-SEQ`: a random run id of this start and a sequence
//! number counting the run's events from 1 (a gap at a receiver means an event it
//! missed).
//!
//! ```
//! use avaction::deliver::{self, SinkOptions};
//! use avaction::{AudioSource, Runtime, VideoSource};
//!
//! let file = std::env::temp_dir().join("avaction-doc-sink.jsonl");
//! # std::fs::remove_file(&file).ok();
//! let options = SinkOptions::default();
//! let mut runtime = Runtime::builder()
//!     .model("cavnet-ov-small")
//!     .video(VideoSource::parse("test:ball"))
//!     .audio(AudioSource::None)
//!     // Events, and here every prediction too; `mqtt://HOST:PORT/PREFIX` or a
//!     // webhook URL would spool events and send them from their own thread.
//!     .sink(deliver::open(&format!("jsonl:{}?predictions", file.display()), &options)?)
//!     .build()?;
//! std::thread::sleep(std::time::Duration::from_secs(2));
//! runtime.stop();
//! let lines = std::fs::read_to_string(&file)?;
//! assert!(lines.contains(r#""type":"prediction""#));
//! println!("{}", runtime.stats().sinks[0].delivered);
//! # std::fs::remove_file(&file).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod clips;
pub mod jsonl;
mod link;
pub mod mqtt;
pub mod spool;
pub mod webhook;

use crate::decode::{Event, Prediction};
use crate::health::Health;
use crate::window::End;
use crate::{err, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the runtime emits.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Output {
    /// The decoded scores of one window.
    Prediction(Prediction),
    /// An onset or offset of a label.
    Event(Event),
    /// The runtime's health changed: a source lost, stalled, reconnecting or back,
    /// labels paused for missing audio (see [`crate::health`]). The first one comes
    /// when the sources are running.
    Health(Health),
    /// A file ended: whether all of it was processed (`complete: false` for a file cut
    /// short or failed mid-stream; what came before was processed). The last output of
    /// a run on a file.
    End(End),
}

/// One output as handed to a sink.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The output.
    pub output: &'a Output,
    /// For events: the stable id (`RUN-SEQ`).
    pub id: Option<&'a str>,
    /// The model's name.
    pub model: &'a str,
}

impl Record<'_> {
    /// The record as one JSON object: the output's fields (as with `avaction run
    /// --json`), plus `id` for events and `model`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self.output).unwrap_or(serde_json::Value::Null);
        if let Some(map) = value.as_object_mut() {
            if let Some(id) = self.id {
                map.insert("id".into(), id.into());
            }
            map.insert("model".into(), self.model.into());
        }
        value
    }
}

/// A destination for outputs (see the module docs). Implement it to deliver somewhere
/// else; [`open`] makes the built-in ones.
pub trait Sink: Send {
    /// What it is, for logs and stats (`mqtt://host:1883/prefix`; no credentials).
    fn name(&self) -> String;
    /// Takes one output. Called on the deliverer's thread, never on the inference
    /// thread; must not wait on the network (spool and return).
    ///
    /// # Errors
    /// Any: logged (once per kind of failure) and counted in [`SinkStats::failed`].
    fn deliver(&mut self, record: &Record) -> Result<()>;
    /// Stops, sending what can still be sent within `within`; what is left stays in the
    /// spool for the next start.
    fn close(&mut self, within: Duration);
    /// Its counters.
    fn stats(&self) -> SinkStats;
    /// Called once on the deliverer's thread before the first output, with what the run
    /// is (its labels, its timeline). The default does nothing.
    fn start(&mut self, _run: &RunInfo) {}
}

/// What a run is, for [`Sink::start`].
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The model's name.
    pub model: String,
    /// The labels in the decoder's order (the class ids of a classification).
    pub labels: Vec<String>,
    /// The score at which a label's event starts (the decoder's `enter`).
    pub threshold: f32,
    /// The clock of every time in the outputs (`end_s`, `time_s`): seconds since its
    /// origin, the moment the run started.
    pub timeline: crate::clock::Timeline,
}

/// Counters of one sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkStats {
    /// [`Sink::name`].
    pub name: String,
    /// Records acknowledged by the other side (written, for files).
    pub delivered: u64,
    /// Records the sink refused ([`Sink::deliver`] failed).
    pub failed: u64,
    /// Records waiting in the spool.
    pub spooled: usize,
    /// Records dropped from a full spool.
    pub spool_dropped: u64,
    /// Connected to the broker or server (files: always).
    pub connected: bool,
}

/// Settings shared by the sinks [`open`] makes.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Folder under which each network sink keeps its spool (`spool/<sink>`).
    pub state_dir: PathBuf,
    /// Most events a spool holds before dropping the oldest.
    pub spool_max: usize,
}

impl Default for SinkOptions {
    /// `$AVACTION_STATE_DIR`, else `$XDG_STATE_HOME/avaction`, else
    /// `~/.local/state/avaction`, else `./avaction-state`; 10 000 events per spool.
    fn default() -> Self {
        let state_dir = std::env::var_os("AVACTION_STATE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("avaction"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/avaction"))
            })
            .unwrap_or_else(|| PathBuf::from("avaction-state"));
        SinkOptions {
            state_dir,
            spool_max: 10_000,
        }
    }
}

impl SinkOptions {
    /// The spool folder of the sink named `name`: a readable, file-safe form of it.
    pub fn spool_dir(&self, name: &str) -> PathBuf {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.state_dir.join("spool").join(safe)
    }
}

/// Makes a sink from its spec:
/// - `jsonl:PATH[?predictions&health&max_bytes=N&keep=N]`
/// - `mqtt://[USER[:PASSWORD]@]HOST[:PORT][/PREFIX][?client_id=ID&password_file=PATH]`,
///   `mqtts://…[?ca=PEM]` for TLS
/// - `http://…` or `https://…[?token_file=PATH&timeout_s=N]` (webhook)
///
/// # Errors
/// [`Config`](crate::ErrorKind::Config) naming the spec and what is wrong with it;
/// [`Io`](crate::ErrorKind::Io) when a file or spool cannot be opened.
pub fn open(spec: &str, options: &SinkOptions) -> Result<Box<dyn Sink>> {
    let spec = spec.trim();
    if let Some(rest) = spec.strip_prefix("jsonl:") {
        return Ok(Box::new(jsonl::JsonlSink::open(rest)?));
    }
    if spec.starts_with("mqtt://") || spec.starts_with("mqtts://") {
        return Ok(Box::new(mqtt::MqttSink::open(spec, options)?));
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        return Ok(Box::new(webhook::WebhookSink::open(spec, options)?));
    }
    Err(err!(
        Config,
        "sink {spec:?}: unknown kind (jsonl:PATH, mqtt://HOST:PORT/PREFIX, mqtts://…, http(s)://…)"
    ))
}

/// Checks a sink spec as [`open`] would, without opening anything (for `avaction
/// config check`).
///
/// # Errors
/// As [`open`], for what can be known without opening files or connecting.
pub fn check(spec: &str) -> Result<()> {
    let spec = spec.trim();
    if let Some(rest) = spec.strip_prefix("jsonl:") {
        return jsonl::Settings::parse(rest).map(|_| ());
    }
    if spec.starts_with("mqtt://") || spec.starts_with("mqtts://") {
        return mqtt::check(spec);
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        return webhook::check(spec);
    }
    open(spec, &SinkOptions::default()).map(|_| ())
}

/// `key=value` pairs after `?` (a key alone is `true`); the part before it.
pub(crate) fn split_query(spec: &str) -> (&str, Vec<(String, String)>) {
    match spec.split_once('?') {
        None => (spec, Vec::new()),
        Some((base, query)) => (
            base,
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (p.to_string(), "true".to_string()),
                })
                .collect(),
        ),
    }
}

/// Refuses query keys a sink does not know.
pub(crate) fn known_keys(spec: &str, query: &[(String, String)], known: &[&str]) -> Result<()> {
    for (k, _) in query {
        if !known.contains(&k.as_str()) {
            return Err(err!(
                Config,
                "sink {}: unknown option {k:?} (known: {})",
                redact(spec),
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// A spec without the password of `scheme://user:password@host`.
pub fn redact(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return spec.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}{}", &rest[authority_end..])
        }
        None => spec.to_string(),
    }
}

/// A random run id: 16 hex digits from the OS's random source.
pub fn new_run_id() -> String {
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (t ^ (u64::from(std::process::id()) << 32)).to_le_bytes();
    }
    crate::backend::engine_cache::hex(&bytes)
}

/// Outputs waiting for the deliverer before predictions are dropped (and events make
/// the inference thread wait).
const QUEUE: usize = 4096;

struct Shared {
    stats: Mutex<Vec<SinkStats>>,
    dropped: AtomicU64,
}

/// Queues outputs for a [`Deliverer`]; cloned into the thread that makes them.
#[derive(Clone)]
pub struct DeliveryQueue {
    tx: SyncSender<Output>,
    shared: Arc<Shared>,
}

impl DeliveryQueue {
    /// Queues an output. Predictions are dropped (counted) when the queue is full;
    /// events, health changes and end records wait for room.
    pub fn push(&self, output: &Output) {
        let tx = &self.tx;
        match tx.try_send(output.clone()) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(o)) => {
                if matches!(o, Output::Prediction(_)) {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    let _ = tx.send(o);
                }
            }
        }
    }
}

/// Reads a [`Deliverer`]'s counters from any thread.
#[derive(Clone)]
pub struct DeliveryWatch(Arc<Shared>);

impl DeliveryWatch {
    /// The sinks' counters (refreshed every 250 ms).
    pub fn stats(&self) -> Vec<SinkStats> {
        self.0.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Predictions dropped because the sinks were behind.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// The thread that hands outputs to the sinks.
pub struct Deliverer {
    tx: Option<SyncSender<Output>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    close_within: Arc<Mutex<Duration>>,
    run_id: String,
}

impl Deliverer {
    /// Starts the thread for `sinks`; `model` is named in every record.
    pub fn start(sinks: Vec<Box<dyn Sink>>, run: RunInfo) -> Deliverer {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let shared = Arc::new(Shared {
            stats: Mutex::new(sinks.iter().map(|s| s.stats()).collect()),
            dropped: AtomicU64::new(0),
        });
        let close_within = Arc::new(Mutex::new(Duration::from_secs(2)));
        let run_id = new_run_id();
        let thread = {
            let (shared, close_within, run_id) =
                (shared.clone(), close_within.clone(), run_id.clone());
            std::thread::Builder::new()
                .name("avaction-deliver".into())
                .spawn(move || deliver_loop(rx, sinks, &run, &run_id, &shared, &close_within))
                .ok()
        };
        Deliverer {
            tx: Some(tx),
            thread,
            shared,
            close_within,
            run_id,
        }
    }

    /// This run's id (the `RUN` of event ids).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// A handle that queues outputs for the sinks, for the thread that makes them.
    pub fn queue(&self) -> Option<DeliveryQueue> {
        Some(DeliveryQueue {
            tx: self.tx.clone()?,
            shared: self.shared.clone(),
        })
    }

    /// The sinks' counters.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.watch().stats()
    }

    /// Predictions dropped because the sinks were behind.
    pub fn dropped(&self) -> u64 {
        self.watch().dropped()
    }

    /// A handle that reads the counters from any thread.
    pub fn watch(&self) -> DeliveryWatch {
        DeliveryWatch(self.shared.clone())
    }

    /// Delivers what is queued, then closes the sinks, giving network sinks up to
    /// `within` to send their spools (what is left is sent at the next start). Every
    /// [`DeliveryQueue`] must be dropped first (else this waits for them).
    pub fn close(&mut self, within: Duration) {
        if let Ok(mut w) = self.close_within.lock() {
            *w = within;
        }
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.close(Duration::from_secs(2));
    }
}

fn deliver_loop(
    rx: Receiver<Output>,
    mut sinks: Vec<Box<dyn Sink>>,
    run: &RunInfo,
    run_id: &str,
    shared: &Shared,
    close_within: &Mutex<Duration>,
) {
    let model = run.model.as_str();
    for sink in &mut sinks {
        sink.start(run);
    }
    let mut seq = 0u64;
    let mut failing = vec![false; sinks.len()];
    let mut last_stats = Instant::now();
    let refresh = |sinks: &[Box<dyn Sink>]| {
        if let Ok(mut s) = shared.stats.lock() {
            for (slot, sink) in s.iter_mut().zip(sinks) {
                let failed = slot.failed;
                *slot = sink.stats();
                slot.failed = failed;
            }
        }
    };
    loop {
        let output = match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(o) => o,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                refresh(&sinks);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let id = if matches!(output, Output::Event(_)) {
            seq += 1;
            Some(format!("{run_id}-{seq}"))
        } else {
            None
        };
        let record = Record {
            output: &output,
            id: id.as_deref(),
            model,
        };
        for (i, sink) in sinks.iter_mut().enumerate() {
            match sink.deliver(&record) {
                Ok(()) => failing[i] = false,
                Err(e) => {
                    if !failing[i] {
                        log::error!("sink {}: {e}", sink.name());
                    }
                    failing[i] = true;
                    if let Ok(mut s) = shared.stats.lock() {
                        if let Some(slot) = s.get_mut(i) {
                            slot.failed += 1;
                        }
                    }
                }
            }
        }
        if last_stats.elapsed() > Duration::from_millis(250) {
            refresh(&sinks);
            last_stats = Instant::now();
        }
    }
    let within = close_within
        .lock()
        .map(|w| *w)
        .unwrap_or(Duration::from_secs(2));
    let deadline = Instant::now() + within;
    for sink in &mut sinks {
        sink.close(deadline.saturating_duration_since(Instant::now()));
    }
    refresh(&sinks);
}

/// Joins a sink's thread, waiting until `deadline` plus a moment; a thread still busy
/// then (a request that has not timed out yet) is left to finish by itself.
pub(crate) fn join_by(thread: JoinHandle<()>, deadline: Instant) {
    let until = deadline + Duration::from_millis(500);
    while !thread.is_finished() {
        if Instant::now() >= until {
            log::warn!("a sink thread is still busy at shutdown; leaving it behind");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = thread.join();
}

/// The wait before retry `attempt` (1 for the first): 0.5 s doubling, at most 30 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(6))
        .min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_kept_out_of_names() {
        assert_eq!(
            redact("mqtt://bob:secret@host:1883/x"),
            "mqtt://bob@host:1883/x"
        );
        assert_eq!(redact("mqtt://host:1883/x"), "mqtt://host:1883/x");
        assert_eq!(redact("https://h/p?x=1"), "https://h/p?x=1");
    }

    #[test]
    fn specs_are_checked() {
        let o = SinkOptions::default();
        assert!(open("kafka://x", &o).is_err());
        let (base, q) = split_query("jsonl:/x?predictions&keep=3");
        assert_eq!(base, "jsonl:/x");
        assert_eq!(
            q,
            vec![
                ("predictions".into(), "true".into()),
                ("keep".into(), "3".into())
            ]
        );
        assert!(known_keys("x", &q, &["predictions"]).is_err());
        assert_eq!(new_run_id().len(), 16);
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(40), Duration::from_secs(30));
        assert!(o.spool_dir("mqtt://a:1/b").ends_with("spool/mqtt___a_1_b"));
    }
}
