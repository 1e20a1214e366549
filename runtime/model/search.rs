//! Where model bundles are found, so that `avaction run` works from any directory: a
//! path that exists is taken as it is; otherwise the name (its last component, so that
//! `models/cavnet-ov-small` works too) is looked up in, in order:
//!
//! 1. `$AVACTION_MODELS` (one folder, or several separated by `:`),
//! 2. the user data folder: `$XDG_DATA_HOME/avaction/models`, else
//!    `~/.local/share/avaction/models`,
//! 3. the system data folder `/usr/share/avaction/models` (where a package installs
//!    the shipped bundles),
//! 4. the source tree this binary was built from (`<checkout>/models`), for development.
//!
//! ```
//! let dir = avaction::model::locate("cavnet-small").expect("shipped with the source tree");
//! assert!(dir.join("model.toml").is_file());
//! ```

use crate::{err, Result};
use std::path::{Path, PathBuf};

/// The environment variable with extra bundle folders (`:`-separated).
pub const ENV_MODELS: &str = "AVACTION_MODELS";
/// Where a system package installs the shipped bundles.
pub const SYSTEM_DIR: &str = "/usr/share/avaction/models";

/// The folders searched for a bundle name, in order (see the module docs). Folders that
/// do not exist are listed too: error messages say where they looked.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os(ENV_MODELS)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(data) = data_home {
        dirs.push(data.join("avaction/models"));
    }
    dirs.push(PathBuf::from(SYSTEM_DIR));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    dirs
}

/// The bundle folder for `spec`: `spec` itself when it is an existing folder, else the
/// first `<dir>/<name>` holding a `model.toml` among [`search_dirs`], where `name` is
/// the last component of `spec`.
///
/// # Errors
/// [`Model`](crate::ErrorKind::Model) when no folder matches; the message lists every
/// place looked at.
pub fn locate(spec: impl AsRef<Path>) -> Result<PathBuf> {
    let spec = spec.as_ref();
    if spec.is_dir() {
        return Ok(spec.to_path_buf());
    }
    let name = spec
        .file_name()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .ok_or_else(|| {
            err!(
                Model,
                "{}: not a model bundle name or folder",
                spec.display()
            )
        })?;
    let dirs = search_dirs();
    if let Some(found) = dirs
        .iter()
        .map(|d| d.join(name))
        .find(|d| d.join("model.toml").is_file())
    {
        return Ok(found);
    }
    let looked: Vec<String> = std::iter::once(spec.display().to_string())
        .chain(dirs.iter().map(|d| d.join(name).display().to_string()))
        .collect();
    Err(err!(
        Model,
        "model bundle {} not found; looked in: {} (set {ENV_MODELS} to a folder of bundles, or give a path)",
        spec.display(),
        looked.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_folder_is_taken_as_it_is_and_names_are_searched() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cavnet-small");
        assert_eq!(locate(&here).unwrap(), here);
        // A relative path that does not exist here falls back to its name.
        let found = locate("no/such/place/cavnet-small").unwrap();
        assert!(found.join("model.toml").is_file(), "{}", found.display());
    }

    #[test]
    fn a_missing_bundle_says_where_it_looked() {
        let e = locate("no-such-bundle-anywhere").unwrap_err();
        let text = e.to_string();
        assert!(text.contains(SYSTEM_DIR), "{text}");
        assert!(text.contains(ENV_MODELS), "{text}");
        assert!(locate("").is_err());
    }
}
