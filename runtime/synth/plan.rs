//! Plans a scene from its config: the event timeline, and for each stretch of time
//! the backdrop, the objects and how they move, and the sounds with their timbres.

use super::compositional::{self as comp, Parts};
use super::detmath::{exp, exp2, ln, sin};
use super::rng::{derive_key, SplitMix64};
use super::{SceneConfig, Task};

/// Event length range in seconds (before snapping to the frame grid).
const EVENT_MIN_S: f64 = 1.2;
const EVENT_MAX_S: f64 = 2.0;
/// Background gap range between events, in seconds.
const GAP_MIN_S: f64 = 0.6;
const GAP_MAX_S: f64 = 1.5;
/// Background kept after the last event, in seconds.
const TAIL_MIN_S: f64 = 0.3;
/// Smallest time an impact sound gets inside its event, in seconds.
const IMPACT_ROOM_S: f64 = 0.25;
/// Longest sound of any kind, in seconds (events are at most this long).
pub(crate) const MAX_SOUND_S: f64 = EVENT_MAX_S + 0.1;
/// Number of sinusoidal partials that make up a whoosh.
const WHOOSH_PARTIALS: usize = 48;
/// Number of partials in the low noise of a thud.
const THUD_NOISE_PARTIALS: usize = 12;
/// Compositional task: share of events whose sound comes late, and how late (s).
const LATE_CHANCE: f64 = 0.2;
const LATE_MIN_S: f64 = 0.3;
const LATE_MAX_S: f64 = 0.5;
/// Compositional task: length range of a scream, in seconds.
const SCREAM_MIN_S: f64 = 0.3;
const SCREAM_MAX_S: f64 = 0.8;
/// Compositional task: share of segments with crowd babble, and its bursts' lengths (s).
const CROWD_CHANCE: f64 = 0.25;
const CROWD_BURST_MIN_S: f64 = 0.8;
const CROWD_BURST_MAX_S: f64 = 2.0;
/// Talkers in a babble burst, and sinusoidal partials per talker.
const BABBLE_TALKERS: usize = 4;
const BABBLE_PARTIALS: usize = 16;
/// Harmonics of a scream (fewer when they would pass 0.45 x the sample rate).
const SCREAM_HARMONICS: usize = 6;

/// Number of non-background classes.
const EVENT_CLASSES: usize = super::LABELS.len() - 1;
const SLIDE_LEFT: usize = 1;
const SLIDE_RIGHT: usize = 2;
const DROP_CLICK: usize = 3;
const DROP_THUD: usize = 4;
const COLLIDE_THUD: usize = 5;

/// Outline of an object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shape {
    Square,
    Disc,
}

/// One object: shape, colour (linear 0..255 per channel) and half its size in pixels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Body {
    pub shape: Shape,
    pub color: [f32; 3],
    pub half: f64,
}

/// The static part of a stretch of the scene: wall, floor, texture, ambient level.
#[derive(Debug, Clone)]
pub(crate) struct Backdrop {
    pub wall: [f32; 3],
    pub floor: [f32; 3],
    /// Row where the floor begins (objects rest with their bottom here).
    pub floor_y: f64,
    /// Amplitude (in 0..255 levels) of the smooth blotchy texture.
    pub texture_amp: f32,
    /// Lattice cell size of the smooth texture, in pixels.
    pub texture_cell: u32,
    /// Amplitude of the per-pixel grain.
    pub grain_amp: f32,
    /// Key of the texture hashes.
    pub texture_key: u64,
    /// Scale of the ambient noise (roughly its RMS).
    pub ambient_level: f32,
}

/// How the objects of an action move.
#[derive(Debug, Clone)]
pub(crate) enum Motion {
    /// One body slides from `x0` to `x1` at height `y` in `move_s` seconds: with a
    /// smooth speed bump, or (`abrupt`) speeding up until it stops dead at `x1`.
    Slide {
        x0: f64,
        x1: f64,
        y: f64,
        move_s: f64,
        abrupt: bool,
    },
    /// One body falls from `y_top` at `x`, lands on `y_rest` after `fall_s`, bounces
    /// once with restitution `bounce`, and rests.
    Drop {
        x: f64,
        y_top: f64,
        y_rest: f64,
        fall_s: f64,
        bounce: f64,
    },
    /// Body A (left) and body B (right) accelerate towards each other, touch at
    /// `contact_s`, recoil by `recoil_a` / `recoil_b` pixels and stop.
    Collide {
        y_a: f64,
        y_b: f64,
        xa0: f64,
        xa_contact: f64,
        xb0: f64,
        xb_contact: f64,
        contact_s: f64,
        recoil_a: f64,
        recoil_b: f64,
    },
}

/// Duration of the recoil after a collision, in seconds (within `IMPACT_ROOM_S`).
const RECOIL_S: f64 = 0.2;

