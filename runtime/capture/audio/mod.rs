//! Where microphone audio enters: a cpal input stream whose callback only copies samples
//! into a lock-free ring (`ring.rs`), and a pump thread that downmixes, resamples and
//! stamps chunks (`convert.rs`). `devices.rs` finds the input device.

mod convert;
mod devices;
mod ring;

pub use devices::{is_capture_device, list_microphones, microphones, MicrophoneInfo};

use super::{AudioSource, CaptureEvent, CaptureStats, SourceWatch};
use crate::clock::{Nanos, Timeline};
use crate::{err, Result};
use convert::Converter;
use cpal::traits::{DeviceTrait, StreamTrait};
use devices::{device_label, select_device};
use ring::{build_stream, RingWriter};
use ringbuf::traits::{Consumer, Observer, Split};
use ringbuf::{HeapCons, HeapRb};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Seconds of device audio the ring holds before overrunning.
const RING_SECONDS: usize = 2;
/// Anchors the anchor ring holds (one per callback; the pump drains it every 10 ms).
const ANCHOR_CAPACITY: usize = 512;
/// How often the pump drains the ring.
const PUMP_INTERVAL: Duration = Duration::from_millis(10);
/// Longest chunk sent, in milliseconds.
const MAX_CHUNK_MS: u32 = 20;
/// Resampler input block, in milliseconds of device audio.
const RESAMPLER_BLOCK_MS: usize = 10;

/// A running microphone: mono f32 chunks at the model rate flow to the channel given to
/// [`Microphone::start`] until [`Microphone::stop`] or drop.
///
/// Real-time side (cpal data callback): converts the device's samples to f32 while
/// copying them into a pre-sized SPSC ring (`ringbuf::HeapRb`, 2 s), pushes one
/// `(frame index, capture time)` anchor per callback into a second small ring, and counts
/// frames that did not fit into [`CaptureStats::samples_dropped`]. No allocation, no
/// lock, no logging there. Capture time is [`Timeline::now`] at the callback minus the
/// host's `callback - capture` latency from `InputCallbackInfo::timestamp()`.
///
/// Pump side (ordinary thread, every 10 ms): drains the ring, averages channels to mono,
/// resamples with rubato (`FftFixedIn`, band-limited) to the model rate, and stamps each
/// chunk (at most 20 ms) from the newest anchor at or before its first sample; chunks are
/// sent with `try_send` and counted as dropped when the runtime's channel is full.
///
/// Drops are counted at the device rate: frames lost to a full ring, and chunks refused by
/// a full channel (converted back to device frames).
///
/// Start-up: through ALSA's `pulse` plugin the first audio arrives ~2 s after `start`
/// (measured), sometimes as a short burst. Chunk times come from the anchors, so audio
/// the server never delivered shows up as a gap in `t_ns`, not as a drift.
///
/// With no sound card, ALSA's default host may still list a `null` device that delivers
/// silence; it is not special-cased (it is a device the user can pick).
pub struct Microphone {
    stream: Option<cpal::Stream>,
    pump: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    device_name: String,
}

impl std::fmt::Debug for Microphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microphone")
            .field("device", &self.device_name)
            .field("running", &self.stream.is_some())
            .finish()
    }
}

/// The capture time of one frame of the ring's stream: written by the callback.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Anchor {
    /// Index of the frame (at the device rate) in the ring's stream.
    frame: u64,
    /// When that frame was captured, on the runtime timeline.
    t_ns: Nanos,
}

impl Microphone {
    /// Opens the default input device ([`AudioSource::DefaultMicrophone`]) or the first
    /// input device whose id equals the given text or, failing that, whose label
    /// (`id (description)`, as [`list_microphones`] shows it) contains it ([`AudioSource::Microphone`], case-insensitive), and starts delivering mono f32 audio at `rate` Hz stamped on
    /// `timeline` as [`CaptureEvent::Audio`] chunks of at most 20 ms. Any sample format,
    /// channel count and device rate is converted. Device loss arrives later as
    /// [`CaptureEvent::Failed`].
    ///
    /// # Errors
    /// [`Audio`](crate::ErrorKind::Audio) when no input device matches (the message lists
    /// the microphones there are), the device refuses every configuration, or the stream
    /// or its pump thread cannot start (cpal's error is the source).
    pub fn start(
        source: &AudioSource,
        rate: u32,
        timeline: Timeline,
        tx: SyncSender<CaptureEvent>,
        stats: Arc<CaptureStats>,
    ) -> Result<Microphone> {
        let watch = Arc::new(SourceWatch::new(timeline, false));
        Microphone::start_watched(source, rate, timeline, tx, stats, watch)
    }

