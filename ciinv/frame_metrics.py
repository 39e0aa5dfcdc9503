"""Metrics of the composited full frames (what the user watches), not of the aligned crops.

Every metric here looks at the face's neighbourhood of the full frame: ``face_box``, the bounding
box of the clip's crop quads grown by a margin, one box for the whole clip (a flow needs both
frames of a pair on the same grid). Images are float tensors in [0, 1], [N, 3, H, W], cut to that
box; points are pixels (x, y) of the full frame.

- ``excess_edges`` (the seam): edge energy in the output that is in neither the source frame nor
  the render. A convex blend ``w·render + (1 − w)·source`` with a constant weight never has a
  steeper gradient than the steeper of its two inputs, so what is left is the seam term
  ``(render − source)·∇w``: a hard or misplaced mask edge over pixels where the render and the
  source differ.
- ``pair_warping_errors`` of ``ciinv.metrics`` on the box, the flows from the source frames: the
  relative warping error of the output (1: as steady as the source), as the crop metrics do it.
- ``identity_consistency``: STIT's TL-ID and TG-ID (Tzaban et al., SIGGRAPH Asia 2022) with dlib's
  face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat`` of the
  ``face_recognition_models`` package, offline) on the 68 landmarks of the landmarks stage. The
  output is embedded at the *source's* landmarks: the edited face sits on the source's quad, so
  the same points place the face chip on both videos, and what the ratio measures is the face's
  appearance, not landmark-detector jitter on the output (which would be counted twice, in the
  output and against the source) nor a detector failing on an edited face. STIT uses ArcFace:
  compare figures only between systems scored with the same embedder.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from ciinv import metrics
from ciinv.faces.align import antialias, crop_transform
from ciinv.faces.identity import FaceEmbedder

FACE_MARGIN = 0.25  # the face's neighbourhood: the quads' box grown by this fraction of the quad's side


def face_box(quads: np.ndarray, frame_size: tuple[int, int], margin: float = FACE_MARGIN) -> tuple[int, int, int, int]:
    """The face's neighbourhood in a clip: (x0, y0, x1, y1) pixels, x1 and y1 exclusive.

    quads: the crop quads [F, 4, 2] (``ciinv.faces.align``); frame_size: (width, height). The union
    of every quad's bounding box, grown on each side by ``margin`` × the mean quad side, clipped
    to the frame.
    """
    quads = np.asarray(quads, np.float64)
    if quads.ndim != 3 or quads.shape[1:] != (4, 2) or len(quads) == 0:
        raise ValueError(f"quads must be [F >= 1, 4, 2], got {list(quads.shape)}")
    side = np.linalg.norm(quads[:, 1] - quads[:, 0], axis=-1).mean()
    low = quads.min(axis=(0, 1)) - margin * side
    high = quads.max(axis=(0, 1)) + margin * side
    width, height = frame_size
    x0, y0 = max(int(np.floor(low[0])), 0), max(int(np.floor(low[1])), 0)
    x1, y1 = min(int(np.ceil(high[0])), width), min(int(np.ceil(high[1])), height)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the face quads lie outside the {width}x{height} frame")
    return x0, y0, x1, y1


def cut(frames: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The face box of frames [..., H, W, 3] -> [..., y1 - y0, x1 - x0, 3] (a view)."""
    x0, y0, x1, y1 = box
    return frames[..., y0:y1, x0:x1, :]


