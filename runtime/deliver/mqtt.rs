//! `mqtt://[USER[:PASSWORD]@]HOST[:PORT][/PREFIX]` (`mqtts://` for TLS): events to an
//! MQTT broker, through the maintained `rumqttc` client.
//!
//! Topics (PREFIX defaults to `avaction`):
//!
//! | topic | payload | QoS | retained |
//! |---|---|---|---|
//! | `PREFIX/events` | one event as JSON (`id`, `kind`, `label`, `time_s`, `score`, `duration_s`, `model`) | 1 | no |
//! | `PREFIX/state/LABEL` | `ON` after an onset, `OFF` after an offset (`LABEL`: the label with every character other than letters, digits, `-` and `_` written `_`) | 1 | yes |
//! | `PREFIX/availability` | `online` while connected; `offline` on a clean stop, and from the broker (last will) when avaction dies | 1 | yes |
//! | `PREFIX/health` | the health model as JSON (as `{"type":"health",…}` of `--json`) | 1 | yes |
//!
//! Events go through the sink's spool (see [`super::spool`]): one at a time, oldest
//! first, each removed once the broker acknowledged it (PUBACK), so their order is kept
//! across outages and restarts. The connection is retried with backoff (0.5 s doubling
//! to 30 s). Options: `client_id=ID` (default `avaction-RUNID`),
//! `password_file=PATH` (instead of a password in the URL), `ca=PEM` (mqtts: the CA to
//! trust; default the system's `/etc/ssl/certs/ca-certificates.crt`).

use super::link::{Link, LinkState};
use super::spool::Spool;
use super::Output;
use super::{backoff, known_keys, redact, split_query, Record, Sink, SinkOptions, SinkStats};
use crate::{err, Result};
use rumqttc::{Client, Connection, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The MQTT sink.
pub struct MqttSink {
    link: Link,
}

/// What the URL says.
#[derive(Debug, PartialEq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    prefix: String,
    user: Option<String>,
    password: Option<String>,
}

fn parse(spec: &str) -> Result<(Target, Vec<(String, String)>)> {
    let bad = |why: &str| err!(Config, "sink {}: {why}", redact(spec));
    let (base, query) = split_query(spec);
    let (tls, rest) = if let Some(r) = base.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = base.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(bad("not an mqtt:// or mqtts:// URL"));
    };
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (Some(u.to_string()), None),
        },
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
            (h, port)
        }
        _ => (hostport, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let prefix = prefix.trim_end_matches('/');
    let prefix = if prefix.is_empty() {
        "avaction"
    } else {
        prefix
    };
    if prefix.contains(['#', '+']) {
        return Err(bad("the topic prefix may not contain the wildcards # or +"));
    }
    Ok((
        Target {
            tls,
            host: host.to_string(),
            port,
            prefix: prefix.to_string(),
            user,
            password,
        },
        query,
    ))
}

/// Checks the URL and its options.
pub(crate) fn check(spec: &str) -> Result<()> {
    let (_, query) = parse(spec)?;
    known_keys(spec, &query, KEYS)
}

const KEYS: &[&str] = &["client_id", "password_file", "ca"];

