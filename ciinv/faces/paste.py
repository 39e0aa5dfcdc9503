"""Pasting (edited) face crops back into the video frames they were cut from, and the masks that
say which pixels of a crop go back.

``paste_back`` warps an R×R crop onto its frame's quad (the inverse of ``ciinv.faces.align.crop_face``,
with the same geometry) and blends it in with a mask in crop space: float32 [R, R] in [0, 1], 1 where
the crop replaces the frame, exactly 0 where the frame stays, bit for bit.

The masks (config ``paste:``, ``PasteSettings``), each a batch [N, R, R] from ``face_masks``:

- ``parser``: the face parser's labels (``ciinv.models.load_parser``; BiSeNet, 19 classes) of the
  source crop and of the rendered crop; the face region is every class but the excluded ones
  (background, cloth, hat and, unless ``hair``, hair), the union of the two crops' regions (an edit
  that widens the face is not cut at the source's outline, nor a narrowed one left with the
  source's cheeks), grown by ``dilate``, shrunk by ``erode`` and blurred by ``feather`` (STIT's
  stitching paste-back: dilate 50, erode 25, a 2r+1 Gaussian of r = 25 at 1024²).
- ``landmarks``: no weights: the polygon of the 68 landmarks' jaw (points 0-16) then brows (26 back
  to 17), mapped into the crop, then the same dilate, erode and feather (RIGID's and the Latent
  Transformer's fallback).
- ``ellipse``: the old fixed ellipse, for comparison (``ellipse_mask``).

Pixel sizes are given at 1024² and scaled to the crop's resolution. The soft edge is a truncated
Gaussian (a square kernel of side 2r+1): the weight is exactly 0 farther than about
``dilate - erode + feather`` pixels from the face region (50 with the defaults; up to √2·feather
more towards the kernel's corners, and more in notches that growing then shrinking fills), and 1 on
the region itself while ``dilate - erode >= feather`` (above 0.98 at its corners).

With ``parser_every`` k > 1 the parser mask is made only on key frames (every k-th frame of the
clip and its last, ``PasteSettings.key_frames``; ``key_frame_masks``), and ``interpolated_stream``
gives each frame between two key frames the linear blend of their masks, in crop space (the crops
are aligned, so a mask's pixel is the same face point from frame to frame); a pixel both key masks
give 0 stays exactly 0. That needs up to k - 1 frames of look-ahead.

``TemporalSmoother`` then averages each frame's mask with its neighbours' (a Gaussian over time,
in crop space: the crops are aligned, so a mask's pixel is the same face point from frame to frame),
so the edge does not flicker. It needs ``ceil(3σ)`` frames of look-ahead: the assemble stream holds
that many frames, crops and masks more than without it. ``clip_masks`` does all of it for a whole
clip at once, as the assemble stream does it batch by batch.

Coordinates and quads as in ``ciinv.faces.align``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

from ciinv.config import check_section, defaults, setting
from ciinv.errors import CiinvError
from ciinv.faces.align import antialias, crop_transform

DEFAULTS = defaults("paste")

# The parser's classes in index order, as the schema names them for paste.exclude (a test checks
# they are ciinv.models.parser.PARSER_LABELS; that module loads torch, this one need not).
PARSER_CLASSES: tuple[str, ...] = tuple(setting("paste.exclude")["items"]["enum"])

# Sizes in the settings are crop pixels at this resolution.
REFERENCE_RESOLUTION = 1024

# The landmark polygon: the jaw from the right ear to the left (0-16), then the brows back (26 → 17).
POLYGON = np.r_[np.arange(0, 17), np.arange(26, 16, -1)]

# The old paste-back region in crop coordinates (fractions of the crop side): an ellipse covering
# forehead to chin and cheek to cheek of an FFHQ-aligned face (eyes sit at ~0.48 of the height,
# the mouth at ~0.72, the chin at ~0.85).
_ELLIPSE_CENTER = (0.5, 0.54)
_ELLIPSE_AXES = (0.40, 0.44)
ELLIPSE_FEATHER = 0.1


@dataclass(frozen=True)
class PasteSettings:
    """The config's ``paste:`` block, typed; ``setting("paste.<name>")["description"]`` says what each means."""

    mask: str = DEFAULTS["mask"]
    parser_size: int = DEFAULTS["parser_size"]
    parser_every: int = DEFAULTS["parser_every"]
    exclude: tuple[str, ...] = tuple(DEFAULTS["exclude"])
    hair: bool = DEFAULTS["hair"]
    dilate: float = DEFAULTS["dilate"]
    erode: float = DEFAULTS["erode"]
    feather: float = DEFAULTS["feather"]
    temporal_sigma: float = DEFAULTS["temporal_sigma"]

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple(self.exclude))
        check_section("paste", dataclasses.asdict(self) | {"exclude": list(self.exclude)})

    @classmethod
    def from_dict(cls, values: dict) -> "PasteSettings":
        """Settings from a (possibly partial) ``paste:`` block; the schema's defaults fill the rest."""
        check_section("paste", {**DEFAULTS, **values})
        return cls(**values)

    def excluded_classes(self) -> list[int]:
        """The parser class indices outside the face region: ``exclude``, plus hair unless ``hair``."""
        names = set(self.exclude) | (set() if self.hair else {"hair"})
        return sorted(PARSER_CLASSES.index(name) for name in names)

    def key_frames(self, count: int) -> np.ndarray:
        """bool [count]: the frames of a clip of ``count`` whose masks are made (``face_masks``); the
        others' are blended from the key frames around them (``interpolated_stream``). Every frame,
        but with the parser mask only every ``parser_every``-th (0, k, 2k, ...) and the last."""
        every = self.parser_every if self.mask == "parser" else 1
        keys = np.arange(count) % every == 0
        keys[-1:] = True
        return keys

    def radii(self, resolution: int) -> tuple[int, int, int]:
        """(dilate, erode, feather) in whole pixels of a crop of side ``resolution``."""
        scale = resolution / REFERENCE_RESOLUTION
        return tuple(int(round(value * scale)) for value in (self.dilate, self.erode, self.feather))