def crop_in_frame(frame: np.ndarray, crop: np.ndarray, quad: np.ndarray,
                  box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The render as it lands in the frame with nothing masked: the R×R×3 crop warped onto its quad
    (the geometry of ``ciinv.faces.paste.paste_back``), the frame where the quad does not reach.

    frame: the H×W×3 frame, or only its ``box`` (``cut(frame, box)``) when a box is given; crop:
    R×R×3; both uint8. Returns float32 in 0..255 of the frame's shape (the box's, with a box).
    """
    height, width = frame.shape[:2]
    x0, y0 = (box[0], box[1]) if box is not None else (0, 0)
    _, frame_to_crop = crop_transform(quad, crop.shape[0])
    box_to_crop = frame_to_crop @ np.array([[1.0, 0, x0], [0, 1, y0], [0, 0, 1]])
    source, box_to_source = antialias(np.ascontiguousarray(crop).astype(np.float32), box_to_crop)
    cover, _ = antialias(np.ones(crop.shape[:2], np.float32), box_to_crop)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(source, box_to_source[:2], (width, height), flags=flags,
                            borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(cover, box_to_source[:2], (width, height), flags=flags,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    base = frame.astype(np.float32)
    return base + weight * (warped - base)


# --------------------------------------------------------------------------------------------
# The seam


def edge_energy(images: Tensor) -> Tensor:
    """Per pixel, the squared gradient averaged over the channels: [N, C, H, W] -> [N, H, W].

    Central differences inside, one-sided at the border; units: ([0, 1] intensity per pixel)²."""
    x = images.float()
    dx = torch.gradient(x, dim=3)[0]
    dy = torch.gradient(x, dim=2)[0]
    return (dx.square() + dy.square()).mean(dim=1)


def excess_edges(output: Tensor, source: Tensor, render: Tensor) -> Tensor:
    """The seam of each composite: [N] the mean over the pixels of the excess edge energy
    max(0, E(output) − max(E(source), E(render))), E = ``edge_energy``.

    output: the composited frames; source: the frames the face was cut from; render: the
    rendered crops as they land in the frames unmasked (``crop_in_frame``); all [N, 3, H, W] in
    [0, 1] on one grid (the face box). 0 for any blend whose weight is constant (0 or 1): what is
    left is the mask's transition over pixels where the render and the source disagree. Energy
    (squared), not magnitude: a step of height d costs about d²/2 per pixel along the edge, the
    same step feathered over b pixels about d²/b, so a soft edge scores lower than a hard one
    (the mean magnitude, a total variation, would score them alike).
    """
    if not output.shape == source.shape == render.shape:
        raise ValueError(f"output {list(output.shape)}, source {list(source.shape)} and render "
                         f"{list(render.shape)} differ in shape")
    reference = torch.maximum(edge_energy(source), edge_energy(render))
    return (edge_energy(output) - reference).clamp_min(0).flatten(1).mean(dim=1)


# --------------------------------------------------------------------------------------------
# Identity over time (TL-ID, TG-ID)


def identity_consistency(source: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """STIT's TL-ID and TG-ID of an output against its source: {'tl_id', 'tg_id'}.

    source, output: unit embeddings [F, D] of the same F ≥ 2 frames. S = E·Eᵀ (cosine
    similarities) for each video; TL-ID = mean of S_out over adjacent frames / the same mean of
    S_src; TG-ID = mean of S_out over all pairs of distinct frames / the same of S_src. 1 means the
    identity is as consistent over time as the source's; STIT reports 0.996 / 0.933 with ArcFace.
    Ratios of means, not means of ratios: a pair the source itself finds dissimilar does not
    dominate.
    """
    source, output = np.asarray(source, np.float64), np.asarray(output, np.float64)
    if source.shape != output.shape or source.ndim != 2 or len(source) < 2:
        raise ValueError(f"need embeddings [F >= 2, D] of equal shape, got {list(source.shape)} and {list(output.shape)}")
    count = len(source)

    def local(e: np.ndarray) -> float:
        return float(np.mean(np.sum(e[:-1] * e[1:], axis=1)))

    def whole(e: np.ndarray) -> float:
        # Σ_{i≠j} e_i·e_j = |Σ e_i|² − Σ |e_i|²: no F×F matrix for a long clip.
        total = e.sum(axis=0)
        return float((total @ total - np.sum(e * e)) / (count * (count - 1)))

    return {"tl_id": local(output) / local(source), "tg_id": whole(output) / whole(source)}


# --------------------------------------------------------------------------------------------
# All of them over a clip, streamed


def to_tensor(frames: np.ndarray) -> Tensor:
    """Frames [N, H, W, 3] (uint8, or float in 0..255) -> [N, 3, H, W] float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames, np.float32)).permute(0, 3, 1, 2) / 255.0


