//! Renders the audio of a synthetic scene: ambient noise plus whooshes, clicks,
//! thuds and (compositional task) screams and crowd babble. Every sample is a closed-form function of its index (stateless hashes and
//! exact integer phases), so any block can be rendered alone with identical results.

use super::detmath::{cos, exp, sin};
use super::plan::{Plan, Sound, Voice, MAX_SOUND_S, SINE_TABLE_BITS};
use super::rng::hash_signed;
use super::SceneConfig;
use std::f64::consts::{PI, TAU};

/// Samples per lattice step of the two smooth ambient noise layers.
const AMBIENT_STEP_FINE: u64 = 8;
const AMBIENT_STEP_COARSE: u64 = 96;

/// Fills `out` with the samples from `start` on; samples at or past `total` are 0.
pub(crate) fn render(plan: &Plan, cfg: &SceneConfig, total: u64, start: u64, out: &mut [f32]) {
    let rate = f64::from(cfg.audio_rate);
    add_ambient(plan, rate, total, start, out);
    let end = start.saturating_add(out.len() as u64).min(total);
    let longest = (MAX_SOUND_S * rate).ceil() as u64;
    let first = plan
        .sounds
        .partition_point(|sound| sound.start_sample.saturating_add(longest) <= start);
    for sound in &plan.sounds[first..] {
        if sound.start_sample >= end {
            break;
        }
        let sound_end = sound.start_sample + sound.len_samples;
        let from = sound.start_sample.max(start);
        let to = sound_end.min(end);
        if from >= to {
            continue;
        }
        let slice = &mut out[(from - start) as usize..(to - start) as usize];
        add_sound(plan, sound, rate, from - sound.start_sample, slice);
    }
    for sample in out.iter_mut() {
        *sample = sample.clamp(-1.0, 1.0);
    }
}

/// Writes (not adds) the ambient noise: white grain plus two smooth value-noise
/// layers, at a level interpolated between the segments' knots.
fn add_ambient(plan: &Plan, rate: f64, total: u64, start: u64, out: &mut [f32]) {
    let key = plan.ambient_key;
    let fine_key = key ^ 0xF1;
    let coarse_key = key ^ 0xC0;
    let knots = &plan.ambient;
    let t0 = start as f64 / rate;
    let mut knot = knots.partition_point(|k| k.t_s <= t0).saturating_sub(1);
    for (offset, sample) in out.iter_mut().enumerate() {
        let n = start + offset as u64;
        if n >= total {
            *sample = 0.0;
            continue;
        }
        let t = n as f64 / rate;
        while knot + 1 < knots.len() && knots[knot + 1].t_s <= t {
            knot += 1;
        }
        let level = match (knots.get(knot), knots.get(knot + 1)) {
            (Some(a), Some(b)) if t >= a.t_s => {
                let f = ((t - a.t_s) / (b.t_s - a.t_s).max(1e-9)) as f32;
                a.level + (b.level - a.level) * f.clamp(0.0, 1.0)
            }
            (Some(a), _) => a.level,
            _ => 0.0,
        };
        let white = hash_signed(key, n);
        let fine = value_noise(fine_key, n, AMBIENT_STEP_FINE);
        let coarse = value_noise(coarse_key, n, AMBIENT_STEP_COARSE);
        *sample = level * (0.5 * white + 0.9 * fine + 1.2 * coarse);
    }
}

/// Linear interpolation between hashed values every `step` samples.
#[inline]
fn value_noise(key: u64, n: u64, step: u64) -> f32 {
    let i = n / step;
    let f = (n % step) as f32 / step as f32;
    let a = hash_signed(key, i);
    let b = hash_signed(key, i + 1);
    a + (b - a) * f
}

/// One period of a sine at an exact 32-bit phase, from the plan's table.
#[inline]
fn table_sine(table: &[f32], phase: u32) -> f32 {
    let shift = 32 - SINE_TABLE_BITS;
    let index = (phase >> shift) as usize;
    let frac = (phase & ((1 << shift) - 1)) as f32 / (1u32 << shift) as f32;
    match (table.get(index), table.get(index + 1)) {
        (Some(&a), Some(&b)) => a + (b - a) * frac,
        _ => 0.0,
    }
}

/// Raised-cosine fade over the last tenth of a sound, so it ends at zero.
#[inline]
fn tail_fade(m: u64, len: u64) -> f64 {
    let fade_from = 0.9 * len as f64;
    let m = m as f64;
    if m <= fade_from {
        1.0
    } else {
        let u = ((m - fade_from) / (len as f64 - fade_from).max(1.0)).min(1.0);
        0.5 * (1.0 + cos(PI * u))
    }
}

