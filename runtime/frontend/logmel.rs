//! Kaldi-style log-mel filterbank (`torchaudio.compliance.kaldi.fbank` conventions, as used
//! by AST/MOV), streaming: samples go in as they arrive, one feature frame comes out per hop.

use std::fmt;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Floor applied before the logarithm: `f32::EPSILON`, as Kaldi and torchaudio use.
const LOG_FLOOR: f64 = f32::EPSILON as f64;

/// Largest frame (in samples) accepted; anything bigger is a unit mistake in the config.
const MAX_FRAME_SAMPLES: usize = 1 << 20;

/// Largest number of mel bins accepted; anything bigger is a mistake in the config.
const MAX_MEL_BINS: usize = 1 << 16;

/// Window applied to each frame before the FFT (torchaudio's `window_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowType {
    /// `0.54 - 0.46 cos(2 pi n / (N - 1))` (symmetric).
    Hamming,
    /// `0.5 - 0.5 cos(2 pi n / (N - 1))` (symmetric); what AST uses.
    Hanning,
    /// Hanning raised to the power 0.85 (Kaldi's default).
    Povey,
    /// All ones.
    Rectangular,
    /// Kaldi's Blackman with coefficient 0.42.
    Blackman,
}

/// Parameters of the filterbank, named as in a model manifest. Every field has
/// torchaudio's `kaldi.fbank` meaning and default; `dither` is always 0 (features must be
/// reproducible), `snip_edges` always true (a stream has no end to reflect), and VTLN and
/// `subtract_mean` (a whole-utterance statistic) are not offered.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FbankConfig {
    /// Sample rate of the input in Hz (`sample_frequency`). Default 16000.
    pub sample_rate: u32,
    /// Frame length in milliseconds (`frame_length`). Default 25.
    pub frame_length_ms: f32,
    /// Hop between frames in milliseconds (`frame_shift`). Default 10.
    pub frame_shift_ms: f32,
    /// Number of triangular mel bins (`num_mel_bins`). Default 128.
    pub num_mel_bins: usize,
    /// Window function (`window_type`). Default `hamming`.
    pub window: WindowType,
    /// Pre-emphasis coefficient in [0, 1] (`preemphasis_coefficient`). Default 0.97.
    pub preemphasis: f32,
    /// Subtract each frame's mean before pre-emphasis (`remove_dc_offset`). Default true.
    pub remove_dc_offset: bool,
    /// Lowest frequency of the mel bins in Hz (`low_freq`). Default 20.
    pub low_freq: f32,
    /// Highest frequency in Hz; zero or negative means an offset below Nyquist
    /// (`high_freq`). Default 0 (Nyquist).
    pub high_freq: f32,
    /// Zero-pad each frame to the next power of two before the FFT
    /// (`round_to_power_of_two`). Default true.
    pub round_to_power_of_two: bool,
    /// Add the frame's log energy as an extra feature (`use_energy`). Default false.
    pub use_energy: bool,
    /// Floor on the log energy, as an absolute energy; 0 means none (`energy_floor`).
    /// Default 1.0.
    pub energy_floor: f32,
    /// Measure the energy before pre-emphasis and windowing (`raw_energy`), else after.
    /// Default true.
    pub raw_energy: bool,
    /// Put the energy last instead of first (`htk_compat`); only matters with
    /// `use_energy`. Default false.
    pub htk_compat: bool,
    /// Natural log of the mel energies, floored at `f32::EPSILON` (`use_log_fbank`); false
    /// gives the linear energies. Default true.
    pub use_log_fbank: bool,
    /// Power spectrum (`use_power`); false uses the magnitude. Default true.
    pub use_power: bool,
}

