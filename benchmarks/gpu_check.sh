#!/usr/bin/env bash
# The GPU checks of issues 13/14 as one prepared script (docs/rendering.md, "On a GPU").
# Here first: bash benchmarks/gpu_prepare.sh; then, on a lent GPU machine:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".gpu"], timeout_s=560)
# Each step has its own time limit, so one hang cannot eat the others; logs and JSON
# land in $OUT (they come back).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site
step() { local t=$1 name=$2; shift 2; echo "=== $name (limit ${t}s)"; local s=$SECONDS
  timeout "$t" "$@" > >(tee "$OUT/$name.log") 2>&1; echo "=== $name: exit $? in $((SECONDS - s))s"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
nvidia-smi -L; python3 -c "import torch, kornia; print('torch', torch.__version__, 'kornia', kornia.__version__)"
fer=/tmp/site/bin/ferdata  # its own folder, not the checkout, is first on sys.path
runs=/tmp/gpu-runs
for r in live compiled; do mkdir -p "$runs/$r/sample-data" && cp -r .gpu/sample/. "$runs/$r/sample-data/"; done
# 1. torch renderer on the GPU: match, determinism, samples/s, render vs train step
step 150 gpu_check python3 benchmarks/gpu_check.py --sample .gpu/sample --json "$OUT/gpu_check.json"
# 2. the renderer benchmark: GPU vs the shard renderer on every core, stage shares
step 100 render_torch python3 benchmarks/render_torch.py --sample .gpu/sample --device cuda --n 4096 --batch 2048 --repeats 1
# 3. train_on=live with bf16 on the sample
step 120 train_live "$fer" train --recipe recipes/sample_demo.toml --device cuda --amp bf16 --workers 0 \
  --set train_on=live -o "$runs/live"
# 4. shards, bf16, channels_last and torch.compile
step 150 train_compiled "$fer" train --recipe recipes/sample_demo.toml --device cuda --amp bf16 \
  --set compile=true --set channels_last=true -o "$runs/compiled"
# 5. our loop vs a bare loop per model on CUDA
step 90 train_bench python3 benchmarks/train.py --device cuda --batch 256 --pairs 9 \
  --models 'preactresnet18,feratt_cls,deep_emotion,lbp_attention'
tar czf "$OUT/runs.tgz" -C "$runs" --exclude sample-data --exclude "*.pt" --exclude "*.h5" .  # 8 files come back at most
ls -la "$OUT"
