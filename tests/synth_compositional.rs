//! Tests of the compositional synthetic task: the vocabulary, which classes seen and
//! novel scenes draw, determinism, late sounds, crowd noise, screams, the moderation
//! attributes, and `avaction features --task compositional` / `avaction synth`.

mod common;

use avaction::synth::compositional::{
    self, ClassSet, Parts, Sound, ATTRIBUTES, CROWD_NOISE, FALLING_OBJECT, IMPACT, LABELS,
    OUT_OF_SYNC, SCREAM_LIKE,
};
use avaction::synth::{write_ground_truth, GroundTruth, Scene, SceneConfig, Task};
use std::time::Duration;

fn config(seed: u64, duration_s: f64, classes: ClassSet) -> SceneConfig {
    SceneConfig {
        seed,
        duration_s,
        task: Task::Compositional { classes },
        ..SceneConfig::default()
    }
}

fn scene(seed: u64, duration_s: f64, classes: ClassSet) -> Scene {
    Scene::generate(&config(seed, duration_s, classes)).expect("valid config")
}

fn frame(scene: &Scene, index: u64) -> Vec<u8> {
    let mut rgb = vec![0u8; scene.config().frame_bytes()];
    scene.render_frame(index, &mut rgb);
    rgb
}

fn audio_between(scene: &Scene, from_s: f64, to_s: f64) -> Vec<f32> {
    let rate = f64::from(scene.config().audio_rate);
    let start = (from_s * rate).round() as u64;
    let end = (to_s * rate).round() as u64;
    let mut out = vec![0.0f32; end.saturating_sub(start) as usize];
    scene.render_audio(start, &mut out);
    out
}

