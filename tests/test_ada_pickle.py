"""NVlabs stylegan2-ada-pytorch .pkl: read without running the pickle, render like the .pt.

The pickles are built in NVlabs's real layout without NVlabs's code. Throwaway modules named
``torch_utils.persistence`` and ``dnnlib.util`` sit in ``sys.modules`` only while pickling;
the networks are nn.Modules with NVlabs's class names that reduce themselves the way NVlabs's
persistence decorator does: ``_reconstruct_persistent_obj(meta)``, with the module source and
the module's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, gains, ``_init_kwargs``)
in ``meta``. The weights come from a tiny rosinality checkpoint, renamed to ADA's layout here
(the inverse of the loader's table), so the .pkl and the .pt must give the same generator.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shlex
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import Parameter

from ciinv.errors import CiinvError
from ciinv.models.ada_pickle import load_ada_pickle
from ciinv.models.stylegan2 import load_stylegan2_rosinality
from ciinv.dev.tiny import write_tiny_stylegan2

NVLABS_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")

# NVlabs embeds each network's Python source in the pickle; this one leaves a file behind if
# anything ever executes it.
SOURCE_RAN = Path(tempfile.gettempdir()) / f"ciinv-test-ada-module-src-ran-{os.getpid()}"
MODULE_SRC = f"open({str(SOURCE_RAN)!r}, 'w').close()\n"


# ---------------------------------------------------------------------------------------------
# NVlabs's pickling, imitated


def _reconstruct_persistent_obj(meta):
    raise AssertionError("only referenced by name in the pickles; the loader must not call it")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    __module__ = "dnnlib.util"


@contextlib.contextmanager
def nvlabs_modules():
    """``torch_utils.persistence`` and ``dnnlib.util`` importable by name, for pickling only."""
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    fakes = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
             "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    assert not any(name in sys.modules for name in fakes)
    sys.modules.update(fakes)
    try:
        yield
    finally:
        for name in fakes:
            del sys.modules[name]


class Persistent(torch.nn.Module):
    """Reduces like a class under NVlabs's ``@persistence.persistent_class``."""

    def __init__(self, **init_kwargs):
        super().__init__()
        self._init_args = ()
        self._init_kwargs = init_kwargs

    def __reduce__(self):
        state = super().__reduce__()[2]  # the plain reduction's state: this module's __dict__
        meta = dict(type="class", version=6, module_src=MODULE_SRC, class_name=type(self).__name__, state=state)
        return _reconstruct_persistent_obj, (meta,), None


class Generator(Persistent): ...
class MappingNetwork(Persistent): ...
class FullyConnectedLayer(Persistent): ...
class SynthesisNetwork(Persistent): ...
class SynthesisBlock(Persistent): ...
class SynthesisLayer(Persistent): ...
class ToRGBLayer(Persistent): ...
class Discriminator(Persistent): ...
class AugmentPipe(Persistent): ...


def fully_connected(weight, bias, lr_multiplier: float, activation: str) -> FullyConnectedLayer:
    """ADA's layer applies weight * lr / sqrt(in) and bias * lr at run time (numpy gains)."""
    out_features, in_features = weight.shape
    fc = FullyConnectedLayer(in_features=in_features, out_features=out_features, activation=activation,
                             lr_multiplier=lr_multiplier)
    fc.activation = activation
    fc.weight = Parameter(weight.clone())
    fc.bias = Parameter(bias.clone())
    fc.weight_gain = lr_multiplier / np.sqrt(in_features)
    fc.bias_gain = lr_multiplier
    return fc


