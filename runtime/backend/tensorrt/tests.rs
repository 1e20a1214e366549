//! The engine logic (cache keys, rebuilds, backend selection, background switch) with a
//! fake engine provider, so it runs on machines without a GPU. The fake "engine" is the
//! model's ONNX hash plus a tag, "loaded" as tract (optionally with an output offset to
//! play a wrong engine).

use super::*;
use crate::backend::switch::JOIN_WAIT;
use crate::backend::{
    open_with as open_backend, BackendChoice, BackendOptions, BackendStatus, Graph, Tensor,
    TensorShape,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const MAGIC: &[u8] = b"fake-engine:";

struct Fake {
    gpu: Mutex<std::result::Result<GpuInfo, String>>,
    /// Builds begun, and builds done.
    started: AtomicUsize,
    builds: AtomicUsize,
    build_delay: Duration,
    /// Builds wait while this is false (at most 10 s, so a broken test cannot hang).
    gate: (Mutex<bool>, Condvar),
    /// Loads fail while > 0 (counts down): a cached engine TensorRT refuses.
    refuse_loads: AtomicUsize,
    /// Added to every output of the loaded "engine".
    offset: f32,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            gpu: Mutex::new(Ok(GpuInfo {
                name: "Orin".into(),
                compute_capability: (8, 7),
                integrated: true,
                tensorrt_version: "10.3.0".into(),
            })),
            started: AtomicUsize::new(0),
            builds: AtomicUsize::new(0),
            build_delay: Duration::ZERO,
            gate: (Mutex::new(true), Condvar::new()),
            refuse_loads: AtomicUsize::new(0),
            offset: 0.0,
        }
    }
    fn set_gpu(&self, f: impl FnOnce(&mut GpuInfo)) {
        if let Ok(g) = self.gpu.lock().unwrap().as_mut() {
            f(g);
        }
    }
    /// Opens (true) or closes the gate builds wait at.
    fn set_gate(&self, open: bool) {
        *self.gate.0.lock().unwrap() = open;
        self.gate.1.notify_all();
    }
}

/// tract, renamed, with an optional output offset.
struct FakeEngine {
    inner: crate::backend::tract::TractBackend,
    offset: f32,
}

impl Backend for FakeEngine {
    fn name(&self) -> &'static str {
        "tensorrt"
    }
    fn run(&mut self, inputs: &[Tensor]) -> Result<Tensor> {
        let mut t = self.inner.run(inputs)?;
        t.data.iter_mut().for_each(|v| *v += self.offset);
        Ok(t)
    }
}

impl EngineProvider for Fake {
    fn gpu(&self) -> std::result::Result<GpuInfo, String> {
        self.gpu.lock().unwrap().clone()
    }
    fn build(&self, onnx: &[u8], shapes: &[TensorShape], precision: Precision) -> Result<Vec<u8>> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let open = self.gate.0.lock().unwrap();
        drop(
            self.gate
                .1
                .wait_timeout_while(open, Duration::from_secs(10), |open| !*open)
                .unwrap(),
        );
        std::thread::sleep(self.build_delay);
        self.builds.fetch_add(1, Ordering::SeqCst);
        let mut plan = MAGIC.to_vec();
        plan.extend(format!("{} {:?} {}", onnx.len(), shapes, precision.as_str()).bytes());
        Ok(plan)
    }
    fn load(&self, plan: &[u8], graph: &Graph) -> Result<Box<dyn Backend>> {
        if self
            .refuse_loads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(err!(Backend, "tensorrt: deserializeCudaEngine failed"));
        }
        if !plan.starts_with(MAGIC) {
            return Err(err!(Backend, "tensorrt: not an engine"));
        }
        Ok(Box::new(FakeEngine {
            inner: crate::backend::tract::TractBackend::load(graph, 1)?,
            offset: self.offset,
        }))
    }
}

