//! Downmix, resample and timestamp: interleaved device frames in, stamped mono chunks
//! out. Pure computation (no device), so it is tested on its own.

use super::{Anchor, ANCHOR_CAPACITY, MAX_CHUNK_MS, RESAMPLER_BLOCK_MS};
use crate::clock::{AudioChunk, Nanos};
use rubato::Resampler;
use std::collections::VecDeque;

/// Downmix, resample and timestamp: interleaved device frames in, stamped mono chunks out.
/// Pure computation (no device), so it is tested on its own.
pub(super) struct Converter {
    pub(super) channels: usize,
    pub(super) in_rate: u32,
    pub(super) out_rate: u32,
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
    pub(super) fn new(
        channels: usize,
        in_rate: u32,
        out_rate: u32,
    ) -> std::result::Result<Converter, String> {
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

    pub(super) fn add_anchor(&mut self, anchor: Anchor) {
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
    pub(super) fn push(
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
