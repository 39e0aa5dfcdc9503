"""Known-answer tests for every metric in ciinv.metrics."""

import io
import math
import tarfile
import zipfile

import numpy as np
import pytest
import scipy.stats
import torch

from ciinv import metrics
from ciinv.errors import CiinvError
from ciinv.dev.tiny import write_tiny_vgg16
from ciinv.models.warp import warp


# --- pixels and codes --------------------------------------------------------------------------


def test_mse_and_psnr_of_known_images():
    black = torch.zeros(2, 3, 4, 4)
    grey = torch.full((2, 3, 4, 4), 0.5)
    grey[1] = 0.1
    torch.testing.assert_close(metrics.mse(black, grey), torch.tensor([0.25, 0.01]))
    torch.testing.assert_close(metrics.psnr(black, grey), torch.tensor([10 * math.log10(4), 20.0]))
    assert torch.isinf(metrics.psnr(grey, grey)).all()


def test_latent_dist_is_the_layer_mean_of_l2_norms_averaged_over_frames():
    truth = torch.zeros(2, 3, 4)  # 2 frames, 3 layers, D = 4
    codes = truth.clone()
    codes[0, 0, :2] = torch.tensor([3.0, 4.0])  # frame 0: layer norms 5, 0, 0 -> 5/3
    codes[1, :, 3] = 2.0  # frame 1: layer norms 2, 2, 2 -> 2
    assert metrics.latent_dist(codes, truth) == pytest.approx((5 / 3 + 2) / 2)
    with pytest.raises(ValueError):
        metrics.latent_dist(codes, truth[:1])


def _tiny_generators(tmp_path):
    from ciinv.models import load_generator
    from ciinv.dev.tiny import write_tiny_stylegan1
    from ciinv.dev.tiny import write_tiny_stylegan2

    write_tiny_stylegan2(tmp_path / "v2.pt", resolution=16, max_channels=8)
    write_tiny_stylegan1(tmp_path / "v1.pt", resolution=16, max_channels=8, n_mlp=2)
    return [load_generator(tmp_path / "v2.pt"), load_generator(tmp_path / "v1.pt")]


def test_style_affines_are_the_maps_synthesis_applies_to_each_w_plus_entry(tmp_path):
    for g in _tiny_generators(tmp_path):
        ws = torch.randn(2, g.num_ws, g.w_dim)
        seen = {}
        hooks = [affine.register_forward_hook(lambda m, args, out, key=k: seen.__setitem__(key, args[0]))
                 for k, (_, affine) in enumerate(g.style_affines())]
        g.synthesis(ws)
        for hook in hooks:
            hook.remove()
        indices = [i for i, _ in g.style_affines()]
        assert len(seen) == len(indices) and set(indices) == set(range(g.num_ws))
        for k, i in enumerate(indices):
            assert torch.equal(seen[k], ws[:, i]), (type(g).__name__, k, i)


def test_style_dist_ignores_what_no_layer_sees_and_latent_dist_does_not(tmp_path):
    """A change of w in the null space of every affine that reads that W+ entry leaves the image and
    style_dist unchanged; latent_dist counts it in full. (The smoke models' narrow layers see only
    C of the 512 dimensions of each entry.)"""
    for g in _tiny_generators(tmp_path):
        truth = torch.randn(3, g.num_ws, g.w_dim)
        unseen = torch.zeros_like(truth)
        for i in range(g.num_ws):
            rows = torch.cat([a.weight for j, a in g.style_affines() if j == i])  # [sum C, D]
            null = torch.linalg.svd(rows, full_matrices=True).Vh[rows.shape[0]:]  # orthogonal to every row
            unseen[:, i] = 5.0 * null[0]
        assert metrics.latent_dist(truth + unseen, truth) == pytest.approx(5.0, rel=1e-4)
        assert metrics.style_dist(truth + unseen, truth, g.style_affines()) < 1e-4
        torch.testing.assert_close(g.synthesis(truth + unseen), g.synthesis(truth), atol=1e-4, rtol=0)
        seen = torch.randn_like(truth)
        assert metrics.style_dist(truth + seen, truth, g.style_affines()) > 0.1
        assert metrics.style_dist(truth, truth, g.style_affines()) == 0


