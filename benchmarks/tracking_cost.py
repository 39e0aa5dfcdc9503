"""What identity-consistent tracking costs in the landmarks stage: the dlib detector alone against
the detector plus dlib's face descriptor on every detection (what ``detect_frames`` does now).

Usage: python benchmarks/tracking_cost.py [--frames 40] [--size 256] [--faces 2]

The clip: ``--faces`` sample clips (``ciinv.dev.sample``, seeds 1, 2, ...) of ``--size``² side by
side, decoded once into memory. Both ways run on the same frames, alternately, twice; the faster
time of each is kept. Prints milliseconds per frame of each and their ratio, and the descriptor
distances seen: the largest between one face's detections and its track's appearance (the same
person), against dlib's same-person threshold 0.6.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ciinv.dev.sample import render_frames
from ciinv.faces.identity import SAME_PERSON, FaceEmbedder
from ciinv.faces.landmarks import detect_frames, dlib_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--faces", type=int, default=2)
    args = parser.parse_args()
    clips = [render_frames(args.frames, (args.size, args.size), seed=seed) for seed in range(1, args.faces + 1)]
    frames = list(np.concatenate(clips, axis=2))
    embedder = FaceEmbedder(unit=False)
    best = {"detector": np.inf, "detector + descriptors": np.inf}
    for _ in range(2):
        for name, describe in (("detector", False), ("detector + descriptors", embedder)):
            start = time.perf_counter()
            result = detect_frames(frames, dlib_detector(), embedder=describe, min_share=0.0)
            best[name] = min(best[name], time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"{name:>24}: {1000 * seconds / len(frames):7.1f} ms a frame ({len(frames)} frames of "
              f"{frames[0].shape[1]}x{frames[0].shape[0]}, {args.faces} faces)")
    print(f"{'ratio':>24}: {best['detector + descriptors'] / best['detector']:.2f}x")
    print(f"{'face tracks found':>24}: {result['face_detected'].shape[1]}")
    # Same-person distances: each face's descriptors against their own mean.
    for face in range(result["face_detected"].shape[1]):
        vectors = embedder(frames, result["face_points"][:, face])
        spread = np.linalg.norm(vectors - vectors.mean(axis=0), axis=1).max()
        print(f"{'face ' + str(face):>24}: largest distance to its mean descriptor {spread:.3f} "
              f"(same-person threshold {SAME_PERSON})")


if __name__ == "__main__":
    main()
