//! Issue 14, hostile input: a model bundle is untrusted. Paths that leave the bundle
//! (absolute, `..`, a symlink pointing out), files that are not regular files (a FIFO,
//! `/dev/zero`, a folder), files over their cap, non-finite or out-of-range numbers and
//! huge shapes are refused quickly with a `Model` error naming the manifest, the key and
//! the rule, and never quoting the file. Loads that could hang run on a thread under a
//! deadline. Property tests feed mutated manifests, target profiles and arbitrary bytes
//! to the parsers and readers: Ok or an error, never a panic, within a time bound.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use avaction::model::files::{self, FileKind};
use avaction::model::{limits, Bundle, Limits, Manifest};
use avaction::target::Target;
use avaction::{Error, ErrorKind};
use proptest::prelude::*;

const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
const SHIPPED: [&str; 4] = [
    "cavnet-small",
    "cavnet-ov-small",
    "mov-small",
    "avt-moderation",
];

/// A fresh folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("avaction-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A copy of the shipped bundle `model` (its manifest, graphs, labels, vocabulary) in a
/// fresh folder, with `edit` applied to the manifest text.
fn bundle_copy(name: &str, model: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let from = Path::new(MODELS).join(model);
    let dir = temp_dir(name).join("bundle");
    std::fs::create_dir_all(dir.join("stages")).unwrap();
    for f in [
        "model.onnx",
        "labels.txt",
        "sentences.txt",
        "text_embeddings.f32",
        "stages/head.onnx",
        "stages/video_encoder.onnx",
        "stages/flow_encoder.onnx",
        "stages/audio_encoder.onnx",
    ] {
        if from.join(f).is_file() {
            std::fs::copy(from.join(f), dir.join(f)).unwrap();
        }
    }
    let text = std::fs::read_to_string(from.join("model.toml")).unwrap();
    let edited = edit(text.clone());
    std::fs::write(dir.join("model.toml"), edited).unwrap();
    dir
}

/// Replaces `from` (which must occur) by `to` in a manifest.
fn replace(from: &'static str, to: &'static str) -> impl Fn(String) -> String {
    move |text| {
        assert!(text.contains(from), "test case {from:?} no longer applies");
        text.replacen(from, to, 1)
    }
}

/// `Bundle::load` on a thread: its result, or a failure if it takes over 10 s.
fn load_within(dir: &Path) -> avaction::Result<Bundle> {
    let (tx, rx) = mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(Bundle::load(&dir));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("Bundle::load did not return within 10 s (hung)")
}

/// The error of loading `dir`: a `Model` error naming `model.toml` and each of `needles`.
fn refused(dir: &Path, needles: &[&str]) -> Error {
    let e = load_within(dir).expect_err("the bundle should be refused");
    assert_eq!(e.kind(), ErrorKind::Model, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("model.toml"), "the manifest is named: {msg}");
    for n in needles {
        assert!(msg.contains(n), "{n:?} in {msg}");
    }
    e
}

/// The peak resident memory of this process, in KiB (0 where /proc is absent).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn every_shipped_bundle_still_loads() {
    for model in SHIPPED {
        Bundle::load(Path::new(MODELS).join(model)).expect(model);
    }
}

#[test]
fn labels_dev_zero_is_refused_fast_with_bounded_memory() {
    let before = peak_rss_kib();
    let t0 = Instant::now();
    let dir = bundle_copy("dev-zero", "cavnet-small", |t| {
        t.replace("labels = \"labels.txt\"", "labels = \"/dev/zero\"")
    });
    refused(&dir, &["`labels`", "/dev/zero", "relative"]);
    // the same device behind a symlink inside the bundle
    let dir = bundle_copy("dev-zero-link", "cavnet-small", |t| t);
    std::fs::remove_file(dir.join("labels.txt")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("labels.txt")).unwrap();
    refused(&dir, &["`labels`", "outside the bundle"]);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 256, "peak memory grew by {grown_mib} MiB");
}