/// A label as a topic level.
pub fn topic_level(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl MqttSink {
    /// Parses the URL, opens the spool and starts the connection thread (which connects
    /// in the background: an unreachable broker is not an error here).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a bad URL or option;
    /// [`Io`](crate::ErrorKind::Io) for an unreadable password or CA file, or a spool
    /// that cannot be opened.
    pub fn open(spec: &str, options: &SinkOptions) -> Result<MqttSink> {
        let (target, query) = parse(spec)?;
        known_keys(spec, &query, KEYS)?;
        let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let name = format!(
            "mqtt{}://{}:{}/{}",
            if target.tls { "s" } else { "" },
            target.host,
            target.port,
            target.prefix
        );
        let read = |what: &str, path: &str| {
            std::fs::read(path).map_err(|e| err!(Io, "sink {name}: {what} {path}").caused_by(e))
        };
        let password = match get("password_file") {
            Some(path) => Some(
                String::from_utf8_lossy(&read("password_file", &path)?)
                    .trim()
                    .to_string(),
            ),
            None => target.password.clone(),
        };
        let client_id =
            get("client_id").unwrap_or_else(|| format!("avaction-{}", super::new_run_id()));
        let mut mqtt = MqttOptions::new(client_id, target.host.clone(), target.port);
        mqtt.set_keep_alive(Duration::from_secs(5));
        mqtt.set_clean_session(true);
        mqtt.set_last_will(LastWill::new(
            format!("{}/availability", target.prefix),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(user) = &target.user {
            mqtt.set_credentials(user.clone(), password.unwrap_or_default());
        }
        if target.tls {
            let ca_path = get("ca").unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
            let ca = read("ca", &ca_path)?;
            // ring rather than aws-lc (which needs cmake and minutes to build); deprecated
            // only for lacking post-quantum key exchange, which MQTT brokers do not offer.
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
            mqtt.set_transport(rumqttc::Transport::tls(ca, None, None));
        }
        let spool = Spool::open(&options.spool_dir(&name), options.spool_max)?;
        if spool.depth() > 0 {
            log::info!(
                "sink {name}: {} events spooled by an earlier run will be sent first",
                spool.depth()
            );
        }
        let (client, connection) = Client::new(mqtt, 64);
        let named = name.clone();
        let prefix = target.prefix.clone();
        let link = Link::start(name, spool, "avaction-mqtt", move |spool, state| {
            Sender::new(client, &prefix, spool, state, named).run(connection)
        })?;
        Ok(MqttSink { link })
    }
}

impl Sink for MqttSink {
    fn name(&self) -> String {
        self.link.name.clone()
    }

    fn deliver(&mut self, record: &Record) -> Result<()> {
        match record.output {
            Output::Event(_) => self
                .link
                .spool
                .push(record.to_json().to_string().as_bytes()),
            Output::Health(_) => {
                if let Ok(mut h) = self.link.state.health.lock() {
                    *h = Some(record.to_json().to_string());
                }
                Ok(())
            }
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

/// The connection thread's state.
struct Sender {
    client: Client,
    prefix: String,
    spool: Arc<Spool>,
    state: Arc<LinkState>,
    name: String,
    connected: bool,
    /// What each publish request sent since the connection began is: `Some(seq)` for
    /// a spooled event, `None` for the rest; matched with the outgoing packet ids.
    requests: VecDeque<Option<u64>>,
    /// The event waiting for its PUBACK: its spool sequence and, once sent, packet id.
    inflight: Option<(u64, Option<u16>)>,
    health_sent: Option<String>,
    failures: u32,
}

impl Sender {
    fn new(
        client: Client,
        prefix: &str,
        spool: Arc<Spool>,
        state: Arc<LinkState>,
        name: String,
    ) -> Sender {
        Sender {
            client,
            prefix: prefix.to_string(),
            spool,
            state,
            name,
            connected: false,
            requests: VecDeque::new(),
            inflight: None,
            health_sent: None,
            failures: 0,
        }
    }

    fn publish(
        &mut self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
        event: Option<u64>,
    ) -> bool {
        let topic = format!("{}/{topic}", self.prefix);
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => {
                self.requests.push_back(event);
                true
            }
            Err(_) => false,
        }
    }

    fn stopping_done(&self) -> bool {
        self.state
            .done(self.spool.depth() == 0 && self.inflight.is_none())
    }

    fn run(mut self, mut connection: Connection) {
        loop {
            if self.stopping_done() {
                break;
            }
            match connection.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(event)) => self.on_event(event),
                Ok(Err(e)) => {
                    self.failures += 1;
                    if self.connected || self.failures == 1 {
                        log::warn!(
                            "sink {}: {e}; retrying, events wait in the spool",
                            self.name
                        );
                    }
                    self.disconnected();
                    let spool = self.spool.clone();
                    self.state
                        .pause(backoff(self.failures), &|| spool.depth() == 0);
                }
                Err(rumqttc::RecvTimeoutError::Timeout) => {}
                Err(rumqttc::RecvTimeoutError::Disconnected) => break,
            }
            if self.connected {
                self.send_next();
            }
        }
        if self.connected {
            // A clean stop: say so (the last will is only for a death), then leave.
            self.publish("availability", "offline", true, None);
            let _ = self.client.try_disconnect();
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                match connection.recv_timeout(Duration::from_millis(50)) {
                    Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) => break,
                    Err(rumqttc::RecvTimeoutError::Disconnected) => break,
                    _ => {}
                }
            }
        }
        self.disconnected();
    }

    fn disconnected(&mut self) {
        self.connected = false;
        self.state.set_connected(false);
        self.requests.clear();
        self.inflight = None;
        self.health_sent = None;
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                if self.failures > 0 {
                    log::info!(
                        "sink {}: connected again; {} events to send",
                        self.name,
                        self.spool.depth()
                    );
                }
                self.failures = 0;
                self.connected = true;
                self.state.set_connected(true);
                self.requests.clear();
                self.inflight = None;
                self.publish("availability", "online", true, None);
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(Some(seq)) = self.requests.pop_front() {
                    if let Some((s, id)) = self.inflight.as_mut() {
                        if *s == seq {
                            *id = Some(pkid);
                        }
                    }
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some((seq, Some(pkid))) = self.inflight {
                    if pkid == ack.pkid {
                        self.spool.remove(seq);
                        self.state.delivered();
                        self.inflight = None;
                    }
                }
            }
            _ => {}
        }
    }

    /// Publishes the latest health if it changed, and the oldest spooled event if none
    /// is waiting for its PUBACK.
    fn send_next(&mut self) {
        let health = self.state.health.lock().ok().and_then(|h| h.clone());
        if health.is_some() && health != self.health_sent {
            if let Some(h) = &health {
                if self.publish("health", h.clone(), true, None) {
                    self.health_sent = health;
                }
            }
        }
        if self.inflight.is_some() {
            return;
        }
        let Some((seq, bytes)) = self.spool.oldest(Duration::ZERO) else {
            return;
        };
        let state = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                let label = v.get("label")?.as_str()?.to_string();
                let on = v.get("kind")?.as_str()? == "onset";
                Some((label, on))
            });
        if self.publish("events", bytes, false, Some(seq)) {
            self.inflight = Some((seq, None));
            if let Some((label, on)) = state {
                self.publish(
                    &format!("state/{}", topic_level(&label)),
                    if on { "ON" } else { "OFF" },
                    true,
                    None,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed() {
        let (t, q) = parse("mqtt://bob:pw@broker.local:1884/site/a?client_id=x").unwrap();
        assert_eq!(
            t,
            Target {
                tls: false,
                host: "broker.local".into(),
                port: 1884,
                prefix: "site/a".into(),
                user: Some("bob".into()),
                password: Some("pw".into()),
            }
        );
        assert_eq!(q, vec![("client_id".into(), "x".into())]);
        let (t, _) = parse("mqtts://h").unwrap();
        assert_eq!((t.port, t.prefix.as_str(), t.tls), (8883, "avaction", true));
        let (t, _) = parse("mqtt://[::1]:1883/p").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 1883));
        for bad in [
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:99999",
            "mqtt://h/a/#",
            "mqtt://h:x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("mqtt://bob:secret@h:x").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(
            topic_level("a disc falls/with+a#thud"),
            "a_disc_falls_with_a_thud"
        );
    }
}