impl Default for FbankConfig {
    fn default() -> Self {
        FbankConfig {
            sample_rate: 16000,
            frame_length_ms: 25.0,
            frame_shift_ms: 10.0,
            num_mel_bins: 128,
            window: WindowType::Hamming,
            preemphasis: 0.97,
            remove_dc_offset: true,
            low_freq: 20.0,
            high_freq: 0.0,
            round_to_power_of_two: true,
            use_energy: false,
            energy_floor: 1.0,
            raw_energy: true,
            htk_compat: false,
            use_log_fbank: true,
            use_power: true,
        }
    }
}

/// Sizes derived from a valid [`FbankConfig`].
struct FbankGeometry {
    frame_len: usize,
    frame_shift: usize,
    fft_len: usize,
    low_freq: f64,
    high_freq: f64,
}

/// The decimal value a user wrote for an `f32` field, as the `f64` Python would hold
/// (shortest round-trip representation), so that sizes truncate exactly as torchaudio's.
fn as_written(value: f32) -> f64 {
    format!("{value}")
        .parse::<f64>()
        .unwrap_or(f64::from(value))
}

/// `int(sample_frequency * ms * 0.001)` as torchaudio computes it (f64, truncation).
fn samples_in_ms(sample_rate: u32, ms: f32) -> f64 {
    (f64::from(sample_rate) * as_written(ms) * 0.001).trunc()
}

impl FbankConfig {
    /// Values in each output frame: `num_mel_bins`, plus one with `use_energy`.
    pub fn num_features(&self) -> usize {
        self.num_mel_bins + usize::from(self.use_energy)
    }

    /// Checks every field and says which one is wrong and why.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) naming the first invalid field and its valid
    /// range.
    pub fn validate(&self) -> crate::Result<()> {
        self.geometry().map(|_| ())
    }

    fn geometry(&self) -> crate::Result<FbankGeometry> {
        if self.sample_rate == 0 {
            return Err(crate::err!(
                Config,
                "fbank config: `sample_rate` must be > 0 Hz"
            ));
        }
        if !(self.frame_length_ms.is_finite() && self.frame_length_ms > 0.0) {
            return Err(crate::err!(
                Config,
                "fbank config: `frame_length_ms` = {} must be a finite number > 0",
                self.frame_length_ms
            ));
        }
        if !(self.frame_shift_ms.is_finite() && self.frame_shift_ms > 0.0) {
            return Err(crate::err!(
                Config,
                "fbank config: `frame_shift_ms` = {} must be a finite number > 0",
                self.frame_shift_ms
            ));
        }
        let frame_len = samples_in_ms(self.sample_rate, self.frame_length_ms);
        if !(2.0..=MAX_FRAME_SAMPLES as f64).contains(&frame_len) {
            return Err(crate::err!(
                Config,
                "fbank config: `frame_length_ms` = {} gives {} samples per frame at {} Hz; \
                 expected between 2 and {MAX_FRAME_SAMPLES}",
                self.frame_length_ms,
                frame_len,
                self.sample_rate
            ));
        }
        let frame_shift = samples_in_ms(self.sample_rate, self.frame_shift_ms);
        if !(1.0..=MAX_FRAME_SAMPLES as f64).contains(&frame_shift) {
            return Err(crate::err!(
                Config,
                "fbank config: `frame_shift_ms` = {} gives {} samples per hop at {} Hz; \
                 expected between 1 and {MAX_FRAME_SAMPLES}",
                self.frame_shift_ms,
                frame_shift,
                self.sample_rate
            ));
        }
        let (frame_len, frame_shift) = (frame_len as usize, frame_shift as usize);
        let fft_len = if self.round_to_power_of_two {
            frame_len.next_power_of_two()
        } else {
            frame_len
        };
        if fft_len % 2 != 0 {
            return Err(crate::err!(
                Config,
                "fbank config: `frame_length_ms` = {} gives an odd frame of {} samples and \
                 `round_to_power_of_two` is false; the FFT length must be even",
                self.frame_length_ms,
                frame_len
            ));
        }
        if !(4..=MAX_MEL_BINS).contains(&self.num_mel_bins) {
            return Err(crate::err!(
                Config,
                "fbank config: `num_mel_bins` = {} must be between 4 and {MAX_MEL_BINS}",
                self.num_mel_bins
            ));
        }
        if !(0.0..=1.0).contains(&self.preemphasis) {
            return Err(crate::err!(
                Config,
                "fbank config: `preemphasis` = {} must be in [0, 1]",
                self.preemphasis
            ));
        }
        if !(self.energy_floor.is_finite() && self.energy_floor >= 0.0) {
            return Err(crate::err!(
                Config,
                "fbank config: `energy_floor` = {} must be a finite number >= 0",
                self.energy_floor
            ));
        }
        let nyquist = 0.5 * f64::from(self.sample_rate);
        let low_freq = as_written(self.low_freq);
        let mut high_freq = as_written(self.high_freq);
        if high_freq <= 0.0 {
            high_freq += nyquist;
        }
        if !(low_freq.is_finite() && (0.0..nyquist).contains(&low_freq)) {
            return Err(crate::err!(
                Config,
                "fbank config: `low_freq` = {} Hz must be in [0, {nyquist}) (Nyquist at {} Hz)",
                self.low_freq,
                self.sample_rate
            ));
        }
        if !(high_freq.is_finite() && high_freq > 0.0 && high_freq <= nyquist) {
            return Err(crate::err!(
                Config,
                "fbank config: `high_freq` = {} Hz gives {high_freq} Hz, outside (0, {nyquist}] \
                 (values <= 0 are offsets below Nyquist)",
                self.high_freq
            ));
        }
        if low_freq >= high_freq {
            return Err(crate::err!(
                Config,
                "fbank config: `low_freq` = {low_freq} Hz must be below `high_freq` = {high_freq} Hz"
            ));
        }
        Ok(FbankGeometry {
            frame_len,
            frame_shift,
            fft_len,
            low_freq,
            high_freq,
        })
    }
}