#[test]
fn a_fifo_as_labels_is_refused_without_hanging() {
    let dir = bundle_copy("fifo", "cavnet-small", |t| t);
    std::fs::remove_file(dir.join("labels.txt")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("labels.txt"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    refused(&dir, &["`labels`", "regular file"]);
    // a manifest or a target profile that is a FIFO: refused too, no hang
    let fifo = dir.join("labels.txt");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let m = Manifest::load(&fifo).map(|_| ());
        let t = Target::load(&fifo).map(|_| ());
        let _ = tx.send((m, t));
    });
    let (m, t) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("Manifest::load / Target::load hung on a FIFO");
    let m = m.expect_err("a FIFO manifest");
    assert_eq!(m.kind(), ErrorKind::Model);
    assert!(m.to_string().contains("regular file"), "{m}");
    let t = t.expect_err("a FIFO profile");
    assert_eq!(t.kind(), ErrorKind::Config);
    assert!(t.to_string().contains("regular file"), "{t}");
}

#[test]
fn an_absolute_graph_path_is_refused_and_the_file_not_quoted() {
    let dir = bundle_copy("etc-hostname", "cavnet-small", |t| {
        t.replace("graph = \"model.onnx\"", "graph = \"/etc/hostname\"")
    });
    let e = refused(&dir, &["`graph`", "/etc/hostname", "relative"]);
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        let rest = e
            .to_string()
            .replace(&dir.display().to_string(), "")
            .replace("/etc/hostname", "");
        if host.len() >= 6 {
            assert!(!rest.contains(host), "hostname leaked: {e}");
        }
    }
}

#[test]
fn a_parent_escape_is_refused() {
    let dir = bundle_copy("etc-passwd", "cavnet-small", |t| {
        t.replace("graph = \"model.onnx\"", "graph = \"../../../etc/passwd\"")
    });
    let e = refused(&dir, &["`graph`", "`..`"]);
    assert!(!e.to_string().contains("root:"), "passwd leaked: {e}");
    // `..` that would come back inside is refused as well: no path climbs
    let dir = bundle_copy("dotdot-inside", "cavnet-small", |t| {
        t.replace(
            "labels = \"labels.txt\"",
            "labels = \"stages/../labels.txt\"",
        )
    });
    refused(&dir, &["`labels`", "`..`"]);
}

#[test]
fn every_path_key_is_contained() {
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "cavnet-small",
            "labels = \"labels.txt\"",
            "labels = \"/etc/passwd\"",
            "`labels`",
        ),
        (
            "mov-small",
            "head = \"stages/head.onnx\"",
            "head = \"/etc/passwd\"",
            "`stages.head`",
        ),
        (
            "mov-small",
            "graph = \"stages/video_encoder.onnx\"",
            "graph = \"../../etc/passwd\"",
            "`stages.encoders.graph`",
        ),
        (
            "mov-small",
            "sentences = \"sentences.txt\"",
            "sentences = \"/etc/passwd\"",
            "`vocabulary.sentences`",
        ),
        (
            "mov-small",
            "embeddings = \"text_embeddings.f32\"",
            "embeddings = \"../text_embeddings.f32\"",
            "`vocabulary.embeddings`",
        ),
        (
            "cavnet-small",
            "labels = \"labels.txt\"",
            "labels = \"\"",
            "`labels`",
        ),
    ];
    for (k, (model, from, to, key)) in cases.into_iter().enumerate() {
        let dir = bundle_copy(&format!("key-{k}"), model, replace(from, to));
        let e = refused(&dir, &[key]);
        assert!(!e.to_string().contains("root:"), "{e}");
    }
}