class ClipMeasure:
    """The full-frame metrics of several outputs of one clip, fed a chunk of frames at a time.

    Everything is measured on the face's neighbourhood: feed ``add`` consecutive chunks of the
    frames' face box (``cut(frames, face_box(...))``, the same box for the whole clip). flow_fn: a
    flow function with FlowNet2's convention (``ciinv.models.load_flow``) on ``device``;
    embedder: a ``FaceEmbedder``, or None to leave TL-ID and TG-ID out. ``result`` gives, per
    output label, {'rel_warp', 'seam', 'tl_id', 'tg_id'}.
    """

    def __init__(self, flow_fn, embedder: FaceEmbedder | None = None, device="cpu"):
        self.flow_fn, self.embedder, self.device = flow_fn, embedder, device
        self.labels: dict[str, None] = {}  # the outputs' labels, in the order first seen
        self.last: dict | None = None  # the previous chunk's last frame: {"source", label: output}
        self.pairs: dict[str, list[Tensor]] = {"source": []}
        self.seams: dict[str, list[Tensor]] = {}
        self.embeddings: dict[str, list[np.ndarray]] = {"source": []}

    @torch.no_grad()
    def add(self, source: np.ndarray, points: np.ndarray, outputs: dict[str, np.ndarray],
            renders: dict[str, np.ndarray] | None = None) -> None:
        """source: the source frames' box [N, h, w, 3] uint8; points: their 68 landmarks in box
        pixels [N, 68, 2]; outputs: label -> the composited frames' box [N, h, w, 3] uint8;
        renders: label -> the render unmasked in the box (``crop_in_frame``, [N, h, w, 3] in 0..255)
        for the seam (a label without one has no seam)."""
        renders = renders or {}
        self.labels |= dict.fromkeys(outputs)
        real = to_tensor(source)
        made = {label: to_tensor(frames) for label, frames in outputs.items()}
        for label, frames in renders.items():
            self.seams.setdefault(label, []).append(excess_edges(made[label], real, to_tensor(frames)))
        if self.embedder is not None:
            self.embeddings["source"].append(self.embedder(source, points))
            for label, frames in outputs.items():
                self.embeddings.setdefault(label, []).append(self.embedder(frames, points))
        if self.last is not None:  # the pair across the chunk boundary
            real = torch.cat([self.last["source"], real])
            made = {label: torch.cat([self.last[label], images]) for label, images in made.items()}
        self.last = {"source": real[-1:]} | {label: images[-1:] for label, images in made.items()}
        if len(real) < 2:
            return
        now, later = real[:-1].to(self.device), real[1:].to(self.device)
        forward = self.flow_fn(now, later).float().cpu()
        backward = self.flow_fn(later, now).float().cpu()
        mask = metrics.consistency_mask(forward, backward)
        self.pairs["source"].append(metrics.pair_warping_errors(real, forward, mask))
        for label, images in made.items():
            self.pairs.setdefault(label, []).append(metrics.pair_warping_errors(images, forward, mask))

    def result(self) -> dict:
        """{'source_warp': the source's own warping error on the box (None for one frame),
        label: {'rel_warp', 'seam', 'tl_id', 'tg_id'}}; a value that cannot be had is None."""
        base = torch.cat(self.pairs["source"]).mean().item() if self.pairs["source"] else None
        out: dict = {"source_warp": base}
        source_ids = np.concatenate(self.embeddings["source"]) if self.embeddings["source"] else None
        for label in self.labels:
            row: dict = {"rel_warp": None, "seam": None, "tl_id": None, "tg_id": None}
            if base is not None and base > 1e-12 and self.pairs.get(label):
                row["rel_warp"] = torch.cat(self.pairs[label]).mean().item() / base
            if self.seams.get(label):
                row["seam"] = torch.cat(self.seams[label]).mean().item()
            if source_ids is not None and len(source_ids) >= 2 and self.embeddings.get(label):
                row |= identity_consistency(source_ids, np.concatenate(self.embeddings[label]))
            out[label] = row
        return out
