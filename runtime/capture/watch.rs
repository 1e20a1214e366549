//! What a running source tells its supervisor: when it last delivered data, since when
//! its frames have been identical or its audio digital zeros, and whether it was lost.
//! Capture threads write it with atomics (the error behind a small lock, written once
//! per fault); the supervisor (`runtime/supervise`) reads it.

use crate::clock::{Nanos, Timeline};
use crate::Error;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// "Never": no data yet, or no frozen/silent run going on.
const NEVER: i64 = i64::MIN;

/// Liveness of one source; see the module docs.
#[derive(Debug)]
pub struct SourceWatch {
    timeline: Timeline,
    supervised: bool,
    last_data: AtomicI64,
    same_since: AtomicI64,
    last_hash: AtomicU64,
    zero_since: AtomicI64,
    lost: Mutex<Option<Error>>,
    lost_flag: AtomicBool,
}

impl SourceWatch {
    /// A watch on `timeline`. A `supervised` source reports a failure here only (its
    /// supervisor reopens it); an unsupervised one also sends
    /// [`CaptureEvent::Failed`](super::CaptureEvent::Failed), which ends the run.
    pub fn new(timeline: Timeline, supervised: bool) -> SourceWatch {
        SourceWatch {
            timeline,
            supervised,
            last_data: AtomicI64::new(NEVER),
            same_since: AtomicI64::new(NEVER),
            last_hash: AtomicU64::new(0),
            zero_since: AtomicI64::new(NEVER),
            lost: Mutex::new(None),
            lost_flag: AtomicBool::new(false),
        }
    }

    /// Whether a supervisor reopens this source when it fails.
    pub fn supervised(&self) -> bool {
        self.supervised
    }

    /// Records a delivered frame: its arrival, and whether it repeats the previous one
    /// (a cheap sample of its bytes).
    pub fn frame(&self, rgb: &[u8]) {
        let now = self.timeline.now().as_nanos();
        self.last_data.store(now, Ordering::Relaxed);
        let hash = sample_hash(rgb);
        if self.last_hash.swap(hash, Ordering::Relaxed) == hash {
            let _ =
                self.same_since
                    .compare_exchange(NEVER, now, Ordering::Relaxed, Ordering::Relaxed);
        } else {
            self.same_since.store(NEVER, Ordering::Relaxed);
        }
    }

    /// Records delivered audio: its arrival, and whether it is all digital zeros.
    pub fn audio(&self, samples: &[f32]) {
        if samples.is_empty() {
            return;
        }
        let now = self.timeline.now().as_nanos();
        self.last_data.store(now, Ordering::Relaxed);
        if samples.iter().all(|&s| s == 0.0) {
            let _ =
                self.zero_since
                    .compare_exchange(NEVER, now, Ordering::Relaxed, Ordering::Relaxed);
        } else {
            self.zero_since.store(NEVER, Ordering::Relaxed);
        }
    }

    /// Records that the source failed (the first error of a fault is kept).
    pub fn lose(&self, error: Error) {
        if let Ok(mut lost) = self.lost.lock() {
            if lost.is_none() {
                *lost = Some(error);
            }
        }
        self.lost_flag.store(true, Ordering::SeqCst);
    }

    /// The failure, if the source was lost (taken: the next call says `None`).
    pub fn take_lost(&self) -> Option<Error> {
        if !self.lost_flag.swap(false, Ordering::SeqCst) {
            return None;
        }
        self.lost.lock().ok().and_then(|mut l| l.take())
    }

    /// How long ago data last came (`None`: none yet).
    pub fn data_age(&self) -> Option<Nanos> {
        self.age(&self.last_data)
    }

    /// How long the frames have been identical (`None`: they change).
    pub fn frozen_for(&self) -> Option<Nanos> {
        self.age(&self.same_since)
    }

    /// How long the audio has been digital zeros (`None`: it is not).
    pub fn silent_for(&self) -> Option<Nanos> {
        self.age(&self.zero_since)
    }

    /// Forgets the data times (a reopened source starts afresh).
    pub fn reset(&self) {
        for a in [&self.last_data, &self.same_since, &self.zero_since] {
            a.store(NEVER, Ordering::Relaxed);
        }
        self.last_hash.store(0, Ordering::Relaxed);
    }

    fn age(&self, since: &AtomicI64) -> Option<Nanos> {
        let t = since.load(Ordering::Relaxed);
        (t != NEVER).then(|| self.timeline.now() - Nanos::from_nanos(t))
    }
}

/// FNV-1a over at most 4096 evenly spaced bytes: enough to tell a frozen picture from a
/// live one (a live camera's noise changes many of them) at a few microseconds a frame.
fn sample_hash(bytes: &[u8]) -> u64 {
    let step = (bytes.len() / 4096).max(1);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes.iter().step_by(step) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ bytes.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_frames_count_as_frozen_and_a_change_clears_it() {
        let w = SourceWatch::new(Timeline::start(), true);
        assert!(w.data_age().is_none());
        w.frame(&[1, 2, 3]);
        assert!(w.frozen_for().is_none());
        w.frame(&[1, 2, 3]);
        assert!(w.frozen_for().is_some());
        w.frame(&[1, 2, 4]);
        assert!(w.frozen_for().is_none());
        assert!(w.data_age().is_some());
    }

    #[test]
    fn digital_zeros_count_as_silent() {
        let w = SourceWatch::new(Timeline::start(), true);
        w.audio(&[0.0; 8]);
        assert!(w.silent_for().is_some());
        w.audio(&[0.0, 1e-6]);
        assert!(w.silent_for().is_none());
    }

    #[test]
    fn a_loss_is_taken_once() {
        let w = SourceWatch::new(Timeline::start(), true);
        assert!(w.take_lost().is_none());
        w.lose(crate::err!(Audio, "gone"));
        w.lose(crate::err!(Audio, "second"));
        assert_eq!(
            w.take_lost().map(|e| e.message().to_string()),
            Some("gone".into())
        );
        assert!(w.take_lost().is_none());
    }
}
