"""StyleGAN v1 (the seed repo's converted .pt): loader, layout, exactness, and the w_avg cache.

The references below are written from the published maths (StyleGAN, Karras et al. 2019), not from our
module: the fused up-conv as a per-pixel scatter with its padded-and-summed 4x4 kernel built in
numpy, nearest upsampling by repetition, scipy's 2-D filters, and torch's own
nn.InstanceNorm2d for the epilogue.
"""

from __future__ import annotations

import contextlib
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d, correlate2d

from ciinv.errors import CiinvError
from ciinv.models import stylegan1
from ciinv.models.stylegan1 import (
    NOISE_SEED,
    GeneratorV1,
    LayerEpilogue,
    UpConv2d,
    load_stylegan1,
    w_avg_sidecar,
)
from ciinv.dev.tiny import write_tiny_stylegan1

BLUR = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
SQRT2 = math.sqrt(2.0)
FFHQ_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    """128 px, so the last block uses the fused up-conv and the others nearest + conv."""
    path = tmp_path_factory.mktemp("sg1") / "tiny.pt"
    write_tiny_stylegan1(path, resolution=128, w_dim=64, max_channels=8, seed=0, n_mlp=3)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return load_stylegan1(tiny_path)


def random_ws(G, n=2, seed=1):
    """Distinct w per layer, so a wrong W+ index cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    return G.mapping(torch.randn(n * G.num_ws, G.z_dim, generator=g)).view(n, G.num_ws, G.w_dim)


def expected_keys(resolution: int, n_mlp: int) -> set[str]:
    """The key list of the seed repo's converted checkpoint, spelled out."""
    keys = {f"g_mapping.dense{i}.{p}" for i in range(n_mlp) for p in ("weight", "bias")}
    keys |= {"g_synthesis.torgb.weight", "g_synthesis.torgb.bias"}
    per_epi = ("top_epi.noise.weight", "style_mod.lin.weight", "style_mod.lin.bias")
    epi = [f"epi{e}.{k}" for e in (1, 2) for k in per_epi]
    b = "g_synthesis.blocks.4x4."
    keys |= {b + "const", b + "bias", b + "conv.weight", b + "conv.bias"} | {b + e for e in epi}
    r = 8
    while r <= resolution:
        b = f"g_synthesis.blocks.{r}x{r}."
        keys |= {b + k for k in ("conv0_up.weight", "conv0_up.bias", "conv0_up.intermediate.kernel",
                                 "conv1.weight", "conv1.bias")}
        keys |= {b + e for e in epi}
        r *= 2
    return keys


# ---------------------------------------------------------------------------------------------
# Naive references (float64)


