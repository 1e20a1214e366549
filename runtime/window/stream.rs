//! The window stream: reads [`CaptureEvent`]s from a capture channel into a
//! [`WindowScheduler`] and hands out each window as soon as it is complete. One loop for
//! every reader of windows: the runtime's window thread and `avaction features`.

use super::view::LiveView;
use super::{Window, WindowScheduler, WindowStats};
use crate::capture::clip::ClipTap;
use crate::capture::CaptureEvent;
use crate::clock::Nanos;
use crate::health::SourceKind;
use crate::Result;
use serde::Serialize;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What [`WindowStream::next`] found.
// A window is moved once per hop (its frames are on the heap): boxing it to keep the
// other variants small would cost an allocation per window for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum WindowStreamStep {
    /// A complete window (or one whose audio is no longer awaited).
    Window(Window),
    /// No window yet: no capture event arrived within the wait, or the one that did
    /// completed none. Call again (after checking whether to stop).
    Pending,
    /// The source ended and every window has been handed out.
    Ended,
    /// With [`WindowStream::with_video_ready`]: the newest frames as a window, without
    /// log-mel, after each frame (see [`WindowScheduler::take_video_ready`]); complete
    /// windows still come as [`WindowStreamStep::Window`].
    VideoReady(Window),
}

/// Capture events in, windows out; see the module docs.
#[derive(Debug)]
pub struct WindowStream {
    scheduler: WindowScheduler,
    rx: Receiver<CaptureEvent>,
    ended: bool,
    end: Option<End>,
    /// The times of the two latest frames (to tell where the media ended).
    last_frames: (Option<Nanos>, Option<Nanos>),
    frontend_time: Duration,
    clip_tap: Option<Arc<ClipTap>>,
    view: Option<Arc<LiveView>>,
}

/// How a source that ends by itself (a file) ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct End {
    /// Whether the whole media was processed (false: truncated, or failed mid-stream;
    /// what came before was processed).
    pub complete: bool,
    /// Why it is incomplete.
    pub reason: Option<String>,
    /// Media time of the end of the last frame, seconds.
    pub media_end_s: f64,
}

impl WindowStream {
    /// A stream that feeds `scheduler` from the capture channel `rx`. The stream ends
    /// when the source sends [`CaptureEvent::EndOfStream`] or every sender is gone.
    pub fn new(scheduler: WindowScheduler, rx: Receiver<CaptureEvent>) -> WindowStream {
        WindowStream {
            scheduler,
            rx,
            ended: false,
            end: None,
            last_frames: (None, None),
            frontend_time: Duration::ZERO,
            clip_tap: None,
            view: None,
        }
    }

    /// Also hands out the newest frames as a window after each frame
    /// ([`WindowStreamStep::VideoReady`]), so a staged model encodes frames as they come
    /// and, when a window's audio arrives (live: a frame period and a bit after its last
    /// frame), only the audio and the head remain.
    pub fn with_video_ready(mut self) -> WindowStream {
        self.scheduler.enable_video_ready();
        self
    }

    /// Also shows every window (its log-mel and flow) and the audio level in `view`.
    pub fn with_view(mut self, view: Arc<LiveView>) -> WindowStream {
        self.view = Some(view);
        self
    }

    fn emit(&self, w: Window) -> WindowStreamStep {
        if let Some(view) = &self.view {
            view.push_window(&w);
        }
        WindowStreamStep::Window(w)
    }

    /// Also keeps every audio chunk received in `tap`, for evidence clips.
    pub fn with_clip_tap(mut self, tap: Arc<ClipTap>) -> WindowStream {
        self.clip_tap = Some(tap);
        self
    }

    /// The next window. A window already complete is returned at once; otherwise the
    /// stream waits up to `wait` for one capture event, runs the frontends on it (flow
    /// for a frame, log-mel for audio) and returns the window it completed, if any.
    ///
    /// `now` gives the timeline's current time for live sources: a window whose audio
    /// has not come within the scheduler's `audio_wait_ns` of its end is then emitted
    /// with the missing part marked (see [`WindowScheduler::poll`]). Files pass `None`
    /// and wait for their audio.
    ///
    /// # Errors
    /// The error of a failed source ([`CaptureEvent::Failed`]), or of a frame that does
    /// not fit the window ([`WindowScheduler::push_frame`]).
    pub fn next(
        &mut self,
        wait: Duration,
        now: &dyn Fn() -> Option<Nanos>,
    ) -> Result<WindowStreamStep> {
        if let Some(w) = self.scheduler.poll(now(), self.ended) {
            return Ok(self.emit(w));
        }
        if self.ended && self.scheduler.pending() == 0 {
            return Ok(WindowStreamStep::Ended);
        }
        match self.rx.recv_timeout(wait) {
            Ok(CaptureEvent::Frame(frame)) => {
                self.last_frames = (self.last_frames.1, Some(frame.t_ns));
                let t0 = Instant::now();
                let pushed = self.scheduler.push_frame(&frame);
                self.frontend_time += t0.elapsed();
                pushed?;
            }
            Ok(CaptureEvent::Audio(chunk)) => {
                if let Some(tap) = &self.clip_tap {
                    tap.push_audio(&chunk);
                }
                if let Some(view) = &self.view {
                    view.push_audio(&chunk.samples);
                }
                let t0 = Instant::now();
                self.scheduler.push_audio(&chunk);
                self.frontend_time += t0.elapsed();
            }
            Ok(CaptureEvent::EndOfStream) | Err(RecvTimeoutError::Disconnected) => self.end(None),
            Ok(CaptureEvent::Cut(reason)) => self.end(Some(reason)),
            Ok(CaptureEvent::Gap(SourceKind::Video)) => self.scheduler.restart_video(),
            Ok(CaptureEvent::Gap(SourceKind::Audio)) => {}
            Ok(CaptureEvent::Failed(e)) => return Err(e),
            Err(RecvTimeoutError::Timeout) => {}
        }
        Ok(match self.scheduler.poll(now(), self.ended) {
            Some(w) => self.emit(w),
            None if self.ended && self.scheduler.pending() == 0 => WindowStreamStep::Ended,
            None => match self.scheduler.take_video_ready() {
                Some(w) => WindowStreamStep::VideoReady(w),
                None => WindowStreamStep::Pending,
            },
        })
    }

    /// How the source ended, once it has ([`CaptureEvent::EndOfStream`] or
    /// [`CaptureEvent::Cut`]; a closed channel counts as complete).
    pub fn end_record(&self) -> Option<&End> {
        self.end.as_ref()
    }

    fn end(&mut self, cut: Option<String>) {
        self.ended = true;
        let end = match self.last_frames {
            (Some(a), Some(b)) => b + (b - a),
            (_, Some(b)) => b,
            _ => Nanos::ZERO,
        };
        self.end = Some(End {
            complete: cut.is_none(),
            reason: cut,
            media_end_s: end.as_secs_f64(),
        });
    }

    /// The scheduler's counters so far.
    pub fn stats(&self) -> WindowStats {
        self.scheduler.stats()
    }

    /// Time spent in the frontends (flow, log-mel, resizing) since the last call.
    pub fn take_frontend_time(&mut self) -> Duration {
        std::mem::take(&mut self.frontend_time)
    }
}
