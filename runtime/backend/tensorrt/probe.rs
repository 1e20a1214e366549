//! TensorRT / CUDA discovery: where build.rs looks for the SDK to compile the shim
//! against. A module of the crate (so that tests/tensorrt_probe.rs tests it on fake SDK
//! layouts through the public API, and `avaction devices` could say where it looked);
//! build.rs cannot depend on the crate it builds, so it includes this same file with
//! `#[path]`. It uses nothing but `std`.
//!
//! Where it looks, first hit wins (each part separately: TensorRT headers, TensorRT
//! libraries, CUDA headers, CUDA runtime library):
//! 1. `TENSORRT_ROOT` (`include/`, `lib/` or `lib64/`), or `TENSORRT_INCLUDE_DIR` /
//!    `TENSORRT_LIB_DIR`; `CUDA_ROOT`, `CUDA_HOME` or `CUDA_PATH` (`include/`, `lib64/`,
//!    `lib/`, `targets/<arch>-linux/`).
//! 2. JetPack: `/usr/include/aarch64-linux-gnu`, `/usr/lib/aarch64-linux-gnu`,
//!    `/usr/local/cuda`.
//! 3. x86-64 Debian/Ubuntu packages: `/usr/include/x86_64-linux-gnu`,
//!    `/usr/lib/x86_64-linux-gnu`, `/usr/local/cuda`, `/usr/include`, `/usr/lib`.
//! 4. pip wheels in the site-packages of `python3` (or `$PYTHON`): `tensorrt_libs/`
//!    (libraries only; headers must come from 1-3) and `nvidia/cuda_runtime/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every variable the probe reads (build.rs reruns when one changes).
pub const ENV_VARS: [&str; 7] = [
    "TENSORRT_ROOT",
    "TENSORRT_INCLUDE_DIR",
    "TENSORRT_LIB_DIR",
    "CUDA_ROOT",
    "CUDA_HOME",
    "CUDA_PATH",
    "PYTHON",
];

/// Where the SDK parts were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdk {
    /// The folder with `NvInfer.h`.
    pub trt_include: PathBuf,
    /// The folder with `libnvinfer`.
    pub trt_lib: PathBuf,
    /// The folder with `cuda_runtime_api.h`.
    pub cuda_include: PathBuf,
    /// The folder with `libcudart`.
    pub cuda_lib: PathBuf,
    /// TensorRT's version from `NvInferVersion.h`: major, minor, patch.
    pub version: (u32, u32, u32),
}

