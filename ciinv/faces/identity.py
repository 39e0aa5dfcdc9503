"""Who a face is: dlib's face-recognition ResNet on the 68 landmarks ciinv already has.

The network (``dlib_face_recognition_resnet_model_v1.dat``, shipped in the
``face_recognition_models`` package, offline) aligns a 150² chip on the 68 points (padding 0.25)
and maps it to a 128-d descriptor. dlib's own rule for "the same person": a Euclidean distance
below ``SAME_PERSON`` (0.6) between raw descriptors (99.38 % on LFW). The tracker
(``ciinv.faces.landmarks``) uses raw descriptors and that rule; TL-ID and TG-ID
(``ciinv.frame_metrics``) use unit vectors and cosine similarities.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ciinv.errors import CiinvError

SAME_PERSON = 0.6  # dlib's threshold on the Euclidean distance of raw descriptors


def dlib_recognition_path() -> Path:
    """dlib's face-recognition ResNet, shipped in the face_recognition_models package.

    Found without importing the package (its ``__init__`` needs pkg_resources), as
    ``ciinv.faces.landmarks.dlib_predictor_path`` finds the 68-point predictor beside it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise CiinvError("dlib's face-recognition network (face tracking, TL-ID and TG-ID) comes with the "
                         "face_recognition_models package; install it (pip install face_recognition_models)")
    path = Path(spec.submodule_search_locations[0]) / "models" / "dlib_face_recognition_resnet_model_v1.dat"
    if not path.is_file():
        raise CiinvError(f"{path} is missing; reinstall face_recognition_models")
    return path


class FaceEmbedder:
    """dlib's face-recognition ResNet: a frame and its 68 landmarks -> a 128-d descriptor.

    dlib aligns a 150² chip on the landmarks (padding 0.25) and embeds it; the chip may reach past
    the picture (dlib fills with black). ``unit`` (default) scales each descriptor to unit norm
    (for cosine similarities); ``unit=False`` keeps dlib's raw vector (norm about 1.45), the one
    ``SAME_PERSON`` is a threshold for.
    """

    def __init__(self, path: str | Path | None = None, unit: bool = True):
        import dlib

        self.dlib = dlib
        self.unit = unit
        self.path = Path(path) if path is not None else dlib_recognition_path()
        self.net = dlib.face_recognition_model_v1(str(self.path))

    def __call__(self, images: np.ndarray, points: np.ndarray) -> np.ndarray:
        """images [N, H, W, 3] uint8 RGB (or a list of frames of any sizes); points [N, 68, 2]
        pixels of those images -> [N, 128] float64."""
        out = [self.one(image, marks) for image, marks in zip(images, np.asarray(points, np.float64))]
        return np.stack(out) if out else np.zeros((0, 128))

    def one(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """One frame [H, W, 3] uint8 RGB and one face's points [68, 2] -> [128] float64."""
        dlib = self.dlib
        marks = np.asarray(points, np.float64)
        low, high = marks.min(axis=0), marks.max(axis=0)
        rect = dlib.rectangle(*(int(round(v)) for v in (low[0], low[1], high[0], high[1])))
        shape = dlib.full_object_detection(rect, dlib.points([dlib.point(int(round(x)), int(round(y)))
                                                              for x, y in marks]))
        vector = np.asarray(self.net.compute_face_descriptor(np.ascontiguousarray(image), shape), np.float64)
        return vector / max(np.linalg.norm(vector), 1e-12) if self.unit else vector
