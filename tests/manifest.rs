//! Model manifests: the shipped bundle parses, and each kind of mistake is refused
//! with a message naming the key or input.

use avaction::frontend::image::{Crop, PreprocessConfig, ResizeFilter, ResizeTo};
use avaction::infer::plan;
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

/// The shipped manifest with its flow input switched to float displacements.
fn float_flow_manifest() -> String {
    shipped()
        .replace("shape = [1, 15, 3, 64, 64]", "shape = [1, 15, 2, 64, 64]")
        .replace(
            "mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]",
            "mean = [0.0, 0.0]\nstd = [4.0, 4.0]",
        )
        .replace("bound = 20.0\n", "encoding = \"float\"\n")
}

#[test]
fn float_flow_needs_two_channels_and_no_bound() {
    let m = Manifest::parse(&float_flow_manifest()).expect("valid");
    assert_eq!(
        m.flow().map(|f| f.encoding),
        Some(avaction::frontend::flow::FlowEncoding::Float)
    );
    let three =
        float_flow_manifest().replace("shape = [1, 15, 2, 64, 64]", "shape = [1, 15, 3, 64, 64]");
    let msg = refused(&three);
    assert!(msg.contains("[1, 15, 2, H, W]"), "{msg}");
    let bounded = float_flow_manifest().replace(
        "encoding = \"float\"\n",
        "encoding = \"float\"\nbound = 20.0\n",
    );
    // version 1 refuses a bound on float flow; version 2 clips float flow with it
    let msg = refused(&bounded);
    assert!(
        msg.contains("bound") && msg.contains("manifest_version = 2"),
        "{msg}"
    );
    let v2 = format!("manifest_version = 2\n{bounded}");
    let m = Manifest::parse(&v2).expect("version 2 clips float flow");
    assert_eq!(m.flow().and_then(|f| f.clip), Some(20.0));
    let unknown = float_flow_manifest().replace("encoding = \"float\"", "encoding = \"half\"");
    assert!(Manifest::parse(&unknown).is_err());
}

/// Frames of a texture sliding 2 px right per frame go through the scheduler of a float-flow
/// manifest and the input assembler: the flow tensor holds `(u - 0) / 4 ~ 0.5` and `v ~ 0`
/// away from the borders.
#[test]
fn float_flow_reaches_the_model_input_in_pixels() {
    use avaction::infer::InputAssembler;
    use avaction::window::WindowFlow;

    let m = Manifest::parse(&float_flow_manifest()).expect("valid");
    let window = sliding_texture_window(&m);
    let WindowFlow::Float(uv) = &window.flow else {
        panic!("float flow expected, got {:?}", window.flow.len())
    };
    assert_eq!(uv.len(), 15 * 2 * 64 * 64);
    let mut assembler = InputAssembler::new(&m);
    let tensors = assembler.fill(&window).expect("assemble");
    let flow = &tensors[1];
    assert_eq!(flow.shape, vec![1, 15, 2, 64, 64]);
    let plane = 64 * 64;
    // Last field, centre 32x32: u/4 ~ 0.5, v/4 ~ 0.
    let field = &flow.data[14 * 2 * plane..15 * 2 * plane];
    let (u, v) = (centre(&field[..plane], 1), centre(&field[plane..], 1));
    assert!((u - 0.5).abs() < 0.05 && v.abs() < 0.05, "u {u} v {v}");
}

/// The mean of the centre 32x32 of a 64x64 plane whose values are `step` apart.
fn centre(p: &[f32], step: usize) -> f32 {
    let mut sum = 0.0;
    for y in 16..48 {
        for x in 16..48 {
            sum += p[(y * 64 + x) * step];
        }
    }
    sum / 1024.0
}