/// Kaldi's mel scale, `1127 ln(1 + f / 700)`, in f64 (torchaudio's `mel_scale_scalar`).
fn mel_of_hz(hz: f64) -> f64 {
    1127.0 * (1.0 + hz / 700.0).ln()
}

/// The window function of `len` samples, as torchaudio builds it.
fn window_function(kind: WindowType, len: usize) -> Vec<f64> {
    let step = 2.0 * std::f64::consts::PI / (len - 1) as f64;
    (0..len)
        .map(|n| {
            let phase = step * n as f64;
            let hann = 0.5 - 0.5 * phase.cos();
            match kind {
                WindowType::Hamming => 0.54 - 0.46 * phase.cos(),
                WindowType::Hanning => hann,
                WindowType::Povey => hann.powf(0.85),
                WindowType::Rectangular => 1.0,
                WindowType::Blackman => 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos(),
            }
        })
        .collect()
}

/// Triangular mel filters over the FFT bins `0..fft_len/2` (the Nyquist bin gets no
/// weight), stored sparsely: for mel bin `b`, weights `weights[offsets[b]..offsets[b+1]]`
/// apply to FFT bins starting at `first[b]`.
///
/// The arithmetic follows torchaudio's `get_mel_banks` step by step in f32 (it builds
/// the bank from float32 tensors), so that FFT bins lying on a triangle's edge get the
/// same zero or non-zero weight as in training.
#[derive(Clone)]
struct MelFilters {
    first: Vec<usize>,
    offsets: Vec<usize>,
    weights: Vec<f32>,
}

