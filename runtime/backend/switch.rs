//! Serving one backend while a better one is prepared in the background (a TensorRT
//! engine building for minutes while tract answers), and switching between windows.
//!
//! The switch happens in [`Backend::run`], before a window is computed, never during
//! one. The first window after the new backend is ready runs on both; the new one is
//! kept only if its output agrees with the old one within the tolerance, so a broken
//! engine can never replace a working model. Every step is recorded in the
//! [`BackendStatus`] that [`Stats`](crate::Stats) reads.
//!
//! The background job runs on a thread this backend owns. Dropping the backend sets
//! the job's cancel flag and joins the thread, waiting at most one second: a TensorRT
//! engine build cannot be interrupted once TensorRT has started it, so a drop in the
//! middle of one logs that the build goes on and leaves the thread to end by itself
//! (the engine is still stored in the cache for the next start, then the thread exits
//! without loading it). A drop never waits longer than that. A job that has not begun
//! building, or is waiting for another runtime's build of the same engine, sees the
//! flag and ends within milliseconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Backend, Tensor};
use crate::Result;

/// A switch from one backend to another, as reported in [`Stats`](crate::Stats).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendSwitch {
    /// Backend before the switch (e.g. `tract`).
    pub from: String,
    /// Backend after it (e.g. `tensorrt`).
    pub to: String,
    /// Windows the old backend served before the switch.
    pub after_windows: u64,
    /// Seconds from the start of the background preparation to the switch.
    pub after_s: f64,
    /// Largest difference between the two outputs on the window they both ran,
    /// relative to the largest magnitude of the old output (at least 1).
    pub max_rel_diff: f32,
}

#[derive(Debug, Default)]
struct StatusInner {
    active: &'static str,
    pending: Option<String>,
    switch: Option<BackendSwitch>,
    engines_not_cached: u64,
}

/// Which backend serves now, what is being prepared, and the switch, if any. Written
/// rarely (at start, on switch or failure), read by `stats()`.
#[derive(Debug, Default)]
pub struct BackendStatus {
    inner: Mutex<StatusInner>,
}

impl BackendStatus {
    /// A status with `active` serving and nothing pending.
    pub(crate) fn new(active: &'static str) -> Arc<BackendStatus> {
        let status = BackendStatus::default();
        status.lock().active = active;
        Arc::new(status)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The backend serving now.
    pub fn active(&self) -> &'static str {
        self.lock().active
    }

    /// What is being prepared, or why preparation failed; `None` when settled.
    pub fn pending(&self) -> Option<String> {
        self.lock().pending.clone()
    }

    /// The switch that happened, if any.
    pub fn switch(&self) -> Option<BackendSwitch> {
        self.lock().switch.clone()
    }

    /// Engines built for this backend that could not be written to the engine cache
    /// and are served from memory (they are built again on the next start; the log
    /// names the cache file and the error).
    pub fn engines_not_cached(&self) -> u64 {
        self.lock().engines_not_cached
    }

    fn set_pending(&self, pending: Option<String>) {
        self.lock().pending = pending;
    }

    /// Counts an engine built but not stored in the cache.
    pub(crate) fn count_engine_not_cached(&self) {
        self.lock().engines_not_cached += 1;
    }
}

/// How long dropping a [`Switching`] waits for its background job to end before it
/// leaves the thread to finish alone.
pub(crate) const JOIN_WAIT: Duration = Duration::from_secs(1);

type Job = Box<dyn FnOnce(&AtomicBool) -> Result<Box<dyn Backend>> + Send>;

/// Serves `current` until the background job's backend is ready and agrees with it.
pub(crate) struct Switching {
    current: Box<dyn Backend>,
    upcoming: &'static str,
    ready: Option<Receiver<Result<Box<dyn Backend>>>>,
    cancel: Arc<AtomicBool>,
    /// The job's thread; joined (or, past `join_wait`, left to end alone) on drop.
    thread: Option<JoinHandle<()>>,
    join_wait: Duration,
    status: Arc<BackendStatus>,
    tolerance: f32,
    windows: u64,
    started: Instant,
}