/// Version 2's `dxdy_magnitude` with `scale` and `bound`, channels last: the texture moves
/// 2 px a frame, scaled by 0.5 to 1 px and clipped to 0.8 (the magnitude too).
#[test]
fn dxdy_magnitude_is_scaled_clipped_and_laid_out() {
    use avaction::infer::InputAssembler;
    let text = format!(
        "manifest_version = 2\n{}",
        float_flow_manifest()
            .replace(
                "shape = [1, 15, 2, 64, 64]",
                "layout = \"NTHWC\"\nshape = [1, 15, 64, 64, 3]"
            )
            .replace(
                "mean = [0.0, 0.0]\nstd = [4.0, 4.0]",
                "mean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]"
            )
            .replace(
                "encoding = \"float\"\n",
                "encoding = \"dxdy_magnitude\"\nscale = 0.5\nbound = 0.8\n"
            )
    );
    let m = Manifest::parse(&text).expect("valid version 2");
    let window = sliding_texture_window(&m);
    let tensors = InputAssembler::new(&m)
        .fill(&window)
        .expect("assemble")
        .to_vec();
    let flow = &tensors[1];
    assert_eq!(flow.shape, vec![1, 15, 64, 64, 3]);
    let field = &flow.data[14 * 3 * 64 * 64..];
    let (u, v, mag) = (
        centre(field, 3),
        centre(&field[1..], 3),
        centre(&field[2..], 3),
    );
    assert!((u - 0.8).abs() < 0.02, "u {u}");
    assert!(v.abs() < 0.05, "v {v}");
    assert!((mag - 0.8).abs() < 0.02, "magnitude {mag}");
    assert!(flow.data.iter().all(|x| x.abs() <= 0.8 + 1e-6), "clipped");
    // MOV images are clipped by `bound` alone: `scale` is refused there
    let mov = shipped().replace("bound = 20.0\n", "bound = 20.0\nscale = 2.0\n");
    let msg = refused(&format!("manifest_version = 2\n{mov}"));
    assert!(msg.contains("`scale`"), "{msg}");
}

/// 16 frames of a texture sliding 2 px right per frame through `m`'s scheduler.
fn sliding_texture_window(m: &Manifest) -> avaction::window::Window {
    use avaction::clock::{Nanos, VideoFrame};
    use avaction::window::WindowScheduler;
    let mut cfg = plan::window_config(m);
    cfg.expect_audio = false;
    let mut sched = WindowScheduler::new(cfg).expect("scheduler");
    let texture = |x: f32, y: f32| {
        128.0 + 50.0 * (0.45 * x + 0.2 * y).sin() + 40.0 * (0.3 * y - 0.35 * x).cos()
    };
    for k in 0..16i64 {
        let shift = 2.0 * k as f32;
        let mut rgb = Vec::with_capacity(64 * 64 * 3);
        for i in 0..64 * 64 {
            let v = texture((i % 64) as f32 - shift, (i / 64) as f32).clamp(0.0, 255.0) as u8;
            rgb.extend_from_slice(&[v, v, v]);
        }
        let frame = VideoFrame {
            t_ns: Nanos::from_nanos(k * 40_000_000),
            width: 64,
            height: 64,
            rgb,
        };
        sched.push_frame(&frame).expect("frame");
    }
    sched.poll(None, true).expect("a window after 16 frames")
}

#[test]
fn tvl1_parameters_come_from_the_manifest() {
    let tvl1 = shipped().replace(
        "estimator = \"dis-fast\"\nbound = 20.0\n",
        "estimator = \"tvl1\"\nbound = 20.0\n\n[inputs.tvl1]\nlambda = 0.3\nwarps = 3\n",
    );
    let m = Manifest::parse(&tvl1).expect("valid");
    let flow = m.flow().expect("flow input");
    let params = flow.tvl1.expect("tvl1 table");
    assert_eq!((params.lambda, params.warps), (0.3, 3));
    // the scheduler builds TV-L1 with those parameters
    let mut cfg = plan::window_config(&m);
    cfg.expect_audio = false;
    assert!(avaction::window::WindowScheduler::new(cfg).is_ok());

    let on_dis = tvl1.replace("estimator = \"tvl1\"", "estimator = \"dis-fast\"");
    let msg = refused(&on_dis);
    assert!(msg.contains("`tvl1`") && msg.contains("estimator"), "{msg}");
    let bad = tvl1.replace("warps = 3", "warps = 0");
    let msg = refused(&bad);
    assert!(msg.contains("`tvl1`") && msg.contains("warps"), "{msg}");
    let unknown = tvl1.replace("warps = 3", "warp = 3");
    assert!(Manifest::parse(&unknown).is_err());
}

