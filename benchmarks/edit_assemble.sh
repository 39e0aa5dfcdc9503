#!/bin/bash
# Edit + assemble of one edit (sefa:0), before and after the edit stage stopped writing pictures
# (issue 9, item 2): seconds, peak memory and bytes written between the two stages, and whether
# the two videos decode to the same frames.
#
#   bash benchmarks/edit_assemble.sh [FRAMES] [RESOLUTION] [WIDTHxHEIGHT] [WORK]
#
# Defaults: 50 frames of a 1280x720 `ciinv sample-clip`, a random StyleGAN2 at 1024² with 4
# channels per layer at the high resolutions (what a crop costs on disk is what the real generator's
# costs; rendering is far cheaper than config F), dlib landmarks. "before" is the code of commit
# a709f91 (edit renders a folder of PNGs, assemble reads it), taken with `git archive`; "after" is
# the ciinv on PATH. Run it from the repository root with the package's environment active.
set -euo pipefail

FRAMES=${1:-50}
RES=${2:-1024}
SIZE=${3:-1280x720}
WORK=${4:-$(mktemp -d /tmp/edit-assemble.XXXXXX)}
BEFORE=a709f91
REPO=$(pwd)
mkdir -p "$WORK"
cd "$WORK"
echo "work folder: $WORK"

if [ ! -d before ]; then
  mkdir before && git -C "$REPO" archive "$BEFORE" ciinv | tar -x -C before
fi
G=$WORK/generator.pt
if [ ! -f align.npz ]; then
  python - "$G" "$RES" "$FRAMES" <<'PY'
import sys
import numpy as np
import torch
from ciinv.models import load_generator
from ciinv.dev.tiny import write_tiny_stylegan2
path, resolution, frames = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
write_tiny_stylegan2(path, resolution=resolution, w_dim=512, n_mlp=2, max_channels=8)
g = load_generator(path)
codes = g.w_avg + 0.3 * torch.randn(frames, g.num_ws, 512, generator=torch.Generator().manual_seed(0))
np.save("latents.npy", codes.numpy().astype(np.float32))
torch.save({"noise": None, "frame_window": None}, "noise.pt")
PY
  ciinv sample-clip clip.mp4 --frames "$FRAMES" --width "${SIZE%x*}" --height "${SIZE#*x}"
  ciinv probe clip.mp4 --out meta.json > /dev/null 2>&1
  ciinv landmarks clip.mp4 --meta meta.json --out landmarks.npz --detector dlib 2> /dev/null
  ciinv align clip.mp4 --meta meta.json --landmarks landmarks.npz --out align.npz --crops crops --resolution "$RES"
fi

EDIT='{"name": "s", "direction": "sefa:0", "strength": 3.0}'
timed() {  # label command...: prints "label  seconds  peak MB"
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o time.txt "$@" > /dev/null 2> stderr.txt || { cat stderr.txt; exit 1; }
  read -r seconds kb < time.txt
  printf "%-16s %8.1f s %8.0f MB\n" "$label" "$seconds" "$((kb / 1024))"
}
rm -rf before_crops before.mp4 after.npy after.mp4
PYTHONPATH=$WORK/before timed "before: edit" ciinv edit --latents latents.npy --noise noise.pt --generator "$G" \
  --edit "$EDIT" --out before_crops --device cpu
PYTHONPATH=$WORK/before timed "before: assemble" ciinv assemble clip.mp4 --meta meta.json --align align.npz \
  --crops before_crops --out before.mp4
timed "after: edit" ciinv edit --latents latents.npy --generator "$G" --edit "$EDIT" --out after.npy
timed "after: assemble" ciinv assemble clip.mp4 --meta meta.json --align align.npz --codes after.npy --noise noise.pt \
  --generator "$G" --out after.mp4 --device cpu
echo "between the stages, before: $(du -sb before_crops | cut -f1) bytes in $(ls before_crops | wc -l) files;" \
  "after: $(stat -c %s after.npy) bytes in 1 file ($FRAMES frames)"
python - <<'PY'
import numpy as np
from ciinv.io.video import VideoReader, probe

def frames(path):
    with VideoReader(path, probe(path)) as reader:
        return np.stack([frame for _, frame in reader.frames()]).astype(int)

difference = np.abs(frames("before.mp4") - frames("after.mp4"))
print(f"decoded frames, before vs after: max abs difference {difference.max()}, "
      f"share of values that differ {(difference > 0).mean():.2e}")
PY