def ada_generator(ros: dict, latent_avg, *, mapping_lr: float = 0.01, num_fp16_res: int = 0,
                  channels_last: bool = False, conv_clamp=None) -> Generator:
    """Rosinality g_ema weights in ADA's module tree (mapping.fc{n}, synthesis.b{R}.conv0/...)."""
    n_mlp = sum(1 for key in ros if re.fullmatch(r"style\.\d+\.weight", key))
    log2 = 2 + len({key.split(".")[1] for key in ros if key.startswith("to_rgbs.")})
    z_dim, w_dim, num_ws = ros["style.1.weight"].shape[1], ros["style.1.weight"].shape[0], 2 * log2 - 2
    fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
    resample_filter = ros["to_rgbs.0.upsample.kernel"] / 4  # ADA's is normalised to sum 1

    mapping = MappingNetwork(z_dim=z_dim, c_dim=0, w_dim=w_dim, num_ws=num_ws, num_layers=n_mlp,
                             lr_multiplier=mapping_lr)
    mapping.z_dim, mapping.c_dim, mapping.w_dim, mapping.num_ws = z_dim, 0, w_dim, num_ws
    mapping.num_layers, mapping.w_avg_beta = n_mlp, 0.995
    rescale = 0.01 / mapping_lr  # same effective weights under a different learning-rate multiplier
    for n in range(n_mlp):
        setattr(mapping, f"fc{n}", fully_connected(ros[f"style.{n + 1}.weight"] * rescale,
                                                   ros[f"style.{n + 1}.bias"] * rescale, mapping_lr, "lrelu"))
    mapping.register_buffer("w_avg", latent_avg.clone())

    def layer(name: str, noise: int, res: int, up: int, fp16: bool) -> SynthesisLayer:
        sl = SynthesisLayer(resolution=res, up=up, conv_clamp=conv_clamp, channels_last=fp16 and channels_last)
        sl.resolution, sl.up, sl.use_noise, sl.activation = res, up, True, "lrelu"
        sl.conv_clamp, sl.padding, sl.act_gain = conv_clamp, 1, np.sqrt(2)
        sl.register_buffer("resample_filter", resample_filter.clone())
        sl.affine = fully_connected(ros[f"{name}.conv.modulation.weight"], ros[f"{name}.conv.modulation.bias"],
                                    1.0, "linear")
        weight = ros[f"{name}.conv.weight"][0].clone()
        sl.weight = Parameter(weight.to(memory_format=torch.channels_last) if fp16 and channels_last else weight)
        sl.register_buffer("noise_const", ros[f"noises.noise_{noise}"][0, 0].clone())
        sl.noise_strength = Parameter(ros[f"{name}.noise.weight"].reshape(()).clone())
        sl.bias = Parameter(ros[f"{name}.activate.bias"].clone())
        return sl

    def to_rgb(name: str) -> ToRGBLayer:
        weight = ros[f"{name}.conv.weight"][0].clone()
        tr = ToRGBLayer(in_channels=weight.shape[1], out_channels=3, conv_clamp=conv_clamp)
        tr.conv_clamp = conv_clamp
        tr.affine = fully_connected(ros[f"{name}.conv.modulation.weight"], ros[f"{name}.conv.modulation.bias"],
                                    1.0, "linear")
        tr.weight = Parameter(weight)
        tr.bias = Parameter(ros[f"{name}.bias"].reshape(3).clone())
        tr.weight_gain = 1 / np.sqrt(weight.shape[1])
        return tr

    synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=2**log2, img_channels=3, num_fp16_res=num_fp16_res,
                                 conv_clamp=conv_clamp)
    synthesis.w_dim, synthesis.img_resolution, synthesis.num_ws = w_dim, 2**log2, num_ws
    for k in range(log2 - 1):
        res = 4 * 2**k
        fp16 = res >= fp16_resolution
        block = SynthesisBlock(resolution=res, use_fp16=fp16, conv_clamp=conv_clamp)
        block.resolution, block.architecture, block.use_fp16, block.channels_last = res, "skip", fp16, fp16
        block.register_buffer("resample_filter", resample_filter.clone())
        if k == 0:
            block.const = Parameter(ros["input.input"][0].clone())
            block.conv1 = layer("conv1", 0, res, 1, fp16)
            block.torgb = to_rgb("to_rgb1")
        else:
            block.conv0 = layer(f"convs.{2 * k - 2}", 2 * k - 1, res, 2, fp16)
            block.conv1 = layer(f"convs.{2 * k - 1}", 2 * k, res, 1, fp16)
            block.torgb = to_rgb(f"to_rgbs.{k - 1}")
        setattr(synthesis, f"b{res}", block)

    G = Generator(z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=2**log2, img_channels=3,
                  mapping_kwargs=EasyDict(num_layers=n_mlp, lr_multiplier=mapping_lr),
                  synthesis_kwargs=EasyDict(channel_base=512, channel_max=16, num_fp16_res=num_fp16_res,
                                            conv_clamp=conv_clamp))
    G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels = z_dim, 0, w_dim, 2**log2, 3
    G.synthesis = synthesis
    G.num_ws = num_ws
    G.mapping = mapping
    return G


