"""`ciinv bench synth`: the synthesized-data protocol of Xu et al. (ICCV 2021, Sec. 4.2).

Ground truth is known because the frames are made by the generator itself:

1. sample N codes w = mapping(z) (optionally truncated towards the mean latent: ψ < 1);
2. per code, one direction d and T sorted steps α ~ U[−3, 3]; frame t has the code
   w + α_t·d (d broadcast over the W+ layers, or one vector per layer), and its rendering is
   the "real" frame. Directions (``directions``): the paper's semantic setting (Fig. 5) when
   the named InterFaceGAN directions of the configured generator are in models_dir (sequence
   i moves along attribute i mod K and is edited along the next one, a *different* attribute),
   else random unit directions in W, one for the sequence and an independent one for the edit;
3. the truth is rendered with noise maps drawn at random (``truth_noise="random"``: one set
   per sequence, shared by its frames and its true edits and morphs, from the same seeded
   stream as the codes) — not with the generator's constant maps, which are where every
   inversion starts (as in the workflow; ``plus`` optimises them from there). The truth is
   therefore not exactly reachable by codes alone, as with real faces; ``plus`` can close part
   of the gap by fitting the noise. The row ``oracle`` renders the *true* codes with the
   constant maps: what the noise alone costs a variant that finds the codes exactly.
   ``truth_noise="constant"`` gives the old, easy setting (truth reachable exactly);
4. invert each sequence of T frames as one window with each variant (same settings, same
   step budget; the optimiser is deterministic given the settings);
5. measure, per variant and sequence:
   reconstruction (Table 1)  ``mse``, ``psnr``, ``lpips`` of the T reconstructions, and two
                             distances of the T inverted codes to the true ones:
                             ``latent_dist`` in W+ (``metrics.latent_dist``, per-layer L2
                             norms: the space the paper inverts into, so a code distance
                             quoted from the paper is of this kind), and
                             ``style_dist`` in style space (``metrics.style_dist``, after each
                             layer's affine map: what the generator can tell apart). They
                             differ where a layer sees only part of w — the smoke models'
                             ≤32-channel layers see ≤32 of its 512 dimensions, and the rest of
                             W+ keeps its start, dominating ``latent_dist`` for every variant;
   editing (Table 3)         the edit direction e, strength ``edit_strength``, added to
                             the inverted codes and to the true codes; the two renderings
                             (each with its own noise) are compared: ``edit_mse``, ``edit_lpips``;
   morphing (Table 5)        codes interpolated between the first and the last frame at
                             λ = 1/4, 1/2, 3/4, inverted vs true: ``morph_mse``, ``morph_lpips``;
   ablation (Tables 6, 7)    the variants side by side.
   noise schedule            with ``plus``, a row ``plus (sequential)`` (or ``(joint)``): Ours++
                             with the noise optimised after the codes, as Image2StyleGAN++ does
   precision                 on a GPU with ``invert.precision: bf16``, every variant runs once
                             more in fp32 (rows "<variant> (fp32)"): what bf16 costs.
   pivotal tuning            ``pti`` among the variants: a post-step, not an inversion. Each
                             sequence (a "video" of T frames) gets its own copy of the generator,
                             tuned with the config's ``pti:`` settings (``ciinv.inversion.pti``) on the codes
                             of ``full`` (or, without ``full`` in the list, of the configured
                             ``invert.variant``, which then runs too); the row renders those same
                             codes with the tuned copy, weights rounded to fp16 as the workflow
                             saves them. Its edit and morph columns compare against the truth
                             edited with the *original* generator: what PTI costs in editability
                             next to what it gains in reconstruction. ``steps``/``seconds``: the
                             tuning's alone.

Outputs in the chosen folder: ``synth.csv`` (one row per variant and sequence), ``synth.md``
(means per variant, like the paper's tables) and ``synth.png`` (the first sequence: inputs,
true edit, then reconstruction and edit per variant). LPIPS columns appear when the LPIPS
weights are present (``ciinv models fetch lpips-0.1.4-wheel``) and fit the configured VGG16;
otherwise the run says why and leaves them out rather than reporting a stand-in.

The generator's resolution comes from its checkpoint; to shrink a run on a CPU, lower N and
the steps, or use the smoke models (``ciinv smoke-models DIR --resolution 32``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ciinv import metrics, models
from ciinv.bench.common import load_lpips, model_path, random_noise, render, write_grid
from ciinv.bench.tables import VARIANT_LABELS, arrow, markdown_table, mean_cell, write_csv
from ciinv.errors import CiinvError
from ciinv.gpu import pick_device, uses_bf16
from ciinv.io.files import atomic_path
from ciinv.inversion.optimizer import invert_windows
from ciinv.inversion.pti import (
    PerceptualDistance,
    round_to_half,
    tune_generator,
    tuned_parameter_names,
)
from ciinv.inversion.settings import InvertSettings, PTISettings
from ciinv.models import registry
from ciinv.models.catalogue import LPIPS_MODEL

log = logging.getLogger(__name__)

VARIANT_ORDER = ("i2s", "no_mac", "no_icc", "full", "plus")
POST_STEPS = ("pti",)  # rows that start from an inversion variant's codes (module docstring)
ALPHA_RANGE = 3.0
TRUTH_NOISE = ("random", "constant")  # how the true frames are rendered (module docstring, step 3)
MORPH_STEPS = (0.25, 0.5, 0.75)
DEFAULT_N = 100

# --------------------------------------------------------------------------------------------
# Sequences with known codes


@torch.no_grad()
def sample_sequences(generator, n: int, window: int, seed: int = 0, truncation: float = 1.0,
                     directions: list[tuple[str, torch.Tensor]] | None = None,
                     truth_noise: str = "random") -> dict:
    """Ground truth for ``n`` sequences of ``window`` frames, on the CPU.

    directions: named directions [(name, [L, D]), ...], at least two: sequence i moves along
    directions[i mod K] and its edit is directions[(i + 1) mod K]. None: a random unit W
    direction per sequence and another per edit, broadcast over the layers.
    truth_noise: "random" (one set of N(0, 1) maps per sequence) or "constant" (None: the
    generator's own maps). Everything is drawn from one stream seeded with ``seed``.

    Returns {'codes' [n, T, L, D]: every frame's W+ code, 'w' [n, D], 'direction' [n, L, D],
    'alpha' [n, T] sorted in [−3, 3], 'edit' [n, L, D], 'direction_name' and 'edit_name' [n]
    lists of str, 'noise': list of [n, 1, r, r] per noise map, or None}.
    """
    if truth_noise not in TRUTH_NOISE:
        raise CiinvError(f"truth noise {truth_noise!r} is not one of {list(TRUTH_NOISE)}")
    if directions is not None and len(directions) < 2:
        raise CiinvError("the semantic setting needs at least two directions: one to move along, another to edit")
    layers, dim = generator.num_ws, generator.w_dim
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.z_dim, generator=rng)
    w_avg = generator.w_avg.cpu()
    w = w_avg + truncation * (generator.mapping(z.to(generator.w_avg.device)).cpu() - w_avg)
    random_direction = F.normalize(torch.randn(n, dim, generator=rng), dim=1)
    alpha = torch.sort(torch.rand(n, window, generator=rng) * 2 * ALPHA_RANGE - ALPHA_RANGE, dim=1).values
    random_edit = F.normalize(torch.randn(n, dim, generator=rng), dim=1)
    if directions is None:
        direction = random_direction[:, None].expand(n, layers, dim)
        edit = random_edit[:, None].expand(n, layers, dim)
        direction_name = edit_name = ["random"] * n
    else:
        pick = [i % len(directions) for i in range(n)]
        direction = torch.stack([directions[k][1] for k in pick])
        edit = torch.stack([directions[(k + 1) % len(directions)][1] for k in pick])
        direction_name = [directions[k][0] for k in pick]
        edit_name = [directions[(k + 1) % len(directions)][0] for k in pick]
    codes = w[:, None, None, :] + alpha[:, :, None, None] * direction[:, None]  # [n, T, L, D]
    noise = random_noise(generator, n, rng) if truth_noise == "random" else None
    return {"codes": codes.contiguous(), "w": w, "direction": direction.contiguous(), "alpha": alpha,
            "edit": edit.contiguous(), "direction_name": direction_name, "edit_name": edit_name, "noise": noise}


def sequence_noise(noise: list[torch.Tensor] | None, sequences: range, repeats: int) -> list[torch.Tensor] | None:
    """Per-image noise for ``repeats`` images of each sequence in ``sequences``, from per-sequence
    maps ([n, 1, r, r] each) as ``sample_sequences`` returns them; None stays None."""
    if noise is None:
        return None
    return [maps[sequences.start : sequences.stop].repeat_interleave(repeats, dim=0) for maps in noise]


def load_directions(config: dict, generator, spec: str | list[str]) -> list[tuple[str, torch.Tensor]] | None:
    """Named directions for the semantic setting, each [L, D] float32 on the CPU, or None (random).

    spec: "random"; "auto" (the configured generator's InterFaceGAN directions when all of them
    are in models_dir, verified; else None, with the reason logged); or a list of direction
    specs as in ``edits: direction:`` (attribute names, registry names, files).
    """
    from ciinv.edits.stage import load_direction

    if spec == "random":
        return None
    models_dir = config["models_dir"]
    if spec == "auto":
        family = registry.generator_family(config["models"]["generator"], models_dir)
        names = [registry.direction_name(a, family) for a in registry.direction_attributes(family)]
        missing = [n for n in names if not registry.resolve(n, models_dir).is_file()]
        if missing:
            log.info(f"bench synth: random directions (the semantic setting needs {', '.join(missing)} in "
                     f"{models_dir}: `ciinv models fetch {' '.join(missing)}`)")
            return None
        spec = registry.direction_attributes(family)
    out = []
    for item in spec:
        name = registry.resolve_direction(item, config["models"]["generator"], models_dir)
        path = registry.require(name, models_dir)
        out.append((str(item), load_direction(path, generator.num_ws, generator.w_dim)))
    return out


def per_image_noise(result: dict, repeats: int) -> list[torch.Tensor] | None:
    """The `plus` variant's per-window noise maps repeated for each of a window's `repeats` images."""
    if result.get("noise") is None:
        return None
    return [maps.repeat_interleave(repeats, dim=0) for maps in result["noise"]]


def morph_codes(codes: torch.Tensor) -> torch.Tensor:
    """[B, T, L, D] -> [B, len(MORPH_STEPS), L, D]: (1 − λ)·first frame + λ·last frame."""
    lam = torch.tensor(MORPH_STEPS, dtype=codes.dtype).view(1, -1, 1, 1)
    return (1 - lam) * codes[:, :1] + lam * codes[:, -1:]


# --------------------------------------------------------------------------------------------
# The benchmark


def tune_and_render(generator, result: dict, real: torch.Tensor, edit: torch.Tensor, window: int,
                    settings: PTISettings, perceptual: PerceptualDistance, label: str = "pti"):
    """The ``pti`` row of a batch of B sequences: one tuned copy of ``generator`` per sequence.

    result: the base variant's inversion ({'codes' [B, T, L, D], 'noise'?}); real [B·T, 3, R, R]
    in [0, 1]; edit [B, 1, L, D]. Returns the tuned copies' (recon [B·T], edited [B·T], morphed
    [B·len(MORPH_STEPS)]) renderings of the unchanged codes, in [0, 1], each tuned copy with its
    weights rounded to fp16 (as ``ciinv pti`` saves them).
    """
    codes = result["codes"]
    frame_noise, morph_noise = per_image_noise(result, window), per_image_noise(result, len(MORPH_STEPS))
    recon, edited, morphed = [], [], []
    for b in range(codes.shape[0]):
        frames = slice(b * window, (b + 1) * window)
        noise = [m[frames] for m in frame_noise] if frame_noise is not None else None
        steps = slice(b * len(MORPH_STEPS), (b + 1) * len(MORPH_STEPS))
        tuned, _ = tune_generator(generator, codes[b], real[frames],
                                  settings, perceptual, label=f"{label}, sequence {b}",
                                  noise=(noise, torch.arange(window)) if noise is not None else None)
        round_to_half(tuned, tuned_parameter_names(tuned))
        recon.append(render(tuned, codes[b], noise))
        edited.append(render(tuned, codes[b] + edit[b], noise))
        morphed.append(render(tuned, morph_codes(codes[b : b + 1])[0],
                              [m[steps] for m in morph_noise] if morph_noise is not None else None))
        del tuned
    return torch.cat(recon), torch.cat(edited), torch.cat(morphed)


def bench_synth(config: dict, out_dir, n: int = DEFAULT_N, steps: int | None = None, variants=VARIANT_ORDER[:4],
                seed: int = 0, truncation: float = 1.0, edit_strength: float = 3.0, device: str = "auto",
                lpips_path=None, directions: str | list[str] = "auto", truth_noise: str = "random",
                pti_steps: int | None = None) -> list[dict]:
    """Run the synthesized-data protocol and write synth.csv, synth.md and synth.png to ``out_dir``.

    config: the workflow's merged config (``ciinv.config.load_config``); its ``invert:`` block gives every
    inversion setting (window T, lr, λs, offsets, ...), with ``steps`` overriding its steps.
    lpips_path: the lpips wheel or its vgg.pth (default: the registry file in models_dir).
    directions: "auto", "random" or a list of direction specs (``load_directions``).
    truth_noise: "random" or "constant" (module docstring, step 3).
    pti_steps: overrides the config's ``pti.steps`` for the ``pti`` row.
    Returns the CSV rows as dicts (one per variant and sequence; with random truth noise also
    the ``oracle`` rows: the true codes rendered with the generator's constant noise).
    """
    unknown = [v for v in variants if v not in VARIANT_ORDER + POST_STEPS]
    if unknown or not variants:
        raise CiinvError(f"bench synth: unknown variant(s) {unknown}; choose from {list(VARIANT_ORDER + POST_STEPS)}")
    if n < 1:
        raise CiinvError(f"bench synth: n must be at least 1, got {n}")
    base = InvertSettings.from_dict(config["invert"])
    if steps is not None:
        base.steps = int(steps)
    inversions = [v for v in variants if v in VARIANT_ORDER]
    pti_base = None
    if "pti" in variants:  # tuned on the codes of full, or of the configured variant
        pti_base = "full" if "full" in inversions else base.variant
        inversions += [pti_base] if pti_base not in inversions else []
        pti_settings = PTISettings.from_dict(config["pti"])
        if pti_steps is not None:
            pti_settings = pti_settings.replace(steps=int(pti_steps))
    per_variant = {v: InvertSettings.from_dict(base.to_dict() | {"variant": v}) for v in inversions}
    if "plus" in per_variant:  # Ours++ in the other noise schedule too: joint against sequential
        other = "sequential" if base.noise_schedule == "joint" else "joint"
        per_variant[f"plus ({other})"] = per_variant["plus"].replace(noise_schedule=other)

    device = pick_device(device)
    if uses_bf16(device, base.precision):  # what bf16 costs: every variant once more in fp32, rows "<variant> (fp32)"
        per_variant |= {f"{v} (fp32)": s.replace(precision="fp32") for v, s in list(per_variant.items())}
    generator = models.load_generator(model_path(config, "generator")).to(device)
    vgg_path = model_path(config, "vgg16")
    needs_flow = any(s.loss_config().use_icc for s in per_variant.values())
    flow_net = models.load_flow(model_path(config, "flow")).to(device).eval() if needs_flow else None
    needs_vgg = base.loss_config().use_perceptual or (pti_base is not None and pti_settings.perceptual == "vgg")
    vgg = models.load_vgg16(vgg_path).to(device) if needs_vgg else None
    lpips = load_lpips(config, vgg_path, lpips_path)
    lpips = lpips.to(device) if lpips is not None else None
    # init e4e: every window starts from the encoder's codes of its frames (models.encoder).
    encoder = models.load_encoder(model_path(config, "encoder")).to(device) if base.init == "e4e" else None
    for net in (generator, flow_net, vgg, encoder):
        if net is not None:
            net.requires_grad_(False)
    pti_perceptual = None
    if pti_base is not None:
        if pti_settings.perceptual == "vgg":
            pti_perceptual = PerceptualDistance("vgg", vgg, pti_settings.perceptual_size)
        elif lpips is None:
            raise CiinvError("bench synth: the pti row tunes with pti.perceptual: lpips, whose weights are missing "
                             f"(`ciinv models fetch {LPIPS_MODEL}`); or set pti.perceptual: vgg in a config overlay")
        else:
            pti_perceptual = PerceptualDistance("lpips", lpips, pti_settings.perceptual_size)

    named = load_directions(config, generator, directions)
    truth = sample_sequences(generator, n, base.window, seed=seed, truncation=truncation, directions=named,
                             truth_noise=truth_noise)
    setting = (f"sequences along {', '.join(d[0] for d in named)}, each edited along the next" if named
               else "random directions")
    log.info(f"bench synth: {n} sequences of {base.window} frames, {generator.resolution}² generator, "
             f"{base.steps} steps, variants {', '.join(inversions)}; {setting}; truth noise {truth_noise}"
             + (f"; pti: {pti_settings.steps} steps on each sequence's {pti_base} codes" if pti_base else ""))

    rows: list[dict] = []
    grid: dict[str, torch.Tensor] = {}
    # Sequences inverted together; with 'auto', a fixed number (the memory probe is per video lane).
    chunk = base.windows_per_batch if base.windows_per_batch != "auto" else 8
    for start in range(0, n, chunk):
        idx = range(start, min(start + chunk, n))
        true_codes = truth["codes"][idx.start : idx.stop]  # [B, T, L, D]
        batch, window = true_codes.shape[:2]
        edit = edit_strength * truth["edit"][idx.start : idx.stop, None]  # [B, 1, L, D]
        true_noise = sequence_noise(truth["noise"], idx, window)
        real = render(generator, true_codes.flatten(0, 1), true_noise)  # [B·T, 3, R, R]
        true_edit = render(generator, (true_codes + edit).flatten(0, 1), true_noise)
        true_morph = render(generator, morph_codes(true_codes).flatten(0, 1),
                            sequence_noise(truth["noise"], idx, len(MORPH_STEPS)))
        if start == 0:
            grid["input"], grid["edit (truth)"] = real[:window].cpu(), true_edit[:window].cpu()

        def record(variant, codes, recon, edited, morphed, steps_taken, seconds):
            """Score one run's renderings ([B·T, ...], [B·T, ...], [B·len(MORPH_STEPS), ...]); add its rows.
            steps_taken: [B] steps each sequence's window took (the stop rule), or None (oracle)."""
            if start == 0 and variant != "oracle":
                grid[f"{variant}: recon"], grid[f"{variant}: edit"] = recon[:window].cpu(), edited[:window].cpu()
            scores = {"mse": metrics.mse(recon, real), "psnr": metrics.psnr(recon, real),
                      "edit_mse": metrics.mse(edited, true_edit), "morph_mse": metrics.mse(morphed, true_morph)}
            if lpips is not None:
                with torch.no_grad():
                    scores["lpips"] = lpips(recon, real)
                    scores["edit_lpips"] = lpips(edited, true_edit)
                    scores["morph_lpips"] = lpips(morphed, true_morph)
            for b, sample in enumerate(idx):
                row = {"variant": variant, "sample": sample,
                       "latent_dist": metrics.latent_dist(codes[b], true_codes[b]),
                       "style_dist": metrics.style_dist(codes[b], true_codes[b], generator.style_affines())}
                for name, values in scores.items():
                    per_sample = values.view(batch, -1)[b]  # the sequence's frames (or morph steps)
                    row[name] = per_sample.mean().item()
                row["steps"] = int(steps_taken[b]) if steps_taken is not None else 0
                row["seconds"] = seconds
                row["direction"], row["edit_direction"] = truth["direction_name"][sample], truth["edit_name"][sample]
                rows.append(row)
            log.info(f"{variant}: sequences {idx.start}-{idx.stop - 1} done, latent_dist "
                     f"{np.mean([r['latent_dist'] for r in rows[-batch:]]):.4f}, style_dist "
                     f"{np.mean([r['style_dist'] for r in rows[-batch:]]):.4f}, mse "
                     f"{np.mean([r['mse'] for r in rows[-batch:]]):.5f}")

        runs = [("oracle", None)] if truth["noise"] is not None else []
        inverted = {}
        for variant, settings in runs + list(per_variant.items()):
            began = time.perf_counter()
            if settings is None:  # the true codes with the constant noise every inversion starts from
                result = {"codes": true_codes}
            else:
                result = invert_windows(generator, vgg, flow_net if settings.loss_config().use_icc else None,
                                        real.view(batch, window, *real.shape[1:]), settings,
                                        label=f"{variant} sequences {idx.start}-{idx.stop - 1}", encoder=encoder)
            seconds = (time.perf_counter() - began) / batch
            inverted[variant] = result
            codes = result["codes"]  # [B, T, L, D] on the CPU
            frame_noise = per_image_noise(result, window)
            recon = render(generator, codes.flatten(0, 1), frame_noise)
            edited = render(generator, (codes + edit).flatten(0, 1), frame_noise)
            morphed = render(generator, morph_codes(codes).flatten(0, 1), per_image_noise(result, len(MORPH_STEPS)))
            record(variant, codes, recon, edited, morphed, result["steps"] if settings is not None else None, seconds)

        if pti_base is not None:
            began = time.perf_counter()
            result = inverted[pti_base]
            recon, edited, morphed = tune_and_render(generator, result, real, edit, window, pti_settings,
                                                     pti_perceptual, label=f"pti sequences {idx.start}-{idx.stop - 1}")
            record("pti", result["codes"], recon, edited, morphed, [pti_settings.steps] * batch,
                   (time.perf_counter() - began) / batch)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, _columns(rows), out_dir / "synth.csv")
    table = summary_table(rows, header=f"Synthesized sequences: {n} × {base.window} frames, at most {base.steps} steps, "
                          f"init {base.init}, "
                          f"generator {config['models']['generator']} ({generator.resolution}²), seed {seed}, "
                          f"truncation ψ = {truncation}, edit strength {edit_strength}; {setting}; truth rendered "
                          f"with {'random noise (one draw per sequence, seed ' + str(seed) + ')' if truth_noise == 'random' else 'the constant noise the inversions start from'}")
    with atomic_path(out_dir / "synth.md") as tmp:
        tmp.write_text(table)
    write_grid(grid, out_dir / "synth.png")
    log.info(f"bench synth: wrote {out_dir / 'synth.csv'}, {out_dir / 'synth.md'} and {out_dir / 'synth.png'}")
    return rows