#[test]
fn symlinks_must_stay_inside_the_bundle() {
    // a graph that is a symlink to a file outside the bundle
    let dir = bundle_copy("link-out", "cavnet-small", |t| t);
    let outside = dir.parent().unwrap().join("outside.onnx");
    std::fs::rename(dir.join("model.onnx"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("model.onnx")).unwrap();
    refused(&dir, &["`graph`", "outside the bundle"]);
    // a relative symlink climbing out
    std::fs::remove_file(dir.join("model.onnx")).unwrap();
    std::os::unix::fs::symlink("../outside.onnx", dir.join("model.onnx")).unwrap();
    refused(&dir, &["`graph`", "outside the bundle"]);
    // a symlinked model.toml pointing out
    let dir = bundle_copy("link-manifest", "cavnet-small", |t| t);
    let manifest = dir.parent().unwrap().join("model.toml");
    std::fs::rename(dir.join("model.toml"), &manifest).unwrap();
    std::os::unix::fs::symlink(&manifest, dir.join("model.toml")).unwrap();
    let e = load_within(&dir).expect_err("manifest outside");
    assert!(e.to_string().contains("outside the bundle"), "{e}");
    // a symlink that stays inside is fine
    let dir = bundle_copy("link-in", "cavnet-small", |t| t);
    std::fs::rename(dir.join("labels.txt"), dir.join("stages/real-labels.txt")).unwrap();
    std::os::unix::fs::symlink("stages/real-labels.txt", dir.join("labels.txt")).unwrap();
    load_within(&dir).expect("a symlink inside the bundle");
}

#[test]
fn a_folder_is_not_a_file() {
    let dir = bundle_copy("folder", "cavnet-small", |t| {
        t.replace("labels = \"labels.txt\"", "labels = \"stages\"")
    });
    refused(&dir, &["`labels`", "regular file"]);
}

#[test]
fn files_over_their_cap_are_refused_before_reading() {
    let dir = bundle_copy("big-labels", "cavnet-small", |t| t);
    let big = vec![b'a'; limits::MAX_TEXT_BYTES as usize + 1];
    std::fs::write(dir.join("labels.txt"), big).unwrap();
    refused(&dir, &["`labels`", "cap"]);
    // smaller caps through Limits: the graph and the embeddings
    let dir = bundle_copy("caps", "mov-small", |t| t);
    let tight = Limits {
        graph_bytes: 1000,
        ..Limits::DEFAULT
    };
    let e = Bundle::load_with(&dir, &tight).expect_err("graph over the cap");
    assert!(
        e.to_string().contains("`graph`") && e.to_string().contains("1000-byte cap"),
        "{e}"
    );
    let tight = Limits {
        embeddings_bytes: 1000,
        ..Limits::DEFAULT
    };
    let e = Bundle::load_with(&dir, &tight).expect_err("embeddings over the cap");
    assert!(e.to_string().contains("`vocabulary.embeddings`"), "{e}");
    let tight = Limits {
        labels: 2,
        ..Limits::DEFAULT
    };
    let e = Bundle::load_with(&dir, &tight).expect_err("too many labels");
    assert!(e.to_string().contains("more than 2 lines"), "{e}");
    // the reader itself stops past the cap
    let e = files::read_bounded(&dir.join("model.onnx"), FileKind::Text, &Limits::DEFAULT)
        .expect_err("a graph is over the text cap");
    assert!(e.to_string().contains("cap"), "{e}");
}

#[test]
fn label_files_are_text_and_never_quoted() {
    let dir = bundle_copy("binary-labels", "cavnet-small", |t| t);
    std::fs::write(dir.join("labels.txt"), b"secret-one\n\xff\xfe secret-two\n").unwrap();
    let e = load_within(&dir).expect_err("not UTF-8");
    assert!(
        e.to_string().contains("UTF-8") && !e.to_string().contains("secret"),
        "{e}"
    );
    std::fs::write(dir.join("labels.txt"), "secret\x1b[2J\nb\n").unwrap();
    let e = load_within(&dir).expect_err("control character");
    assert!(
        e.to_string().contains("line 1") && !e.to_string().contains("secret"),
        "{e}"
    );
}

#[test]
fn non_finite_embeddings_are_refused() {
    let dir = bundle_copy("nan-embeddings", "mov-small", |t| t);
    let mut bytes = std::fs::read(dir.join("text_embeddings.f32")).unwrap();
    bytes[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(dir.join("text_embeddings.f32"), bytes).unwrap();
    let e = load_within(&dir).expect_err("NaN embedding");
    assert!(
        e.to_string().contains("value 2 is not finite")
            && e.to_string().contains("`vocabulary.embeddings`"),
        "{e}"
    );
}

/// Protobuf bytes of an ONNX model whose one initializer `w` keeps its data in an
/// external file (`location = /etc/passwd`).
fn onnx_with_external_data() -> Vec<u8> {
    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        assert!(bytes.len() < 128);
        let mut out = vec![(tag << 3) | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }
    let entry = [field(1, b"location"), field(2, b"/etc/passwd")].concat();
    let tensor = [
        vec![0x08, 0x01],  // dims = [1]
        vec![0x10, 0x01],  // data_type = FLOAT
        field(8, b"w"),    // name
        field(13, &entry), // external_data
        vec![0x70, 0x01],  // data_location = EXTERNAL
    ]
    .concat();
    let graph = field(5, &tensor); // initializer
    [vec![0x08, 0x07], field(7, &graph)].concat() // ir_version, graph
}

#[test]
fn onnx_external_data_is_refused_naming_the_tensor() {
    let dir = bundle_copy("external-data", "cavnet-small", |t| t);
    std::fs::write(dir.join("model.onnx"), onnx_with_external_data()).unwrap();
    let e = refused(&dir, &["`graph`", "\"w\"", "external"]);
    assert!(!e.to_string().contains("root:"), "{e}");
}

/// The shipped cavnet-small manifest with `from` replaced by `to`: refused, naming `key`.
fn manifest_refused(model: &str, from: &str, to: &str, key: &str) {
    let text = std::fs::read_to_string(Path::new(MODELS).join(model).join("model.toml")).unwrap();
    assert!(text.contains(from), "test case {from:?} no longer applies");
    let t0 = Instant::now();
    let e = Manifest::parse(&text.replacen(from, to, 1))
        .expect_err(&format!("{from} -> {to} should be refused"));
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "{to}: {:?}",
        t0.elapsed()
    );
    assert_eq!(e.kind(), ErrorKind::Model, "{e}");
    assert!(e.to_string().contains(key), "{from} -> {to}: {e}");
}

#[test]
fn non_finite_and_out_of_range_floats_are_refused() {
    let m = "cavnet-small";
    for v in ["nan", "inf", "-inf", "-0.5", "1e9"] {
        manifest_refused(
            m,
            "min_duration_s = 0.2",
            &format!("min_duration_s = {v}"),
            "min_duration_s",
        );
    }
    for v in ["nan", "inf", "-inf"] {
        manifest_refused(m, "enter = 0.6", &format!("enter = {v}"), "enter");
        manifest_refused(m, "exit = 0.35", &format!("exit = {v}"), "exit");
        manifest_refused(m, "bound = 20.0", &format!("bound = {v}"), "bound");
        manifest_refused(m, "std = [2.5004]", &format!("std = [{v}]"), "std");
        manifest_refused(m, "mean = [-6.7485]", &format!("mean = [{v}]"), "mean");
        manifest_refused(
            m,
            "frame_length_ms = 25.0",
            &format!("frame_length_ms = {v}"),
            "frame_length_ms",
        );
        manifest_refused(
            m,
            "frame_shift_ms = 10.0",
            &format!("frame_shift_ms = {v}"),
            "frame_shift_ms",
        );
        manifest_refused(
            "mov-small",
            "temperature = 0.01",
            &format!("temperature = {v}"),
            "temperature",
        );
        manifest_refused(
            "mov-small",
            "weight_novel = 0.25",
            &format!("weight_novel = {v}"),
            "weight",
        );
    }
    manifest_refused(m, "bound = 20.0", "bound = 1e30", "bound");
    manifest_refused(m, "std = [2.5004]", "std = [1e-30]", "std");
    manifest_refused(m, "mean = [-6.7485]", "mean = [1e30]", "mean");
    manifest_refused(
        "mov-small",
        "temperature = 0.01",
        "temperature = 1e30",
        "temperature",
    );
    manifest_refused(
        m,
        "window = \"hamming\"",
        "window = \"hamming\"\npreemphasis = nan",
        "preemphasis",
    );
    manifest_refused(
        m,
        "window = \"hamming\"",
        "window = \"hamming\"\nlow_freq = inf",
        "low_freq",
    );
}

#[test]
fn tvl1_parameters_must_be_finite() {
    let text = std::fs::read_to_string(Path::new(MODELS).join("cavnet-small/model.toml")).unwrap();
    let from = "estimator = \"dis-fast\"\nbound = 20.0\n";
    assert!(text.contains(from));
    for v in ["nan", "inf", "-inf"] {
        for key in ["tau", "lambda", "theta", "gamma", "epsilon", "scale_step"] {
            let bad = text.replace(
                from,
                &format!("estimator = \"tvl1\"\nbound = 20.0\n\n[inputs.tvl1]\n{key} = {v}\n"),
            );
            let e = Manifest::parse(&bad).expect_err(key);
            assert_eq!(e.kind(), ErrorKind::Model);
            assert!(
                e.to_string().contains(key) && e.to_string().contains("`tvl1`"),
                "{e}"
            );
        }
    }
}

#[test]
fn huge_shapes_and_counts_are_refused_without_allocating() {
    let m = "cavnet-small";
    let big = "1000000000";
    let max = "9223372036854775807";
    manifest_refused(m, "frames = 16", "frames = 100000", "frames");
    manifest_refused(m, "hop_frames = 2", "hop_frames = 17", "hop_frames");
    manifest_refused(m, "fps = 25", "fps = 4000000000", "fps");
    manifest_refused(
        m,
        "shape = [1, 16, 3, 64, 64]",
        &format!("shape = [1, 16, 3, {big}, {big}]"),
        "cap",
    );
    manifest_refused(
        m,
        "shape = [1, 16, 3, 64, 64]",
        &format!("shape = [1, 16, 3, {max}, {max}]"),
        "cap",
    );
    manifest_refused(
        m,
        "shape = [1, 64, 128]",
        "shape = [1, 100000000, 128]",
        "cap",
    );
    manifest_refused(
        m,
        "shape = [1, 64, 128]",
        "shape = [1, 100000, 128]",
        "mel frames",
    );
    manifest_refused(m, "shape = [1, 6]", &format!("shape = [1, {big}]"), "cap");
    manifest_refused(m, "shape = [1, 6]", "shape = [1, 1000000]", "classes");
    manifest_refused(m, "smoothing = 3", "smoothing = 1000000000", "smoothing");
    manifest_refused(m, "top_k = 3", &format!("top_k = {max}"), "top_k");
    manifest_refused(
        m,
        "num_mel_bins = 128",
        &format!("num_mel_bins = {max}"),
        "num_mel_bins",
    );
    manifest_refused(
        m,
        "[decoder]",
        "[video]\ncapture = [4000000000, 4000000000]\n[decoder]",
        "capture",
    );
    manifest_refused(
        m,
        "[decoder]",
        "[video]\ncapture = [16000, 16000]\n[decoder]",
        "capture",
    );
    manifest_refused(
        "mov-small",
        "dim = 64\nsegment",
        &format!("dim = {big}\nsegment"),
        "dim",
    );
    manifest_refused(
        "mov-small",
        "shape = [1, 2, 384]",
        "shape = [1, 2, 100000]",
        "dim",
    );
    manifest_refused(
        "mov-small",
        "segment = 4",
        &format!("segment = {max}"),
        "segment",
    );
}

#[test]
fn target_profiles_refuse_hostile_values() {
    let cpu =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("targets/cpu.toml"))
            .unwrap();
    for (from, to, key) in [
        ("threads = 2", "threads = 9223372036854775807", "threads"),
        ("hop_frames = 2", "hop_frames = 100000", "hop_frames"),
        ("fps = 0", "fps = 4294967295", "fps"),
        (
            "fps = 0",
            "fps = 0\ncsi_element = \"nvarguscamerasrc ! filesink location=/tmp/x\"",
            "csi_element",
        ),
    ] {
        assert!(cpu.contains(from), "{from}");
        let e = Target::parse(&cpu.replacen(from, to, 1), "t").expect_err(to);
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains(key), "{e}");
    }
    let dir = temp_dir("target-big");
    let path = dir.join("big.toml");
    std::fs::write(&path, vec![b'#'; limits::MAX_MANIFEST_BYTES as usize + 1]).unwrap();
    let e = Target::load(&path).expect_err("over the cap");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("cap"), "{e}");
}

