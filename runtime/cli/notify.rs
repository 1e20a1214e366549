//! systemd's notification protocol (`sd_notify`), spoken by `avaction run` when started
//! by systemd with `Type=notify` (`$NOTIFY_SOCKET` set): `READY=1` once labels flow,
//! `WATCHDOG=1` every half `$WATCHDOG_USEC` but only while the health model says the
//! pipeline is alive (running or degraded, not starting, reconnecting or failed), and
//! `STATUS=` with the health summary whenever it changes. Without `$NOTIFY_SOCKET`
//! nothing is sent. Send failures are logged once and otherwise ignored: the service
//! manager going away must not stop the labels.

use avaction::health::{Health, State};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// The notifier of one run.
pub struct Notifier {
    socket: UnixDatagram,
    target: Target,
    watchdog_every: Option<Duration>,
    last_ping: Option<Instant>,
    ready: bool,
    warned: bool,
}

enum Target {
    Path(std::path::PathBuf),
    #[cfg(target_os = "linux")]
    Abstract(Vec<u8>),
}

impl Notifier {
    /// A notifier for `$NOTIFY_SOCKET`, if it is set (and usable).
    pub fn from_env() -> Option<Notifier> {
        let addr = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = addr.as_encoded_bytes();
        let target = match bytes.first() {
            #[cfg(target_os = "linux")]
            Some(b'@') => Target::Abstract(bytes[1..].to_vec()),
            Some(b'/') => Target::Path(addr.clone().into()),
            _ => {
                log::warn!("NOTIFY_SOCKET {addr:?} is neither a path nor an abstract socket; not notifying");
                return None;
            }
        };
        let socket = match UnixDatagram::unbound() {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cannot open a socket for NOTIFY_SOCKET: {e}");
                return None;
            }
        };
        // systemd asks for a ping within WATCHDOG_USEC: every half of it.
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0)
            .map(|us| Duration::from_micros(us / 2));
        Some(Notifier {
            socket,
            target,
            watchdog_every,
            last_ping: None,
            ready: false,
            warned: false,
        })
    }

    fn send(&mut self, message: &str) {
        let sent = match &self.target {
            Target::Path(p) => self.socket.send_to(message.as_bytes(), p),
            #[cfg(target_os = "linux")]
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|a| self.socket.send_to_addr(message.as_bytes(), &a))
            }
        };
        if let Err(e) = sent {
            if !std::mem::replace(&mut self.warned, true) {
                log::warn!("sd_notify: cannot send to NOTIFY_SOCKET: {e}");
            }
        }
    }

    /// Labels flow: READY=1 (once).
    pub fn labels_flow(&mut self) {
        if !std::mem::replace(&mut self.ready, true) {
            self.send("READY=1\nSTATUS=labelling");
        }
    }

    /// The health changed: STATUS= with its summary.
    pub fn health(&mut self, health: &Health) {
        let mut status = format!("{:?}", health.state).to_lowercase();
        if !health.reasons.is_empty() {
            let reasons: Vec<String> = health
                .reasons
                .iter()
                .map(|r| format!("{r:?}").to_lowercase())
                .collect();
            status.push_str(&format!(" ({})", reasons.join(", ")));
        }
        self.send(&format!("STATUS={status}"));
    }

    /// Called often: WATCHDOG=1 when due and the pipeline is alive per `state`.
    pub fn tick(&mut self, state: State) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        let alive = matches!(state, State::Running | State::Degraded);
        if alive && self.last_ping.is_none_or(|t| t.elapsed() >= every) {
            self.last_ping = Some(Instant::now());
            self.send("WATCHDOG=1");
        }
    }

    /// The run is ending.
    pub fn stopping(&mut self) {
        self.send("STOPPING=1");
    }
}
