#!/usr/bin/env bash
# One GPU visit: timm resnet50 through the stages on an ImageNet-layout folder at batch 256
# (seconds and peak memory per stage; ANN / QANN / SNN(T = 1) images/s in fp32 and bf16), then
# the ResNet-20 spike-code tables of two calibrated models (all 10,000 CIFAR-10 test images).
#
# Prepare here (once):
#   mkdir -p .gpu/msdata/cifar10 .gpu/msdata/weights .gpu/models
#   python - <<'EOF'   # CIFAR-10: all test images, 1,200 training images (~31 MB)
#   import numpy as np, os
#   a = np.load(os.environ["MULTISPIKE_DATA"] + "/cifar10/cifar10-full.npz")
#   np.savez_compressed(".gpu/msdata/cifar10/cifar10-full.npz",
#                       **{k: a[k][:1200] if k.startswith("train") else a[k] for k in a})
#   EOF
#   cp -r $MULTISPIKE_DATA/weights/akamaster-cifar10-resnet .gpu/msdata/weights/   # ms_resnet20
#   cp -r MODEL_DIR .gpu/models/NAME          # each model folder to tabulate (runs/…/convert)
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       jsonargparse docstring-parser typeshed-client             # not on the GPU image
# Run (device tool): command "bash tools/gpu_stages.sh", carry [".gpu", ".whl"],
#   timeout_s 590. Writes to $OUT: log.txt, imagenet_layout_gpu.json, codes_NAME.json.
# A CPU smoke run: TINY=1 OUT=/tmp/out bash tools/gpu_stages.sh (a few images, on CPU).
set -uo pipefail
export PYTHONUNBUFFERED=1
out=${OUT:?run through the device tool, which sets OUT}
if [ -z "${TINY:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null
    py=python3 ms=multispike accel=gpu workers=8 threads=8 eval=2000 calib=1024 codes="" limit=170
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/log.txt"
else
    py=.venv/bin/python ms=.venv/bin/multispike accel=cpu workers=1 threads=2 eval=16 calib=16
    limit=600
    codes="--eval_images 50 --sweep_images 25 --noise_images 25"
fi
export MULTISPIKE_DATA=$PWD/.gpu/msdata
$py -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', \
lightning.__version__, 'timm', timm.__version__)" | tee -a "$out/log.txt"
small=()
[ -n "${TINY:-}" ] && small=(--train_images 100 --val_images 40 --repeats 1 --batch_size 8)
start=$(date +%s)
timeout 220 $py benchmarks/imagenet_layout.py --models '[resnet50]' --batch_size 256 \
    --trainer.accelerator $accel --num_workers $workers --threads $threads \
    --eval_images $eval --calibration_images $calib --repeats 20 --precisions '[fp32,bf16]' \
    --output /tmp/imagenet_layout "${small[@]}" \
    --json_path "$out/imagenet_layout_gpu.json" 2>&1 | tail -5 | tee -a "$out/log.txt"
echo "imagenet_layout: $(( $(date +%s) - start )) s" | tee -a "$out/log.txt"
for model in .gpu/models/*/; do
    name=$(basename "$model")
    start=$(date +%s)
    levels=$(python3 -c "import json; print(json.load(open('$model/config.json'))['levels'])")
    # shellcheck disable=SC2086  # $codes: several flags, or none
    timeout $limit $ms evaluate --model_dir "$model" --pretrained true \
        --data multispike.pipelines.data.CIFAR10DataModule --data.batch_size 250 \
        --data.num_workers $workers --trainer.accelerator $accel \
        --binary_timesteps "$levels" \
        --sweep '[1x16]' --sweep_images 1000 --noise '[0.0,0.1]' --noise_images 1000 \
        --codes true --progress false --output "/tmp/codes_$name" $codes 2>&1 \
        | tail -3 | tee -a "$out/log.txt"
    cp "/tmp/codes_$name/metrics.json" "$out/codes_$name.json" 2>/dev/null
    echo "codes $name: $(( $(date +%s) - start )) s" | tee -a "$out/log.txt"
done