# --- Fréchet distance --------------------------------------------------------------------------


def test_frechet_distance_of_known_gaussians():
    # 1-D: (0 - 3)² + 1 + 4 - 2·sqrt(1·4) = 10
    assert metrics.frechet_distance([0.0], [[1.0]], [3.0], [[4.0]]) == pytest.approx(10.0)
    # Diagonal 2-D: |(1, 2)|² + (1 + 4) + (9 + 1) - 2·(3 + 2) = 5 + 15 - 10 = 10
    d = metrics.frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([9.0, 1.0]))
    assert d == pytest.approx(10.0)
    # Same distribution, non-diagonal covariance: 0; a pure shift of the mean: |shift|².
    cov = np.array([[2.0, 0.8], [0.8, 1.0]])
    assert metrics.frechet_distance(np.ones(2), cov, np.ones(2), cov) == pytest.approx(0.0, abs=1e-9)
    assert metrics.frechet_distance(np.zeros(2), cov, np.array([3.0, 4.0]), cov) == pytest.approx(25.0)


def test_fid_from_samples_approaches_the_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 3))
    b = rng.normal(0.0, 2.0, size=(20000, 3)) + np.array([1.0, 0.0, 0.0])
    # Per axis: (1 + 4 - 2·2) = 1, plus the mean shift 1: 3·1 + 1 = 4
    assert metrics.fid(a, b) == pytest.approx(4.0, rel=0.03)
    # Through the Inception network: tests/test_inception.py.


# --- warping error -----------------------------------------------------------------------------


def _translating_frames(frames=4, shift=2, size=24):
    """Crops of one smooth texture, each moved `shift` pixels right of the previous."""
    rng = np.random.default_rng(1)
    big = torch.from_numpy(rng.random((3, size, size + shift * frames))).float()
    big = torch.nn.functional.avg_pool2d(big[None], 3, stride=1, padding=1)[0]
    # Frame t shows columns [x0 - t·shift, ...): content moves right by `shift` per frame.
    x0 = shift * frames
    return torch.stack([big[:, :, x0 - t * shift : x0 - t * shift + size] for t in range(frames)])


def _translation_flow(scale=1.0):
    """flow_fn(a, b) for frames that differ by a horizontal shift: the integer shift s (|s| ≤ 4)
    with warp(b, s) closest to a, times ``scale`` (1: the true flow)."""

    def flow_fn(a, b):
        def flow(s):
            f = torch.zeros(a.shape[0], 2, *a.shape[-2:])
            f[:, 0] = s
            return f

        errors = {s: (warp(b, flow(s)) - a)[..., 4:-4].square().mean().item() for s in range(-4, 5)}
        return flow(scale * min(errors, key=errors.get))

    return flow_fn


def _zero_flow(a, b):
    return torch.zeros(a.shape[0], 2, *a.shape[-2:])


