#!/usr/bin/env bash
# One GPU visit: CIFAR-10 VGG-16 from scratch → L = N = 4, T = 1 SNN, with the cifar10-vgg16
# recipe (train → convert → distill → evaluate → export), every model chosen on the held-out
# training images, the test set read once by `evaluate`.
#
# Prepare here (once):
#   python tools/pack_cifar10.py pack --output .gpu --parts 2      # CIFAR-10, ~49 MB
#   echo /.gpu/ >> .git/info/exclude; echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       jsonargparse docstring-parser typeshed-client tonic nir nirtorch aedat   # not on the GPU image
# Run (device tool): command "bash tools/gpu_vgg16.sh", carry [".gpu", ".whl"],
#   timeout_s 590. It writes to $OUT: the log, metrics.json, report.md and the SNN model folder
#   cut into checked parts (tools/parts.py: at most 8 files of 16 MiB come back).
# Then here:
#   python tools/parts.py join <files_at>/manifest.json --output benchmarks/checkpoints/vgg16_L4_N4_T1
#   multispike evaluate --model_dir benchmarks/checkpoints/vgg16_L4_N4_T1 --data CIFAR10DataModule \
#       --output runs/vgg16-report            # reproduces the GPU run's test accuracy
# A CPU smoke run of the same recipe (tiny schedule): tests/test_gpu_vgg16_recipe.py.
set -euo pipefail
export PYTHONUNBUFFERED=1
out=${OUT:?run through the device tool, which sets OUT}
site=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null
work=/tmp/pack
python3 tools/pack_cifar10.py unpack .gpu/part1 --work "$work"
python3 tools/pack_cifar10.py unpack .gpu/part2 --work "$work" --output /tmp/msdata
export MULTISPIKE_DATA=/tmp/msdata
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/log.txt"
python3 -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', \
lightning.__version__, 'timm', timm.__version__)" | tee -a "$out/log.txt"
run=/tmp/run
start=$(date +%s)
multispike run --recipe cifar10-vgg16 --output "$run" --progress false "$@" 2>&1 \
    | tee -a "$out/log.txt" || true
echo "wall seconds: $(( $(date +%s) - start ))" | tee -a "$out/log.txt"
for stage in train convert distill evaluate export; do   # per-stage seconds, as recorded
    [ -f "$run/$stage/done.json" ] && echo "$stage $(cat "$run/$stage/done.json" | tr -d '\n ')" \
        | tee -a "$out/log.txt"
done
cp "$run/evaluate/metrics.json" "$run/evaluate/report.md" "$out/" 2>/dev/null || true
for csv in "$run"/train/logs/*/metrics.csv "$run"/distill/logs/*/metrics.csv; do
    [ -f "$csv" ] && { echo "== $csv"; cat "$csv"; } >> "$out/log.txt"
done
if [ -f "$run/distill/student/config.json" ]; then
    python3 tools/parts.py split "$run"/distill/student/* --output "$out/snn" --name snn
fi
ls -la "$out" "$out/snn" 2>/dev/null || true
