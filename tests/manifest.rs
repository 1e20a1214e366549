//! Model manifests: the shipped bundle parses, and each kind of mistake is refused
//! with a message naming the key or input.

use avaction::frontend::image::{Crop, PreprocessConfig, ResizeFilter, ResizeTo};
use avaction::model::{Bundle, Manifest};
use avaction::ErrorKind;

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/cavnet-small/model.toml"
);

fn shipped() -> String {
    std::fs::read_to_string(SHIPPED).expect("shipped manifest")
}

fn refused(text: &str) -> String {
    let e = Manifest::parse(text).expect_err("manifest should be refused");
    assert_eq!(e.kind(), ErrorKind::Model);
    e.to_string()
}

#[test]
fn shipped_manifest_is_valid() {
    let m = Manifest::parse(&shipped()).expect("valid");
    assert_eq!(m.frame_size(), (64, 64));
    assert_eq!(m.window.frames, 16);
    assert!(m.flow().is_some() && m.logmel().is_some() && m.image().is_some());
}

#[test]
fn shipped_bundle_loads() {
    let b =
        Bundle::load(concat!(env!("CARGO_MANIFEST_DIR"), "/models/cavnet-small")).expect("bundle");
    assert_eq!(b.labels.len(), 6);
    assert_eq!(b.labels[0], "background");
}

#[test]
fn unknown_key_is_named() {
    let text = shipped().replace("hop_frames = 2", "hop_frames = 2\nhop_frame = 3");
    let msg = refused(&text);
    assert!(msg.contains("hop_frame"), "{msg}");
}

#[test]
fn unknown_input_key_is_named() {
    let text = shipped().replace(
        "estimator = \"dis-fast\"",
        "estimator = \"dis-fast\"\nclip = 3",
    );
    let msg = refused(&text);
    assert!(msg.contains("clip"), "{msg}");
}

#[test]
fn shape_disagreeing_with_window_is_refused() {
    let text = shipped().replace("shape = [1, 16, 3, 64, 64]", "shape = [1, 8, 3, 64, 64]");
    let msg = refused(&text);
    assert!(
        msg.contains("`frames`") && msg.contains("[1, 16, 3, H, W]"),
        "{msg}"
    );
}

#[test]
fn flow_without_estimator_is_refused() {
    let text = shipped().replace("estimator = \"dis-fast\"\n", "");
    let msg = refused(&text);
    assert!(msg.contains("`flow`") && msg.contains("estimator"), "{msg}");
}

#[test]
fn bad_thresholds_are_refused() {
    let text = shipped().replace("exit = 0.35", "exit = 0.9");
    let msg = refused(&text);
    assert!(msg.contains("exit"), "{msg}");
}

#[test]
fn mel_bins_must_match_shape() {
    let text = shipped().replace("num_mel_bins = 128", "num_mel_bins = 64");
    let msg = refused(&text);
    assert!(msg.contains("num_mel_bins"), "{msg}");
}

#[test]
fn missing_bundle_and_missing_graph_are_named() {
    let e = Bundle::load("no/such/bundle").expect_err("missing");
    assert!(e.to_string().contains("no/such/bundle"), "{e}");
    let dir = std::env::temp_dir().join(format!("avaction-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.toml"), shipped()).unwrap();
    std::fs::write(dir.join("labels.txt"), "a\nb\n").unwrap();
    let e = Bundle::load(&dir).expect_err("no graph");
    assert!(e.to_string().contains("model.onnx"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn without_a_video_table_capture_is_the_model_size() {
    let m = Manifest::parse(&shipped()).expect("valid");
    assert!(m.video.is_none() && m.preprocess().is_none());
    assert_eq!(m.capture_size(), m.frame_size());
    let v = m.video_config();
    assert_eq!((v.width, v.height), (64, 64));
    assert!(m.window_config().preprocess.is_none());
}

#[test]
fn a_video_table_captures_larger_and_preprocesses_in_the_runtime() {
    let text = format!(
        "{}\n[video]\ncapture = [160, 120]\nresize = \"area\"\nresize_to = 72\ncrop = \"center\"\n",
        shipped()
    );
    let m = Manifest::parse(&text).expect("valid");
    assert_eq!(m.capture_size(), (160, 120));
    assert_eq!(m.frame_size(), (64, 64));
    let v = m.video_config();
    assert_eq!((v.width, v.height), (160, 120));
    let w = m.window_config();
    assert_eq!((w.width, w.height), (64, 64));
    let p = m.preprocess().expect("preprocess");
    assert_eq!(w.preprocess, Some(p));
    assert_eq!(p.resize, ResizeFilter::Area);
    assert_eq!(p.resize_to, Some(ResizeTo::ShortSide(72)));
    assert_eq!(p.crop, Crop::Center);
    let g = p.geometry((160, 120), (64, 64)).expect("geometry");
    assert_eq!((g.resized, g.offset), ((96, 72), (16, 4)));

    // Defaults: bilinear, resized straight to the model size (a stretch), centre crop.
    let text = format!("{}\n[video]\ncapture = [320, 240]\n", shipped());
    let p = Manifest::parse(&text)
        .expect("valid")
        .preprocess()
        .expect("some");
    assert_eq!(p, PreprocessConfig::default());
}

#[test]
fn bad_video_tables_are_refused() {
    for (table, expected) in [
        ("capture = [160, 120]\nsize = 3", "size"),
        ("resize_to = 72", "capture"),
        ("capture = [160, 120]\nresize = \"cubic\"", "cubic"),
        ("capture = [160, 120]\ncrop = \"middle\"", "middle"),
        ("capture = [0, 120]", "0 x 120"),
        (
            "capture = [160, 120]\nresize_to = 48",
            "smaller than the 64 x 64",
        ),
        (
            "capture = [160, 120]\nresize_to = [96, 72]\ncrop = \"none\"",
            "crop = \"none\"",
        ),
    ] {
        let msg = refused(&format!("{}\n[video]\n{table}\n", shipped()));
        assert!(msg.contains(expected), "{table}: {msg}");
    }
}
