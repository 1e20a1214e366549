//! On-disk cache of built inference engines (TensorRT plans), so an engine is built once
//! per model, runtime version, GPU and build settings, and never loaded where any of those
//! differ.
//!
//! Each engine is one file, `<dir>/<key digest>.engine`, holding a header (a magic line,
//! the full key in text, the payload length and a MAC) and the engine bytes. A file
//! whose embedded key differs from the one asked for (stale) or whose payload does not
//! match its length or MAC (corrupt, truncated, planted) is deleted and reported, never
//! returned. Files are written to a temporary name and renamed, so a crash mid-write
//! leaves no half engine under the real name; such leftovers (`.<digest>.<pid>.<ns>.tmp`
//! older than an hour) are swept whenever the cache is opened for a lookup or a store.
//!
//! # Trust
//! A TensorRT engine is code-like: deserialising one runs what it contains, so only
//! engines this user built are loaded (NVIDIA's advice: deserialize only trusted
//! engines). The cache folder is created with mode 0700 and refused, with the reason and
//! the fix, when it is owned by another user or writable by group or others. Every
//! engine carries an HMAC-SHA256 over its key and bytes under a 32-byte random key kept
//! in `<dir>/mac.key` (mode 0600, made on the first store): an engine planted by anyone
//! without that key (another user, a copy from another machine) fails the check and is
//! deleted and rebuilt. Files are opened without following symlinks and temporary files
//! are created exclusively (`O_EXCL | O_NOFOLLOW`, mode 0600). There is no shared
//! fallback folder: without `AVACTION_CACHE_DIR`, `XDG_CACHE_HOME` and `HOME` the cache
//! is off and says so.
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

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{err, Error, Result};

