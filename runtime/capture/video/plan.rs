//! Source plans: a [`VideoSource`] and a [`VideoConfig`] checked and resolved (device
//! path, URI, pattern) before GStreamer starts, so that bad input fails early and clearly.

use super::devices::video_device_nodes;
use super::VideoConfig;
use crate::capture::VideoSource;
use crate::{err, Error, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
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
    Launch {
        description: String,
        live: bool,
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
            VideoSource::Pipeline(description) => resolve_launch(description),
            VideoSource::None => Err(err!(Config, "no video source was given")),
        }
    }

    pub(super) fn is_live(&self) -> bool {
        match self {
            SourcePlan::Camera { .. } | SourcePlan::TestPattern { .. } => true,
            SourcePlan::Uri { live, .. } | SourcePlan::Launch { live, .. } => *live,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            SourcePlan::Camera { device: Some(d) } => format!("camera {d}"),
            SourcePlan::Camera { device: None } => "camera (default)".into(),
            SourcePlan::Uri { shown, .. } => shown.clone(),
            SourcePlan::TestPattern { pattern } => format!("test pattern {pattern}"),
            SourcePlan::Launch { description, .. } => format!("pipeline `{description}`"),
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

/// Longest a pipeline description may be (a description is one line of a config).
const MAX_DESCRIPTION: usize = 4096;

/// Parses a gst-launch description (once, to refuse a bad one clearly) and asks it
/// whether it is live: a live pipeline answers `NoPreroll` on its way to PAUSED.
fn resolve_launch(description: &str) -> Result<SourcePlan> {
    let description = description.trim();
    if description.is_empty() || description.len() > MAX_DESCRIPTION {
        return Err(err!(
            Config,
            "a pipeline description must have 1 to {MAX_DESCRIPTION} bytes, not {}",
            description.len()
        ));
    }
    let bin = bin_from_description(description)?;
    let probe = gst::Pipeline::new();
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .map_err(|e| err!(Video, "GStreamer element 'fakesink' is missing").caused_by(e))?;
    let linked = probe
        .add_many([bin.upcast_ref::<gst::Element>(), &sink])
        .is_ok()
        && bin.link(&sink).is_ok();
    if !linked {
        return Err(err!(
            Video,
            "pipeline `{description}` has no video output to link (it must end in an element with an unlinked source pad)"
        ));
    }
    let state = probe.set_state(gst::State::Paused);
    let live = matches!(state, Ok(gst::StateChangeSuccess::NoPreroll));
    // Shutting the probe down waits for its streaming thread, which a slow source may
    // hold for a while: not on the caller's time.
    let shut = std::thread::Builder::new()
        .name("avaction-probe".into())
        .spawn({
            let probe = probe.clone();
            move || {
                let _ = probe.set_state(gst::State::Null);
            }
        });
    if shut.is_err() {
        let _ = probe.set_state(gst::State::Null);
    }
    if let Err(e) = state {
        return Err(err!(Video, "pipeline `{description}` cannot start").caused_by(e));
    }
    Ok(SourcePlan::Launch {
        description: description.to_string(),
        live,
    })
}

/// A bin from a gst-launch description, with its unlinked pads ghosted.
pub(super) fn bin_from_description(description: &str) -> Result<gst::Bin> {
    gst::parse::bin_from_description(description, true)
        .map_err(|e| err!(Config, "pipeline description `{description}` is invalid").caused_by(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(description: &str) -> Result<bool> {
        gst::init().expect("gst");
        SourcePlan::resolve(&VideoSource::Pipeline(description.into())).map(|p| p.is_live())
    }

    #[test]
    fn pipeline_descriptions_say_whether_they_are_live() {
        assert!(live("videotestsrc is-live=true").unwrap());
        assert!(live("videotestsrc is-live=true ! identity drop-probability=1.0").unwrap());
        assert!(!live("videotestsrc num-buffers=10").unwrap());
    }

    #[test]
    fn bad_pipeline_descriptions_are_refused_clearly() {
        let e = live("no-such-element-here").unwrap_err();
        assert!(e.to_string().contains("no-such-element-here"), "{e}");
        let e = live("").unwrap_err();
        assert!(e.to_string().contains("1 to 4096 bytes"), "{e}");
        let e = live("videotestsrc ! fakesink").unwrap_err();
        assert!(e.to_string().contains("no video output"), "{e}");
    }
}
