//! At most one run of a piece of work per key in the process: the first request runs
//! it, later requests for the same key wait for that run and share its result. The
//! TensorRT backend keys its engine builds by the engine's cache file, so two runtimes
//! opening the same model while its engine builds share one build.
//!
//! An entry lives only while its run does: the runner removes it when the run ends,
//! and each waiter holds the finished slot (an `Arc`) only until it has read the
//! result, so the map holds no more entries than runs in progress.
//!
//! A waiter stops waiting when its cancel flag is set (checked every [`POLL`]); a run
//! that gives up without a result (its own requester was cancelled before the work
//! began) or panics wakes its waiters, and the first of them runs the work itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How often a waiter looks at its cancel flag.
const POLL: Duration = Duration::from_millis(20);

/// Runs in progress, by key; see the module docs.
pub(crate) struct InFlight<T> {
    runs: Mutex<HashMap<PathBuf, Arc<Slot<T>>>>,
}

/// One run: its state, and the requests waiting for it.
struct Slot<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    /// Requests waiting for this run (changed under the `runs` lock when joining).
    waiters: AtomicUsize,
}

enum State<T> {
    Running,
    /// The run ended with this result.
    Done(T),
    /// The run ended without a result (gave up or panicked): a waiter runs the work.
    Abandoned,
}

/// What a waiter got.
enum Waited<T> {
    Done(T),
    Abandoned,
    Cancelled,
}

/// Locks `m`, ignoring poison: every state written under these locks is whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Clone> InFlight<T> {
    /// No runs.
    pub(crate) fn new() -> Self {
        InFlight {
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `work` for `key`, or, when a run for `key` is in progress, waits for it and
    /// returns a clone of its result. `work` gets `cancel` and returns `None` to give up
    /// without a result (the waiters of that run then start the work again themselves).
    ///
    /// `None` when this request's `cancel` was set while it waited, or when its own
    /// `work` gave up.
    pub(crate) fn run(
        &self,
        key: &Path,
        cancel: &AtomicBool,
        work: impl FnOnce(&AtomicBool) -> Option<T>,
    ) -> Option<T> {
        loop {
            match self.enter(key) {
                Entered::Runner(mut publish) => {
                    let result = work(cancel);
                    publish.result = result.clone();
                    return result;
                }
                Entered::Waiter(slot) => match slot.wait(cancel) {
                    Waited::Done(result) => return Some(result),
                    Waited::Cancelled => return None,
                    Waited::Abandoned => continue,
                },
            }
        }
    }

    /// Joins the run of `key`, or registers a new one that this request runs.
    fn enter<'a>(&'a self, key: &'a Path) -> Entered<'a, T> {
        let mut runs = lock(&self.runs);
        if let Some(slot) = runs.get(key) {
            slot.waiters.fetch_add(1, Ordering::SeqCst);
            return Entered::Waiter(slot.clone());
        }
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Running),
            changed: Condvar::new(),
            waiters: AtomicUsize::new(0),
        });
        runs.insert(key.to_path_buf(), slot.clone());
        Entered::Runner(Publish {
            runs: self,
            key,
            slot,
            result: None,
        })
    }

    /// Requests waiting for the run of `key` (0 when none runs).
    #[cfg(test)]
    pub(crate) fn waiting(&self, key: &Path) -> usize {
        lock(&self.runs)
            .get(key)
            .map_or(0, |s| s.waiters.load(Ordering::SeqCst))
    }

    /// Whether a run of `key` is in progress.
    #[cfg(test)]
    pub(crate) fn running(&self, key: &Path) -> bool {
        lock(&self.runs).contains_key(key)
    }
}

enum Entered<'a, T: Clone> {
    Runner(Publish<'a, T>),
    Waiter(Arc<Slot<T>>),
}

/// Ends a run when dropped, also when the work panics: removes its entry and hands
/// `result` (or, without one, [`State::Abandoned`]) to the waiters.
struct Publish<'a, T: Clone> {
    runs: &'a InFlight<T>,
    key: &'a Path,
    slot: Arc<Slot<T>>,
    result: Option<T>,
}

impl<T: Clone> Drop for Publish<'_, T> {
    fn drop(&mut self) {
        // Only this run's entry can be under `key`: nobody else registers while it is.
        lock(&self.runs.runs).remove(self.key);
        *lock(&self.slot.state) = match self.result.take() {
            Some(result) => State::Done(result),
            None => State::Abandoned,
        };
        self.slot.changed.notify_all();
    }
}

