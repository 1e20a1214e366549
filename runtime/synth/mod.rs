//! Synthetic audio-visual scenes with a ground-truth timeline: moving shapes and
//! synchronised sounds, deterministic from a seed. Used by tests, training
//! (`models/train/`) and the demo when no camera or microphone is present.
//!
//! A [`Scene`] is planned once from a [`SceneConfig`] (seed, duration, size, rates);
//! every video frame and every audio sample is then a pure function of the config
//! and its index, so any part can be rendered on demand, in any order, on any machine.
//! The classes are [`LABELS`]; [`Scene::timeline`] lists the non-background events.

mod audio;
mod detmath;
mod media;
mod output;
mod plan;
mod rng;
mod video;

pub use media::write_media;
pub use output::{write_ground_truth, write_wav};

use plan::{Plan, Segment};

/// Class labels, in model order; index 0 is background.
pub const LABELS: [&str; 6] = [
    "background",
    "slide_left",
    "slide_right",
    "drop_click",
    "drop_thud",
    "collide_thud",
];

/// Index of `"background"` in [`LABELS`].
pub const BACKGROUND: usize = 0;

/// Limits on [`SceneConfig`] values checked by [`Scene::generate`].
const MAX_DURATION_S: f64 = 24.0 * 3600.0;
const MIN_SIDE: u32 = 16;
const MAX_SIDE: u32 = 4096;
const MAX_FPS: u32 = 240;
const MIN_AUDIO_RATE: u32 = 8_000;
const MAX_AUDIO_RATE: u32 = 192_000;

/// What to generate: seed, length, picture size and rates.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SceneConfig {
    /// Seed of every random choice; the same config always gives the same scene.
    pub seed: u64,
    /// Length of the scene in seconds (0 < d <= 24 h).
    pub duration_s: f64,
    /// Frame width in pixels (even, 16..=4096).
    pub width: u32,
    /// Frame height in pixels (even, 16..=4096).
    pub height: u32,
    /// Frames per second (1..=240).
    pub fps: u32,
    /// Audio sample rate in Hz (8000..=192000).
    pub audio_rate: u32,
}

impl Default for SceneConfig {
    fn default() -> Self {
        SceneConfig {
            seed: 0,
            duration_s: 60.0,
            width: 320,
            height: 240,
            fps: 25,
            audio_rate: 48_000,
        }
    }
}

impl SceneConfig {
    /// Checks every field; the error names the field, its value and the allowed range.
    pub fn validate(&self) -> crate::Result<()> {
        if !self.duration_s.is_finite() || self.duration_s <= 0.0 {
            return Err(crate::err!(
                Config,
                "synth scene: duration_s = {} must be a finite number of seconds > 0",
                self.duration_s
            ));
        }
        if self.duration_s > MAX_DURATION_S {
            return Err(crate::err!(
                Config,
                "synth scene: duration_s = {} exceeds the maximum of {MAX_DURATION_S} s",
                self.duration_s
            ));
        }
        for (name, value) in [("width", self.width), ("height", self.height)] {
            if !(MIN_SIDE..=MAX_SIDE).contains(&value) || value % 2 != 0 {
                return Err(crate::err!(
                    Config,
                    "synth scene: {name} = {value} must be an even number of pixels in \
                     {MIN_SIDE}..={MAX_SIDE}"
                ));
            }
        }
        if !(1..=MAX_FPS).contains(&self.fps) {
            return Err(crate::err!(
                Config,
                "synth scene: fps = {} must be in 1..={MAX_FPS}",
                self.fps
            ));
        }
        if !(MIN_AUDIO_RATE..=MAX_AUDIO_RATE).contains(&self.audio_rate) {
            return Err(crate::err!(
                Config,
                "synth scene: audio_rate = {} Hz must be in {MIN_AUDIO_RATE}..={MAX_AUDIO_RATE}",
                self.audio_rate
            ));
        }
        Ok(())
    }

    /// Bytes in one packed RGB frame (`width * height * 3`).
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }
}

