//! Retention in the clips folder: whole clips (a sidecar `STEM.json` and its
//! `STEM.webm` / `STEM.mkv`) are removed, oldest first, while they are older than the
//! age limit or together larger than the size limit. Files that are not ours are never
//! touched; a write left unfinished by a crash (`.STEM.*.part`) is removed after an
//! hour.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pruned {
    /// Clips removed.
    pub(super) clips: usize,
    /// Bytes freed.
    pub(super) bytes: u64,
}

/// Extensions of the media file of a clip.
pub(super) const MEDIA_EXTENSIONS: [&str; 2] = ["webm", "mkv"];

#[derive(Debug, Default)]
struct ClipFiles {
    paths: Vec<PathBuf>,
    bytes: u64,
    modified: Option<SystemTime>,
    has_sidecar: bool,
    has_media: bool,
}

/// Removes clips from `dir` past `max_age` or beyond `max_bytes` in all, oldest first.
pub(super) fn prune(dir: &Path, max_bytes: u64, max_age: Duration) -> Pruned {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Pruned::default();
    };
    let now = SystemTime::now();
    let mut clips: BTreeMap<String, ClipFiles> = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let modified = meta.modified().ok();
        if name.starts_with('.') && name.ends_with(".part") {
            let stale = modified
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if stale {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        let Some((stem, ext)) = name.rsplit_once('.') else {
            continue;
        };
        let is_sidecar = ext == "json";
        let is_media = MEDIA_EXTENSIONS.contains(&ext);
        if !is_sidecar && !is_media {
            continue;
        }
        let clip = clips.entry(stem.to_string()).or_default();
        clip.paths.push(path);
        clip.bytes += meta.len();
        clip.has_sidecar |= is_sidecar;
        clip.has_media |= is_media;
        if is_sidecar {
            clip.modified = modified;
        }
    }
    let mut ours: Vec<ClipFiles> = clips
        .into_values()
        .filter(|c| c.has_sidecar && c.has_media)
        .collect();
    ours.sort_by_key(|c| c.modified);
    let mut total: u64 = ours.iter().map(|c| c.bytes).sum();
    let mut pruned = Pruned::default();
    for clip in ours {
        let age = clip
            .modified
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if total <= max_bytes && age <= max_age {
            continue;
        }
        let removed = clip
            .paths
            .iter()
            .filter(|p| std::fs::remove_file(p).is_ok())
            .count();
        if removed == 0 {
            continue;
        }
        total = total.saturating_sub(clip.bytes);
        pruned.clips += 1;
        pruned.bytes += clip.bytes;
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, bytes: usize, age: Duration) {
        let path = dir.join(name);
        std::fs::write(&path, vec![0u8; bytes]).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn oldest_clips_go_first_and_other_files_stay() {
        let dir = std::env::temp_dir().join(format!("avaction-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let hour = Duration::from_secs(3600);
        for (i, stem) in ["a", "b", "c"].iter().enumerate() {
            let age = hour * (10 - i as u32);
            touch(&dir, &format!("{stem}.webm"), 1000, age);
            touch(&dir, &format!("{stem}.json"), 100, age);
        }
        touch(&dir, "notes.txt", 5000, hour * 100);
        touch(&dir, "lonely.webm", 5000, hour * 100);
        touch(&dir, ".x.webm.part", 10, hour * 2);
        touch(&dir, ".y.webm.part", 10, Duration::ZERO);
        // Size: 3 clips of 1100 bytes, limit 2500: the oldest (a) goes.
        let p = prune(&dir, 2500, hour * 1000);
        assert_eq!(p.clips, 1);
        assert!(!dir.join("a.webm").exists() && !dir.join("a.json").exists());
        assert!(dir.join("b.webm").exists() && dir.join("c.json").exists());
        assert!(dir.join("notes.txt").exists() && dir.join("lonely.webm").exists());
        assert!(!dir.join(".x.webm.part").exists() && dir.join(".y.webm.part").exists());
        // Age: older than 8.5 hours goes (b is 9 h old, c 8 h).
        let p = prune(&dir, u64::MAX, hour * 17 / 2);
        assert_eq!(p.clips, 1);
        assert!(!dir.join("b.webm").exists() && dir.join("c.webm").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
