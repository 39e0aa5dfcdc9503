import numpy as np
import pytest
import torch

from ciinv.io.crops import CropWriter
from ciinv.io.codes import read_frame_noise
from ciinv.errors import CiinvError
from ciinv.inversion.invert import invert_shard
from ciinv.inversion.resume import resume_path
from ciinv.inversion.settings import InvertSettings
from ciinv.inversion.shards import merge_shards
from ciinv.models.stylegan2 import load_stylegan2_rosinality
from ciinv.inversion.objective import codes as mac_codes
from ciinv.dev.logs import log_messages
from ciinv.dev.tiny import (
    write_tiny_e4e,
    write_tiny_flownet2,
    write_tiny_stylegan2,
    write_tiny_vgg16,
)

FRAMES = 7  # window 3, stride 2: windows [0,3) [2,5) [4,7); 2 per shard -> 2 shards
SMALL = dict(window=3, stride=2, windows_per_shard=2, windows_per_batch=1, perceptual_size=32, seed=0)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    write_tiny_stylegan2(d / "g.pt", resolution=32, w_dim=64, n_mlp=2, max_channels=16)
    write_tiny_vgg16(d / "vgg.pth", width_divisor=16)
    write_tiny_flownet2(d / "flow.pth", width_divisor=16)
    write_tiny_e4e(d / "e4e.pt", num_ws=8, w_dim=64, generator=d / "g.pt")
    # The encoder is passed to every run; only init e4e reads it.
    return {"generator_path": d / "g.pt", "vgg_path": d / "vgg.pth", "flow_path": d / "flow.pth",
            "encoder_path": d / "e4e.pt"}


