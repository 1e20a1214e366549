//! Synthetic audio-visual scenes with a ground-truth timeline: moving shapes and
//! synchronised sounds, deterministic from a seed. Used by tests, training
//! (`models/train/`) and the demo when no camera or microphone is present.
//!
//! A [`Scene`] is planned once from a [`SceneConfig`] (seed, duration, size, rates);
//! every video frame and every audio sample is then a pure function of the config
//! and its index, so any part can be rendered on demand, in any order, on any machine.
//! [`Scene::timeline`] lists the non-background events.
//!
//! Two tasks ([`SceneConfig::task`]):
//! - [`Task::Basic`] (the default): the six classes of [`LABELS`] (slides with a whoosh,
//!   drops with a click or a thud, collisions with a thud), bodies of random shapes.
//!   Its output is pinned byte for byte (`models/cavnet-small` was trained on it).
//! - [`Task::Compositional`]: 32 (object, motion, sound) classes told as sentences
//!   ([`compositional::LABELS`]), drawn from a [`ClassSet`] (seen classes, the held-out
//!   novel ones, or all); 20 % of events have their sounds 0.3-0.5 s late, and 25 % of
//!   segments carry crowd babble regardless of their event.
//!
//! For both, [`Scene::attributes_in`] gives the moderation attributes of a window
//! ([`compositional::ATTRIBUTES`]), read off the plan.

pub mod compositional;

mod audio;
mod detmath;
mod media;
mod output;
mod plan;
mod rng;
mod video;

pub use media::{render_to_file, write_media};
pub use output::{write_ground_truth, write_wav};

pub use compositional::ClassSet;

use compositional::{Parts, ATTRIBUTES};
use plan::{Plan, Segment, Voice};

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

/// Which classes a scene's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Task {
    /// The six classes of [`LABELS`] (the default).
    #[default]
    Basic,
    /// The (object, motion, sound) classes of [`compositional::LABELS`], drawn from
    /// `classes`, with late sounds and crowd noise.
    Compositional {
        /// Which classes the events are drawn from.
        #[serde(default)]
        classes: ClassSet,
    },
}

impl Task {
    /// Whether this is [`Task::Basic`].
    pub fn is_basic(&self) -> bool {
        *self == Task::Basic
    }

    /// The task's label list: [`LABELS`] or [`compositional::LABELS`]; index 0 is
    /// background in both.
    pub fn labels(&self) -> &'static [&'static str] {
        match self {
            Task::Basic => &LABELS,
            Task::Compositional { .. } => &compositional::LABELS,
        }
    }

    /// `"basic"` or `"compositional"`.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Basic => "basic",
            Task::Compositional { .. } => "compositional",
        }
    }
}

/// What to generate: seed, length, picture size, rates and task.
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
    /// Which classes the events come from (default [`Task::Basic`]; left out of the
    /// serialised config when basic, so basic configs read and write as before).
    #[serde(skip_serializing_if = "Task::is_basic")]
    pub task: Task,
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
            task: Task::Basic,
        }
    }
}

impl SceneConfig {
    /// Checks every field; the error names the field, its value and the allowed range.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) naming the first field out of range.
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
    /// One of the task's labels ([`LABELS`] or the sentences of
    /// [`compositional::LABELS`]; never background in a timeline).
    pub label: String,
    /// Start of the event in seconds from the start of the scene (inclusive).
    pub start_s: f64,
    /// End of the event in seconds (exclusive).
    pub end_s: f64,
    /// Compositional task: the event's object, motion and sound (absent for basic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Parts>,
    /// Compositional task: how late the sounds are behind the picture, in seconds
    /// (0 = in sync; absent for basic, whose sounds are always in sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sound_delay_s: Option<f64>,
}

/// Time spans, `[from_s, to_s)` each, where one moderation attribute holds.
pub type Spans = Vec<(f64, f64)>;

/// A planned synthetic scene: render frames and audio from it, in any order.
#[derive(Debug, Clone)]
pub struct Scene {
    config: SceneConfig,
    plan: Plan,
    timeline: Vec<GroundTruth>,
    spans: [Spans; ATTRIBUTES.len()],
    num_frames: u64,
    num_audio_samples: u64,
}