/// One labelled event: its class, its interval, its bodies and their motion.
#[derive(Debug, Clone)]
pub(crate) struct Action {
    /// Index into the task's label list (`LABELS` or `compositional::LABELS`).
    pub class: usize,
    pub start_s: f64,
    pub end_s: f64,
    pub bodies: Vec<Body>,
    pub motion: Motion,
    /// Compositional task: what the class is made of.
    pub parts: Option<Parts>,
    /// How late the sounds are behind the picture, in seconds (0 = in sync).
    pub sound_delay_s: f64,
    /// Time of the visual contact (landing, collision, abrupt stop), if any.
    pub contact_s: Option<f64>,
    /// When a body falls (from the start to its first landing), if any.
    pub falling: Option<(f64, f64)>,
    /// End of the last sound of the event, in seconds (its start when silent).
    pub sound_end_s: f64,
}

/// A body at a fixed place that never moves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StillBody {
    pub body: Body,
    pub x: f64,
    pub y: f64,
}

/// A stretch of the scene with one backdrop and at most one action; segments change
/// (a cut) in the middle of the background gaps between actions.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub from_s: f64,
    pub backdrop: Backdrop,
    pub still: Option<StillBody>,
    pub action: Option<Action>,
}

/// A sinusoid with an exact integer phase: phase(n) = phase0 + n * step (mod 2^32).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Partial {
    pub step: u32,
    pub phase0: u32,
    pub amp: f32,
}

/// A sinusoid in real units for the short impact sounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tone {
    pub freq_hz: f64,
    pub phase: f64,
    pub amp: f64,
    pub decay_s: f64,
}

/// The timbre of a sound.
#[derive(Debug, Clone)]
pub(crate) enum Voice {
    /// Band-limited noise made of many partials, under a sin^2 swell over the sound.
    Whoosh { partials: Vec<Partial>, norm: f32 },
    /// A short bright transient: high-passed noise plus high resonances.
    Click {
        noise_key: u64,
        decay_s: f64,
        resonances: Vec<Tone>,
    },
    /// A low decaying sine with a slight downward glide, a 2nd harmonic and low noise.
    Thud {
        freq_hz: f64,
        glide: f64,
        glide_s: f64,
        decay_s: f64,
        harmonic: f64,
        noise: Vec<Tone>,
        noise_norm: f64,
    },
    /// A harmonic tone whose pitch rises and falls back once over the sound (by
    /// `sweep` x `freq_hz` at the middle) with vibrato; harmonic `k` has `amps[k-1]`.
    Scream {
        freq_hz: f64,
        sweep: f64,
        vibrato_hz: f64,
        vibrato_depth: f64,
        vibrato_phase: f64,
        amps: Vec<f64>,
    },
    /// Crowd babble: several talkers, each band-limited noise (partials) under a
    /// syllable-rate envelope (value noise every `syllable` samples, key `key`).
    Babble { talkers: Vec<Talker> },
}

/// One voice of a babble.
#[derive(Debug, Clone)]
pub(crate) struct Talker {
    pub partials: Vec<Partial>,
    pub norm: f32,
    pub key: u64,
    pub syllable: u64,
}

/// A sound placed on the sample grid.
#[derive(Debug, Clone)]
pub(crate) struct Sound {
    pub start_sample: u64,
    pub len_samples: u64,
    pub gain: f32,
    pub voice: Voice,
}

/// Ambient level at a time (levels are interpolated linearly between knots).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AmbientKnot {
    pub t_s: f64,
    pub level: f32,
}

/// Everything decided about a scene; rendering only reads it.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Sorted by `from_s`; the first starts at 0 and there is always at least one.
    pub segments: Vec<Segment>,
    /// Sorted by `start_sample`.
    pub sounds: Vec<Sound>,
    /// Sorted by time; at least one.
    pub ambient: Vec<AmbientKnot>,
    /// Key of the ambient noise hashes.
    pub ambient_key: u64,
    /// One period of a sine, `SINE_TABLE_LEN + 1` entries (the last repeats the first).
    pub sine_table: Vec<f32>,
}

/// log2 of the sine table length.
pub(crate) const SINE_TABLE_BITS: u32 = 12;
const SINE_TABLE_LEN: usize = 1 << SINE_TABLE_BITS;

