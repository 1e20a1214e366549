//! Where microphone audio enters: a cpal input stream whose callback only copies samples
//! into a lock-free ring, and a pump thread that downmixes, resamples and stamps chunks.

use super::{AudioSource, CaptureEvent, CaptureStats};
use crate::clock::{AudioChunk, Nanos, Timeline};
use crate::{err, Result};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use rubato::Resampler;
use std::collections::VecDeque;
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
        let on_error = move |e: cpal::Error| match e.kind() {
            // Glitches and reroutes: the stream goes on.
            cpal::ErrorKind::Xrun
            | cpal::ErrorKind::DeviceChanged
            | cpal::ErrorKind::RealtimeDenied => {
                log::warn!("microphone {error_name:?}: {e}")
            }
            _ => {
                let error = err!(Audio, "microphone {error_name:?} failed").caused_by(e);
                log::error!("{error}");
                let _ = error_tx.try_send(CaptureEvent::Failed(error));
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
                .spawn(move || pump_loop(consumer, anchor_rx, converter, tx, stats, stop))
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

/// Labels (`id (description)`) of the input devices of the default cpal host; empty if
/// there is none or no host.
pub fn list_microphones() -> Vec<String> {
    match cpal::default_host().input_devices() {
        Ok(devices) => devices.map(|d| device_label(&d)).collect(),
        Err(e) => {
            log::warn!("cannot list microphones: {e}");
            Vec::new()
        }
    }
}

/// A device's label, `id (description)` (e.g. `pulse (PulseAudio Sound Server)`), built
/// without panicking (cpal's `Display` for devices can fail).
fn device_label(device: &cpal::Device) -> String {
    let id = device.id().ok().map(|id| id.id().to_string());
    let name = device.description().ok().map(|d| d.name().to_string());
    match (id, name) {
        (Some(id), Some(name)) if id != name => format!("{id} ({name})"),
        (Some(id), _) => id,
        (None, Some(name)) => name,
        (None, None) => "unnamed device".into(),
    }
}

fn available_list() -> String {
    let names = list_microphones();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn select_device(host: &cpal::Host, source: &AudioSource) -> Result<cpal::Device> {
    let host_name = host.id().name();
    match source {
        AudioSource::DefaultMicrophone => host.default_input_device().ok_or_else(|| {
            err!(
                Audio,
                "no microphone found: default host ({host_name}) has no input device (input devices: {})",
                available_list()
            )
        }),
        AudioSource::Microphone(name) => {
            let wanted = name.to_lowercase();
            let devices = host.input_devices().map_err(|e| {
                err!(Audio, "microphone {name:?} not found: cannot list {host_name} input devices")
                    .caused_by(e)
            })?;
            // An exact device id (`pulse`, `hw:CARD=USB,DEV=0`) wins over a substring of a label.
            let mut by_label = None;
            for device in devices {
                let id = device.id().ok().map(|id| id.id().to_lowercase());
                if id.as_deref() == Some(wanted.as_str()) {
                    return Ok(device);
                }
                if by_label.is_none() && device_label(&device).to_lowercase().contains(&wanted) {
                    by_label = Some(device);
                }
            }
            if let Some(device) = by_label {
                return Ok(device);
            }
            Err(err!(
                Audio,
                "no microphone matching {name:?} on host {host_name} (input devices: {})",
                available_list()
            ))
        }
        other => Err(err!(Config, "audio source {other:?} is not a microphone")),
    }
}

/// The real-time half: everything the cpal data callback touches, allocated up front.
struct RingWriter {
    samples: HeapProd<f32>,
    anchors: HeapProd<Anchor>,
    channels: usize,
    frames_written: u64,
    timeline: Timeline,
    stats: Arc<CaptureStats>,
    stop: Arc<AtomicBool>,
}

impl RingWriter {
    /// Copies one callback's interleaved samples (converted to f32) and its anchor.
    /// Runs on the audio thread: no allocation, no lock, no logging.
    fn write<T>(&mut self, data: &[T], info: &cpal::InputCallbackInfo)
    where
        T: cpal::Sample,
        f32: cpal::FromSample<T>,
    {
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        let now = self.timeline.now();
        let stamp = info.timestamp();
        let latency = stamp.callback.duration_since(stamp.capture);
        let captured = now - Nanos::from(latency);
        let frames = data.len() / self.channels;
        let fit = frames.min(self.samples.vacant_len() / self.channels);
        if fit > 0 {
            // A full anchor ring only loses timing precision, not samples.
            let _ = self.anchors.try_push(Anchor {
                frame: self.frames_written,
                t_ns: captured,
            });
            let take = fit * self.channels;
            self.samples
                .push_iter(data[..take].iter().map(|&s| s.to_sample::<f32>()));
            self.frames_written += fit as u64;
        }
        if fit < frames {
            CaptureStats::add(&self.stats.samples_dropped, (frames - fit) as u64);
        }
    }
}

fn build_stream(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    format: cpal::SampleFormat,
    writer: RingWriter,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream> {
    fn typed<T>(
        device: &cpal::Device,
        config: cpal::StreamConfig,
        mut writer: RingWriter,
        on_error: impl FnMut(cpal::Error) + Send + 'static,
    ) -> std::result::Result<cpal::Stream, cpal::Error>
    where
        T: cpal::SizedSample + Send + 'static,
        f32: cpal::FromSample<T>,
    {
        device.build_input_stream::<T, _, _>(
            config,
            move |data: &[T], info: &cpal::InputCallbackInfo| writer.write(data, info),
            on_error,
            Some(Duration::from_secs(5)),
        )
    }
    use cpal::SampleFormat as F;
    let built = match format {
        F::I8 => typed::<i8>(device, config, writer, on_error),
        F::I16 => typed::<i16>(device, config, writer, on_error),
        F::I24 => typed::<cpal::I24>(device, config, writer, on_error),
        F::I32 => typed::<i32>(device, config, writer, on_error),
        F::I64 => typed::<i64>(device, config, writer, on_error),
        F::U8 => typed::<u8>(device, config, writer, on_error),
        F::U16 => typed::<u16>(device, config, writer, on_error),
        F::U24 => typed::<cpal::U24>(device, config, writer, on_error),
        F::U32 => typed::<u32>(device, config, writer, on_error),
        F::U64 => typed::<u64>(device, config, writer, on_error),
        F::F32 => typed::<f32>(device, config, writer, on_error),
        F::F64 => typed::<f64>(device, config, writer, on_error),
        other => return Err(err!(Audio, "sample format {other:?} is not supported")),
    };
    built.map_err(|e| err!(Audio, "cannot open an input stream").caused_by(e))
}

/// The pump thread: drains the rings every 10 ms and sends converted chunks.
fn pump_loop(
    mut samples: HeapCons<f32>,
    mut anchors: HeapCons<Anchor>,
    mut converter: Converter,
    tx: SyncSender<CaptureEvent>,
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
            let error = err!(Audio, "microphone resampling failed: {e}");
            log::error!("{error}");
            let _ = tx.try_send(CaptureEvent::Failed(error));
            return;
        }
        for chunk in chunks.drain(..) {
            let len = chunk.samples.len() as u64;
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

/// Downmix, resample and timestamp: interleaved device frames in, stamped mono chunks out.
/// Pure computation (no device), so it is tested on its own.
struct Converter {
    channels: usize,
    in_rate: u32,
    out_rate: u32,
    /// `None` when the rates are equal.
    resampler: Option<rubato::FftFixedIn<f32>>,
    /// Mono device-rate samples not yet given to the resampler.
    pending: Vec<f32>,
    resampled: Vec<f32>,
    /// Output samples still to discard (the resampler's delay).
    skip: usize,
    /// Output samples emitted so far (after the delay).
    emitted: u64,
    anchors: VecDeque<Anchor>,
    last_t: Option<Nanos>,
}

impl Converter {
    fn new(channels: usize, in_rate: u32, out_rate: u32) -> std::result::Result<Converter, String> {
        if channels == 0 || in_rate == 0 || out_rate == 0 {
            return Err(format!(
                "invalid layout {channels} ch {in_rate} -> {out_rate} Hz"
            ));
        }
        let (resampler, skip) = if in_rate == out_rate {
            (None, 0)
        } else {
            let block = (in_rate as usize * RESAMPLER_BLOCK_MS / 1000).max(1);
            let r =
                rubato::FftFixedIn::<f32>::new(in_rate as usize, out_rate as usize, block, 1, 1)
                    .map_err(|e| e.to_string())?;
            let delay = r.output_delay();
            (Some(r), delay)
        };
        let out_max = resampler.as_ref().map_or(0, |r| r.output_frames_max());
        Ok(Converter {
            channels,
            in_rate,
            out_rate,
            resampler,
            pending: Vec::with_capacity(in_rate as usize),
            resampled: vec![0f32; out_max],
            skip,
            emitted: 0,
            anchors: VecDeque::with_capacity(ANCHOR_CAPACITY),
            last_t: None,
        })
    }

    fn add_anchor(&mut self, anchor: Anchor) {
        if self.anchors.len() == ANCHOR_CAPACITY {
            self.anchors.pop_front();
        }
        self.anchors.push_back(anchor);
    }

    /// Time of the output sample with index `index` (after the delay), from the newest
    /// anchor at or before the device frame it corresponds to.
    fn time_of(&mut self, index: u64) -> Nanos {
        let frame = index as f64 * self.in_rate as f64 / self.out_rate as f64;
        while self.anchors.len() > 1 && self.anchors[1].frame as f64 <= frame {
            self.anchors.pop_front();
        }
        let t = match self.anchors.front() {
            Some(a) => {
                a.t_ns
                    + Nanos::from_nanos(
                        ((frame - a.frame as f64) * 1e9 / self.in_rate as f64) as i64,
                    )
            }
            None => Nanos::from_nanos((frame * 1e9 / self.in_rate as f64) as i64),
        };
        let t = match self.last_t {
            Some(last) if t <= last => last + Nanos::from_nanos(1),
            _ => t,
        };
        self.last_t = Some(t);
        t
    }

    /// Takes interleaved frames; appends finished chunks (at most 20 ms each) to `out`.
    fn push(
        &mut self,
        interleaved: &[f32],
        out: &mut Vec<AudioChunk>,
    ) -> std::result::Result<(), String> {
        let scale = 1.0 / self.channels as f32;
        self.pending.extend(
            interleaved
                .chunks_exact(self.channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
        let mut mono_out: Vec<f32> = Vec::new();
        match self.resampler.as_mut() {
            None => mono_out.append(&mut self.pending),
            Some(r) => {
                let mut used = 0;
                while self.pending.len() - used >= r.input_frames_next() {
                    let need = r.input_frames_next();
                    let (consumed, written) = r
                        .process_into_buffer(
                            &[&self.pending[used..used + need]],
                            &mut [&mut self.resampled[..]],
                            None,
                        )
                        .map_err(|e| e.to_string())?;
                    used += consumed;
                    let drop_now = self.skip.min(written);
                    self.skip -= drop_now;
                    mono_out.extend_from_slice(&self.resampled[drop_now..written]);
                }
                self.pending.drain(..used);
            }
        }
        let max_chunk = (self.out_rate * MAX_CHUNK_MS / 1000).max(1) as usize;
        for piece in mono_out.chunks(max_chunk) {
            let t_ns = self.time_of(self.emitted);
            self.emitted += piece.len() as u64;
            out.push(AudioChunk {
                t_ns,
                rate: self.out_rate,
                samples: piece.to_vec(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, frames: usize, channels: usize, start: usize) -> Vec<f32> {
        (start..start + frames)
            .flat_map(|i| {
                let v =
                    (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin() as f32 * 0.5;
                std::iter::repeat_n(v, channels)
            })
            .collect()
    }

    fn crossings_hz(x: &[f32], rate: u32) -> f64 {
        let c = x
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        c as f64 / 2.0 / (x.len() as f64 / rate as f64)
    }

    /// 48 kHz stereo in 441-frame callbacks (odd size on purpose), anchored from 1 s; 16 kHz
    /// mono out. 937 Hz: the resampler delay is not a whole number of its periods.
    #[test]
    fn converter_resamples_downmixes_and_stamps() {
        let mut c = Converter::new(2, 48_000, 16_000).expect("converter");
        let mut chunks = Vec::new();
        let mut frame = 0usize;
        while frame < 48_000 * 2 {
            c.add_anchor(Anchor {
                frame: frame as u64,
                t_ns: Nanos::SECOND + Nanos::from_count(frame as i64, 48_000),
            });
            c.push(&sine(48_000, 937.0, 441, 2, frame), &mut chunks)
                .expect("push");
            frame += 441;
        }
        let total: usize = chunks.iter().map(|c| c.samples.len()).sum();
        // All input except what is still inside the resampler (< one block + delay).
        assert!(
            (31_500..=32_100).contains(&total),
            "{total} samples from 2 s"
        );
        assert!(chunks
            .iter()
            .all(|c| c.samples.len() <= 320 && c.rate == 16_000));
        let mut expected = Nanos::SECOND;
        for ch in &chunks {
            assert!(
                (ch.t_ns - expected).abs() < Nanos::from_nanos(100_000),
                "chunk at {} expected {expected}",
                ch.t_ns
            );
            expected = ch.t_ns + Nanos::from_count(ch.samples.len() as i64, 16_000);
        }
        let all: Vec<f32> = chunks
            .iter()
            .flat_map(|c| c.samples.iter().copied())
            .collect();
        let hz = crossings_hz(&all[800..], 16_000);
        assert!((hz - 937.0).abs() < 2.0, "{hz} Hz");
        // Delay compensated: sample k is the input at time k/16000 (a sine at phase 0).
        for (k, v) in all.iter().enumerate().skip(400).take(2000) {
            let want =
                (2.0 * std::f64::consts::PI * 937.0 * k as f64 / 16_000.0).sin() as f32 * 0.5;
            assert!((v - want).abs() < 0.02, "sample {k}: {v} vs {want}");
        }
    }

    #[test]
    fn converter_rejects_aliasing_above_the_new_nyquist() {
        // 12 kHz at 48 kHz must not fold back into 4 kHz at 16 kHz (nearest-sample would).
        let mut c = Converter::new(1, 48_000, 16_000).expect("converter");
        let mut chunks = Vec::new();
        c.push(&sine(48_000, 12_000.0, 48_000, 1, 0), &mut chunks)
            .expect("push");
        let all: Vec<f32> = chunks
            .iter()
            .flat_map(|c| c.samples.iter().copied())
            .collect();
        let rms =
            (all[1000..].iter().map(|v| v * v).sum::<f32>() / (all.len() - 1000) as f32).sqrt();
        assert!(rms < 0.01, "aliased energy rms {rms}");
    }

    #[test]
    fn converter_passes_through_at_equal_rates_and_keeps_time_monotonic() {
        let mut c = Converter::new(1, 16_000, 16_000).expect("converter");
        let mut chunks = Vec::new();
        // Anchors that jitter backwards must not make chunk times go backwards.
        c.add_anchor(Anchor {
            frame: 0,
            t_ns: Nanos::from_nanos(500),
        });
        c.push(&[0.25; 160], &mut chunks).expect("push");
        c.add_anchor(Anchor {
            frame: 160,
            t_ns: Nanos::from_nanos(300),
        });
        c.push(&[0.25; 700], &mut chunks).expect("push");
        let total: usize = chunks.iter().map(|c| c.samples.len()).sum();
        assert_eq!(total, 860);
        assert!(chunks.iter().all(|c| c.samples.iter().all(|&v| v == 0.25)));
        assert!(chunks.windows(2).all(|w| w[1].t_ns > w[0].t_ns));
        assert_eq!(chunks[0].t_ns, Nanos::from_nanos(500));
    }
}
