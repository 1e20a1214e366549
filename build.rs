//! Build script. Without the `tensorrt` feature it only declares the crate's cfg names.
//! With it, it looks for TensorRT and CUDA (runtime/backend/tensorrt/probe.rs says
//! where), reads the TensorRT version from `NvInferVersion.h`, compiles the C++ shim
//! (runtime/backend/tensorrt/shim.cpp) and links it, then sets `cfg(avaction_tensorrt)`
//! so the real backend is compiled. Where TensorRT is not found it warns and the crate
//! still builds: the backend then reports "not available: <reason>" at run time. It
//! never fails a build for a missing SDK, and does nothing under docs.rs.

#[cfg(feature = "tensorrt")]
#[path = "runtime/backend/tensorrt/probe.rs"]
mod probe;

fn main() {
    // `avaction_tensorrt` is set only when the TensorRT shim is compiled and linked.
    println!("cargo::rustc-check-cfg=cfg(avaction_tensorrt)");
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "tensorrt")]
    probe_and_build();
}

#[cfg(feature = "tensorrt")]
fn probe_and_build() {
    // docs.rs has no TensorRT: document the crate as built without it.
    if std::env::var_os("DOCS_RS").is_some() {
        return;
    }
    for var in probe::ENV_VARS {
        println!("cargo::rerun-if-env-changed={var}");
    }
    for file in ["shim.cpp", "shim.h", "probe.rs"] {
        println!("cargo::rerun-if-changed=runtime/backend/tensorrt/{file}");
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let sites = probe::python_site_packages();
    match probe::probe(&probe::env_path, &sites, &arch, &os) {
        Ok(sdk) => build_shim(&sdk),
        Err(reason) => {
            println!("cargo::warning=TensorRT backend not built: {reason}");
            println!("cargo::rustc-env=AVACTION_TENSORRT_MISSING={reason}");
        }
    }
}

#[cfg(feature = "tensorrt")]
fn build_shim(sdk: &probe::Sdk) {
    let (major, minor, patch) = sdk.version;
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("runtime/backend/tensorrt/shim.cpp")
        .warnings(true)
        .extra_warnings(true);
    // System includes: warnings inside NVIDIA's headers are not ours to fix.
    for dir in [&sdk.trt_include, &sdk.cuda_include] {
        build.flag("-isystem").flag(dir.display().to_string());
    }
    build.compile("avaction_trt_shim");
    for (dir, libs) in [
        (&sdk.trt_lib, &["nvinfer", "nvonnxparser"][..]),
        (&sdk.cuda_lib, &["cudart"][..]),
    ] {
        println!("cargo::rustc-link-search=native={}", dir.display());
        for stem in libs {
            // Checked by probe(): present.
            let file = probe::find_library(dir, stem).unwrap_or_else(|| format!("lib{stem}.so"));
            if file == format!("lib{stem}.so") {
                println!("cargo::rustc-link-lib=dylib={stem}");
            } else {
                println!("cargo::rustc-link-lib=dylib:+verbatim={file}");
            }
        }
        // Programs built here find the libraries without LD_LIBRARY_PATH.
        if !dir.starts_with("/usr/lib") {
            println!("cargo::rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
    println!("cargo::rustc-cfg=avaction_tensorrt");
    println!("cargo::rustc-env=AVACTION_TENSORRT_VERSION={major}.{minor}.{patch}");
    println!(
        "cargo::rustc-env=AVACTION_TENSORRT_PROBE=headers {}, libraries {}, CUDA {} and {}",
        sdk.trt_include.display(),
        sdk.trt_lib.display(),
        sdk.cuda_include.display(),
        sdk.cuda_lib.display()
    );
    println!(
    "cargo::warning=TensorRT {major}.{minor}.{patch} found (headers {}, libraries {}); building the TensorRT backend",
    sdk.trt_include.display(),
    sdk.trt_lib.display()
);
}