/// Adds `sound` into `out`, whose first sample is sample `m0` of the sound.
fn add_sound(plan: &Plan, sound: &Sound, rate: f64, m0: u64, out: &mut [f32]) {
    let len = sound.len_samples.max(1);
    let gain = sound.gain;
    match &sound.voice {
        Voice::Whoosh { partials, norm } => {
            for (offset, sample) in out.iter_mut().enumerate() {
                let m = m0 + offset as u64;
                let u = m as f64 / len as f64;
                let swell = sin(PI * u);
                let envelope = (swell * swell) as f32;
                let m32 = m as u32;
                let mut sum = 0.0f32;
                for partial in partials {
                    let phase = partial.phase0.wrapping_add(m32.wrapping_mul(partial.step));
                    sum += partial.amp * table_sine(&plan.sine_table, phase);
                }
                *sample += gain * norm * envelope * sum;
            }
        }
        Voice::Click {
            noise_key,
            decay_s,
            resonances,
        } => {
            for (offset, sample) in out.iter_mut().enumerate() {
                let m = m0 + offset as u64;
                let t = m as f64 / rate;
                // Second difference of white noise: energy rises steeply with frequency.
                let hp = f64::from(
                    hash_signed(*noise_key, m + 2) - 2.0 * hash_signed(*noise_key, m + 1)
                        + hash_signed(*noise_key, m),
                );
                let ring: f64 = resonances
                    .iter()
                    .map(|r| r.amp * sin(TAU * r.freq_hz * t + r.phase) * exp(-t / r.decay_s))
                    .sum();
                let envelope = exp(-t / decay_s) * tail_fade(m, len);
                *sample += gain * (envelope * 0.45 * hp + tail_fade(m, len) * 0.6 * ring) as f32;
            }
        }
        Voice::Thud {
            freq_hz,
            glide,
            glide_s,
            decay_s,
            harmonic,
            noise,
            noise_norm,
        } => {
            for (offset, sample) in out.iter_mut().enumerate() {
                let m = m0 + offset as u64;
                let t = m as f64 / rate;
                let attack = (t / 0.002).min(1.0);
                let attack = attack * attack * (3.0 - 2.0 * attack);
                let fade = tail_fade(m, len);
                // Frequency glides from f * (1 + glide) down to f; phase is its integral.
                let cycles = freq_hz * (t + glide * glide_s * (1.0 - exp(-t / glide_s)));
                let phase = TAU * cycles;
                let body = (sin(phase) + harmonic * sin(2.0 * phase)) / (1.0 + harmonic);
                let rumble: f64 = noise
                    .iter()
                    .map(|n| n.amp * sin(TAU * n.freq_hz * t + n.phase) * exp(-t / n.decay_s))
                    .sum();
                let value = attack * fade * (0.85 * body * exp(-t / decay_s) + noise_norm * rumble);
                *sample += gain * value as f32;
            }
        }
        Voice::Scream {
            freq_hz,
            sweep,
            vibrato_hz,
            vibrato_depth,
            vibrato_phase,
            amps,
        } => {
            let len_s = len as f64 / rate;
            for (offset, sample) in out.iter_mut().enumerate() {
                let m = m0 + offset as u64;
                let t = m as f64 / rate;
                let u = m as f64 / len as f64;
                // f(t) = f0 (1 + sweep sin(pi u)) + f0 depth sin(2 pi v t + phi); the
                // phase is its integral, in closed form.
                let cycles = freq_hz
                    * (t + sweep * len_s / PI * (1.0 - cos(PI * u))
                        + vibrato_depth / (TAU * vibrato_hz)
                            * (cos(*vibrato_phase) - cos(TAU * vibrato_hz * t + vibrato_phase)));
                let phase = TAU * cycles;
                let tone: f64 = amps
                    .iter()
                    .enumerate()
                    .map(|(k, amp)| amp * sin((k + 1) as f64 * phase))
                    .sum();
                let attack = (t / 0.03).min(1.0);
                let attack = attack * attack * (3.0 - 2.0 * attack);
                *sample += gain * (attack * tail_fade(m, len) * tone) as f32;
            }
        }
        Voice::Babble { talkers } => {
            // 50 ms raised-cosine fades at both ends of the burst.
            let fade = ((0.05 * rate) as u64).clamp(1, len / 2 + 1);
            for (offset, sample) in out.iter_mut().enumerate() {
                let m = m0 + offset as u64;
                let edge = m.min(len.saturating_sub(m + 1));
                let ramp = if edge >= fade {
                    1.0
                } else {
                    0.5 * (1.0 - cos(PI * edge as f64 / fade as f64)) as f32
                };
                let m32 = m as u32;
                let mut sum = 0.0f32;
                for talker in talkers {
                    // Syllables: a floor of 0.2 (a crowd never falls silent) plus a
                    // random rhythm that is off about a third of the time.
                    let syllable = value_noise(talker.key, m, talker.syllable);
                    let level = 0.2 + 0.8 * ((syllable + 0.3) / 1.3).clamp(0.0, 1.0);
                    let mut voice = 0.0f32;
                    for partial in &talker.partials {
                        let phase = partial.phase0.wrapping_add(m32.wrapping_mul(partial.step));
                        voice += partial.amp * table_sine(&plan.sine_table, phase);
                    }
                    sum += talker.norm * level * voice;
                }
                *sample += gain * ramp * sum;
            }
        }
    }
}