impl MelFilters {
    fn new(
        num_bins: usize,
        fft_len: usize,
        sample_rate: u32,
        low_freq: f64,
        high_freq: f64,
    ) -> Self {
        let mel_low = mel_of_hz(low_freq);
        let mel_high = mel_of_hz(high_freq);
        let mel_delta = ((mel_high - mel_low) / (num_bins + 1) as f64) as f32;
        let mel_low = mel_low as f32;
        let bin_width = (f64::from(sample_rate) / fft_len as f64) as f32;
        let fft_mels: Vec<f32> = (0..fft_len / 2)
            .map(|k| 1127.0f32 * (1.0f32 + (bin_width * k as f32) / 700.0f32).ln())
            .collect();

        let mut first = Vec::with_capacity(num_bins);
        let mut offsets = Vec::with_capacity(num_bins + 1);
        let mut weights = Vec::new();
        offsets.push(0);
        for bin in 0..num_bins {
            let left = mel_low + bin as f32 * mel_delta;
            let center = mel_low + (bin as f32 + 1.0) * mel_delta;
            let right = mel_low + (bin as f32 + 2.0) * mel_delta;
            let weight_at = |mel: f32| {
                let up = (mel - left) / (center - left);
                let down = (right - mel) / (right - center);
                up.min(down).max(0.0)
            };
            let nonzero: Vec<usize> = (0..fft_mels.len())
                .filter(|&k| weight_at(fft_mels[k]) > 0.0)
                .collect();
            match (nonzero.first(), nonzero.last()) {
                (Some(&lo), Some(&hi)) => {
                    first.push(lo);
                    weights.extend((lo..=hi).map(|k| weight_at(fft_mels[k])));
                }
                _ => first.push(0),
            }
            offsets.push(weights.len());
        }
        MelFilters {
            first,
            offsets,
            weights,
        }
    }

    /// The weights of mel bin `bin` and the FFT bin the first one applies to.
    fn bin(&self, bin: usize) -> (usize, &[f32]) {
        (
            self.first[bin],
            &self.weights[self.offsets[bin]..self.offsets[bin + 1]],
        )
    }
}

/// Streaming log-mel filterbank: feed samples with [`LogMel::push`], get one frame of
/// `num_bins()` log energies per hop. Frame `k` covers samples
/// `[k * frame_shift, k * frame_shift + frame_len)` of everything pushed since
/// construction or [`LogMel::reset`] (torchaudio's `snip_edges=True`).
///
/// All buffers and the FFT plan are made in [`LogMel::new`]; `push` does not allocate.
/// Each frame is processed in f64 (mean, pre-emphasis, window, FFT, mel sums) and
/// rounded to f32 at the end, so the result sits at the exact value that torchaudio's
/// float32 pipeline approximates (its own rounding moves near-silent bins by < 1e-3).
#[derive(Clone)]
pub struct LogMel {
    frame_len: usize,
    frame_shift: usize,
    preemphasis: f64,
    remove_dc_offset: bool,
    /// `Some((raw, log floor))` when the frame's log energy is an output.
    energy: Option<(bool, f64)>,
    /// Where the energy goes in the output: 0 or `num_mel_bins`.
    energy_index: usize,
    /// Offset of the first mel value in the output (1 with energy first, else 0).
    mel_offset: usize,
    use_log_fbank: bool,
    use_power: bool,
    window: Vec<f64>,
    filters: MelFilters,
    fft: Arc<dyn RealToComplex<f64>>,
    fft_input: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    fft_scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
    log_mel: Vec<f32>,
    /// The last `frame_len` samples, oldest at `ring_write`.
    ring: Vec<f32>,
    ring_write: usize,
    samples_until_frame: usize,
}

impl fmt::Debug for LogMel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogMel")
            .field("num_bins", &self.num_bins())
            .field("frame_len", &self.frame_len)
            .field("frame_shift", &self.frame_shift)
            .field("fft_len", &self.fft.len())
            .field("samples_until_frame", &self.samples_until_frame)
            .finish_non_exhaustive()
    }
}

