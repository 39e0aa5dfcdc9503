"""`ciinv bench blend`: the paste-back masks compared on full frames whose ideal output is known.

The protocol, per clip (``clips`` of them, ``frames`` frames of ``size``², seeded):

1. the face layer: the astronaut clip of ``ciinv.dev.sample`` (a real face, moving: drift, zoom,
   roll), its 68 landmarks found once by dlib on the first frame and carried to every frame by
   the clip's own motion (so they are exact, not re-detected);
2. the face's matte, known by construction: the region inside the jaw (points 0-16) and, above
   the brows, a forehead reaching ``FOREHEAD`` of the brow-to-chin height higher, its edge
   softened by a Gaussian of ``MATTE_SOFT`` of the jaw's width. It is none of the masks under
   test: it has the forehead that the landmark polygon lacks and none of the hair or backdrop an
   ellipse takes in;
3. the source video: the clip itself. The ideal output: the source with the face under the
   matte replaced by the *edited* face (a known colour grade, ``EDIT_GAIN`` per channel);
4. the stand-in render, as a real inversion gets it: the edited face under the matte, and
   around it the hair and backdrop wrong (blurred by ``WRONG_BLUR`` of the crop, shifted in
   colour by ``WRONG_SHIFT``) and flickering (a smooth random field of ``WRONG_FLICKER``
   amplitude, new every frame); it is cut into aligned crops with the workflow's quads
   (``ciinv.faces.align``) like a generator's output;
5. each mask kind of the config's ``paste:`` block (``ciinv.faces.paste.clip_masks``: with
   ``parser_every``, the parser on the key frames only and the masks between interpolated, then
   smoothed over time, as assemble does) pastes the render into the source (``paste_back``);
   ``parser`` runs when the configured face parser's weights are in models_dir.

Measured per clip and mask, on full frames in [0, 1] (``ciinv.frame_metrics``):

error            MSE of the composite to the ideal over the whole frame
error_inside     the same over the face (matte ≥ ½): the edit missing where the mask falls short
error_outside    the same over the rest: the render's wrong surround pasted in
seam             excess edge energy (``frame_metrics.excess_edges``) on the face's neighbourhood
warp_ratio       the composite's warping error over the source's own on that neighbourhood (1:
                 as steady as the source), flows from the configured flow network
tl_id, tg_id     STIT's identity consistency with dlib's face-recognition network

With ``stitch.enabled`` in the config, stitching tuning gets two rows more per clip. It tunes a
generator, so their render comes from one: the configured generator renders codes near its mean
(``STITCH_SPREAD``, drifting by ``STITCH_DRIFT`` a frame) at its resolution, and the ideal output
of these two rows is the source with that render pasted under the known matte (the face the
generator made, with none of its surround). ``<mask>, generator render`` pastes the render with
the configured mask; ``<mask> + stitch`` first tunes the generator per frame (the stitch stage's
``stitch_frame``, chains of ``stitch.chain``, the config's ``stitch:`` settings) and pastes its
renders with the same mask. The two rows share their ideal, render and mask, so their ratio is
what stitching gains; they are not comparable with the mask rows (another ideal) and stay out of
the last line.

Outputs: ``blend.csv`` (one row per clip and mask), ``blend.md`` (means per mask, the
targets), ``blend.png`` (the middle frame of each clip: source, ideal, render unmasked, each
mask's composite, and with stitching the generator render's ideal and composites) and the last
line printed, ``best <mask>: full-frame error X.XX× lower than ellipse``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from ciinv import frame_metrics, models
from ciinv.bench.common import leave_out, model_path, write_grid
from ciinv.bench.tables import markdown_table, mean_cell, write_csv
from ciinv.errors import CiinvError
from ciinv.faces.align import crop_face, ffhq_quads
from ciinv.faces.paste import PasteSettings, clip_masks, load_mask_parser, paste_back
from ciinv.io.files import atomic_path

log = logging.getLogger(__name__)

MASKS = ("ellipse", "landmarks", "parser")
COLUMNS = ["clip", "mask", "error", "error_inside", "error_outside", "seam", "warp_ratio", "tl_id", "tg_id"]
TARGETS = {"ratio": 2.0, "warp_ratio": 1.05, "tl_id": 0.99}  # landmarks vs ellipse; issue 20

FOREHEAD = 0.15  # the visible forehead above the brows, in brow-to-chin heights (this face's fringe starts there)
MATTE_SOFT = 0.02  # the matte's soft edge: Gaussian σ in jaw widths
EDIT_GAIN = (1.12, 1.0, 0.88)  # the known edit: a warmer face
WRONG_BLUR = 0.012  # the render's surround: Gaussian σ in crop sides
WRONG_SHIFT = (0.06, -0.04, 0.05)  # its colour offset ([0, 1] units)
WRONG_FLICKER = 0.04  # its per-frame random field (amplitude, [0, 1] units)
MARGIN_FRACTION = 0.25  # a clip's face box grows the quads' box by this much of the quad side
STITCH_SPREAD = 0.5  # the stitching rows' codes: the generator's mean plus this much Gaussian noise
STITCH_DRIFT = 0.05  # and a random walk of this step per frame (a face that moves a little)


# --------------------------------------------------------------------------------------------
# The protocol's clips


def face_landmarks(frames: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut clip's frames [F, S, S, 3] uint8 and exact 68 landmarks [F, 68, 2].

    dlib finds the points on the first frame; the clip's own similarity motion
    (``ciinv.dev.sample.head_motion``) carries them to the others."""
    from ciinv.dev.sample import head_motion, render_frames
    from ciinv.faces.landmarks import dlib_detector

    pictures = render_frames(frames, (size, size), seed=seed)
    found = dlib_detector(track=False)([pictures[0]])[0]
    if not found:
        raise CiinvError(f"bench blend: dlib finds no face in the first frame of clip {seed} at {size}²; use a "
                         "larger --size")
    first = max(found, key=lambda face: face.score).points.astype(np.float64)
    motion = head_motion(frames, (size, size), seed=seed)
    back = np.linalg.inv(motion[0])
    homogeneous = np.c_[first, np.ones(len(first))]
    points = np.stack([(m @ back @ homogeneous.T).T[:, :2] for m in motion])
    return pictures, points.astype(np.float32)