// ---- properties ------------------------------------------------------------------------

/// Values a mutation puts in place of a number.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|v| if v.is_finite() {
            format!("{v:e}")
        } else {
            format!("{v}").to_lowercase()
        }),
        any::<i64>().prop_map(|v| v.to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("-0.0".to_string()),
        Just("0".to_string()),
        Just("1e308".to_string()),
        Just("9223372036854775807".to_string()),
        Just("[]".to_string()),
        Just("[1, 9223372036854775807, 9223372036854775807]".to_string()),
        Just("\"/dev/zero\"".to_string()),
        (0usize..4).prop_map(|n| n.to_string()),
    ]
}

/// One edit of a TOML text, line by line.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value of the `i`-th `key = value` line.
    Value(usize, String),
    /// Drop the `i`-th line.
    Drop(usize),
    /// Insert `key = value` before the `i`-th line.
    Add(usize, String, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let keys = prop_oneof![
        Just("frames"),
        Just("hop_frames"),
        Just("fps"),
        Just("dim"),
        Just("segment"),
        Just("smoothing"),
        Just("top_k"),
        Just("min_duration_s"),
        Just("bound"),
        Just("encoding"),
        Just("shape"),
        Just("capture"),
        Just("threads"),
        Just("stride"),
        Just("x"),
    ];
    prop_oneof![
        (any::<usize>(), hostile_value()).prop_map(|(i, v)| Mutation::Value(i, v)),
        any::<usize>().prop_map(Mutation::Drop),
        (any::<usize>(), keys, hostile_value()).prop_map(|(i, k, v)| Mutation::Add(
            i,
            k.to_string(),
            v
        )),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        match m {
            Mutation::Value(i, v) => {
                let assignments: Vec<usize> = (0..lines.len())
                    .filter(|&k| lines[k].contains(" = ") && !lines[k].starts_with('#'))
                    .collect();
                if let Some(&k) = assignments.get(i % assignments.len().max(1)) {
                    let key = lines[k].split(" = ").next().unwrap_or("").to_string();
                    lines[k] = format!("{key} = {v}");
                }
            }
            Mutation::Drop(i) => {
                let k = i % lines.len();
                lines.remove(k);
            }
            Mutation::Add(i, key, v) => {
                let k = i % (lines.len() + 1);
                lines.insert(k, format!("{key} = {v}"));
            }
        }
    }
    lines.join("\n")
}