impl LogMel {
    /// Validates `cfg`, plans the FFT and precomputes the window and mel filters.
    ///
    /// # Errors
    /// As [`FbankConfig::validate`].
    pub fn new(cfg: &FbankConfig) -> crate::Result<Self> {
        let geometry = cfg.geometry()?;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(geometry.fft_len);
        let filters = MelFilters::new(
            cfg.num_mel_bins,
            geometry.fft_len,
            cfg.sample_rate,
            geometry.low_freq,
            geometry.high_freq,
        );
        Ok(LogMel {
            frame_len: geometry.frame_len,
            frame_shift: geometry.frame_shift,
            preemphasis: f64::from(cfg.preemphasis),
            remove_dc_offset: cfg.remove_dc_offset,
            energy: cfg.use_energy.then(|| {
                let floor = if cfg.energy_floor > 0.0 {
                    f64::from(cfg.energy_floor).ln()
                } else {
                    f64::NEG_INFINITY
                };
                (cfg.raw_energy, floor)
            }),
            energy_index: if cfg.htk_compat { cfg.num_mel_bins } else { 0 },
            mel_offset: usize::from(cfg.use_energy && !cfg.htk_compat),
            use_log_fbank: cfg.use_log_fbank,
            use_power: cfg.use_power,
            window: window_function(cfg.window, geometry.frame_len),
            filters,
            fft_input: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            fft_scratch: fft.make_scratch_vec(),
            power: vec![0.0; geometry.fft_len / 2 + 1],
            log_mel: vec![0.0; cfg.num_features()],
            ring: vec![0.0; geometry.frame_len],
            ring_write: 0,
            samples_until_frame: geometry.frame_len,
            fft,
        })
    }

    /// Number of values in each output frame (mel bins, plus the energy if configured).
    pub fn num_bins(&self) -> usize {
        self.log_mel.len()
    }

    /// Samples per frame.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Samples between the starts of consecutive frames.
    pub fn frame_shift(&self) -> usize {
        self.frame_shift
    }

    /// Number of frames `num_samples` samples give from a fresh start (0 if fewer than
    /// one frame).
    pub fn frames_in(&self, num_samples: usize) -> usize {
        if num_samples < self.frame_len {
            0
        } else {
            1 + (num_samples - self.frame_len) / self.frame_shift
        }
    }

    /// Feeds `samples` (mono, in [-1, 1], at the configured rate) and calls `on_frame`
    /// with the `num_bins()` features (log-mel energies, and the log energy if configured) of each frame they complete, in order.
    /// Each sample is copied once into a ring of one frame; each frame is computed
    /// once, when its last sample arrives.
    ///
    /// Non-finite samples (NaN, +-inf) are never turned into silence: every frame that
    /// contains one comes out as all NaN features (see [`LogMel::is_invalid_frame`]), so
    /// that whoever reads the frames can flag and skip them. Returns how many of `samples`
    /// were non-finite (0 for clean audio). Samples beyond [-1, 1] but finite are
    /// processed as they are. Allocation-free.
    pub fn push(&mut self, mut samples: &[f32], on_frame: &mut dyn FnMut(&[f32])) -> usize {
        let invalid = samples.iter().filter(|x| !x.is_finite()).count();
        while !samples.is_empty() {
            let take = samples.len().min(self.samples_until_frame);
            let (now, rest) = samples.split_at(take);
            self.write_ring(now);
            samples = rest;
            self.samples_until_frame -= take;
            if self.samples_until_frame == 0 {
                self.compute_frame();
                on_frame(&self.log_mel);
                self.samples_until_frame = self.frame_shift;
            }
        }
        invalid
    }

    /// Whether `frame` (as [`LogMel::push`] hands it out) was computed from audio with a
    /// non-finite sample: such frames are all NaN.
    pub fn is_invalid_frame(frame: &[f32]) -> bool {
        frame.first().is_some_and(|x| x.is_nan())
    }

    /// Forgets every sample pushed so far; the next frame starts at the next sample.
    pub fn reset(&mut self) {
        self.ring.fill(0.0);
        self.ring_write = 0;
        self.samples_until_frame = self.frame_len;
    }