def face_matte(points: np.ndarray, size: int) -> np.ndarray:
    """The face's matte of one frame, float32 [S, S] in [0, 1]: the jaw and a forehead above the
    brows (``FOREHEAD``), softened (``MATTE_SOFT``)."""
    jaw, brows = points[:17].astype(np.float64), points[26:16:-1].astype(np.float64)
    chin = points[8].astype(np.float64)
    up = brows.mean(axis=0) - chin
    forehead = brows + FOREHEAD * up
    outline = np.concatenate([jaw, forehead])
    region = np.zeros((size, size), np.uint8)
    cv2.fillPoly(region, [np.rint(outline * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    sigma = MATTE_SOFT * np.linalg.norm(points[16] - points[0])
    return cv2.GaussianBlur(region.astype(np.float32), (0, 0), sigma)


def wrong_surround(frame: np.ndarray, rng: np.random.Generator, crop_side: float) -> np.ndarray:
    """What a stand-in inversion renders around the face: the frame blurred, shifted in colour and
    with a new smooth random field: float32 [S, S, 3] in [0, 1]."""
    size = frame.shape[0]
    blurred = cv2.GaussianBlur(frame.astype(np.float32) / 255, (0, 0), WRONG_BLUR * crop_side)
    field = cv2.resize(rng.uniform(-1, 1, (6, 6, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(blurred + np.asarray(WRONG_SHIFT, np.float32) + WRONG_FLICKER * field, 0, 1)


def make_clip(frames: int, size: int, seed: int) -> dict:
    """One clip of the protocol: {'source' [F, S, S, 3] uint8, 'ideal' float32 [F, S, S, 3] in [0, 1],
    'render' float32 (the stand-in, frame space), 'matte' [F, S, S], 'points' [F, 68, 2], 'quads'}."""
    source, points = face_landmarks(frames, size, seed)
    quads = ffhq_quads(points)
    rng = np.random.default_rng(1000 + seed)
    pictures = source.astype(np.float32) / 255
    edited = np.clip(pictures * np.asarray(EDIT_GAIN, np.float32), 0, 1)
    mattes = np.stack([face_matte(p, size) for p in points])[..., None]
    ideal = mattes * edited + (1 - mattes) * pictures
    crop_side = float(np.linalg.norm(quads[:, 1] - quads[:, 0], axis=-1).mean())
    render = np.stack([m * e + (1 - m) * wrong_surround(f, rng, crop_side)
                       for m, e, f in zip(mattes, edited, source)])
    return {"source": source, "ideal": ideal, "render": render, "matte": mattes[..., 0], "points": points,
            "quads": quads}


# --------------------------------------------------------------------------------------------
# One mask on one clip


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float pictures in [0, 1] -> uint8 (rounded)."""
    return np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)


def channels_first(images: np.ndarray) -> torch.Tensor:
    """uint8 pictures [N, H, W, 3] -> a uint8 tensor [N, 3, H, W], as ``face_masks`` takes them."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def composite(clip: dict, settings: PasteSettings, resolution: int, parser=None) -> tuple[np.ndarray, np.ndarray]:
    """The clip pasted back with ``settings``' mask as the assemble stage does: (composites [F, S, S, 3]
    uint8, the render's crops [F, R, R, 3] uint8)."""
    render = to_uint8(clip["render"])
    crops = np.stack([crop_face(r, q, resolution) for r, q in zip(render, clip["quads"])])
    return paste_crops(clip, crops, settings, parser), crops


def source_crops(clip: dict, resolution: int) -> np.ndarray:
    """The clip's aligned source crops [F, R, R, 3] uint8, as the align stage cuts them."""
    return np.stack([crop_face(s, q, resolution) for s, q in zip(clip["source"], clip["quads"])])


def paste_crops(clip: dict, crops: np.ndarray, settings: PasteSettings, parser=None) -> np.ndarray:
    """Crops [F, R, R, 3] uint8 pasted into the clip's source frames with ``settings``' masks
    (``clip_masks``: key frames, interpolated, smoothed over time), as the assemble stage does:
    [F, S, S, 3] uint8."""
    device = next(parser.parameters()).device if parser is not None else "cpu"
    originals = source_crops(clip, crops.shape[1])
    masks = clip_masks(settings, channels_first(crops).to(device), source=channels_first(originals).to(device),
                       points=clip["points"], quads=clip["quads"], parser=parser)
    return np.stack([paste_back(s, c, q, m) for s, c, q, m in zip(clip["source"], crops, clip["quads"], masks)])


# --------------------------------------------------------------------------------------------
# Stitching on a generator's render


def generator_clip(clip: dict, generator, seed: int) -> tuple[dict, torch.Tensor, np.ndarray]:
    """The stitching rows' version of a clip: (the clip with its ideal the source and the generator's
    render pasted under the matte, the codes [F, L, D] on the generator's device, the render's crops
    [F, R, R, 3] uint8 at the generator's resolution)."""
    device = generator.w_avg.device
    rng = torch.Generator().manual_seed(2000 + seed)
    frames, shape = len(clip["source"]), (generator.num_ws, generator.w_avg.shape[-1])
    offsets = STITCH_SPREAD * torch.randn(1, *shape, generator=rng)
    offsets = offsets + STITCH_DRIFT * torch.randn(frames, *shape, generator=rng).cumsum(0)
    codes = generator.w_avg.cpu() + offsets
    with torch.no_grad():
        images = torch.cat([generator.synthesis(codes[k:k + 4].to(device)).float().cpu() for k in range(0, frames, 4)])
    crops = as_pixels(images)
    unmasked = np.stack([frame_metrics.crop_in_frame(s, c, q) for s, c, q in zip(clip["source"], crops, clip["quads"])])
    matte = clip["matte"][..., None]
    ideal = matte * unmasked / 255 + (1 - matte) * clip["source"].astype(np.float32) / 255
    return clip | {"ideal": ideal.astype(np.float32), "render": unmasked / 255}, codes.to(device), crops


def as_pixels(images: torch.Tensor) -> np.ndarray:
    """Generator images [N, 3, R, R] in [-1, 1] -> uint8 crops [N, R, R, 3], as the crops files store them."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def stitched(clip: dict, codes: torch.Tensor, generator, paste: PasteSettings, stitch, parser=None) -> np.ndarray:
    """The stitch stage's crops of the clip's codes, frame by frame (``stitch_frame``, chains of
    ``stitch.chain``): uint8 [F, R, R, 3]."""
    from ciinv.inversion.stitch import StitchMasks, band_pixels, stitch_frame

    resolution, device = generator.resolution, generator.w_avg.device
    originals = torch.from_numpy(source_crops(clip, resolution)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    masks = StitchMasks(paste, parser=parser, points=clip["points"], quads=clip["quads"])
    band = band_pixels(stitch.border_band, resolution)
    previous, out = generator, []
    for index in range(len(codes)):
        start_from = generator if index % stitch.chain == 0 else previous
        original = originals[index:index + 1].to(device)
        previous, result = stitch_frame(generator, start_from, codes[index:index + 1], original, masks, index, band,
                                        stitch)
        out.append(as_pixels(result.images))
    return np.concatenate(out)


def score(clip: dict, output: np.ndarray, crops: np.ndarray, flow_fn, embedder, device) -> dict:
    """The row of one clip and mask (``COLUMNS`` but clip and mask)."""
    made = output.astype(np.float32) / 255
    squared = np.square(made - clip["ideal"]).mean(axis=-1)  # [F, S, S]
    inside = clip["matte"] >= 0.5
    box = frame_metrics.face_box(clip["quads"], clip["source"].shape[2:0:-1], MARGIN_FRACTION)
    unmasked = np.stack([frame_metrics.crop_in_frame(frame_metrics.cut(s, box), c, q, box)
                         for s, c, q in zip(clip["source"], crops, clip["quads"])])
    measure = frame_metrics.ClipMeasure(flow_fn, embedder, device)
    measure.add(frame_metrics.cut(clip["source"], box), clip["points"] - np.array(box[:2], np.float32),
                {"out": frame_metrics.cut(output, box)}, {"out": unmasked})
    full = measure.result()["out"]
    return {"error": float(squared.mean()), "error_inside": float(squared[inside].mean()),
            "error_outside": float(squared[~inside].mean()), "seam": full["seam"], "warp_ratio": full["rel_warp"],
            "tl_id": full["tl_id"], "tg_id": full["tg_id"]}


# --------------------------------------------------------------------------------------------
# The run


def load_parser_if_there(config: dict, device, notes: dict):
    """The configured face parser when its weights are in models_dir, else None (the reason in notes)."""
    try:
        path = model_path(config, "parser")
    except CiinvError as exc:
        leave_out(notes, "parser", str(exc))
        return None
    return load_mask_parser(path, device=device)


def stitch_labels(mask: str) -> tuple[str, str]:
    """The stitching rows' mask column: the generator's render pasted plain, then stitched."""
    return f"{mask}, generator render", f"{mask} + stitch"


def stitch_setup(config: dict, paste: PasteSettings, kinds: list[str], parser, device, notes: dict):
    """With ``stitch.enabled``: (the configured generator on ``device``, frozen, and the
    StitchSettings); else, or when the configured mask cannot run, None (the reason in notes)."""
    from ciinv.inversion.settings import StitchSettings

    stitch = StitchSettings.from_dict(config.get("stitch", {}))
    if not stitch.enabled:
        return None
    if paste.mask == "parser" and parser is None:
        leave_out(notes, "stitching", "it pastes with the configured mask, parser, whose weights are missing")
        return None
    generator = models.load_generator(model_path(config, "generator")).to(device).eval().requires_grad_(False)
    return generator, stitch


def bench_blend(config: dict, out_dir, clips: int = 3, frames: int = 16, size: int = 256, resolution: int = 256,
                masks=MASKS, device: str = "cpu") -> tuple[list[dict], str]:
    """Run the protocol; write blend.csv, blend.md and blend.png into ``out_dir``. Returns (the rows,
    the last line: ``best <mask>: full-frame error X.XX× lower than ellipse``)."""
    if "ellipse" not in masks:
        raise CiinvError("bench blend compares against the ellipse mask: keep 'ellipse' among --masks")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: dict[str, str] = {}
    base = PasteSettings.from_dict(config.get("paste", {}))
    parser = load_parser_if_there(config, device, notes) if "parser" in masks else None
    kinds = [m for m in masks if m != "parser" or parser is not None]
    flow_fn = models.load_flow(model_path(config, "flow")).to(device).eval().requires_grad_(False)
    try:
        embedder = frame_metrics.FaceEmbedder()
    except CiinvError as exc:
        embedder = None
        leave_out(notes, "TL-ID and TG-ID", str(exc))
    stitch = stitch_setup(config, base, kinds, parser, device, notes)
    rows, pictures = [], {"source": [], "ideal": [], "render": []} | {k: [] for k in kinds}
    if stitch is not None:
        pictures |= {"generator ideal": [], **{label: [] for label in stitch_labels(base.mask)}}
    for k in range(clips):
        clip = make_clip(frames, size, seed=k)
        middle = frames // 2
        for label in ("source", "ideal", "render"):
            picture = clip[label][middle]
            pictures[label].append(picture if picture.dtype == np.uint8 else to_uint8(picture))
        for kind in kinds:
            settings = dataclasses.replace(base, mask=kind)
            output, crops = composite(clip, settings, resolution, parser if kind == "parser" else None)
            rows.append({"clip": k, "mask": kind} | score(clip, output, crops, flow_fn, embedder, device))
            pictures[kind].append(output[middle])
            log.info(f"bench blend: clip {k}, {kind}: error {rows[-1]['error']:.3g}")
        if stitch is not None:
            generator, settings = stitch
            rendered, codes, crops = generator_clip(clip, generator, seed=k)
            pictures["generator ideal"].append(to_uint8(rendered["ideal"][middle]))
            mask_parser = parser if base.mask == "parser" else None
            faces = {"plain": crops, "stitched": stitched(rendered, codes, generator, base, settings, mask_parser)}
            for label, which in zip(stitch_labels(base.mask), faces):
                output = paste_crops(rendered, faces[which], base, mask_parser)
                rows.append({"clip": k, "mask": label} | score(rendered, output, faces[which], flow_fn, embedder,
                                                                device))
                pictures[label].append(output[middle])
                log.info(f"bench blend: clip {k}, {label}: error {rows[-1]['error']:.3g}")
    write_csv(rows, COLUMNS, out_dir / "blend.csv")
    write_grid({label: torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
                for label, images in pictures.items()}, out_dir / "blend.png")
    line = best_line(rows)
    with atomic_path(out_dir / "blend.md") as tmp:
        tmp.write_text(blend_markdown(rows, kinds, notes, base, clips, frames, size, resolution, line))
    return rows, line


def mean_of(rows: list[dict], kind: str, column: str) -> float:
    values = [r[column] for r in rows if r["mask"] == kind and r[column] is not None]
    return float(np.mean(values)) if values else float("nan")


def best_line(rows: list[dict]) -> str:
    """``best <mask>: full-frame error X.XX× lower than ellipse`` (the lowest mean error of the mask
    rows; the stitching rows have another ideal)."""
    kinds = [kind for kind in dict.fromkeys(r["mask"] for r in rows) if kind in MASKS]
    best = min(kinds, key=lambda kind: mean_of(rows, kind, "error"))
    ratio = mean_of(rows, "ellipse", "error") / mean_of(rows, best, "error")
    return f"best {best}: full-frame error {ratio:.2f}× lower than ellipse"


def blend_markdown(rows, kinds, notes, settings, clips, frames, size, resolution, line) -> str:
    """blend.md: the protocol in one paragraph, the means per mask, the targets and what was left out."""
    columns = COLUMNS[2:]
    body = [[kind] + [mean_cell([r[c] for r in rows if r["mask"] == kind and r[c] is not None]) for c in columns]
            for kind in kinds]
    head = ["mask", "error ↓", "inside ↓", "outside ↓", "seam ↓", "warp ratio (1 = source)", "TL-ID ↑", "TG-ID ↑"]
    lines = ["# bench blend: paste-back masks on full frames with a known ideal", "",
             f"{clips} clip(s) of {frames} frames, {size}², crops {resolution}²; paste settings: "
             f"{dataclasses.asdict(settings) | {'mask': '(each)'}}. The astronaut's face under a known matte "
             f"(jaw and forehead) gets a known colour edit; the stand-in render has the edited face and a wrong, "
             "flickering surround. Errors: MSE to the ideal output ([0, 1] images), over the frame, inside and "
             "outside the face's matte. Means over clips:", ""]
    lines += markdown_table(head, body)
    stitching = [kind for kind in dict.fromkeys(r["mask"] for r in rows) if kind not in MASKS]
    if stitching:
        plain, tuned = (mean_of(rows, kind, "error") for kind in stitching)
        lines += ["", f"Stitching tuning (the config's `stitch:` settings, mask {settings.mask}), on a render of the "
                  "configured generator: the "
                  "ideal is the source with that render pasted under the matte, so these rows compare with each "
                  "other, not with the rows above. Means over clips:", ""]
        lines += markdown_table(head, [[kind] + [mean_cell([r[c] for r in rows if r["mask"] == kind and
                                                            r[c] is not None]) for c in columns]
                                       for kind in stitching])
        change = f"{plain / tuned:.2f}× lower" if tuned <= plain else f"{tuned / plain:.2f}× higher"
        lines += ["", f"Stitching: full-frame error {change} than the same mask without it."]
    ellipse, landmarks = (mean_of(rows, kind, "error") for kind in ("ellipse", "landmarks"))
    if "landmarks" in kinds:
        lines += ["", f"Targets (issue 20): landmarks ≥ {TARGETS['ratio']:g}× lower error than ellipse: "
                  f"{ellipse / landmarks:.2f}×; warp ratio ≤ {TARGETS['warp_ratio']}: "
                  f"{mean_of(rows, 'landmarks', 'warp_ratio'):.4g}; TL-ID ≥ {TARGETS['tl_id']}: "
                  f"{mean_of(rows, 'landmarks', 'tl_id'):.4g}."]
    lines += [""] + [f"{what} left out: {why}" for what, why in notes.items()] + ["", line, ""]
    return "\n".join(lines)