impl<T: Clone> Slot<T> {
    /// Waits until the run ends or `cancel` is set.
    fn wait(&self, cancel: &AtomicBool) -> Waited<T> {
        let mut state = lock(&self.state);
        let waited = loop {
            match &*state {
                State::Done(result) => break Waited::Done(result.clone()),
                State::Abandoned => break Waited::Abandoned,
                State::Running if cancel.load(Ordering::Relaxed) => break Waited::Cancelled,
                State::Running => {
                    state = self
                        .changed
                        .wait_timeout(state, POLL)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    /// Polls `until` for at most 5 s.
    fn wait_until(until: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !until() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Starts a request for `key` on its own thread whose work blocks until `gate`
    /// gets a message, then counts itself in `runs` and returns `value`.
    fn gated(
        inflight: &Arc<InFlight<u32>>,
        key: &'static str,
        runs: &Arc<AtomicUsize>,
        value: Option<u32>,
    ) -> (mpsc::Sender<()>, std::thread::JoinHandle<Option<u32>>) {
        let (gate, open) = mpsc::channel::<()>();
        let (inflight, runs) = (inflight.clone(), runs.clone());
        let thread = std::thread::spawn(move || {
            inflight.run(Path::new(key), &AtomicBool::new(false), |_| {
                open.recv().ok();
                runs.fetch_add(1, Ordering::SeqCst);
                value
            })
        });
        (gate, thread)
    }

    #[test]
    fn a_second_request_joins_the_run_in_progress_and_shares_its_result() {
        let inflight = Arc::new(InFlight::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let (gate, first) = gated(&inflight, "a", &runs, Some(7));
        wait_until(|| inflight.running(Path::new("a")));
        let (_, second) = gated(&inflight, "a", &runs, Some(99));
        wait_until(|| inflight.waiting(Path::new("a")) == 1);
        // another key runs on its own
        assert_eq!(
            inflight.run(Path::new("b"), &AtomicBool::new(false), |_| Some(3)),
            Some(3)
        );
        gate.send(()).unwrap();
        assert_eq!(first.join().unwrap(), Some(7));
        assert_eq!(second.join().unwrap(), Some(7), "the joined result");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one run");
        assert!(!inflight.running(Path::new("a")), "entry removed");
        assert!(lock(&inflight.runs).is_empty());
    }

    #[test]
    fn a_cancelled_waiter_stops_waiting_and_the_run_goes_on() {
        let inflight = Arc::new(InFlight::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let (gate, first) = gated(&inflight, "c", &runs, Some(1));
        wait_until(|| inflight.running(Path::new("c")));
        let cancel = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (inflight, cancel) = (inflight.clone(), cancel.clone());
            std::thread::spawn(move || inflight.run(Path::new("c"), &cancel, |_| Some(2)))
        };
        wait_until(|| inflight.waiting(Path::new("c")) == 1);
        let t0 = Instant::now();
        cancel.store(true, Ordering::Relaxed);
        assert_eq!(waiter.join().unwrap(), None);
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert_eq!(inflight.waiting(Path::new("c")), 0);
        gate.send(()).unwrap();
        assert_eq!(first.join().unwrap(), Some(1));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn when_a_run_gives_up_or_panics_a_waiter_runs_the_work_itself() {
        for panics in [false, true] {
            let inflight = Arc::new(InFlight::new());
            let (gate, open) = mpsc::channel::<()>();
            let first = {
                let inflight = inflight.clone();
                std::thread::spawn(move || {
                    inflight.run(Path::new("d"), &AtomicBool::new(false), |_| {
                        open.recv().ok();
                        assert!(!panics, "the build panicked (expected by this test)");
                        None
                    })
                })
            };
            wait_until(|| inflight.running(Path::new("d")));
            let second = {
                let inflight = inflight.clone();
                std::thread::spawn(move || {
                    inflight.run(Path::new("d"), &AtomicBool::new(false), |_| Some(5))
                })
            };
            wait_until(|| inflight.waiting(Path::new("d")) == 1);
            gate.send(()).unwrap();
            let first = first.join();
            if panics {
                assert!(first.is_err());
            } else {
                assert_eq!(first.unwrap(), None);
            }
            assert_eq!(second.join().unwrap(), Some(5), "panics: {panics}");
            assert!(!inflight.running(Path::new("d")));
        }
    }
}