impl Plan {
    /// Plans the whole scene; `cfg` must be valid.
    pub(crate) fn new(cfg: &SceneConfig) -> Plan {
        let timing = plan_timing(cfg);
        let mut segments = Vec::with_capacity(timing.len().max(1));
        let mut sounds = Vec::new();
        if timing.is_empty() {
            let mut rng = SplitMix64::new(derive_key(cfg.seed, 0xB0));
            let backdrop = plan_backdrop(cfg, &mut rng);
            let still = plan_still(cfg, &backdrop, &mut rng, None);
            segments.push(Segment {
                from_s: 0.0,
                backdrop,
                still,
                action: None,
            });
        }
        for (k, slot) in timing.iter().enumerate() {
            let mut rng = SplitMix64::new(derive_key(cfg.seed, 0x1000 + k as u64));
            let backdrop = plan_backdrop(cfg, &mut rng);
            let (action, mut action_sounds) = plan_action(cfg, &backdrop, slot, &mut rng);
            let still = plan_still(cfg, &backdrop, &mut rng, Some(&action));
            sounds.append(&mut action_sounds);
            segments.push(Segment {
                from_s: slot.segment_from_s,
                backdrop,
                still,
                action: Some(action),
            });
        }
        if matches!(cfg.task, Task::Compositional { .. }) {
            sounds.append(&mut plan_crowd(cfg, &segments));
        }
        sounds.sort_by_key(|sound| sound.start_sample);
        let ambient = segments
            .iter()
            .map(|segment| AmbientKnot {
                t_s: segment
                    .action
                    .as_ref()
                    .map_or(0.0, |action| 0.5 * (action.start_s + action.end_s)),
                level: segment.backdrop.ambient_level,
            })
            .collect();
        let sine_table = (0..=SINE_TABLE_LEN)
            .map(|i| sin(std::f64::consts::TAU * i as f64 / SINE_TABLE_LEN as f64) as f32)
            .collect();
        Plan {
            segments,
            sounds,
            ambient,
            ambient_key: derive_key(cfg.seed, 0xA0),
            sine_table,
        }
    }

    /// Index of the segment showing at `t_s` (the first for negative times).
    pub(crate) fn segment_index_at(&self, t_s: f64) -> Option<usize> {
        if self.segments.is_empty() {
            return None;
        }
        let after = self.segments.partition_point(|s| s.from_s <= t_s);
        Some(after.saturating_sub(1))
    }
}

/// When one action happens, and where its segment starts.
struct Slot {
    class: usize,
    parts: Option<Parts>,
    late_s: f64,
    start_s: f64,
    end_s: f64,
    segment_from_s: f64,
}

/// Lays out the events on the frame grid: gaps, durations and classes.
fn plan_timing(cfg: &SceneConfig) -> Vec<Slot> {
    let fps = f64::from(cfg.fps);
    let snap = |t: f64| (t * fps).round() / fps;
    let mut rng = SplitMix64::new(derive_key(cfg.seed, 0x7133));
    let mut slots: Vec<Slot> = Vec::new();
    // Classes come from shuffled bags of all the task's classes so every class appears
    // once per bag and the classes stay balanced.
    let candidates: Vec<usize> = match cfg.task {
        Task::Basic => (1..=EVENT_CLASSES).collect(),
        Task::Compositional { classes } => classes.label_indices(),
    };
    let mut bag = vec![0usize; candidates.len()];
    let mut bag_left = 0;
    let mut t = rng.range(GAP_MIN_S, GAP_MAX_S);
    loop {
        let start_s = snap(t);
        let end_s = snap(start_s + rng.range(EVENT_MIN_S, EVENT_MAX_S));
        if end_s > cfg.duration_s - TAIL_MIN_S || end_s <= start_s {
            break;
        }
        if bag_left == 0 {
            bag.copy_from_slice(&candidates);
            for i in (1..bag.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                bag.swap(i, j);
            }
            bag_left = bag.len();
        }
        bag_left -= 1;
        let class = bag[bag_left];
        let (parts, late_s) = match cfg.task {
            Task::Basic => (None, 0.0),
            Task::Compositional { .. } => {
                let late_s = if rng.chance(LATE_CHANCE) {
                    // Whole milliseconds, so the ground truth reads back exactly.
                    (rng.range(LATE_MIN_S, LATE_MAX_S) * 1000.0).round() / 1000.0
                } else {
                    0.0
                };
                (comp::parts_of(class), late_s)
            }
        };
        let segment_from_s = match slots.last() {
            Some(previous) => snap(0.5 * (previous.end_s + start_s)),
            None => 0.0,
        };
        slots.push(Slot {
            class,
            parts,
            late_s,
            start_s,
            end_s,
            segment_from_s,
        });
        t = end_s + rng.range(GAP_MIN_S, GAP_MAX_S);
    }
    slots
}

/// Relative luminance (0..255) of a linear RGB colour.
fn luma(rgb: [f32; 3]) -> f32 {
    0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
}

/// RGB (each 0..1) from hue (0..1), saturation and value.
fn hsv(hue: f64, sat: f64, val: f64) -> [f64; 3] {
    let h = (hue.rem_euclid(1.0)) * 6.0;
    let sector = h.floor();
    let f = h - sector;
    let p = val * (1.0 - sat);
    let q = val * (1.0 - sat * f);
    let r = val * (1.0 - sat * (1.0 - f));
    match sector as u32 {
        0 => [val, r, p],
        1 => [q, val, p],
        2 => [p, val, r],
        3 => [p, q, val],
        4 => [r, p, val],
        _ => [val, p, q],
    }
}

