"""Our metrics against their reference tools, on the same images and the same weight files.

Evidence for issue 13: ciinv's LPIPS, FID (Inception features and the Fréchet distance) and NIQE
(``ciinv/metrics.py``, ``ciinv/models/inception.py``) compute what the packages everyone quotes
compute:

    LPIPS  ``lpips`` (Zhang et al.'s package): ``lpips.LPIPS(net="vgg", version="0.1")``
    FID    ``pytorch-fid``: ``InceptionV3([3])`` pool3 features and ``calculate_frechet_distance``
    NIQE   BasicSR's ``basicsr.metrics.niqe`` (its port of the authors' MATLAB release, with the
           MATLAB pristine model ``niqe_pris_params.npz`` that ships inside the package)

Weights. The linear layers of LPIPS ship inside the ``lpips`` package (``weights/v0.1/vgg.pth``):
the real ones, read by both sides. The VGG16 backbone and FID's Inception are downloaded at run
time by the references, which cannot happen here: the script writes random weights in the real
layouts (torchvision's full-width VGG16 features; pytorch-fid's full-width Inception state dict,
``ciinv.dev.tiny.write_tiny_vgg16`` / ``ciinv.dev.tiny.write_tiny_inception`` with
width divisor 1) and gives the *same file* to both sides: to ciinv through its loaders, to the
references by loading it into the modules they build (LPIPS: ``pnet_rand=True``, then the file's
``features.*`` into ``net.slice*``; pytorch-fid: its ``load_state_dict_from_url`` returns the
file's state dict instead of downloading). ``--vgg16`` and ``--inception`` take the real files
where they exist. NIQE needs no network: its parameters are the npz inside BasicSR.

Images: natural photographs that scikit-image ships (``skimage.data``), no download. LPIPS and FID
compare each photo (cropped and resized to ``--size``) with distorted copies of it (noise, blur,
shift); NIQE scores the photos at their own size and distorted copies of them.

Reference quirks handled here, and why:
- BasicSR 1.4.2 imports ``torchvision.transforms.functional_tensor``, which torchvision removed
  (0.17): the module is aliased to its new private name ``_functional_tensor`` before importing
  BasicSR. Nothing else of BasicSR is changed.
- NIQE's colour conversion differs between the tools: the MATLAB release (and ciinv) use
  ``rgb2gray`` of the uint8 image; BasicSR's ``calculate_niqe`` defaults to the Y of YCbCr
  (``convert_to='y'``, studio range 16-235) or OpenCV's gray. The comparison rows feed both sides
  the *same* grayscale image (``input_order='HW'``); extra rows show what BasicSR's own colour
  conversions give on the colour images, for information.

Run it in a separate virtual environment, never as a dependency of ciinv (the references need
torchvision, whose builds pair with another torch than the project's):

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 lpips pytorch-fid scikit-image \\
        opencv-python-headless addict lmdb yapf -e .
    /tmp/refvenv/bin/pip install --no-deps --no-build-isolation basicsr==1.4.2
    /tmp/refvenv/bin/python benchmarks/compare_metrics.py

Prints one Markdown table (tool, quantity, shape, max abs error, max abs reference, relative
error, verdict against the tolerance) and exits with status 1 if any row fails.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ciinv import metrics
from ciinv.models.inception import load_inception
from ciinv.dev.tiny import write_tiny_inception
from ciinv.dev.tiny import write_tiny_vgg16

LPIPS_TOL = 1e-4  # relative, LPIPS distances and FID
FID_TOL = 1e-4
NIQE_TOL = 1e-3  # relative, NIQE scores
# skimage.data's bundled colour photos (``cat`` is ``chelsea`` again, so it is left out); the
# microscope slide ``immunohistochemistry`` is the one picture that is not a natural scene.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
NOT_NATURAL = ("immunohistochemistry",)
DISTORTIONS = ("noise", "blur", "shift", "blur+noise")  # the keys of distortions(), in order


# --------------------------------------------------------------------------------------------
# Images


def photos() -> dict[str, np.ndarray]:
    """scikit-image's bundled colour photographs, uint8 [H, W, 3]."""
    import skimage.data

    return {name: getattr(skimage.data, name)() for name in PHOTOS}


