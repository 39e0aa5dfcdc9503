"""NVlabs stylegan2-ada-pytorch ``.pkl`` snapshots, read without running anything from the pickle.

File format (NVlabs/stylegan2-ada-pytorch, ``training_loop.py`` and the released ``ffhq.pkl``):
one ``pickle.dump`` of ::

    {"G": net, "D": net, "G_ema": net, "training_set_kwargs": dict | None, "augment_pipe": net | None}

Every network is a ``torch_utils.persistence`` object. It pickles as
``_reconstruct_persistent_obj(meta)`` with ``meta = {type: "class", version, module_src,
class_name, state}``: ``module_src`` is the Python source of the module that defines the class
(NVlabs's loader executes it) and ``state`` is the nn.Module's ``__dict__`` (``_parameters``,
``_buffers``, ``_modules`` OrderedDicts, plain attributes such as ``weight_gain`` or
``conv_clamp``, and the constructor's ``_init_kwargs``).

Safety. The unpickler resolves only the names in ``ALLOWED_GLOBALS``, each to a function or
type of ours or to an inert data type; any other global (``os.system``, ``builtins.eval``, a
class from the training code, ...) stops the load with a CiinvError that names it, before it
is imported or called. ``_reconstruct_persistent_obj`` becomes a function that returns
``meta`` unchanged, so ``module_src`` stays a string and is never executed. Tensors arrive as
``torch.storage._load_from_bytes(payload)``, where the payload is a legacy ``torch.save`` file
of one storage; it is parsed here by the same restricted unpickler, with a
``persistent_load`` for the storage reference. Nothing is ever imported from
``torch_utils`` or ``dnnlib``, and ``pickle.load`` with the default ``find_class`` is never used.

The generator ``G_ema`` is then flattened to its ``state_dict`` names (``mapping.fc0.weight``,
``synthesis.b8.conv0.affine.bias``, ...), renamed to rosinality's layout and handed to
``stylegan2.generator_from_state_dict``: see ``rosinality_state_from_ada`` for the table.

Supported networks: unconditional (``c_dim == 0``) StyleGAN2 generators with the ``skip``
architecture and leaky-ReLU layers: NVlabs's ``ffhq.pkl`` (the TF config-f FFHQ 1024,
converted, ``conv_clamp=None``), ADA-trained snapshots such as ``metfaces.pkl`` and ``afhq*.pkl``
(``conv_clamp=256``, ADA's default unless ``--fp32``) and fine-tuned ones. Any resolution,
channel counts, z/w sizes, mapping depth and mapping learning-rate multiplier (the run-time
gains are folded into the stored weights).

``conv_clamp`` is read from the synthesis layers (``synthesis.b{R}.conv0/conv1/torgb``, each
stores it as an attribute; all must agree, as NVlabs's training code always makes them) and
handed to our Generator, which clips where NVlabs's layers do: each SynthesisLayer's
``lrelu(x + b) * sqrt(2)`` and each ToRGBLayer's ``x + b`` to [-clamp, clamp]; the RGB skip
sum is not clipped.

FP16 blocks (``num_fp16_res > 0``) are accepted, but we always compute in float32, i.e. what
NVlabs's code computes with ``force_fp32=True`` (its fp16 path otherwise only rescales weights
and styles before demodulation, which cancels out). Images then differ from NVlabs's default
fp16 run by fp16 rounding only.

Refused with a CiinvError: layers that disagree on ``conv_clamp`` (or hold a value that is not
a number >= 0); conditional networks; the ``orig``/``resnet`` synthesis architectures; other
activations.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ciinv.errors import CiinvError
from ciinv.models.stylegan2 import MAPPING_LR_MUL, Generator, generator_from_state_dict

# The rosinality blur / upsample kernels are ADA's normalised resample_filter times up^2 = 4.
KERNEL_GAIN = 4.0

# ----------------------------------------------------------------------------------------------
# Allowed pickle globals, each mapped to what it becomes here


class _RefusedGlobal(Exception):
    """The pickle asked for a global outside the allow-list; args[0] is "module.name"."""


def _persistent_obj_meta(meta):
    """Stands in for ``torch_utils.persistence._reconstruct_persistent_obj``: returns ``meta``
    (type, version, module_src, class_name, state) as it is; ``module_src`` is never run."""
    return meta


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None) -> Tensor:
    """Stands in for ``torch._utils._rebuild_tensor_v2``: a strided view of ``storage``.

    ``storage`` is the 1-D tensor ``_storage_from_bytes`` returned; ``as_strided`` checks that
    the view stays inside it. Hooks and metadata are dropped.
    """
    if not isinstance(storage, Tensor) or storage.ndim != 1:
        raise ValueError(f"a tensor refers to {type(storage).__name__}, not to a tensor storage")
    return torch.as_strided(storage, tuple(size), tuple(stride), int(storage_offset))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None) -> Tensor:
    """Stands in for ``torch._utils._rebuild_parameter(_with_state)``: the plain tensor."""
    if not isinstance(data, Tensor):
        raise ValueError(f"a parameter holds {type(data).__name__}, not a tensor")
    return data


def _numpy_scalar(dtype, data=None):
    """Stands in for numpy's ``multiarray.scalar(dtype, raw bytes)``; a Python number.

    NVlabs's layers keep run-time gains as numpy float64 (``1 / np.sqrt(fan_in)``).
    """
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise ValueError(f"unsupported numpy scalar of dtype {dtype!r}")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


def _numpy_empty_array(cls, shape, dtype):
    """Stands in for numpy's ``multiarray._reconstruct``: an empty ndarray that the pickle's
    BUILD step fills through ``ndarray.__setstate__``."""
    if cls is not np.ndarray:
        raise ValueError(f"unsupported numpy array type {cls!r}")
    return np.ndarray(shape, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# Storage payloads: legacy torch.save files holding one storage

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def _storage_from_bytes(payload: bytes) -> Tensor:
    """One storage from torch's legacy ``torch.save`` bytes -> 1-D tensor of its dtype.

    Layout: pickles of the magic number, the protocol version (1001) and a sys-info dict; the
    pickled object, here just the persistent id ``('storage', <Storage class>, key, location,
    numel, view)``; the pickled list of storage keys; then per key an int64 element count and
    the raw little-endian bytes.
    """
    if not isinstance(payload, bytes):
        raise ValueError(f"a storage payload is {type(payload).__name__}, not bytes")
    f = io.BytesIO(payload)

    def next_pickle(allowed=None, storage_refs=False):
        return _RestrictedUnpickler(f, allowed or {}, storage_refs).load()

    magic, protocol, sys_info = next_pickle(), next_pickle(), next_pickle()
    if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
        raise ValueError("a tensor storage is not in torch's legacy serialization format")
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise ValueError("a tensor storage was written on a big-endian machine")

    ref = next_pickle(STORAGE_DTYPES, storage_refs=True)
    if not (isinstance(ref, tuple) and len(ref) == 6 and ref[0] == "storage" and isinstance(ref[1], torch.dtype)):
        raise ValueError(f"unexpected storage reference {ref!r}")
    _, dtype, key, _location, numel, view = ref
    keys = next_pickle()
    if keys != [key]:
        raise ValueError(f"a storage payload lists storages {keys!r}, expected [{key!r}]")

    (count,) = struct.unpack("<q", f.read(8))
    nbytes = count * dtype.itemsize
    if count != numel or count < 0 or nbytes > len(payload) - f.tell():
        raise ValueError(f"a storage of {numel} elements has {count} recorded and "
                         f"{len(payload) - f.tell()} bytes left")
    storage = torch.frombuffer(bytearray(f.read(nbytes)), dtype=dtype) if count else torch.empty(0, dtype=dtype)
    if view is not None:  # pre-1.0 torch: a slice of a larger storage
        _view_key, offset, size = view
        storage = storage[offset:offset + size]
    return storage


# Storage classes as they appear inside the storage payloads -> element type.
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "torch.FloatStorage": torch.float32,
    "torch.DoubleStorage": torch.float64,
    "torch.HalfStorage": torch.float16,
    "torch.BFloat16Storage": torch.bfloat16,
    "torch.LongStorage": torch.int64,
    "torch.IntStorage": torch.int32,
    "torch.ShortStorage": torch.int16,
    "torch.CharStorage": torch.int8,
    "torch.ByteStorage": torch.uint8,
    "torch.BoolStorage": torch.bool,
}

ALLOWED_GLOBALS: dict[str, object] = {
    # NVlabs's own two names.
    "torch_utils.persistence._reconstruct_persistent_obj": _persistent_obj_meta,
    "dnnlib.util.EasyDict": dict,
    # Containers. Python 3.7 (ADA's environment) pickles sets with protocol 3 as builtins.set.
    "collections.OrderedDict": collections.OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    # Tensors inside a plain pickle.
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch.storage._load_from_bytes": _storage_from_bytes,
    # numpy scalars and arrays (numpy 1.x writes numpy.core, numpy 2.x numpy._core).
    "numpy.dtype": np.dtype,
    "numpy.ndarray": np.ndarray,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
    "numpy.core.multiarray._reconstruct": _numpy_empty_array,
    "numpy._core.multiarray._reconstruct": _numpy_empty_array,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose globals come only from ``allowed`` ("module.name" -> object).

    ``storage_refs``: accept torch's persistent ids for storages (inside a storage payload) and
    return them as they are; a plain pickle with a persistent id is refused.
    """

    def __init__(self, file, allowed: dict[str, object], storage_refs: bool = False):
        super().__init__(file)
        self.allowed = allowed
        self.storage_refs = storage_refs

    def find_class(self, module: str, name: str):
        qualified = f"{module}.{name}"
        if qualified not in self.allowed:
            raise _RefusedGlobal(qualified)
        return self.allowed[qualified]

    def persistent_load(self, pid):
        if not self.storage_refs:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a plain pickle")
        return pid


