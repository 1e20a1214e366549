# The two entry points of the README. Each installs what it needs and is safe to rerun.
.PHONY: demo test setup minilm dds check check-tensorrt unit verify byo realscale realtime bench bench-frontends bench-realscale deb

setup:
	./scripts/setup-debian.sh

# The label sentence encoder models/minilm (all-MiniLM-L6-v2 as ONNX + tokenizer.json), built
# offline in a small venv; skipped when up to date (runtime/text, tests/text_encoder.rs).
minilm: setup
	./scripts/setup-minilm.sh

# An independent DDS participant for tests/ros2.rs: Cyclone DDS's Python binding in .venv-dds.
dds: setup
	./scripts/setup-dds.sh

# Live labels from the camera and microphone, or the built-in synthetic scene
# when this machine has neither.
demo: setup minilm
	cargo run --example camera_demo

# Formatting, lints, every test, and the real-time microphone test through a
# virtual PulseAudio source.
test: setup minilm dds check byo realscale unit verify realtime

# The `tensorrt` feature must build everywhere: without TensorRT it warns and the
# backend reports why it is unavailable (tests/cli_engine.rs checks the message). The
# second clippy also lints the build without the default `ros2` feature.
check:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --no-default-features --features tensorrt -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

# Compiles and links the TensorRT shim against an SDK folder (headers + libraries),
# e.g. TENSORRT_ROOT=/opt/tensorrt; see README "Running on a Jetson".
check-tensorrt:
	./scripts/check-tensorrt.sh

unit:
	cargo test

# Every shipped bundle against its goldens through the runtime's own frontends and backend.
verify:
	cargo build --quiet
	@for toml in models/*/model.toml; do ./target/debug/avaction verify "$$(dirname "$$toml")" || exit 1; done

# Bring your own model: the PyTorch exporter's worked example (models/train/examples/byo_model.py,
# tiny size) in .venv-train, then `avaction verify` on each bundle it writes (target/byo/tiny).
# Before `unit`: tests/onnxruntime.rs takes the onnxruntime library from that venv.
byo: setup
	cargo build --quiet
	./scripts/byo-example.sh

# Issue 15's bundles (models/train/avaction_train/realscale.py, random weights) against their
# PyTorch goldens with tract and onnxruntime: 32x32 in target/realscale-test (tests/model_staged.rs
# uses them, so before `unit`) and the 224x224 stand-in in target/realscale.
realscale: byo
	./scripts/realscale-check.sh

realtime:
	./tests/virtual_mic.sh cargo test --test realtime --test capture --test mic_loss -- --nocapture

bench:
	cargo bench --bench pipeline

# avaction (tract, onnxruntime) against the best-tuned Python pipeline on a 720p clip at real
# model scale, interleaved: one table (scripts/bench-realscale.sh, ~15 min on 2 cores).
bench-realscale:
	./scripts/bench-realscale.sh

# Frontends against OpenCV, torchaudio and librosa on the same data: one table of ratios.
bench-frontends:
	./scripts/bench-frontends.sh

# The Debian package in target/debian (binary, bundles, config, systemd unit):
# packaging/build-deb.sh. FEATURES=tensorrt on a Jetson.
deb: setup minilm
	./packaging/build-deb.sh $(if $(FEATURES),--features $(FEATURES))
