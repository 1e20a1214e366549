//! `http://…` or `https://…`: a webhook. Each event is POSTed as one JSON object (as on
//! `PREFIX/events` of the MQTT sink: `id`, `kind`, `label`, `time_s`, `score`,
//! `duration_s`, `model`) with `Content-Type: application/json`, one at a time, oldest
//! first, from the sink's spool. A 2xx answer removes it; anything else (an error
//! status, a timeout, a refused connection) is retried with backoff (0.5 s doubling to
//! 30 s), so events keep their order. Options: `token_file=PATH` (sent as
//! `Authorization: Bearer TOKEN`; the environment variable `AVACTION_WEBHOOK_TOKEN`
//! works too), `timeout_s=N` (per request, default 10).

use super::link::{Link, LinkState};
use super::spool::Spool;
use super::Output;
use super::{backoff, known_keys, redact, split_query, Record, Sink, SinkOptions, SinkStats};
use crate::{err, Result};
use std::time::Duration;

/// The webhook sink.
pub struct WebhookSink {
    link: Link,
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
        let spool = Spool::open(&options.spool_dir(&name), options.spool_max)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let named = name.clone();
        let url = url.to_string();
        let link = Link::start(name, spool, "avaction-webhook", move |spool, state| {
            send_loop(&agent, &url, token.as_deref(), &spool, &state, &named)
        })?;
        Ok(WebhookSink { link })
    }
}

fn send_loop(
    agent: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    spool: &Spool,
    state: &LinkState,
    name: &str,
) {
    let mut failures = 0u32;
    let idle = || spool.depth() == 0;
    while !state.done(idle()) {
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
                state.delivered();
                state.set_connected(true);
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
                state.set_connected(false);
                if failures == 1 {
                    log::warn!("sink {name}: {why}; retrying, events wait in the spool");
                }
                state.pause(backoff(failures), &idle);
            }
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> String {
        self.link.name.clone()
    }

    fn deliver(&mut self, record: &Record) -> Result<()> {
        match record.output {
            Output::Event(_) => self
                .link
                .spool
                .push(record.to_json().to_string().as_bytes()),
            _ => Ok(()),
        }
    }

    fn close(&mut self, within: Duration) {
        self.link.close(within);
    }

    fn stats(&self) -> SinkStats {
        self.link.stats()
    }
}
