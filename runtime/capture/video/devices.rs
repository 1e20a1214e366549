//! Cameras: listing them, reading their V4L2 names and describing the source element
//! for each (`v4l2src`, or a target profile's CSI element per [`CameraCaps`]).

use super::pipeline::{make_element, plugin_package};
use crate::{err, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use std::path::{Path, PathBuf};

/// How a target profile captures from its cameras (`[capture]` in `targets/*.toml`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraCaps {
    /// Element for CSI sensors (V4L2 name starting `vi-output`, as on Jetson), which
    /// V4L2 alone cannot debayer: `nvarguscamerasrc`. `None`: `v4l2src` for every camera.
    #[serde(default)]
    pub csi_element: Option<String>,
    /// Requested width, height and frame rate from CSI sensors (0: the element's default).
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// See `width`.
    pub fps: u32,
}

/// The GStreamer description of the camera source for `device` (`/dev/videoN`),
/// given its V4L2 name (`/sys/class/video4linux/videoN/name`). CSI sensors on a
/// profile with a CSI element get that element with NVMM caps and `nvvidconv` (to
/// system memory); every other camera gets `v4l2src`.
pub fn camera_description(caps: Option<&CameraCaps>, device: &str, v4l2_name: &str) -> String {
    let csi = caps.and_then(|c| c.csi_element.as_deref().map(|e| (c, e)));
    match csi {
        Some((c, element)) if v4l2_name.starts_with("vi-output") => {
            let index: String = device.chars().filter(|ch| ch.is_ascii_digit()).collect();
            let index = if index.is_empty() { "0".into() } else { index };
            let mut fields = String::new();
            if c.width > 0 && c.height > 0 {
                fields += &format!(",width={},height={}", c.width, c.height);
            }
            if c.fps > 0 {
                fields += &format!(",framerate={}/1", c.fps);
            }
            format!("{element} sensor-id={index} ! video/x-raw(memory:NVMM){fields} ! nvvidconv")
        }
        _ => format!(
            "{} device=\"{}\"",
            camera_element(),
            device.replace('"', "")
        ),
    }
}

fn v4l2_name(device: &str) -> String {
    let node = Path::new(device)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::read_to_string(format!("/sys/class/video4linux/{node}/name"))
        .map(|n| n.trim().to_string())
        .unwrap_or_default()
}

/// Makes the camera source bin from [`camera_description`]; a missing element is named
/// with the package that ships it.
pub(crate) fn camera_source(
    caps: Option<&CameraCaps>,
    device: Option<&str>,
) -> Result<gst::Element> {
    let Some(device) = device else {
        return make_element(camera_element());
    };
    let description = camera_description(caps, device, &v4l2_name(device));
    gst::parse::bin_from_description(&description, true)
        .map(|bin| bin.upcast())
        .map_err(|e| {
            let hint = if description.contains("nvarguscamerasrc")
                || description.contains("nvvidconv")
            {
                " (nvarguscamerasrc and nvvidconv come with JetPack: package nvidia-l4t-gstreamer)"
                    .to_string()
            } else {
                format!(" (install {})", plugin_package(camera_element()))
            };
            err!(
                Video,
                "camera {device}: cannot make `{description}`: {e}{hint}"
            )
        })
}

/// The cameras GStreamer can see (device paths where known, else display names);
/// empty if there is none.
pub fn list_cameras() -> Vec<String> {
    if gst::init().is_err() {
        return Vec::new();
    }
    let monitor = gst::DeviceMonitor::new();
    let mut names = Vec::new();
    if monitor.add_filter(Some("Video/Source"), None).is_some() && monitor.start().is_ok() {
        for device in monitor.devices() {
            let path = device.properties().and_then(|p| {
                p.get::<String>("device.path")
                    .or_else(|_| p.get::<String>("api.v4l2.path"))
                    .ok()
            });
            names.push(path.unwrap_or_else(|| device.display_name().to_string()));
        }
        monitor.stop();
    }
    if names.is_empty() {
        names = video_device_nodes()
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
    }
    names.sort();
    names.dedup();
    names
}

/// `/dev/video*` nodes sorted by number (Linux).
pub(super) fn video_device_nodes() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut nodes: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = name.strip_prefix("video")?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

fn camera_element() -> &'static str {
    if cfg!(target_os = "linux") {
        "v4l2src"
    } else {
        "autovideosrc"
    }
}
