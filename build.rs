//! Build script: declares the cfg names the crate may use and (in a later issue)
//! probes for TensorRT. It never fails a CPU-only build.

fn main() {
    // `avaction_tensorrt` is set only when the TensorRT shim is compiled and linked.
    println!("cargo::rustc-check-cfg=cfg(avaction_tensorrt)");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("DOCS_RS").is_some() {
        return;
    }
    if std::env::var_os("CARGO_FEATURE_TENSORRT").is_some() {
        println!(
            "cargo::warning=feature `tensorrt` requested, but TensorRT probing is not built yet; \
             the TensorRT backend will report itself unavailable"
        );
    }
}