def snapshot(G_ema, G=None, **changes) -> dict:
    """The dict stylegan2-ada-pytorch's training loop pickles, with a token D and augment pipe."""
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3)
    D.fromrgb_weight = Parameter(torch.randn(4, 3, 1, 1))
    D.weight_gain, D.conv_clamp = 1 / np.sqrt(3), None
    augment_pipe = AugmentPipe(xflip=1)
    augment_pipe.register_buffer("p", torch.zeros([]))
    data = dict(G=G if G is not None else G_ema, D=D, G_ema=G_ema,
                training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="ffhq.zip",
                                         resolution=32, use_labels=False, max_size=70000, xflip=True),
                augment_pipe=augment_pipe)
    data.update(changes)
    return data


def write_pkl(path: Path, data, protocol: int = 4) -> Path:
    with nvlabs_modules(), path.open("wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return path


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(path of a tiny rosinality .pt, its g_ema state dict, its latent_avg)."""
    path = tmp_path_factory.mktemp("ada") / "tiny.pt"
    write_tiny_stylegan2(path, resolution=32, w_dim=64, n_mlp=2, max_channels=16, seed=0)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return path, ckpt["g_ema"], ckpt["latent_avg"]


@pytest.fixture(autouse=True)
def nothing_ran():
    """After every test: NVlabs's code was neither imported nor executed."""
    yield
    assert not any(name in sys.modules for name in NVLABS_MODULES)
    assert not SOURCE_RAN.exists(), "the module source embedded in the pickle was executed"


def random_ws(G, n: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, G.num_ws, G.w_dim, generator=g)


# ---------------------------------------------------------------------------------------------
# Same weights, same generator


@pytest.mark.parametrize("protocol", [3, pickle.HIGHEST_PROTOCOL])  # 3: Python 3.7, ADA's own environment
def test_pkl_gives_the_generator_of_the_same_rosinality_weights(tiny, tmp_path, protocol):
    pt, ros, latent_avg = tiny
    G_ema = ada_generator(ros, latent_avg)
    pkl = write_pkl(tmp_path / "net.pkl", snapshot(G_ema, G=ada_generator(ros, latent_avg)), protocol)
    raw = pkl.read_bytes()
    assert b"_reconstruct_persistent_obj" in raw and b"EasyDict" in raw and b"_load_from_bytes" in raw

    G, ref = load_ada_pickle(pkl), load_stylegan2_rosinality(pt)

    assert (G.resolution, G.num_ws, G.w_dim, G.z_dim, G.n_mlp) == (32, 8, 64, 64, 2)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    ours, theirs = G.state_dict(), ref.state_dict()
    assert ours.keys() == theirs.keys()
    for key in theirs:  # noise maps and blur kernels included
        assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(G.w_avg, latent_avg)

    z = torch.randn(5, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G.mapping(z), ref.mapping(z))
        ws = random_ws(G)
        assert (G(ws) - ref(ws)).abs().max() <= 1e-6


@pytest.mark.parametrize("options", [dict(mapping_lr=0.1), dict(num_fp16_res=2, channels_last=True)],
                         ids=["mapping-lr-0.1", "fp16-channels-last"])
def test_supported_variants_render_the_same(tiny, tmp_path, options):
    """A different mapping lr multiplier (gains folded into the weights) and fp16 blocks with
    channels-last weights (computed in float32) give the same generator."""
    pt, ros, latent_avg = tiny
    pkl = write_pkl(tmp_path / "net.pkl", snapshot(ada_generator(ros, latent_avg, **options)))
    G, ref = load_ada_pickle(pkl), load_stylegan2_rosinality(pt)
    z = torch.randn(5, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(z), ref.mapping(z), rtol=1e-5, atol=1e-5)
        ws = random_ws(G)
        assert (G(ws) - ref(ws)).abs().max() <= 1e-5


# ---------------------------------------------------------------------------------------------
# conv_clamp (ADA's default 256; metfaces.pkl, afhq*.pkl, most fine-tuned snapshots)


def clamped_reference(G, clamp: float, record: dict):
    """Hooks that make the unclamped rosinality generator ``G`` compute NVlabs's clamped maths:
    each StyledConv's bias + lrelu * sqrt(2) output clipped to +-clamp, and each ToRGB's conv +
    bias clipped before the upsampled skip is added. ``record`` counts the values each kind of
    clip changed. Returns the hook handles."""

    def clip(kind, x):
        record[kind] += int((x.abs() > clamp).sum())
        return x.clamp(-clamp, clamp)

    def styled_conv(module, args, out):  # module: FusedLeakyReLU
        return clip("conv", out)

    def to_rgb(module, args, out):  # recomputed from the layer's own pieces, with the clip in place
        x, w, *skip = args
        own = clip("rgb", module.conv(x, w) + module.bias)
        return own + module.upsample(skip[0]) if skip and skip[0] is not None else own

    handles = [layer.activate.register_forward_hook(styled_conv) for layer in [G.conv1, *G.convs]]
    handles += [layer.register_forward_hook(to_rgb) for layer in [G.to_rgb1, *G.to_rgbs]]
    return handles


@pytest.mark.parametrize("clamp, num_fp16_res", [(0.25, 0), (0.25, 2), (256, 2)],
                         ids=["clamp-0.25", "clamp-0.25-fp16", "clamp-256-fp16"])
def test_conv_clamp_is_read_and_applied_like_nvlabs(tiny, tmp_path, clamp, num_fp16_res):
    pt, ros, latent_avg = tiny
    G_ema = ada_generator(ros, latent_avg, conv_clamp=clamp, num_fp16_res=num_fp16_res, channels_last=True)
    pkl = write_pkl(tmp_path / "net.pkl", snapshot(G_ema))
    G, unclamped = load_ada_pickle(pkl), load_stylegan2_rosinality(pt)
    assert G.conv_clamp == clamp and unclamped.conv_clamp is None
    ours, theirs = G.state_dict(), unclamped.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in theirs)

    ws = random_ws(G)
    record = {"conv": 0, "rgb": 0}
    handles = clamped_reference(unclamped, clamp, record)
    try:
        with torch.no_grad():
            reference = unclamped(ws)
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        image, plain = G(ws), unclamped(ws)

    assert (image - reference).abs().max() <= 1e-5
    if clamp == 256:  # ADA's value never bites on this tiny net: same image as without a clamp
        assert record == {"conv": 0, "rgb": 0}
        assert (image - plain).abs().max() <= 1e-6
    else:  # both kinds of clip are active, and they change the image
        assert record["conv"] > 0 and record["rgb"] > 0
        assert (image - plain).abs().max() > 0.1
        assert image.abs().max() > clamp  # the RGB skip sum itself is not clipped


