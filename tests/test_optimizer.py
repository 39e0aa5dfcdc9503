"""The optimiser loop: lanes and warm starts, the stop rule, batch-size independence, precision."""

import pytest
import torch

from ciinv.gpu import uses_bf16
from ciinv.inversion.invert import invert_frames
from ciinv.models import load_encoder, load_flow, load_vgg16
from ciinv.dev.tiny import write_tiny_flownet2
from ciinv.models.stylegan2 import EqualLinear, load_stylegan2_rosinality, styles_fp32
from ciinv.dev.tiny import write_tiny_stylegan2
from ciinv.dev.tiny import write_tiny_e4e, write_tiny_vgg16
from ciinv.inversion.optimizer import (
    Nets,
    WindowResult,
    WindowTask,
    _ActiveWindow,
    converged,
    e4e_start,
    learning_rate,
    optimize_lanes,
    plan_lanes,
    recent_and_before,
    warm_start_code,
)
from ciinv.inversion.objective import latent_codes
from ciinv.inversion.settings import InvertSettings
from ciinv.inversion.windows import plan_windows

FRAMES = 9  # window 3, stride 2: windows [0,3) [2,5) [4,7) [6,9)
SMALL = dict(window=3, stride=2, perceptual_size=32, lr=0.05, seed=0)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    write_tiny_stylegan2(d / "g.pt", resolution=32, w_dim=64, n_mlp=2, max_channels=16)
    write_tiny_vgg16(d / "vgg.pth", width_divisor=16)
    write_tiny_flownet2(d / "flow.pth", width_divisor=16)
    write_tiny_e4e(d / "e4e.pt", num_ws=8, w_dim=64, generator=d / "g.pt")
    generator = load_stylegan2_rosinality(d / "g.pt").requires_grad_(False)
    return Nets(generator, load_vgg16(d / "vgg.pth").requires_grad_(False),
                load_flow(d / "flow.pth").requires_grad_(False), load_encoder(d / "e4e.pt"))


@pytest.fixture(scope="module")
def crops(nets):
    """Frames rendered from known codes that move a small step per frame: [FRAMES, 3, 32, 32]."""
    g = nets.generator
    rng = torch.Generator().manual_seed(1)
    start = g.w_avg + 0.5 * torch.randn(g.num_ws, g.w_dim, generator=rng)
    step = 0.1 * torch.randn(1, g.w_dim, generator=rng)
    with torch.no_grad():
        return ((g.synthesis(torch.stack([start + k * step for k in range(FRAMES)])) + 1) / 2).clamp(0, 1)


def invert(nets, crops, **settings):
    s = InvertSettings(**{**SMALL, **settings})
    return invert_frames(nets, crops, 0, plan_windows(FRAMES, s.window, s.stride), s)


