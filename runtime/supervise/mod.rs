//! Supervision: one watchdog thread per source. It reads the source's
//! [`SourceWatch`] every 50 ms and writes the source's [`SourceHealth`]; a live source
//! that is lost (an error, a vanished device, a live stream that ended) or stalled (no
//! data for [`Policy::stall_after`]) is stopped and reopened with capped exponential
//! backoff, on the same timeline and channel, without touching the model. Files are
//! never retried: they fail or end by themselves.
//!
//! Choices, against the references:
//! - Like Frigate's camera watchdog, a stall (no frame for a while, no error) counts as
//!   a loss; unlike Frigate (which restarts ffmpeg on a fixed period), retries back off
//!   exponentially up to [`Policy::max_retry`], as DeepStream's `nvurisrcbin`
//!   (`rtsp-reconnect-interval`, `rtsp-reconnect-attempts`, -1 = forever) allows.
//! - Unlike GStreamer's `fallbacksrc`, nothing is substituted while a source is away:
//!   no fallback picture or silence is fed to the model. The gap is reported (health,
//!   [`CaptureEvent::Gap`], windows marked audio-missing) instead of papered over.
//! - A frozen camera (identical frames) and a silent microphone (digital zeros) make the
//!   source degraded but are not restarted: both can be genuine (a still scene, a muted
//!   input), and restarting would not tell them apart.
//! - A source that will not stop (a cpal stream blocked in a dead sound server) is
//!   stopped on its own thread and left behind after [`RETIRE_WAIT`], so that
//!   reconnecting and shutting down never hang.

use crate::capture::audio::Microphone;
use crate::capture::video::VideoCapture;
use crate::capture::{CaptureEvent, SourceWatch};
use crate::clock::{Nanos, Timeline};
use crate::health::{HealthBoard, Reason, SourceHealth, SourceKind, State};
use crate::{err, Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a watchdog looks at its source.
const TICK: Duration = Duration::from_millis(50);
/// How long a lost source may take to stop before it is left behind.
pub const RETIRE_WAIT: Duration = Duration::from_secs(1);
/// A reopened source that fails again within this time continues the backoff instead
/// of starting it over, so that a flapping source is retried (and logged) less and less
/// often.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// When a source counts as stalled, frozen or silent, and how reconnects back off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// No data for this long = stalled (default 2 s).
    pub stall_after: Duration,
    /// A source just (re)opened may take this long to deliver its first data (default
    /// 10 s: a microphone through PulseAudio takes ~2 s, an RTSP camera a few).
    pub start_grace: Duration,
    /// Identical frames for this long = frozen (default 10 s).
    pub frozen_after: Duration,
    /// Digital zeros for this long = silent (default 10 s).
    pub silent_after: Duration,
    /// Wait before the first reconnect (default 500 ms); doubled after each failed
    /// attempt.
    pub first_retry: Duration,
    /// Longest wait between attempts (default 30 s).
    pub max_retry: Duration,
    /// Attempts before giving up (the source is then failed); `None` (default): never.
    pub max_attempts: Option<u32>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            stall_after: Duration::from_secs(2),
            start_grace: Duration::from_secs(10),
            frozen_after: Duration::from_secs(10),
            silent_after: Duration::from_secs(10),
            first_retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl Policy {
    /// The wait before attempt `attempt` (1 for the first).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.first_retry
            .saturating_mul(1u32 << doublings)
            .min(self.max_retry)
    }

    /// Checks the durations are usable.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a zero duration, a `max_retry` below
    /// `first_retry`, a duration above an hour, or `max_attempts` of zero.
    pub fn validate(&self) -> Result<()> {
        let hour = Duration::from_secs(3600);
        for (name, d) in [
            ("stall_after", self.stall_after),
            ("start_grace", self.start_grace),
            ("frozen_after", self.frozen_after),
            ("silent_after", self.silent_after),
            ("first_retry", self.first_retry),
            ("max_retry", self.max_retry),
        ] {
            if d.is_zero() || d > hour {
                return Err(err!(
                    Config,
                    "supervision {name} {d:?} is out of range (above 0, at most 1 h)"
                ));
            }
        }
        if self.max_retry < self.first_retry {
            return Err(err!(
                Config,
                "supervision max_retry {:?} is below first_retry {:?}",
                self.max_retry,
                self.first_retry
            ));
        }
        if self.max_attempts == Some(0) {
            return Err(err!(Config, "supervision max_attempts must be at least 1"));
        }
        Ok(())
    }
}

