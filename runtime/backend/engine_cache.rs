//! On-disk cache of built inference engines (TensorRT plans), so an engine is built once
//! per model, runtime version, GPU and build settings, and never loaded where any of those
//! differ.
//!
//! Each engine is one file, `<dir>/<key digest>.engine`, holding a header (a magic line,
//! the full key in text, the payload length and its SHA-256) and the engine bytes. A file
//! whose embedded key differs from the one asked for (stale) or whose payload does not
//! match its length or checksum (corrupt, truncated) is deleted and reported, never
//! returned. Files are written to a temporary name and renamed, so a crash mid-write
//! leaves no half engine under the real name.
//!
//! ```
//! use avaction::backend::engine_cache::{EngineCache, EngineKey, Lookup, Precision};
//! let dir = std::env::temp_dir().join(format!("avaction-doc-cache-{}", std::process::id()));
//! let cache = EngineCache::new(&dir);
//! let key = EngineKey::new(b"onnx bytes", "10.7.0", "Orin (nvgpu)", (8, 7), Precision::Fp16, "");
//! assert!(matches!(cache.load(&key)?, Lookup::Miss));
//! cache.store(&key, b"serialized engine")?;
//! assert!(matches!(cache.load(&key)?, Lookup::Hit(bytes) if bytes == b"serialized engine"));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), avaction::Error>(())
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// First line of every cache file (the format version).
const MAGIC: &[u8] = b"avaction-engine 1\n";

/// Numeric precision an engine was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats.
    Fp32,
    /// 16-bit floats where the builder chooses.
    Fp16,
    /// 8-bit integers (needs a calibration set).
    Int8,
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "fp16" => Ok(Precision::Fp16),
            "int8" => Ok(Precision::Int8),
            other => Err(crate::err!(
                Config,
                "precision {other:?}: expected fp16, fp32 or int8"
            )),
        }
    }
}

impl Precision {
    /// `fp32`, `fp16` or `int8`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }
}

/// Everything an engine depends on. Two keys are equal only if every field is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineKey {
    /// SHA-256 of the model file (the ONNX graph) in hex.
    pub model_sha256: String,
    /// Inference runtime version (e.g. TensorRT `10.7.0`).
    pub runtime_version: String,
    /// GPU name as the driver reports it.
    pub device: String,
    /// CUDA compute capability (major, minor).
    pub compute_capability: (u32, u32),
    /// Precision the engine was built for.
    pub precision: Precision,
    /// Any other build option that changes the engine (shapes, workspace, DLA core...),
    /// as text; empty for none.
    pub options: String,
}

impl EngineKey {
    /// The key of `model` (the ONNX file's bytes) built with these settings.
    pub fn new(
        model: &[u8],
        runtime_version: &str,
        device: &str,
        compute_capability: (u32, u32),
        precision: Precision,
        options: &str,
    ) -> EngineKey {
        EngineKey {
            model_sha256: hex(&Sha256::digest(model)),
            runtime_version: runtime_version.into(),
            device: device.into(),
            compute_capability,
            precision,
            options: options.into(),
        }
    }

    /// The key as text, one `name=value` line per field (what the cache file embeds).
    pub fn canonical(&self) -> String {
        // Newlines inside values would forge other fields: escape them.
        let clean = |s: &str| s.replace('\\', "\\\\").replace('\n', "\\n");
        format!(
            "model_sha256={}\nruntime_version={}\ndevice={}\ncompute_capability={}.{}\nprecision={}\noptions={}\n",
            self.model_sha256,
            clean(&self.runtime_version),
            clean(&self.device),
            self.compute_capability.0,
            self.compute_capability.1,
            self.precision.as_str(),
            clean(&self.options)
        )
    }

    /// SHA-256 of [`EngineKey::canonical`] in hex: the cache file's name.
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(self.canonical().as_bytes()))
    }
}

/// What [`EngineCache::load`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A valid engine for exactly this key.
    Hit(Vec<u8>),
    /// No engine for this key.
    Miss,
    /// There was a file but it was stale or corrupt; it has been deleted. The reason says
    /// which and what differed.
    Discarded(String),
}

/// A directory of engines.
#[derive(Debug, Clone)]
pub struct EngineCache {
    dir: PathBuf,
}

impl EngineCache {
    /// A cache in `dir` (created on the first store).
    pub fn new(dir: impl Into<PathBuf>) -> EngineCache {
        EngineCache { dir: dir.into() }
    }