fn plan_backdrop(cfg: &SceneConfig, rng: &mut SplitMix64) -> Backdrop {
    let dark = rng.chance(0.5);
    let target_luma = if dark {
        rng.range(30.0, 90.0)
    } else {
        rng.range(150.0, 210.0)
    };
    let tint = hsv(rng.unit(), rng.range(0.08, 0.35), 1.0);
    let tint_luma = 255.0 * (0.299 * tint[0] + 0.587 * tint[1] + 0.114 * tint[2]);
    let scale = target_luma / tint_luma.max(1.0);
    let wall = tint.map(|c| (c * 255.0 * scale).clamp(0.0, 255.0) as f32);
    let floor_factor = if dark {
        rng.range(1.35, 1.7)
    } else {
        rng.range(0.55, 0.75)
    } as f32;
    let floor = wall.map(|c| (c * floor_factor + if dark { 10.0 } else { 0.0 }).min(255.0));
    let height = f64::from(cfg.height);
    Backdrop {
        wall,
        floor,
        floor_y: (rng.range(0.80, 0.90) * height).round(),
        texture_amp: rng.range(3.0, 8.0) as f32,
        texture_cell: (rng.range(0.04, 0.12) * height).round().max(2.0) as u32,
        grain_amp: rng.range(1.0, 3.5) as f32,
        texture_key: rng.next_u64(),
        ambient_level: rng.log_range(0.003, 0.02) as f32,
    }
}

/// A body whose colour stands out from the wall by at least 80 luma levels; its shape
/// is `shape`, or random when `None` (the draw is made either way).
fn plan_body(
    cfg: &SceneConfig,
    backdrop: &Backdrop,
    rng: &mut SplitMix64,
    shape: Option<Shape>,
) -> Body {
    let random_shape = if rng.chance(0.5) {
        Shape::Square
    } else {
        Shape::Disc
    };
    let shape = shape.unwrap_or(random_shape);
    let side = f64::from(cfg.width.min(cfg.height));
    let half = rng.range(0.045, 0.09) * side;
    let wall_luma = luma(backdrop.wall);
    let bright = wall_luma < 128.0;
    let mut color = if bright {
        [255.0, 255.0, 255.0]
    } else {
        [10.0, 10.0, 10.0]
    };
    for _ in 0..16 {
        let val = if bright {
            rng.range(0.8, 1.0)
        } else {
            rng.range(0.15, 0.45)
        };
        let candidate = hsv(rng.unit(), rng.range(0.45, 1.0), val).map(|c| (c * 255.0) as f32);
        if (luma(candidate) - wall_luma).abs() >= 80.0 {
            color = candidate;
            break;
        }
    }
    Body { shape, color, half }
}

/// Random value in [lo, hi], or the midpoint when the range is empty.
fn range_or_mid(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.range(lo, hi)
    } else {
        0.5 * (lo + hi)
    }
}

/// The (motion, sound) a basic-task class stands for.
fn basic_kind(class: usize) -> (comp::Motion, comp::Sound) {
    match class {
        SLIDE_LEFT => (comp::Motion::SlideLeft, comp::Sound::Whoosh),
        SLIDE_RIGHT => (comp::Motion::SlideRight, comp::Sound::Whoosh),
        DROP_CLICK => (comp::Motion::Fall, comp::Sound::Click),
        DROP_THUD => (comp::Motion::Fall, comp::Sound::Thud),
        _ => {
            debug_assert_eq!(class, COLLIDE_THUD);
            (comp::Motion::Collide, comp::Sound::Thud)
        }
    }
}

/// An impact voice: a click, else a thud.
fn impact_voice(cfg: &SceneConfig, rng: &mut SplitMix64, sound: comp::Sound) -> Voice {
    if sound == comp::Sound::Click {
        plan_click(cfg, rng)
    } else {
        plan_thud(rng)
    }
}

