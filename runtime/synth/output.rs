//! Writes a scene's audio as a 16-bit PCM WAV file and its ground truth as JSON.

use super::compositional::{self, LabelParts, ATTRIBUTES};
use super::{GroundTruth, Scene, SceneConfig, Spans};
use crate::Error;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Samples rendered per block when writing audio.
const WAV_BLOCK_SAMPLES: usize = 4096;

/// Writes the scene's audio as a 16-bit PCM WAV file, mono (`channels = 1`) or with
/// the mono signal duplicated into two channels (`channels = 2`).
///
/// # Errors
/// [`Config`](crate::ErrorKind::Config) for 0 channels; [`Io`](crate::ErrorKind::Io) when
/// the file cannot be written.
pub fn write_wav(scene: &Scene, path: &Path, channels: u16) -> crate::Result<()> {
    if !(1..=2).contains(&channels) {
        return Err(crate::err!(
            Config,
            "{}: WAV channels = {channels}; only 1 (mono) or 2 (duplicated stereo) are written",
            path.display()
        ));
    }
    let rate = scene.config().audio_rate;
    let samples = scene.num_audio_samples();
    let block_align = u64::from(channels) * 2;
    let data_bytes = samples * block_align;
    let riff_bytes = data_bytes + 36;
    let data_bytes = u32::try_from(data_bytes)
        .ok()
        .filter(|_| riff_bytes <= u64::from(u32::MAX));
    let Some(data_bytes) = data_bytes else {
        return Err(crate::err!(
            Config,
            "{}: {samples} samples x {channels} channels do not fit in a WAV file (4 GiB limit)",
            path.display()
        ));
    };
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut writer = std::io::BufWriter::new(file);
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&(data_bytes + 36).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&channels.to_le_bytes());
    header.extend_from_slice(&rate.to_le_bytes());
    header.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    header.extend_from_slice(&(channels * 2).to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_bytes.to_le_bytes());
    writer.write_all(&header).map_err(|e| Error::io(path, e))?;

    let mut block = vec![0.0f32; WAV_BLOCK_SAMPLES];
    let mut bytes = Vec::with_capacity(WAV_BLOCK_SAMPLES * block_align as usize);
    let mut next = 0u64;
    while next < samples {
        let count = (samples - next).min(WAV_BLOCK_SAMPLES as u64) as usize;
        scene.render_audio(next, &mut block[..count]);
        bytes.clear();
        for &sample in &block[..count] {
            let pcm = (sample.clamp(-1.0, 1.0) * 32767.0).round() as i16;
            for _ in 0..channels {
                bytes.extend_from_slice(&pcm.to_le_bytes());
            }
        }
        writer.write_all(&bytes).map_err(|e| Error::io(path, e))?;
        next += count as u64;
    }
    writer.flush().map_err(|e| Error::io(path, e))
}

/// The JSON document written by [`write_ground_truth`].
#[derive(serde::Serialize)]
struct GroundTruthFile<'a> {
    config: &'a SceneConfig,
    labels: &'a [&'static str],
    events: &'a [GroundTruth],
    #[serde(skip_serializing_if = "Option::is_none")]
    class_parts: Option<Vec<LabelParts>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    novel: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attribute_spans: Option<BTreeMap<&'static str, &'a Spans>>,
}

/// Writes the ground truth as JSON:
/// `{"config": {...}, "labels": [...], "events": [{"label", "start_s", "end_s"}, ...]}`.
/// Compositional scenes add to each event its `parts` (`{"object", "motion",
/// "sound"}`) and `sound_delay_s`, and to the document `class_parts` (one
/// `{"object", "motion", "sound"}` per label, nulls for background), `novel` (label indices of the held-out classes) and
/// `attribute_spans` (`{"impact": [[from_s, to_s], ...], ...}`, see
/// [`Scene::attributes_in`]). Basic scenes are written exactly as before.
///
/// # Errors
/// [`Io`](crate::ErrorKind::Io) when the file cannot be written.
pub fn write_ground_truth(scene: &Scene, path: &Path) -> crate::Result<()> {
    let compositional = !scene.config().task.is_basic();
    let document = GroundTruthFile {
        config: scene.config(),
        labels: scene.labels(),
        events: scene.timeline(),
        class_parts: compositional.then(compositional::label_parts),
        novel: compositional.then(compositional::novel_indices),
        attribute_spans: compositional.then(|| {
            ATTRIBUTES
                .iter()
                .copied()
                .zip(scene.attribute_spans().iter())
                .collect()
        }),
    };
    let mut text = serde_json::to_string_pretty(&document).map_err(|e| {
        crate::err!(
            Io,
            "{}: cannot encode the ground truth as JSON: {e}",
            path.display()
        )
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