#[test]
fn without_a_video_table_capture_is_the_model_size() {
    let m = Manifest::parse(&shipped()).expect("valid");
    assert!(m.video.is_none() && m.preprocess().is_none());
    assert_eq!(m.capture_size(), m.frame_size());
    let v = plan::video_config(&m);
    assert_eq!((v.width, v.height), (64, 64));
    assert!(plan::window_config(&m).preprocess.is_none());
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
    let v = plan::video_config(&m);
    assert_eq!((v.width, v.height), (160, 120));
    let w = plan::window_config(&m);
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

const STAGED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mov-small");

fn staged() -> String {
    std::fs::read_to_string(format!("{STAGED}/model.toml")).expect("staged manifest")
}

#[test]
fn staged_open_vocabulary_bundle_loads() {
    let b = Bundle::load(STAGED).expect("bundle");
    let s = b.staged().expect("stages");
    assert_eq!(s.encoders.len(), 3);
    let tokens: Vec<usize> = s.encoders.iter().map(|e| e.tokens).collect();
    assert_eq!(
        tokens,
        [16, 15, 16],
        "frames, flow fields, 40 ms audio segments"
    );
    assert_eq!(s.encoders[2].graph.inputs[0].dims, [1, 4, 128]);
    assert_eq!(b.runtime_graphs().len(), 4, "one engine per stage");
    let v = b.vocabulary.as_ref().expect("vocabulary");
    assert!(b.labels.iter().all(|l| v.embedding(l).is_some()));
    assert_eq!(v.dim, 384);
}

#[test]
fn stage_mistakes_are_named() {
    let cases = [
        ("segment = 4", "segment = 5", "segment"),
        (
            "input = \"flow\"",
            "input = \"flows\"",
            "input `flow` needs exactly one encoder",
        ),
        (
            "input = \"logmel\"\ngraph = \"stages/audio_encoder.onnx\"",
            "input = \"frames\"\ngraph = \"stages/audio_encoder.onnx\"",
            "exactly one encoder",
        ),
        ("dim = 64\nsegment", "dim = 0\nsegment", "dim"),
        ("weight_novel = 0.75", "weight_novel = 0.5", "sum to 1"),
        ("temperature = 0.003", "temperature = 0.0", "temperature"),
        ("shape = [1, 2, 384]", "shape = [1, 3, 384]", "branch"),
    ];
    for (from, to, expect) in cases {
        let text = staged();
        assert!(text.contains(from), "test case {from:?} no longer applies");
        let msg = refused(&text.replacen(from, to, 1));
        assert!(msg.contains(expect), "{from:?} -> {to:?}: {msg}");
    }
}

#[test]
fn stage_files_and_label_embeddings_are_checked_at_load() {
    let dir = std::env::temp_dir().join(format!("avaction-manifest-staged-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(dir.join("stages")).unwrap();
    for f in [
        "model.toml",
        "model.onnx",
        "labels.txt",
        "sentences.txt",
        "text_embeddings.f32",
    ] {
        std::fs::copy(format!("{STAGED}/{f}"), dir.join(f)).unwrap();
    }
    for f in ["video_encoder", "flow_encoder", "audio_encoder"] {
        std::fs::copy(
            format!("{STAGED}/stages/{f}.onnx"),
            dir.join(format!("stages/{f}.onnx")),
        )
        .unwrap();
    }
    let e = Bundle::load(&dir).expect_err("head missing");
    assert!(e.to_string().contains("stages/head.onnx"), "{e}");
    std::fs::copy(
        format!("{STAGED}/stages/head.onnx"),
        dir.join("stages/head.onnx"),
    )
    .unwrap();
    Bundle::load(&dir).expect("complete bundle");
    std::fs::write(
        dir.join("labels.txt"),
        "nothing happens\na ball bounces with a click\n",
    )
    .unwrap();
    let e = Bundle::load(&dir).expect_err("label without embedding");
    assert!(e.to_string().contains("a ball bounces"), "{e}");
    std::fs::write(dir.join("labels.txt"), "nothing happens\n").unwrap();
    let bytes = std::fs::read(dir.join("text_embeddings.f32")).unwrap();
    std::fs::write(dir.join("text_embeddings.f32"), &bytes[..bytes.len() - 4]).unwrap();
    let e = Bundle::load(&dir).expect_err("truncated embeddings");
    assert!(e.to_string().contains("text_embeddings.f32"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Errors keep their cause: a labels file that cannot be read gives an `Io` error whose
/// `source()` is the `io::Error` itself, and an ONNX file tract cannot read gives a
/// `Backend` error whose source is tract's error.
#[test]
fn errors_keep_their_cause() {
    use std::error::Error as _;
    let dir = std::env::temp_dir().join(format!("avaction-cause-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/models/cavnet-small");
    for f in ["model.toml", "model.onnx"] {
        std::fs::copy(format!("{shipped}/{f}"), dir.join(f)).unwrap();
    }
    let e = Bundle::load(&dir).expect_err("labels.txt is missing");
    assert_eq!(e.kind(), ErrorKind::Io);
    let io = e
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the io::Error is the source");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(e.to_string().contains("labels.txt"), "{e}");

    std::fs::copy(format!("{shipped}/labels.txt"), dir.join("labels.txt")).unwrap();
    std::fs::write(dir.join("model.onnx"), b"not an onnx file").unwrap();
    let bundle = Bundle::load(&dir).expect("the manifest and labels are fine");
    let e =
        avaction::backend::tract::TractBackend::load(&bundle.graph(), 1).expect_err("corrupt ONNX");
    assert_eq!(e.kind(), ErrorKind::Backend);
    assert!(e.source().is_some(), "tract's error is kept: {e}");
    assert!(e.to_string().contains("model.onnx"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Each version 2 rule refuses with the key and what was expected.
#[test]
fn version_2_mistakes_are_named() {
    let v2 = |t: String| format!("manifest_version = 2\n{t}");
    let cases = [
        // a log-mel context that is not T x the frame shift
        (
            v2(shipped().replace(
                "frontend = \"logmel\"\n",
                "frontend = \"logmel\"\ncontext_s = 2.0\n",
            )),
            "context_s = 2 s is 200.00 mel frames",
        ),
        // a video layout on a log-mel input, and the reverse
        (
            v2(shipped().replace(
                "frontend = \"logmel\"\n",
                "frontend = \"logmel\"\nlayout = \"NCTHW\"\n",
            )),
            "layout NCTHW is for image and flow inputs",
        ),
        (
            v2(shipped().replace(
                "frontend = \"image\"\n",
                "frontend = \"image\"\nlayout = \"NCTM\"\n",
            )),
            "layout NCTM is for logmel inputs",
        ),
        // a rank-4 log-mel shape given the NTM layout
        (
            v2(shipped()
                .replace(
                    "frontend = \"logmel\"\n",
                    "frontend = \"logmel\"\nlayout = \"NTM\"\n",
                )
                .replace("shape = [1, 64, 128]", "shape = [1, 1, 64, 128]")),
            "[1, T, M]",
        ),
        // a window spanning more captured frames than the cap
        (
            v2(shipped().replace("hop_frames = ", "stride = 40\nhop_frames = ")),
            "at most 512 captured frames",
        ),
        // an unknown downmix
        (
            v2(shipped().replace("[[inputs]]", "[audio]\ndownmix = \"left\"\n\n[[inputs]]")),
            "invalid manifest",
        ),
    ];
    for (text, expect) in cases {
        let msg = refused(&text);
        assert!(msg.contains(expect), "expected {expect:?} in: {msg}");
    }
    // the same keys in a version 1 manifest name the version
    let msg = refused(&shipped().replace("hop_frames = ", "stride = 2\nhop_frames = "));
    assert!(
        msg.contains("window.stride") && msg.contains("manifest_version = 2"),
        "{msg}"
    );
    // a log-mel input [T, M] (no batch) and [1, 1, T, M] are accepted with their layouts
    for (layout, shape) in [("TM", "[64, 128]"), ("NCTM", "[1, 1, 64, 128]")] {
        let text = v2(shipped()
            .replace(
                "frontend = \"logmel\"\n",
                &format!("frontend = \"logmel\"\nlayout = \"{layout}\"\ncontext_s = 0.64\n"),
            )
            .replace("shape = [1, 64, 128]", &format!("shape = {shape}")));
        let m = Manifest::parse(&text).unwrap_or_else(|e| panic!("{layout}: {e}"));
        assert_eq!(m.logmel().map(|l| l.frames), Some(64));
    }
}
