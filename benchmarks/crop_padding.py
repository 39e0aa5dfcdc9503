"""Cost per frame of cutting crops with the FFHQ recipe's padding, against the sharp mirror it replaced.

Usage: python benchmarks/crop_padding.py [--resolution 1024] [--frames 40] [--repeats 3]

A 1920×1080 frame holds astronaut() enlarged so its face's quad is about 525 pixels (a close-up);
over ``--frames`` frames the face slides from well inside the frame to 30 % of its quad past the
left edge. Each frame is cropped both ways, alternately, ``--repeats`` times; the fastest time of
each is kept. Prints the mean milliseconds per frame of each way, for the frames whose quad needs
padding and for the others, and their ratio. The crops' quality against the recipe is measured by
``python -m pytest -s tests/test_align.py -k padded``.

- mirror: crop_transform, antialias, cv2.warpAffine with the frame mirrored past its edge (what
  ``crop_face`` did before);
- ffhq:   ``ciinv.faces.align.crop_face``.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from ciinv.faces.align import antialias, border_padding, crop_face, crop_transform

# The FFHQ quad of dlib's landmarks on astronaut() (as in tests/test_align.py).
ASTRONAUT_QUAD = np.array([[142.28452, 14.354407], [132.62941, 189.04048], [307.3155, 198.69559],
                           [316.97058, 24.009523]])


def mirror_crop(frame: np.ndarray, quad: np.ndarray, resolution: int) -> np.ndarray:
    crop_to_frame, _ = crop_transform(quad, resolution)
    image, crop_to_image = antialias(frame, crop_to_frame)
    return cv2.warpAffine(image, crop_to_image[:2], (resolution, resolution),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)


def frames(count: int):
    """(frame, quad) pairs: the 3× astronaut on a 1920×1080 canvas, its quad's left side going from
    200 pixels inside the frame to 30 % of the quad past the left edge."""
    from skimage.data import astronaut

    photo = cv2.resize(astronaut(), (1536, 1536), interpolation=cv2.INTER_CUBIC)
    quad = (ASTRONAUT_QUAD + 0.5) * 3 - 0.5
    side = float(np.hypot(*(quad[3] - quad[0])))
    for left in np.linspace(200, -0.3 * side, count):
        dx = int(round(left - quad[:, 0].min()))  # photo (x, y) + (dx, dy) = canvas (x, y)
        dy = int(round(250 - quad[:, 1].min()))  # the quad 250 pixels below the top, ~250 above the bottom
        canvas = np.zeros((1080, 1920, 3), np.uint8)
        x, y = np.arange(1920) - dx, np.arange(1080) - dy
        columns, rows = np.flatnonzero((x >= 0) & (x < 1536)), np.flatnonzero((y >= 0) & (y < 1536))
        canvas[rows[:, None], columns] = photo[y[rows][:, None], x[columns]]
        yield canvas, quad + [dx, dy]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    times = {"mirror": {True: [], False: []}, "ffhq": {True: [], False: []}}
    for frame, quad in frames(args.frames):
        padded = border_padding(quad, (frame.shape[1], frame.shape[0]), args.resolution) is not None
        best = {"mirror": np.inf, "ffhq": np.inf}
        for _ in range(args.repeats):
            for name, crop in (("mirror", mirror_crop), ("ffhq", crop_face)):
                start = time.perf_counter()
                crop(frame, quad, args.resolution)
                best[name] = min(best[name], time.perf_counter() - start)
        for name, seconds in best.items():
            times[name][padded].append(seconds)

    print(f"crops of {args.resolution}x{args.resolution} from 1920x1080 frames, one OpenCV thread")
    for padded, label in ((True, "quad needs padding"), (False, "quad inside")):
        count = len(times["mirror"][padded])
        if not count:
            continue
        mirror, ffhq = (1e3 * np.mean(times[name][padded]) for name in ("mirror", "ffhq"))
        print(f"{label} ({count} frames): mirror {mirror:.1f} ms, ffhq {ffhq:.1f} ms per frame: {ffhq / mirror:.2f}x")


if __name__ == "__main__":
    main()