# ----------------------------------------------------------------------------------------------
# The masks of one frame


def ellipse_mask(resolution: int, feather: float = ELLIPSE_FEATHER) -> np.ndarray:
    """The old paste-back weight in crop space: float32 [R, R] in [0, 1].

    1 well inside an ellipse around the face, falling smoothly (smoothstep) to exactly 0 at the
    ellipse over a band about ``feather``·R pixels wide; 0 outside the ellipse.
    """
    centers = (np.arange(resolution) + 0.5) / resolution
    u = (centers[None, :] - _ELLIPSE_CENTER[0]) / _ELLIPSE_AXES[0]
    v = (centers[:, None] - _ELLIPSE_CENTER[1]) / _ELLIPSE_AXES[1]
    # Distance inside the ellipse's edge, approximately, in fractions of the crop side.
    inside = (1.0 - np.sqrt(u**2 + v**2)) * min(_ELLIPSE_AXES)
    if feather <= 0:
        return (inside > 0).astype(np.float32)
    t = np.clip(inside / feather, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def landmark_polygon(points: np.ndarray, quad: np.ndarray, resolution: int) -> np.ndarray:
    """The face region of one frame's 68 landmarks in crop space: bool [R, R].

    points: [68, 2] frame pixels; quad: the frame's crop quad ([4, 2], ``ciinv.faces.align``). The
    polygon runs along the jaw (points 0-16) and back along the brows (26 → 17).
    """
    _, frame_to_crop = crop_transform(quad, resolution)
    outline = np.asarray(points, np.float64)[POLYGON]
    in_crop = outline @ frame_to_crop[:2, :2].T + frame_to_crop[:2, 2]
    shift = 4  # fillPoly's sub-pixel bits: vertices at 1/16 pixel
    vertices = np.rint(in_crop * (1 << shift)).astype(np.int32)
    region = np.zeros((resolution, resolution), np.uint8)
    cv2.fillPoly(region, [vertices], 1, lineType=cv2.LINE_8, shift=shift)
    return region.astype(bool)


def soften(region: np.ndarray, dilate: int, erode: int, feather: int) -> np.ndarray:
    """A hard region (bool [R, R]) grown by ``dilate`` pixels, shrunk by ``erode`` (both Euclidean
    distances: round structuring elements) and blurred with a (2·feather+1)² Gaussian (σ as OpenCV
    picks for that kernel, STIT's choice): float32 [R, R] in [0, 1], exactly 0 wherever the blur
    kernel around a pixel misses the grown-then-shrunk region."""
    region = region.astype(bool)
    if dilate > 0 and region.any():
        # Distance of every pixel to the region: within `dilate` is in.
        region = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= dilate
    if erode > 0:
        # Distance to the outside (the frame's edge counts as inside: a face cut by the crop's edge
        # stays cut there, not shrunk from it).
        padded = np.pad(region, 1, constant_values=True).astype(np.uint8)
        inside = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        region = inside > erode
    weight = region.astype(np.float32)
    if feather > 0:
        size = 2 * feather + 1
        weight = cv2.GaussianBlur(weight, (size, size), 0, borderType=cv2.BORDER_REPLICATE)
    # The blur's rounding leaves specks of ±1e-8: 0 and 1 must be exact.
    weight[weight < 1e-6] = 0.0
    weight[weight > 1 - 1e-6] = 1.0
    return weight


def load_mask_parser(path, *, device="cpu"):
    """The face parser as the parser mask runs it: ``ciinv.models.load_parser``'s module on
    ``device``, ``fused()`` (BatchNorm folded, channels-last; the same logits to 1e-6, faster)."""
    from ciinv.models import load_parser

    return load_parser(path, device=device).fused()


def parser_regions(parser, crops: list, excluded: list[int], size: int, resolution: int):
    """The face regions that ``parser`` finds in batches of crops, in one parser call: bool tensor
    [ΣN, resolution, resolution], the batches' crops in order.

    crops: uint8 tensors [N, 3, r, r] (RGB, any side r per batch) on the parser's device. Each is
    ImageNet-normalised, resized to ``size``² (area-averaged when shrinking, bilinear when growing)
    and parsed (``FaceParser.coarse_logits``; ``load_mask_parser`` gives the parser). The logit field that the
    parser's ``forward`` upsamples to ``size``² is read at the centres of the crop's pixels
    instead (``_sample_field``) when the crop is smaller than ``size``, and a pixel is face where
    its highest logit is not an ``excluded`` class; a crop larger than ``size`` gets ``forward``'s
    labels at ``size``² as a face region enlarged bilinearly and thresholded at one half. So no
    19-channel map larger than the crop is made: on the CPU, upsampling the logits to 512² and
    taking their argmax cost more than the network itself.
    """
    import torch

    # Normalised at the smaller of the crops' size and size² (normalising is per-channel affine, so
    # it commutes with the resize), and resized once when the batches agree in size (a
    # concatenation at size² costs as much as the resize).
    def normalized_at_size(batch):
        images = batch.float() / 255.0
        if images.shape[-1] > size:
            return parser.normalize(_resized(images, size))
        return _resized(parser.normalize(images), size)

    same = len({batch.shape[-1] for batch in crops}) == 1
    pieces = [torch.cat(crops)] if same else crops
    resized = [normalized_at_size(batch) for batch in pieces]
    normalized = resized[0] if len(resized) == 1 else torch.cat(resized)  # a cat copies even one piece
    sampled = min(size, resolution)
    with torch.no_grad():
        coarse = parser.coarse_logits(normalized).contiguous()
        labels = _sample_field(coarse, size, sampled).max(dim=1).indices  # on the CPU 3× faster than argmax
    face = torch.ones_like(labels, dtype=torch.bool)
    for cls in excluded:
        face &= labels != cls
    if sampled == resolution:
        return face
    return _resized(face[:, None].float(), resolution)[:, 0] > 0.5


def _sample_field(coarse, size: int, resolution: int):
    """Coarse logits [N, C, s, s] of images parsed at ``size``² -> [N, C, resolution, resolution]: the
    bilinear field that ``FaceParser.forward`` upsamples them to (align_corners=True: coarse sample
    0 on parser pixel 0, sample s-1 on pixel size-1), read at the centres of a ``resolution``² grid
    over the same image (at ``resolution == size``: ``forward``'s own pixels)."""
    import torch
    import torch.nn.functional as F

    steps = max(coarse.shape[-1] - 1, 1)
    centres = (torch.arange(resolution, dtype=torch.float64) + 0.5) * size / resolution - 0.5
    position = (centres * (coarse.shape[-1] - 1) / max(size - 1, 1)).clamp(0, steps)
    along = (2 * position / steps - 1).to(coarse.dtype)  # grid_sample's [-1, 1], corner to corner
    grid = torch.stack(torch.meshgrid(along, along, indexing="xy"), dim=-1).to(coarse.device)
    return F.grid_sample(coarse, grid.expand(coarse.shape[0], -1, -1, -1), mode="bilinear", align_corners=True)


def face_regions(settings: PasteSettings, rendered, *, source=None, points: np.ndarray | None = None,
                 quads: np.ndarray | None = None, parser=None) -> np.ndarray:
    """The hard face regions of a batch of frames, before any growing or blurring: bool [N, R, R].

    rendered: the rendered crops, uint8 tensor [N, 3, R, R] RGB (on the parser's device with the
    ``parser`` mask). What each kind reads besides:

    - ``parser``: ``source``, the source crops (uint8 tensor [N, 3, r, r], any side r: they are
      parsed at ``settings.parser_size`` like the render), and ``parser`` (``load_parser``'s module);
      the region is the union of the source's and the render's faces;
    - ``landmarks``: ``points`` [N, 68, 2] in frame pixels and the frames' ``quads`` [N, 4, 2];
    - ``ellipse``: nothing (the ellipse's inside).
    """
    count, resolution = rendered.shape[0], rendered.shape[-1]
    if settings.mask == "ellipse":
        return np.broadcast_to(ellipse_mask(resolution, 0) > 0, (count, resolution, resolution)).copy()
    if settings.mask == "landmarks":
        if points is None or quads is None:
            raise ValueError("the landmarks mask needs the frames' landmarks and quads")
        return np.stack([landmark_polygon(p, q, resolution) for p, q in zip(points, quads)])
    if settings.mask == "parser":
        if source is None or parser is None:
            raise ValueError("the parser mask needs the source crops and the parser")
        found = parser_regions(parser, [rendered, source.to(rendered.device)], settings.excluded_classes(),
                               settings.parser_size, resolution).cpu().numpy()
        return found[:count] | found[count:]
    raise ValueError(f"unknown paste mask {settings.mask!r}")


def face_masks(settings: PasteSettings, rendered, *, source=None, points: np.ndarray | None = None,
               quads: np.ndarray | None = None, parser=None) -> np.ndarray:
    """The paste masks of a batch of frames, before the smoothing over time: float32 [N, R, R] in [0, 1].

    ``face_regions`` (same arguments) grown, shrunk and blurred (``soften``) with the settings'
    radii; the ellipse is the old paste-back weight (``ellipse_mask``).
    """
    count, resolution = rendered.shape[0], rendered.shape[-1]
    if settings.mask == "ellipse":
        return np.broadcast_to(ellipse_mask(resolution), (count, resolution, resolution)).copy()
    regions = face_regions(settings, rendered, source=source, points=points, quads=quads, parser=parser)
    radii = settings.radii(resolution)
    return np.stack([soften(region, *radii) for region in regions])


def key_frame_masks(settings: PasteSettings, frames: range, count: int, rendered, *, source=None,
                    points: np.ndarray | None = None, quads: np.ndarray | None = None,
                    parser=None) -> list[np.ndarray | None]:
    """``face_masks`` of the key frames among ``frames``, a run of a clip of ``count`` frames
    (``settings.key_frames``), None for the others: one entry per frame of the run, float32 [R, R].

    The arguments are ``face_masks``' for the run's frames (rendered and source [n, 3, ·, ·],
    points [n, 68, 2], quads [n, 4, 2]); only the key frames' are parsed. ``interpolated_stream``
    fills the Nones in.
    """
    keys = settings.key_frames(count)[frames.start:frames.stop]
    if keys.all():
        return list(face_masks(settings, rendered, source=source, points=points, quads=quads, parser=parser))
    masks: list[np.ndarray | None] = [None] * len(keys)
    if keys.any():
        index = np.flatnonzero(keys).tolist()

        def pick(batch):  # the key frames of a numpy array or a tensor
            return None if batch is None else batch[index]

        made = face_masks(settings, pick(rendered), source=pick(source), points=pick(points), quads=pick(quads),
                          parser=parser)
        for k, mask in zip(index, made):
            masks[k] = mask
    return masks


def interpolated_stream(pairs: Iterable[tuple]) -> Iterator[tuple]:
    """``(mask or None, *items)`` per frame in → ``(mask, *items)`` per frame out, in order.

    A None (a frame between key frames, ``key_frame_masks``) becomes the linear interpolation of
    the masks of the key frames a before and b after it: frame i gets m_a + (i - a)/(b - a)·(m_b - m_a),
    float32 [R, R] in [0, 1], exactly m_a where both agree (so exactly 0 where both are 0). A frame
    is yielded once the next key frame has arrived: the stream holds the frames since the last key
    frame. The first and the last frame must have masks.
    """
    previous: tuple[int, np.ndarray] | None = None  # the last key frame: (index, mask)
    waiting: list[tuple[int, tuple]] = []  # the frames since it: (index, items)
    for index, (mask, *items) in enumerate(pairs):
        if mask is None:
            if previous is None:
                raise ValueError("the first frame's mask is missing: frame 0 is always a key frame")
            waiting.append((index, items))
            continue
        if waiting:
            start, first = previous
            step = (mask - first).astype(np.float32)
            for between, held in waiting:
                blended = first + np.float32((between - start) / (index - start)) * step
                yield (np.clip(blended, 0.0, 1.0, out=blended), *held)
            waiting = []
        previous = (index, mask)
        yield (mask, *items)
    if waiting:
        raise ValueError(f"frames {waiting[0][0]}-{waiting[-1][0]} have no key frame after them: the last frame "
                         "is always one")


def _resized(images, size: int):
    """float images [N, C, r, r] -> [N, C, size, size]: area-averaged when shrinking; bilinear when
    growing (half-pixel centres, as ``F.interpolate(..., align_corners=False)``), channels-last."""
    import torch
    import torch.nn.functional as F

    if images.shape[-1] == size:
        return images
    if images.shape[-1] > size:
        return F.interpolate(images, size=(size, size), mode="area")
    if images.device.type == "cpu" and images.shape[1] <= 4 and images.dtype == torch.float32:
        # OpenCV's bilinear resize, image by image: the same sampling as torch's to float rounding,
        # 2-4x faster on the CPU than torch's for a few channels at 512² (which also converts to
        # channels-last and back: two copies of the large output). Its layout (NHWC) is the
        # channels-last the parser's convolutions take as is.
        pixels = images.permute(0, 2, 3, 1).contiguous().numpy()
        out = np.empty((len(pixels), size, size, images.shape[1]), np.float32)
        for image, grown in zip(pixels, out):
            cv2.resize(image, (size, size), dst=grown[..., 0] if grown.shape[-1] == 1 else grown,
                       interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(out).permute(0, 3, 1, 2)
    return F.interpolate(images.contiguous(memory_format=torch.channels_last), size=(size, size), mode="bilinear",
                         align_corners=False)


# ----------------------------------------------------------------------------------------------
# Over time


def temporal_radius(sigma: float) -> int:
    """Frames on each side that the smoothing over time reads: ceil(3σ) (0 for σ = 0)."""
    return int(math.ceil(3 * sigma)) if sigma > 0 else 0


def temporal_weights(sigma: float) -> np.ndarray:
    """The Gaussian over time, [2·radius + 1], unnormalised (the ends renormalise what they have)."""
    radius = temporal_radius(sigma)
    if radius == 0:
        return np.ones(1)
    offsets = np.arange(-radius, radius + 1)
    return np.exp(-0.5 * (offsets / sigma) ** 2)


class TemporalSmoother:
    """Smooths a stream of per-frame masks over time, yielding each frame's items once its
    look-ahead has arrived.

    ``push(mask, *items)`` adds the next frame; it returns ``(smoothed mask, *items)`` of every frame
    now complete (a frame needs ``radius`` later masks), in order; ``finish()`` returns the rest.
    Mask i becomes Σ_k w_k·mask_{i+k} / Σ_k w_k over the frames the clip has (the ends use the
    truncated kernel), with Gaussian weights of ``sigma`` frames out to ``radius = ceil(3σ)``. A
    pixel that is 0 in every mask it averages stays exactly 0.
    """

    def __init__(self, sigma: float):
        self.weights = temporal_weights(sigma)
        self.radius = temporal_radius(sigma)
        self.masks: deque = deque()  # the masks of frames current - radius ... newest
        self.items: deque = deque()  # the items of frames not yet yielded
        self.first = 0  # the frame index of masks[0]
        self.next_out = 0

    def push(self, mask: np.ndarray, *items) -> list[tuple]:
        self.masks.append(mask)
        self.items.append(items)
        done = []
        newest = self.first + len(self.masks) - 1
        while self.items and self.next_out + self.radius <= newest:
            done.append(self._emit())
        return done

    def finish(self) -> list[tuple]:
        return [self._emit() for _ in range(len(self.items))]

    def _emit(self) -> tuple:
        index = self.next_out
        lo = max(index - self.radius, self.first)
        hi = min(index + self.radius, self.first + len(self.masks) - 1)
        weights = self.weights[lo - index + self.radius: hi - index + self.radius + 1]
        window = [self.masks[k - self.first] for k in range(lo, hi + 1)]
        if len(window) == 1:
            smoothed = window[0]
        else:
            smoothed = np.tensordot(weights / weights.sum(), np.stack(window), axes=1).astype(np.float32)
            np.clip(smoothed, 0.0, 1.0, out=smoothed)
        self.next_out += 1
        while self.first < self.next_out - self.radius:  # drop masks no later frame reads
            self.masks.popleft()
            self.first += 1
        return (smoothed, *self.items.popleft())


def smooth_over_time(masks: np.ndarray, sigma: float) -> np.ndarray:
    """A whole clip's masks [F, R, R] smoothed over time as ``TemporalSmoother`` does in a stream."""
    smoother = TemporalSmoother(sigma)
    out = [done[0] for mask in masks for done in smoother.push(mask)]
    out += [done[0] for done in smoother.finish()]
    return np.stack(out) if out else np.asarray(masks, np.float32)


def clip_masks(settings: PasteSettings, rendered, *, source=None, points: np.ndarray | None = None,
               quads: np.ndarray | None = None, parser=None) -> np.ndarray:
    """The final paste masks of a whole clip, as the assemble stream makes them batch by batch:
    float32 [F, R, R] in [0, 1]. ``face_masks``' arguments for every frame of the clip; the key
    frames' masks (``key_frame_masks``), the others interpolated (``interpolated_stream``), all
    smoothed over time (``smooth_over_time``, ``settings.temporal_sigma``)."""
    count = rendered.shape[0]
    masks = key_frame_masks(settings, range(count), count, rendered, source=source, points=points, quads=quads,
                            parser=parser)
    filled = np.stack([mask for mask, in interpolated_stream((mask,) for mask in masks)])
    return smooth_over_time(filled, settings.temporal_sigma)


def smoothed_stream(pairs: Iterable[tuple], sigma: float) -> Iterator[tuple]:
    """``(mask, *items)`` per frame in → ``(smoothed mask, *items)`` per frame out, in order, ``ceil(3σ)``
    frames behind."""
    smoother = TemporalSmoother(sigma)
    for mask, *items in pairs:
        yield from smoother.push(mask, *items)
    yield from smoother.finish()


# ----------------------------------------------------------------------------------------------
# Pasting


def paste_back(frame: np.ndarray, crop: np.ndarray, quad: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Blend an R×R×3 uint8 crop back into (a copy of) the H×W×3 uint8 frame it was cut from.

    mask: float32 [R, R] in [0, 1] in crop space (``face_masks``; None: ``ellipse_mask(R)``). The
    crop is warped onto the quad (bilinear; area-averaged first when the quad is smaller than the
    crop, the usual case, so generator detail finer than a frame pixel does not alias) and mixed in
    with the mask warped the same way; frame pixels where the warped mask is 0 are returned
    unchanged, bit for bit.
    """
    resolution = crop.shape[0]
    if mask is None:
        mask = ellipse_mask(resolution)
    if mask.shape != (resolution, resolution):
        raise ValueError(f"a mask of {mask.shape} for a crop of {crop.shape[:2]}")
    out = frame.copy()
    height, width = frame.shape[:2]
    # Work only on the frame pixels the quad covers (plus one for bilinear support).
    quad = np.asarray(quad, np.float64)
    x0, y0 = np.maximum(np.floor(quad.min(axis=0)).astype(int) - 1, 0)
    x1 = min(int(np.ceil(quad[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(quad[:, 1].max())) + 2, height)
    if x1 <= x0 or y1 <= y0 or not mask.any():
        return out

    _, frame_to_crop = crop_transform(quad, resolution)
    roi_to_crop = frame_to_crop @ np.array([[1.0, 0, x0], [0, 1, y0], [0, 0, 1]])
    source, roi_to_source = antialias(np.ascontiguousarray(crop).astype(np.float32), roi_to_crop)
    weight_map, _ = antialias(np.ascontiguousarray(mask, np.float32), roi_to_crop)
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(source, roi_to_source[:2], size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(weight_map, roi_to_source[:2], size, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)

    roi = out[y0:y1, x0:x1]
    blended = roi + weight[..., None] * (warped - roi)
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(weight[..., None] > 0, blended, roi)
    return out


def require_inputs(settings: PasteSettings, *, parser_path=None, crops_path=None, landmarks_path=None) -> None:
    """A CiinvError naming what the configured mask needs but was not given."""
    needs = {"parser": {"--parser (models.parser)": parser_path, "--crops (the align stage's crops)": crops_path},
             "landmarks": {"--landmarks (the landmarks stage's file)": landmarks_path}}.get(settings.mask, {})
    missing = [name for name, value in needs.items() if not value]
    if missing:
        raise CiinvError(f"paste.mask {settings.mask} needs {' and '.join(missing)}")
