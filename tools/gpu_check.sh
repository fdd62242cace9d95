#!/usr/bin/env bash
# GPU evidence for the speed work (fast path, SOLVER.CUDA_GRAPH, paired mode), in ONE device call.
#
# Real CIFAR-100 (3 parts of 44 MB) is over one call's 64 MiB carry limit, so it travels in three
# calls while the machine stays warm (ignored paths already there are kept between warm calls):
#   here, once:  mkdir -p .device_data/p0 .device_data/p1 .device_data/p2
#                for i in 0 1 2; do cp ../shared/data/cifar100/*.part$i .device_data/p$i/; done
#   call 1:      carry [".whl", ".device_data/p0"]   command: nvidia-smi -L
#   call 2:      carry [".device_data/p1"]           command: ls .device_data
#   call 3:      carry [".whl", ".device_data/p2"]   command: bash tools/gpu_check.sh   (timeout_s 600)
# Without the parts it uses 50,000 synthetic images for bench_speed and skips the real-data runs.
# The GPU machine has torch, pytest and pillow but not yacs/tensorboardX: .whl/ (ignored) holds
# yacs-0.1.8 and tensorboardX-2.6.5 wheels, fetched here with the `pip download` line of the
# device tool's README.
#
# Every step has its own time limit and log; a failing step does not stop the others. Steps run
# in order of importance (a call is cut at 600 s). Logs and JSON go to $WORK and, after every
# step, into $OUT/gpu_check.tgz (a call brings back at most 8 files); each log's tail is printed.
set -u
OUT=${OUT:-output/gpu_check}
WORK=/tmp/gpu_check
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date +%T))"
    timeout "$limit" "$@" >"$WORK/$name.log" 2>&1
    echo "rc=$? ($name)"
    tail -n 14 "$WORK/$name.log"
    tar czf "$OUT/gpu_check.tgz" -C "$WORK" .
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

ROOT=/tmp/c100
if ls .device_data/*/cifar100-png.tar.gz.part* >/dev/null 2>&1 && [ ! -d $ROOT/cifar100 ]; then
    mkdir -p $ROOT && cat .device_data/p*/cifar100-png.tar.gz.part* | tar xz -C $ROOT
fi
if [ -d $ROOT/cifar100 ]; then DATA=(--root $ROOT); else DATA=(--synthetic 50000); ROOT=; fi
SPEED=(python3 tools/bench_speed.py "${DATA[@]}" --device cuda --epoch)

# 1. the CUDA-only tests (graphed step against eager training, fast path without host syncs)
step tests 150 python3 -m pytest -q -p no:cacheprovider -k "cuda or gpu or device_choice" tests/test_graph_step.py \
    tests/test_bench_speed.py tests/test_fast_loader.py tests/test_fast_augment.py tests/test_fast_contrast.py \
    tests/test_trainer_parts.py

# 2. the graphed step and a graphed epoch (bf16 + channels_last, then fp32), reference step alongside
step speed_graph_bf16 120 "${SPEED[@]}" --only step --cuda-graph --amp bf16 --channels-last \
    --json "$WORK/speed_graph_bf16.json"
step speed_graph 100 "${SPEED[@]}" --only step --cuda-graph --json "$WORK/speed_graph.json"

# 3. one full-data SLD epoch with tools/train.py: the fast path with a graphed step, then the PIL path
if [ -n "$ROOT" ]; then
    python3 -c "import torch; from mdistiller.models import create_model; torch.manual_seed(0); \
torch.save({'model': create_model('resnet32x4', 100, 'cifar100').state_dict()}, '/tmp/teacher.pth')"
    TRAIN=(python3 tools/train.py --cfg configs/cifar100/sld/res32x4_res8x4.yaml --overwrite DATASET.ROOT $ROOT
           DISTILLER.TEACHER_WEIGHTS /tmp/teacher.pth SOLVER.EPOCHS 1 LOG.QUIET True LOG.PREFIX /tmp/runs)
    step epoch_fast_graph_bf16 90 "${TRAIN[@]}" EXPERIMENT.NAME fast_graph_bf16 DATASET.LOADER fast \
        SOLVER.CUDA_GRAPH True SOLVER.AMP bf16 SOLVER.CHANNELS_LAST True
    step epoch_fast_graph 90 "${TRAIN[@]}" EXPERIMENT.NAME fast_graph DATASET.LOADER fast SOLVER.CUDA_GRAPH True
    step epoch_pil 150 "${TRAIN[@]}" EXPERIMENT.NAME pil DATASET.LOADER pil
fi

# 4. the whole reference table: data pipelines over an epoch, eager steps, an eager epoch
step speed_fp32 180 "${SPEED[@]}" --json "$WORK/speed_fp32.json"

# 5. paired K=4 (Vanilla, KD, DKD, SLD) vs 4 solo runs on a 10,000-image subset, then with CUDA streams
if [ -n "$ROOT" ]; then
    PAIRED=(python3 tools/bench_paired.py --root $ROOT --device cuda --train-subset 10000 --test-subset 2000
            --teacher-weights /tmp/teacher.pth)
    step paired 150 "${PAIRED[@]}" --out /tmp/bp --json "$WORK/paired.json" DATASET.LOADER fast
    step paired_overlap 150 "${PAIRED[@]}" --overlap --out /tmp/bpo --json "$WORK/paired_overlap.json" \
        DATASET.LOADER fast
fi
echo "== done ($(date +%T))"