def _set_clamp(G, clamp, where=lambda path: True):
    for path, module in G.named_modules():
        if isinstance(module, (SynthesisLayer, ToRGBLayer)) and where(path):
            module.conv_clamp = clamp


def test_layers_that_disagree_on_conv_clamp_are_refused_and_named(tiny, tmp_path):
    _, ros, latent_avg = tiny
    G_ema = ada_generator(ros, latent_avg, conv_clamp=256)
    _set_clamp(G_ema, 128, lambda path: path == "synthesis.b16.conv0")
    _set_clamp(G_ema, None, lambda path: path == "synthesis.b32.torgb")
    pkl = write_pkl(tmp_path / "net.pkl", snapshot(G_ema))
    with pytest.raises(CiinvError, match="conv_clamp differs between layers") as err:
        load_ada_pickle(pkl)
    message = str(err.value)
    assert str(pkl) in message
    assert "128.0 in G_ema.synthesis.b16.conv0;" in message
    assert "None in G_ema.synthesis.b32.torgb" in message
    assert "256.0 in G_ema.synthesis.b4.conv1, G_ema.synthesis.b4.torgb, G_ema.synthesis.b8.conv0" in message


@pytest.mark.parametrize("value", [-1.0, "256", float("inf")], ids=["negative", "string", "inf"])
def test_a_conv_clamp_that_is_not_a_number_at_least_zero_is_refused(tiny, tmp_path, value):
    _, ros, latent_avg = tiny
    G_ema = ada_generator(ros, latent_avg)
    _set_clamp(G_ema, value)
    pkl = write_pkl(tmp_path / "net.pkl", snapshot(G_ema))
    with pytest.raises(CiinvError, match=re.escape(f"conv_clamp={value!r} (not a number >= 0)")) as err:
        load_ada_pickle(pkl)
    assert "G_ema.synthesis.b4.conv1" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Safety


