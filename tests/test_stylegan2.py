"""StyleGAN2 (rosinality .pt): loader, layout, and exactness against naive references.

The references below are written from the published maths (StyleGAN2, Karras et al. 2020), not from
our module: a per-sample loop for the modulated convs, scipy's true 2-D convolution on
explicitly zero-stuffed and padded arrays for upfirdn2d and the transposed up-conv.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d

from ciinv.errors import CiinvError
from ciinv.models.stylegan2 import (
    NOISE_SEED,
    Generator,
    ModulatedConv2d,
    generator_from_state_dict,
    load_stylegan2_rosinality,
    upfirdn2d,
)
from ciinv.dev.tiny import write_tiny_stylegan2

BLUR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0 * 4.0
SQRT2 = math.sqrt(2.0)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("sg2") / "tiny.pt"
    write_tiny_stylegan2(path, resolution=32, w_dim=512, n_mlp=2, max_channels=16, seed=0)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return load_stylegan2_rosinality(tiny_path)


def random_ws(G, n=2, seed=1):
    """Distinct w per layer, so a wrong W+ index cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    return G.mapping(torch.randn(n * G.num_ws, G.z_dim, generator=g)).view(n, G.num_ws, G.w_dim)


# ---------------------------------------------------------------------------------------------
# Naive references (float64)


