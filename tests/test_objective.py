import pytest
import torch
import torch.nn.functional as F

from ciinv.models.warp import warp
from ciinv.inversion.objective import (
    LossConfig,
    codes,
    icc_pairs,
    init_latents,
    latent_base_and_offsets,
    latent_codes,
    latent_noise,
    prepare_targets,
    synthesis_noise,
    window_losses,
)

B, T, H = 2, 4, 32


class FakeFlow:
    """A flow 'net' that counts its calls: a smooth flow that depends on both inputs."""

    def __init__(self):
        self.calls = 0

    def __call__(self, a, b):
        self.calls += 1
        n, _, h, w = a.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        shift = 3 * (a.mean(dim=(1, 2, 3)) - b.mean(dim=(1, 2, 3)) + 0.5)  # [N], pixels
        return torch.stack([xs * shift[:, None, None], ys * shift[:, None, None]], dim=1)


class NoFlow:
    def __call__(self, a, b):
        raise AssertionError("the flow net must not be called")


class RecordingVGG:
    """Returns the image itself and a pooled copy as its 'taps', and records the input sizes."""

    def __init__(self):
        self.sizes = []

    def __call__(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return [x, F.avg_pool2d(x, 2)]


def frames(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, 3, H, H, generator=g)


def test_mac_codes_are_cumulative_sums_of_offsets():
    g = torch.Generator().manual_seed(0)
    w_b = torch.randn(B, 6, 8, generator=g)
    for width in (1, 6):
        n = torch.randn(B, T - 1, width, 8, generator=g)
        c = codes(w_b, n)
        assert c.shape == (B, T, 6, 8)
        torch.testing.assert_close(c[:, 0], w_b)
        for k in range(1, T):
            torch.testing.assert_close(c[:, k], w_b + n[:, :k].sum(dim=1).expand(B, 6, 8))
            torch.testing.assert_close(c[:, k] - c[:, k - 1], n[:, k - 1].expand(B, 6, 8))


@pytest.mark.parametrize("variant,offsets,names", [
    ("full", "shared", {"w_b": (B, 6, 8), "n_k": (B, T - 1, 1, 8)}),
    ("no_icc", "per_layer", {"w_b": (B, 6, 8), "n_k": (B, T - 1, 6, 8)}),
    ("no_mac", "shared", {"w": (B, T, 6, 8)}),
    ("i2s", "shared", {"w": (B, T, 6, 8)}),
])
def test_latents_start_at_the_start_code_with_zero_offsets(variant, offsets, names):
    w_start = torch.randn(6, 8)
    latents = init_latents(variant, offsets, B, T, w_start)
    assert {k: tuple(v.shape) for k, v in latents.items()} == names
    assert all(v.requires_grad and v.is_leaf for v in latents.values())
    torch.testing.assert_close(latent_codes(latents), w_start.expand(B, T, 6, 8))


def test_plus_adds_one_set_of_noise_maps_per_window_started_from_the_constant_maps():
    constant = [torch.randn(1, 1, 4, 4), torch.randn(1, 1, 8, 8)]
    latents = init_latents("plus", "shared", B, T, torch.randn(6, 8), noise=constant)
    assert set(latents) == {"w_b", "n_k", "noise_0", "noise_1"}
    assert all(v.requires_grad and v.is_leaf for v in latents.values())
    for maps, start in zip(latent_noise(latents), constant):
        assert maps.shape == (B, 1, *start.shape[-2:])
        assert all(torch.equal(maps[b], start[0]) for b in range(B))
    with torch.no_grad():
        latents["noise_0"][1] += 1.0  # window 1's own maps: the constant ones and window 0's stay
    assert torch.equal(latents["noise_0"][0], constant[0][0])
    # For synthesis of the B·T codes, each window's maps are repeated for its T frames.
    per_image = synthesis_noise(latents, T)
    assert per_image[0].shape == (B * T, 1, 4, 4)
    for b in range(B):
        assert all(torch.equal(per_image[0][b * T + t], latents["noise_0"][b]) for t in range(T))
    # Gradients reach the maps through synthesis_noise.
    (per_image[1] * torch.arange(B * T, dtype=torch.float).view(-1, 1, 1, 1)).sum().backward()
    assert torch.equal(latents["noise_1"].grad[:, 0, 0, 0], torch.tensor([float(sum(range(b * T, b * T + T)))
                                                                          for b in range(B)]))

    full = init_latents("full", "shared", B, T, torch.randn(6, 8), noise=constant)
    assert set(full) == {"w_b", "n_k"} and synthesis_noise(full, T) is None
    with pytest.raises(ValueError, match="noise"):
        init_latents("plus", "shared", B, T, torch.randn(6, 8))


def test_free_codes_are_written_as_base_and_per_layer_offsets():
    latents = {"w": torch.randn(B, T, 6, 8)}
    w_b, n_k = latent_base_and_offsets(latents)
    assert n_k.shape == (B, T - 1, 6, 8)
    torch.testing.assert_close(codes(w_b, n_k), latents["w"])


def test_icc_pairs():
    assert icc_pairs(4, "base") == [(0, 1), (0, 2), (0, 3)]
    assert icc_pairs(3, "all") == [(0, 1), (0, 2), (1, 2)]


def test_every_term_is_zero_when_the_reconstruction_is_the_real_frames():
    real = frames()
    config = LossConfig(perceptual_size=H)
    targets = prepare_targets(real, RecordingVGG(), FakeFlow(), config)
    losses = window_losses(real.clone(), targets, RecordingVGG(), config)
    assert set(losses) == {"total", "icc", "mse", "perceptual"}
    for name, value in losses.items():
        assert value.shape == (B,)
        assert torch.all(value.abs() < 1e-10), name


def test_icc_matches_the_official_base_pairing():
    """MSE(stack_k warp(I_0, F_k), stack_k warp(G_0, F_k)) + MSE(stack_k warp(I_k, B_k), stack_k warp(G_k, B_k))
    with F_k = flow(I_k, I_0), B_k = flow(I_0, I_k), per window."""
    real, fake = frames(0), frames(1)
    flow = FakeFlow()
    config = LossConfig(lambda_mse=0, lambda_perceptual=0)
    targets = prepare_targets(real, None, flow, config)
    assert flow.calls == T - 1  # one call per pair, both directions batched
    icc = window_losses(fake, targets, None, config)["icc"]
    for b in range(B):
        I, G = real[b], fake[b]
        fw = [flow(I[k : k + 1], I[0:1]) for k in range(1, T)]
        bw = [flow(I[0:1], I[k : k + 1]) for k in range(1, T)]
        term1 = F.mse_loss(torch.cat([warp(I[0:1], f) for f in fw]), torch.cat([warp(G[0:1], f) for f in fw]))
        term2 = F.mse_loss(torch.cat([warp(I[k : k + 1], f) for k, f in zip(range(1, T), bw)]),
                           torch.cat([warp(G[k : k + 1], f) for k, f in zip(range(1, T), bw)]))
        torch.testing.assert_close(icc[b], term1 + term2)


def test_all_pairs_use_every_pair_of_frames():
    flow = FakeFlow()
    config = LossConfig(icc_pairs="all", lambda_perceptual=0)
    targets = prepare_targets(frames(), None, flow, config)
    assert flow.calls == T * (T - 1) // 2
    assert targets.flow_i_to_j.shape == (B, T * (T - 1) // 2, 2, H, H)
    assert window_losses(frames(1), targets, None, config)["icc"].min() > 0


@pytest.mark.parametrize("variant", ["no_icc", "i2s"])
def test_variants_without_icc_never_compute_flows(variant):
    config = LossConfig(variant=variant, perceptual_size=H)
    targets = prepare_targets(frames(), RecordingVGG(), NoFlow(), config)
    assert targets.flow_i_to_j is None
    losses = window_losses(frames(1), targets, RecordingVGG(), config)
    assert torch.all(losses["icc"] == 0)
    assert torch.all(losses["mse"] > 0) and torch.all(losses["perceptual"] > 0)
    torch.testing.assert_close(losses["total"], losses["mse"] + losses["perceptual"])


def test_lambdas_weight_the_terms():
    config = LossConfig(lambda_icc=2.0, lambda_mse=3.0, lambda_perceptual=0.5, perceptual_size=H)
    targets = prepare_targets(frames(), RecordingVGG(), FakeFlow(), config)
    losses = window_losses(frames(1), targets, RecordingVGG(), config)
    assert all(torch.all(losses[n] > 0) for n in ("icc", "mse", "perceptual"))
    torch.testing.assert_close(losses["total"], 2 * losses["icc"] + 3 * losses["mse"] + 0.5 * losses["perceptual"])


def test_perceptual_term_is_off_without_calling_vgg():
    class NoVGG:
        def __call__(self, x):
            raise AssertionError("VGG must not be called")

    config = LossConfig(lambda_perceptual=0)
    targets = prepare_targets(frames(), NoVGG(), FakeFlow(), config)
    assert torch.all(window_losses(frames(1), targets, NoVGG(), config)["perceptual"] == 0)


def test_perceptual_term_resizes_bilinearly_to_perceptual_size():
    vgg = RecordingVGG()
    real, fake = frames(0), frames(1)
    config = LossConfig(variant="no_icc", lambda_mse=0, perceptual_size=48)
    targets = prepare_targets(real, vgg, None, config)
    perceptual = window_losses(fake, targets, vgg, config)["perceptual"]
    assert vgg.sizes == [(48, 48), (48, 48)]  # real once, fake once

    def up(x):
        return F.interpolate(x, size=(48, 48), mode="bilinear", align_corners=False)

    for b in range(B):
        r, f = up(real[b]), up(fake[b])
        expected = F.mse_loss(f, r) + F.mse_loss(F.avg_pool2d(f, 2), F.avg_pool2d(r, 2))
        torch.testing.assert_close(perceptual[b], expected)


def test_windows_of_a_batch_do_not_interact():
    real = frames(0)
    fake = frames(1).requires_grad_(True)
    config = LossConfig(perceptual_size=H)
    targets = prepare_targets(real, RecordingVGG(), FakeFlow(), config)
    losses = window_losses(fake, targets, RecordingVGG(), config)
    (grad,) = torch.autograd.grad(losses["total"][0], fake)
    assert grad[0].abs().sum() > 0
    assert torch.all(grad[1] == 0)


def test_real_vgg_taps_flow_through_the_loss(tmp_path):
    from ciinv.models.vgg16 import load_vgg16
    from ciinv.dev.tiny import write_tiny_vgg16

    write_tiny_vgg16(tmp_path / "vgg.pth", width_divisor=16)
    vgg = load_vgg16(tmp_path / "vgg.pth")
    config = LossConfig(variant="no_icc", perceptual_size=H)
    targets = prepare_targets(frames(), vgg, None, config)
    assert len(targets.features) == 4
    losses = window_losses(frames(1), targets, vgg, config)
    assert torch.all(losses["perceptual"] > 0)
