//! Device profiles (`targets/*.toml`): per device, the backend order, the window stride
//! and the optical-flow estimator. `--target auto` picks the profile of the machine it
//! runs on from `/proc/device-tree/model` (Jetson), else the NVIDIA driver (x86-64 + dGPU),
//! else the generic CPU profile.
//!
//! ```
//! let target = avaction::target::Target::builtin("cpu")?;
//! assert_eq!(target.backend_choice()?, avaction::backend::BackendChoice::Tract);
//! # Ok::<(), avaction::Error>(())
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::backend::engine_cache::Precision;
use crate::backend::BackendChoice;
use crate::capture::video::CameraCaps;
use crate::model::files::{read_bounded, FileKind};
use crate::model::Limits;
use crate::{err, Error, ErrorKind, Result};

/// The profiles shipped in `targets/`, compiled in: (file name, contents).
const BUILTIN: [(&str, &str); 6] = [
    (
        "jetson-orin-nano.toml",
        include_str!("../../targets/jetson-orin-nano.toml"),
    ),
    (
        "jetson-orin-nx.toml",
        include_str!("../../targets/jetson-orin-nx.toml"),
    ),
    (
        "jetson-agx-orin.toml",
        include_str!("../../targets/jetson-agx-orin.toml"),
    ),
    (
        "jetson-xavier-nx.toml",
        include_str!("../../targets/jetson-xavier-nx.toml"),
    ),
    (
        "x86-64-nvidia.toml",
        include_str!("../../targets/x86-64-nvidia.toml"),
    ),
    ("cpu.toml", include_str!("../../targets/cpu.toml")),
];

/// A device profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Profile name (the file name without `.toml`).
    pub name: String,
    /// What device it is for.
    pub description: String,
    /// Substrings of `/proc/device-tree/model` that select this profile with `auto`.
    pub device_tree_match: Vec<String>,
    /// Backend settings.
    pub backend: TargetBackend,
    /// Camera capture settings (`[capture]`).
    pub capture: CameraCaps,
    /// Window settings.
    pub window: TargetWindow,
    /// Optical-flow settings.
    pub flow: TargetFlow,
    /// Evidence-clip settings (`[clips]`, optional).
    #[serde(default)]
    pub clips: TargetClips,
}

/// `[clips]` of a profile.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetClips {
    /// The clips' video encoder (one of
    /// [`CLIP_ENCODERS`](crate::capture::clip::CLIP_ENCODERS)); unset: `vp8enc`.
    pub encoder: Option<String>,
}

/// `[backend]` of a profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetBackend {
    /// Backends in order of preference: `["tensorrt", "tract"]`, `["tract"]` or
    /// `["tensorrt"]` (no fallback).
    pub order: Vec<String>,
    /// TensorRT engine precision: `fp16` or `fp32` (`int8` is refused).
    pub precision: String,
    /// Threads tract may use for one inference (1..=64).
    pub threads: usize,
}

/// `[window]` of a profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetWindow {
    /// Frames between windows (overrides the model's).
    pub hop_frames: usize,
}

/// `[flow]` of a profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFlow {
    /// Estimator for models that take flow (overrides the model's; one of
    /// [`ESTIMATOR_NAMES`](crate::frontend::flow::ESTIMATOR_NAMES)).
    pub estimator: String,
}

impl Target {
    /// Parses and checks a profile; `origin` names it in errors.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config), naming `origin` and the key: invalid TOML, an
    /// unknown key, or an unsupported backend order or precision.
    pub fn parse(text: &str, origin: &str) -> Result<Target> {
        let target: Target = toml::from_str(text)
            .map_err(|e| err!(Config, "target profile {origin}: {}", e.message()))?;
        target.validate(origin)?;
        Ok(target)
    }