impl Scene {
    /// Plans the scene described by `cfg` (validated first; errors name the bad field).
    ///
    /// # Errors
    /// As [`SceneConfig::validate`].
    pub fn generate(cfg: &SceneConfig) -> crate::Result<Scene> {
        cfg.validate()?;
        let plan = Plan::new(cfg);
        let labels = cfg.task.labels();
        let basic = cfg.task.is_basic();
        let timeline = plan
            .segments
            .iter()
            .filter_map(|segment| segment.action.as_ref())
            .map(|action| GroundTruth {
                label: labels[action.class].to_string(),
                start_s: action.start_s,
                end_s: action.end_s,
                parts: action.parts,
                sound_delay_s: (!basic).then_some(action.sound_delay_s),
            })
            .collect();
        let spans = attribute_spans(&plan, cfg);
        // A frame shows [i/fps, (i+1)/fps); enough frames to cover the whole duration.
        let frames = (cfg.duration_s * f64::from(cfg.fps) - 1e-9).ceil().max(1.0);
        let samples = (cfg.duration_s * f64::from(cfg.audio_rate))
            .round()
            .max(1.0);
        Ok(Scene {
            config: cfg.clone(),
            plan,
            timeline,
            spans,
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

    /// The task's label list ([`Task::labels`]); class indices index it.
    pub fn labels(&self) -> &'static [&'static str] {
        self.config.task.labels()
    }

    /// The label that holds at time `t_s` (seconds); background between events
    /// and outside the scene.
    pub fn label_at(&self, t_s: f64) -> &'static str {
        self.labels()[self.class_at(t_s)]
    }

    /// The index in [`Scene::labels`] of the class that holds at time `t_s`.
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

    /// The moderation attributes ([`ATTRIBUTES`], same order) of the window
    /// `[start_s, end_s)`: attribute `a` is set when one of its spans
    /// ([`Scene::attribute_spans`]) overlaps the window. The spans, from the plan:
    /// - `impact`: `[c, c + 1/fps)` for each visual contact `c` (a fall's first
    ///   landing, a collision's contact, a slide's abrupt stop; only compositional
    ///   slides with a click or thud stop abruptly), i.e. the contact frame lies in
    ///   the window.
    /// - `fast_motion`: `[i/fps, (i+1)/fps)` for each frame `i` from which some moving
    ///   body travels more than [`compositional::FAST_MOTION_WIDTHS_PER_S`] frame widths
    ///   per second to frame `i + 1`.
    /// - `falling_object`: from the start of a fall to its first landing.
    /// - `scream_like`: each scream sound, from its first to its last sample.
    /// - `crowd_noise`: each crowd babble burst.
    /// - `out_of_sync`: each event whose sounds are late, from its start to the later
    ///   of its end and its last sound's end.
    pub fn attributes_in(&self, start_s: f64, end_s: f64) -> [bool; ATTRIBUTES.len()] {
        self.spans
            .each_ref()
            .map(|spans| spans.iter().any(|&(from, to)| from < end_s && to > start_s))
    }

    /// The spans of every attribute, in the order of [`ATTRIBUTES`], each sorted by
    /// start (see [`Scene::attributes_in`] for what they are).
    pub fn attribute_spans(&self) -> &[Spans; ATTRIBUTES.len()] {
        &self.spans
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

/// Reads the attribute spans off the plan (see [`Scene::attributes_in`]).
fn attribute_spans(plan: &Plan, cfg: &SceneConfig) -> [Spans; ATTRIBUTES.len()] {
    use compositional::{
        CROWD_NOISE, FALLING_OBJECT, FAST_MOTION, FAST_MOTION_WIDTHS_PER_S, IMPACT, OUT_OF_SYNC,
        SCREAM_LIKE,
    };
    let mut spans: [Spans; ATTRIBUTES.len()] = Default::default();
    let fps = f64::from(cfg.fps);
    let rate = f64::from(cfg.audio_rate);
    // Largest distance between two frames that is not fast, in pixels.
    let fast_step = FAST_MOTION_WIDTHS_PER_S * f64::from(cfg.width) / fps;
    for action in plan.segments.iter().filter_map(|s| s.action.as_ref()) {
        if let Some(contact) = action.contact_s {
            spans[IMPACT].push((contact, contact + 1.0 / fps));
        }
        if let Some(falling) = action.falling {
            spans[FALLING_OBJECT].push(falling);
        }
        if action.sound_delay_s > 0.0 {
            spans[OUT_OF_SYNC].push((action.start_s, action.end_s.max(action.sound_end_s)));
        }
        let first = (action.start_s * fps).floor().max(0.0) as u64;
        let last = (action.end_s * fps).ceil() as u64;
        for i in first..last {
            let (t0, t1) = (i as f64 / fps, (i + 1) as f64 / fps);
            let fast = (0..action.bodies.len()).any(|body| {
                let (x0, y0) = action.position(body, t0);
                let (x1, y1) = action.position(body, t1);
                ((x1 - x0) * (x1 - x0) + (y1 - y0) * (y1 - y0)).sqrt() > fast_step
            });
            if fast {
                push_merged(&mut spans[FAST_MOTION], t0, t1);
            }
        }
    }
    for sound in &plan.sounds {
        let attribute = match sound.voice {
            Voice::Scream { .. } => SCREAM_LIKE,
            Voice::Babble { .. } => CROWD_NOISE,
            _ => continue,
        };
        let from = sound.start_sample as f64 / rate;
        let to = (sound.start_sample + sound.len_samples) as f64 / rate;
        spans[attribute].push((from, to));
    }
    for list in &mut spans {
        list.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    spans
}

/// Appends `[from, to)` to sorted spans, joining it to the last span when they touch.
fn push_merged(spans: &mut Spans, from: f64, to: f64) {
    match spans.last_mut() {
        Some(last) if from <= last.1 + 1e-9 => last.1 = last.1.max(to),
        _ => spans.push((from, to)),
    }
}