def read_ada_pickle(path) -> dict:
    """Unpickle an NVlabs snapshot with the restricted unpickler; networks stay ``meta`` dicts.

    Returns the snapshot dict, e.g. ``{"G": meta, "D": meta, "G_ema": meta, ...}``, where each
    meta is ``{type, version, module_src, class_name, state}`` and tensors are CPU tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CiinvError(f"{path}: StyleGAN2 pickle not found; point the config at an NVlabs "
                         "stylegan2-ada-pytorch .pkl (e.g. ffhq.pkl) or a rosinality .pt")
    try:
        with path.open("rb") as f:
            return _RestrictedUnpickler(f, ALLOWED_GLOBALS).load()
    except _RefusedGlobal as exc:
        raise CiinvError(
            f"{path}: refused to load: the pickle asks for '{exc.args[0]}', which a stylegan2-ada-pytorch "
            "snapshot never needs (nothing from the file was run). Only NVlabs stylegan2-ada-pytorch "
            ".pkl files can be read; convert anything else (e.g. a TensorFlow StyleGAN2 .pkl) to "
            "rosinality's .pt in an environment you trust"
        ) from None
    except Exception as exc:  # truncated, corrupt, or not a pickle at all
        raise CiinvError(f"{path}: cannot be read as a stylegan2-ada-pytorch pickle ({type(exc).__name__}: "
                         f"{exc}); re-download it") from exc


# ----------------------------------------------------------------------------------------------
# The network tree -> flat tensors


def _is_persistent_meta(obj) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "class" and isinstance(obj.get("state"), dict)


def flatten_network(meta: dict, source) -> tuple[dict[str, Tensor], dict[str, dict]]:
    """A persistent network's tree -> (tensors, attributes).

    ``tensors``: every parameter and persistent buffer under its ``state_dict`` key
    (``synthesis.b4.conv1.weight``). ``attributes``: per module path ("" for the root,
    "mapping.fc0", ...) the rest of its state (``weight_gain``, ``conv_clamp``, ``_init_kwargs``...).
    """
    tensors: dict[str, Tensor] = {}
    attributes: dict[str, dict] = {}
    ancestors: set[int] = set()  # a pickle can make a module its own child

    def visit(node: dict, path: str) -> None:
        if id(node) in ancestors:
            raise CiinvError(f"{source}: G_ema's module '{path}' contains itself; the file is damaged")
        state = node["state"]
        attributes[path] = {k: v for k, v in state.items() if k not in ("_parameters", "_buffers", "_modules")}
        prefix = f"{path}." if path else ""
        skipped = set(state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in dict(state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in skipped):
                    continue
                if not isinstance(value, Tensor):
                    raise CiinvError(f"{source}: G_ema's '{prefix}{name}' is a {type(value).__name__}, not a tensor")
                tensors[prefix + name] = value
        for name, child in dict(state.get("_modules") or {}).items():
            if child is None:
                continue
            if not _is_persistent_meta(child):
                raise CiinvError(f"{source}: G_ema's submodule '{prefix}{name}' is not a stylegan2-ada-pytorch "
                                 f"network object ({type(child).__name__})")
            ancestors.add(id(node))
            visit(child, prefix + name)
            ancestors.discard(id(node))

    visit(meta, "")
    return tensors, attributes


# ----------------------------------------------------------------------------------------------
# ADA names -> rosinality names

_MAPPING_FC = re.compile(r"mapping\.fc(\d+)\.(weight|bias)")
_BLOCK = re.compile(r"synthesis\.b(\d+)\.(.+)")
_LAYER = re.compile(r"(conv0|conv1|torgb)\.(.+)")


def _fold_gain(value: Tensor, kind: str, attrs: dict, lr_mul: float) -> Tensor:
    """ADA's FullyConnectedLayer multiplies at run time by ``weight_gain`` (lr / sqrt(fan_in))
    and ``bias_gain`` (lr); our EqualLinear by ``lr_mul / sqrt(fan_in)`` and ``lr_mul``.
    Rescale the stored value so both give the same effective weight (x1 in the usual case)."""
    if kind == "weight":
        gain = attrs.get("weight_gain")
        return value if gain is None else value * (float(gain) * math.sqrt(value.shape[1]) / lr_mul)
    gain = attrs.get("bias_gain")
    return value if gain is None else value * (float(gain) / lr_mul)


def _synthesis_entries(res: int, rest: str, value: Tensor, attributes: dict) -> list[tuple[str, Tensor]] | None:
    """One ``synthesis.b{res}.{rest}`` tensor -> its rosinality (name, tensor) pairs.

    [] when rosinality has no counterpart (the filters of layers that do not resample), None
    when the name is unknown. Block b{res}, k = log2(res) - 2: b4 holds input, conv1 (noise 0)
    and to_rgb1; b{res > 4} holds convs.{2k-2} (the up-conv, noise 2k-1), convs.{2k-1}
    (noise 2k) and to_rgbs.{k-1}.
    """
    if res < 4 or res & (res - 1):
        return None
    k = res.bit_length() - 3
    if rest == "const":
        return [("input.input", value.unsqueeze(0))] if k == 0 else None
    if rest == "resample_filter":  # upsamples the RGB skip coming into this block
        return [] if k == 0 else [(f"to_rgbs.{k - 1}.upsample.kernel", value * KERNEL_GAIN)]
    m = _LAYER.fullmatch(rest)
    if m is None:
        return None
    layer, field = m.groups()
    if layer == "torgb":
        name, noise = ("to_rgb1" if k == 0 else f"to_rgbs.{k - 1}"), None
    elif k == 0:
        if layer == "conv0":
            return None
        name, noise = "conv1", 0
    else:
        c = int(layer[-1])
        name, noise = f"convs.{2 * k - 2 + c}", 2 * k - 1 + c

    if field in ("affine.weight", "affine.bias"):
        kind = field.split(".")[1]
        attrs = attributes.get(f"synthesis.b{res}.{layer}.affine", {})
        return [(f"{name}.conv.modulation.{kind}", _fold_gain(value, kind, attrs, 1.0))]
    if field == "weight":
        return [(f"{name}.conv.weight", value.unsqueeze(0))]
    if layer == "torgb":
        return [(f"{name}.bias", value.reshape(1, -1, 1, 1))] if field == "bias" else None
    if field == "bias":
        return [(f"{name}.activate.bias", value)]
    if field == "noise_strength":
        return [(f"{name}.noise.weight", value.reshape(1))]
    if field == "noise_const":
        return [(f"noises.noise_{noise}", value.reshape(1, 1, *value.shape))]
    if field == "resample_filter":  # only the up-conv (conv0) resamples
        return [(f"{name}.conv.blur.kernel", value * KERNEL_GAIN)] if layer == "conv0" else []
    return None


def rosinality_state_from_ada(tensors: dict[str, Tensor], attributes: dict[str, dict],
                              source) -> tuple[dict[str, Tensor], Tensor | None]:
    """ADA ``G_ema`` tensors -> (rosinality ``g_ema`` state dict, latent_avg [w_dim] or None).

    ========================================  ===============================================
    ADA (R = 4 * 2^k)                         rosinality
    ========================================  ===============================================
    mapping.fc{n}.weight / .bias              style.{n+1}.weight / .bias  (gains folded)
    mapping.w_avg [w]                         latent_avg
    synthesis.b4.const [C, 4, 4]              input.input [1, C, 4, 4]
    b4.conv1 / b{R}.conv0 / b{R}.conv1        conv1 / convs.{2k-2} / convs.{2k-1}
      .weight [O, I, 3, 3]                      .conv.weight [1, O, I, 3, 3]
      .bias / .affine.*                         .activate.bias / .conv.modulation.*
      .noise_strength [] / .noise_const [R, R]  .noise.weight [1] / noises.noise_{0|2k-1|2k} [1, 1, R, R]
      .resample_filter (conv0 only)             .conv.blur.kernel (x4)
    b4.torgb / b{R}.torgb                     to_rgb1 / to_rgbs.{k-1}
      .weight [3, C, 1, 1] / .bias [3]          .conv.weight [1, 3, C, 1, 1] / .bias [1, 3, 1, 1]
    b{R}.resample_filter [4, 4]               to_rgbs.{k-1}.upsample.kernel (x4)
    ========================================  ===============================================

    No kernel flip: both conversions from TF already flip the up-conv weights the same way.
    Any other name is a CiinvError listing it.
    """
    state: dict[str, Tensor] = {}
    latent_avg = None
    unknown = []
    for key, value in tensors.items():
        if key == "mapping.w_avg":
            latent_avg = value
        elif m := _MAPPING_FC.fullmatch(key):
            n, kind = int(m.group(1)), m.group(2)
            attrs = attributes.get(f"mapping.fc{n}", {})
            state[f"style.{n + 1}.{kind}"] = _fold_gain(value, kind, attrs, MAPPING_LR_MUL)
        elif (m := _BLOCK.fullmatch(key)) and (entries := _synthesis_entries(int(m.group(1)), m.group(2), value,
                                                                            attributes)) is not None:
            state.update(entries)
        else:
            unknown.append(key)
    if unknown:
        raise CiinvError(
            f"{source}: G_ema has weights a StyleGAN2 generator does not have: {', '.join(unknown)}; only "
            "unconditional stylegan2-ada-pytorch generators with the 'skip' architecture are supported "
            "(StyleGAN3 and other networks are not)"
        )
    return state, latent_avg


_LRELU_LAYER = re.compile(r"mapping\.fc\d+|synthesis\.b\d+\.conv[01]")
_CLAMPED_LAYER = re.compile(r"synthesis\.b\d+\.(conv0|conv1|torgb)")


def _conv_clamp_groups(attributes: dict[str, dict]) -> list[tuple[object, list[str]]]:
    """[(conv_clamp, module paths that hold it)], one entry per distinct value.

    Looks at every synthesis layer (a missing attribute counts as None) and at any other module
    that has a ``conv_clamp`` attribute. Numbers are made floats (256 and 256.0 agree); any other
    non-None value is kept as it is, for the error message.
    """
    groups: dict[object, tuple[object, list[str]]] = {}
    for path, attrs in attributes.items():
        if not (_CLAMPED_LAYER.fullmatch(path) or "conv_clamp" in attrs):
            continue
        value = attrs.get("conv_clamp")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        key = value if value is None or isinstance(value, float) else repr(value)  # hashable
        groups.setdefault(key, (value, []))[1].append(path)
    return list(groups.values())


def _conv_clamp(attributes: dict[str, dict]) -> float | None:
    """G_ema's one conv_clamp (None = no clipping); call after ``_unsupported_settings`` passed."""
    groups = _conv_clamp_groups(attributes)
    return groups[0][0] if groups else None