def distortions(image: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Distorted copies of images [N, 3, H, W] in [0, 1]: noise, blur, a shift, and a mix."""
    rng = torch.Generator().manual_seed(seed)
    blur = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = (blur[:, None] * blur[None, :]).expand(3, 1, 5, 5)
    blurred = F.conv2d(F.pad(image, (2, 2, 2, 2), mode="replicate"), kernel, groups=3)
    noisy = (image + 0.08 * torch.randn(image.shape, generator=rng)).clamp(0, 1)
    return {"noise": noisy, "blur": blurred, "shift": torch.roll(image, shifts=(3, -5), dims=(2, 3)),
            "blur+noise": (blurred + 0.04 * torch.randn(image.shape, generator=rng)).clamp(0, 1)}


def square_batch(images: dict[str, np.ndarray], size: int) -> torch.Tensor:
    """Centre square crops resized to size² (antialiased bilinear): [N, 3, size, size] float32 in [0, 1]."""
    out = []
    for image in images.values():
        h, w = image.shape[:2]
        side = min(h, w)
        crop = image[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
        tensor = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255
        out.append(F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(out).clamp(0, 1)


# --------------------------------------------------------------------------------------------
# Rows


def row(tool: str, quantity: str, ours, ref, tol: float, note: str = "") -> dict:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    err = float(np.abs(ours - ref).max())
    scale = float(np.abs(ref).max())
    rel = float(np.linalg.norm((ours - ref).ravel()) / max(np.linalg.norm(ref.ravel()), 1e-30))
    return {"tool": tool, "quantity": quantity, "shape": "x".join(map(str, ref.shape)) or "1", "err": err,
            "scale": scale, "rel": rel, "verdict": "PASS" if rel <= tol else "FAIL", "tol": tol, "note": note}


def info(tool: str, quantity: str, ours, ref, note: str = "") -> dict:
    out = row(tool, quantity, ours, ref, np.inf, note)
    out["verdict"] = "(info)"
    return out


def table(rows: list[dict]) -> str:
    lines = ["| tool | quantity | shape | max abs err | max abs ref | rel err | verdict (tol) | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tol = "" if r["verdict"] == "(info)" else f" ({r['tol']:.0e})"
        lines.append(f"| {r['tool']} | {r['quantity']} | {r['shape']} | {r['err']:.2e} | {r['scale']:.2e} | "
                     f"{r['rel']:.2e} | {r['verdict']}{tol} | {r['note']} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# LPIPS


def compare_lpips(vgg_path: Path, batch: torch.Tensor, seed: int) -> list[dict]:
    import lpips

    lin_path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    ours = metrics.load_lpips(vgg_path, lin_path)
    reference = lpips.LPIPS(net="vgg", version="0.1", pretrained=True, pnet_rand=True, model_path=str(lin_path),
                            verbose=False).eval()
    vgg = torch.load(vgg_path, map_location="cpu", weights_only=True)
    state = reference.state_dict()
    for key in state:  # net.slice{k}.{index}.{weight,bias} <- features.{index}.{weight,bias}
        if key.startswith("net.slice"):
            index, param = key.split(".")[2:]
            state[key] = vgg[f"features.{index}.{param}"]
    reference.load_state_dict(state)

    rows = []
    with torch.no_grad():
        for name, distorted in distortions(batch, seed).items():
            a = ours(batch, distorted)
            b = reference(batch * 2 - 1, distorted * 2 - 1).flatten()  # lpips wants [-1, 1]
            rows.append(row("LPIPS-VGG v0.1", f"d(photo, {name})", a.numpy(), b.numpy(), LPIPS_TOL))
    return rows


# --------------------------------------------------------------------------------------------
# FID


def compare_fid(inception_path: Path, batch: torch.Tensor, seed: int) -> list[dict]:
    import pytorch_fid.inception as fid_inception
    from pytorch_fid.fid_score import calculate_frechet_distance

    state = torch.load(inception_path, map_location="cpu", weights_only=True)
    fid_inception.load_state_dict_from_url = lambda *args, **kwargs: state  # no download: the same file
    reference = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    ours = load_inception(inception_path)

    distorted = torch.cat(list(distortions(batch, seed).values()))
    with torch.no_grad():
        features_ours = [metrics.inception_features(x, ours) for x in (batch, distorted)]
        features_ref = [reference(x)[0].flatten(1) for x in (batch, distorted)]
    rows = [row("pytorch-fid", "Inception pool3 features, photos + distorted", torch.cat(features_ours).numpy(),
                torch.cat(features_ref).numpy(), FID_TOL)]

    # The Fréchet distance: each side's formula on the same statistics (well-conditioned: N > D).
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((600, 64))
    y = 0.5 + rng.standard_normal((600, 64)) @ (np.eye(64) + 0.2 * rng.standard_normal((64, 64)))
    stats = [*metrics.feature_statistics(x), *metrics.feature_statistics(y)]
    rows.append(row("pytorch-fid", "Fréchet distance, 600 x 64 Gaussian features", metrics.frechet_distance(*stats),
                    calculate_frechet_distance(*stats), FID_TOL))
    # End to end: FID between the photos' and the distorted copies' features, each side all the way.
    end_ours = metrics.fid(features_ours[0], features_ours[1])
    end_ref = calculate_frechet_distance(features_ref[0].numpy().mean(0), np.cov(features_ref[0].numpy(), rowvar=False),
                                         features_ref[1].numpy().mean(0), np.cov(features_ref[1].numpy(), rowvar=False))
    rows.append(row("pytorch-fid", f"FID photos vs distorted ({len(batch)} vs {len(distorted)} images)", end_ours,
                    end_ref, FID_TOL, "fewer images than features: singular covariances, both sides add 1e-6·I"))
    return rows


# --------------------------------------------------------------------------------------------
# NIQE


def import_basicsr_niqe():
    """BasicSR's ``basicsr.metrics.niqe`` module, with the one import shim it needs on torchvision >= 0.17."""
    try:
        importlib.import_module("torchvision.transforms.functional_tensor")
    except ModuleNotFoundError:
        sys.modules["torchvision.transforms.functional_tensor"] = importlib.import_module(
            "torchvision.transforms._functional_tensor")
    return importlib.import_module("basicsr.metrics.niqe")


def resize_right_matlab(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's imresize(image, scale) (bicubic, antialiased, mirrored borders) by ResizeRight
    (Shocher et al., PyPI ``resize-right``), in float64: an independent reference for the one step
    of NIQE that BasicSR computes in float32."""
    from resize_right import interp_methods, resize

    return resize(np.asarray(image, np.float64), scale_factors=scale, interp_method=interp_methods.cubic,
                  antialiasing=True, pad_mode="symmetric")


def basicsr_niqe_float64(niqe_module, gray: np.ndarray, params: tuple) -> float:
    """BasicSR's ``niqe()`` in float64 throughout.

    As shipped, ``calculate_niqe`` casts the image to float32 and BasicSR's ``imresize`` works
    in float32 by construction (``torch.FloatTensor`` buffers), so the second NIQE scale is
    computed in float32. Here ``niqe()`` gets the float64 image and its ``imresize`` is replaced
    by ResizeRight's float64 MATLAB resize; every other step is BasicSR's own.
    """
    shipped = niqe_module.imresize
    niqe_module.imresize = lambda image, scale, antialiasing=True: resize_right_matlab(image, scale)
    try:
        return niqe_module.niqe(np.asarray(gray, np.float64), *params)
    finally:
        niqe_module.imresize = shipped


def ours_resizing_like_basicsr(gray: np.ndarray, params: tuple) -> float:
    """Our NIQE with BasicSR's order of operations at the resize: imresize(x / 255) · 255 instead
    of imresize(x). Exactly the same function; only the rounding differs."""
    own = metrics.matlab_imresize
    metrics.matlab_imresize = lambda image, scale: own(image / 255.0, scale) * 255.0
    try:
        return metrics.niqe(gray, params)
    finally:
        metrics.matlab_imresize = own


def compare_niqe(images: dict[str, np.ndarray], seed: int) -> tuple[list[dict], str]:
    """NIQE rows for the main table, and a per-image table.

    Per image (each photo and its distorted copies, the same MATLAB rgb2gray image on both
    sides): ours as shipped; ours with BasicSR's order of operations at the resize; BasicSR in
    float64 throughout (``basicsr_niqe_float64``), which must equal the latter to rounding (the
    same function); and BasicSR's ``calculate_niqe`` as its users call it (float32 image and
    resize). NIQE is not a continuous function of the pixels: where MSCN coefficients are 0 in
    exact arithmetic (saturated, flat regions), rounding noise decides their sign, and the AGGD
    fits count them. So an image passes the as-shipped comparison at 1e-3 relative, or (PASS*)
    when our difference is no larger than what rounding alone moves NIQE on that image
    (BasicSR's own float32 vs float64, or ours under the two orders of operations).
    """
    niqe_module = import_basicsr_niqe()
    npz = Path(niqe_module.__file__).with_name("niqe_pris_params.npz")
    params = metrics.load_niqe_params(npz)
    with np.load(npz) as data:
        basicsr_params = (data["mu_pris_param"], data["cov_pris_param"], data["gaussian_window"])
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()

    lines = ["| image | ours | BasicSR calculate_niqe (float32, as shipped) | rel | rounding alone: BasicSR "
             "float32 vs float64 | rounding alone: ours, x/255 resize vs x | ours (x/255) vs BasicSR float64 |",
             "|---|" + "---:|" * 6]
    ours_all, reordered_all, ref64_all, ref32_all = [], [], [], []
    resize_ours, resize_ref, resize_basicsr = [], [], []
    colour_ours, colour_y, colour_gray = [], [], []
    for name, image in images.items():
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        versions = {name: tensor} | {f"{name}+{k}": v for k, v in distortions(tensor, seed).items()}
        assert list(versions) == [name] + [f"{name}+{k}" for k in DISTORTIONS]
        for label, version in versions.items():
            rgb = version[0]
            gray = metrics.to_matlab_gray(rgb)  # MATLAB rgb2gray of the uint8 image, [H, W] in 0..255
            ours = metrics.niqe(gray, params)
            reordered = ours_resizing_like_basicsr(gray, params)
            ref64 = basicsr_niqe_float64(niqe_module, gray, basicsr_params)
            ref32 = niqe_module.calculate_niqe(gray, 0, input_order="HW")
            blocks = gray[: gray.shape[0] // 96 * 96, : gray.shape[1] // 96 * 96]
            resize_ours.append(metrics.matlab_imresize(blocks, 0.5))
            resize_ref.append(resize_right_matlab(blocks, 0.5))
            resize_basicsr.append(niqe_module.imresize(blocks / 255.0, scale=0.5, antialiasing=True) * 255.0)

            rel = abs(ours - ref32) / ref32
            lines.append(f"| {label} | {ours:.6f} | {ref32:.6f} | {rel:.1e} | "
                         f"{abs(ref32 - ref64) / ref64:.1e} | {abs(ours - reordered) / ours:.1e} | "
                         f"{abs(reordered - ref64) / ref64:.1e} |")
            for store, value in zip((ours_all, reordered_all, ref64_all, ref32_all),
                                    (ours, reordered, ref64, ref32)):
                store.append(value)
            if label == name:
                bgr = np.round(rgb.permute(1, 2, 0).numpy()[..., ::-1] * 255)
                colour_ours.append(metrics.niqe(rgb, params))
                colour_y.append(niqe_module.calculate_niqe(bgr, 0, input_order="HWC", convert_to="y"))
                colour_gray.append(niqe_module.calculate_niqe(bgr, 0, input_order="HWC", convert_to="gray"))

    count = len(ours_all)
    ours_all, reordered_all, ref64_all, ref32_all = map(np.array, (ours_all, reordered_all, ref64_all, ref32_all))
    labels = [label for name, image in images.items() for label in [name] + [f"{name}+{k}" for k in DISTORTIONS]]
    slide = np.array([label.split("+")[0] in NOT_NATURAL for label in labels])
    rows_niqe = []
    for subset, what in ((~slide, "natural photos"), (slide, "microscope slide")):
        if not subset.any():
            continue
        worst = lambda a, b: float((np.abs(a[subset] - b[subset]) / np.abs(b[subset])).max())  # noqa: E731
        tol = NIQE_TOL if what == "natural photos" else np.inf
        float64 = row("BasicSR NIQE", f"{what} ({subset.sum()} images): ours vs BasicSR, both float64 (rel: worst "
                      "image)", ours_all[subset], ref64_all[subset], tol)
        float64["rel"] = worst(ours_all, ref64_all)
        shipped = row("BasicSR NIQE", f"{what} ({subset.sum()} images): ours vs calculate_niqe as shipped, float32 "
                      "(rel: worst image)", ours_all[subset], ref32_all[subset], tol,
                      f"rounding alone moves BasicSR by up to {worst(ref32_all, ref64_all):.1e} here")
        shipped["rel"] = worst(ours_all, ref32_all)
        for r in (float64, shipped):
            r["verdict"] = "(info)" if tol == np.inf else "PASS" if r["rel"] <= tol else "FAIL"
        rows_niqe += [float64, shipped]
    # The AGGD fit where it is undefined (blocks without negative values, all-zero blocks): MATLAB's
    # NaN rules, which the photos above never reach. NaN must sit in the same places.
    rng = np.random.default_rng(seed)
    blocks = {"two-sided": rng.standard_normal(2304), "no negatives": np.abs(rng.standard_normal(2304)),
              "no positives": -np.abs(rng.standard_normal(2304)), "all zero": np.zeros(2304)}
    fits_ours = np.array([metrics.aggd_fit(b) for b in blocks.values()])
    fits_ref = np.array([niqe_module.estimate_aggd_param(b) for b in blocks.values()], dtype=np.float64)
    same_nan = bool((np.isnan(fits_ours) == np.isnan(fits_ref)).all())
    aggd = row("BasicSR NIQE", f"AGGD fit (alpha, beta_l, beta_r): {', '.join(blocks)}",
               np.nan_to_num(fits_ours, nan=-1), np.nan_to_num(fits_ref, nan=-1), 1e-12,
               "NaN in the same places" if same_nan else "NaN in different places")
    if not same_nan:
        aggd["verdict"] = "FAIL"
    rows_niqe.insert(0, aggd)
    flat = [np.concatenate([a.ravel() for a in x]) for x in (resize_ours, resize_ref, resize_basicsr)]
    rows = [row("ResizeRight", f"MATLAB imresize 0.5 (bicubic, antialiased) of {count} gray images, float64",
                flat[0], flat[1], 1e-10),
            info("ResizeRight", "BasicSR's imresize (float32) vs ResizeRight (float64)", flat[2], flat[1],
                 "BasicSR's NIQE resizes in float32"),
            *rows_niqe,
            info("BasicSR NIQE", "colour photos: ours (rgb2gray) vs BasicSR convert_to='gray' (OpenCV)",
                 np.array(colour_ours), np.array(colour_gray), "a different colour conversion"),
            info("BasicSR NIQE", "colour photos: ours (rgb2gray) vs BasicSR default convert_to='y' (YCbCr)",
                 np.array(colour_ours), np.array(colour_y), "a different colour conversion")]
    return rows, f"NIQE parameters: {npz} (sha256 {digest})\n\n" + "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vgg16", type=Path, help="torchvision's vgg16-397923af.pth (default: random, written here)")
    parser.add_argument("--inception", type=Path,
                        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default: random, written here)")
    parser.add_argument("--size", type=int, default=256, help="side of the LPIPS/FID images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the written weight files here")
    parser.add_argument("--skip", default="", help="comma-separated: lpips,fid,niqe")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    torch.manual_seed(args.seed)

    from importlib.metadata import version

    import pytorch_fid

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="compare_metrics-"))
    workdir.mkdir(parents=True, exist_ok=True)
    images = photos()
    batch = square_batch(images, args.size)
    print(f"torch {torch.__version__}, lpips {version('lpips')}, basicsr {version('basicsr')}, "
          f"pytorch-fid {pytorch_fid.__version__}; {len(images)} photos; workdir {workdir}", flush=True)

    rows: list[dict] = []
    notes = []
    if "lpips" not in skip:
        vgg = args.vgg16
        if vgg is None:
            vgg = workdir / "vgg16-random.pth"
            write_tiny_vgg16(vgg, width_divisor=1, seed=args.seed)
        rows += compare_lpips(vgg, batch, args.seed)
        notes.append(f"VGG16: {vgg}")
    if "fid" not in skip:
        inception = args.inception
        if inception is None:
            inception = workdir / "inception-random.pth"
            write_tiny_inception(inception, width_divisor=1, seed=args.seed)
        rows += compare_fid(inception, batch, args.seed)
        notes.append(f"Inception: {inception}")
    if "niqe" not in skip:
        niqe_rows, niqe_table = compare_niqe(images, args.seed)
        rows += niqe_rows
    print("\n".join(notes))
    print(table(rows))
    if "niqe" not in skip:
        print("\n" + niqe_table)
    failed = [r for r in rows if r["verdict"] == "FAIL"]
    print(f"\n{sum(r['verdict'] == 'PASS' for r in rows)}/{len(rows) - sum(r['verdict'] == '(info)' for r in rows)} "
          f"rows PASS" + (f"; FAILED: {', '.join(r['quantity'] for r in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