/// One labelled event of the ground truth: `label` holds on `[start_s, end_s)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundTruth {
    /// One of [`LABELS`] (never `"background"` in a timeline).
    pub label: String,
    /// Start of the event in seconds from the start of the scene (inclusive).
    pub start_s: f64,
    /// End of the event in seconds (exclusive).
    pub end_s: f64,
}

/// A planned synthetic scene: render frames and audio from it, in any order.
#[derive(Debug, Clone)]
pub struct Scene {
    config: SceneConfig,
    plan: Plan,
    timeline: Vec<GroundTruth>,
    num_frames: u64,
    num_audio_samples: u64,
}

impl Scene {
    /// Plans the scene described by `cfg` (validated first; errors name the bad field).
    pub fn generate(cfg: &SceneConfig) -> crate::Result<Scene> {
        cfg.validate()?;
        let plan = Plan::new(cfg);
        let timeline = plan
            .segments
            .iter()
            .filter_map(|segment| segment.action.as_ref())
            .map(|action| GroundTruth {
                label: LABELS[action.class].to_string(),
                start_s: action.start_s,
                end_s: action.end_s,
            })
            .collect();
        // A frame shows [i/fps, (i+1)/fps); enough frames to cover the whole duration.
        let frames = (cfg.duration_s * f64::from(cfg.fps) - 1e-9).ceil().max(1.0);
        let samples = (cfg.duration_s * f64::from(cfg.audio_rate))
            .round()
            .max(1.0);
        Ok(Scene {
            config: cfg.clone(),
            plan,
            timeline,
            num_frames: frames as u64,
            num_audio_samples: samples as u64,
        })
    }

    /// The configuration the scene was generated from.
    pub fn config(&self) -> &SceneConfig {
        &self.config
    }

    /// The non-background events, sorted by start and never overlapping.
    pub fn timeline(&self) -> &[GroundTruth] {
        &self.timeline
    }

    /// The label that holds at time `t_s` (seconds); `"background"` between events
    /// and outside the scene.
    pub fn label_at(&self, t_s: f64) -> &'static str {
        LABELS[self.class_at(t_s)]
    }

    /// The index in [`LABELS`] of the class that holds at time `t_s`.
    pub fn class_at(&self, t_s: f64) -> usize {
        let index = self
            .plan
            .segment_index_at(t_s)
            .and_then(|i| self.plan.segments.get(i));
        match index.and_then(|segment| segment.action.as_ref()) {
            Some(action) if t_s >= action.start_s && t_s < action.end_s => action.class,
            _ => BACKGROUND,
        }
    }

    /// Number of video frames: frame `i` shows time `i / fps`.
    pub fn num_frames(&self) -> u64 {
        self.num_frames
    }

    /// Number of audio samples at `audio_rate` (the duration rounded to a sample).
    pub fn num_audio_samples(&self) -> u64 {
        self.num_audio_samples
    }

    /// Renders frame `index` (time `index / fps`) as packed RGB into `rgb`, which
    /// should hold `width * height * 3` bytes. A pure function of the config and
    /// `index`. A shorter buffer gets only the whole rows that fit; bytes past one
    /// frame are left untouched.
    pub fn render_frame(&self, index: u64, rgb: &mut [u8]) {
        let t_s = index as f64 / f64::from(self.config.fps);
        let segment = self.segment_at(t_s);
        video::render(&self.config, segment, t_s, rgb);
    }

    /// Renders mono audio in [-1, 1] from sample `start_sample` into `out`. A pure
    /// function of the config and the sample indices (the split into calls does not
    /// matter); samples at or past [`Scene::num_audio_samples`] are silence.
    pub fn render_audio(&self, start_sample: u64, out: &mut [f32]) {
        audio::render(
            &self.plan,
            &self.config,
            self.num_audio_samples,
            start_sample,
            out,
        );
    }

    fn segment_at(&self, t_s: f64) -> &Segment {
        let index = self.plan.segment_index_at(t_s).unwrap_or(0);
        // `Plan` always holds at least one segment covering all times.
        &self.plan.segments[index.min(self.plan.segments.len() - 1)]
    }
}