fn plan_action(
    cfg: &SceneConfig,
    backdrop: &Backdrop,
    slot: &Slot,
    rng: &mut SplitMix64,
) -> (Action, Vec<Sound>) {
    use comp::Sound::{Click, Scream, Thud, Whoosh};
    let width = f64::from(cfg.width);
    let height = f64::from(cfg.height);
    let fps = f64::from(cfg.fps);
    let rate = f64::from(cfg.audio_rate);
    let snap = |t: f64| (t * fps).round() / fps;
    let to_sample = |t: f64| (t * rate).round().max(0.0) as u64;
    let duration = slot.end_s - slot.start_s;
    let margin = 0.03 * width;
    let (movement, sound) = match slot.parts {
        Some(parts) => (parts.motion, parts.sound),
        None => basic_kind(slot.class),
    };
    let shape = slot.parts.map(|parts| match parts.object {
        comp::Object::Square => Shape::Square,
        comp::Object::Disc => Shape::Disc,
    });
    // A sound over [from_s, to_s): a whoosh swelling over it, or a scream.
    let span_sound = |rng: &mut SplitMix64, from_s: f64, to_s: f64| {
        if sound == Whoosh {
            Sound {
                start_sample: to_sample(from_s),
                len_samples: to_sample(to_s) - to_sample(from_s),
                gain: rng.range(0.22, 0.4) as f32,
                voice: plan_whoosh(cfg, rng),
            }
        } else {
            Sound {
                start_sample: to_sample(from_s),
                len_samples: to_sample(to_s) - to_sample(from_s),
                gain: rng.range(0.2, 0.35) as f32,
                voice: plan_scream(cfg, rng),
            }
        }
    };
    let scream_length = |rng: &mut SplitMix64, longest: f64| {
        rng.range(SCREAM_MIN_S, SCREAM_MAX_S)
            .min(longest)
            .max(1.0 / rate)
    };
    let first = plan_body(cfg, backdrop, rng, shape);
    let mut bodies = vec![first];
    let mut sounds = Vec::new();
    let mut contact_s = None;
    let mut falling = None;
    let motion = match movement {
        comp::Motion::SlideLeft | comp::Motion::SlideRight => {
            let lo = margin + first.half;
            let hi = width - margin - first.half;
            let travel = (rng.range(0.45, 0.75) * width).min(hi - lo).max(0.0);
            let left = range_or_mid(rng, lo, hi - travel);
            let (x0, x1) = if movement == comp::Motion::SlideLeft {
                (left + travel, left)
            } else {
                (left, left + travel)
            };
            // With an impact sound the body stops dead (hits something), in time for
            // the sound to fit in the event.
            let abrupt = matches!(sound, Click | Thud);
            let move_s = if abrupt {
                snap(duration - IMPACT_ROOM_S).max(1.0 / fps).min(duration)
            } else {
                duration
            };
            match sound {
                Whoosh => sounds.push(span_sound(rng, slot.start_s, slot.end_s)),
                Scream => {
                    let len_s = scream_length(rng, duration);
                    let from_s = slot.start_s + 0.5 * (duration - len_s);
                    sounds.push(span_sound(rng, from_s, from_s + len_s));
                }
                Click | Thud => {
                    let stop_s = slot.start_s + move_s;
                    contact_s = Some(stop_s);
                    let voice = impact_voice(cfg, rng, sound);
                    let len_s = sound_length(&voice);
                    sounds.push(Sound {
                        start_sample: to_sample(stop_s),
                        len_samples: to_sample(len_s),
                        gain: rng.range(0.5, 0.8) as f32,
                        voice,
                    });
                }
            }
            Motion::Slide {
                x0,
                x1,
                y: backdrop.floor_y - first.half,
                move_s,
                abrupt,
            }
        }
        comp::Motion::Fall => {
            let x = range_or_mid(rng, margin + first.half, width - margin - first.half);
            let y_top = first.half + rng.range(0.02, 0.12) * height;
            let y_rest = backdrop.floor_y - first.half;
            let bounce = rng.range(0.15, 0.3);
            let longest_fall = ((duration - IMPACT_ROOM_S) / (1.0 + 2.0 * bounce)).min(0.75);
            let fall_s = snap(range_or_mid(rng, 0.45, longest_fall).min(longest_fall))
                .max(1.0 / fps)
                .min(duration);
            let impact_s = slot.start_s + fall_s;
            contact_s = Some(impact_s);
            falling = Some((slot.start_s, impact_s));
            match sound {
                Click | Thud => {
                    let gain = rng.range(0.5, 0.8) as f32;
                    let voice = impact_voice(cfg, rng, sound);
                    let len_s = sound_length(&voice);
                    // The bounce lands again after 2 * bounce * fall_s, with a softer sound.
                    let second_s = impact_s + 2.0 * bounce * fall_s;
                    let second_voice = impact_voice(cfg, rng, sound);
                    let second_len_s = sound_length(&second_voice);
                    sounds.push(Sound {
                        start_sample: to_sample(impact_s),
                        len_samples: to_sample(len_s),
                        gain,
                        voice,
                    });
                    if second_s + second_len_s < slot.end_s {
                        sounds.push(Sound {
                            start_sample: to_sample(second_s),
                            len_samples: to_sample(second_len_s),
                            gain: gain * (1.5 * bounce) as f32,
                            voice: second_voice,
                        });
                    }
                }
                Whoosh => sounds.push(span_sound(rng, slot.start_s, impact_s)),
                Scream => {
                    let len_s = scream_length(rng, fall_s);
                    sounds.push(span_sound(rng, impact_s - len_s, impact_s));
                }
            }
            Motion::Drop {
                x,
                y_top,
                y_rest,
                fall_s,
                bounce,
            }
        }
        comp::Motion::Collide => {
            let second = plan_body(cfg, backdrop, rng, shape);
            bodies.push(second);
            let contact_x = rng.range(0.38, 0.62) * width;
            let xa_contact = contact_x - first.half;
            let xb_contact = contact_x + second.half;
            let room_a = (xa_contact - first.half - margin).max(0.0);
            let room_b = (width - margin - second.half - xb_contact).max(0.0);
            let run_a = range_or_mid(rng, 0.15 * width, 0.32 * width).min(room_a);
            let run_b = range_or_mid(rng, 0.15 * width, 0.32 * width).min(room_b);
            let latest_contact = (duration - IMPACT_ROOM_S).max(1.0 / fps);
            let contact = snap(rng.range(0.5, 0.72) * duration)
                .min(latest_contact)
                .max(1.0 / fps);
            contact_s = Some(slot.start_s + contact);
            let restitution = rng.range(0.0, 0.35);
            // Speed at contact under constant acceleration from rest is 2 * run / t; the
            // recoil starts at `restitution` times that and decelerates evenly to rest
            // within RECOIL_S, covering half of speed * RECOIL_S.
            let recoil_a = restitution * run_a / contact * RECOIL_S;
            let recoil_b = restitution * run_b / contact * RECOIL_S;
            match sound {
                Click | Thud => {
                    let voice = impact_voice(cfg, rng, sound);
                    let len_s = sound_length(&voice);
                    sounds.push(Sound {
                        start_sample: to_sample(slot.start_s + contact),
                        len_samples: to_sample(len_s),
                        gain: rng.range(0.5, 0.8) as f32,
                        voice,
                    });
                }
                Whoosh => sounds.push(span_sound(rng, slot.start_s, slot.start_s + contact)),
                Scream => {
                    let len_s = scream_length(rng, contact);
                    let to_s = slot.start_s + contact;
                    sounds.push(span_sound(rng, to_s - len_s, to_s));
                }
            }
            Motion::Collide {
                y_a: backdrop.floor_y - first.half,
                y_b: backdrop.floor_y - second.half,
                xa0: xa_contact - run_a,
                xa_contact,
                xb0: xb_contact + run_b,
                xb_contact,
                contact_s: contact,
                recoil_a,
                recoil_b,
            }
        }
    };
    let delay = to_sample(slot.late_s);
    for sound in &mut sounds {
        sound.start_sample += delay;
    }
    let sound_end_s = sounds
        .iter()
        .map(|sound| (sound.start_sample + sound.len_samples) as f64 / rate)
        .fold(slot.start_s, f64::max);
    let action = Action {
        class: slot.class,
        start_s: slot.start_s,
        end_s: slot.end_s,
        bodies,
        motion,
        parts: slot.parts,
        sound_delay_s: slot.late_s,
        contact_s,
        falling,
        sound_end_s,
    };
    (action, sounds)
}

