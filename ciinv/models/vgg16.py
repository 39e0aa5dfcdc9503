"""VGG16 feature taps for the perceptual loss, loading torchvision's ``vgg16-397923af.pth``.

The file is a bare state dict: ``features.{i}.weight/.bias`` for the 13 convs and
``classifier.{0,3,6}.*``. We build ``features`` (torchvision's configuration "D": 3x3 convs
with padding 1, each followed by a ReLU, 2x2 max-pools) only up to index 20 (relu4_2), with
the same indices, so the keys load 1:1; the rest of the file is ignored. Channel counts are
read from the weight shapes, so a tiny random file in the same layout loads the same way.

Outputs, as in the official code of Xu et al. (slices ``features[0:2], [2:4], [4:14],
[14:21]``): relu1_1, relu1_2, relu3_2, relu4_2. Inputs are RGB in [0, 1], *not*
ImageNet-normalised (the official code feeds them so).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from ciinv.errors import CiinvError
from ciinv.models.catalogue import CATALOGUE
from ciinv.models.checkpoint import load_weights

VGG16_WEIGHTS = CATALOGUE["vgg16"]  # the catalogue entry of torchvision's weights, named in the errors

# torchvision's configuration "D" (VGG16): channels per 3x3 conv, "M" = 2x2 max-pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19)  # conv1_1 ... conv4_2 within `features`
TAP_INDICES = (1, 3, 13, 20)  # relu1_1, relu1_2, relu3_2, relu4_2
TAP_NAMES = ("relu1_1", "relu1_2", "relu3_2", "relu4_2")


class VGG16Features(nn.Module):
    """``vgg16().features[:21]`` with four taps; ``channels`` = out channels of the 9 convs
    (torchvision: 64, 64, 128, 128, 256, 256, 256, 512, 512)."""

    def __init__(self, channels: tuple[int, ...] | list[int] = (64, 64, 128, 128, 256, 256, 256, 512, 512)):
        super().__init__()
        if len(channels) != len(CONV_INDICES):
            raise ValueError(f"need {len(CONV_INDICES)} conv widths, got {len(channels)}")
        layers: list[nn.Module] = []
        widths = iter(channels)
        c_in = 3
        for item in VGG16_CFG[:12]:  # up to conv4_2
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c_out = next(widths)
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]  # not in-place: taps must survive
                c_in = c_out
        self.features = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> list[Tensor]:
        """images [N, 3, H, W] RGB in [0, 1] -> [relu1_1 [N, C1, H, W], relu1_2 [N, C2, H, W],
        relu3_2 [N, C6, H/4, W/4], relu4_2 [N, C9, H/8, W/8]] (floors for odd sizes)."""
        taps = []
        x = images
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAP_INDICES:
                taps.append(x)
        return taps


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise CiinvError(f"{path}: VGG16 weights not found; fetch torchvision's {VGG16_WEIGHTS.filename} with the "
                         "download_models rule or point the config at it")
    state = load_weights(path)
    if not isinstance(state, dict):
        raise CiinvError(f"{path}: expected torchvision's VGG16 state dict (features.*, classifier.*), "
                         f"got {type(state).__name__}")
    return state


def _conv_widths(state: dict, path: Path) -> list[int]:
    """Out channels of the 9 convs, checking that every key is there and the shapes chain."""
    needed = [f"features.{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias")]
    missing = [key for key in needed if key not in state]
    if missing:
        raise CiinvError(f"{path}: not a torchvision VGG16 state dict, missing {', '.join(missing)}; "
                         f"re-download {VGG16_WEIGHTS.filename}")
    widths, c_in = [], 3
    for i in CONV_INDICES:
        weight, bias = state[f"features.{i}.weight"], state[f"features.{i}.bias"]
        c_out = weight.shape[0]
        if tuple(weight.shape) != (c_out, c_in, 3, 3) or tuple(bias.shape) != (c_out,):
            raise CiinvError(f"{path}: features.{i} has weight {list(weight.shape)} and bias {list(bias.shape)}, "
                             f"expected [C, {c_in}, 3, 3] and [C]; not a VGG16 state dict")
        widths.append(c_out)
        c_in = c_out
    return widths


def load_vgg16(path) -> VGG16Features:
    """VGG16 features up to relu4_2 from a torchvision state dict; CPU, eval mode, frozen."""
    path = Path(path)
    state = _read_state_dict(path)
    model = VGG16Features(_conv_widths(state, path))
    model.load_state_dict({key: state[key] for key in model.state_dict()})
    return model.eval().requires_grad_(False)