@pytest.fixture(scope="module")
def crops(tmp_path_factory, nets):
    """Aligned crops rendered from known codes: a random start plus a small step per frame."""
    d = tmp_path_factory.mktemp("crops")
    g = load_stylegan2_rosinality(nets["generator_path"])
    rng = torch.Generator().manual_seed(1)
    start = g.w_avg + 0.5 * torch.randn(g.num_ws, g.w_dim, generator=rng)
    step = 0.1 * torch.randn(1, g.w_dim, generator=rng)
    ws = torch.stack([start + k * step for k in range(FRAMES)])
    with torch.no_grad():
        images = ((g.synthesis(ws) + 1) / 2).clamp(0, 1)
    with CropWriter(d / "crops.mkv", FRAMES, images.shape[-1]) as writer:
        for image in images:
            writer.write((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return d / "crops.mkv"


def run(crops, nets, out, shard=0, **settings):
    invert_shard(crops, FRAMES, shard, InvertSettings(**{**SMALL, **settings}), out_path=out, device="cpu", **nets)
    return torch.load(out, weights_only=True)


def assert_mac(shard: dict) -> None:
    """Each frame's code is w_b plus the offsets before it (the MAC sum), up to the float16 rounding
    of the three stored tensors (half a step of each, 2⁻¹¹ of its size)."""
    codes, w_b, n_k = shard["codes"].float(), shard["w_b"].float(), shard["n_k"].float()
    scale = max(float(codes.abs().max()), float(w_b.abs().max())) + float(n_k.abs().sum(1).max())
    torch.testing.assert_close(codes, mac_codes(w_b, n_k), rtol=0, atol=3 * scale * 2.0**-11)


def test_inversion_lowers_the_loss_and_writes_the_documented_file(crops, nets, tmp_path):
    out = tmp_path / "shard_0000.pt"
    result = run(crops, nets, out, steps=40, windows_per_batch=2, lr=0.05, warm_start=False)
    n, T, L, D = 2, 3, 8, 64
    assert result["windows"] == [[0, 3], [2, 5]]
    assert result["w_b"].shape == (n, L, D)
    assert result["n_k"].shape == (n, T - 1, 1, D)
    assert result["codes"].shape == (n, T, L, D) and result["codes"].dtype == torch.float16  # stored as codes are
    assert result["w_b"].dtype == result["n_k"].dtype == torch.float16
    assert_mac(result)
    assert result["steps"].tolist() == [40, 40] and result["warm"].tolist() == [False, False]
    for name in ("total", "icc", "mse", "perceptual"):
        assert result["loss_history"][name].shape == (n, 40)
        assert result["loss_history"][name].dtype == torch.bfloat16
    total = result["loss_history"]["total"]
    assert torch.all(total[:, -1] < 0.5 * total[:, 0])
    assert torch.all(result["loss_history"]["icc"] > 0)
    assert result["settings"]["variant"] == "full" and result["generator"] == str(nets["generator_path"])
    assert not resume_path(out).exists()


@pytest.mark.parametrize("variant,offsets,n_k_layers", [("no_icc", "per_layer", 8), ("no_mac", "shared", 8),
                                                         ("i2s", "shared", 8)])
def test_variants_write_the_same_layout(crops, nets, tmp_path, variant, offsets, n_k_layers):
    result = run(crops, nets, tmp_path / "s.pt", shard=1, steps=2, variant=variant, offsets=offsets)
    assert result["windows"] == [[4, 7]]
    assert result["n_k"].shape == (1, 2, n_k_layers, 64)
    assert_mac(result)
    if variant != "no_mac":
        assert torch.all(result["loss_history"]["icc"] == 0)


class Kill(Exception):
    pass


# (variant, extra settings, kill points, first step each run reports). Shard 0 is one lane of two
# windows, the second warm-started from the first; one window per batch. Without the stop rule each
# window takes the cap of 8 steps (16 batch steps); with it (tolerance 1: stop at the first check,
# after 6 steps) 12. Snapshots every 3 batch steps: a kill after step 5 resumes after step 3, a kill
# after step 14 (second window) after step 12, after step 10 after step 9.
RESUME_CASES = [
    ("full", {}, [5, 14], [1, 4, 13]),
    ("plus", {"stop_patience": 2, "min_steps": 5, "stop_tolerance": 1.0}, [5, 10], [1, 4, 10]),
    # codes for 4 steps, then noise for 4: the first kill falls in the noise phase, after a snapshot in the codes'
    ("plus", {"noise_schedule": "sequential", "early_stop": False}, [5, 14], [1, 4, 13]),
    # the first window starts from the encoder's codes; a resumed one must not start it afresh
    ("full", {"init": "e4e"}, [5, 14], [1, 4, 13]),
]


@pytest.mark.parametrize("variant,extra,kills,firsts", RESUME_CASES)
def test_a_killed_job_resumes_and_ends_exactly_like_an_uninterrupted_one(crops, nets, tmp_path, variant, extra,
                                                                          kills, firsts):
    settings = InvertSettings(**SMALL, steps=8, checkpoint_every=3, variant=variant, **extra)
    whole = run(crops, nets, tmp_path / "whole.pt", **settings.to_dict())
    assert whole["warm"].tolist() == [False, True]
    assert whole["steps"].tolist() == ([6, 6] if "stop_tolerance" in extra else [8, 8])

    out = tmp_path / "resumed.pt"
    runs = []  # the batch steps reported by each run, in order

    def start(kill_at=None):
        reported = []
        runs.append(reported)

        def hook(steps_done):
            reported.append(steps_done)
            if steps_done == kill_at:
                raise Kill

        invert_shard(crops, FRAMES, 0, settings, out_path=out, device="cpu", on_step=hook,
                     **nets)

    for kill_at in kills:
        with pytest.raises(Kill):
            start(kill_at)
        assert resume_path(out).exists() and not out.exists()
    start()

    assert [reported[0] for reported in runs] == firsts
    resumed = torch.load(out, weights_only=True)
    assert not resume_path(out).exists()
    for key in ("w_b", "n_k", "codes", "steps", "warm"):
        assert torch.equal(resumed[key], whole[key]), key
    assert ("noise" in whole) == (variant == "plus")
    for resumed_map, whole_map in zip(resumed.get("noise", []), whole.get("noise", [])):
        assert torch.equal(resumed_map, whole_map)
    for name, history in whole["loss_history"].items():
        assert torch.equal(resumed["loss_history"][name], history), name


def test_a_resume_state_from_other_settings_is_not_used(crops, nets, tmp_path):
    out = tmp_path / "s.pt"

    def kill_after_3(steps_done):
        if steps_done == 3:
            raise Kill

    with pytest.raises(Kill):
        invert_shard(crops, FRAMES, 1, InvertSettings(**SMALL, steps=8, checkpoint_every=2), out_path=out,
                     device="cpu", on_step=kill_after_3, **nets)
    assert resume_path(out).exists()
    reported = []
    with log_messages() as messages:
        invert_shard(crops, FRAMES, 1, InvertSettings(**SMALL, steps=8, checkpoint_every=2, lr=0.02), out_path=out,
                     device="cpu", on_step=reported.append, **nets)
    assert reported[0] == 1  # started over
    assert any("other settings" in m for m in messages)
    assert not resume_path(out).exists()


def test_merge_blends_the_shards_into_one_code_per_frame(crops, nets, tmp_path):
    paths = [tmp_path / f"shard_{k:04d}.pt" for k in range(2)]
    shards = [run(crops, nets, p, shard=k, steps=2, variant="no_icc") for k, p in enumerate(paths)]
    merge_shards(paths, FRAMES, tmp_path / "latents.npy")
    latents = np.load(tmp_path / "latents.npy")
    assert latents.shape == (FRAMES, 8, 64) and latents.dtype == np.float16
    w0, w1 = shards[0]["codes"].float().numpy()  # windows [0,3), [2,5)
    (w2,) = shards[1]["codes"].float().numpy()  # window [4,7)
    np.testing.assert_array_equal(latents[0:2], w0[0:2])
    np.testing.assert_array_equal(latents[3], w1[1])
    np.testing.assert_array_equal(latents[5:7], w2[1:3])
    np.testing.assert_allclose(latents[2], (w0[2] + w1[0]) / 2, rtol=2.0**-11)  # blended in float32, stored float16
    # Window [4,7) starts a new lane (shard), cold: its first frame keeps the earlier chain's code.
    assert shards[1]["warm"].tolist() == [False] and shards[0]["warm"].tolist() == [False, True]
    np.testing.assert_array_equal(latents[4], w1[2])

    with pytest.raises(CiinvError, match="frame"):
        merge_shards(paths[:1], FRAMES, tmp_path / "partial.npy")
    assert not (tmp_path / "partial.npy").exists()


def test_plus_optimises_the_noise_and_fits_better_than_full(crops, nets, tmp_path):
    """Ours++: the same steps with the noise maps free reach a lower loss; the maps are stored in fp16."""
    full = run(crops, nets, tmp_path / "full.pt", shard=1, steps=20, lr=0.05)
    plus = run(crops, nets, tmp_path / "plus.pt", shard=1, steps=20, lr=0.05, variant="plus")  # loads weights_only
    assert "noise" not in full
    # Measured on this setup: plus ends about 20% lower; require 5%.
    assert plus["loss_history"]["total"][0, -1] < 0.95 * full["loss_history"]["total"][0, -1]

    constant = load_stylegan2_rosinality(nets["generator_path"]).noise_maps()
    assert len(plus["noise"]) == len(constant)
    for stored, start in zip(plus["noise"], constant):
        assert stored.dtype == torch.float16 and stored.shape == (1, 1, *start.shape[-2:])  # one set per window
    # The gradient reached the maps: they moved away from the generator's constant noise.
    assert any(not torch.equal(stored.float(), start.half().float()) for stored, start in zip(plus["noise"], constant))


def test_plus_merge_keeps_each_frames_heaviest_window_and_the_edit_renders_with_it(crops, nets, tmp_path):
    from ciinv.faces.render import load_renderer

    paths = [tmp_path / f"shard_{k:04d}.pt" for k in range(2)]
    shards = [run(crops, nets, p, shard=k, steps=2, variant="plus", lr=0.05) for k, p in enumerate(paths)]
    merge_shards(paths, FRAMES, tmp_path / "latents.npy")
    stored = torch.load(tmp_path / "noise.pt", weights_only=True)
    # Windows [0,3) [2,5) [4,7), weights 1 2 1: the shared frames 2 and 4 go to the earlier window.
    assert stored["frame_window"].tolist() == [0, 0, 0, 1, 1, 2, 2]
    windows = [m for m in shards[0]["noise"][0]] + [m for m in shards[1]["noise"][0]]
    assert all(torch.equal(stored["noise"][0][w], windows[w]) for w in range(3))

    generator = load_stylegan2_rosinality(nets["generator_path"])
    rendered = load_renderer(tmp_path / "latents.npy", generator, tmp_path / "noise.pt").render(range(FRAMES))
    codes = torch.from_numpy(np.load(tmp_path / "latents.npy")).float()
    frame = 3  # window 1
    with torch.no_grad():
        image = generator.synthesis(codes[frame : frame + 1], noise=[m[1:2].float() for m in stored["noise"]])
    expected = ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    # Up to one level off where a value sits at a rounding edge (frames are rendered in batches).
    actual = rendered[frame].astype(int)
    assert np.abs(actual - expected.astype(int)).max() <= 1 and np.mean(actual != expected) < 0.01

    # Merging shards of another variant replaces the stale maps with a file that holds none.
    paths = [tmp_path / f"full_{k:04d}.pt" for k in range(2)]
    for k, p in enumerate(paths):
        run(crops, nets, p, shard=k, steps=1)
    merge_shards(paths, FRAMES, tmp_path / "latents.npy")
    assert read_frame_noise(tmp_path / "noise.pt", FRAMES) == (None, None)
    with pytest.raises(CiinvError, match="different variants"):
        merge_shards([tmp_path / "shard_0000.pt", paths[1]], FRAMES, tmp_path / "mixed.npy")


def test_missing_or_short_crops_name_the_file_and_frame(crops, nets, tmp_path):
    with pytest.raises(CiinvError, match=r"crops.mkv: no such crops file; rerun the align stage"):
        run(tmp_path / "crops.mkv", nets, tmp_path / "s.pt", steps=1)
    short = tmp_path / "short.mkv"
    with CropWriter(short, 3, 32) as writer:
        for _ in range(3):
            writer.write(np.full((32, 32, 3), 9, np.uint8))
    with pytest.raises(CiinvError, match=r"short.mkv: holds 3 crops, frame \d+ wanted"):
        run(short, nets, tmp_path / "s.pt", steps=1)


def test_clip_shorter_than_a_window_names_the_video(crops, nets, tmp_path):
    with pytest.raises(CiinvError, match="clip one.mp4.*2 frame"):
        invert_shard(crops, 2, 0, InvertSettings(**SMALL), out_path=tmp_path / "s.pt", device="cpu",
                     source="clip one.mp4", **nets)
    with pytest.raises(CiinvError, match="shard 2 does not exist"):
        invert_shard(crops, FRAMES, 2, InvertSettings(**SMALL), out_path=tmp_path / "s.pt", device="cpu", **nets)


def test_init_e4e_needs_an_encoder_that_fits_the_generator(crops, nets, tmp_path):
    others = {k: v for k, v in nets.items() if k != "encoder_path"}
    with pytest.raises(CiinvError, match="no encoder was given"):
        invert_shard(crops, FRAMES, 0, InvertSettings(**SMALL, init="e4e"), out_path=tmp_path / "s.pt", device="cpu",
                     **others)
    wrong = tmp_path / "e4e-18.pt"
    write_tiny_e4e(wrong, num_ws=10, w_dim=64)
    with pytest.raises(CiinvError, match="e4e-18.pt: the encoder makes codes of 10 x 64"):
        invert_shard(crops, FRAMES, 0, InvertSettings(**SMALL, init="e4e"), out_path=tmp_path / "s.pt", device="cpu",
                     **others, encoder_path=wrong)


def test_settings_from_config():
    s = InvertSettings.from_dict({"steps": 10, "eps": "1e-8", "betas": [0.5, 0.9], "variant": "no_mac"})
    assert (s.steps, s.eps, s.betas, s.variant) == (10, 1e-8, (0.5, 0.9), "no_mac")
    assert InvertSettings.from_dict(s.to_dict()) == s
    with pytest.raises(CiinvError, match="unknown key.*stpes"):
        InvertSettings.from_dict({"stpes": 10})
    with pytest.raises(CiinvError, match="variant"):
        InvertSettings.from_dict({"variant": "best"})
    assert InvertSettings.from_dict({"variant": "plus"}).loss_config().use_icc
    with pytest.raises(CiinvError, match="steps"):
        InvertSettings.from_dict({"steps": 2.5})