fn rms(samples: &[f32]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

fn parts(event: &GroundTruth) -> Parts {
    event.parts.expect("compositional events carry their parts")
}

#[test]
fn vocabulary_round_trips_and_held_out_values_stay_seen() {
    let classes = compositional::classes();
    assert_eq!(classes.len(), 32);
    assert_eq!(LABELS.len(), 33);
    assert_eq!(LABELS[0], "nothing happens");
    for parts in &classes {
        let sentence = compositional::sentence(*parts);
        assert_eq!(compositional::parse(sentence), Some(*parts));
        assert_eq!(LABELS[compositional::label_index(*parts)], sentence);
        assert_eq!(compositional::compose(*parts), sentence);
    }
    assert_eq!(
        compositional::sentence(Parts {
            object: compositional::Object::Disc,
            motion: compositional::Motion::Fall,
            sound: Sound::Click,
        }),
        "a disc falls with a click"
    );
    assert_eq!(
        compositional::sentence(Parts {
            object: compositional::Object::Square,
            motion: compositional::Motion::Collide,
            sound: Sound::Thud,
        }),
        "two squares collide with a thud"
    );
    let novel = compositional::novel();
    assert_eq!(novel.len(), 6);
    let seen: Vec<Parts> = classes
        .iter()
        .copied()
        .filter(|p| !compositional::is_novel(*p))
        .collect();
    for object in compositional::OBJECTS {
        assert!(seen.iter().any(|p| p.object == object));
    }
    for motion in compositional::MOTIONS {
        assert!(seen.iter().any(|p| p.motion == motion));
    }
    for sound in compositional::SOUNDS {
        assert!(seen.iter().any(|p| p.sound == sound));
    }
    assert_eq!(
        compositional::novel_indices(),
        novel
            .iter()
            .map(|p| compositional::label_index(*p))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let parts_list = compositional::label_parts();
    assert_eq!(parts_list.len(), LABELS.len());
    assert!(parts_list[0].object.is_none() && parts_list[0].sound.is_none());
}

#[test]
fn config_serde_keeps_basic_configs_as_they_were() {
    let basic = SceneConfig::default();
    let text = serde_json::to_string(&basic).unwrap();
    assert!(!text.contains("task"), "{text}");
    let parsed: SceneConfig =
        serde_json::from_str(r#"{"seed": 3, "task": {"compositional": {"classes": "novel"}}}"#)
            .unwrap();
    assert_eq!(
        parsed.task,
        Task::Compositional {
            classes: ClassSet::Novel
        }
    );
    let round: SceneConfig =
        serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
    assert_eq!(round, parsed);
    let defaulted: SceneConfig =
        serde_json::from_str(r#"{"task": {"compositional": {}}}"#).unwrap();
    assert_eq!(
        defaulted.task,
        Task::Compositional {
            classes: ClassSet::Seen
        }
    );
    assert!(serde_json::from_str::<SceneConfig>(r#"{"task": "pictures"}"#).is_err());
    assert!(serde_json::from_str::<SceneConfig>(
        r#"{"task": {"compositional": {"classes": "unseen"}}}"#
    )
    .is_err());
}

#[test]
fn same_config_same_bytes() {
    let a = scene(9001, 20.0, ClassSet::All);
    let b = scene(9001, 20.0, ClassSet::All);
    assert_eq!(a.timeline(), b.timeline());
    assert_eq!(a.attribute_spans(), b.attribute_spans());
    for index in [0u64, 40, 123, 260, 499] {
        assert_eq!(frame(&a, index), frame(&b, index));
    }
    let total = a.num_audio_samples() as usize;
    let mut whole = vec![0.0f32; total];
    a.render_audio(0, &mut whole);
    // Rendered in odd blocks, by the other scene: the same samples.
    let mut pieces = vec![0.0f32; total];
    let mut start = 0usize;
    let mut block = 1usize;
    while start < total {
        let end = (start + block).min(total);
        b.render_audio(start as u64, &mut pieces[start..end]);
        start = end;
        block = block * 3 + 7;
    }
    assert_eq!(whole, pieces);
    // Another class set, same seed: different events.
    let c = scene(9001, 20.0, ClassSet::Seen);
    assert_ne!(a.timeline(), c.timeline());
}

#[test]
fn seen_scenes_never_draw_novel_classes_and_novel_scenes_only_novel() {
    let mut seen_classes = std::collections::BTreeSet::new();
    let mut late = 0usize;
    let mut events = 0usize;
    for seed in 9000..9040 {
        let s = scene(seed, 120.0, ClassSet::Seen);
        for event in s.timeline() {
            let p = parts(event);
            assert!(
                !compositional::is_novel(p),
                "seed {seed}: novel class {:?} in a seen scene",
                event.label
            );
            assert_eq!(event.label, compositional::sentence(p));
            seen_classes.insert(compositional::label_index(p));
            let delay = event.sound_delay_s.expect("delay recorded");
            assert!(delay == 0.0 || (0.3..=0.5).contains(&delay), "{delay}");
            late += usize::from(delay > 0.0);
            events += 1;
        }
        let n = scene(seed, 120.0, ClassSet::Novel);
        assert!(!n.timeline().is_empty());
        for event in n.timeline() {
            assert!(compositional::is_novel(parts(event)), "{}", event.label);
        }
    }
    // Every seen class occurs, and about a fifth of the events are late.
    assert_eq!(
        seen_classes.into_iter().collect::<Vec<_>>(),
        ClassSet::Seen.label_indices()
    );
    let share = late as f64 / events as f64;
    assert!((0.12..0.28).contains(&share), "late share {share}");
}

#[test]
fn labels_follow_the_timeline() {
    let s = scene(9002, 30.0, ClassSet::All);
    assert_eq!(s.labels(), &LABELS[..]);
    for event in s.timeline() {
        let mid = 0.5 * (event.start_s + event.end_s);
        assert_eq!(s.label_at(mid), event.label);
        assert_eq!(s.class_at(mid), compositional::label_index(parts(event)));
    }
    assert_eq!(s.label_at(-1.0), "nothing happens");
    assert_eq!(s.class_at(1e9), 0);
}

/// Sample index of the loudest sample in `[from_s, to_s)`, in seconds.
fn loudest(s: &Scene, from_s: f64, to_s: f64) -> f64 {
    let samples = audio_between(s, from_s, to_s);
    let (index, _) = samples
        .iter()
        .enumerate()
        .fold((0, 0.0f32), |(bi, bv), (i, &v)| {
            if v.abs() > bv {
                (i, v.abs())
            } else {
                (bi, bv)
            }
        });
    from_s + index as f64 / f64::from(s.config().audio_rate)
}

#[test]
fn impact_sounds_land_on_the_contact_or_late_by_their_delay() {
    let mut checked = [0usize; 2];
    for seed in 9000..9012 {
        let s = scene(seed, 60.0, ClassSet::All);
        for event in s.timeline() {
            let p = parts(event);
            if !matches!(p.sound, Sound::Click | Sound::Thud) {
                continue;
            }
            let delay = event.sound_delay_s.unwrap();
            let to_s = event.end_s + 0.6;
            if s.attributes_in(event.start_s, to_s)[CROWD_NOISE] {
                continue;
            }
            let contact = s.attribute_spans()[IMPACT]
                .iter()
                .find(|(from, _)| (event.start_s..event.end_s).contains(from))
                .map(|span| span.0)
                .expect("impact sounds have a contact");
            let peak = loudest(&s, event.start_s, to_s);
            assert!(
                peak >= contact + delay - 0.002 && peak <= contact + delay + 0.2,
                "seed {seed} {}: loudest at {peak:.3} s, contact {contact:.3} s + delay {delay:.3}",
                event.label
            );
            checked[usize::from(delay > 0.0)] += 1;
        }
    }
    assert!(
        checked[0] > 10 && checked[1] > 2,
        "checked {checked:?} (in sync, late)"
    );
}

#[test]
fn attributes_match_the_plan() {
    let mut seen_late = false;
    let mut seen_fall = false;
    for seed in 9000..9010 {
        let s = scene(seed, 60.0, ClassSet::All);
        let spans = s.attribute_spans();
        for event in s.timeline() {
            let p = parts(event);
            let delay = event.sound_delay_s.unwrap();
            let inside = s.attributes_in(event.start_s, event.end_s);
            // A late event sets out_of_sync over it; an in-sync one only if another
            // late event's sound overlaps (never here: events are far apart).
            assert_eq!(
                inside[OUT_OF_SYNC],
                delay > 0.0,
                "seed {seed} {}",
                event.label
            );
            seen_late |= delay > 0.0;
            // Falls set falling_object from their start, and all falls and collisions
            // have a contact (impact) inside the event.
            let first_frame = s.attributes_in(event.start_s, event.start_s + 0.04);
            assert_eq!(
                first_frame[FALLING_OBJECT],
                p.motion == compositional::Motion::Fall
            );
            seen_fall |= p.motion == compositional::Motion::Fall;
            if matches!(
                p.motion,
                compositional::Motion::Fall | compositional::Motion::Collide
            ) || matches!(p.sound, Sound::Click | Sound::Thud)
            {
                assert!(inside[IMPACT], "seed {seed} {}", event.label);
            } else {
                // Slides with a whoosh or a scream ease to a stop: no contact.
                assert!(!inside[IMPACT], "seed {seed} {}", event.label);
            }
            // Screams are heard during their event (shifted when late).
            if p.sound == Sound::Scream {
                assert!(s.attributes_in(event.start_s, event.end_s + delay)[SCREAM_LIKE]);
            }
        }
        // Windows far from any event and crowd burst have no attribute.
        let quiet = s.attributes_in(-5.0, -1.0);
        assert_eq!(quiet, [false; ATTRIBUTES.len()]);
        // Scream spans belong to scream events.
        for &(from, to) in &spans[SCREAM_LIKE] {
            let owner = s.timeline().iter().any(|e| {
                parts(e).sound == Sound::Scream
                    && from >= e.start_s - 1e-6
                    && to <= e.end_s + e.sound_delay_s.unwrap() + 1e-6
            });
            assert!(
                owner,
                "seed {seed}: scream at {from:.2}-{to:.2} s has no event"
            );
        }
    }
    assert!(seen_late && seen_fall);
}

#[test]
fn screams_and_crowd_noise_are_audible_where_planned() {
    let mut crowd_in_background = 0usize;
    let mut screams = 0usize;
    for seed in 9000..9008 {
        let s = scene(seed, 60.0, ClassSet::All);
        let spans = s.attribute_spans();
        // Ambient level: quiet background stretches.
        let mut quiet = Vec::new();
        for pair in s.timeline().windows(2) {
            let (from, to) = (pair[0].end_s + 0.6, pair[1].start_s - 0.05);
            if to - from > 0.2 && s.attributes_in(from, to) == [false; ATTRIBUTES.len()] {
                quiet.push(rms(&audio_between(&s, from, to)));
            }
        }
        let Some(ambient) = quiet.iter().copied().reduce(f64::max) else {
            continue;
        };
        for &(from, to) in &spans[SCREAM_LIKE] {
            let level = rms(&audio_between(&s, from, to));
            assert!(
                level > 4.0 * ambient,
                "seed {seed}: scream {level} vs {ambient}"
            );
            screams += 1;
        }
        // Stretches between events, clear of their sounds.
        let mut gaps = Vec::new();
        for pair in s.timeline().windows(2) {
            let tail = pair[0].end_s + pair[0].sound_delay_s.unwrap_or(0.0) + 0.3;
            gaps.push((tail, pair[1].start_s));
        }
        for &(from, to) in &spans[CROWD_NOISE] {
            for &(gap_from, gap_to) in &gaps {
                let (a, b) = (from.max(gap_from) + 0.05, to.min(gap_to) - 0.05);
                if b - a > 0.3 {
                    let level = rms(&audio_between(&s, a, b));
                    assert!(
                        level > 2.0 * ambient,
                        "seed {seed}: crowd {level} vs {ambient}"
                    );
                    crowd_in_background += 1;
                }
            }
        }
    }
    assert!(
        screams > 5 && crowd_in_background > 2,
        "{screams} {crowd_in_background}"
    );
}

#[test]
fn ground_truth_json_carries_sentences_parts_and_attribute_spans() {
    let dir = common::temp_dir("synthc-json");
    let s = scene(9003, 30.0, ClassSet::Seen);
    let path = dir.join("truth.json");
    write_ground_truth(&s, &path).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let config: SceneConfig = serde_json::from_value(value["config"].clone()).unwrap();
    assert_eq!(&config, s.config());
    let labels: Vec<String> = serde_json::from_value(value["labels"].clone()).unwrap();
    assert_eq!(labels, LABELS);
    let events: Vec<GroundTruth> = serde_json::from_value(value["events"].clone()).unwrap();
    assert_eq!(events, s.timeline());
    assert_eq!(value["class_parts"].as_array().unwrap().len(), LABELS.len());
    assert!(value["class_parts"][0]["object"].is_null());
    assert_eq!(value["class_parts"][1]["object"], "square");
    let novel: Vec<usize> = serde_json::from_value(value["novel"].clone()).unwrap();
    assert_eq!(novel, compositional::novel_indices());
    for (i, name) in ATTRIBUTES.iter().enumerate() {
        let spans: Vec<(f64, f64)> =
            serde_json::from_value(value["attribute_spans"][name].clone()).unwrap();
        let expected = &s.attribute_spans()[i];
        assert_eq!(spans.len(), expected.len(), "{name}");
        for (a, b) in spans.iter().zip(expected) {
            assert!(
                (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9,
                "{name}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Shape and dtype of an `.npy` file written by `avaction features`.
fn npy_header(path: &std::path::Path) -> (String, Vec<usize>, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    let descr = header.split("'descr': '").nth(1).unwrap();
    let descr = descr[..descr.find('\'').unwrap()].to_string();
    let shape = header.split("'shape': (").nth(1).unwrap();
    let shape: Vec<usize> = shape[..shape.find(')').unwrap()]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (descr, shape, 10 + header_len)
}

#[test]
fn features_cli_writes_a_consistent_compositional_dump() {
    let dir = common::temp_dir("synthc-features");
    let out = dir.join("dump");
    let run = common::avaction(
        &[
            "features",
            "--task",
            "compositional",
            "--classes",
            "seen",
            "--seeds",
            "9004",
            "--duration",
            "6",
            "--hop",
            "4",
            "-o",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let (descr, frames, _) = npy_header(&out.join("frames.npy"));
    assert_eq!(descr, "|u1");
    let n = frames[0];
    assert!(n > 10, "{n} windows");
    assert_eq!(frames, [n, 16, 64, 64, 3]);
    assert_eq!(npy_header(&out.join("flow.npy")).1, [n, 15, 3, 64, 64]);
    assert_eq!(npy_header(&out.join("logmel.npy")).1, [n, 64, 128]);
    let (descr, shape, offset) = npy_header(&out.join("labels.npy"));
    assert_eq!((descr.as_str(), shape), ("<i8", vec![n]));
    let label_bytes = std::fs::read(out.join("labels.npy")).unwrap();
    let labels: Vec<i64> = label_bytes[offset..]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(labels.len(), n);
    let (descr, shape, offset) = npy_header(&out.join("attributes.npy"));
    assert_eq!((descr.as_str(), shape), ("|u1", vec![n, ATTRIBUTES.len()]));
    let attributes = std::fs::read(out.join("attributes.npy")).unwrap()[offset..].to_vec();
    assert_eq!(attributes.len(), n * ATTRIBUTES.len());
    assert!(attributes.iter().all(|&a| a <= 1));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["task"], "compositional");
    assert_eq!(meta["classes"], "seen");
    assert_eq!(meta["flow_estimator"], "dis-fast");
    assert_eq!(meta["windows"], n);
    assert_eq!(meta["scene_seeds"], serde_json::json!([9004]));
    let meta_labels: Vec<String> = serde_json::from_value(meta["labels"].clone()).unwrap();
    assert_eq!(meta_labels, LABELS);
    let names: Vec<String> = serde_json::from_value(meta["attributes"].clone()).unwrap();
    assert_eq!(names, ATTRIBUTES);
    assert_eq!(meta["class_parts"].as_array().unwrap().len(), LABELS.len());
    let novel: Vec<usize> = serde_json::from_value(meta["novel"].clone()).unwrap();
    assert_eq!(novel, compositional::novel_indices());
    // Labels are background or seen classes of this scene, and match its timeline.
    let s = scene(9004, 6.0, ClassSet::Seen);
    let expected: std::collections::BTreeSet<i64> = std::iter::once(0)
        .chain(
            s.timeline()
                .iter()
                .map(|e| compositional::label_index(parts(e)) as i64),
        )
        .collect();
    for label in &labels {
        assert!(
            expected.contains(label),
            "label {label} not in {expected:?}"
        );
        assert!(!novel.contains(&(*label as usize)));
    }
    assert!(labels.iter().any(|&l| l != 0), "no event windows");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn features_and_synth_cli_refuse_bad_task_options() {
    let dir = common::temp_dir("synthc-bad");
    let out = dir.join("dump");
    let out = out.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["features", "--seeds", "1", "--classes", "novel", "-o", out],
            "--classes",
        ),
        (
            vec!["features", "--seeds", "1", "--task", "pictures", "-o", out],
            "pictures",
        ),
        (
            vec![
                "features",
                "--seeds",
                "1",
                "--task",
                "compositional",
                "--classes",
                "unseen",
                "-o",
                out,
            ],
            "unseen",
        ),
        (
            vec![
                "features",
                "--seeds",
                "1",
                "--flow-estimator",
                "farneback",
                "-o",
                out,
            ],
            "farneback",
        ),
        (
            vec![
                "synth",
                "--task",
                "compositional",
                "--classes",
                "some",
                "-o",
                out,
            ],
            "some",
        ),
    ] {
        let run = common::avaction(&args, Duration::from_secs(60));
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn synth_cli_renders_a_compositional_test_scene() {
    let dir = common::temp_dir("synthc-synth");
    let media = dir.join("scene.mkv");
    let run = common::avaction(
        &[
            "synth",
            "--task",
            "compositional",
            "--classes",
            "novel",
            "--seed",
            "9005",
            "--duration",
            "8",
            "-o",
            media.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(std::fs::metadata(&media).unwrap().len() > 1000);
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("scene.json")).unwrap()).unwrap();
    let events: Vec<GroundTruth> = serde_json::from_value(value["events"].clone()).unwrap();
    assert_eq!(events, scene(9005, 8.0, ClassSet::Novel).timeline());
    for event in &events {
        assert!(compositional::is_novel(parts(event)));
        assert!(run.stdout.contains(&event.label), "{}", run.stdout);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