/// An environment variable as a path; empty counts as unset.
pub fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Looks for the SDK. `env` reads an environment variable, `sites` are Python
/// site-packages folders (pip wheels), `arch`/`os` the target's.
///
/// # Errors
/// Why there is no usable SDK, as one line for a build warning: which part is missing
/// (and where it was looked for), or a TensorRT older than 8.5.
pub fn probe(
    env: &dyn Fn(&str) -> Option<PathBuf>,
    sites: &[PathBuf],
    arch: &str,
    os: &str,
) -> Result<Sdk, String> {
    if os != "linux" {
        return Err(format!(
            "TensorRT is supported on Linux only (target OS is {os})"
        ));
    }
    let multiarch = format!("{arch}-linux-gnu");

    let mut trt_inc: Vec<PathBuf> = Vec::new();
    let mut trt_lib: Vec<PathBuf> = Vec::new();
    let mut cuda_inc: Vec<PathBuf> = Vec::new();
    let mut cuda_lib: Vec<PathBuf> = Vec::new();
    if let Some(root) = env("TENSORRT_ROOT") {
        trt_inc.push(root.join("include"));
        trt_lib.extend([root.join("lib"), root.join("lib64")]);
    }
    trt_inc.extend(env("TENSORRT_INCLUDE_DIR"));
    trt_lib.extend(env("TENSORRT_LIB_DIR"));
    for var in ["CUDA_ROOT", "CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = env(var) {
            let targets = root.join("targets").join(format!("{arch}-linux"));
            cuda_inc.extend([root.join("include"), targets.join("include")]);
            cuda_lib.extend([root.join("lib64"), root.join("lib"), targets.join("lib")]);
        }
    }
    // JetPack and Debian/Ubuntu packages share the multiarch layout.
    trt_inc.extend([
        PathBuf::from(format!("/usr/include/{multiarch}")),
        PathBuf::from("/usr/include"),
    ]);
    trt_lib.extend([
        PathBuf::from(format!("/usr/lib/{multiarch}")),
        PathBuf::from("/usr/lib"),
    ]);
    let cuda = PathBuf::from("/usr/local/cuda");
    let cuda_targets = cuda.join("targets").join(format!("{arch}-linux"));
    cuda_inc.extend([
        cuda.join("include"),
        cuda_targets.join("include"),
        PathBuf::from("/usr/include"),
    ]);
    cuda_lib.extend([
        cuda.join("lib64"),
        cuda_targets.join("lib"),
        PathBuf::from(format!("/usr/lib/{multiarch}")),
    ]);
    for site in sites {
        trt_lib.push(site.join("tensorrt_libs"));
        cuda_inc.push(site.join("nvidia/cuda_runtime/include"));
        cuda_lib.push(site.join("nvidia/cuda_runtime/lib"));
    }

    let has = |dir: &Path, files: &[&str]| files.iter().all(|f| dir.join(f).is_file());
    let has_lib = |dir: &Path, stem: &str| find_library(dir, stem).is_some();
    let looked = |dirs: &[PathBuf]| {
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };

    let trt_headers = ["NvInfer.h", "NvInferVersion.h", "NvOnnxParser.h"];
    let trt_include = trt_inc
        .iter()
        .find(|d| has(d, &trt_headers))
        .cloned()
        .ok_or_else(|| {
            format!(
                "TensorRT headers (NvInfer.h, NvInferVersion.h, NvOnnxParser.h) not found in {}; \
             set TENSORRT_ROOT or TENSORRT_INCLUDE_DIR",
                looked(&trt_inc)
            )
        })?;
    let trt_lib = trt_lib
        .iter()
        .find(|d| has_lib(d, "nvinfer") && has_lib(d, "nvonnxparser"))
        .cloned()
        .ok_or_else(|| {
            format!(
            "libnvinfer and libnvonnxparser not found in {}; set TENSORRT_ROOT or TENSORRT_LIB_DIR",
            looked(&trt_lib)
        )
        })?;
    let cuda_include = cuda_inc
        .iter()
        .find(|d| has(d, &["cuda_runtime_api.h"]))
        .cloned()
        .ok_or_else(|| {
            format!(
                "CUDA headers (cuda_runtime_api.h) not found in {}; set CUDA_ROOT",
                looked(&cuda_inc)
            )
        })?;
    let cuda_lib = cuda_lib
        .iter()
        .find(|d| has_lib(d, "cudart"))
        .cloned()
        .ok_or_else(|| {
            format!(
                "the CUDA runtime (libcudart) not found in {}; set CUDA_ROOT",
                looked(&cuda_lib)
            )
        })?;
    let header = trt_include.join("NvInferVersion.h");
    let text = std::fs::read_to_string(&header)
        .map_err(|e| format!("cannot read {}: {e}", header.display()))?;
    let version = parse_version(&text)
        .ok_or_else(|| format!("no NV_TENSORRT_MAJOR/MINOR/PATCH in {}", header.display()))?;
    if (version.0, version.1) < (8, 5) {
        return Err(format!(
            "TensorRT {}.{}.{} in {} is too old: the shim needs 8.5 or newer (10.x is tested)",
            version.0,
            version.1,
            version.2,
            trt_include.display()
        ));
    }
    Ok(Sdk {
        trt_include,
        trt_lib,
        cuda_include,
        cuda_lib,
        version,
    })
}

/// The file to link for `lib<stem>`: the plain `.so`, else the newest versioned one
/// (pip wheels ship only `libnvinfer.so.10`).
pub fn find_library(dir: &Path, stem: &str) -> Option<String> {
    let plain = format!("lib{stem}.so");
    if dir.join(&plain).is_file() {
        return Some(plain);
    }
    let mut versioned: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix(&plain)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|v| {
                    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                })
        })
        .collect();
    versioned.sort_by_key(|n| n.len());
    versioned.into_iter().next()
}

/// `NV_TENSORRT_MAJOR` etc.: a number, or (TensorRT 10) the name of another macro.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let define = |name: &str| -> Option<String> {
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("#define") && words.next() == Some(name))
                .then(|| words.next().map(str::to_string))
                .flatten()
        })
    };
    let number = |name: &str| -> Option<u32> {
        let mut value = define(name)?;
        for _ in 0..4 {
            let trimmed = value.trim_matches(|c| c == '(' || c == ')');
            if let Ok(n) = trimmed.parse() {
                return Some(n);
            }
            value = define(trimmed)?;
        }
        None
    };
    Some((
        number("NV_TENSORRT_MAJOR")?,
        number("NV_TENSORRT_MINOR")?,
        number("NV_TENSORRT_PATCH")?,
    ))
}

/// The site-packages folders of `python3` (or `$PYTHON`), where pip wheels put
/// TensorRT and CUDA libraries; empty where there is no Python.
pub fn python_site_packages() -> Vec<PathBuf> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script =
        "import site,sys;print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]))";
    match Command::new(&python).args(["-c", script]).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .collect(),
        _ => Vec::new(),
    }
}
