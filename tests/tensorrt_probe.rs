//! build.rs's TensorRT/CUDA discovery (runtime/backend/tensorrt/probe.rs) on fake SDK
//! layouts in a temporary folder: environment variables, pip wheels with only versioned
//! libraries, TensorRT 10's indirect version macros and 8.x's plain numbers, and the
//! messages for what is missing or too old. No TensorRT is needed.

use avaction::backend::tensorrt::probe;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TRT10_VERSION_H: &str = "#define TRT_MAJOR_ENTERPRISE 10\n#define TRT_MINOR_ENTERPRISE 3\n\
#define TRT_PATCH_ENTERPRISE 0\n#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE //!< major\n\
#define NV_TENSORRT_MINOR TRT_MINOR_ENTERPRISE\n#define NV_TENSORRT_PATCH TRT_PATCH_ENTERPRISE\n";

fn touch(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn fresh(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("avaction-probe-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TensorRT tree: headers with `version_h`, libraries named as given.
fn trt_tree(root: &Path, version_h: &str, libs: &[&str]) {
    for h in ["NvInfer.h", "NvOnnxParser.h"] {
        touch(&root.join("include").join(h), "");
    }
    touch(&root.join("include/NvInferVersion.h"), version_h);
    for l in libs {
        touch(&root.join("lib").join(l), "");
    }
}

fn cuda_tree(root: &Path, lib: &str) {
    touch(&root.join("include/cuda_runtime_api.h"), "");
    touch(&root.join("lib64").join(lib), "");
}

fn run(vars: &[(&str, &Path)], sites: &[PathBuf]) -> Result<probe::Sdk, String> {
    let vars: HashMap<String, PathBuf> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_path_buf()))
        .collect();
    let env = move |k: &str| vars.get(k).cloned();
    // A made-up architecture keeps the machine's own /usr/lib/<arch>-linux-gnu out.
    probe::probe(&env, sites, "testarch", "linux")
}

#[test]
fn finds_an_sdk_from_environment_variables_and_reads_tensorrt_10_macros() {
    let dir = fresh("env");
    trt_tree(
        &dir.join("trt"),
        TRT10_VERSION_H,
        &["libnvinfer.so", "libnvonnxparser.so"],
    );
    cuda_tree(&dir.join("cuda"), "libcudart.so");
    let sdk = run(
        &[
            ("TENSORRT_ROOT", &dir.join("trt")),
            ("CUDA_ROOT", &dir.join("cuda")),
        ],
        &[],
    )
    .expect("found");
    assert_eq!(sdk.version, (10, 3, 0));
    assert_eq!(sdk.trt_include, dir.join("trt/include"));
    assert_eq!(sdk.trt_lib, dir.join("trt/lib"));
    assert_eq!(sdk.cuda_lib, dir.join("cuda/lib64"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn pip_wheels_supply_versioned_libraries_and_the_cuda_runtime() {
    let dir = fresh("pip");
    let site = dir.join("site-packages");
    touch(&site.join("tensorrt_libs/libnvinfer.so.10"), "");
    touch(&site.join("tensorrt_libs/libnvonnxparser.so.10"), "");
    touch(
        &site.join("nvidia/cuda_runtime/include/cuda_runtime_api.h"),
        "",
    );
    touch(&site.join("nvidia/cuda_runtime/lib/libcudart.so.12"), "");
    let headers = dir.join("headers");
    trt_tree(&headers, TRT10_VERSION_H, &[]);
    let sdk = run(
        &[("TENSORRT_INCLUDE_DIR", &headers.join("include"))],
        std::slice::from_ref(&site),
    )
    .expect("found");
    assert_eq!(sdk.trt_lib, site.join("tensorrt_libs"));
    assert_eq!(sdk.cuda_lib, site.join("nvidia/cuda_runtime/lib"));
    assert_eq!(
        probe::find_library(&sdk.trt_lib, "nvinfer").as_deref(),
        Some("libnvinfer.so.10")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn versions_in_either_style_and_too_old_ones_are_told() {
    assert_eq!(
        probe::parse_version(
            "#define NV_TENSORRT_MAJOR 8 //!< major\n#define NV_TENSORRT_MINOR 6\n#define NV_TENSORRT_PATCH 2\n"
        ),
        Some((8, 6, 2))
    );
    assert_eq!(probe::parse_version(TRT10_VERSION_H), Some((10, 3, 0)));
    assert_eq!(probe::parse_version("#define NV_TENSORRT_MAJOR 10\n"), None);

    let dir = fresh("old");
    trt_tree(
        &dir.join("trt"),
        "#define NV_TENSORRT_MAJOR 8\n#define NV_TENSORRT_MINOR 2\n#define NV_TENSORRT_PATCH 1\n",
        &["libnvinfer.so", "libnvonnxparser.so"],
    );
    cuda_tree(&dir.join("cuda"), "libcudart.so.11.0");
    let e = run(
        &[
            ("TENSORRT_ROOT", &dir.join("trt")),
            ("CUDA_HOME", &dir.join("cuda")),
        ],
        &[],
    )
    .expect_err("too old");
    assert!(e.contains("8.2.1") && e.contains("too old"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn what_is_missing_is_named_with_where_it_looked_and_the_variable_to_set() {
    let dir = fresh("missing");
    let e = run(&[("TENSORRT_ROOT", &dir)], &[]).expect_err("no headers");
    assert!(
        e.contains("NvInfer.h") && e.contains(&dir.join("include").display().to_string()),
        "{e}"
    );
    assert!(e.contains("TENSORRT_ROOT"), "{e}");

    trt_tree(&dir, TRT10_VERSION_H, &["libnvinfer.so"]);
    let e = run(&[("TENSORRT_ROOT", &dir)], &[]).expect_err("no parser lib");
    assert!(e.contains("libnvonnxparser"), "{e}");

    touch(&dir.join("lib/libnvonnxparser.so"), "");
    let e = run(&[("TENSORRT_ROOT", &dir)], &[]).err();
    // This machine may have CUDA headers in /usr/local/cuda or /usr/include.
    if let Some(e) = e {
        assert!(e.contains("CUDA") && e.contains("CUDA_ROOT"), "{e}");
    }
    let e = probe::probe(&|_| None, &[], "x86_64", "windows").expect_err("not linux");
    assert!(e.contains("Linux only"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