/// Length of an impact sound: clicks 5-15 ms, thuds 100-200 ms.
fn sound_length(voice: &Voice) -> f64 {
    match voice {
        Voice::Click { decay_s, .. } => (decay_s * 4.5).clamp(0.005, 0.015),
        Voice::Thud { decay_s, .. } => (decay_s * 4.0).clamp(0.1, 0.2),
        // Whooshes, screams and babble get their lengths where they are planned.
        Voice::Whoosh { .. } | Voice::Scream { .. } | Voice::Babble { .. } => 0.0,
    }
}

/// `n` sinusoids at log-uniform frequencies in `[lo, hi]` Hz with amplitudes in
/// 0.5..1 and random phases (drawn in that order per partial), and their total power.
fn band_partials(
    rng: &mut SplitMix64,
    lo: f64,
    hi: f64,
    n: usize,
    rate: f64,
) -> (Vec<Partial>, f64) {
    let mut power = 0.0f64;
    let partials = (0..n)
        .map(|_| {
            let freq = rng.log_range(lo, hi);
            let amp = rng.range(0.5, 1.0);
            power += 0.5 * amp * amp;
            Partial {
                step: ((freq / rate) * 4_294_967_296.0).round() as u32,
                phase0: rng.next_u64() as u32,
                amp: amp as f32,
            }
        })
        .collect();
    (partials, power)
}

fn plan_whoosh(cfg: &SceneConfig, rng: &mut SplitMix64) -> Voice {
    let rate = f64::from(cfg.audio_rate);
    let nyquist_guard = 0.45 * rate;
    let centre = rng.log_range(500.0, 1600.0).min(0.25 * rate);
    let half_octaves = 0.5 * rng.range(1.0, 1.8);
    let lo = centre / exp2(half_octaves);
    let hi = (centre * exp2(half_octaves)).min(nyquist_guard);
    let (partials, power) = band_partials(rng, lo, hi, WHOOSH_PARTIALS, rate);
    Voice::Whoosh {
        partials,
        // Unit RMS at the top of the swell, then a crest allowance.
        norm: (1.0 / (3.0 * power.sqrt())) as f32,
    }
}

