#!/usr/bin/env bash
# One-command GPU check of the inversion's speed (about 5 minutes on one H100/H200).
#
#   bash benchmarks/gpu.sh [WORKDIR]        # default WORKDIR: /tmp/ciinv-gpu-check
#
# Needs the package installed (pip install -e .) and a CUDA device; no weights: it writes random
# networks of the real sizes (StyleGAN2 config F at 1024², FlowNet2, VGG16; ~1.3 GB) first. Prints
#   1. benchmarks/invert_speed.py: one batch of 4 windows in bf16 and in fp32 — step time, achieved
#      TFLOP/s and share of the dense bf16 peak, peak memory per window;
#   2. ciinv bench speed: seconds per output frame of the paper's schedule and of ours (with each
#      lever off in turn), on 9 frames at 300 steps per window at most; its last line is the speedup.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/ciinv-gpu-check}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[ -f "$work/smoke.yaml" ] || ciinv smoke-models --full-size "$work" >/dev/null

for precision in bf16 fp32; do
    echo "== invert_speed, 4 windows per batch, $precision"
    flag=$([ "$precision" = fp32 ] && echo --no-amp || true)
    python benchmarks/invert_speed.py --generator "$work/stylegan2-config-f-random.pt" \
        --flow "$work/flownet2-random.pth.tar" --vgg16 "$work/vgg16-random.pth" \
        --windows-per-batch 4 --steps 12 $flag
done

echo "== bench speed"
ciinv bench speed --config config.yaml "$work/smoke.yaml" --out "$work/speed" --frames 9 --steps 300 --device cuda