def _unsupported_settings(attributes: dict[str, dict]) -> list[str]:
    """Settings of G_ema that change the maths our Generator implements, one line each."""
    problems = []
    c_dim = attributes.get("", {}).get("c_dim", 0)
    if c_dim:
        problems.append(f"G_ema: c_dim={c_dim} (a conditional network)")

    def where(path: str) -> str:
        return f"G_ema.{path}" if path else "G_ema"

    clamps = _conv_clamp_groups(attributes)
    for value, paths in clamps:
        if value is not None and not (isinstance(value, float) and math.isfinite(value) and value >= 0):
            problems.append(f"{', '.join(map(where, paths))}: conv_clamp={value!r} (not a number >= 0)")
    if len(clamps) > 1:
        listing = "; ".join(f"{value!r} in {', '.join(map(where, paths))}" for value, paths in clamps)
        problems.append(f"conv_clamp differs between layers ({listing}); NVlabs's code gives all layers one value")

    for path, attrs in attributes.items():
        if re.fullmatch(r"synthesis\.b\d+", path) and attrs.get("architecture", "skip") != "skip":
            problems.append(f"{where(path)}: architecture={attrs['architecture']!r} (only 'skip')")
        if _LRELU_LAYER.fullmatch(path) and attrs.get("activation", "lrelu") != "lrelu":
            problems.append(f"{where(path)}: activation={attrs['activation']!r} (only 'lrelu')")
    return problems