fn plan_click(cfg: &SceneConfig, rng: &mut SplitMix64) -> Voice {
    let top = 0.42 * f64::from(cfg.audio_rate);
    let resonances = (0..3)
        .map(|_| Tone {
            freq_hz: rng.log_range(2500.0, 8000.0).min(top),
            phase: rng.range(0.0, std::f64::consts::TAU),
            amp: rng.range(0.2, 0.5),
            decay_s: rng.range(0.0015, 0.004),
        })
        .collect();
    Voice::Click {
        noise_key: rng.next_u64(),
        decay_s: rng.range(0.0012, 0.0033),
        resonances,
    }
}

fn plan_thud(rng: &mut SplitMix64) -> Voice {
    let mut noise_power = 0.0;
    let noise: Vec<Tone> = (0..THUD_NOISE_PARTIALS)
        .map(|_| {
            let amp = rng.range(0.3, 1.0);
            noise_power += 0.5 * amp * amp;
            Tone {
                freq_hz: rng.log_range(40.0, 260.0),
                phase: rng.range(0.0, std::f64::consts::TAU),
                amp,
                decay_s: rng.range(0.015, 0.04),
            }
        })
        .collect();
    Voice::Thud {
        freq_hz: rng.range(60.0, 150.0),
        glide: rng.range(0.05, 0.25),
        glide_s: rng.range(0.02, 0.06),
        decay_s: rng.range(0.025, 0.05),
        harmonic: rng.range(0.05, 0.3),
        noise,
        noise_norm: 1.0 / (2.0 * f64::sqrt(noise_power)),
    }
}

/// A scream: 450-900 Hz fundamental rising by 15-40 % at its middle, 5-8 Hz vibrato of
/// 1.5-4 %, and up to six harmonics with a random roll-off.
fn plan_scream(cfg: &SceneConfig, rng: &mut SplitMix64) -> Voice {
    let rate = f64::from(cfg.audio_rate);
    let freq_hz = rng.log_range(450.0, 900.0);
    let sweep = rng.range(0.15, 0.4);
    let vibrato_hz = rng.range(5.0, 8.0);
    let vibrato_depth = rng.range(0.015, 0.04);
    let vibrato_phase = rng.range(0.0, std::f64::consts::TAU);
    let rolloff = rng.range(0.7, 1.3);
    let top = freq_hz * (1.0 + sweep + vibrato_depth);
    let mut amps: Vec<f64> = (1..=SCREAM_HARMONICS)
        .map(|k| rng.range(0.6, 1.0) * exp(-rolloff * ln(k as f64)))
        .collect();
    let fit = ((0.45 * rate / top) as usize).clamp(1, SCREAM_HARMONICS);
    amps.truncate(fit);
    let sum: f64 = amps.iter().sum();
    for amp in &mut amps {
        *amp /= sum.max(1e-9);
    }
    Voice::Scream {
        freq_hz,
        sweep,
        vibrato_hz,
        vibrato_depth,
        vibrato_phase,
        amps,
    }
}

/// Babble: a few talkers, each noise in a 1-1.6 octave band centred at 350-1400 Hz
/// whose level follows a random syllable rhythm (a new value every 90-160 ms).
fn plan_babble(cfg: &SceneConfig, rng: &mut SplitMix64) -> Voice {
    let rate = f64::from(cfg.audio_rate);
    let talkers = (0..BABBLE_TALKERS)
        .map(|_| {
            let centre = rng.log_range(350.0, 1400.0).min(0.2 * rate);
            let half_octaves = 0.5 * rng.range(1.0, 1.6);
            let lo = centre / exp2(half_octaves);
            let hi = (centre * exp2(half_octaves)).min(0.45 * rate);
            let (partials, power) = band_partials(rng, lo, hi, BABBLE_PARTIALS, rate);
            Talker {
                partials,
                norm: (1.0 / (2.0 * (power * BABBLE_TALKERS as f64).sqrt())) as f32,
                key: rng.next_u64(),
                syllable: (rng.range(0.09, 0.16) * rate).round().max(1.0) as u64,
            }
        })
        .collect();
    Voice::Babble { talkers }
}