impl Switching {
    /// Starts `job` on its own thread (it gets a flag that is set when this backend is
    /// dropped, so it can skip work nobody will use). `upcoming` names the backend it
    /// makes; `tolerance` is the largest relative output difference accepted.
    pub(crate) fn start(
        current: Box<dyn Backend>,
        upcoming: &'static str,
        tolerance: f32,
        status: Arc<BackendStatus>,
        job: Job,
    ) -> Result<Switching> {
        let (tx, rx) = mpsc::sync_channel(1);
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("avaction-engine".into())
            .spawn(move || {
                let result = job(&flag);
                // The receiver is gone when the runtime stopped first: nothing to do.
                let _ = tx.send(result);
            })
            .map_err(|e| {
                crate::err!(Backend, "cannot start the engine build thread").caused_by(e)
            })?;
        status.set_pending(Some(format!(
            "{upcoming}: preparing in the background; {} serves meanwhile",
            current.name()
        )));
        Ok(Switching {
            current,
            upcoming,
            ready: Some(rx),
            cancel,
            thread: Some(thread),
            join_wait: JOIN_WAIT,
            status,
            tolerance,
            windows: 0,
            started: Instant::now(),
        })
    }

    /// Runs `inputs` on the new backend and the current one, and switches if they agree.
    fn try_switch(&mut self, mut next: Box<dyn Backend>, inputs: &[Tensor]) -> Result<Tensor> {
        let old = self.current.run(inputs)?;
        let verdict = next.run(inputs).map(|new| (max_rel_diff(&old, &new), new));
        match verdict {
            Ok((diff, new)) if diff <= self.tolerance => {
                let switch = BackendSwitch {
                    from: self.current.name().to_string(),
                    to: next.name().to_string(),
                    after_windows: self.windows,
                    after_s: self.started.elapsed().as_secs_f64(),
                    max_rel_diff: diff,
                };
                log::info!(
                    "backend: switched from {} to {} after {} windows ({:.1} s); outputs agree within {:.2e}",
                    switch.from,
                    switch.to,
                    switch.after_windows,
                    switch.after_s,
                    diff
                );
                self.current = next;
                let mut s = self.status.lock();
                s.active = self.current.name();
                s.pending = None;
                s.switch = Some(switch);
                Ok(new)
            }
            Ok((diff, _)) => {
                self.refuse(format!(
                    "its output differs from {}'s by {diff:.2e} (relative, limit {:.0e})",
                    self.current.name(),
                    self.tolerance
                ));
                Ok(old)
            }
            Err(e) => {
                self.refuse(format!("its first run failed: {e}"));
                Ok(old)
            }
        }
    }

    fn refuse(&self, why: String) {
        let msg = format!(
            "{} not used: {why}; staying on {}",
            self.upcoming,
            self.current.name()
        );
        log::warn!("backend: {msg}");
        self.status.set_pending(Some(msg));
    }
}

impl Backend for Switching {
    fn name(&self) -> &'static str {
        self.current.name()
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Tensor> {
        let arrived = match &self.ready {
            None => None,
            Some(rx) => match rx.try_recv() {
                Err(TryRecvError::Empty) => None,
                Ok(result) => Some(result),
                Err(TryRecvError::Disconnected) => Some(Err(crate::err!(
                    Backend,
                    "the engine build thread ended without a result"
                ))),
            },
        };
        let out = match arrived {
            None => self.current.run(inputs),
            Some(result) => {
                self.ready = None;
                match result {
                    Ok(next) => self.try_switch(next, inputs),
                    Err(e) => {
                        self.refuse(format!("preparation failed: {e}"));
                        self.current.run(inputs)
                    }
                }
            }
        };
        self.windows += 1;
        out
    }
}

