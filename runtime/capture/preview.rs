//! The live view's picture: the capture's frames as small JPEG images, made only while
//! someone is looking. A branch off the video pipeline's `tee` (see
//! `video/pipeline.rs`) passes at most one frame per interval (`1 / fps`) of wall
//! time, and only within a few seconds of the last [`PreviewTap::want`]; the rest are
//! dropped by a pad probe before they are converted, so an unwatched view costs
//! nothing but the probe. The newest JPEG waits in the tap for readers; older ones are
//! replaced, never queued.

use crate::clock::Nanos;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a [`PreviewTap::want`] keeps the branch encoding.
const WANT_FOR: Duration = Duration::from_secs(3);

/// One JPEG image of the capture.
#[derive(Debug, Clone)]
pub struct Preview {
    /// Counts images made (1 for the first), so readers can tell a new one.
    pub seq: u64,
    /// Capture time of the frame on the runtime timeline.
    pub t_ns: Nanos,
    /// The JPEG file's bytes.
    pub jpeg: Arc<[u8]>,
}

/// Where the preview branch leaves its newest image; shared by the capture (which
/// survives source reconnects: every new pipeline gets the same tap) and the readers.
#[derive(Debug)]
pub struct PreviewTap {
    max_height: u32,
    interval: Duration,
    origin: Instant,
    /// Wall time (ns since `origin`) of the last frame let through, plus one.
    last_pass: AtomicU64,
    /// Wall time (ns since `origin`) until which someone wants images.
    wanted_until: AtomicU64,
    latest: Mutex<Option<Preview>>,
    made: AtomicU64,
}

impl PreviewTap {
    /// A tap for images at most `max_height` lines high (the aspect is kept), at most
    /// `fps` per second (at least 1).
    pub fn new(max_height: u32, fps: u32) -> PreviewTap {
        PreviewTap {
            max_height: max_height.max(2),
            interval: Duration::from_secs(1) / fps.max(1),
            origin: Instant::now(),
            last_pass: AtomicU64::new(0),
            wanted_until: AtomicU64::new(0),
            latest: Mutex::new(None),
            made: AtomicU64::new(0),
        }
    }

    /// Largest image height in lines.
    pub fn max_height(&self) -> u32 {
        self.max_height
    }

    fn wall_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Someone looks: keep making images for the next few seconds.
    pub fn want(&self) {
        let until = self.wall_ns().saturating_add(WANT_FOR.as_nanos() as u64);
        self.wanted_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether the frame arriving now should become an image (the branch's pad probe
    /// asks; lock-free): someone wants images and the last one is at least an interval
    /// old.
    pub(crate) fn pass_now(&self) -> bool {
        let now = self.wall_ns();
        if now >= self.wanted_until.load(Ordering::Relaxed) {
            return false;
        }
        let last = self.last_pass.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_add(1) >= last + self.interval.as_nanos() as u64;
        due && self
            .last_pass
            .compare_exchange(
                last,
                now.saturating_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Keeps `jpeg` (the frame captured at `t_ns`) as the newest image.
    pub(crate) fn put(&self, t_ns: Nanos, jpeg: &[u8]) {
        let seq = self.made.fetch_add(1, Ordering::Relaxed) + 1;
        let preview = Preview {
            seq,
            t_ns,
            jpeg: Arc::from(jpeg),
        };
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(preview);
    }

    /// The newest image, if one was made.
    pub fn latest(&self) -> Option<Preview> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_passes_until_someone_wants_images() {
        let tap = PreviewTap::new(360, 1000);
        assert!(!tap.pass_now());
        tap.want();
        assert!(tap.pass_now());
    }

    #[test]
    fn images_are_paced_by_the_interval() {
        let tap = PreviewTap::new(360, 1);
        tap.want();
        assert!(tap.pass_now());
        // within the second that follows, nothing more passes
        assert!(!tap.pass_now());
        assert!(!tap.pass_now());
    }

    #[test]
    fn the_newest_image_replaces_the_last() {
        let tap = PreviewTap::new(360, 10);
        assert!(tap.latest().is_none());
        tap.put(Nanos::from_nanos(10_000_000), &[1, 2, 3]);
        tap.put(Nanos::from_nanos(20_000_000), &[4, 5]);
        let p = tap.latest().expect("an image");
        assert_eq!((p.seq, &p.jpeg[..]), (2, &[4u8, 5][..]));
        assert_eq!(p.t_ns, Nanos::from_nanos(20_000_000));
    }
}