# --------------------------------------------------------------------------------------------
# Reports


METRIC_COLUMNS = ("latent_dist", "style_dist", "mse", "psnr", "lpips", "edit_mse", "edit_lpips", "morph_mse", "morph_lpips",
                  "steps", "seconds")
LABEL_COLUMNS = ("direction", "edit_direction")  # what each sequence moved and was edited along


def _columns(rows: list[dict]) -> list[str]:
    """synth.csv's columns: ``variant, sample, latent_dist, <metrics>, <labels>`` (those present)."""
    present = {key for row in rows for key in row}
    return ["variant", "sample"] + [c for c in METRIC_COLUMNS + LABEL_COLUMNS if c in present]


def summary_table(rows: list[dict], header: str = "") -> str:
    """Markdown: the mean of every metric per variant (one line per variant, in run order)."""
    columns = [c for c in _columns(rows)[2:] if c not in LABEL_COLUMNS]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    head = ["variant"] + ["s / sequence" if c == "seconds" else "steps" if c == "steps" else f"{c} {arrow(c)}"
                          for c in columns]
    body = [[VARIANT_LABELS.get(variant, variant)]
            + [mean_cell([r[c] for r in rows if r["variant"] == variant and c in r]) for c in columns]
            for variant in variants]
    lines = [f"{header}\n" if header else "", *markdown_table(head, body)]
    return "\n".join(lines).lstrip("\n") + "\n"