    /// Reads a profile file: a regular file of at most 1 MiB
    /// ([`MAX_MANIFEST_BYTES`](crate::model::limits::MAX_MANIFEST_BYTES)), read bounded.
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) when the file cannot be read;
    /// [`Config`](crate::ErrorKind::Config) when it is not a regular file, is over the cap
    /// or is not UTF-8; otherwise as [`Target::parse`].
    pub fn load(path: &Path) -> Result<Target> {
        let bytes = read_bounded(path, FileKind::Manifest, &Limits::DEFAULT).map_err(|e| {
            if e.kind() == ErrorKind::Model {
                Error::new(ErrorKind::Config, format!("target profile {}", e.message()))
            } else {
                e
            }
        })?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| err!(Config, "target profile {}: not UTF-8 text", path.display()))?;
        Target::parse(text, &path.display().to_string())
    }

    /// The shipped profile called `name` (see `targets/`).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a name that is not a shipped profile (the
    /// message lists them).
    pub fn builtin(name: &str) -> Result<Target> {
        let file = format!("{name}.toml");
        let Some((_, text)) = BUILTIN.iter().find(|(f, _)| *f == file) else {
            return Err(err!(
                Config,
                "unknown target {name:?}; shipped targets: {}",
                Target::builtin_names().join(", ")
            ));
        };
        Target::parse(text, &format!("targets/{file}"))
    }

    /// Names of the shipped profiles.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN
            .iter()
            .map(|(f, _)| f.trim_end_matches(".toml"))
            .collect()
    }

    /// `auto`, a shipped profile's name, or a path to a `.toml` file.
    ///
    /// # Errors
    /// As [`Target::detect`], [`Target::load`] or [`Target::builtin`], whichever `spec`
    /// asks for.
    pub fn resolve(spec: &str) -> Result<(Target, String)> {
        if spec == "auto" {
            return Target::detect();
        }
        if spec.ends_with(".toml") {
            let target = Target::load(Path::new(spec))?;
            return Ok((target, format!("from {spec}")));
        }
        Ok((Target::builtin(spec)?, "chosen by name".into()))
    }

    /// The profile of this machine and why it was picked.
    ///
    /// # Errors
    /// Only if a shipped profile fails to parse ([`Config`](crate::ErrorKind::Config)),
    /// which the tests rule out.
    pub fn detect() -> Result<(Target, String)> {
        let model = std::fs::read("/proc/device-tree/model").ok().map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .to_string()
        });
        let nvidia_driver = Path::new("/proc/driver/nvidia/version").exists();
        Target::detect_from(model.as_deref(), nvidia_driver)
    }

    /// [`Target::detect`] on given facts: the device-tree model string (if any) and
    /// whether the NVIDIA driver is loaded.
    ///
    /// # Errors
    /// As [`Target::detect`].
    pub fn detect_from(
        device_model: Option<&str>,
        nvidia_driver: bool,
    ) -> Result<(Target, String)> {
        if let Some(model) = device_model {
            for (file, text) in BUILTIN {
                let target = Target::parse(text, &format!("targets/{file}"))?;
                if target
                    .device_tree_match
                    .iter()
                    .any(|m| model.contains(m.as_str()))
                {
                    return Ok((target, format!("device tree says {model:?}")));
                }
            }
        }
        let (name, why) = match (device_model, nvidia_driver) {
            (Some(model), _) => (
                "cpu",
                format!("device tree says {model:?}, no Jetson profile matches"),
            ),
            (None, true) => (
                "x86-64-nvidia",
                "no device tree; the NVIDIA driver is loaded".into(),
            ),
            (None, false) => ("cpu", "no Jetson device tree and no NVIDIA driver".into()),
        };
        Ok((Target::builtin(name)?, why))
    }

    /// The backend choice the profile's order gives: `tensorrt` then `tract` is `auto`
    /// (TensorRT where it works, else tract).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a backend order other than `["tensorrt",
    /// "tract"]`, `["tract"]` or `["tensorrt"]`.
    pub fn backend_choice(&self) -> Result<BackendChoice> {
        let order: Vec<&str> = self.backend.order.iter().map(String::as_str).collect();
        match order.as_slice() {
            ["tensorrt", "tract"] => Ok(BackendChoice::Auto),
            ["tract"] => Ok(BackendChoice::Tract),
            ["tensorrt"] => Ok(BackendChoice::TensorRt),
            other => Err(err!(
                Config,
                "target {}: backend order {other:?} must be [\"tensorrt\", \"tract\"], [\"tract\"] or [\"tensorrt\"]",
                self.name
            )),
        }
    }

    /// The TensorRT precision.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a precision other than `fp16`, `fp32` or
    /// `int8`.
    pub fn precision(&self) -> Result<Precision> {
        self.backend.precision.parse()
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let fail = |what: String| err!(Config, "target profile {origin}: {what}");
        self.backend_choice()
            .map_err(|e| fail(e.message().into()))?;
        match self.precision() {
            Ok(Precision::Int8) => {
                return Err(fail(
                    "backend.precision \"int8\" is not supported (no INT8 calibrator); use fp16 or fp32"
                        .into(),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(fail(format!("backend.{}", e.message()))),
        }
        if !(1..=64).contains(&self.backend.threads) {
            return Err(fail(format!(
                "backend.threads {} must be in 1..=64",
                self.backend.threads
            )));
        }
        if let Some(encoder) = &self.clips.encoder {
            crate::capture::clip::ClipEncoder::new(encoder)
                .map_err(|e| fail(format!("clips.{}", e.message())))?;
        }
        let c = &self.capture;
        if c.width > 16384 || c.height > 16384 || c.fps > 1000 || (c.width == 0) != (c.height == 0)
        {
            return Err(fail(format!(
                "capture {}x{} at {} fps: width and height must both be 0 or both set (at most 16384), fps at most 1000",
                c.width, c.height, c.fps
            )));
        }
        if let Some(element) = &c.csi_element {
            let name_ok = !element.is_empty()
                && element.len() <= 64
                && element
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if !name_ok {
                return Err(fail(format!(
                    "capture.csi_element {element:?} must be one GStreamer element name \
                     (letters, digits, `-`, `_`; at most 64)"
                )));
            }
        }
        if !(1..=64).contains(&self.window.hop_frames) {
            return Err(err!(
                Config,
                "target profile {origin}: window.hop_frames {} must be in 1..=64",
                self.window.hop_frames
            ));
        }
        if !crate::frontend::flow::ESTIMATOR_NAMES.contains(&self.flow.estimator.as_str()) {
            return Err(err!(
                Config,
                "target profile {origin}: flow.estimator {:?} is not one of {}",
                self.flow.estimator,
                crate::frontend::flow::ESTIMATOR_NAMES.join(", ")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_parses_and_is_compiled_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("targets");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("targets/")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".toml"))
            .collect();
        files.sort();
        let mut builtin: Vec<String> = BUILTIN.iter().map(|(f, _)| f.to_string()).collect();
        builtin.sort();
        assert_eq!(files, builtin, "targets/*.toml and BUILTIN differ");
        for file in files {
            let target = Target::load(&dir.join(&file)).expect(&file);
            assert_eq!(format!("{}.toml", target.name), file);
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_them() {
        let cpu = BUILTIN[5].1;
        let unknown = cpu.replace("hop_frames = 2", "hop_frames = 2\nstride = 3");
        let msg = Target::parse(&unknown, "t")
            .expect_err("unknown key")
            .to_string();
        assert!(msg.contains("stride"), "{msg}");
        let bad_flow = cpu.replace("\"dis-fast\"", "\"farneback\"");
        let msg = Target::parse(&bad_flow, "t")
            .expect_err("bad flow")
            .to_string();
        assert!(msg.contains("farneback"), "{msg}");
        let bad_order = cpu.replace("[\"tract\"]", "[\"tract\", \"tensorrt\"]");
        let msg = Target::parse(&bad_order, "t")
            .expect_err("bad order")
            .to_string();
        assert!(msg.contains("order"), "{msg}");
        let msg = Target::builtin("jetson-nano")
            .expect_err("unknown")
            .to_string();
        assert!(msg.contains("jetson-orin-nano"), "{msg}");
        for (from, to, needle) in [
            ("precision = \"fp32\"", "precision = \"int8\"", "int8"),
            ("precision = \"fp32\"", "precision = \"bf16\"", "bf16"),
            ("threads = 2", "threads = 0", "threads"),
            ("width = 0", "width = 640", "width and height"),
        ] {
            let text = cpu.replace(from, to);
            assert_ne!(text, cpu, "{from}");
            let msg = Target::parse(&text, "t").expect_err(to).to_string();
            assert!(msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn jetson_profiles_read_csi_sensors_through_argus_and_others_through_v4l2() {
        use crate::capture::video::camera_description;
        let nano = Target::builtin("jetson-orin-nano").unwrap();
        assert_eq!(nano.precision().unwrap(), Precision::Fp16);
        let caps = Some(&nano.capture);
        assert_eq!(
            camera_description(caps, "/dev/video1", "vi-output, imx219 9-0010"),
            "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 ! nvvidconv"
        );
        assert_eq!(
            camera_description(caps, "/dev/video0", "HD Pro Webcam C920"),
            "v4l2src device=\"/dev/video0\""
        );
        let cpu = Target::builtin("cpu").unwrap();
        assert_eq!(
            camera_description(Some(&cpu.capture), "/dev/video0", "vi-output, imx219"),
            "v4l2src device=\"/dev/video0\""
        );
    }

    #[test]
    fn detection_follows_the_device_tree_then_the_driver() {
        let pick = |model: Option<&str>, nvidia| {
            Target::detect_from(model, nvidia)
                .map(|(t, _)| t.name)
                .expect("detect")
        };
        assert_eq!(
            pick(Some("NVIDIA Jetson Orin Nano Developer Kit"), false),
            "jetson-orin-nano"
        );
        assert_eq!(
            pick(Some("NVIDIA Jetson AGX Orin Developer Kit"), false),
            "jetson-agx-orin"
        );
        assert_eq!(
            pick(Some("NVIDIA Jetson Xavier NX"), false),
            "jetson-xavier-nx"
        );
        assert_eq!(pick(Some("NVIDIA Orin NX 16GB"), false), "jetson-orin-nx");
        assert_eq!(pick(Some("Raspberry Pi 5 Model B"), false), "cpu");
        assert_eq!(pick(None, true), "x86-64-nvidia");
        assert_eq!(pick(None, false), "cpu");
        assert_eq!(
            Target::builtin("jetson-orin-nano")
                .and_then(|t| t.backend_choice())
                .expect("valid"),
            BackendChoice::Auto
        );
    }
}