/// The single graph of the shipped models/cavnet-small, as its manifest declares it
/// (tests/manifest.rs checks that bundle; the backend tests only need a graph).
fn bundle() -> Graph {
    let shape = |name: &str, dims: &[usize]| TensorShape {
        name: name.into(),
        dims: dims.to_vec(),
    };
    Graph {
        path: Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cavnet-small/model.onnx"),
        inputs: vec![
            shape("frames", &[1, 16, 3, 64, 64]),
            shape("flow", &[1, 15, 3, 64, 64]),
            shape("logmel", &[1, 64, 128]),
        ],
        output: shape("logits", &[1, 6]),
    }
}

fn temp_cache(name: &str) -> EngineCache {
    let dir = std::env::temp_dir().join(format!("avaction-trt-test-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    EngineCache::new(dir)
}

fn options(cache: &EngineCache, precision: Precision) -> EngineOptions {
    EngineOptions {
        precision,
        cache: cache.clone(),
    }
}

/// [`prepare_with`], never cancelled, the engine only.
fn prepare(
    fake: &Fake,
    graph: &Path,
    shapes: &[TensorShape],
    opts: &EngineOptions,
    force: bool,
) -> Result<PreparedEngine> {
    prepare_with(fake, graph, shapes, opts, force, &AtomicBool::new(false)).map(|p| p.engine)
}

fn inputs(graph: &Graph) -> Vec<Tensor> {
    graph
        .inputs
        .iter()
        .map(|i| {
            let mut t = Tensor::zeros(&i.dims);
            t.data
                .iter_mut()
                .enumerate()
                .for_each(|(k, v)| *v = ((k % 97) as f32 / 97.0) - 0.5);
            t
        })
        .collect()
}

#[test]
fn an_engine_is_built_once_then_served_from_the_cache() {
    let (fake, b, cache) = (Fake::new(), bundle(), temp_cache("once"));
    let opts = options(&cache, Precision::Fp16);
    let shapes = b.inputs.clone();
    let first = prepare(&fake, &b.path, &shapes, &opts, false).unwrap();
    assert!(matches!(
        first.source,
        EngineSource::Built { replaced: None, .. }
    ));
    assert!(first.path.is_file());
    let second = prepare(&fake, &b.path, &shapes, &opts, false).unwrap();
    assert_eq!(second.source, EngineSource::Cache);
    assert_eq!(second.plan, first.plan);
    assert_eq!(fake.builds.load(Ordering::SeqCst), 1);
    let forced = prepare(&fake, &b.path, &shapes, &opts, true).unwrap();
    assert!(matches!(
        forced.source,
        EngineSource::Built {
            replaced: Some(_),
            ..
        }
    ));
    assert_eq!(fake.builds.load(Ordering::SeqCst), 2);
    std::fs::remove_dir_all(cache.dir()).ok();
}

#[test]
fn every_part_of_the_key_forces_its_own_engine() {
    let (fake, b, cache) = (Fake::new(), bundle(), temp_cache("key"));
    let shapes = b.inputs.clone();
    let fp16 = options(&cache, Precision::Fp16);
    let mut keys = vec![prepare(&fake, &b.path, &shapes, &fp16, false).unwrap().key];
    fake.set_gpu(|g| g.tensorrt_version = "10.7.0".into());
    keys.push(prepare(&fake, &b.path, &shapes, &fp16, false).unwrap().key);
    fake.set_gpu(|g| g.name = "NVIDIA GeForce RTX 4090".into());
    keys.push(prepare(&fake, &b.path, &shapes, &fp16, false).unwrap().key);
    fake.set_gpu(|g| g.compute_capability = (8, 9));
    keys.push(prepare(&fake, &b.path, &shapes, &fp16, false).unwrap().key);
    let fp32 = options(&cache, Precision::Fp32);
    keys.push(prepare(&fake, &b.path, &shapes, &fp32, false).unwrap().key);
    let mut wider = shapes.clone();
    wider[0].dims[0] = 2;
    keys.push(prepare(&fake, &b.path, &wider, &fp32, false).unwrap().key);
    let onnx = std::fs::read(&b.path).unwrap();
    let mut changed = onnx.clone();
    changed.extend_from_slice(b"\0");
    let tmp = cache.dir().with_extension("onnx");
    std::fs::create_dir_all(cache.dir()).unwrap();
    std::fs::write(&tmp, &changed).unwrap();
    keys.push(prepare(&fake, &tmp, &wider, &fp32, false).unwrap().key);
    assert_eq!(fake.builds.load(Ordering::SeqCst), keys.len());
    for (i, a) in keys.iter().enumerate() {
        for bk in &keys[i + 1..] {
            assert_ne!(a.digest(), bk.digest(), "{a:?} vs {bk:?}");
        }
    }
    std::fs::remove_file(&tmp).ok();
    std::fs::remove_dir_all(cache.dir()).ok();
}

#[test]
fn a_corrupt_engine_file_is_discarded_and_rebuilt() {
    let (fake, b, cache) = (Fake::new(), bundle(), temp_cache("corrupt"));
    let opts = options(&cache, Precision::Fp16);
    let shapes = b.inputs.clone();
    let first = prepare(&fake, &b.path, &shapes, &opts, false).unwrap();
    let mut bytes = std::fs::read(&first.path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&first.path, &bytes).unwrap();
    let again = prepare(&fake, &b.path, &shapes, &opts, false).unwrap();
    match &again.source {
        EngineSource::Built {
            replaced: Some(why),
            ..
        } => assert!(why.contains("corrupt") || why.contains("checksum"), "{why}"),
        other => panic!("expected a rebuild, got {other:?}"),
    }
    assert_eq!(again.plan, first.plan);
    assert_eq!(fake.builds.load(Ordering::SeqCst), 2);
    std::fs::remove_dir_all(cache.dir()).ok();
}

#[test]
fn a_cached_engine_tensorrt_refuses_is_deleted_and_rebuilt() {
    let (fake, b, cache) = (Fake::new(), bundle(), temp_cache("refused"));
    let opts = options(&cache, Precision::Fp16);
    prepare(&fake, &b.path, &b.inputs.clone(), &opts, false).unwrap();
    fake.refuse_loads.store(1, Ordering::SeqCst);
    let backend =
        open_with(&fake, &b, &opts, &BackendStatus::new("tensorrt")).expect("rebuilt and loaded");
    assert_eq!(backend.name(), "tensorrt");
    assert_eq!(fake.builds.load(Ordering::SeqCst), 2);
    std::fs::remove_dir_all(cache.dir()).ok();
}

#[test]
fn int8_is_refused_with_the_reason() {
    let (fake, b, cache) = (Fake::new(), bundle(), temp_cache("int8"));
    let opts = options(&cache, Precision::Int8);
    let e = prepare(&fake, &b.path, &b.inputs.clone(), &opts, false).unwrap_err();
    assert!(e.message().contains("calibration"), "{e}");
    let backend_opts = BackendOptions {
        choice: BackendChoice::Auto,
        threads: 1,
        engine: opts,
    };
    let e = open_backend(&b, &backend_opts, Arc::new(fake))
        .err()
        .expect("auto refuses int8 too");
    assert!(e.message().contains("INT8"), "{e}");
}

fn backend_options(choice: BackendChoice, cache: &EngineCache) -> BackendOptions {
    BackendOptions {
        choice,
        threads: 1,
        engine: options(cache, Precision::Fp16),
    }
}

#[test]
fn without_a_gpu_auto_serves_tract_and_tensorrt_fails_with_the_reason() {
    let b = bundle();
    let cache = temp_cache("nogpu");
    let fake = Fake::new();
    *fake.gpu.lock().unwrap() = Err("no usable CUDA driver: cudaErrorInsufficientDriver".into());
    let fake = Arc::new(fake);
    let (backend, status) = open_backend(
        &b,
        &backend_options(BackendChoice::Auto, &cache),
        fake.clone(),
    )
    .unwrap();
    assert_eq!((backend.name(), status.active()), ("tract", "tract"));
    assert_eq!(status.pending(), None);
    let e = open_backend(&b, &backend_options(BackendChoice::TensorRt, &cache), fake)
        .err()
        .expect("tensorrt refused");
    assert_eq!(e.kind(), crate::ErrorKind::Unavailable);
    assert!(e.message().contains("cudaErrorInsufficientDriver"), "{e}");
}

#[test]
fn the_real_provider_says_why_it_is_absent_in_this_build() {
    // In CI (no TensorRT, no GPU) the reason is the build or the driver; where a GPU
    // and TensorRT exist this test has nothing to check.
    match availability() {
        Ok(gpu) => eprintln!(
            "TensorRT {} available on {}",
            gpu.tensorrt_version, gpu.name
        ),
        Err(reason) => {
            assert!(
                reason.contains("--features tensorrt")
                    || reason.contains("CUDA")
                    || reason.contains("TensorRT"),
                "{reason}"
            );
            let b = bundle();
            let e = crate::backend::open(
                &b,
                &backend_options(BackendChoice::TensorRt, &temp_cache("real")),
            )
            .err()
            .expect("unavailable");
            assert!(e.message().contains(&reason), "{e}");
        }
    }
}

fn run_until_settled(backend: &mut Box<dyn Backend>, status: &BackendStatus, b: &Graph) -> usize {
    let inputs = inputs(b);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut windows = 0;
    while std::time::Instant::now() < deadline {
        backend.run(&inputs).unwrap();
        windows += 1;
        let pending = status.pending();
        if pending.is_none() || pending.is_some_and(|p| p.contains("not used")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    windows
}

#[test]
fn auto_on_a_cache_miss_serves_tract_builds_in_the_background_and_switches() {
    let b = bundle();
    let cache = temp_cache("switch");
    let mut fake = Fake::new();
    fake.build_delay = Duration::from_millis(300);
    let fake = Arc::new(fake);
    let (mut backend, status) = open_backend(
        &b,
        &backend_options(BackendChoice::Auto, &cache),
        fake.clone(),
    )
    .unwrap();
    assert_eq!(
        backend.name(),
        "tract",
        "tract serves while the engine builds"
    );
    assert!(status.pending().unwrap().contains("preparing"));
    let windows = run_until_settled(&mut backend, &status, &b);
    assert!(windows > 1, "tract served {windows} windows first");
    assert_eq!(backend.name(), "tensorrt");
    let switch = status.switch().expect("switch recorded");
    assert_eq!(
        (switch.from.as_str(), switch.to.as_str()),
        ("tract", "tensorrt")
    );
    assert_eq!(switch.max_rel_diff, 0.0);
    assert_eq!(fake.builds.load(Ordering::SeqCst), 1);

    // Next start: the engine is cached, TensorRT serves from the first window.
    let (backend, status) = open_backend(
        &b,
        &backend_options(BackendChoice::Auto, &cache),
        fake.clone(),
    )
    .unwrap();
    assert_eq!((backend.name(), status.active()), ("tensorrt", "tensorrt"));
    assert_eq!((status.pending(), status.switch()), (None, None));
    assert_eq!(fake.builds.load(Ordering::SeqCst), 1);
    std::fs::remove_dir_all(cache.dir()).ok();
}

#[test]
fn auto_rebuilds_a_refused_cached_engine_in_the_background_while_tract_serves() {
    let b = bundle();
    let cache = temp_cache("refused-auto");
    let mut fake = Fake::new();
    fake.build_delay = Duration::from_millis(300);
    let fake = Arc::new(fake);
    prepare(
        fake.as_ref(),
        &b.path,
        &b.inputs.clone(),
        &options(&cache, Precision::Fp16),
        false,
    )
    .unwrap();
    fake.refuse_loads.store(1, Ordering::SeqCst);
    let (mut backend, status) = open_backend(
        &b,
        &backend_options(BackendChoice::Auto, &cache),
        fake.clone(),
    )
    .unwrap();
    assert_eq!(backend.name(), "tract", "no foreground rebuild");
    assert!(status.pending().unwrap().contains("preparing"));
    run_until_settled(&mut backend, &status, &b);
    assert_eq!(backend.name(), "tensorrt");
    assert_eq!(fake.builds.load(Ordering::SeqCst), 2);
    std::fs::remove_dir_all(cache.dir()).ok();
}

#[test]
fn auto_keeps_tract_when_the_engine_disagrees_with_it() {
    let b = bundle();
    let cache = temp_cache("disagree");
    let mut fake = Fake::new();
    fake.offset = 0.5;
    let (mut backend, status) = open_backend(
        &b,
        &backend_options(BackendChoice::Auto, &cache),
        Arc::new(fake),
    )
    .unwrap();
    run_until_settled(&mut backend, &status, &b);
    assert_eq!(backend.name(), "tract");
    let pending = status.pending().expect("reason kept");
    assert!(pending.contains("differs from tract's"), "{pending}");
    assert_eq!(status.switch(), None);
    std::fs::remove_dir_all(cache.dir()).ok();
}

/// Polls `until` for at most 10 s.
fn eventually(what: &str, until: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !until() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The cache file of the bundle's FP16 engine: the key of its build in `BUILDS`.
fn engine_file(fake: &Fake, b: &Graph, cache: &EngineCache) -> PathBuf {
    let onnx = std::fs::read(&b.path).unwrap();
    cache.path(&engine_key(
        &onnx,
        &fake.gpu().unwrap(),
        &b.inputs,
        Precision::Fp16,
    ))
}

#[test]
fn two_runtimes_opening_one_model_share_one_engine_build() {
    let (b, cache) = (bundle(), temp_cache("shared"));
    let fake = Arc::new(Fake::new());
    fake.set_gate(false);
    let opts = backend_options(BackendChoice::Auto, &cache);
    let (mut first, first_status) = open_backend(&b, &opts, fake.clone()).unwrap();
    eventually("the first build", || {
        fake.started.load(Ordering::SeqCst) == 1
    });
    let (mut second, second_status) = open_backend(&b, &opts, fake.clone()).unwrap();
    let file = engine_file(&fake, &b, &cache);
    eventually("the second runtime to join", || BUILDS.waiting(&file) == 1);
    fake.set_gate(true);
    for (backend, status) in [(&mut first, &first_status), (&mut second, &second_status)] {
        run_until_settled(backend, status, &b);
        assert_eq!(backend.name(), "tensorrt");
    }
    assert_eq!(fake.started.load(Ordering::SeqCst), 1, "one build");
    assert_eq!(fake.builds.load(Ordering::SeqCst), 1);
    assert!(!BUILDS.running(&file), "the finished build leaves no entry");
    assert!(file.is_file());
    std::fs::remove_dir_all(cache.dir()).ok();
}

#[test]
fn dropping_a_runtime_during_the_build_is_bounded_and_keeps_the_engine() {
    let (b, cache) = (bundle(), temp_cache("drop"));
    let fake = Arc::new(Fake::new());
    fake.set_gate(false);
    let opts = backend_options(BackendChoice::Auto, &cache);
    let (builder, _) = open_backend(&b, &opts, fake.clone()).unwrap();
    eventually("the build", || fake.started.load(Ordering::SeqCst) == 1);
    let (waiter, _) = open_backend(&b, &opts, fake.clone()).unwrap();
    let file = engine_file(&fake, &b, &cache);
    eventually("the second runtime to join", || BUILDS.waiting(&file) == 1);

    // A runtime waiting for another's build stops waiting at once: its thread is joined.
    let t0 = Instant::now();
    drop(waiter);
    assert!(t0.elapsed() < JOIN_WAIT, "joined in {:?}", t0.elapsed());
    assert_eq!(BUILDS.waiting(&file), 0);
    assert!(BUILDS.running(&file), "the build goes on");

    // The build itself cannot be interrupted: the drop waits for it at most JOIN_WAIT
    // (here it ends 100 ms in), and the engine built is stored all the same.
    let opener = {
        let fake = fake.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            fake.set_gate(true);
        })
    };
    let t0 = Instant::now();
    drop(builder);
    assert!(
        t0.elapsed() < JOIN_WAIT + Duration::from_secs(1),
        "bounded: {:?}",
        t0.elapsed()
    );
    opener.join().unwrap();
    eventually("the build to end", || !BUILDS.running(&file));
    assert!(file.is_file(), "the engine is cached for the next start");
    assert_eq!(fake.builds.load(Ordering::SeqCst), 1);
    std::fs::remove_dir_all(cache.dir()).ok();
}

#[test]
fn a_cancelled_request_builds_nothing() {
    let (fake, b, cache) = (Fake::new(), bundle(), temp_cache("cancelled"));
    let opts = options(&cache, Precision::Fp16);
    let e = prepare_with(
        &fake,
        &b.path,
        &b.inputs,
        &opts,
        false,
        &AtomicBool::new(true),
    )
    .expect_err("cancelled");
    assert_eq!(e.kind(), crate::ErrorKind::Stopped);
    assert_eq!(fake.started.load(Ordering::SeqCst), 0);
    assert!(!BUILDS.running(&engine_file(&fake, &b, &cache)));
    std::fs::remove_dir_all(cache.dir()).ok();
}

#[test]
fn an_engine_the_cache_cannot_store_is_served_from_memory() {
    use std::os::unix::fs::PermissionsExt;
    let private = |dir: &Path, mode: u32| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // root writes to read-only folders, so its failure is a MAC key that cannot be read
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    for setup in ["unreadable key", "read-only folder"] {
        if setup == "read-only folder" && root {
            eprintln!("skipped for root: {setup}");
            continue;
        }
        let (b, cache) = (bundle(), temp_cache(&setup.replace(' ', "-")));
        std::fs::create_dir_all(cache.dir()).unwrap();
        private(cache.dir(), 0o700);
        if setup == "unreadable key" {
            std::fs::create_dir(cache.dir().join("mac.key")).unwrap();
        } else {
            private(cache.dir(), 0o500);
        }
        let fake = Arc::new(Fake::new());
        let (mut backend, status) = open_backend(
            &b,
            &backend_options(BackendChoice::Auto, &cache),
            fake.clone(),
        )
        .unwrap();
        run_until_settled(&mut backend, &status, &b);
        assert_eq!(backend.name(), "tensorrt", "{setup}: served from memory");
        assert_eq!(status.engines_not_cached(), 1, "{setup}");
        assert_eq!(status.pending(), None, "{setup}");
        let file = engine_file(&fake, &b, &cache);
        assert!(!file.exists(), "{setup}");

        // `tensorrt` in the foreground too
        let (backend, status) = open_backend(
            &b,
            &backend_options(BackendChoice::TensorRt, &cache),
            fake.clone(),
        )
        .unwrap();
        assert_eq!(backend.name(), "tensorrt", "{setup}");
        assert_eq!(status.engines_not_cached(), 1, "{setup}");

        // `avaction engine build` exists to fill the cache: there it is an error
        let e = build_engines_with(
            fake.as_ref(),
            std::slice::from_ref(&b),
            &options(&cache, Precision::Fp16),
            false,
        )
        .expect_err("engine build must fail");
        assert_eq!(e.kind(), crate::ErrorKind::Io, "{setup}: {e}");
        assert!(
            e.message().contains(&cache.dir().display().to_string()),
            "{e}"
        );
        assert_eq!(fake.builds.load(Ordering::SeqCst), 3, "{setup}");
        private(cache.dir(), 0o700);
        std::fs::remove_dir_all(cache.dir()).ok();
    }
}