impl Drop for Switching {
    /// Cancels the job and joins its thread within `join_wait` (see the module docs).
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return;
        };
        // The thread's last act is sending the job's result: once it is sent (or the
        // channel closed by a panic), the thread is ending and joins at once.
        let ended = match &self.ready {
            None => true,
            Some(rx) => match rx.recv_timeout(self.join_wait) {
                Ok(_) | Err(RecvTimeoutError::Disconnected) => true,
                Err(RecvTimeoutError::Timeout) => false,
            },
        };
        if !ended {
            log::info!(
                "backend: {} preparation still running {:.1} s after the runtime stopped; it \
                 cannot be interrupted mid-build, so it finishes in the background (an engine \
                 built is still stored in the cache) and its thread ends then",
                self.upcoming,
                self.join_wait.as_secs_f64()
            );
            return;
        }
        if thread.join().is_err() {
            log::warn!("backend: the {} preparation thread panicked", self.upcoming);
        }
    }
}

/// max |a - b| / max(1, max |a|): 0 for identical outputs; shapes must match.
pub(crate) fn max_rel_diff(reference: &Tensor, other: &Tensor) -> f32 {
    if reference.shape != other.shape || reference.data.len() != other.data.len() {
        return f32::INFINITY;
    }
    let scale = reference.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = reference
        .data
        .iter()
        .zip(&other.data)
        .fold(0.0f32, |m, (a, b)| {
            let d = (a - b).abs();
            // NaN in either output is a disagreement, not a zero.
            if d.is_nan() {
                f32::INFINITY
            } else {
                m.max(d)
            }
        });
    diff / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Returns `value` in every output element.
    struct Constant {
        name: &'static str,
        value: f32,
        fail: bool,
    }

    impl Backend for Constant {
        fn name(&self) -> &'static str {
            self.name
        }
        fn run(&mut self, _: &[Tensor]) -> Result<Tensor> {
            if self.fail {
                return Err(crate::err!(Backend, "{}: broken", self.name));
            }
            Ok(Tensor {
                shape: vec![1, 3],
                data: vec![self.value; 3],
            })
        }
    }

    fn constant(name: &'static str, value: f32) -> Box<dyn Backend> {
        Box::new(Constant {
            name,
            value,
            fail: false,
        })
    }

    fn wait_for(
        rx: &mut Switching,
        status: &BackendStatus,
        until: impl Fn(&BackendStatus) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !until(status) && Instant::now() < deadline {
            rx.run(&[]).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn serves_the_old_backend_until_the_new_one_is_ready_then_switches_between_windows() {
        let status = BackendStatus::new("slow");
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let mut sw = Switching::start(
            constant("slow", 1.0),
            "fast",
            1e-3,
            status.clone(),
            Box::new(move |_| {
                go_rx.recv().ok();
                Ok(constant("fast", 1.0 + 1e-5))
            }),
        )
        .unwrap();
        for _ in 0..5 {
            assert_eq!(sw.run(&[]).unwrap().data[0], 1.0);
        }
        assert_eq!(status.active(), "slow");
        assert!(status.pending().unwrap().contains("preparing"));
        go_tx.send(()).unwrap();
        wait_for(&mut sw, &status, |s| s.active() == "fast");
        assert_eq!(sw.name(), "fast");
        let switch = status.switch().expect("switch recorded");
        assert_eq!((switch.from.as_str(), switch.to.as_str()), ("slow", "fast"));
        assert!(switch.after_windows >= 5);
        assert!(switch.max_rel_diff < 1e-4);
        assert_eq!(status.pending(), None);
        assert_eq!(sw.run(&[]).unwrap().data[0], 1.0 + 1e-5);
    }

    /// Starts a switch from "good" (always `value`) and waits until `job`'s backend
    /// is refused; returns the switching backend, its status and the reason.
    fn refused(value: f32, job: Job) -> (Switching, Arc<BackendStatus>, String) {
        let status = BackendStatus::new("good");
        let mut sw =
            Switching::start(constant("good", value), "next", 1e-2, status.clone(), job).unwrap();
        wait_for(&mut sw, &status, |s| {
            s.pending().is_some_and(|p| p.contains("not used"))
        });
        assert_eq!(status.active(), "good");
        assert_eq!(status.switch(), None);
        assert_eq!(sw.run(&[]).unwrap().data[0], value);
        let pending = status.pending().unwrap();
        (sw, status, pending)
    }

    #[test]
    fn a_disagreeing_backend_is_refused_and_the_old_one_keeps_serving() {
        let (_, _, pending) = refused(1.0, Box::new(|_| Ok(constant("bad", 1.5))));
        assert!(
            pending.contains("differs from good's by 5.00e-1"),
            "{pending}"
        );
    }

    #[test]
    fn a_failed_preparation_or_first_run_is_reported_and_the_old_one_keeps_serving() {
        let job: Job = Box::new(|_| Err(crate::err!(Unavailable, "no engine today")));
        let (_, _, pending) = refused(2.0, job);
        assert!(pending.contains("no engine today"), "{pending}");
        let job: Job = Box::new(|_| {
            Ok(Box::new(Constant {
                name: "tensorrt",
                value: 2.0,
                fail: true,
            }) as Box<dyn Backend>)
        });
        let (_, _, pending) = refused(2.0, job);
        assert!(pending.contains("first run failed"), "{pending}");
    }

    /// Sets its flag when dropped: the job that owns it has ended.
    struct Ended(Arc<AtomicBool>);

    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn dropping_the_runtime_cancels_the_job_and_joins_its_thread() {
        let ended = Arc::new(AtomicBool::new(false));
        let guard = Ended(ended.clone());
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let sw = Switching::start(
            constant("good", 2.0),
            "next",
            1e-2,
            BackendStatus::new("good"),
            Box::new(move |cancel| {
                let _guard = guard;
                started_tx.send(()).ok();
                // a job that checks its flag between steps (bounded, so a bug fails
                // the test instead of hanging it)
                let deadline = Instant::now() + Duration::from_secs(10);
                while !cancel.load(Ordering::Relaxed) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(crate::err!(Stopped, "cancelled"))
            }),
        )
        .unwrap();
        started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let t0 = Instant::now();
        drop(sw);
        assert!(
            t0.elapsed() < JOIN_WAIT,
            "joined, not timed out: {:?}",
            t0.elapsed()
        );
        assert!(
            ended.load(Ordering::SeqCst),
            "the job ended before drop returned"
        );
    }

    #[test]
    fn a_job_that_cannot_stop_is_left_to_finish_after_a_bounded_wait() {
        let (seen_tx, seen_rx) = mpsc::channel::<bool>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let mut sw = Switching::start(
            constant("good", 2.0),
            "next",
            1e-2,
            BackendStatus::new("good"),
            Box::new(move |cancel| {
                // an uninterruptible step (a TensorRT build), then the flag is seen
                go_rx.recv().ok();
                seen_tx.send(cancel.load(Ordering::Relaxed)).ok();
                Err(crate::err!(Stopped, "cancelled"))
            }),
        )
        .unwrap();
        sw.join_wait = Duration::from_millis(100);
        let t0 = Instant::now();
        drop(sw);
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
        go_tx.send(()).unwrap();
        assert!(seen_rx.recv_timeout(Duration::from_secs(5)).unwrap());
    }

    #[test]
    fn relative_difference_treats_nan_and_shape_mismatch_as_disagreement() {
        let a = Tensor {
            shape: vec![1, 2],
            data: vec![10.0, -4.0],
        };
        let mut b = a.clone();
        assert_eq!(max_rel_diff(&a, &b), 0.0);
        b.data[1] = -3.0;
        assert!((max_rel_diff(&a, &b) - 0.1).abs() < 1e-6);
        b.data[0] = f32::NAN;
        assert_eq!(max_rel_diff(&a, &b), f32::INFINITY);
        let c = Tensor {
            shape: vec![2, 1],
            data: vec![10.0, -4.0],
        };
        assert_eq!(max_rel_diff(&a, &c), f32::INFINITY);
    }
}