def ref_fused_up_plane(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """TF's fused upscale2d_conv2d by its definition, one sample, before blur and bias.

    x [Ci, H, W], weight [Co, Ci, 3, 3] (scaled). The 3x3 kernel is zero-padded to 5x5 and four
    one-pixel-shifted copies summed into a 4x4 kernel K; every input pixel (i, j) then adds
    K[:, :, a, b] @ x[:, i, j] to output pixel (2i + a - 1, 2j + b - 1) (stride 2, padding 1).
    """
    co, ci = weight.shape[:2]
    padded = np.zeros((co, ci, 5, 5))
    padded[:, :, 1:4, 1:4] = weight
    k = np.zeros((co, ci, 4, 4))
    for a in range(4):
        for b in range(4):
            k[:, :, a, b] = (padded[:, :, a, b] + padded[:, :, a + 1, b]
                             + padded[:, :, a, b + 1] + padded[:, :, a + 1, b + 1])
    h, w = x.shape[1:]
    out = np.zeros((co, 2 * h, 2 * w))
    for i in range(h):
        for j in range(w):
            for a in range(4):
                for b in range(4):
                    y, xx = 2 * i + a - 1, 2 * j + b - 1
                    if 0 <= y < 2 * h and 0 <= xx < 2 * w:
                        out[:, y, xx] += k[:, :, a, b] @ x[:, i, j]
    return out


def ref_nearest_conv_plane(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Nearest 2x (each pixel repeated 2x2), then 3x3 cross-correlation with zero padding 1."""
    u = x.repeat(2, axis=1).repeat(2, axis=2)
    return np.array([sum(correlate2d(u[i], weight[o, i], mode="same") for i in range(x.shape[0]))
                     for o in range(weight.shape[0])])


def ref_blur_bias(y: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.array([convolve2d(y[c], BLUR, mode="same") + bias[c] for c in range(y.shape[0])])


def ref_mapping(sd, z):
    x = z.double()
    x = x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + 1e-8)
    i = 0
    while f"g_mapping.dense{i}.weight" in sd:
        weight, bias = sd[f"g_mapping.dense{i}.weight"].double(), sd[f"g_mapping.dense{i}.bias"].double()
        x = F.leaky_relu(x @ (weight * SQRT2 / math.sqrt(weight.shape[1]) * 0.01).T + bias * 0.01, 0.2)
        i += 1
    return x


def ref_epilogue(x, w, sd, prefix, noise):
    """noise -> LeakyReLU(0.2) -> nn.InstanceNorm2d (torch's, eps 1e-5) -> x * (s0 + 1) + s1."""
    x = x + sd[prefix + "top_epi.noise.weight"].double().view(1, -1, 1, 1) * noise.double()
    x = F.leaky_relu(x, 0.2)
    x = torch.nn.InstanceNorm2d(x.shape[1])(x)
    lin_w, lin_b = sd[prefix + "style_mod.lin.weight"].double(), sd[prefix + "style_mod.lin.bias"].double()
    s = w.double() @ (lin_w / math.sqrt(lin_w.shape[1])).T + lin_b  # [N, 2C]: gain 1, lr_mul 1
    c = x.shape[1]
    return x * (s[:, :c, None, None] + 1.0) + s[:, c:, None, None]


def ref_conv(x, weight, bias):
    weight = weight.double()
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    return F.conv2d(x, weight * SQRT2 / math.sqrt(fan_in), bias.double(), padding=weight.shape[-1] // 2)


def ref_up(x, weight, bias, out_res):
    """Up-conv via the identity fused == nearest 2x + conv with the flipped kernel (checked below)."""
    weight = weight.double() * SQRT2 / math.sqrt(weight.shape[1] * 9)
    if out_res >= 128:
        weight = weight.flip([2, 3])
    x = F.conv2d(x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3), weight, padding=1)
    blur = torch.from_numpy(BLUR).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(x, blur, padding=1, groups=x.shape[1]) + bias.double().view(1, -1, 1, 1)


def ref_synthesis(sd, ws, noises):
    ws = ws.double()
    b = "g_synthesis.blocks.4x4."
    x = (sd[b + "const"].double() + sd[b + "bias"].double().view(1, -1, 1, 1)).expand(ws.shape[0], -1, -1, -1)
    x = ref_epilogue(x, ws[:, 0], sd, b + "epi1.", noises[0])
    x = ref_conv(x, sd[b + "conv.weight"], sd[b + "conv.bias"])
    x = ref_epilogue(x, ws[:, 1], sd, b + "epi2.", noises[1])
    i, r = 1, 8
    while f"g_synthesis.blocks.{r}x{r}.conv1.weight" in sd:
        b = f"g_synthesis.blocks.{r}x{r}."
        x = ref_up(x, sd[b + "conv0_up.weight"], sd[b + "conv0_up.bias"], r)
        x = ref_epilogue(x, ws[:, 2 * i], sd, b + "epi1.", noises[2 * i])
        x = ref_conv(x, sd[b + "conv1.weight"], sd[b + "conv1.bias"])
        x = ref_epilogue(x, ws[:, 2 * i + 1], sd, b + "epi2.", noises[2 * i + 1])
        i, r = i + 1, 2 * r
    rgb_w = sd["g_synthesis.torgb.weight"].double()
    return F.conv2d(x, rgb_w / math.sqrt(rgb_w.shape[1]), sd["g_synthesis.torgb.bias"].double())  # gain 1


# ---------------------------------------------------------------------------------------------
# Pieces


@pytest.mark.parametrize("fused", [True, False])
def test_up_conv_matches_per_pixel_definition(fused):
    torch.manual_seed(0)
    layer = UpConv2d(3, 4, fused=fused).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    ours = layer(x)
    weight = (layer.weight * SQRT2 / math.sqrt(3 * 9)).detach().numpy()
    plane = ref_fused_up_plane if fused else ref_nearest_conv_plane
    ref = np.stack([ref_blur_bias(plane(x[n].numpy(), weight), layer.bias.detach().numpy()) for n in range(2)])
    assert ours.shape == (2, 4, 10, 8)
    np.testing.assert_allclose(ours.detach().numpy(), ref, rtol=1e-12, atol=1e-12)


def test_fused_up_conv_is_nearest_upsampling_and_the_flipped_kernel():
    """The identity ref_synthesis relies on; also shows fused and non-fused really differ."""
    rng = np.random.default_rng(0)
    x, weight = rng.standard_normal((3, 4, 6)), rng.standard_normal((2, 3, 3, 3))
    fused = ref_fused_up_plane(x, weight)
    np.testing.assert_allclose(fused, ref_nearest_conv_plane(x, weight[:, :, ::-1, ::-1]), rtol=1e-12, atol=1e-12)
    assert not np.allclose(fused, ref_nearest_conv_plane(x, weight))


def test_epilogue_order_and_instance_norm_eps():
    torch.manual_seed(0)
    epi = LayerEpilogue(4, 8).double()
    with torch.no_grad():
        epi.top_epi.noise.weight.copy_(torch.tensor([0.0, 0.5, -0.3, 0.2]))
        epi.style_mod.lin.bias.normal_()
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    x[:, 0] = 2.0 + 1e-4 * x[:, 0]  # nearly constant, positive channel: eps 1e-5 vs 1e-8 shows here
    w = torch.randn(3, 8, dtype=torch.float64)
    noise = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    sd = {"e." + k: v for k, v in epi.state_dict().items()}
    ours = epi(x, w, noise)
    torch.testing.assert_close(ours, ref_epilogue(x, w, sd, "e.", noise), rtol=1e-10, atol=1e-10)
    assert ours[:, 0].std() < 0.5 * ours[:, 1].std()  # with eps 1e-8 channel 0 would be unit-normalised too


# ---------------------------------------------------------------------------------------------
# Whole network


def test_tiny_checkpoint_has_the_seed_layout(tmp_path):
    path = tmp_path / "g.pt"
    write_tiny_stylegan1(path)  # defaults: 32 px, w_dim 512, 8 mapping layers
    state = torch.load(path, weights_only=True)
    assert set(state) == expected_keys(32, 8)  # flat: no 'g_ema', no mean latent
    assert state["g_mapping.dense7.weight"].shape == (512, 512)
    assert state["g_synthesis.blocks.4x4.const"].shape == (1, 32, 4, 4)
    assert state["g_synthesis.blocks.32x32.epi2.style_mod.lin.weight"].shape == (64, 512)
    assert state["g_synthesis.blocks.16x16.epi1.top_epi.noise.weight"].shape == (32,)
    assert state["g_synthesis.torgb.weight"].shape == (3, 32, 1, 1)
    kernel = state["g_synthesis.blocks.8x8.conv0_up.intermediate.kernel"]
    torch.testing.assert_close(kernel, torch.from_numpy(BLUR).float().view(1, 1, 3, 3))


def test_ffhq_1024_module_has_the_checkpoint_keys():
    G = GeneratorV1(1024, FFHQ_CHANNELS, w_dim=512, n_mlp=8)
    sd = G.state_dict()
    assert set(sd) == expected_keys(1024, 8) and len(sd) == 116
    assert sum(p.numel() for p in G.parameters()) == 26_212_019
    assert G.num_ws == 18 and len(G.noise_maps()) == 18
    assert sd["g_synthesis.blocks.64x64.conv0_up.weight"].shape == (256, 512, 3, 3)
    assert sd["g_synthesis.blocks.1024x1024.epi1.style_mod.lin.weight"].shape == (32, 512)
    assert sd["g_synthesis.torgb.weight"].shape == (3, 16, 1, 1)
    fused = {name: block.conv0_up.fused for name, block in G.g_synthesis.blocks.items() if name != "4x4"}
    assert fused == {f"{r}x{r}": r >= 128 for r in (8, 16, 32, 64, 128, 256, 512, 1024)}
    assert "w_avg" not in sd and not any(k.startswith("noises") for k in sd)


@pytest.mark.parametrize("resolution,w_dim,n_mlp", [(16, 32, 2), (64, 48, 1)])
def test_architecture_is_read_from_the_checkpoint(tmp_path, resolution, w_dim, n_mlp):
    path = tmp_path / "g.pt"
    write_tiny_stylegan1(path, resolution=resolution, w_dim=w_dim, max_channels=8, seed=3, n_mlp=n_mlp)
    G = load_stylegan1(path)
    assert (G.resolution, G.w_dim, G.z_dim, G.n_mlp) == (resolution, w_dim, w_dim, n_mlp)
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2
    assert G.w_avg.shape == (w_dim,)
    assert G(random_ws(G)).shape == (2, 3, resolution, resolution)


def test_mapping_matches_reference(tiny, tiny_path):
    sd = torch.load(tiny_path, weights_only=True)
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(tiny.mapping(z).double(), ref_mapping(sd, z), rtol=1e-5, atol=1e-5)


def test_synthesis_matches_naive_reference(tiny, tiny_path):
    sd = torch.load(tiny_path, weights_only=True)
    ws = random_ws(tiny, n=2).double()
    ref = ref_synthesis(sd, ws, tiny.noise_maps())
    G64 = load_stylegan1(tiny_path).double()
    torch.testing.assert_close(G64.synthesis(ws), ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(tiny.synthesis(ws.float()).double(), ref, rtol=1e-4, atol=1e-4)


def test_images_deterministic_and_roughly_in_range(tiny):
    ws = random_ws(tiny, n=3)
    a, b = tiny(ws), tiny.synthesis(ws)
    assert a.shape == (3, 3, 128, 128)
    assert torch.equal(a, b)  # constant noise: same code, same image
    assert torch.isfinite(a).all()
    assert (a.abs() <= 1).float().mean() > 0.9 and a.std() > 0.1  # random weights: some outliers, no collapse
    assert not torch.equal(a[0], a[1])


def test_gradient_reaches_every_layer_of_ws_and_no_weight(tiny):
    assert not any(p.requires_grad for p in tiny.parameters()) and not tiny.training
    ws = random_ws(tiny, n=2).requires_grad_(True)
    tiny(ws).square().mean().backward()
    grad = ws.grad.abs().sum(dim=(0, 2))
    assert torch.isfinite(ws.grad).all() and (grad > 0).all()  # every W+ layer is used
    assert all(p.grad is None for p in tiny.parameters())


def test_w_plus_index_is_two_per_block(tiny):
    """Changing w[2i] or w[2i+1] changes block i onwards, never the blocks before it."""
    ws = random_ws(tiny, n=1)
    for index in (0, 5, 11):
        captured = {}
        hooks = [blk.register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
                 for name, blk in tiny.g_synthesis.blocks.items()]
        tiny(ws)
        before = dict(captured)
        bumped = ws.clone()
        bumped[:, index] += 1.0
        tiny(bumped)
        for h in hooks:
            h.remove()
        changed = [name for name in before if not torch.equal(before[name], captured[name])]
        first = 4 * 2 ** (index // 2)
        assert changed and changed[0] == f"{first}x{first}"


def test_noise_maps_and_override(tiny):
    maps = tiny.noise_maps()
    assert [tuple(m.shape) for m in maps] == [(1, 1, r, r) for r in (4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128)]
    rng = torch.Generator().manual_seed(NOISE_SEED)  # documented: one randn per map, layer order
    assert all(torch.equal(m, torch.randn(m.shape, generator=rng)) for m in maps)

    ws = random_ws(tiny, n=2)
    assert torch.equal(tiny(ws, noise=[m.clone() for m in maps]), tiny(ws))
    assert not torch.allclose(tiny(ws, noise=[torch.zeros_like(m) for m in maps]), tiny(ws))
    per_sample = [m.expand(2, -1, -1, -1).clone().requires_grad_(True) for m in maps]
    tiny(ws, noise=per_sample).sum().backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in per_sample)
    with pytest.raises(ValueError, match="noise must hold 12"):
        tiny(ws, noise=maps[:-1])


def test_missing_blur_kernels_are_recreated(tiny, tiny_path, tmp_path):
    state = torch.load(tiny_path, weights_only=True)
    stripped = {k: v for k, v in state.items() if not k.endswith(".kernel")}
    assert len(stripped) == len(state) - 5  # 8..128 px
    path = tmp_path / "stripped.pt"
    torch.save(stripped, path)
    ws = random_ws(tiny)
    assert torch.equal(load_stylegan1(path)(ws), tiny(ws))


# ---------------------------------------------------------------------------------------------
# The mean latent and its sidecar cache


@pytest.fixture
def small_path(tmp_path):
    path = tmp_path / "small.pt"
    write_tiny_stylegan1(path, resolution=8, w_dim=32, max_channels=4, n_mlp=2, seed=5)
    return path


def test_w_avg_is_estimated_and_cached(small_path):
    sidecar = w_avg_sidecar(small_path)
    assert sidecar.name == "small.pt.w_avg.pt" and not sidecar.exists()
    G = load_stylegan1(small_path)
    z = torch.randn(10_000, 32, generator=torch.Generator().manual_seed(0))  # documented: 10k z, seed 0
    torch.testing.assert_close(G.w_avg, G.mapping(z).mean(dim=0), rtol=1e-4, atol=1e-5)

    cached = torch.load(sidecar, weights_only=True)
    stat = small_path.stat()
    assert cached["checkpoint_size"] == stat.st_size and cached["checkpoint_mtime_ns"] == stat.st_mtime_ns
    assert torch.equal(cached["w_avg"], G.w_avg)
    assert sorted(p.name for p in small_path.parent.iterdir()) == ["small.pt", "small.pt.w_avg.pt"]  # no temp left


def test_w_avg_cache_is_reused(small_path, monkeypatch):
    load_stylegan1(small_path)
    sidecar = w_avg_sidecar(small_path)
    cached = torch.load(sidecar, weights_only=True)
    cached["w_avg"] = torch.full((32,), 7.0)  # a marker only the cache can produce
    torch.save(cached, sidecar)

    def no_estimate(self, *args, **kwargs):
        raise AssertionError("w_avg recomputed although the cache is valid")

    monkeypatch.setattr(GeneratorV1, "estimate_w_avg", no_estimate)
    assert torch.equal(load_stylegan1(small_path).w_avg, torch.full((32,), 7.0))


def test_w_avg_cache_is_invalidated_when_the_checkpoint_changes(small_path):
    first = load_stylegan1(small_path).w_avg.clone()
    old = small_path.stat()
    write_tiny_stylegan1(small_path, resolution=8, w_dim=32, max_channels=4, n_mlp=2, seed=6)
    os.utime(small_path, ns=(old.st_atime_ns, old.st_mtime_ns + 1_000_000_000))
    assert small_path.stat().st_size == old.st_size  # same shapes: only the mtime tells

    G = load_stylegan1(small_path)
    assert not torch.allclose(G.w_avg, first)
    torch.testing.assert_close(G.w_avg, G.estimate_w_avg())
    assert torch.equal(torch.load(w_avg_sidecar(small_path), weights_only=True)["w_avg"], G.w_avg)


def test_damaged_w_avg_cache_is_recomputed(small_path):
    expected = load_stylegan1(small_path).w_avg.clone()
    w_avg_sidecar(small_path).write_bytes(b"garbage")
    assert torch.equal(load_stylegan1(small_path).w_avg, expected)
    assert torch.equal(torch.load(w_avg_sidecar(small_path), weights_only=True)["w_avg"], expected)


def test_unwritable_folder_just_computes(small_path, monkeypatch):
    @contextlib.contextmanager
    def read_only(path):
        raise PermissionError(13, "Read-only file system", str(path))
        yield  # pragma: no cover

    # tests may run as root, where chmod does not stop writes: fail the write itself
    monkeypatch.setattr(stylegan1, "atomic_path", read_only)
    G = load_stylegan1(small_path)
    assert not w_avg_sidecar(small_path).exists()
    torch.testing.assert_close(G.w_avg, G.estimate_w_avg())


# ---------------------------------------------------------------------------------------------
# Errors


def test_missing_parameter_is_named(tiny_path, tmp_path):
    state = torch.load(tiny_path, weights_only=True)
    del state["g_synthesis.blocks.16x16.epi2.top_epi.noise.weight"]
    del state["g_mapping.dense2.bias"]
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(CiinvError, match=r"broken\.pt.*2 missing key\(s\) \(e\.g\. g_mapping\.dense2\.bias, "
                                         r"g_synthesis\.blocks\.16x16\.epi2\.top_epi\.noise\.weight"):
        load_stylegan1(path)


def test_missing_architecture_key_is_named(tiny_path, tmp_path):
    state = torch.load(tiny_path, weights_only=True)
    del state["g_synthesis.blocks.32x32.conv0_up.weight"]
    path = tmp_path / "gap.pt"
    torch.save(state, path)
    with pytest.raises(CiinvError, match=r"gap\.pt.*g_synthesis\.blocks\.32x32\.conv0_up\.weight"):
        load_stylegan1(path)


def test_wrong_shape_and_unexpected_key_are_named(tiny_path, tmp_path):
    state = torch.load(tiny_path, weights_only=True)
    state["g_synthesis.blocks.8x8.conv1.bias"] = torch.zeros(7)
    state["g_synthesis.extra.weight"] = torch.zeros(1)
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(CiinvError, match=r"odd\.pt.*g_synthesis\.extra\.weight.*8x8\.conv1\.bias \[7\]"):
        load_stylegan1(path)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(CiinvError, match=r"absent\.pt.*not found"):
        load_stylegan1(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CiinvError, match=r"junk\.pt.*cannot be read"):
        load_stylegan1(junk)
    other = tmp_path / "stylegan2.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "latent_avg": torch.zeros(2)}, other)
    with pytest.raises(CiinvError, match=r"stylegan2\.pt.*g_mapping"):
        load_stylegan1(other)
    assert not w_avg_sidecar(other).exists()