    /// Appends samples to the ring, keeping only the last `frame_len`.
    fn write_ring(&mut self, samples: &[f32]) {
        let len = self.ring.len();
        let samples = &samples[samples.len().saturating_sub(len)..];
        let to_end = (len - self.ring_write).min(samples.len());
        let (head, tail) = samples.split_at(to_end);
        self.ring[self.ring_write..self.ring_write + to_end].copy_from_slice(head);
        self.ring[..tail.len()].copy_from_slice(tail);
        self.ring_write = (self.ring_write + samples.len()) % len;
    }

    /// Computes the log-mel energies of the frame held in the ring into `self.log_mel`.
    fn compute_frame(&mut self) {
        let len = self.frame_len;
        let oldest = self.ring_write;
        let frame = &mut self.fft_input[..len];
        let chronological = self.ring[oldest..].iter().chain(&self.ring[..oldest]);
        frame
            .iter_mut()
            .zip(chronological)
            .for_each(|(x, &sample)| *x = f64::from(sample));
        if frame.iter().any(|x| !x.is_finite()) {
            // A non-finite sample: the frame is invalid, not silent (see `push`).
            self.log_mel.fill(f32::NAN);
            return;
        }

        if self.remove_dc_offset {
            let mean = frame.iter().sum::<f64>() / len as f64;
            frame.iter_mut().for_each(|x| *x -= mean);
        }
        let mut log_energy = 0.0;
        if let Some((true, floor)) = self.energy {
            log_energy = log_energy_of(frame, floor);
        }
        let p = self.preemphasis;
        if p != 0.0 {
            for j in (1..len).rev() {
                frame[j] -= p * frame[j - 1];
            }
            frame[0] -= p * frame[0];
        }
        frame
            .iter_mut()
            .zip(&self.window)
            .for_each(|(x, w)| *x *= w);
        if let Some((false, floor)) = self.energy {
            log_energy = log_energy_of(frame, floor);
        }
        // The FFT uses its input as scratch, so the zero padding is rewritten every frame.
        self.fft_input[len..].fill(0.0);

        let fft_ok = self
            .fft
            .process_with_scratch(
                &mut self.fft_input,
                &mut self.spectrum,
                &mut self.fft_scratch,
            )
            .is_ok();
        if !fft_ok {
            // Unreachable: every buffer was sized by the plan itself in `new`.
            log::error!("log-mel: FFT rejected its buffers; emitting a silent frame");
            self.log_mel.fill(LOG_FLOOR.ln() as f32);
            return;
        }
        let spectrum = self.power.iter_mut().zip(&self.spectrum);
        if self.use_power {
            spectrum.for_each(|(p, c)| *p = c.re * c.re + c.im * c.im);
        } else {
            spectrum.for_each(|(p, c)| *p = (c.re * c.re + c.im * c.im).sqrt());
        }

        let num_mel = self.filters.first.len();
        let mel_out = &mut self.log_mel[self.mel_offset..self.mel_offset + num_mel];
        for (bin, out) in mel_out.iter_mut().enumerate() {
            let (first, weights) = self.filters.bin(bin);
            let energy: f64 = weights
                .iter()
                .zip(&self.power[first..])
                .map(|(&w, p)| f64::from(w) * p)
                .sum();
            *out = if self.use_log_fbank {
                energy.max(LOG_FLOOR).ln() as f32
            } else {
                energy as f32
            };
        }
        if self.energy.is_some() {
            self.log_mel[self.energy_index] = log_energy as f32;
        }
    }
}

/// `ln(max(sum of squares, f32::EPSILON))`, then at least `log_floor` (torchaudio's
/// `_get_log_energy`).
fn log_energy_of(frame: &[f64], log_floor: f64) -> f64 {
    let sum: f64 = frame.iter().map(|x| x * x).sum();
    sum.max(LOG_FLOOR).ln().max(log_floor)
}

