//! What a model asks of the stages below it: the capture settings and the window
//! settings its manifest implies. The manifest only describes the model; this is where
//! that description becomes configuration for capture and the window scheduler.

use crate::capture::video::VideoConfig;
use crate::frontend::flow::FlowSettings;
use crate::model::Manifest;
use crate::window::WindowConfig;

/// Window settings for `m` as a file processed offline wants them (wait for audio, no
/// drops); live runs override the audio deadline and the bound on waiting windows.
pub fn window_config(m: &Manifest) -> WindowConfig {
    let (width, height) = m.frame_size();
    let logmel = m.logmel();
    WindowConfig {
        frames: m.window.frames,
        hop_frames: m.window.hop_frames,
        stride: m.window.frame_stride(),
        fps: m.window.fps,
        width: width as usize,
        height: height as usize,
        preprocess: m.preprocess(),
        flow: m.flow().map(|f| FlowSettings {
            estimator: f.estimator,
            tvl1: f.tvl1,
            encoding: f.encoding,
        }),
        expect_audio: logmel.is_some(),
        logmel: logmel.map(|l| (l.fbank, l.frames)),
        audio_wait_ns: None,
        mel_history: 1000,
        // files never drop: room for ~5 s of video decoded ahead of its audio
        max_pending: 64,
    }
}

/// Capture settings delivering `m`'s capture size and frame rate, with the file's audio
/// track at the filterbank's rate when the model takes audio.
pub fn video_config(m: &Manifest) -> VideoConfig {
    let (width, height) = m.capture_size();
    VideoConfig {
        audio_rate: m.logmel().map(|l| l.fbank.sample_rate),
        downmix: m.downmix(),
        ..VideoConfig::new(width, height, m.window.fps)
    }
}
