//! What the network sinks share: a spool, a sending thread, and the state both sides
//! of it read (counters, the stop request and its deadline). [`Link`] is the sink's
//! side, [`LinkState`] the thread's.

use super::spool::Spool;
use super::SinkStats;
use crate::{err, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// State shared by a network sink and its sending thread.
#[derive(Debug, Default)]
pub(crate) struct LinkState {
    pub delivered: AtomicU64,
    pub connected: AtomicBool,
    stop: AtomicBool,
    /// Once stopping: give up sending at this time.
    deadline: Mutex<Option<Instant>>,
    /// The latest health as JSON, for sinks that publish it.
    pub health: Mutex<Option<String>>,
}

impl LinkState {
    /// Stopping, and either past the deadline or with nothing left to send (`idle`).
    pub fn done(&self, idle: bool) -> bool {
        if !self.stop.load(Ordering::SeqCst) {
            return false;
        }
        let past = self
            .deadline
            .lock()
            .ok()
            .and_then(|d| *d)
            .is_none_or(|d| Instant::now() >= d);
        past || idle
    }

    /// Sleeps `wait`, in small steps, unless [`LinkState::done`] says to stop.
    pub fn pause(&self, wait: Duration, idle: &dyn Fn() -> bool) {
        let until = Instant::now() + wait;
        while Instant::now() < until && !self.done(idle()) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A delivery acknowledged.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Connected or not.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }
}

/// The sink's side: its name, spool and sending thread.
pub(crate) struct Link {
    pub name: String,
    pub spool: Arc<Spool>,
    pub state: Arc<LinkState>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    /// Starts `send` on its own thread.
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) when the thread cannot be started.
    pub fn start(
        name: String,
        spool: Spool,
        thread_name: &str,
        send: impl FnOnce(Arc<Spool>, Arc<LinkState>) + Send + 'static,
    ) -> Result<Link> {
        let spool = Arc::new(spool);
        let state = Arc::new(LinkState::default());
        let thread = {
            let (spool, state) = (spool.clone(), state.clone());
            std::thread::Builder::new()
                .name(thread_name.into())
                .spawn(move || send(spool, state))
                .map_err(|e| err!(Io, "sink {name}: thread").caused_by(e))?
        };
        Ok(Link {
            name,
            spool,
            state,
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop once its spool is empty or `within` has passed, and
    /// joins it (leaving it behind if a request outlives the deadline).
    pub fn close(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        if let Ok(mut d) = self.state.deadline.lock() {
            *d = Some(deadline);
        }
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            super::join_by(t, deadline);
        }
    }

    /// The counters.
    pub fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.name.clone(),
            delivered: self.state.delivered.load(Ordering::Relaxed),
            failed: 0,
            spooled: self.spool.depth(),
            spool_dropped: self.spool.dropped(),
            connected: self.state.connected.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.close(Duration::ZERO);
        }
    }
}
