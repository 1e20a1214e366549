//! Rust side of the C++ shim (runtime/backend/tensorrt/shim.h): the `extern "C"`
//! declarations and a safe wrapper that owns the engine handle. Compiled only where
//! build.rs found TensorRT (`cfg(avaction_tensorrt)`).

use std::ffi::{c_char, CStr, CString};

use super::GpuInfo;
use crate::backend::TensorShape;
use crate::{err, Result};

#[repr(C)]
struct AvtEngine {
    _private: [u8; 0],
}

type LogFn = extern "C" fn(severity: i32, message: *const c_char);

extern "C" {
    fn avt_set_log_callback(callback: Option<LogFn>);
    fn avt_header_version() -> i32;
    fn avt_library_version() -> i32;
    fn avt_cuda_device(
        device: i32,
        name: *mut c_char,
        name_len: usize,
        cc_major: *mut i32,
        cc_minor: *mut i32,
        integrated: *mut i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn avt_build_engine(
        device: i32,
        onnx: *const u8,
        onnx_len: usize,
        precision: i32,
        workspace_bytes: u64,
        n_shapes: i32,
        names: *const *const c_char,
        dims: *const *const i64,
        nb_dims: *const i32,
        plan: *mut *mut u8,
        plan_len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn avt_free(buffer: *mut std::ffi::c_void);
    fn avt_engine_load(
        device: i32,
        plan: *const u8,
        plan_len: usize,
        n_shapes: i32,
        names: *const *const c_char,
        dims: *const *const i64,
        nb_dims: *const i32,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut AvtEngine;
    fn avt_engine_io_count(engine: *const AvtEngine) -> i32;
    fn avt_engine_io(
        engine: *const AvtEngine,
        index: i32,
        name: *mut *const c_char,
        is_input: *mut i32,
        dims: *mut i64,
        nb_dims: *mut i32,
    ) -> i32;
    fn avt_engine_run(
        engine: *mut AvtEngine,
        host: *const *mut f32,
        lens: *const usize,
        n_io: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn avt_engine_free(engine: *mut AvtEngine);
}

const ERR_LEN: usize = 2048;

/// TensorRT log lines go to `log` under the target `tensorrt`.
extern "C" fn forward_log(severity: i32, message: *const c_char) {
    if message.is_null() {
        return;
    }
    // SAFETY: the shim passes a NUL-terminated string valid for this call.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    match severity {
        0 | 1 => log::error!(target: "tensorrt", "{text}"),
        2 => log::warn!(target: "tensorrt", "{text}"),
        3 => log::debug!(target: "tensorrt", "{text}"),
        _ => log::trace!(target: "tensorrt", "{text}"),
    }
}

fn message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn version_text(v: i32) -> String {
    format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
}

/// Shapes as the three parallel C arrays the shim takes; owns the strings.
struct CShapes {
    names: Vec<CString>,
    dims: Vec<Vec<i64>>,
}

impl CShapes {
    fn new(shapes: &[TensorShape]) -> Result<CShapes> {
        let names = shapes
            .iter()
            .map(|s| {
                CString::new(s.name.as_str())
                    .map_err(|_| err!(Model, "input name {:?} contains a NUL byte", s.name))
            })
            .collect::<Result<Vec<_>>>()?;
        let dims = shapes
            .iter()
            .map(|s| s.dims.iter().map(|&d| d as i64).collect())
            .collect();
        Ok(CShapes { names, dims })
    }
    fn name_ptrs(&self) -> Vec<*const c_char> {
        self.names.iter().map(|n| n.as_ptr()).collect()
    }
    fn dim_ptrs(&self) -> Vec<*const i64> {
        self.dims.iter().map(|d| d.as_ptr()).collect()
    }
    fn ranks(&self) -> Vec<i32> {
        self.dims.iter().map(|d| d.len() as i32).collect()
    }
}

/// Installs the log forwarder and checks that the headers and the loaded library agree.
pub(super) fn library() -> std::result::Result<String, String> {
    // SAFETY: plain calls without arguments into the shim.
    let (header, lib) = unsafe {
        avt_set_log_callback(Some(forward_log));
        (avt_header_version(), avt_library_version())
    };
    if header / 100 != lib / 100 {
        return Err(format!(
            "built against TensorRT {} headers but libnvinfer {} was loaded; rebuild avaction on this machine",
            version_text(header),
            version_text(lib)
        ));
    }
    Ok(version_text(lib))
}

/// Describes CUDA device `device`.
pub(super) fn device(
    device: i32,
    tensorrt_version: String,
) -> std::result::Result<GpuInfo, String> {
    let mut name = [0u8; 256];
    let mut errbuf = [0u8; ERR_LEN];
    let (mut major, mut minor, mut integrated) = (0i32, 0i32, 0i32);
    // SAFETY: every pointer is to a live local of the stated length.
    let rc = unsafe {
        avt_cuda_device(
            device,
            name.as_mut_ptr().cast(),
            name.len(),
            &mut major,
            &mut minor,
            &mut integrated,
            errbuf.as_mut_ptr().cast(),
            errbuf.len(),
        )
    };
    if rc != 0 {
        return Err(message(&errbuf));
    }
    Ok(GpuInfo {
        name: message(&name),
        compute_capability: (major.max(0) as u32, minor.max(0) as u32),
        integrated: integrated != 0,
        tensorrt_version,
    })
}

/// Builds a serialised engine (plan) from ONNX bytes; `fp16` selects half precision.
pub(super) fn build(
    device: i32,
    onnx: &[u8],
    fp16: bool,
    shapes: &[TensorShape],
) -> Result<Vec<u8>> {
    let c = CShapes::new(shapes)?;
    let (names, dims, ranks) = (c.name_ptrs(), c.dim_ptrs(), c.ranks());
    let mut plan: *mut u8 = std::ptr::null_mut();
    let mut plan_len = 0usize;
    let mut errbuf = vec![0u8; ERR_LEN];
    // SAFETY: the arrays outlive the call and have `shapes.len()` entries; the shim
    // writes a malloc'd buffer into `plan` that we copy and free below.
    let rc = unsafe {
        avt_build_engine(
            device,
            onnx.as_ptr(),
            onnx.len(),
            i32::from(fp16),
            0,
            shapes.len() as i32,
            names.as_ptr(),
            dims.as_ptr(),
            ranks.as_ptr(),
            &mut plan,
            &mut plan_len,
            errbuf.as_mut_ptr().cast(),
            errbuf.len(),
        )
    };
    if rc != 0 || plan.is_null() {
        return Err(err!(
            Backend,
            "tensorrt: engine build failed: {}",
            message(&errbuf)
        ));
    }
    // SAFETY: the shim returned `plan_len` valid bytes at `plan`, freed right after.
    let bytes = unsafe { std::slice::from_raw_parts(plan, plan_len) }.to_vec();
    unsafe { avt_free(plan.cast()) };
    Ok(bytes)
}

/// One I/O tensor of a loaded engine.
#[derive(Debug, Clone)]
pub(super) struct Io {
    pub name: String,
    pub input: bool,
    pub dims: Vec<usize>,
}

/// A loaded engine: context, stream and buffers live in the shim until drop.
pub(super) struct Engine {
    handle: *mut AvtEngine,
    pub io: Vec<Io>,
    ptrs: Vec<*mut f32>,
    lens: Vec<usize>,
    errbuf: Vec<u8>,
}

// SAFETY: the handle is owned exclusively by this value and used by one thread at a
// time (`run` takes `&mut self`); TensorRT contexts and CUDA streams may move between
// threads, and every shim call selects the device itself.
unsafe impl Send for Engine {}

impl Engine {
    pub(super) fn load(device: i32, plan: &[u8], shapes: &[TensorShape]) -> Result<Engine> {
        let c = CShapes::new(shapes)?;
        let (names, dims, ranks) = (c.name_ptrs(), c.dim_ptrs(), c.ranks());
        let mut errbuf = vec![0u8; ERR_LEN];
        // SAFETY: as in `build`; the plan slice is valid for the call.
        let handle = unsafe {
            avt_engine_load(
                device,
                plan.as_ptr(),
                plan.len(),
                shapes.len() as i32,
                names.as_ptr(),
                dims.as_ptr(),
                ranks.as_ptr(),
                errbuf.as_mut_ptr().cast(),
                errbuf.len(),
            )
        };
        if handle.is_null() {
            return Err(err!(
                Backend,
                "tensorrt: cannot load engine: {}",
                message(&errbuf)
            ));
        }
        let mut engine = Engine {
            handle,
            io: Vec::new(),
            ptrs: Vec::new(),
            lens: Vec::new(),
            errbuf,
        };
        // SAFETY: `handle` is a live engine; names stay valid while it lives (copied).
        let count = unsafe { avt_engine_io_count(handle) };
        for index in 0..count {
            let mut name: *const c_char = std::ptr::null();
            let mut input = 0i32;
            let mut dims = [0i64; 8];
            let mut rank = dims.len() as i32;
            let rc = unsafe {
                avt_engine_io(
                    handle,
                    index,
                    &mut name,
                    &mut input,
                    dims.as_mut_ptr(),
                    &mut rank,
                )
            };
            if rc != 0 || name.is_null() {
                return Err(err!(
                    Backend,
                    "tensorrt: cannot describe I/O tensor {index}"
                ));
            }
            let name = unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned();
            engine.io.push(Io {
                name,
                input: input != 0,
                dims: dims[..rank.max(0) as usize]
                    .iter()
                    .map(|&d| d.max(0) as usize)
                    .collect(),
            });
        }
        Ok(engine)
    }

    /// Runs once over `buffers` (one per I/O tensor, in `self.io` order): inputs are
    /// read, outputs written. `ptrs`/`lens` are reused, so nothing is allocated after
    /// the first call.
    pub(super) fn run(&mut self, buffers: &mut [Vec<f32>]) -> Result<()> {
        self.ptrs.clear();
        self.lens.clear();
        for b in buffers.iter_mut() {
            self.ptrs.push(b.as_mut_ptr());
            self.lens.push(b.len());
        }
        // SAFETY: one pointer per I/O tensor to `lens[i]` floats that stay borrowed for
        // the call; the shim checks the lengths against the engine's shapes.
        let rc = unsafe {
            avt_engine_run(
                self.handle,
                self.ptrs.as_ptr(),
                self.lens.as_ptr(),
                self.ptrs.len() as i32,
                self.errbuf.as_mut_ptr().cast(),
                self.errbuf.len(),
            )
        };
        if rc != 0 {
            return Err(err!(
                Backend,
                "tensorrt: inference failed: {}",
                message(&self.errbuf)
            ));
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: the handle came from avt_engine_load and is freed once.
        unsafe { avt_engine_free(self.handle) };
    }
}
