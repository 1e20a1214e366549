//! `avaction features`: renders synthetic scenes, decodes them through the same
//! GStreamer capture, window scheduler and frontends the runtime uses, and dumps
//! the windows with their ground-truth labels as `.npy` files for training.
//!
//! Dump format v2 (read by `models/train`): `frames.npy`, `flow.npy`, `logmel.npy`,
//! `labels.npy` (int64, index into meta.json `labels`), `attributes.npy` (uint8
//! `[N, A]`, multi-hot over meta.json `attributes`), `times.npy` (f64 `[N, 3]`:
//! window start, end, scene seed) and `meta.json` (`task`, `labels`, `attributes`,
//! `scene_seeds`, `flow_estimator`, `duration_s`, `hop_frames`, `windows`, `manifest`;
//! compositional dumps add `class_parts`, `novel` and `classes`).

use crate::npy::NpyWriter;
use avaction::capture::video::VideoCapture;
use avaction::capture::{CaptureStats, VideoSource};
use avaction::clock::Timeline;
use avaction::frontend::flow::{FlowEncoding, ESTIMATOR_NAMES};
use avaction::infer::plan;
use avaction::model::{Frontend, Manifest};
use avaction::synth::compositional::{self, ClassSet, ATTRIBUTES};
use avaction::synth::{self, Scene, SceneConfig, Task};
use avaction::window::{WindowConfig, WindowFlow, WindowScheduler, WindowStream, WindowStreamStep};
use avaction::Result;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Label of a window (an index into [`Scene::labels`]): the event covering at least
/// half of it, else background.
pub fn window_label(scene: &Scene, start_s: f64, end_s: f64) -> usize {
    let len = (end_s - start_s).max(1e-9);
    for ev in scene.timeline() {
        let overlap = ev.end_s.min(end_s) - ev.start_s.max(start_s);
        if overlap >= 0.5 * len {
            return scene
                .labels()
                .iter()
                .position(|l| *l == ev.label)
                .unwrap_or(0);
        }
    }
    0
}

/// The task named by `--task` (`basic` or `compositional`) and `--classes` (`seen`,
/// `novel` or `all`; compositional only, default `seen`).
pub fn parse_task(task: &str, classes: Option<&str>) -> Result<Task> {
    match (task, classes) {
        ("basic", None) => Ok(Task::Basic),
        ("basic", Some(_)) => Err(err!(
            Config,
            "--classes only applies to --task compositional"
        )),
        ("compositional", classes) => Ok(Task::Compositional {
            classes: classes.map_or(Ok(ClassSet::Seen), ClassSet::parse)?,
        }),
        (other, _) => Err(err!(
            Config,
            "--task {other:?}: valid tasks are basic, compositional"
        )),
    }
}

/// Makes the manifest's flow input use estimator `name` (e.g. `tvl1`) instead of its
/// own; TV-L1 parameters of the manifest are kept only when `name` is `tvl1`.
pub fn override_flow_estimator(manifest: &mut Manifest, name: &str) -> Result<()> {
    if !ESTIMATOR_NAMES.contains(&name) {
        return Err(err!(
            Config,
            "--flow-estimator {name:?}: valid names are {}",
            ESTIMATOR_NAMES.join(", ")
        ));
    }
    let input = manifest
        .inputs
        .iter_mut()
        .find(|i| i.frontend == Frontend::Flow)
        .ok_or_else(|| {
            err!(
                Config,
                "--flow-estimator: manifest {:?} has no flow input",
                manifest.name
            )
        })?;
    input.estimator = Some(name.to_string());
    if name != "tvl1" {
        input.tvl1 = None;
    }
    Ok(())
}

