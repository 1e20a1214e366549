//! `http://…` or `https://…`: a webhook. Each event is POSTed as one JSON object (as on
//! `PREFIX/events` of the MQTT sink: `id`, `kind`, `label`, `time_s`, `score`,
//! `duration_s`, `model`) with `Content-Type: application/json`, one at a time, oldest
//! first, from the sink's spool. A 2xx answer removes it; anything else (an error
//! status, a timeout, a refused connection) is retried with backoff (0.5 s doubling to
//! 30 s), so events keep their order. Options: `token_file=PATH` (sent as
//! `Authorization: Bearer TOKEN`; the environment variable `AVACTION_WEBHOOK_TOKEN`
//! works too), `timeout_s=N` (per request, default 10).

use super::spool::Spool;
use super::Output;
use super::{backoff, known_keys, redact, split_query, Record, Sink, SinkOptions, SinkStats};
use crate::{err, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The webhook sink.
pub struct WebhookSink {
    name: String,
    spool: Arc<Spool>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    delivered: AtomicU64,
    connected: AtomicBool,
    stop: AtomicBool,
    deadline: Mutex<Option<Instant>>,
}

impl Shared {
    fn stopping_done(&self, spool: &Spool) -> bool {
        if !self.stop.load(Ordering::SeqCst) {
            return false;
        }
        let past = self
            .deadline
            .lock()
            .ok()
            .and_then(|d| *d)
            .is_none_or(|d| Instant::now() >= d);
        past || spool.depth() == 0
    }
}

/// Checks the URL has a host and the options are known and in range.
pub(crate) fn check(spec: &str) -> Result<()> {
    let (url, query) = split_query(spec);
    known_keys(spec, &query, &["token_file", "timeout_s"])?;
    let name = redact(url);
    let after_scheme = url.split_once("://").map_or("", |(_, r)| r);
    if after_scheme.is_empty() || after_scheme.starts_with('/') {
        return Err(err!(Config, "sink {name}: no host"));
    }
    if let Some((_, v)) = query.iter().find(|(k, _)| k == "timeout_s") {
        timeout(v).map_err(|why| err!(Config, "sink {name}: {why}"))?;
    }
    Ok(())
}

fn timeout(v: &str) -> std::result::Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("timeout_s={v:?} must be seconds above 0, at most 600"))
}

impl WebhookSink {
    /// Parses the URL and options, opens the spool and starts the sending thread.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a bad option;
    /// [`Io`](crate::ErrorKind::Io) for an unreadable token file or a spool that cannot
    /// be opened.
    pub fn open(spec: &str, options: &SinkOptions) -> Result<WebhookSink> {
        let (url, query) = split_query(spec);
        check(spec)?;
        let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let name = redact(url);
        let token = match get("token_file") {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| err!(Io, "sink {name}: token_file {path}").caused_by(e))?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("AVACTION_WEBHOOK_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        };
        let timeout = match get("timeout_s") {
            None => Duration::from_secs(10),
            Some(v) => timeout(&v).map_err(|why| err!(Config, "sink {name}: {why}"))?,
        };
        let spool = Arc::new(Spool::open(&options.spool_dir(&name), options.spool_max)?);
        let shared = Arc::new(Shared::default());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let thread = {
            let (spool, shared, named) = (spool.clone(), shared.clone(), name.clone());
            let url = url.to_string();
            std::thread::Builder::new()
                .name("avaction-webhook".into())
                .spawn(move || send_loop(&agent, &url, token.as_deref(), &spool, &shared, &named))
                .map_err(|e| err!(Io, "sink {name}: thread").caused_by(e))?
        };
        Ok(WebhookSink {
            name,
            spool,
            shared,
            thread: Some(thread),
        })
    }
}

fn send_loop(
    agent: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    spool: &Spool,
    shared: &Shared,
    name: &str,
) {
    let mut failures = 0u32;
    while !shared.stopping_done(spool) {
        let Some((seq, body)) = spool.oldest(Duration::from_millis(100)) else {
            continue;
        };
        let mut request = agent.post(url).header("Content-Type", "application/json");
        if let Some(t) = token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        let outcome = match request.send(&body[..]) {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("HTTP {}", response.status())),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                spool.remove(seq);
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                shared.connected.store(true, Ordering::Relaxed);
                if failures > 0 {
                    log::info!(
                        "sink {name}: delivering again; {} events to send",
                        spool.depth()
                    );
                }
                failures = 0;
            }
            Err(why) => {
                failures += 1;
                shared.connected.store(false, Ordering::Relaxed);
                if failures == 1 {
                    log::warn!("sink {name}: {why}; retrying, events wait in the spool");
                }
                let until = Instant::now() + backoff(failures);
                while Instant::now() < until && !shared.stopping_done(spool) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn deliver(&mut self, record: &Record) -> Result<()> {
        match record.output {
            Output::Event(_) => self.spool.push(record.to_json().to_string().as_bytes()),
            _ => Ok(()),
        }
    }

    fn close(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        if let Ok(mut d) = self.shared.deadline.lock() {
            *d = Some(deadline);
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            super::join_by(t, deadline);
        }
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.name.clone(),
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            failed: 0,
            spooled: self.spool.depth(),
            spool_dropped: self.spool.dropped(),
            connected: self.shared.connected.load(Ordering::Relaxed),
        }
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.close(Duration::ZERO);
        }
    }
}
