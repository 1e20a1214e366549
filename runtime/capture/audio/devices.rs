//! Input devices: listing them and choosing the one a source names.

use crate::capture::AudioSource;
use crate::{err, Result};
use cpal::traits::{DeviceTrait, HostTrait};

/// Labels (`id (description)`) of the input devices of the default cpal host; empty if
/// there is none or no host.
pub fn list_microphones() -> Vec<String> {
    match cpal::default_host().input_devices() {
        Ok(devices) => devices.map(|d| device_label(&d)).collect(),
        Err(e) => {
            log::warn!("cannot list microphones: {e}");
            Vec::new()
        }
    }
}

/// An input device as `avaction devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicrophoneInfo {
    /// `id (description)`, as `mic:NAME` matches it.
    pub label: String,
    /// The device's default input format (`48000 Hz, 2 ch, F32`), if it has one.
    pub format: Option<String>,
    /// The device `mic` (the default microphone) opens.
    pub is_default: bool,
    /// A real capture device or sound server (`default`, `pulse`, `hw:…`), rather than
    /// one of ALSA's converter, routing or output plugins (`lavrate`, `upmix`, `null`…).
    pub is_capture: bool,
}

/// Whether an ALSA device id names something a user captures from: the default device,
/// a sound server, or a card (`hw:`, `plughw:`, `sysdefault:`, `dsnoop:`, `front:`).
/// Elsewhere than Linux every input device counts.
pub fn is_capture_device(id: &str) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let base = id.split(':').next().unwrap_or(id);
    matches!(
        base,
        "default" | "sysdefault" | "pulse" | "pipewire" | "hw" | "plughw" | "dsnoop" | "front"
    )
}

/// The input devices of the default cpal host with their default format, the default
/// one marked; empty if there is none or no host.
pub fn microphones() -> Vec<MicrophoneInfo> {
    let host = cpal::default_host();
    let default_id = host
        .default_input_device()
        .and_then(|d| d.id().ok())
        .map(|id| id.id().to_string());
    let devices = match host.input_devices() {
        Ok(devices) => devices,
        Err(e) => {
            log::warn!("cannot list microphones: {e}");
            return Vec::new();
        }
    };
    devices
        .map(|d| {
            let id = d
                .id()
                .ok()
                .map(|id| id.id().to_string())
                .unwrap_or_default();
            let format = d.default_input_config().ok().map(|c| {
                format!(
                    "{} Hz, {} ch, {:?}",
                    c.sample_rate(),
                    c.channels(),
                    c.sample_format()
                )
            });
            MicrophoneInfo {
                label: device_label(&d),
                format,
                is_default: default_id.as_deref() == Some(id.as_str()),
                is_capture: is_capture_device(&id),
            }
        })
        .collect()
}

/// A device's label, `id (description)` (e.g. `pulse (PulseAudio Sound Server)`), built
/// without panicking (cpal's `Display` for devices can fail).
pub(super) fn device_label(device: &cpal::Device) -> String {
    let id = device.id().ok().map(|id| id.id().to_string());
    let name = device.description().ok().map(|d| d.name().to_string());
    match (id, name) {
        (Some(id), Some(name)) if id != name => format!("{id} ({name})"),
        (Some(id), _) => id,
        (None, Some(name)) => name,
        (None, None) => "unnamed device".into(),
    }
}

fn available_list() -> String {
    let names = list_microphones();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

pub(super) fn select_device(host: &cpal::Host, source: &AudioSource) -> Result<cpal::Device> {
    let host_name = host.id().name();
    match source {
        AudioSource::DefaultMicrophone => host.default_input_device().ok_or_else(|| {
            err!(
                Audio,
                "no microphone found: default host ({host_name}) has no input device (input devices: {})",
                available_list()
            )
        }),
        AudioSource::Microphone(name) => {
            let wanted = name.to_lowercase();
            let devices = host.input_devices().map_err(|e| {
                err!(Audio, "microphone {name:?} not found: cannot list {host_name} input devices")
                    .caused_by(e)
            })?;
            // An exact device id (`pulse`, `hw:CARD=USB,DEV=0`) wins over a substring of a label.
            let mut by_label = None;
            for device in devices {
                let id = device.id().ok().map(|id| id.id().to_lowercase());
                if id.as_deref() == Some(wanted.as_str()) {
                    return Ok(device);
                }
                if by_label.is_none() && device_label(&device).to_lowercase().contains(&wanted) {
                    by_label = Some(device);
                }
            }
            if let Some(device) = by_label {
                return Ok(device);
            }
            Err(err!(
                Audio,
                "no microphone matching {name:?} on host {host_name} (input devices: {})",
                available_list()
            ))
        }
        other => Err(err!(Config, "audio source {other:?} is not a microphone")),
    }
}

#[cfg(test)]
mod tests {
    use super::is_capture_device;

    #[test]
    fn alsa_plugins_are_not_capture_devices() {
        for id in [
            "default",
            "pulse",
            "pipewire",
            "hw:CARD=USB,DEV=0",
            "plughw:1,0",
            "sysdefault:CARD=PCH",
        ] {
            assert!(is_capture_device(id), "{id}");
        }
        if cfg!(target_os = "linux") {
            for id in [
                "null",
                "lavrate",
                "samplerate",
                "speexrate",
                "jack",
                "oss",
                "upmix",
                "vdownmix",
                "speex",
            ] {
                assert!(!is_capture_device(id), "{id}");
            }
        }
    }
}