def test_warping_error_is_zero_for_a_pure_translation_with_the_true_flow():
    frames = _translating_frames(shift=2)
    assert metrics.warping_error(frames, _translation_flow()) == pytest.approx(0.0, abs=1e-10)
    # A wrong flow leaves an error; noise on an output is measured with the input's flow.
    assert metrics.warping_error(frames, _zero_flow) > 1e-3
    noisy = (frames + 0.05 * torch.randn(frames.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    error = metrics.warping_error(noisy, _translation_flow(), reference=frames)
    assert error == pytest.approx(2 * 0.05**2, rel=0.2)  # two independent noises of σ 0.05


def test_relative_warping_error_of_an_output_against_its_input():
    frames = _translating_frames(shift=2)
    flicker = frames + 0.02 * torch.randn(frames.shape, generator=torch.Generator().manual_seed(2))
    half = _translation_flow(scale=0.5)  # an imperfect flow: the input has some error too
    assert metrics.relative_warping_error(frames, frames, half) == pytest.approx(1.0)
    assert metrics.relative_warping_error(flicker, frames, half) > 1.05
    with pytest.raises(ValueError):
        metrics.relative_warping_error(frames, frames, _translation_flow())  # zero input error


def test_consistency_mask_marks_inconsistent_and_outside_pixels():
    forward = torch.zeros(1, 2, 5, 6)
    forward[:, 0] = 2.0  # everything moves 2 px right
    backward = torch.zeros(1, 2, 5, 6)
    backward[:, 0] = -2.0
    mask = metrics.consistency_mask(forward, backward)
    assert mask[0, 0, :, :4].eq(1).all() and mask[0, 0, :, 4:].eq(0).all()  # the last 2 columns land outside
    backward[:, 0] = 3.0  # not the inverse motion: occlusion everywhere
    assert metrics.consistency_mask(forward, backward).sum() == 0


# --- LPIPS -------------------------------------------------------------------------------------


def _channel_passing_vgg(path, c=0.5):
    """A VGG16 state dict with 2 channels per conv: channel 0 passes the red channel on (centre
    tap 1), channel 1 is the constant c. On a constant image every tap is then [relu(x), c]."""
    state = {}
    index, c_in = 0, 3
    for item in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if item == "M":
            index += 1
            continue
        weight = torch.zeros(2, c_in, 3, 3)
        weight[0, 0, 1, 1] = 1.0
        state[f"features.{index}.weight"] = weight
        state[f"features.{index}.bias"] = torch.tensor([0.0, c])
        index += 2
        c_in = 2
    torch.save(state, path)


def _lin(widths, seed=0):
    rng = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": torch.rand(1, w, 1, 1, generator=rng) for k, w in enumerate(widths)}


def test_lpips_known_answer_on_constant_images(tmp_path):
    c = 0.5
    _channel_passing_vgg(tmp_path / "vgg.pth", c)
    lin = _lin([2] * 5)
    torch.save(lin, tmp_path / "lin.pth")
    lpips = metrics.load_lpips(tmp_path / "vgg.pth", tmp_path / "lin.pth")

    a = torch.full((1, 3, 32, 32), 0.8)
    b = torch.full((1, 3, 32, 32), 0.3)
    v = (2 * 0.8 - 1 + 0.030) / 0.458  # LPIPS scaling of the red channel; b's is negative -> relu 0
    fa = np.array([v, c]) / (math.hypot(v, c) + 1e-10)
    fb = np.array([0.0, 1.0])
    expected = sum(float(lin[f"lin{k}.model.1.weight"].flatten() @ torch.tensor((fa - fb) ** 2).float())
                   for k in range(5))
    assert lpips(a, b).item() == pytest.approx(expected, rel=1e-5)
    assert lpips(a, a).item() == 0.0
    assert lpips(b, a).item() == pytest.approx(expected, rel=1e-5)


def test_lpips_reads_the_wheel_and_checks_the_files_belong_together(tmp_path):
    write_tiny_vgg16(tmp_path / "vgg.pth", width_divisor=16)  # taps: 4, 8, 16, 32, 32 channels
    buffer = io.BytesIO()
    torch.save(_lin([4, 8, 16, 32, 32]), buffer)
    with zipfile.ZipFile(tmp_path / "lpips-0.1.4-py3-none-any.whl", "w") as wheel:
        wheel.writestr("lpips/weights/v0.1/vgg.pth", buffer.getvalue())
    lpips = metrics.load_lpips(tmp_path / "vgg.pth", tmp_path / "lpips-0.1.4-py3-none-any.whl")
    rng = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32, generator=rng), torch.rand(2, 3, 32, 32, generator=rng)
    d = lpips(x, y)
    assert d.shape == (2,) and (d > 0).all()
    torch.testing.assert_close(lpips(x, x), torch.zeros(2))

    torch.save(_lin([64, 128, 256, 512, 512]), tmp_path / "real-sized.pth")
    with pytest.raises(CiinvError, match="do not belong together"):
        metrics.load_lpips(tmp_path / "vgg.pth", tmp_path / "real-sized.pth")
    with pytest.raises(CiinvError, match="ciinv models fetch"):
        metrics.load_lpips(tmp_path / "vgg.pth", tmp_path / "missing.whl")


# --- NIQE --------------------------------------------------------------------------------------


def test_aggd_fit_recovers_a_generalised_gaussian():
    rng = np.random.default_rng(0)
    for shape in (0.8, 2.0):
        x = scipy.stats.gennorm.rvs(shape, scale=1.5, size=200_000, random_state=rng)
        alpha, left, right = metrics.aggd_fit(x)
        assert alpha == pytest.approx(shape, rel=0.03)
        assert left == pytest.approx(1.5, rel=0.03) and right == pytest.approx(1.5, rel=0.03)
    # Asymmetric: different scales on the two sides.
    x = np.abs(scipy.stats.gennorm.rvs(2.0, size=200_000, random_state=rng))
    x = np.where(rng.random(x.size) < 0.5, -0.5 * x, 2.0 * x)
    alpha, left, right = metrics.aggd_fit(x)
    assert right / left == pytest.approx(4.0, rel=0.05)


def test_aggd_fit_of_a_one_sided_block_follows_matlab():
    """No negative values: the fit is undefined. MATLAB's min over all-NaN differences picks the
    first grid point, so the NIQE release reports alpha 0.2 (counted by its nanmean), a NaN left
    beta and the right one from alpha 0.2."""
    x = np.abs(np.random.default_rng(0).standard_normal(500))
    alpha, left, right = metrics.aggd_fit(x)
    assert alpha == 0.2 and np.isnan(left)
    assert right == pytest.approx(np.sqrt(np.mean(x**2)) * np.sqrt(math.gamma(5) / math.gamma(15)))
    alpha, left, right = metrics.aggd_fit(np.zeros(100))
    assert alpha == 0.2 and np.isnan(left) and np.isnan(right)
    # A flat image region gives such blocks; NIQE still averages their alpha columns.
    image = np.random.default_rng(1).normal(128, 30, (192, 192))
    image[:96] = 200.0
    features = metrics.niqe_features(image)
    assert (features[:, 0] == 0.2).any() and np.isnan(features[:, 1]).any()


def test_matlab_imresize_half_of_a_ramp():
    # imresize([0 1 2 3], 0.5): output 1 sits at u = 1.5; the antialiased cubic (a = -0.5) at
    # half scale has 8 taps at distances ±0.5, ±1.5, ±2.5, ±3.5 with weights (÷2 to sum 1)
    # 0.43359375, 0.11328125, -0.03515625, -0.01171875; the taps left of the edge mirror
    # (values 0, 1, 2 at indices 0, -1, -2), giving 59/128 = 0.4609375; the other output is 3 - that.
    ramp = np.arange(4.0)[None, :].repeat(4, axis=0)
    out = metrics.matlab_imresize(ramp, 0.5)
    np.testing.assert_allclose(out, [[0.4609375, 2.5390625]] * 2, atol=1e-12)
    assert metrics.matlab_imresize(np.ones((7, 9)), 0.5).shape == (4, 5)
    np.testing.assert_allclose(metrics.matlab_imresize(np.full((7, 9), 3.0), 0.5), 3.0)


def test_niqe_grows_with_noise_and_reads_the_sdist(tmp_path):
    from skimage.data import astronaut, camera

    # A "pristine" model fitted on another natural image (the real one comes from BasicSR's sdist).
    reference = metrics.niqe_features(metrics.to_matlab_gray(torch.from_numpy(astronaut()).permute(2, 0, 1) / 255))
    mu, cov = reference.mean(axis=0), np.cov(reference, rowvar=False)
    buffer = io.BytesIO()
    np.savez(buffer, mu_pris_param=mu[None], cov_pris_param=cov, gaussian_window=np.ones((7, 7)) / 49)
    sdist = tmp_path / "basicsr-1.4.2.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo(metrics.NIQE_PARAMS_MEMBER)
        info.size = buffer.getbuffer().nbytes
        buffer.seek(0)
        tar.addfile(info, buffer)
    params = metrics.load_niqe_params(sdist)
    np.testing.assert_allclose(params[0], mu)

    clean = camera()[:288, :288].astype(np.float64)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 20, clean.shape), 0, 255)
    assert metrics.niqe(noisy, params) > 1.5 * metrics.niqe(clean, params)
    with pytest.raises(ValueError, match="96x96"):
        metrics.niqe(clean[:64, :64], params)
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz"):
        pass
    with pytest.raises(CiinvError, match="has no"):
        metrics.load_niqe_params(tmp_path / "other.tar.gz")