# ----------------------------------------------------------------------------------------------
# Loader


def load_ada_pickle(path) -> Generator:
    """Load ``G_ema`` of an NVlabs stylegan2-ada-pytorch ``.pkl`` as our Generator.

    CPU, eval mode, frozen, constant noise = the network's ``noise_const`` buffers (NVlabs's
    ``noise_mode='const'``), ``w_avg`` = ``mapping.w_avg``, ``conv_clamp`` = the synthesis
    layers' ``conv_clamp`` (None or e.g. 256.0), always float32. A refused global, a missing
    ``G_ema``, an unsupported setting (see the module docstring) or unknown weights is a
    CiinvError naming the file and the culprit.
    """
    path = Path(path)
    snapshot = read_ada_pickle(path)
    if not isinstance(snapshot, dict) or not _is_persistent_meta(snapshot.get("G_ema")):
        found = sorted(map(str, snapshot)) if isinstance(snapshot, dict) else type(snapshot).__name__
        raise CiinvError(f"{path}: no 'G_ema' network in this pickle (found {found}); expected an NVlabs "
                         "stylegan2-ada-pytorch snapshot such as ffhq.pkl or network-snapshot-*.pkl")

    tensors, attributes = flatten_network(snapshot["G_ema"], path)
    problems = _unsupported_settings(attributes)
    if problems:
        raise CiinvError(f"{path}: this stylegan2-ada network uses settings our StyleGAN2 does not implement: "
                         f"{'; '.join(problems)}. Use a network without them (e.g. NVlabs's ffhq.pkl)")
    state, latent_avg = rosinality_state_from_ada(tensors, attributes, path)
    try:
        return generator_from_state_dict(state, latent_avg, source=path, conv_clamp=_conv_clamp(attributes))
    except CiinvError as exc:
        raise CiinvError(f"{exc} (G_ema of a stylegan2-ada pickle, renamed to rosinality's layout)") from exc