/// First line of every cache file (the format version; 2: keyed MAC).
const MAGIC: &[u8] = b"avaction-engine 2\n";
/// The MAC key's file name inside the cache folder.
const KEY_FILE: &str = "mac.key";
/// Bytes of the MAC key.
const KEY_LEN: usize = 32;
/// Temporary files older than this are left over from a crash and swept on every
/// lookup and store (a write takes seconds: a younger one may still be written).
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(3600);

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
    /// `$HOME/.cache/avaction/engines`; `None` where none is set (no shared fallback:
    /// a folder in /tmp could be prepared by another user).
    pub fn default_dir() -> Option<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = var("AVACTION_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(xdg) = var("XDG_CACHE_HOME") {
            return Some(Path::new(&xdg).join("avaction/engines"));
        }
        var("HOME").map(|home| Path::new(&home).join(".cache/avaction/engines"))
    }

    /// The cache in [`default_dir`](Self::default_dir); where there is none, a cache
    /// whose every load and store fails and says which variable to set.
    pub fn user_default() -> EngineCache {
        EngineCache::new(EngineCache::default_dir().unwrap_or_default())
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
    /// are errors. Temporary files left by a crash are swept first.
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) when an engine file exists but cannot be read;
    /// [`Config`](crate::ErrorKind::Config) when there is no folder or it is refused
    /// (another user's, or writable by others).
    pub fn load(&self, key: &EngineKey) -> Result<Lookup> {
        if !self.folder()?.exists() {
            return Ok(Lookup::Miss);
        }
        check_private_dir(&self.dir)?;
        sweep_stale_tmp(&self.dir);
        let path = self.path(key);
        let bytes = match read_nofollow(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            // ELOOP: a symlink in place of an engine is never followed
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                let _ = std::fs::remove_file(&path);
                return Ok(Lookup::Discarded(format!(
                    "{}: a symbolic link, not an engine file; deleted, the engine will be rebuilt",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        // an engine but no key: nothing this cache stored, so it cannot be trusted
        let checked = match read_mac_key(&self.dir)? {
            Some(mac_key) => parse(&bytes, key, &mac_key),
            None => Err("no MAC key in the cache folder, so the engine was not stored here".into()),
        };
        match checked {
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
    /// written; [`Config`](crate::ErrorKind::Config) when there is no folder or it is
    /// refused.
    pub fn store(&self, key: &EngineKey, engine: &[u8]) -> Result<PathBuf> {
        let dir = self.folder()?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
        check_private_dir(dir)?;
        let mac_key = mac_key(dir)?;
        sweep_stale_tmp(dir);
        let path = self.path(key);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = dir.join(format!(
            ".{}.{}.{nanos}.tmp",
            key.digest(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = create_private(&tmp)?;
            let canonical = key.canonical();
            let len = (engine.len() as u64).to_le_bytes();
            f.write_all(MAGIC)?;
            f.write_all(&(canonical.len() as u64).to_le_bytes())?;
            f.write_all(canonical.as_bytes())?;
            f.write_all(&len)?;
            f.write_all(&mac(&mac_key, canonical.as_bytes(), &len, engine))?;
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

impl EngineCache {
    /// The folder, or why there is none.
    fn folder(&self) -> Result<&Path> {
        if self.dir.as_os_str().is_empty() {
            return Err(err!(
                Config,
                "engine cache: no folder (none of AVACTION_CACHE_DIR, XDG_CACHE_HOME, HOME is \
                 set); set AVACTION_CACHE_DIR to a folder of your own"
            ));
        }
        Ok(&self.dir)
    }
}

/// The effective user id of this process.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a cache folder another user owns or can write to: they could plant engines.
fn check_private_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(err!(Config, "engine cache {}: not a folder", dir.display()));
    }
    let me = euid();
    if meta.uid() != me {
        return Err(err!(
            Config,
            "engine cache {}: owned by uid {}, not by this user (uid {me}); another user \
             could plant engines there: use a folder of your own (AVACTION_CACHE_DIR)",
            dir.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(err!(
            Config,
            "engine cache {}: writable by group or others (mode {mode:03o}); run `chmod 700 {}` \
             or use another folder (AVACTION_CACHE_DIR)",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Reads a file without following a symlink in its last component.
fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Creates a new file (never an existing one, never through a symlink), mode 0600.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// The MAC key of the cache in `dir`, if there is one; refused when another user owns
/// it or others can read it.
fn read_mac_key(dir: &Path) -> Result<Option<[u8; KEY_LEN]>> {
    let path = dir.join(KEY_FILE);
    let bytes = match read_nofollow(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
    if meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        return Err(err!(
            Config,
            "engine cache key {}: must belong to this user with mode 0600 (it has uid {}, mode \
             {:03o}); delete it (cached engines are then rebuilt)",
            path.display(),
            meta.uid(),
            meta.mode() & 0o777
        ));
    }
    let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        err!(
            Config,
            "engine cache key {}: {} bytes, expected {KEY_LEN}; delete it (cached engines are \
             then rebuilt)",
            path.display(),
            bytes.len()
        )
    })?;
    Ok(Some(key))
}

/// The MAC key of the cache in `dir`, made (32 random bytes, mode 0600) if missing.
fn mac_key(dir: &Path) -> Result<[u8; KEY_LEN]> {
    if let Some(key) = read_mac_key(dir)? {
        return Ok(key);
    }
    let path = dir.join(KEY_FILE);
    let mut key = [0u8; KEY_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut r| r.read_exact(&mut key))
        .map_err(|e| err!(Io, "/dev/urandom").caused_by(e))?;
    match create_private(&path).and_then(|mut f| {
        f.write_all(&key)?;
        f.sync_all()
    }) {
        Ok(()) => Ok(key),
        // another process made it first: use theirs
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_mac_key(dir)?
            .ok_or_else(|| err!(Io, "{}: vanished while being created", path.display())),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Deletes this process's or others' temporary files left by a crash (older than an hour).
fn sweep_stale_tmp(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(".tmp")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TMP);
        if old && std::fs::remove_file(entry.path()).is_ok() {
            log::info!("engine cache: removed stale {}", entry.path().display());
        }
    }
}

/// HMAC-SHA256 (RFC 2104) of the key text, the payload length and the payload.
fn mac(key: &[u8; KEY_LEN], canonical: &[u8], len: &[u8], engine: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut padded = [0u8; BLOCK];
    padded[..KEY_LEN].copy_from_slice(key);
    let pad = |byte: u8| padded.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(canonical)
        .chain_update(len)
        .chain_update(engine)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Checks a cache file against `key`; returns the engine bytes or what is wrong.
fn parse<'a>(
    bytes: &'a [u8],
    key: &EngineKey,
    mac_key: &[u8; KEY_LEN],
) -> std::result::Result<&'a [u8], String> {
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
    let (tag, engine) = rest.split_at(32);
    if engine.len() as u64 != len {
        return Err(format!(
            "corrupt engine ({} payload bytes, header says {len})",
            engine.len()
        ));
    }
    let expected = mac(mac_key, stored_key, &len.to_le_bytes(), engine);
    // constant time: a timing oracle on the tag is not worth giving anyone
    let differs = expected
        .iter()
        .zip(tag)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if differs != 0 {
        return Err(
            "engine not signed by this cache's key (corrupt, or planted / copied from another \
             cache)"
                .into(),
        );
    }
    Ok(engine)
}

fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*head), rest))
}

/// Bytes as lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
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
        // no temporary file is left behind (the engine and the cache's MAC key only)
        let names: Vec<_> = std::fs::read_dir(cache.dir())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| n != KEY_FILE)
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

    #[test]
    fn the_folder_is_private_and_a_shared_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let cache = cache("private");
        cache.store(&key(), b"plan").expect("store");
        let mode = std::fs::metadata(cache.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "created private");
        let key_mode = std::fs::metadata(cache.dir().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(key_mode, 0o600);
        std::fs::set_permissions(cache.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
        for e in [
            cache.load(&key()).expect_err("world-writable"),
            cache.store(&key(), b"plan").expect_err("world-writable"),
        ] {
            assert!(e.to_string().contains("chmod 700"), "{e}");
        }
        std::fs::set_permissions(cache.dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            cache.load(&key()).expect("private again"),
            Lookup::Hit(b"plan".to_vec())
        );
        // owned by someone else (only root can make that here)
        if euid() == 0 {
            std::os::unix::fs::chown(cache.dir(), Some(65534), None).unwrap();
            let e = cache.load(&key()).expect_err("owned by nobody");
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
            std::os::unix::fs::chown(cache.dir(), Some(0), None).unwrap();
        }
        std::fs::remove_dir_all(cache.dir()).ok();
    }

    #[test]
    fn a_planted_engine_is_refused_and_rebuilt() {
        // an engine made by another cache (another user, another machine): right key,
        // right checksum of the old format, but not this cache's MAC
        let ours = cache("planted-ours");
        let theirs = cache("planted-theirs");
        ours.store(&key(), b"genuine").expect("store");
        let planted = theirs.store(&key(), b"evil plan").expect("store");
        std::fs::copy(&planted, ours.path(&key())).unwrap();
        match ours.load(&key()).expect("load") {
            Lookup::Discarded(why) => assert!(why.contains("not signed"), "{why}"),
            other => panic!("planted engine returned: {other:?}"),
        }
        // a symlink in place of the engine is never followed
        std::os::unix::fs::symlink(&planted, ours.path(&key())).unwrap();
        match ours.load(&key()).expect("load") {
            Lookup::Discarded(why) => assert!(why.contains("symbolic link"), "{why}"),
            other => panic!("symlink followed: {other:?}"),
        }
        assert!(planted.exists(), "the link's target is left alone");
        // a key file others can read is refused
        ours.store(&key(), b"genuine").expect("store");
        use std::os::unix::fs::PermissionsExt;
        let key_file = ours.dir().join(KEY_FILE);
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ours.load(&key()).expect_err("readable key");
        assert!(e.to_string().contains("0600"), "{e}");
        for c in [ours, theirs] {
            std::fs::remove_dir_all(c.dir()).ok();
        }
    }

    #[test]
    fn without_a_folder_the_cache_is_off_and_says_why() {
        let off = EngineCache::new("");
        let e = off.store(&key(), b"plan").expect_err("no folder");
        assert!(e.to_string().contains("AVACTION_CACHE_DIR"), "{e}");
        assert!(off.load(&key()).is_err());
    }

    #[test]
    fn stale_temporary_files_are_swept() {
        let cache = cache("sweep");
        cache.store(&key(), b"plan").expect("store");
        let stale = cache.dir().join(".abc.1.2.tmp");
        let fresh = cache.dir().join(".abc.1.3.tmp");
        for p in [&stale, &fresh] {
            std::fs::write(p, b"half").unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        cache.store(&key(), b"plan").expect("store");
        assert!(!stale.exists(), "an hour-old temporary file is swept");
        assert!(fresh.exists(), "a fresh one may belong to a running build");
        std::fs::remove_dir_all(cache.dir()).ok();
    }

    #[test]
    fn opening_the_cache_for_a_lookup_sweeps_stale_temporary_files() {
        let cache = cache("sweep-load");
        // a folder that does not exist is not created by a lookup
        assert_eq!(cache.load(&key()).expect("load"), Lookup::Miss);
        assert!(!cache.dir().exists());
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(cache.dir())
            .unwrap();
        let stale = cache.dir().join(format!(".{}.1.2.tmp", key().digest()));
        let fresh = cache.dir().join(".abc.1.3.tmp");
        let other = cache.dir().join("notes.tmp");
        for p in [&stale, &fresh, &other] {
            std::fs::write(p, b"half").unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for p in [&stale, &other] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        // the first thing a runtime does with its cache: look its engine up
        assert_eq!(cache.load(&key()).expect("load"), Lookup::Miss);
        assert!(!stale.exists(), "a crash's leftover is swept on the lookup");
        assert!(fresh.exists(), "a fresh one may be being written");
        assert!(other.exists(), "only our own temporary names are swept");
        std::fs::remove_dir_all(cache.dir()).ok();
    }
}