class Evil:
    """Unpickling this calls ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def evil_payloads(marker: Path):
    """(pickled object, the global it asks for); each would create ``marker`` if run."""
    m = str(marker)
    return [
        (Evil(os.system, f"touch {shlex.quote(m)}"), f"{os.system.__module__}.system"),  # posix.system
        (Evil(eval, f"open({m!r}, 'w').close()"), "builtins.eval"),
        (Evil(subprocess.Popen, ["touch", m]), "subprocess.Popen"),
    ]


@pytest.mark.parametrize("case", range(3), ids=["os.system", "builtins.eval", "subprocess.Popen"])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tiny, tmp_path, case):
    _, ros, latent_avg = tiny
    marker = tmp_path / "pwned"
    evil, name = evil_payloads(marker)[case]
    # Last in the snapshot, so every network before it has been read when it comes up.
    pkl = write_pkl(tmp_path / "evil.pkl", snapshot(ada_generator(ros, latent_avg), augment_pipe=evil))
    with pytest.raises(CiinvError, match=re.escape(name)) as err:
        load_ada_pickle(pkl)
    assert str(pkl) in str(err.value)
    assert not marker.exists()


def test_a_hand_written_protocol_0_os_system_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(CiinvError, match=r"'os\.system'"):
        load_ada_pickle(pkl)
    assert not marker.exists()


def test_a_class_outside_the_allow_list_is_refused(tiny, tmp_path):
    _, ros, latent_avg = tiny
    G_ema = ada_generator(ros, latent_avg)
    G_ema.synthesis.extra = torch.nn.Linear(2, 2)  # a plain torch module, not a persistent network
    pkl = write_pkl(tmp_path / "net.pkl", snapshot(G_ema))
    with pytest.raises(CiinvError, match=r"torch\.nn\.modules\.linear\.Linear"):
        load_ada_pickle(pkl)


def test_a_persistent_id_in_the_outer_pickle_is_refused(tmp_path):
    class WithIds(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", "x") if isinstance(obj, torch.Tensor) else None

    pkl = tmp_path / "ids.pkl"
    with pkl.open("wb") as f:
        WithIds(f).dump({"G_ema": torch.zeros(3)})
    with pytest.raises(CiinvError, match="persistent id"):
        load_ada_pickle(pkl)


# ---------------------------------------------------------------------------------------------
# Networks we do not run, and broken files


def test_unknown_weights_in_G_ema_are_named(tiny, tmp_path):
    _, ros, latent_avg = tiny
    G_ema = ada_generator(ros, latent_avg)
    G_ema.synthesis.b8.extra = FullyConnectedLayer()
    G_ema.synthesis.b8.extra.weight = Parameter(torch.zeros(2, 2))
    pkl = write_pkl(tmp_path / "net.pkl", snapshot(G_ema))
    with pytest.raises(CiinvError, match=r"synthesis\.b8\.extra\.weight"):
        load_ada_pickle(pkl)


def test_missing_G_ema_is_a_clear_error(tiny, tmp_path):
    _, ros, latent_avg = tiny
    data = snapshot(ada_generator(ros, latent_avg))
    del data["G_ema"]
    pkl = write_pkl(tmp_path / "no_ema.pkl", data)
    with pytest.raises(CiinvError, match="no 'G_ema'") as err:
        load_ada_pickle(pkl)
    assert str(pkl) in str(err.value) and "'D'" in str(err.value)


def _conditional(G):
    G.c_dim = 10


def _resnet(G):
    G.synthesis.b16.architecture = "resnet"


@pytest.mark.parametrize("change, setting", [(_conditional, "c_dim=10"), (_resnet, "architecture='resnet'")],
                         ids=["conditional", "resnet"])
def test_settings_that_change_the_maths_are_refused(tiny, tmp_path, change, setting):
    _, ros, latent_avg = tiny
    G_ema = ada_generator(ros, latent_avg)
    change(G_ema)
    pkl = write_pkl(tmp_path / "net.pkl", snapshot(G_ema))
    with pytest.raises(CiinvError, match=re.escape(setting)) as err:
        load_ada_pickle(pkl)
    assert str(pkl) in str(err.value)


def test_truncated_missing_and_foreign_files(tiny, tmp_path):
    _, ros, latent_avg = tiny
    good = write_pkl(tmp_path / "net.pkl", snapshot(ada_generator(ros, latent_avg)))
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.pkl"
    text.write_text("not a pickle\n")
    for path, message in [(truncated, "cannot be read"), (text, "cannot be read"),
                          (tmp_path / "absent.pkl", "not found")]:
        with pytest.raises(CiinvError, match=message) as err:
            load_ada_pickle(path)
        assert str(path) in str(err.value)