/// Dumps windows of the scenes `seeds` (each `duration_s` long, of `task`) into `out`.
pub fn dump(
    manifest: &Manifest,
    seeds: &[u64],
    duration_s: f64,
    hop: usize,
    task: Task,
    out: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| err!(Io, "{}", out.display()).caused_by(e))?;
    let (w, h) = manifest.frame_size();
    let (w, h) = (w as usize, h as usize);
    let t = manifest.window.frames;
    let logmel = manifest
        .logmel()
        .ok_or_else(|| err!(Config, "features: the manifest has no logmel input"))?;
    let mut frames = NpyWriter::create(&out.join("frames.npy"), "|u1", &[t, h, w, 3])?;
    let float_flow = matches!(
        manifest.flow().map(|f| f.encoding),
        Some(FlowEncoding::Float)
    );
    let mut flow = if float_flow {
        NpyWriter::create(&out.join("flow.npy"), "<f4", &[t - 1, 2, h, w])?
    } else {
        NpyWriter::create(&out.join("flow.npy"), "|u1", &[t - 1, 3, h, w])?
    };
    let mut mel = NpyWriter::create(
        &out.join("logmel.npy"),
        "<f4",
        &[logmel.frames, logmel.fbank.num_features()],
    )?;
    let mut labels = NpyWriter::create(&out.join("labels.npy"), "<i8", &[])?;
    let mut attributes =
        NpyWriter::create(&out.join("attributes.npy"), "|u1", &[ATTRIBUTES.len()])?;
    let mut times = NpyWriter::create(&out.join("times.npy"), "<f8", &[3])?;
    for &seed in seeds {
        let media = out.join(format!("scene-{seed}.mkv"));
        eprintln!(
            "features: seed {seed}: rendering {duration_s} s to {}",
            media.display()
        );
        let config = SceneConfig {
            seed,
            duration_s,
            task,
            ..SceneConfig::default()
        };
        let scene = synth::render_to_file(&config, &media)?;
        let (tx, rx) = mpsc::sync_channel(64);
        let vcfg = plan::video_config(manifest);
        let mut capture = VideoCapture::start(
            &VideoSource::Uri(media.display().to_string()),
            &vcfg,
            Timeline::start(),
            tx,
            Arc::new(CaptureStats::default()),
        )?;
        let scheduler = WindowScheduler::new(WindowConfig {
            hop_frames: hop,
            mel_history: 4000,
            ..plan::window_config(manifest)
        })?;
        let mut stream = WindowStream::new(scheduler, rx);
        let mut count = 0;
        let mut last_window = Instant::now();
        loop {
            let win = match stream.next(Duration::from_millis(100), &|| None)? {
                WindowStreamStep::Window(w) => w,
                WindowStreamStep::Ended => break,
                WindowStreamStep::VideoReady(_) => continue,
                WindowStreamStep::Pending => {
                    // a window takes several capture events: give up only after 30 s
                    // with no window at all
                    if last_window.elapsed() >= Duration::from_secs(30) {
                        return Err(err!(
                            Video,
                            "features: no window from {} for 30 s",
                            media.display()
                        ));
                    }
                    continue;
                }
            };
            last_window = Instant::now();
            let (s, e) = (win.t_start.as_secs_f64(), win.t_end.as_secs_f64());
            if win.audio_missing > 0 {
                log::warn!(
                    "seed {seed}: window at {s:.2}s lacks {} mel frames; skipped",
                    win.audio_missing
                );
                continue;
            }
            frames.push_bytes(&win.frames)?;
            match &win.flow {
                WindowFlow::Float(uv) if float_flow => flow.push_f32(uv)?,
                WindowFlow::Mov(mov) if !float_flow => flow.push_bytes(mov)?,
                _ => {
                    return Err(err!(
                        Model,
                        "features: the window's flow is not the model's"
                    ))
                }
            }
            mel.push_f32(&win.logmel)?;
            labels.push_bytes(&(window_label(&scene, s, e) as i64).to_le_bytes())?;
            attributes.push_bytes(&scene.attributes_in(s, e).map(u8::from))?;
            times.push_bytes(
                &[
                    s.to_le_bytes(),
                    e.to_le_bytes(),
                    (seed as f64).to_le_bytes(),
                ]
                .concat(),
            )?;
            count += 1;
        }
        capture.stop();
        let _ = std::fs::remove_file(&media);
        eprintln!("features: seed {seed}: {count} windows");
    }
    let n = frames.finish()?;
    flow.finish()?;
    mel.finish()?;
    labels.finish()?;
    attributes.finish()?;
    times.finish()?;
    let mut meta = serde_json::json!({
        "task": task.name(),
        "labels": task.labels(),
        "attributes": ATTRIBUTES,
        "scene_seeds": seeds,
        "flow_estimator": manifest.flow().map(|f| f.estimator),
        "duration_s": duration_s,
        "hop_frames": hop,
        "windows": n,
        "manifest": manifest.name,
    });
    if let Task::Compositional { classes } = task {
        meta["class_parts"] = serde_json::json!(compositional::label_parts());
        meta["novel"] = serde_json::json!(compositional::novel_indices());
        meta["classes"] = serde_json::json!(classes.name());
    }
    std::fs::write(
        out.join("meta.json"),
        serde_json::to_string_pretty(&meta).unwrap_or_default(),
    )
    .map_err(|e| err!(Io, "{}", out.display()).caused_by(e))?;
    eprintln!("features: wrote {n} windows to {}", out.display());
    Ok(())
}
