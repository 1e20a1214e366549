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
