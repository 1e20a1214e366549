//! Source plans: a [`VideoSource`] and a [`VideoConfig`] checked and resolved (device
//! path, URI, pattern) before GStreamer starts, so that bad input fails early and clearly.

use super::devices::video_device_nodes;
use super::VideoConfig;
use crate::capture::VideoSource;
use crate::{err, Error, Result};
use gstreamer as gst;
use std::path::{Path, PathBuf};

pub(super) fn validate_config(cfg: &VideoConfig) -> Result<()> {
    if cfg.width == 0 || cfg.height == 0 || cfg.width > 16384 || cfg.height > 16384 {
        return Err(err!(
            Config,
            "video size {}x{} is invalid (1..=16384 each)",
            cfg.width,
            cfg.height
        ));
    }
    if cfg.fps == 0 || cfg.fps > 1000 {
        return Err(err!(Config, "video fps {} is invalid (1..=1000)", cfg.fps));
    }
    if cfg.audio_rate == Some(0) {
        return Err(err!(Config, "audio rate 0 Hz is invalid"));
    }
    cfg.limits.validate()?;
    if let Some(camera) = &cfg.camera {
        let (w, h, fps) = (camera.width, camera.height, camera.fps);
        let l = cfg.limits;
        if w > l.max_width || h > l.max_height || fps > l.max_fps {
            return Err(err!(
                Config,
                "camera request {w}x{h} at {fps} fps is above the limits {}x{} at {} fps",
                l.max_width,
                l.max_height,
                l.max_fps
            ));
        }
    }
    Ok(())
}

/// A [`VideoSource`] turned into what the pipeline needs, checked before GStreamer starts.
#[derive(Debug)]
pub(super) enum SourcePlan {
    Camera {
        device: Option<String>,
    },
    Uri {
        uri: String,
        shown: String,
        live: bool,
    },
    TestPattern {
        pattern: String,
    },
}

impl SourcePlan {
    pub(super) fn resolve(source: &VideoSource) -> Result<SourcePlan> {
        match source {
            VideoSource::Camera(None) => {
                if cfg!(target_os = "linux") {
                    match video_device_nodes().into_iter().next() {
                        Some(dev) => Ok(SourcePlan::Camera {
                            device: Some(dev.display().to_string()),
                        }),
                        None => Err(err!(
                            Video,
                            "no camera found: no /dev/video* device exists (use a file, a URI or test:ball)"
                        )),
                    }
                } else {
                    Ok(SourcePlan::Camera { device: None })
                }
            }
            VideoSource::Camera(Some(dev)) => {
                let dev = dev.trim();
                let path = if !dev.is_empty() && dev.bytes().all(|b| b.is_ascii_digit()) {
                    format!("/dev/video{dev}")
                } else {
                    dev.to_string()
                };
                if cfg!(target_os = "linux") && !Path::new(&path).exists() {
                    let found = video_device_nodes();
                    let found: Vec<String> =
                        found.iter().map(|p| p.display().to_string()).collect();
                    return Err(err!(
                        Video,
                        "no camera found at {path} (cameras present: {})",
                        if found.is_empty() {
                            "none".to_string()
                        } else {
                            found.join(", ")
                        }
                    ));
                }
                Ok(SourcePlan::Camera { device: Some(path) })
            }
            VideoSource::Uri(text) => resolve_uri(text),
            VideoSource::TestPattern(p) => Ok(SourcePlan::TestPattern {
                pattern: if p.is_empty() {
                    "ball".into()
                } else {
                    p.clone()
                },
            }),
            VideoSource::None => Err(err!(Config, "no video source was given")),
        }
    }

    pub(super) fn is_live(&self) -> bool {
        match self {
            SourcePlan::Camera { .. } | SourcePlan::TestPattern { .. } => true,
            SourcePlan::Uri { live, .. } => *live,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            SourcePlan::Camera { device: Some(d) } => format!("camera {d}"),
            SourcePlan::Camera { device: None } => "camera (default)".into(),
            SourcePlan::Uri { shown, .. } => shown.clone(),
            SourcePlan::TestPattern { pattern } => format!("test pattern {pattern}"),
        }
    }
}

/// Turns a path or URI into a URI; a local file must exist and be a readable file.
fn resolve_uri(text: &str) -> Result<SourcePlan> {
    let text = text.trim();
    if text.is_empty() {
        return Err(err!(Config, "empty video path"));
    }
    let is_uri = text.contains("://");
    if is_uri && !text.starts_with("file://") {
        let live = text.starts_with("rtsp://") || text.starts_with("rtsps://");
        return Ok(SourcePlan::Uri {
            uri: text.to_string(),
            shown: text.to_string(),
            live,
        });
    }
    let path: PathBuf = if is_uri {
        gst::glib::filename_from_uri(text)
            .map(|(p, _host)| p)
            .map_err(|e| err!(Config, "invalid file URI {text}").caused_by(e))?
    } else {
        PathBuf::from(text)
    };
    let path = std::path::absolute(&path).map_err(|e| Error::io(&path, e))?;
    let meta = std::fs::metadata(&path)
        .map_err(|e| err!(Io, "video file {} cannot be opened", path.display()).caused_by(e))?;
    if !meta.is_file() {
        return Err(err!(Io, "video path {} is not a file", path.display()));
    }
    std::fs::File::open(&path)
        .map_err(|e| err!(Io, "video file {} cannot be read", path.display()).caused_by(e))?;
    let uri = gst::glib::filename_to_uri(&path, None)
        .map_err(|e| err!(Io, "video file {} has no URI form", path.display()).caused_by(e))?;
    Ok(SourcePlan::Uri {
        uri: uri.to_string(),
        shown: format!("file {}", path.display()),
        live: false,
    })
}