fn shipped_manifests() -> Vec<String> {
    SHIPPED
        .iter()
        .map(|m| std::fs::read_to_string(Path::new(MODELS).join(m).join("model.toml")).unwrap())
        .collect()
}

fn shipped_targets() -> Vec<String> {
    Target::builtin_names()
        .iter()
        .map(|n| {
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("targets/{n}.toml")),
            )
            .unwrap()
        })
        .collect()
}

/// Parses `text` and, when it is accepted, calls the accessors the runtime uses: none may
/// panic, and all of it stays under a second.
fn exercise_manifest(text: &str) {
    let t0 = Instant::now();
    if let Ok(m) = Manifest::parse(text) {
        let _ = (m.frame_size(), m.capture_size(), m.preprocess());
        let _ = (m.flow(), m.logmel(), m.image());
        if let Some(stages) = &m.stages {
            for e in &stages.encoders {
                let _ = stages.tokens_per_window(&m, e);
            }
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_manifests_never_panic(
        which in 0usize..4,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let text = mutate(&shipped_manifests()[which], &mutations);
        exercise_manifest(&text);
    }

    #[test]
    fn mutated_target_profiles_never_panic(
        which in 0usize..6,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let texts = shipped_targets();
        let text = mutate(&texts[which % texts.len()], &mutations);
        let t0 = Instant::now();
        if let Ok(t) = Target::parse(&text, "t") {
            let _ = (t.backend_choice(), t.precision());
        }
        prop_assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn readers_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let t0 = Instant::now();
        if let Ok(lines) = files::parse_lines(&bytes, "x", 100) {
            prop_assert!(lines.len() <= 100);
            prop_assert!(lines.iter().all(|l| !l.is_empty() && l.trim() == l));
        }
        if let Ok(values) = files::parse_f32(&bytes, "x") {
            prop_assert_eq!(values.len() * 4, bytes.len());
            prop_assert!(values.iter().all(|v| v.is_finite()));
        }
        let _ = files::refuse_external_data(&bytes, "x");
        prop_assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn readers_take_any_text(text in "(\\PC|\\n|\\r|\\t|\\x1b){0,400}") {
        if let Ok(lines) = files::parse_lines(text.as_bytes(), "x", 100_000) {
            prop_assert!(lines.iter().all(|l| !l.chars().any(|c| c.is_control() && c != '\t')));
        }
    }
}