/// A running source the supervisor can stop.
pub trait Source: Send {
    /// Stops the source and joins its threads.
    fn stop(&mut self);
}

impl Source for VideoCapture {
    fn stop(&mut self) {
        VideoCapture::stop(self)
    }
}

impl Source for Microphone {
    fn stop(&mut self) {
        Microphone::stop(self)
    }
}

/// Opens a source reporting to the given (supervised) watch.
pub type Opener = Box<dyn FnMut(Arc<SourceWatch>) -> Result<Box<dyn Source>> + Send>;

/// One source to supervise.
pub struct Supervised {
    /// Its name in health and logs.
    pub name: String,
    /// Video or audio.
    pub kind: SourceKind,
    /// Live sources are reopened; files only have their health followed.
    pub live: bool,
    /// Reopens it.
    pub opener: Opener,
    /// The source as already started (with the watch it reports to); `None`: it could
    /// not be opened yet, and the supervisor starts by reconnecting.
    pub running: Option<(Box<dyn Source>, Arc<SourceWatch>)>,
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("live", &self.live)
            .finish()
    }
}

/// The watchdog threads; stopping it stops the sources.
#[derive(Debug)]
pub struct Supervisor {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// What a watchdog shares with every other.
#[derive(Clone)]
struct Context {
    policy: Policy,
    board: Arc<HealthBoard>,
    tx: SyncSender<CaptureEvent>,
    timeline: Timeline,
    stop: Arc<AtomicBool>,
}

impl Supervisor {
    /// Starts one watchdog per source. Health goes to `board` (one slot per source, in
    /// order); [`CaptureEvent::Gap`] and, for a video source that may no longer be
    /// retried, [`CaptureEvent::Failed`] go to `tx`.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for an invalid policy;
    /// [`Stopped`](crate::ErrorKind::Stopped) when a thread cannot be started.
    pub fn start(
        sources: Vec<Supervised>,
        policy: Policy,
        board: Arc<HealthBoard>,
        tx: SyncSender<CaptureEvent>,
        timeline: Timeline,
    ) -> Result<Supervisor> {
        policy.validate()?;
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Context {
            policy,
            board,
            tx,
            timeline,
            stop: stop.clone(),
        };
        let mut supervisor = Supervisor {
            threads: Vec::new(),
            stop,
        };
        for source in sources {
            let slot = ctx
                .board
                .add(SourceHealth::new(source.name.clone(), source.kind));
            let ctx = ctx.clone();
            let thread = std::thread::Builder::new()
                .name("avaction-watchdog".into())
                .spawn(move || watchdog(source, slot, &ctx))
                .map_err(|e| err!(Stopped, "cannot start a watchdog thread").caused_by(e))?;
            supervisor.threads.push(thread);
        }
        Ok(supervisor)
    }