def test_lanes_are_runs_of_consecutive_windows():
    assert plan_lanes(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan_lanes(list(range(2)), 4) == [[0, 1]]


def test_a_warm_window_starts_from_the_shared_frame_of_its_predecessor(nets, crops):
    settings = InvertSettings(**SMALL)
    previous = WindowResult(index=0, start=0, w_b=torch.zeros(8, 64), n_k=torch.zeros(2, 1, 64),
                            codes=torch.randn(3, 8, 64), losses=torch.zeros(1, 4), steps=1, warm=False)
    task = WindowTask(index=1, start=2, frames=crops[2:5])
    # Frame 2 is the previous window's last frame (index 2 of [0, 3)).
    torch.testing.assert_close(warm_start_code(previous, task), previous.codes[2], rtol=0, atol=0)
    window = _ActiveWindow(task, lane=0, position=1, warm_from=previous, nets=nets, settings=settings, amp=False)
    assert torch.equal(window.latents["w_b"][0].detach(), previous.codes[2])
    assert torch.all(window.latents["n_k"] == 0)
    # A lane's first window starts from the configured init (the mean latent).
    first = _ActiveWindow(task, lane=0, position=0, warm_from=None, nets=nets, settings=settings, amp=False)
    assert torch.equal(first.latents["w_b"][0].detach(), nets.generator.w_avg.expand(8, 64))
    # With stride T no frame is shared: the previous window's last frame, the nearest one.
    far = WindowTask(index=1, start=3, frames=crops[3:6])
    torch.testing.assert_close(warm_start_code(previous, far), previous.codes[2], rtol=0, atol=0)


def test_which_windows_start_warm(nets, crops):
    results = invert(nets, crops, steps=4, lane_windows=2, windows_per_batch=2)
    assert [r.warm for r in results] == [False, True, False, True]  # lanes [w0, w1], [w2, w3]
    cold = invert(nets, crops, steps=4, lane_windows=2, warm_start=False)
    assert not any(r.warm for r in cold)
    # A warm start begins nearer the answer: its first loss is below that of the same window started cold.
    assert results[1].losses[0, 0] < cold[1].losses[0, 0]


def test_the_result_does_not_depend_on_the_batch_size(nets, crops):
    one = invert(nets, crops, steps=6, lane_windows=2, windows_per_batch=1)
    two = invert(nets, crops, steps=6, lane_windows=2, windows_per_batch=2)
    for a, b in zip(one, two):
        # Not bit for bit: a batch of another shape sums in another order, and Adam scales tiny
        # gradient differences up to steps of order lr.
        torch.testing.assert_close(a.codes, b.codes, rtol=1e-3, atol=1e-3)
        assert a.steps == b.steps and a.warm == b.warm


def test_the_stop_rule_compares_the_best_recent_loss_with_the_best_before():
    total = torch.tensor([1.0, 0.9, 0.8, 0.7, 0.65, 0.64])
    recent, before = recent_and_before(total, patience=2).tolist()
    assert (recent, before) == pytest.approx((0.64, 0.7))
    assert not converged(recent, before, tolerance=0.05)  # 8.6 % better than before
    assert converged(recent, before, tolerance=0.1)
    # A loss that went up in the last steps has not improved: converged at any tolerance.
    assert converged(*recent_and_before(torch.tensor([1.0, 0.5, 0.6, 0.7]), patience=2).tolist(), tolerance=0.0)


def test_windows_stop_on_their_own_losses_and_the_cap_still_holds(nets, crops):
    stopped = invert(nets, crops, steps=30, stop_patience=3, min_steps=4, stop_tolerance=1.0, lane_windows=2)
    assert [r.steps for r in stopped] == [6, 6, 6, 6]  # the first check: a multiple of 3, at least 2·3 and 4
    capped = invert(nets, crops, steps=7, early_stop=False, lane_windows=2)
    assert [r.steps for r in capped] == [7, 7, 7, 7]
    # A tolerance of 0 stops only where the loss stopped improving entirely.
    patient = invert(nets, crops, steps=30, stop_patience=3, min_steps=4, stop_tolerance=0.0, lane_windows=2)
    for r in patient:
        assert r.steps == 30 or not r.losses[-3:, 0].min() < r.losses[:-3, 0].min()


def test_with_a_code_tolerance_the_codes_must_have_settled_as_well(nets, crops):
    loose = dict(steps=30, stop_patience=3, min_steps=4, stop_tolerance=1.0, lane_windows=2)
    assert [r.steps for r in invert(nets, crops, **loose, stop_code_tolerance=1e9)] == [6, 6, 6, 6]
    # Codes that still move (lr 0.05) never settle to 1e-9 of their norm: the cap ends every window.
    assert [r.steps for r in invert(nets, crops, **loose, stop_code_tolerance=1e-9)] == [30, 30, 30, 30]


def test_the_learning_rate_follows_the_stylegan2_projector_schedule():
    assert learning_rate(0.1, 0, 100, 0.0, 0.0) == 0.1 and learning_rate(0.1, 99, 100, 0.0, 0.0) == 0.1
    assert learning_rate(0.1, 0, 100, 0.05, 0.25) == 0.0  # the warm-up starts at 0
    assert learning_rate(0.1, 2, 100, 0.05, 0.25) == pytest.approx(0.04)  # linear up to step 5
    assert learning_rate(0.1, 50, 100, 0.05, 0.25) == pytest.approx(0.1)
    assert learning_rate(0.1, 75, 100, 0.05, 0.25) == pytest.approx(0.1)  # the cosine starts at 75 %
    assert learning_rate(0.1, 87.5, 100, 0.05, 0.25) == pytest.approx(0.05)
    assert learning_rate(0.1, 100, 100, 0.05, 0.25) == pytest.approx(0.0)


def test_the_optimiser_steps_at_the_scheduled_rate(nets, crops, monkeypatch):
    rates = []
    settings = InvertSettings(**SMALL, steps=8, early_stop=False, lr_rampup=0.5, lr_rampdown=0.5)
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    optimize_lanes(nets, [[WindowTask(index=0, start=0, frames=crops[:3])]], settings, 1)
    assert rates == pytest.approx([learning_rate(0.05, k, 8, 0.5, 0.5) for k in range(8)])


def test_warm_started_windows_take_their_own_rate(nets, crops):
    settings = dict(steps=4, early_stop=False, lane_windows=2)
    same, scaled = invert(nets, crops, **settings), invert(nets, crops, **settings, warm_lr_scale=3.0)
    cold = [i for i, r in enumerate(same) if not r.warm]
    assert all(torch.equal(same[i].codes, scaled[i].codes) for i in cold)
    assert not torch.equal(same[1].codes, scaled[1].codes) and same[1].warm


def test_on_a_cpu_every_precision_computes_in_fp32(nets, crops):
    assert not uses_bf16("cpu", "bf16") and not uses_bf16("cuda:0", "fp32") and uses_bf16("cuda:1", "bf16")
    fp32 = invert(nets, crops, steps=3, precision="fp32")
    bf16 = invert(nets, crops, steps=3, precision="bf16")
    for a, b in zip(fp32, bf16):
        assert torch.equal(a.codes, b.codes)


def test_styles_stay_fp32_under_bf16_autocast():
    """A frame-to-frame offset of 0.003 on codes of size ~1 survives the style projection."""
    torch.manual_seed(0)
    affine = EqualLinear(512, 512, bias_init=1.0)
    w = torch.randn(2, 512)
    w_next = w + 0.003 * torch.randn(2, 512)
    exact = affine(w_next) - affine(w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = styles_fp32(affine, w_next) - styles_fp32(affine, w)
        rounded = affine(w_next).float() - affine(w).float()
    assert kept.dtype == torch.float32
    assert ((kept - exact).norm() / exact.norm()).item() < 1e-5
    assert ((rounded - exact).norm() / exact.norm()).item() > 0.1  # what plain autocast would lose


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_and_fp32_agree_on_a_gpu(nets, crops):
    device = torch.device("cuda")
    gpu = Nets(nets.generator.to(device), nets.vgg.to(device), nets.flow.to(device))
    fp32 = invert(gpu, crops.to(device), steps=20, precision="fp32")
    bf16 = invert(gpu, crops.to(device), steps=20, precision="bf16")
    for a, b in zip(fp32, bf16):
        assert abs(a.losses[-1, 2] - b.losses[-1, 2]) < 0.1 * a.losses[-1, 2]


def test_the_sequential_noise_schedule_fits_the_codes_first_then_the_noise(nets, crops):
    """Image2StyleGAN++'s order for plus: codes alone for half the steps, then the noise alone."""
    settings = InvertSettings(**SMALL, variant="plus", noise_schedule="sequential", steps=6, early_stop=False)
    task = WindowTask(index=0, start=0, frames=crops[:3])
    window = _ActiveWindow(task, lane=0, position=0, warm_from=None, nets=nets, settings=settings, amp=False)
    assert window.phase == "codes" and window.phase_cap == 3
    assert window.latents["w_b"].requires_grad and not window.latents["noise_0"].requires_grad

    first = plan_windows(FRAMES, 3, 2)[:1]
    (sequential,) = invert_frames(nets, crops, 0, first, settings)
    # The codes' phase is 'full' with the constant maps: same codes. Then only the noise moved.
    (codes_only,) = invert_frames(nets, crops, 0, first, settings.replace(variant="full", steps=3))
    assert torch.equal(sequential.codes, codes_only.codes)
    constant = nets.generator.noise_maps()
    assert any(not torch.equal(n, c) for n, c in zip(sequential.noise, constant))
    (joint,) = invert_frames(nets, crops, 0, first, settings.replace(noise_schedule="joint"))
    assert not torch.equal(joint.codes, sequential.codes) and sequential.steps == joint.steps == 6


@pytest.mark.parametrize("variant, offsets, e4e_offsets", [
    ("full", "per_layer", "encoder"), ("full", "shared", "encoder"), ("full", "shared", "zero"), ("i2s", "shared", "encoder")])
def test_init_e4e_starts_from_the_encoders_codes(nets, crops, variant, offsets, e4e_offsets):
    settings = InvertSettings(**SMALL, init="e4e", variant=variant, offsets=offsets, e4e_offsets=e4e_offsets)
    task = WindowTask(index=0, start=2, frames=crops[2:5])
    codes = e4e_start(nets.encoder, task.frames)  # [T, L, D]
    assert codes.shape == (3, 8, 64)
    window = _ActiveWindow(task, lane=0, position=0, warm_from=None, nets=nets, settings=settings, amp=False)
    start = latent_codes(window.latents)[0].detach()
    if variant == "i2s":  # each frame alone: its own code
        torch.testing.assert_close(start, codes, rtol=0, atol=0)
        return
    # The base code is the encoder's code of the window's first frame.
    assert torch.equal(window.latents["w_b"][0].detach(), codes[0])
    n_k = window.latents["n_k"][0].detach()
    if e4e_offsets == "zero":
        assert torch.all(n_k == 0)
    elif offsets == "per_layer":  # every frame starts exactly at its own code
        torch.testing.assert_close(start, codes, rtol=1e-5, atol=1e-5)
    else:  # one vector per step: the layer mean of the step between consecutive frames' codes
        torch.testing.assert_close(n_k[:, 0], (codes[1:] - codes[:-1]).mean(dim=1), rtol=1e-5, atol=1e-5)


def test_init_e4e_runs_the_encoder_for_a_lanes_first_window_only(nets, crops):
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, images):
            calls.append(images.shape[0])
            return self.encoder(images)

    counted = Nets(nets.generator, nets.vgg, nets.flow, Counting(nets.encoder))
    results = invert(counted, crops, init="e4e", steps=2, lane_windows=2)  # 4 windows: 2 lanes of 2
    assert [r.warm for r in results] == [False, True, False, True]
    assert calls == [3, 3]  # one pass over each lane's first window
    calls.clear()
    results = invert(counted, crops, init="e4e", steps=2, lane_windows=2, warm_start=False)
    assert [r.warm for r in results] == [False] * 4 and calls == [3] * 4


def test_init_e4e_needs_an_encoder(nets, crops):
    settings = InvertSettings(**SMALL, init="e4e")
    task = WindowTask(index=0, start=0, frames=crops[:3])
    with pytest.raises(ValueError, match="no encoder"):
        _ActiveWindow(task, lane=0, position=0, warm_from=None, nets=Nets(nets.generator, nets.vgg, nets.flow),
                      settings=settings, amp=False)
