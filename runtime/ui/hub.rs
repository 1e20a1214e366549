//! The fan-out of the live view's stream: every message goes to every client through
//! the client's own bounded queue. Publishing never waits: a client whose queue is full
//! (a slow reader, a stalled connection) misses the message, and the miss is counted.
//! A client that is gone is forgotten at the next message. Late joiners first get what
//! the page needs to draw at once: the newest prediction and health, the last events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Events replayed to a client that joins.
const RECENT_EVENTS: usize = 20;

/// One message as written on the wire (a whole server-sent event, `\n\n` included).
pub(crate) type Message = Arc<str>;

/// What [`Hub::publish`] is given: kinds of message the page tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A prediction (the newest is replayed to late joiners).
    Prediction,
    /// An event (the last [`RECENT_EVENTS`] are replayed).
    Event,
    /// Health (the newest is replayed).
    Health,
    /// Anything else: not replayed.
    Other,
}

#[derive(Debug, Default)]
struct Recent {
    prediction: Option<Message>,
    health: Option<Message>,
    events: VecDeque<Message>,
}

/// Counters of the hub.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HubStats {
    /// Messages published.
    pub published: u64,
    /// Messages a client missed because its queue was full.
    pub dropped: u64,
    /// Messages waiting in the clients' queues (bounded by clients x capacity).
    pub queued: usize,
    /// Clients connected now.
    pub clients: usize,
}

struct Client {
    tx: SyncSender<Message>,
    state: Arc<ClientState>,
}

#[derive(Default)]
struct ClientState {
    /// Messages handed to this client's queue and not yet taken.
    queued: AtomicU64,
    /// The subscription was dropped.
    gone: AtomicBool,
}

/// See the module docs.
pub(crate) struct Hub {
    clients: Mutex<Vec<Client>>,
    recent: Mutex<Recent>,
    capacity: usize,
    max_clients: usize,
    published: AtomicU64,
    dropped: AtomicU64,
}

/// A client's end: its messages, oldest first.
pub(crate) struct Subscription {
    rx: Receiver<Message>,
    state: Arc<ClientState>,
}

impl Subscription {
    /// The next message, waiting up to `wait`.
    pub fn next(&self, wait: std::time::Duration) -> Option<Message> {
        let m = self.rx.recv_timeout(wait).ok()?;
        self.state.queued.fetch_sub(1, Ordering::Relaxed);
        Some(m)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.state.gone.store(true, Ordering::Relaxed);
    }
}

impl Hub {
    /// A hub for at most `max_clients` clients with `capacity` messages queued each.
    pub fn new(max_clients: usize, capacity: usize) -> Hub {
        Hub {
            clients: Mutex::new(Vec::new()),
            recent: Mutex::new(Recent::default()),
            capacity: capacity.max(RECENT_EVENTS + 2),
            max_clients,
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// A new client, its queue primed with the newest prediction and health and the
    /// last events; `None` when `max_clients` are connected.
    pub fn subscribe(&self) -> Option<Subscription> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.retain(|c| !c.state.gone.load(Ordering::Relaxed));
        if clients.len() >= self.max_clients {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel(self.capacity);
        let state = Arc::new(ClientState::default());
        {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let replay = recent
                .health
                .iter()
                .chain(&recent.events)
                .chain(&recent.prediction);
            for m in replay {
                state.queued.fetch_add(1, Ordering::Relaxed);
                if tx.try_send(m.clone()).is_err() {
                    state.queued.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        clients.push(Client {
            tx,
            state: state.clone(),
        });
        Some(Subscription { rx, state })
    }

    /// Hands `message` to every client's queue, without waiting; full queues miss it
    /// (counted), closed ones are forgotten.
    pub fn publish(&self, kind: Kind, message: Message) {
        self.published.fetch_add(1, Ordering::Relaxed);
        // The clients' lock is held from here, so that a client joining now gets the
        // message either replayed or sent, never both.
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            match kind {
                Kind::Prediction => recent.prediction = Some(message.clone()),
                Kind::Health => recent.health = Some(message.clone()),
                Kind::Event => {
                    if recent.events.len() == RECENT_EVENTS {
                        recent.events.pop_front();
                    }
                    recent.events.push_back(message.clone());
                }
                Kind::Other => {}
            }
        }
        clients.retain(|c| {
            // counted before it can be taken, so the count never goes below zero
            c.state.queued.fetch_add(1, Ordering::Relaxed);
            match c.tx.try_send(message.clone()) {
                Ok(()) => true,
                Err(e) => {
                    c.state.queued.fetch_sub(1, Ordering::Relaxed);
                    if let TrySendError::Full(_) = e {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    matches!(e, TrySendError::Full(_))
                }
            }
        });
    }

    /// Its counters now.
    pub fn stats(&self) -> HubStats {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.retain(|c| !c.state.gone.load(Ordering::Relaxed));
        HubStats {
            published: self.published.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: clients
                .iter()
                .map(|c| c.state.queued.load(Ordering::Relaxed) as usize)
                .sum(),
            clients: clients.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn msg(s: &str) -> Message {
        Arc::from(s)
    }

    #[test]
    fn a_stalled_client_misses_messages_and_the_others_get_all() {
        let hub = Hub::new(4, 30);
        let stalled = hub.subscribe().expect("a client");
        let reader = hub.subscribe().expect("a client");
        for k in 0..100 {
            hub.publish(Kind::Other, msg(&k.to_string()));
            assert_eq!(
                reader.next(Duration::ZERO).as_deref(),
                Some(&*k.to_string())
            );
        }
        let stats = hub.stats();
        assert_eq!(stats.published, 100);
        assert_eq!(stats.dropped, 70, "the stalled client's queue holds 30");
        assert_eq!(stats.queued, 30);
        // it gets the oldest 30, in order, then nothing
        for k in 0..30 {
            assert_eq!(
                stalled.next(Duration::ZERO).as_deref(),
                Some(&*k.to_string())
            );
        }
        assert!(stalled.next(Duration::ZERO).is_none());
    }

    #[test]
    fn clients_are_bounded_and_forgotten_when_gone() {
        let hub = Hub::new(2, 30);
        let a = hub.subscribe().expect("first");
        let _b = hub.subscribe().expect("second");
        assert!(hub.subscribe().is_none(), "a third is refused");
        drop(a);
        hub.publish(Kind::Other, msg("x"));
        assert_eq!(hub.stats().clients, 1);
        assert!(hub.subscribe().is_some());
    }

    #[test]
    fn late_joiners_get_health_the_last_events_and_the_newest_prediction() {
        let hub = Hub::new(2, 64);
        hub.publish(Kind::Health, msg("h1"));
        hub.publish(Kind::Prediction, msg("p1"));
        for k in 0..25 {
            hub.publish(Kind::Event, msg(&format!("e{k}")));
        }
        hub.publish(Kind::Health, msg("h2"));
        hub.publish(Kind::Prediction, msg("p2"));
        hub.publish(Kind::Other, msg("view"));
        let late = hub.subscribe().expect("a client");
        let mut got = Vec::new();
        while let Some(m) = late.next(Duration::ZERO) {
            got.push(m.to_string());
        }
        let mut want = vec!["h2".to_string()];
        want.extend((5..25).map(|k| format!("e{k}")));
        want.push("p2".into());
        assert_eq!(got, want);
    }
}
