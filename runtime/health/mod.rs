//! One health model for every source and for the whole runtime: what state each source
//! is in (starting, running, degraded, reconnecting, failed, ended) and why. Sources
//! and the runtime's workers write it into a [`HealthBoard`]; users read it as
//! `Runtime::health()`, as `Output::Health` changes in the output stream and as
//! `{"type":"health",…}` lines of `avaction run --json`.
//!
//! ```
//! use avaction::health::{Health, Reason, SourceHealth, SourceKind, State};
//!
//! let mut mic = SourceHealth::new("microphone default", SourceKind::Audio);
//! mic.state = State::Reconnecting;
//! mic.reasons = vec![Reason::Lost];
//! let health = Health::combine(vec![mic], &[Reason::LabelsPaused], false);
//! assert_eq!(health.state, State::Reconnecting);
//! assert!(health.reasons.contains(&Reason::LabelsPaused));
//! ```

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Where a source (or the runtime) stands. Ordered from best to worst, so that the
/// runtime's state is the worst of its sources'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Delivering data as expected.
    Running,
    /// A file or a stopped run that ended normally.
    Ended,
    /// Opened, no data yet (a microphone through PulseAudio takes ~2 s).
    Starting,
    /// Delivering, but with a fault that does not stop it (see the reasons).
    Degraded,
    /// Lost or stalled; being reopened (see `attempt` and `next_retry_s`).
    Reconnecting,
    /// Gone for good: a file that failed, or a source that may not be retried.
    Failed,
}

/// Why a source or the runtime is not simply running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The source reported an error, its device vanished or a live stream ended.
    Lost,
    /// No frame (or no audio) for longer than the stall timeout.
    Stalled,
    /// Identical frames for longer than the frozen timeout (a frozen camera).
    Frozen,
    /// Nothing but digital zeros from the microphone for longer than the silence
    /// timeout (a muted or dead input).
    Silent,
    /// Windows lack their audio: an audio-optional model labels them video-only.
    AudioMissing,
    /// Windows lack their audio and the model needs it: labels are paused until the
    /// audio returns.
    LabelsPaused,
}

/// What kind of data a source delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Frames (camera, file, URI, test pattern, pipeline description).
    Video,
    /// Audio (microphone).
    Audio,
}

/// The health of one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceHealth {
    /// The source, as logs name it (`camera /dev/video0`, `microphone "default"`).
    pub name: String,
    /// Video or audio.
    pub kind: SourceKind,
    /// Where it stands.
    pub state: State,
    /// Why it is not simply running (empty when it is).
    pub reasons: Vec<Reason>,
    /// The last fault's message (the error, or how long the stall has lasted).
    pub detail: Option<String>,
    /// Reconnecting: the number of the next attempt (1 for the first).
    pub attempt: u32,
    /// Reconnecting: seconds until the next attempt.
    pub next_retry_s: Option<f64>,
    /// Successful reopenings so far.
    pub reconnects: u64,
    /// Seconds since this source last delivered data (`None`: none yet).
    pub last_data_age_s: Option<f64>,
}

impl SourceHealth {
    /// A source that has just been opened.
    pub fn new(name: impl Into<String>, kind: SourceKind) -> SourceHealth {
        SourceHealth {
            name: name.into(),
            kind,
            state: State::Starting,
            reasons: Vec::new(),
            detail: None,
            attempt: 0,
            next_retry_s: None,
            reconnects: 0,
            last_data_age_s: None,
        }
    }

    /// Whether `other` says the same thing (state, reasons, attempt, reconnects),
    /// ignoring what changes by itself (ages, countdowns, details).
    pub fn same_state(&self, other: &SourceHealth) -> bool {
        self.name == other.name
            && self.state == other.state
            && self.reasons == other.reasons
            && self.attempt == other.attempt
            && self.reconnects == other.reconnects
    }
}

/// The health of the whole runtime: the worst state of its sources, with the reasons of
/// every source and the runtime's own (labels paused, audio missing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// The worst state among the sources (degraded when the runtime itself has a reason).
    pub state: State,
    /// Every reason of the sources and of the runtime, sorted, without repeats.
    pub reasons: Vec<Reason>,
    /// One entry per source.
    pub sources: Vec<SourceHealth>,
}

impl Health {
    /// Combines the sources' health and the runtime's own reasons; `ended` marks a run
    /// that has finished.
    pub fn combine(sources: Vec<SourceHealth>, own: &[Reason], ended: bool) -> Health {
        let mut reasons: Vec<Reason> = sources
            .iter()
            .flat_map(|s| s.reasons.iter().copied())
            .chain(own.iter().copied())
            .collect();
        reasons.sort();
        reasons.dedup();
        let worst = sources
            .iter()
            .map(|s| s.state)
            .max()
            .unwrap_or(State::Starting);
        let state = if ended && worst != State::Failed {
            State::Ended
        } else if worst == State::Running && !own.is_empty() {
            State::Degraded
        } else {
            worst
        };
        Health {
            state,
            reasons,
            sources,
        }
    }