    /// [`start`](Self::start), reporting liveness to `watch` (the pump records every
    /// chunk; the real-time callback does not touch it). A supervised watch receives
    /// the stream's failures instead of the channel, so that its supervisor can reopen
    /// the device.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_watched(
        source: &AudioSource,
        rate: u32,
        timeline: Timeline,
        tx: SyncSender<CaptureEvent>,
        stats: Arc<CaptureStats>,
        watch: Arc<SourceWatch>,
    ) -> Result<Microphone> {
        if rate == 0 || rate > 384_000 {
            return Err(err!(Config, "audio rate {rate} Hz is invalid (1..=384000)"));
        }
        let host = cpal::default_host();
        let device = select_device(&host, source)?;
        let device_name = device_label(&device);
        let supported = device.default_input_config().map_err(|e| {
            err!(
                Audio,
                "microphone {device_name:?} has no usable input configuration: {e}"
            )
        })?;
        let channels = usize::from(supported.channels().max(1));
        let device_rate = supported.sample_rate();
        let sample_format = supported.sample_format();
        let mut config = supported.config();
        config.buffer_size = match supported.buffer_size() {
            cpal::SupportedBufferSize::Range { min, max } => {
                cpal::BufferSize::Fixed((device_rate / 100).clamp(*min, *max))
            }
            cpal::SupportedBufferSize::Unknown => cpal::BufferSize::Default,
        };
        log::info!(
            "microphone {device_name:?}: {device_rate} Hz, {channels} ch, {sample_format:?}, buffer {:?} -> mono {rate} Hz",
            config.buffer_size
        );

        let ring_len = device_rate as usize * channels * RING_SECONDS;
        let (producer, consumer) = HeapRb::<f32>::new(ring_len.max(channels)).split();
        let (anchor_tx, anchor_rx) = HeapRb::<Anchor>::new(ANCHOR_CAPACITY).split();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = RingWriter {
            samples: producer,
            anchors: anchor_tx,
            channels,
            frames_written: 0,
            timeline,
            stats: stats.clone(),
            stop: stop.clone(),
        };
        let converter = Converter::new(channels, device_rate, rate).map_err(|e| {
            err!(
                Audio,
                "microphone {device_name:?}: cannot resample {device_rate} Hz to {rate} Hz: {e}"
            )
        })?;

        let error_tx = tx.clone();
        let error_name = device_name.clone();
        let error_watch = watch.clone();
        let on_error = move |e: cpal::Error| match e.kind() {
            // Glitches and reroutes: the stream goes on.
            cpal::ErrorKind::Xrun
            | cpal::ErrorKind::DeviceChanged
            | cpal::ErrorKind::RealtimeDenied => {
                log::warn!("microphone {error_name:?}: {e}")
            }
            _ => {
                let error = err!(Audio, "microphone {error_name:?} failed").caused_by(e);
                report_failure(&error_watch, &error_tx, error);
            }
        };
        let stream = build_stream(&device, config, sample_format, writer, on_error)
            .map_err(|e| e.context(format!("microphone {device_name:?}")))?;
        stream
            .play()
            .map_err(|e| err!(Audio, "microphone {device_name:?} cannot start").caused_by(e))?;

        let pump = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("avaction-mic-pump".into())
                .spawn(move || pump_loop(consumer, anchor_rx, converter, (tx, watch), stats, stop))
                .map_err(|e| err!(Audio, "cannot start the microphone pump thread").caused_by(e))?
        };
        Ok(Microphone {
            stream: Some(stream),
            pump: Some(pump),
            stop,
            device_name,
        })
    }

    /// The name of the device being captured.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Stops the stream and the pump thread; idempotent (also run on drop).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(stream) = self.stream.take() {
            if let Err(e) = stream.pause() {
                log::debug!(
                    "microphone {:?}: pause on stop failed: {e}",
                    self.device_name
                );
            }
            drop(stream);
        }
        if let Some(pump) = self.pump.take() {
            if pump.join().is_err() {
                log::error!(
                    "microphone {:?}: the pump thread panicked",
                    self.device_name
                );
            }
        }
    }
}

impl Drop for Microphone {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pump thread: drains the rings every 10 ms and sends converted chunks.
fn pump_loop(
    mut samples: HeapCons<f32>,
    mut anchors: HeapCons<Anchor>,
    mut converter: Converter,
    (tx, watch): (SyncSender<CaptureEvent>, Arc<SourceWatch>),
    stats: Arc<CaptureStats>,
    stop: Arc<AtomicBool>,
) {
    let channels = converter.channels;
    let mut scratch = vec![0f32; samples.capacity().get()];
    let mut chunks = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(PUMP_INTERVAL);
        while let Some(anchor) = anchors.try_pop() {
            converter.add_anchor(anchor);
        }
        let whole = samples.occupied_len() / channels * channels;
        let n = samples.pop_slice(&mut scratch[..whole]);
        chunks.clear();
        if let Err(e) = converter.push(&scratch[..n], &mut chunks) {
            report_failure(
                &watch,
                &tx,
                err!(Audio, "microphone resampling failed: {e}"),
            );
            return;
        }
        for chunk in chunks.drain(..) {
            let len = chunk.samples.len() as u64;
            watch.audio(&chunk.samples);
            match tx.try_send(CaptureEvent::Audio(chunk)) {
                Ok(()) => CaptureStats::add(&stats.samples, len),
                Err(TrySendError::Full(_)) => CaptureStats::add(
                    &stats.samples_dropped,
                    len * u64::from(converter.in_rate) / u64::from(converter.out_rate),
                ),
                Err(TrySendError::Disconnected(_)) => {
                    stop.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

/// A failed stream: to the supervisor of a supervised microphone (which reopens it), as
/// a `Failed` event otherwise.
fn report_failure(watch: &SourceWatch, tx: &SyncSender<CaptureEvent>, error: crate::Error) {
    if watch.supervised() {
        log::warn!("{error}");
        watch.lose(error);
    } else {
        log::error!("{error}");
        let _ = tx.try_send(CaptureEvent::Failed(error));
    }
}
