//! `[audio] downmix` against ffmpeg on a 5.1 file: a different tone on each of the six
//! channels (LFE included), 16-bit PCM at 16 kHz in Matroska with a video track, made by
//! ffmpeg. The runtime's file capture (GStreamer decodes, avaction mixes) must give:
//! - `ffmpeg`: what `ffmpeg -i F -ac 1 -f s16le` gives (within 2 LSB of 16 bits),
//! - `ffmpeg-float`: what `ffmpeg -i F -ac 1 -f f32le` gives,
//! - `mean`: the average of the six channels ffmpeg decodes (`torchaudio.load(F)[0].mean(0)`),
//! - `first`: channel 0.
//!
//! The source is at the filterbank's rate, so no resampler takes part on either side.

mod common;

use avaction::capture::video::{VideoCapture, VideoConfig};
use avaction::capture::{CaptureEvent, CaptureStats, Downmix, VideoSource};
use avaction::clock::Timeline;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const RATE: u32 = 16_000;

/// `ffmpeg` with arguments; its stdout.
fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(args)
        .output()
        .expect("ffmpeg runs (scripts/setup-debian.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The 5.1 test file: 2 s, channel c a sine of 200 + 150 c Hz at 0.3 (LFE too).
fn surround_file(dir: &Path) -> PathBuf {
    let path = dir.join("surround.mkv");
    let tones: Vec<String> = (0..6)
        .map(|c| format!("0.3*sin({}*2*PI*t)", 200 + 150 * c))
        .collect();
    ffmpeg(&[
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=25:duration=2",
        "-f",
        "lavfi",
        "-i",
        &format!(
            "aevalsrc={}:s={RATE}:d=2:channel_layout=5.1",
            tones.join("|")
        ),
        "-c:v",
        "mjpeg",
        "-c:a",
        "pcm_s16le",
        path.to_str().unwrap(),
    ]);
    path
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    common::f32_le(bytes)
}

/// The audio the runtime's file capture delivers with `downmix`.
fn captured(path: &Path, downmix: Downmix) -> Vec<f32> {
    let (tx, rx) = mpsc::sync_channel(64);
    let mut cap = VideoCapture::start(
        &VideoSource::Uri(path.display().to_string()),
        &VideoConfig {
            audio_rate: Some(RATE),
            downmix,
            ..VideoConfig::new(64, 48, 25)
        },
        Timeline::start(),
        tx,
        Arc::new(CaptureStats::default()),
    )
    .expect("capture starts");
    assert!(cap.has_audio());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut audio = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(CaptureEvent::Audio(a)) => audio.extend(a.samples),
            Ok(CaptureEvent::EndOfStream) => break,
            Ok(CaptureEvent::Failed(e)) => panic!("capture failed: {e}"),
            Ok(_) => {}
            Err(_) => panic!("no capture event within 10 s"),
        }
    }
    cap.stop();
    audio
}

fn compare(name: &str, got: &[f32], want: &[f32], tolerance: f32) {
    let n = got.len().min(want.len());
    assert!(
        n >= (RATE as usize * 19) / 10 && got.len().abs_diff(want.len()) <= 160,
        "{name}: {} samples captured, ffmpeg gives {}",
        got.len(),
        want.len()
    );
    let d = common::max_abs_diff(&got[..n], &want[..n]);
    let rms = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    println!(
        "{name}: max |diff| {d:e} over {n} samples, rms {:.4} (reference {:.4})",
        rms(&got[..n]),
        rms(&want[..n])
    );
    assert!(d <= tolerance, "{name}: differs from the reference by {d}");
}

#[test]
fn downmixes_match_ffmpeg_on_a_5_1_file() {
    let dir = common::temp_dir("downmix");
    let file = surround_file(&dir);
    let path = file.to_str().unwrap();
    let channels = f32s(&ffmpeg(&["-i", path, "-f", "f32le", "-"]));
    let frames: Vec<&[f32]> = channels.chunks_exact(6).collect();
    let mean: Vec<f32> = frames.iter().map(|f| f.iter().sum::<f32>() / 6.0).collect();
    let first: Vec<f32> = frames.iter().map(|f| f[0]).collect();
    let s16: Vec<f32> = ffmpeg(&["-i", path, "-ac", "1", "-f", "s16le", "-"])
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    let float = f32s(&ffmpeg(&["-i", path, "-ac", "1", "-f", "f32le", "-"]));

    compare("mean", &captured(&file, Downmix::Mean), &mean, 1e-6);
    compare("first", &captured(&file, Downmix::First), &first, 1e-6);
    compare(
        "ffmpeg",
        &captured(&file, Downmix::Ffmpeg),
        &s16,
        2.0 / 32768.0,
    );
    compare(
        "ffmpeg-float",
        &captured(&file, Downmix::FfmpegFloat),
        &float,
        1e-5,
    );
    std::fs::remove_dir_all(&dir).ok();
}