/// Log-mel features of a whole clip, one `Vec` of `num_features()` values per frame (the same
/// code path as streaming through [`LogMel::push`]). A clip shorter than one frame
/// gives no frames (torchaudio raises an error instead). Frames containing a non-finite
/// sample are all NaN, as with [`LogMel::push`].
///
/// # Errors
/// As [`FbankConfig::validate`].
pub fn fbank(samples: &[f32], cfg: &FbankConfig) -> crate::Result<Vec<Vec<f32>>> {
    let mut log_mel = LogMel::new(cfg)?;
    let mut frames = Vec::with_capacity(log_mel.frames_in(samples.len()));
    log_mel.push(samples, &mut |frame| frames.push(frame.to_vec()));
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let cfg: FbankConfig = serde_json::from_str("{}").expect("empty config");
        assert_eq!(cfg, FbankConfig::default());
        let log_mel = LogMel::new(&cfg).expect("default config is valid");
        assert_eq!(
            (
                log_mel.num_bins(),
                log_mel.frame_len(),
                log_mel.frame_shift()
            ),
            (128, 400, 160)
        );
        assert_eq!(log_mel.fft.len(), 512);
    }

    #[test]
    fn sizes_truncate_like_torchaudio() {
        let cfg = FbankConfig {
            sample_rate: 22050,
            frame_shift_ms: 12.3,
            ..FbankConfig::default()
        };
        let log_mel = LogMel::new(&cfg).expect("valid");
        // int(22050 * 25.0 * 0.001) = 551, int(22050 * 12.3 * 0.001) = 271.
        assert_eq!(log_mel.frame_len(), 551, "{log_mel:?}");
        assert_eq!(log_mel.frame_shift(), 271);
        assert_eq!(log_mel.fft.len(), 1024);
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let cases: Vec<(FbankConfig, &str)> = vec![
            (
                FbankConfig {
                    sample_rate: 0,
                    ..FbankConfig::default()
                },
                "sample_rate",
            ),
            (
                FbankConfig {
                    frame_length_ms: 0.1,
                    ..FbankConfig::default()
                },
                "frame_length_ms",
            ),
            (
                FbankConfig {
                    frame_shift_ms: f32::NAN,
                    ..FbankConfig::default()
                },
                "frame_shift_ms",
            ),
            (
                FbankConfig {
                    num_mel_bins: 3,
                    ..FbankConfig::default()
                },
                "num_mel_bins",
            ),
            (
                FbankConfig {
                    preemphasis: 1.5,
                    ..FbankConfig::default()
                },
                "preemphasis",
            ),
            (
                FbankConfig {
                    low_freq: 9000.0,
                    ..FbankConfig::default()
                },
                "low_freq",
            ),
            (
                FbankConfig {
                    high_freq: 9000.0,
                    ..FbankConfig::default()
                },
                "high_freq",
            ),
            (
                FbankConfig {
                    high_freq: -8000.0,
                    ..FbankConfig::default()
                },
                "high_freq",
            ),
            (
                FbankConfig {
                    low_freq: 4000.0,
                    high_freq: 3000.0,
                    ..FbankConfig::default()
                },
                "low_freq",
            ),
            (
                FbankConfig {
                    sample_rate: 22050,
                    round_to_power_of_two: false,
                    ..FbankConfig::default()
                },
                "round_to_power_of_two",
            ),
        ];
        for (cfg, field) in cases {
            let error = LogMel::new(&cfg).expect_err(field);
            assert_eq!(error.kind(), crate::ErrorKind::Config);
            assert!(error.message().contains(field), "{field}: {error}");
        }
    }

    #[test]
    fn serde_rejects_unknown_keys_and_reads_window_names() {
        let cfg: FbankConfig =
            toml::from_str("window = \"hanning\"\nnum_mel_bins = 64").expect("valid toml");
        assert_eq!(cfg.window, WindowType::Hanning);
        assert_eq!(cfg.num_mel_bins, 64);
        assert!(toml::from_str::<FbankConfig>("dither = 1.0").is_err());
        let with_energy: FbankConfig =
            toml::from_str("use_energy = true\nhtk_compat = true").expect("valid toml");
        assert_eq!(with_energy.num_features(), 129);
        let log_mel = LogMel::new(&with_energy).expect("valid");
        assert_eq!((log_mel.num_bins(), log_mel.energy_index), (129, 128));
        assert!(toml::from_str::<FbankConfig>("window = \"kaiser\"").is_err());
    }

    #[test]
    fn windows_have_the_kaldi_shapes() {
        let hann = window_function(WindowType::Hanning, 5);
        let expected = [0.0, 0.5, 1.0, 0.5, 0.0];
        assert!(hann
            .iter()
            .zip(expected)
            .all(|(w, e)| (w - e).abs() < 1e-12));
        let hamming = window_function(WindowType::Hamming, 5);
        assert!((hamming[0] - 0.08).abs() < 1e-6 && (hamming[2] - 1.0).abs() < 1e-6);
        let povey = window_function(WindowType::Povey, 5);
        assert!((povey[1] - 0.5f64.powf(0.85)).abs() < 1e-6);
        let blackman = window_function(WindowType::Blackman, 5);
        assert!(blackman[0].abs() < 1e-6 && (blackman[2] - 1.0).abs() < 1e-6);
        assert_eq!(window_function(WindowType::Rectangular, 3), vec![1.0; 3]);
    }

    #[test]
    fn a_pure_tone_peaks_in_the_mel_bin_around_its_frequency() {
        let cfg = FbankConfig::default();
        let tone: Vec<f32> = (0..16000)
            .map(|n| (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 16000.0).sin() * 0.5)
            .collect();
        let frames = fbank(&tone, &cfg).expect("valid");
        assert_eq!(frames.len(), 98);
        let mel_1k = mel_of_hz(1000.0);
        let (lo, hi) = (mel_of_hz(20.0), mel_of_hz(8000.0));
        let expected = ((mel_1k - lo) / ((hi - lo) / 129.0) - 1.0).round() as usize;
        for frame in &frames {
            let peak = (0..frame.len())
                .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
                .expect("bins");
            assert!(peak.abs_diff(expected) <= 1, "peak {peak} vs {expected}");
        }
    }

    /// The sparse filters against torchaudio's `get_mel_banks` for the golden configs.
    #[test]
    fn mel_filters_match_torchaudio() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/logmel");
        let index = std::fs::read_to_string(dir.join("melbanks.json")).expect("melbanks.json");
        let cases: Vec<serde_json::Value> = serde_json::from_str(&index).expect("json");
        assert!(!cases.is_empty());
        for case in cases {
            let cfg: FbankConfig = serde_json::from_value(case["config"].clone()).expect("config");
            let bytes =
                std::fs::read(dir.join(case["file"].as_str().expect("file"))).expect("bank file");
            let golden: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let log_mel = LogMel::new(&cfg).expect("valid");
            let num_fft = log_mel.fft.len() / 2;
            assert_eq!(golden.len(), cfg.num_mel_bins * num_fft);
            let mut worst = 0.0f32;
            for bin in 0..cfg.num_mel_bins {
                let (first, weights) = log_mel.filters.bin(bin);
                for k in 0..num_fft {
                    let ours = if k >= first && k < first + weights.len() {
                        weights[k - first]
                    } else {
                        0.0
                    };
                    let theirs = golden[bin * num_fft + k];
                    assert_eq!(ours == 0.0, theirs == 0.0, "{cfg:?} bin {bin} fft {k}");
                    worst = worst.max((ours - theirs).abs());
                }
            }
            // torch takes the log of the FFT-bin frequencies with a SIMD log that is off by
            // one ulp in ~10% of bins; that moves a weight by at most ~2e-5.
            assert!(worst <= 5e-5, "{cfg:?}: weights differ by {worst}");
        }
    }
}