    /// Whether `other` says the same thing, ignoring ages and countdowns.
    pub fn same_state(&self, other: &Health) -> bool {
        self.state == other.state
            && self.reasons == other.reasons
            && self.sources.len() == other.sources.len()
            && self
                .sources
                .iter()
                .zip(&other.sources)
                .all(|(a, b)| a.same_state(b))
    }
}

/// Where sources and workers write their health, and readers find it: one slot per
/// source, the runtime's own reasons, and a version that grows on every change of
/// substance (not on ages), so that a reader can emit changes only.
#[derive(Debug, Default)]
pub struct HealthBoard {
    slots: Mutex<Board>,
    version: AtomicU64,
}

#[derive(Debug, Default)]
struct Board {
    sources: Vec<SourceHealth>,
    own: Vec<Reason>,
    ended: bool,
}

impl HealthBoard {
    /// An empty board.
    pub fn new() -> HealthBoard {
        HealthBoard::default()
    }

    /// Adds a source; returns its slot for [`update`](Self::update).
    pub fn add(&self, source: SourceHealth) -> usize {
        self.with(|b| {
            b.sources.push(source);
            b.sources.len() - 1
        })
    }

    /// Changes the source in `slot` (ignored for an unknown slot).
    pub fn update(&self, slot: usize, change: impl FnOnce(&mut SourceHealth)) {
        self.with(|b| {
            if let Some(s) = b.sources.get_mut(slot) {
                change(s)
            }
        })
    }

    /// Sets or clears one of the runtime's own reasons.
    pub fn set_own(&self, reason: Reason, on: bool) {
        self.with(|b| {
            b.own.retain(|r| *r != reason);
            if on {
                b.own.push(reason);
            }
        })
    }

    /// Marks the run as ended.
    pub fn end(&self) {
        self.with(|b| b.ended = true)
    }

    /// The health now.
    pub fn health(&self) -> Health {
        match self.slots.lock() {
            Ok(b) => Health::combine(b.sources.clone(), &b.own, b.ended),
            Err(p) => {
                let b = p.into_inner();
                Health::combine(b.sources.clone(), &b.own, b.ended)
            }
        }
    }

    /// Grows whenever the health changes in substance.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Board) -> T) -> T {
        let mut b = match self.slots.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        let before = Health::combine(b.sources.clone(), &b.own, b.ended);
        let out = f(&mut b);
        let after = Health::combine(b.sources.clone(), &b.own, b.ended);
        if !before.same_state(&after) {
            self.version.fetch_add(1, Ordering::SeqCst);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_state_is_the_worst_source_state() {
        let mut video = SourceHealth::new("video", SourceKind::Video);
        video.state = State::Running;
        let mut audio = SourceHealth::new("mic", SourceKind::Audio);
        audio.state = State::Degraded;
        audio.reasons = vec![Reason::Silent];
        let h = Health::combine(vec![video.clone(), audio], &[], false);
        assert_eq!(h.state, State::Degraded);
        assert_eq!(h.reasons, vec![Reason::Silent]);
        let h = Health::combine(vec![video.clone()], &[], false);
        assert_eq!(h.state, State::Running);
        let h = Health::combine(vec![video], &[Reason::AudioMissing], false);
        assert_eq!(h.state, State::Degraded);
    }

    #[test]
    fn versions_grow_on_changes_of_substance_only() {
        let board = HealthBoard::new();
        let slot = board.add(SourceHealth::new("v", SourceKind::Video));
        let v0 = board.version();
        board.update(slot, |s| s.last_data_age_s = Some(0.5));
        assert_eq!(board.version(), v0, "an age is not a change");
        board.update(slot, |s| s.state = State::Running);
        assert_eq!(board.version(), v0 + 1);
        board.set_own(Reason::LabelsPaused, true);
        assert_eq!(board.version(), v0 + 2);
        board.set_own(Reason::LabelsPaused, true);
        assert_eq!(board.version(), v0 + 2, "setting it twice is one change");
        board.end();
        assert_eq!(board.health().state, State::Ended);
    }

    #[test]
    fn health_serialises_in_snake_case() {
        let mut s = SourceHealth::new("mic", SourceKind::Audio);
        s.state = State::Reconnecting;
        s.reasons = vec![Reason::Lost];
        let json = serde_json::to_string(&Health::combine(vec![s], &[], false)).unwrap();
        assert!(json.contains(r#""state":"reconnecting""#), "{json}");
        assert!(json.contains(r#""reasons":["lost"]"#), "{json}");
        assert!(json.contains(r#""kind":"audio""#), "{json}");
    }
}
