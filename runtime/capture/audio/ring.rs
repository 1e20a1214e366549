//! The real-time side: the cpal data callback copies the device's samples (as f32) into
//! a pre-sized SPSC ring with one capture-time anchor per callback. No allocation, no
//! lock, no logging there.

use super::Anchor;
use crate::capture::CaptureStats;
use crate::clock::{Nanos, Timeline};
use crate::{err, Result};
use cpal::traits::DeviceTrait;
use ringbuf::traits::{Observer, Producer};
use ringbuf::HeapProd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The real-time half: everything the cpal data callback touches, allocated up front.
pub(super) struct RingWriter {
    pub(super) samples: HeapProd<f32>,
    pub(super) anchors: HeapProd<Anchor>,
    pub(super) channels: usize,
    pub(super) frames_written: u64,
    pub(super) timeline: Timeline,
    pub(super) stats: Arc<CaptureStats>,
    pub(super) stop: Arc<AtomicBool>,
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

pub(super) fn build_stream(
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