def ref_upfirdn(x: np.ndarray, kernel: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """One 2-D plane: zero stuffing, padding (negative = crop), true convolution, decimation."""
    h, w = x.shape
    u = np.zeros((h * up, w * up))
    u[::up, ::up] = x
    p0, p1 = pad
    u = np.pad(u, ((max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
    u = u[max(-p0, 0): u.shape[0] - max(-p1, 0), max(-p0, 0): u.shape[1] - max(-p1, 0)]
    return convolve2d(u, kernel, mode="valid")[::down, ::down]


def ref_upfirdn_nchw(x: torch.Tensor, kernel: np.ndarray, up=1, down=1, pad=(0, 0)) -> torch.Tensor:
    a = x.detach().double().numpy()
    out = [[ref_upfirdn(a[n, c], kernel, up, down, pad) for c in range(a.shape[1])] for n in range(a.shape[0])]
    return torch.from_numpy(np.array(out))


def ref_modconv(x, w, weight, mod_w, mod_b, demodulate=True, upsample=False):
    """Per-sample modulated conv. x [N,Ci,H,W], w [N,D], weight [1,Co,Ci,k,k] -> [N,Co,H',W']."""
    x, w, weight = x.double(), w.double(), weight[0].double()
    mod_w, mod_b = mod_w.double(), mod_b.double()
    c_out, c_in, k, _ = weight.shape
    outs = []
    for n in range(x.shape[0]):
        s = mod_w @ w[n] / math.sqrt(w.shape[1]) + mod_b  # [Ci]
        wn = weight / math.sqrt(c_in * k * k) * s.view(1, c_in, 1, 1)
        if demodulate:
            wn = wn / torch.sqrt((wn**2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        if not upsample:
            outs.append(F.conv2d(x[n : n + 1], wn, padding=k // 2)[0])
            continue
        # Transposed conv, stride 2 = zero stuffing between samples, then a full true convolution.
        xn, wn_np = x[n].numpy(), wn.numpy()
        h, wd = xn.shape[1:]
        stuffed = np.zeros((c_in, 2 * h - 1, 2 * wd - 1))
        stuffed[:, ::2, ::2] = xn
        y = np.array([sum(convolve2d(stuffed[i], wn_np[o, i], mode="full") for i in range(c_in)) for o in range(c_out)])
        y = np.array([ref_upfirdn(y[o], BLUR, 1, 1, (1, 1)) for o in range(c_out)])
        outs.append(torch.from_numpy(y))
    return torch.stack(outs)


def ref_mapping(sd, z):
    x = z.double()
    x = x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        weight, bias = sd[f"style.{i}.weight"].double(), sd[f"style.{i}.bias"].double()
        x = F.leaky_relu(x @ (weight * 0.01 / math.sqrt(weight.shape[1])).T + bias * 0.01, 0.2) * SQRT2
        i += 1
    return x


def ref_synthesis(sd, ws, noises, clamp=None, clipped=None):
    """``clamp``: NVlabs's conv_clamp, clipping each layer's output after bias, activation and gain,
    and each ToRGB's conv + bias before the skip is added. ``clipped`` (a dict), if given, gets
    the number of values each kind of clip ("conv", "rgb") changed."""
    ws = ws.double()

    def clip(x, kind):
        if clamp is None:
            return x
        if clipped is not None:
            clipped[kind] = clipped.get(kind, 0) + int((x.abs() > clamp).sum())
        return torch.clamp(x, -clamp, clamp)

    def styled(x, w, name, upsample=False):
        p = f"{name}.conv."
        x = ref_modconv(x, w, sd[p + "weight"], sd[p + "modulation.weight"], sd[p + "modulation.bias"],
                        upsample=upsample)
        x = x + sd[f"{name}.noise.weight"].double() * noises[name].double()
        return clip(F.leaky_relu(x + sd[f"{name}.activate.bias"].double().view(1, -1, 1, 1), 0.2) * SQRT2, "conv")

    def to_rgb(x, w, name, skip):
        p = f"{name}.conv."
        out = ref_modconv(x, w, sd[p + "weight"], sd[p + "modulation.weight"], sd[p + "modulation.bias"],
                          demodulate=False)
        out = clip(out + sd[f"{name}.bias"].double(), "rgb")
        return out if skip is None else out + ref_upfirdn_nchw(skip, BLUR, up=2, pad=(2, 1))

    x = sd["input.input"].double().expand(ws.shape[0], -1, -1, -1)
    x = styled(x, ws[:, 0], "conv1")
    rgb = to_rgb(x, ws[:, 1], "to_rgb1", None)
    k = 0
    while f"to_rgbs.{k}.bias" in sd:
        x = styled(x, ws[:, 2 * k + 1], f"convs.{2 * k}", upsample=True)
        x = styled(x, ws[:, 2 * k + 2], f"convs.{2 * k + 1}")
        rgb = to_rgb(x, ws[:, 2 * k + 3], f"to_rgbs.{k}", rgb)
        k += 1
    return rgb


# ---------------------------------------------------------------------------------------------
# Pieces


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (0, -1)), (2, 2, (-1, 3))])
def test_upfirdn2d_matches_zero_stuffing_and_true_convolution(up, down, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, generator=g)
    kernel = torch.randn(3, 4, dtype=torch.float64, generator=g)  # asymmetric: catches a missing flip
    ours = upfirdn2d(x, kernel, up=up, down=down, pad=pad)
    ref = ref_upfirdn_nchw(x, kernel.numpy(), up=up, down=down, pad=pad)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("upsample,demodulate,k", [(False, True, 3), (False, False, 1), (False, False, 3), (True, True, 3)])
def test_modulated_conv_matches_per_sample_loop(upsample, demodulate, k):
    torch.manual_seed(0)
    layer = ModulatedConv2d(5, 4, k, 16, demodulate=demodulate, upsample=upsample).double()
    with torch.no_grad():
        layer.modulation.bias.normal_()
    x = torch.randn(3, 5, 6, 6, dtype=torch.float64)
    w = torch.randn(3, 16, dtype=torch.float64)
    ours = layer(x, w)
    ref = ref_modconv(x, w, layer.weight.detach(), layer.modulation.weight.detach(), layer.modulation.bias.detach(),
                      demodulate=demodulate, upsample=upsample)
    assert ours.shape == ((3, 4, 12, 12) if upsample else (3, 4, 6, 6))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Whole network


def test_tiny_checkpoint_has_rosinality_layout(tiny_path):
    ckpt = torch.load(tiny_path, weights_only=True)
    assert set(ckpt) == {"g_ema", "latent_avg"}
    sd = ckpt["g_ema"]
    assert ckpt["latent_avg"].shape == (512,)
    assert sd["style.1.weight"].shape == (512, 512) and "style.3.weight" not in sd
    assert sd["conv1.conv.weight"].shape == (1, 16, 16, 3, 3)
    assert sd["convs.4.conv.weight"].shape == (1, 8, 16, 3, 3)  # 16 -> 32 px: 16 -> 8 channels
    assert "convs.6.conv.weight" not in sd and "to_rgbs.3.bias" not in sd
    assert sd["conv1.noise.weight"].shape == (1,) and sd["to_rgbs.2.bias"].shape == (1, 3, 1, 1)
    torch.testing.assert_close(sd["convs.0.conv.blur.kernel"], torch.from_numpy(BLUR).float())
    torch.testing.assert_close(sd["to_rgbs.0.upsample.kernel"], torch.from_numpy(BLUR).float())
    sides = [sd[f"noises.noise_{i}"].shape for i in range(7)]
    assert sides == [(1, 1, r, r) for r in (4, 8, 8, 16, 16, 32, 32)] and "noises.noise_7" not in sd


def test_config_f_module_has_the_1024_checkpoint_keys():
    channels = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    G = Generator(1024, channels, w_dim=512, n_mlp=8)
    sd = G.state_dict()
    assert len(sd) == 171 and G.num_ws == 18
    assert sum(p.numel() for p in G.parameters()) == 30_370_060
    assert sd["convs.8.conv.weight"].shape == (1, 256, 512, 3, 3)
    assert sd["convs.14.conv.blur.kernel"].shape == (4, 4)
    assert sd["to_rgbs.7.conv.modulation.weight"].shape == (32, 512)
    assert sd["noises.noise_16"].shape == (1, 1, 1024, 1024)
    assert "w_avg" not in sd  # rosinality's g_ema has no such key


@pytest.mark.parametrize("resolution,w_dim,n_mlp", [(16, 64, 3), (64, 32, 1)])
def test_architecture_is_read_from_the_checkpoint(tmp_path, resolution, w_dim, n_mlp):
    path = tmp_path / "g.pt"
    write_tiny_stylegan2(path, resolution=resolution, w_dim=w_dim, n_mlp=n_mlp, max_channels=8, seed=3)
    G = load_stylegan2_rosinality(path)
    assert (G.resolution, G.w_dim, G.z_dim, G.n_mlp) == (resolution, w_dim, w_dim, n_mlp)
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2
    assert G.w_avg.shape == (w_dim,)
    ws = G.w_avg.expand(2, G.num_ws, -1)
    assert G(ws).shape == (2, 3, resolution, resolution)


def test_mapping_matches_reference(tiny, tiny_path):
    sd = torch.load(tiny_path, weights_only=True)["g_ema"]
    z = torch.randn(4, 512, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(tiny.mapping(z).double(), ref_mapping(sd, z), rtol=1e-5, atol=1e-5)


def test_synthesis_matches_naive_reference(tiny, tiny_path):
    sd = torch.load(tiny_path, weights_only=True)["g_ema"]
    ws = random_ws(tiny, n=2).double()
    names = ["conv1"] + [f"convs.{i}" for i in range(2 * len(tiny.to_rgbs))]
    noises = {name: sd[f"noises.noise_{i}"] for i, name in enumerate(names)}
    ref = ref_synthesis(sd, ws, noises)
    G64 = load_stylegan2_rosinality(tiny_path).double()
    torch.testing.assert_close(G64.synthesis(ws), ref, rtol=1e-9, atol=1e-9)
    # float32 agrees to float32 accuracy
    torch.testing.assert_close(tiny.synthesis(ws.float()).double(), ref, rtol=1e-4, atol=1e-4)


def test_conv_clamp_clips_where_nvlabs_does(tiny, tiny_path):
    """conv_clamp=0.25 is small enough to clip both StyledConv and ToRGB outputs of the tiny net."""
    ckpt = torch.load(tiny_path, weights_only=True)
    sd = ckpt["g_ema"]
    assert tiny.conv_clamp is None  # rosinality's format has no clamp
    G = generator_from_state_dict(sd, ckpt["latent_avg"], source=tiny_path, conv_clamp=0.25)
    assert G.conv_clamp == 0.25 and G.state_dict().keys() == tiny.state_dict().keys()

    ws = random_ws(tiny, n=2).double()
    names = ["conv1"] + [f"convs.{i}" for i in range(2 * len(tiny.to_rgbs))]
    noises = {name: sd[f"noises.noise_{i}"] for i, name in enumerate(names)}
    clipped = {}
    ref = ref_synthesis(sd, ws, noises, clamp=0.25, clipped=clipped)
    assert clipped["conv"] > 0 and clipped["rgb"] > 0, clipped  # both kinds of clip act
    assert (ref - ref_synthesis(sd, ws, noises)).abs().max() > 0.1  # and change the image
    assert ref.abs().max() > 0.25  # the RGB skip sum itself is not clipped

    torch.testing.assert_close(G.double().synthesis(ws), ref, rtol=1e-9, atol=1e-9)
    assert (G.float().synthesis(ws.float()).double() - ref).abs().max() <= 1e-5


def test_conv_clamp_must_be_a_number_at_least_zero():
    with pytest.raises(ValueError, match="conv_clamp"):
        Generator(8, {4: 4, 8: 4}, w_dim=8, n_mlp=1, conv_clamp=-1.0)
    assert Generator(8, {4: 4, 8: 4}, w_dim=8, n_mlp=1, conv_clamp=256).conv_clamp == 256.0


def test_images_deterministic_and_roughly_in_range(tiny):
    ws = random_ws(tiny, n=3)
    a, b = tiny(ws), tiny.synthesis(ws)
    assert a.shape == (3, 3, 32, 32)
    assert torch.equal(a, b)  # constant noise: same code, same image
    assert torch.isfinite(a).all()
    assert a.abs().max() < 5 and (a.abs() <= 1).float().mean() > 0.8
    assert not torch.equal(a[0], a[1])


def test_gradient_reaches_every_layer_of_ws_and_no_weight(tiny):
    assert not any(p.requires_grad for p in tiny.parameters()) and not tiny.training
    ws = random_ws(tiny, n=2).requires_grad_(True)
    tiny(ws).square().mean().backward()
    grad = ws.grad.abs().sum(dim=(0, 2))
    assert torch.isfinite(ws.grad).all() and (grad > 0).all()  # every W+ layer is used
    assert all(p.grad is None for p in tiny.parameters())


def test_noise_override(tiny):
    ws = random_ws(tiny, n=2)
    maps = tiny.noise_maps()
    assert [m.shape[-1] for m in maps] == [4, 8, 8, 16, 16, 32, 32]
    assert torch.equal(tiny(ws, noise=[m.clone() for m in maps]), tiny(ws))
    zeros = [torch.zeros_like(m) for m in maps]
    assert not torch.allclose(tiny(ws, noise=zeros), tiny(ws))
    per_sample = [m.expand(2, -1, -1, -1).clone().requires_grad_(True) for m in maps]
    tiny(ws, noise=per_sample).sum().backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in per_sample)


def test_missing_kernels_and_noises_are_recreated(tiny, tiny_path, tmp_path):
    ckpt = torch.load(tiny_path, weights_only=True)
    stripped = {k: v for k, v in ckpt["g_ema"].items() if not (k.endswith(".kernel") or k.startswith("noises."))}
    assert len(stripped) < len(ckpt["g_ema"])
    path = tmp_path / "stripped.pt"
    torch.save({"g_ema": stripped, "latent_avg": ckpt["latent_avg"]}, path)

    G = load_stylegan2_rosinality(path)
    full, ours = tiny.state_dict(), G.state_dict()
    for key in full:
        if key.endswith(".kernel"):
            assert torch.equal(ours[key], full[key]), key  # recomputed exactly
    # absent noise maps come from the documented seed, one randn per map in layer order
    rng = torch.Generator().manual_seed(NOISE_SEED)
    expected = [torch.randn(m.shape, generator=rng) for m in G.noise_maps()]
    assert all(torch.equal(a, b) for a, b in zip(G.noise_maps(), expected))
    assert all(torch.equal(a, b) for a, b in zip(G.noise_maps(), load_stylegan2_rosinality(path).noise_maps()))

    ws = random_ws(tiny)
    assert torch.equal(G(ws, noise=tiny.noise_maps()), tiny(ws))


def test_missing_latent_avg_is_estimated(tmp_path):
    path = tmp_path / "small.pt"
    write_tiny_stylegan2(path, resolution=8, w_dim=64, n_mlp=2, max_channels=4)
    ckpt = torch.load(path, weights_only=True)
    torch.save({"g_ema": ckpt["g_ema"]}, path)
    G = load_stylegan2_rosinality(path)
    z = torch.randn(10_000, 64, generator=torch.Generator().manual_seed(0))  # documented: 10k z, seed 0
    torch.testing.assert_close(G.w_avg, G.mapping(z).mean(dim=0), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(G.w_avg, ckpt["latent_avg"], rtol=0, atol=1e-7)  # really re-estimated


def test_training_checkpoint_with_args_namespace_loads(tiny, tiny_path, tmp_path):
    ckpt = torch.load(tiny_path, weights_only=True)
    path = tmp_path / "train.pt"
    torch.save({"g": ckpt["g_ema"], "g_ema": ckpt["g_ema"], "latent_avg": ckpt["latent_avg"],
                "args": argparse.Namespace(size=32, n_mlp=2), "ada_aug_p": 0.1}, path)
    ws = random_ws(tiny)
    assert torch.equal(load_stylegan2_rosinality(path)(ws), tiny(ws))


def test_missing_parameter_is_named(tiny_path, tmp_path):
    ckpt = torch.load(tiny_path, weights_only=True)
    del ckpt["g_ema"]["convs.3.noise.weight"]
    del ckpt["g_ema"]["to_rgbs.1.bias"]
    path = tmp_path / "broken.pt"
    torch.save(ckpt, path)
    with pytest.raises(CiinvError, match=r"broken\.pt.*convs\.3\.noise\.weight.*to_rgbs\.1\.bias"):
        load_stylegan2_rosinality(path)


def test_wrong_shape_and_unexpected_key_are_named(tiny_path, tmp_path):
    ckpt = torch.load(tiny_path, weights_only=True)
    ckpt["g_ema"]["convs.1.activate.bias"] = torch.zeros(7)
    ckpt["g_ema"]["convs.99.conv.weight"] = torch.zeros(1)
    path = tmp_path / "odd.pt"
    torch.save(ckpt, path)
    with pytest.raises(CiinvError, match=r"odd\.pt.*convs\.99\.conv\.weight.*convs\.1\.activate\.bias \[7\]"):
        load_stylegan2_rosinality(path)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(CiinvError, match="absent.pt.*not found"):
        load_stylegan2_rosinality(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CiinvError, match="junk.pt.*cannot be read"):
        load_stylegan2_rosinality(junk)
    bare = tmp_path / "bare.pt"
    torch.save({"weights": torch.zeros(1)}, bare)
    with pytest.raises(CiinvError, match="bare.pt.*g_ema"):
        load_stylegan2_rosinality(bare)


def test_bad_latent_avg_shape(tiny_path, tmp_path):
    ckpt = torch.load(tiny_path, weights_only=True)
    ckpt["latent_avg"] = torch.zeros(3, 512)
    path = tmp_path / "avg.pt"
    torch.save(ckpt, path)
    with pytest.raises(CiinvError, match=r"avg\.pt.*latent_avg.*\[3, 512\]"):
        load_stylegan2_rosinality(path)
