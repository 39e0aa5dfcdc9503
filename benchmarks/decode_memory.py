"""Peak memory and speed of ways to decode every frame of a clip, each in its own process.

Usage: python benchmarks/decode_memory.py CLIP.mp4 [--sleep-ms 10] [--chunk 32]

Prints one line per way: seconds to read all frames with no work between them (fast
consumer), and peak RSS while reading them with ``--sleep-ms`` of sleep after each frame (a
slow consumer, like the landmarks loop): the Python process's VmHWM plus the largest child
process's (ffmpeg's for the pipe), in MB; then the Python process's VmHWM after every 100
frames of the slow run (growth with clip length shows there). Ways:

- pipe:          ciinv.io.video.VideoReader.frames() (the ffmpeg binary into a pipe)
- decord-next:   one decord.VideoReader, next() frame after frame
- decord-1thr:   the same with num_threads=1
- decord-reopen: a fresh decord.VideoReader every --chunk frames, seek_accurate to the chunk's
                 first frame, next() within the chunk, the old reader dropped
- decord-batch:  a fresh decord.VideoReader every --chunk frames, get_batch of the chunk
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r"""
import gc, sys, time
import numpy as np
way, path, sleep, chunk = sys.argv[1], sys.argv[2], float(sys.argv[3]) / 1000, int(sys.argv[4])
import decord
from ciinv.io.video import VideoReader

def frames():
    if way == "pipe":
        with VideoReader(path) as video:
            for _, frame in video.frames():
                yield frame
        return
    n = len(decord.VideoReader(path, ctx=decord.cpu(0)))
    if way in ("decord-next", "decord-1thr"):
        threads = 1 if way == "decord-1thr" else 0
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
        for _ in range(n):
            yield reader.next().asnumpy()
        return
    for first in range(0, n, chunk):
        reader = decord.VideoReader(path, ctx=decord.cpu(0))
        last = min(first + chunk, n)
        if way == "decord-reopen":
            if first:
                reader.seek_accurate(first)
            for _ in range(first, last):
                yield reader.next().asnumpy()
        else:
            for frame in reader.get_batch(list(range(first, last))).asnumpy():
                yield frame
        del reader
        gc.collect()

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

start = time.perf_counter()
count = 0
marks = []
for frame in frames():
    count += 1
    if sleep:
        time.sleep(sleep)
    if count % 100 == 0:
        marks.append(round(hwm()))
import resource
elapsed = time.perf_counter() - start
# The pipe's decoder is a child process (ffmpeg): its peak RSS counts too.
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{count} {elapsed:.2f} {hwm() + children:.0f} {marks}")
"""

WAYS = ["pipe", "decord-next", "decord-1thr", "decord-reopen", "decord-batch"]


def run(way: str, clip: str, sleep_ms: float, chunk: int) -> tuple[int, float, float, str]:
    out = subprocess.run([sys.executable, "-c", CHILD, way, clip, str(sleep_ms), str(chunk)],
                         capture_output=True, text=True, check=True).stdout.split(maxsplit=3)
    return int(out[0]), float(out[1]), float(out[2]), out[3].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("--sleep-ms", type=float, default=10.0)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--ways", nargs="*", default=WAYS)
    args = parser.parse_args()
    print(f"{'way':<15} {'frames':>6} {'fast s':>7} {'fast MB':>8} {'slow MB':>8}  slow MB every 100 frames")
    for way in args.ways:
        frames, fast_s, fast_mb, _ = run(way, args.clip, 0, args.chunk)
        _, _, slow_mb, marks = run(way, args.clip, args.sleep_ms, args.chunk)
        print(f"{way:<15} {frames:>6} {fast_s:>7.2f} {fast_mb:>8.0f} {slow_mb:>8.0f}  {marks}", flush=True)


if __name__ == "__main__":
    main()