    /// `$AVACTION_CACHE_DIR`, else `$XDG_CACHE_HOME/avaction/engines`, else
    /// `$HOME/.cache/avaction/engines`, else `avaction-engines` in the temp directory.
    pub fn default_dir() -> PathBuf {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = var("AVACTION_CACHE_DIR") {
            return PathBuf::from(dir);
        }
        if let Some(xdg) = var("XDG_CACHE_HOME") {
            return Path::new(&xdg).join("avaction/engines");
        }
        if let Some(home) = var("HOME") {
            return Path::new(&home).join(".cache/avaction/engines");
        }
        std::env::temp_dir().join("avaction-engines")
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the engine of `key` lives.
    pub fn path(&self, key: &EngineKey) -> PathBuf {
        self.dir.join(format!("{}.engine", key.digest()))
    }

    /// The engine of `key`, if a valid one is cached. A stale or corrupt file is deleted
    /// and reported as [`Lookup::Discarded`]; only I/O failures other than "not found"
    /// are errors.
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) when an engine file exists but cannot be read.
    pub fn load(&self, key: &EngineKey) -> Result<Lookup> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return Err(Error::io(&path, e)),
        };
        match parse(&bytes, key) {
            Ok(engine) => Ok(Lookup::Hit(engine.to_vec())),
            Err(why) => {
                let reason = format!(
                    "{}: {why}; deleted, the engine will be rebuilt",
                    path.display()
                );
                log::warn!("engine cache: {reason}");
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(Lookup::Discarded(reason)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Ok(Lookup::Discarded(reason))
                    }
                    Err(e) => Err(Error::io(&path, e)),
                }
            }
        }
    }

    /// Stores `engine` under `key` (write to a temporary file, then rename) and returns
    /// its path.
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) when the cache folder or the engine file cannot be
    /// written.
    pub fn store(&self, key: &EngineKey, engine: &[u8]) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.path(key);
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", key.digest(), std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(MAGIC)?;
            let canonical = key.canonical();
            f.write_all(&(canonical.len() as u64).to_le_bytes())?;
            f.write_all(canonical.as_bytes())?;
            f.write_all(&(engine.len() as u64).to_le_bytes())?;
            f.write_all(&Sha256::digest(engine))?;
            f.write_all(engine)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&path, e)
        })?;
        Ok(path)
    }
}

/// Checks a cache file against `key`; returns the engine bytes or what is wrong.
fn parse<'a>(bytes: &'a [u8], key: &EngineKey) -> std::result::Result<&'a [u8], String> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or("not an avaction engine file (bad magic line)")?;
    let (key_len, rest) = take_u64(rest).ok_or("truncated header")?;
    let key_len = usize::try_from(key_len).map_err(|_| "bad header")?;
    if rest.len() < key_len {
        return Err("truncated header".into());
    }
    let (stored_key, rest) = rest.split_at(key_len);
    let expected = key.canonical();
    if stored_key != expected.as_bytes() {
        let stored = String::from_utf8_lossy(stored_key);
        let differs: Vec<&str> = expected
            .lines()
            .filter(|line| !stored.lines().any(|s| s == *line))
            .filter_map(|line| line.split('=').next())
            .collect();
        return Err(format!(
            "stale engine (key differs in: {})",
            differs.join(", ")
        ));
    }
    let (len, rest) = take_u64(rest).ok_or("truncated header")?;
    if rest.len() < 32 {
        return Err("truncated header".into());
    }
    let (checksum, engine) = rest.split_at(32);
    if engine.len() as u64 != len {
        return Err(format!(
            "corrupt engine ({} payload bytes, header says {len})",
            engine.len()
        ));
    }
    if Sha256::digest(engine).as_slice() != checksum {
        return Err("corrupt engine (checksum mismatch)".into());
    }
    Ok(engine)
}

fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*head), rest))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EngineKey {
        EngineKey::new(
            b"model",
            "10.7.0",
            "Orin (nvgpu)",
            (8, 7),
            Precision::Fp16,
            "",
        )
    }

    fn cache(name: &str) -> EngineCache {
        let dir = std::env::temp_dir().join(format!(
            "avaction-engine-cache-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        EngineCache::new(dir)
    }

    #[test]
    fn the_key_changes_with_every_input() {
        let base = key();
        let variants = [
            EngineKey::new(
                b"model2",
                "10.7.0",
                "Orin (nvgpu)",
                (8, 7),
                Precision::Fp16,
                "",
            ),
            EngineKey::new(
                b"model",
                "10.8.0",
                "Orin (nvgpu)",
                (8, 7),
                Precision::Fp16,
                "",
            ),
            EngineKey::new(
                b"model",
                "10.7.0",
                "NVIDIA H100",
                (8, 7),
                Precision::Fp16,
                "",
            ),
            EngineKey::new(
                b"model",
                "10.7.0",
                "Orin (nvgpu)",
                (9, 0),
                Precision::Fp16,
                "",
            ),
            EngineKey::new(
                b"model",
                "10.7.0",
                "Orin (nvgpu)",
                (8, 7),
                Precision::Fp32,
                "",
            ),
            EngineKey::new(
                b"model",
                "10.7.0",
                "Orin (nvgpu)",
                (8, 7),
                Precision::Int8,
                "",
            ),
            EngineKey::new(
                b"model",
                "10.7.0",
                "Orin (nvgpu)",
                (8, 7),
                Precision::Fp16,
                "dla=0",
            ),
        ];
        let mut digests = vec![base.digest()];
        for v in &variants {
            assert_ne!(v.digest(), base.digest(), "{v:?}");
            digests.push(v.digest());
        }
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), variants.len() + 1);
        // a newline in a value cannot forge another field
        let forged = EngineKey::new(
            b"model",
            "10.7.0\nprecision=fp32",
            "x",
            (8, 7),
            Precision::Fp16,
            "",
        );
        assert_eq!(forged.canonical().lines().count(), 6);
    }

    #[test]
    fn store_then_load_round_trips_and_a_miss_is_a_miss() {
        let cache = cache("roundtrip");
        assert_eq!(cache.load(&key()).expect("load"), Lookup::Miss);
        let path = cache.store(&key(), b"plan bytes").expect("store");
        assert!(path.starts_with(cache.dir()));
        assert_eq!(
            cache.load(&key()).expect("load"),
            Lookup::Hit(b"plan bytes".to_vec())
        );
        // no temporary file is left behind
        let names: Vec<_> = std::fs::read_dir(cache.dir())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(cache.dir()).ok();
    }

    #[test]
    fn a_stale_engine_is_never_loaded() {
        let cache = cache("stale");
        let other = EngineKey::new(
            b"model",
            "10.3.0",
            "Orin (nvgpu)",
            (8, 7),
            Precision::Fp16,
            "",
        );
        let built = cache.store(&other, b"old plan").expect("store");
        // an engine of another TensorRT version sits where this key's engine would be
        std::fs::rename(&built, cache.path(&key())).expect("rename");
        match cache.load(&key()).expect("load") {
            Lookup::Discarded(why) => assert!(why.contains("runtime_version"), "{why}"),
            other => panic!("stale engine returned: {other:?}"),
        }
        assert!(!cache.path(&key()).exists(), "stale file deleted");
        assert_eq!(cache.load(&key()).expect("load"), Lookup::Miss);
        std::fs::remove_dir_all(cache.dir()).ok();
    }

    #[test]
    fn corrupt_and_truncated_engines_are_discarded_then_rebuilt() {
        let cache = cache("corrupt");
        let payload = vec![7u8; 1000];
        for damage in ["flip", "truncate", "garbage", "empty"] {
            let path = cache.store(&key(), &payload).expect("store");
            let mut bytes = std::fs::read(&path).expect("read");
            match damage {
                "flip" => {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 1;
                }
                "truncate" => bytes.truncate(bytes.len() - 10),
                "garbage" => bytes = b"not an engine at all".to_vec(),
                _ => bytes.clear(),
            }
            std::fs::write(&path, &bytes).expect("write");
            match cache.load(&key()).expect("load") {
                Lookup::Discarded(why) => assert!(why.contains("deleted"), "{damage}: {why}"),
                other => panic!("{damage}: damaged engine returned: {other:?}"),
            }
            assert!(!path.exists(), "{damage}: file deleted");
        }
        cache.store(&key(), &payload).expect("rebuilt");
        assert_eq!(cache.load(&key()).expect("load"), Lookup::Hit(payload));
        std::fs::remove_dir_all(cache.dir()).ok();
    }
}