/// Crowd babble for the compositional task: each segment (background included), on
/// its own random stream, gets babble with chance `CROWD_CHANCE`, as bursts of
/// 0.8-2 s with short pauses covering the segment, regardless of its event.
fn plan_crowd(cfg: &SceneConfig, segments: &[Segment]) -> Vec<Sound> {
    let rate = f64::from(cfg.audio_rate);
    let to_sample = |t: f64| (t * rate).round().max(0.0) as u64;
    let mut sounds = Vec::new();
    for (k, segment) in segments.iter().enumerate() {
        let mut rng = SplitMix64::new(derive_key(cfg.seed, 0xC0_0000 + k as u64));
        if !rng.chance(CROWD_CHANCE) {
            continue;
        }
        let to_s = segments
            .get(k + 1)
            .map_or(cfg.duration_s, |next| next.from_s)
            .min(cfg.duration_s);
        let mut t = segment.from_s + rng.range(0.0, 0.3);
        while to_s - t >= 0.4 {
            let len_s = rng
                .range(CROWD_BURST_MIN_S, CROWD_BURST_MAX_S)
                .min(to_s - t);
            sounds.push(Sound {
                start_sample: to_sample(t),
                len_samples: to_sample(t + len_s) - to_sample(t),
                gain: rng.range(0.2, 0.35) as f32,
                voice: plan_babble(cfg, &mut rng),
            });
            t += len_s + rng.range(0.1, 0.5);
        }
    }
    sounds
}

/// Maybe a body resting on the floor that never moves, kept clear of the action.
fn plan_still(
    cfg: &SceneConfig,
    backdrop: &Backdrop,
    rng: &mut SplitMix64,
    action: Option<&Action>,
) -> Option<StillBody> {
    if !rng.chance(0.5) {
        return None;
    }
    let width = f64::from(cfg.width);
    let body = plan_body(cfg, backdrop, rng, None);
    let busy = action.map(action_x_extent);
    for _ in 0..4 {
        let x = range_or_mid(rng, body.half, width - body.half);
        let clear = busy.is_none_or(|(lo, hi)| x + body.half < lo || x - body.half > hi);
        if clear {
            return Some(StillBody {
                body,
                x,
                y: backdrop.floor_y - body.half,
            });
        }
    }
    None
}

/// Horizontal range swept by the bodies of an action, in pixels.
fn action_x_extent(action: &Action) -> (f64, f64) {
    let half = |i: usize| action.bodies.get(i).map_or(0.0, |b| b.half);
    match action.motion {
        Motion::Slide { x0, x1, .. } => (x0.min(x1) - half(0), x0.max(x1) + half(0)),
        Motion::Drop { x, .. } => (x - half(0), x + half(0)),
        Motion::Collide {
            xa0,
            xb0,
            xa_contact,
            xb_contact,
            recoil_a,
            recoil_b,
            ..
        } => (
            xa0.min(xa_contact - recoil_a) - half(0),
            xb0.max(xb_contact + recoil_b) + half(1),
        ),
    }
}

impl Action {
    /// Centre (x, y) of body `index` at time `t_s`; before the start the bodies wait
    /// where they start, after the end they rest where they stopped.
    pub(crate) fn position(&self, index: usize, t_s: f64) -> (f64, f64) {
        let tau = (t_s - self.start_s).clamp(0.0, self.end_s - self.start_s);
        match self.motion {
            Motion::Slide {
                x0,
                x1,
                y,
                move_s,
                abrupt,
            } => {
                let u = tau.min(move_s) / move_s.max(1e-9);
                let eased = if abrupt {
                    // Speed grows from half to one and a half times the mean, then 0.
                    0.5 * (u + u * u)
                } else {
                    u - sin(std::f64::consts::TAU * u) / std::f64::consts::TAU
                };
                (x0 + (x1 - x0) * eased, y)
            }
            Motion::Drop {
                x,
                y_top,
                y_rest,
                fall_s,
                bounce,
            } => {
                let gravity = 2.0 * (y_rest - y_top) / (fall_s * fall_s);
                if tau < fall_s {
                    return (x, y_top + 0.5 * gravity * tau * tau);
                }
                let up_speed = bounce * gravity * fall_s;
                let s = tau - fall_s;
                let lift = (up_speed * s - 0.5 * gravity * s * s).max(0.0);
                (x, y_rest - lift)
            }
            Motion::Collide {
                y_a,
                y_b,
                xa0,
                xa_contact,
                xb0,
                xb_contact,
                contact_s,
                recoil_a,
                recoil_b,
            } => {
                let (x0, x_contact, recoil, y, direction) = if index == 0 {
                    (xa0, xa_contact, recoil_a, y_a, -1.0)
                } else {
                    (xb0, xb_contact, recoil_b, y_b, 1.0)
                };
                if tau < contact_s {
                    let u = tau / contact_s;
                    (x0 + (x_contact - x0) * u * u, y)
                } else {
                    let left = (1.0 - (tau - contact_s) / RECOIL_S).max(0.0);
                    let back = recoil * (1.0 - left * left);
                    (x_contact + direction * back, y)
                }
            }
        }
    }
}