    /// Stops the watchdogs and their sources, waiting at most `within` (a source that
    /// does not stop by then is left to finish in the background, with a log line).
    /// Idempotent.
    pub fn stop(&mut self, within: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + within;
        for t in self.threads.drain(..) {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                if t.join().is_err() {
                    log::error!("a watchdog thread panicked");
                }
            } else {
                log::warn!(
                    "a source did not stop within {within:?}; left to finish in the background"
                );
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// Where one watchdog is.
enum Phase {
    Watching {
        source: Box<dyn Source>,
        watch: Arc<SourceWatch>,
        opened: Instant,
        /// The attempt that opened it (0: opened at start).
        attempt: u32,
    },
    Waiting {
        attempt: u32,
        retry_at: Instant,
    },
    Done,
}

fn watchdog(source: Supervised, slot: usize, ctx: &Context) {
    let Supervised {
        name,
        kind,
        live,
        mut opener,
        running,
    } = source;
    let board = &ctx.board;
    let mut phase = match running {
        Some((source, watch)) => Phase::Watching {
            source,
            watch,
            opened: Instant::now(),
            attempt: 0,
        },
        None => {
            board.update(slot, |h| {
                h.state = State::Reconnecting;
                h.reasons = vec![Reason::Lost];
                h.attempt = 1;
            });
            Phase::Waiting {
                attempt: 1,
                retry_at: Instant::now(),
            }
        }
    };
    while !ctx.stop.load(Ordering::SeqCst) {
        std::thread::sleep(TICK);
        phase = match phase {
            Phase::Watching {
                source,
                watch,
                opened,
                attempt,
            } => match check(&watch, opened, live, &ctx.policy) {
                Ok(()) => {
                    report_running(board, slot, &watch, live, &ctx.policy);
                    Phase::Watching {
                        source,
                        watch,
                        opened,
                        attempt,
                    }
                }
                Err((_, detail)) if !live => {
                    // A non-live pipeline is not retried. What it delivered was
                    // processed: the run ends incomplete, as a file cut short does.
                    retire(source, &name);
                    if watch.data_age().is_some() {
                        board.update(slot, |h| {
                            h.state = State::Ended;
                            h.detail = Some(detail.clone());
                        });
                        send(ctx, CaptureEvent::Cut(format!("{name}: {detail}")));
                    } else {
                        give_up(ctx, slot, kind, err!(Video, "{name}: {detail}"));
                    }
                    Phase::Done
                }
                Err((reason, detail)) => {
                    log::warn!("{name}: {detail}; reconnecting");
                    retire(source, &name);
                    send_gap(ctx, kind);
                    let stable = attempt == 0 || opened.elapsed() >= STABLE_AFTER;
                    let next = if stable { 1 } else { attempt.saturating_add(1) };
                    schedule_retry(board, slot, next, reason, detail, &ctx.policy)
                }
            },
            Phase::Waiting { attempt, retry_at } if Instant::now() >= retry_at => {
                let watch = Arc::new(SourceWatch::new(ctx.timeline, true));
                match opener(watch.clone()) {
                    Ok(source) => {
                        log::info!("{name}: reopened (attempt {attempt})");
                        board.update(slot, |h| {
                            h.state = State::Starting;
                            h.reasons.clear();
                            h.next_retry_s = None;
                            h.reconnects += 1;
                        });
                        Phase::Watching {
                            source,
                            watch,
                            opened: Instant::now(),
                            attempt,
                        }
                    }
                    Err(e) if ctx.policy.max_attempts.is_some_and(|m| attempt >= m) => {
                        let e = e.context(format!("{name}: gave up reconnecting"));
                        give_up(ctx, slot, kind, e);
                        Phase::Done
                    }
                    Err(e) => {
                        log::warn!("{name}: reconnect attempt {attempt} failed: {e}");
                        let detail = e.to_string();
                        schedule_retry(board, slot, attempt + 1, Reason::Lost, detail, &ctx.policy)
                    }
                }
            }
            Phase::Waiting { attempt, retry_at } => {
                let left = retry_at.saturating_duration_since(Instant::now());
                board.update(slot, |h| h.next_retry_s = Some(left.as_secs_f64()));
                Phase::Waiting { attempt, retry_at }
            }
            Phase::Done => Phase::Done,
        };
    }
    if let Phase::Watching { source, .. } = phase {
        retire(source, &name);
    }
}

/// `Err((reason, detail))` when a live source is lost or stalled.
fn check(
    watch: &SourceWatch,
    opened: Instant,
    live: bool,
    policy: &Policy,
) -> std::result::Result<(), (Reason, String)> {
    if let Some(e) = watch.take_lost() {
        return Err((Reason::Lost, e.to_string()));
    }
    if !live {
        // Files are read at the runtime's pace: a pause is back-pressure, not a stall.
        return Ok(());
    }
    match watch.data_age() {
        None if opened.elapsed() > policy.start_grace => Err((
            Reason::Stalled,
            format!(
                "no data {:.1} s after opening",
                opened.elapsed().as_secs_f64()
            ),
        )),
        Some(age) if age > Nanos::from(policy.stall_after) => Err((
            Reason::Stalled,
            format!("no data for {:.1} s (stalled)", age.as_secs_f64()),
        )),
        _ => Ok(()),
    }
}

/// A source delivering data: running, or degraded when frozen or silent.
fn report_running(
    board: &HealthBoard,
    slot: usize,
    watch: &SourceWatch,
    live: bool,
    policy: &Policy,
) {
    let age = watch.data_age();
    let over = |d: Option<Nanos>, limit: Duration| live && d.is_some_and(|d| d > limit.into());
    let mut reasons = Vec::new();
    if over(watch.frozen_for(), policy.frozen_after) {
        reasons.push(Reason::Frozen);
    }
    if over(watch.silent_for(), policy.silent_after) {
        reasons.push(Reason::Silent);
    }
    board.update(slot, |h| {
        h.last_data_age_s = age.map(Nanos::as_secs_f64);
        if age.is_none() {
            return; // still starting
        }
        if h.state != State::Running && h.state != State::Degraded {
            h.attempt = 0;
            h.detail = None;
        }
        h.state = if reasons.is_empty() {
            State::Running
        } else {
            State::Degraded
        };
        h.reasons = reasons;
    });
}

fn schedule_retry(
    board: &HealthBoard,
    slot: usize,
    attempt: u32,
    reason: Reason,
    detail: String,
    policy: &Policy,
) -> Phase {
    let wait = policy.backoff(attempt);
    board.update(slot, |h| {
        h.state = State::Reconnecting;
        h.reasons = vec![reason];
        h.detail = Some(detail);
        h.attempt = attempt;
        h.next_retry_s = Some(wait.as_secs_f64());
    });
    Phase::Waiting {
        attempt,
        retry_at: Instant::now() + wait,
    }
}

/// The source is failed for good; a video source ends the run.
fn give_up(ctx: &Context, slot: usize, kind: SourceKind, error: Error) {
    log::error!("{error}");
    ctx.board.update(slot, |h| {
        h.state = State::Failed;
        h.detail = Some(error.to_string());
        h.next_retry_s = None;
    });
    if kind == SourceKind::Video {
        send(ctx, CaptureEvent::Failed(error));
    }
}

/// Tells the windows that the source's data is not contiguous any more.
fn send_gap(ctx: &Context, kind: SourceKind) {
    send(ctx, CaptureEvent::Gap(kind));
}

/// Sends a control event, waiting for room (it must not be lost) unless stopping.
fn send(ctx: &Context, event: CaptureEvent) {
    let mut event = event;
    while !ctx.stop.load(Ordering::SeqCst) {
        match ctx.tx.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(back)) => {
                event = back;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Stops a source on its own thread, waiting at most [`RETIRE_WAIT`].
fn retire(mut source: Box<dyn Source>, name: &str) {
    let (done_tx, done_rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("avaction-retire".into())
        .spawn(move || {
            source.stop();
            drop(source);
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        log::error!("{name}: cannot start a thread to stop it ({e}); it is left running");
        return;
    }
    if done_rx.recv_timeout(RETIRE_WAIT).is_err() {
        log::warn!(
            "{name}: still stopping after {:?}; left to finish in the background",
            RETIRE_WAIT
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = Policy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(3), Duration::from_secs(2));
        assert_eq!(p.backoff(8), Duration::from_secs(30));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn policies_out_of_range_are_refused() {
        assert!(Policy::default().validate().is_ok());
        let zero = Policy {
            stall_after: Duration::ZERO,
            ..Policy::default()
        };
        assert!(zero.validate().is_err());
        let inverted = Policy {
            first_retry: Duration::from_secs(60),
            ..Policy::default()
        };
        assert!(inverted.validate().is_err());
        let never = Policy {
            max_attempts: Some(0),
            ..Policy::default()
        };
        assert!(never.validate().is_err());
    }

    /// A source that counts its stops.
    struct Fake(Arc<std::sync::atomic::AtomicUsize>);
    impl Source for Fake {
        fn stop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_lost_source_is_reopened_with_a_gap_and_health_follows() {
        let timeline = Timeline::start();
        let board = Arc::new(HealthBoard::new());
        let (tx, rx) = mpsc::sync_channel(8);
        let stops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let first = Arc::new(SourceWatch::new(timeline, true));
        first.audio(&[0.5]);
        let (s2, o2) = (stops.clone(), opened.clone());
        let policy = Policy {
            first_retry: Duration::from_millis(20),
            ..Policy::default()
        };
        let mut sup = Supervisor::start(
            vec![Supervised {
                name: "fake".into(),
                kind: SourceKind::Audio,
                live: true,
                opener: Box::new(move |watch: Arc<SourceWatch>| {
                    o2.fetch_add(1, Ordering::SeqCst);
                    watch.audio(&[0.5]);
                    Ok(Box::new(Fake(s2.clone())) as Box<dyn Source>)
                }),
                running: Some((Box::new(Fake(stops.clone())), first.clone())),
            }],
            policy,
            board.clone(),
            tx,
            timeline,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while board.health().sources[0].state != State::Running && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        first.lose(err!(Audio, "unplugged"));
        while opened.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        while board.health().sources[0].state != State::Running && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let h = board.health();
        assert_eq!(h.sources[0].state, State::Running, "{h:?}");
        assert_eq!(h.sources[0].reconnects, 1);
        assert!(matches!(
            rx.try_recv(),
            Ok(CaptureEvent::Gap(SourceKind::Audio))
        ));
        sup.stop(Duration::from_secs(2));
        assert_eq!(
            stops.load(Ordering::SeqCst),
            2,
            "old and new source stopped"
        );
    }
}
