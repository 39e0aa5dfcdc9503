"""The catalogue of model files ciinv uses: one entry per file, with where it comes from, its
published checksum, its licence and its format (``kind``). Data only: resolving a name to a path,
checking a file on disk and looking up directions is ``ciinv/models/registry.py``; downloading
is ``ciinv/models/download.py``; loading a file by its kind is ``ciinv.models``.

File names live here and nowhere else: other modules ask for a file by its catalogue name
(``registry.resolve("s3fd", models_dir)``, ``CATALOGUE["raft"].filename``).

Checksums are only ever the ones a host published (a Hugging Face LFS pointer, the hash prefix
torch hub / face-alignment put in a file name), never ones we computed ourselves. Where only a
prefix is published, ``sha256`` is None and ``sha256_prefix`` holds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEX = re.compile(r"[0-9a-f]+")

DIRECTION_KIND = "interfacegan-direction"  # kind of the named semantic directions
# Which family of generator each generator kind belongs to: a direction is made for one family.
# (An e4e checkpoint holds a StyleGAN2 decoder, which ``load_generator`` can read.)
GENERATOR_FAMILY = {"stylegan1-converted": "stylegan1", "stylegan2-rosinality": "stylegan2",
                    "stylegan2-ada-pkl": "stylegan2", "e4e-encoder": "stylegan2"}

# The entries the code asks for itself (the config chooses the others, ``models.*``).
LPIPS_MODEL = "lpips-0.1.4-wheel"  # pti.perceptual: lpips, and the report's and benches' LPIPS
NIQE_MODEL = "basicsr-1.4.2-sdist"
INCEPTION_MODEL = "inception-fid"


@dataclass(frozen=True)
class ModelFile:
    """One downloadable model file.

    filename: path relative to ``models_dir``.
    url: where ``fetch`` downloads it from; ``mirrors`` are tried in order if it fails.
    sha256: the full published SHA-256 (64 lowercase hex), or None if none is published.
    size: the published size in bytes, or None.
    used_by: the config key that selects this file (``models.generator``), or
        ``landmarks.detector=fan`` for files needed only when that option is set.
    kind: the file's format, e.g. 'stylegan2-rosinality', 'stylegan2-ada-pkl',
        'stylegan1-converted', 'flownet2', 'raft-torchvision', 'vgg16', 'fan-detector',
        'fan-landmarks', 'e4e-encoder', 'bisenet-face-parsing'; ``ciinv.models`` picks a file's loader by it.
    note: provenance, and what is verified where no full checksum is published.
    sha256_prefix: a published leading part of the SHA-256 (torch hub's ``name-<prefix>.ext``).
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    size: int | None
    licence: str
    used_by: str
    kind: str
    note: str = ""
    sha256_prefix: str | None = None
    mirrors: tuple[str, ...] = ()

    def __post_init__(self):
        if self.sha256 is not None and (len(self.sha256) != 64 or not _HEX.fullmatch(self.sha256)):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits")
        if self.sha256_prefix is not None:
            if not _HEX.fullmatch(self.sha256_prefix):
                raise ValueError(f"{self.name}: sha256_prefix must be lowercase hex")
            if self.sha256 is not None and not self.sha256.startswith(self.sha256_prefix):
                raise ValueError(f"{self.name}: sha256 does not start with sha256_prefix")

    @property
    def checksum(self) -> str | None:
        """The digest (or leading part of it) a file must match; None if nothing is published."""
        return self.sha256 or self.sha256_prefix


# Every URL and checksum below is cited. "HF LFS" = the Git LFS pointer (sha256 + size) that
# Hugging Face shows on the file's page and in the commit that added it.
CATALOGUE: dict[str, ModelFile] = {
    entry.name: entry
    for entry in [
        # rosinality's conversion of NVIDIA's stylegan2-ffhq-config-f.pkl (convert_weight.py), the
        # copy pSp/e4e/ReStyle link on Google Drive (id 1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT; Drive
        # publishes no checksum). Keys: g, d, g_ema, latent_avg. Same sha256 and size on two
        # independent HF uploads: akhaliq/OneshotCLIP-stylegan2-ffhq commit 024390a9 (HF LFS:
        # sha256 bae494ef…, size 381462551) and spaces/ethanNeuralImage/inversion_testing
        # pretrained_models/stylegan2-ffhq-config-f.pt (HF LFS: same sha256, "381 MB").
        ModelFile(
            name="stylegan2-ffhq-config-f",
            filename="stylegan2-ffhq-config-f.pt",
            url="https://huggingface.co/akhaliq/OneshotCLIP-stylegan2-ffhq/resolve/"
            "024390a9508cb2d124dfaa8ec1caee3ad1a9da59/stylegan2-ffhq-config-f.pt",
            sha256="bae494ef77e32a9cd1792a81a3c167692a0e64f6bcd8b06592ff42917e2ed46e",
            size=381462551,
            licence="Nvidia Source Code License-NC (non-commercial), as NVlabs/stylegan2",
            used_by="models.generator",
            kind="stylegan2-rosinality",
            note="StyleGAN2 FFHQ 1024 config-f, rosinality .pt (g, d, g_ema, latent_avg). "
            "Original: Google Drive 1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT (pSp README); "
            "sha256/size from the HF LFS pointers of two matching uploads.",
            mirrors=(
                "https://huggingface.co/spaces/ethanNeuralImage/inversion_testing/resolve/"
                "fa8f8359b20a37b55346faa4a0749265acf0b565/pretrained_models/stylegan2-ffhq-config-f.pt",
            ),
        ),
        # StyleGAN (v1) FFHQ 1024 as converted by lernapparat (Bialecki & Viehmann,
        # style_gan/pytorch_style_gan.ipynb): the state dict of nn.Sequential(g_mapping,
        # g_synthesis), the layout the paper's seed code (cnnlstm/InvertingGANs_with_ConsecutiveImgs
        # main.py) loads strictly. lernapparat's own release asset (lernapparat/lernapparat releases
        # v2019-02-01, karras2019stylegan-ffhq-1024x1024.for_g_all.pt) and the seed repo's Google
        # Drive copy (1g2gp4tR0wAc6uG24qkt82pM3afD-vfBT) publish no checksum, and no upload with an
        # LFS pointer was found. This is the torch hub copy of the same conversion:
        # ndahlquist/pytorch-hub-stylegan (fork of lernapparat, formerly ndahlquist/lernapparat)
        # hubconf.py loads this release asset into lernapparat's module with load_state_dict; its
        # name carries the uploader's sha256 prefix b418e00b3f4f99b879c3e805b8c55e (torch hub's
        # naming convention). Not byte-for-byte checked against lernapparat's asset.
        ModelFile(
            name="stylegan1-ffhq",
            filename="karras2019stylegan-ffhq-1024x1024.for_g_all-b418e00b3f4f99b879c3e805b8c55e.pt",
            url="https://github.com/ndahlquist/pytorch-hub-stylegan/releases/download/0.0.0/"
            "karras2019stylegan-ffhq-1024x1024.for_g_all-b418e00b3f4f99b879c3e805b8c55e.pt",
            sha256=None,
            size=None,
            licence="CC BY-NC 4.0 (NVIDIA's StyleGAN FFHQ weights, NVlabs/stylegan; "
            "the conversions keep that licence)",
            used_by="models.generator",
            kind="stylegan1-converted",
            note="StyleGAN (v1) FFHQ 1024, lernapparat's PyTorch conversion (flat state dict, "
            "g_mapping.* / g_synthesis.*, 116 keys, 26,212,019 params), the paper's own generator. "
            "Only the sha256 prefix b418e00b3f4f99b879c3e805b8c55e in the torch hub file name is "
            "published; no full sha256 or size. lernapparat's karras2019stylegan-ffhq-1024x1024."
            "for_g_all.pt (no checksum published) can be used by giving its path as models.generator.",
            sha256_prefix="b418e00b3f4f99b879c3e805b8c55e",
        ),
        # NVlabs/stylegan2-ada-pytorch README, "Data repository": pretrained/ffhq.pkl, "FFHQ at
        # 1024x1024, trained using original StyleGAN2" (the URL is also the README's projector.py
        # example). NVIDIA publishes no checksum. Same sha256 and size on two independent HF
        # uploads: spaces/edemana/my-stylegan-model commit da645926 "Upload ffhq.pkl" (HF LFS:
        # sha256 a205a346…, size 381624121), a StyleGAN2-ADA-pytorch demo, and
        # DragGan/DragGan-Models commit 2fcdd50 stylegan2-ffhq1024x1024.pkl (HF LFS: same sha256,
        # "382 MB"; HF lists its pickle imports as torch_utils.persistence, i.e. the PyTorch
        # pickle, not the TensorFlow stylegan2-ada one). Filed under a folder: the TensorFlow
        # stylegan2-ada release has a different file also named ffhq.pkl.
        ModelFile(
            name="stylegan2-ada-ffhq",
            filename="stylegan2-ada-pytorch/ffhq.pkl",
            url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
            sha256="a205a346e86a9ddaae702e118097d014b7b8bd719491396a162cca438f2f524c",
            size=381624121,
            licence="Nvidia Source Code License-NC (non-commercial), as NVlabs/stylegan2-ada-pytorch",
            used_by="models.generator",
            kind="stylegan2-ada-pkl",
            note="StyleGAN2 FFHQ 1024 config-f as NVlabs stylegan2-ada-pytorch network pickle "
            "({'G', 'D', 'G_ema', ...}; read without running the pickle). sha256/size from the HF "
            "LFS pointers of two matching uploads; NVIDIA publishes none.",
            mirrors=(
                "https://huggingface.co/spaces/edemana/my-stylegan-model/resolve/"
                "da64592673081d7d05abe1437c383f5ad91bf529/ffhq.pkl",
            ),
        ),
        # NVIDIA/flownet2-pytorch README, "Converted Caffe Pre-trained Models": FlowNet2 [620MB] on
        # Google Drive (id 1hF8vS6YeHkx3j2pfCeQqqZGwA_PJq_Da; no checksum published there).
        # HF LFS on RaphaelLiu/EvalCrafter-Models commit 8f857e64 and ValentinFunk/tcvc
        # pretrained_models/: sha256 bc30f54f…, size 650102505 (= 620.0 MiB, matching the README).
        ModelFile(
            name="flownet2",
            filename="FlowNet2_checkpoint.pth.tar",
            url="https://huggingface.co/RaphaelLiu/EvalCrafter-Models/resolve/"
            "8f857e648548a17393407c89fd8f0a158da2e2aa/FlowNet2_checkpoint.pth.tar",
            sha256="bc30f54f76aa4c726faada81c9fe5e62da22bfe467f1d65bacd613ba6be53e73",
            size=650102505,
            licence="FlowNet 2.0 weights: research use only; commercial use needs the authors' "
            "consent (Ilg et al., Univ. Freiburg; NVIDIA conversion)",
            used_by="models.flow",
            kind="flownet2",
            note="NVIDIA's converted FlowNet2 ({'epoch', 'state_dict', 'best_EPE'}). "
            "Original: Google Drive 1hF8vS6YeHkx3j2pfCeQqqZGwA_PJq_Da (NVIDIA README); "
            "sha256/size from the HF LFS pointers of two matching uploads.",
            mirrors=(
                "https://huggingface.co/ValentinFunk/tcvc/resolve/main/"
                "pretrained_models/FlowNet2_checkpoint.pth.tar",
            ),
        ),
        # e4e's FFHQ encoder (omertov/encoder4editing README, "FFHQ Inversion": Google Drive
        # 1cUv_reLE6k3604or78EranS7XzuVMWeO; Drive publishes no checksum). Same sha256 on two
        # independent HF uploads: wmpscc/StyleGene commit e301280a (HF LFS: sha256 2ace1d9a…,
        # size 1201649680) and zhengchong/e4e e4e_ffhq_encode.pt (HF LFS: same sha256, "1.2 GB").
        # Not byte-for-byte checked against the Drive file. HF's pickle scan of the file lists only
        # OrderedDict, _rebuild_tensor_v2, FloatStorage and LongStorage: weights_only=True reads it.
        # (feng2022/Time-TravelRephotography_e4e_ffhq_encode holds a different file, sha256 6970a146….)
        ModelFile(
            name="e4e-ffhq-encode",
            filename="e4e_ffhq_encode.pt",
            url="https://huggingface.co/wmpscc/StyleGene/resolve/"
            "e301280ac9a63ba7ebb4be3311128bb6c9cb9ae2/e4e_ffhq_encode.pt",
            sha256="2ace1d9a8c05c10a399bcd500b8dda118f759ff1aac89dbdab7435f2136a0999",
            size=1201649680,
            licence="MIT (omertov/encoder4editing); its decoder.* keys are StyleGAN2 FFHQ weights under "
            "the Nvidia Source Code License-NC",
            used_by="models.encoder",
            kind="e4e-encoder",
            note="e4e FFHQ encoder ({'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg' [18, 512], 'opts'}), "
            "used only with invert.init: e4e. Original: Google Drive 1cUv_reLE6k3604or78EranS7XzuVMWeO "
            "(e4e README); sha256/size from the HF LFS pointers of two matching uploads.",
            mirrors=("https://huggingface.co/zhengchong/e4e/resolve/main/e4e_ffhq_encode.pt",),
        ),
        # torchvision's VGG16 (URL in torchvision models/vgg.py). The name carries torch hub's
        # published hash prefix 397923af. Full sha256 from the HF LFS pointer of an identically
        # named copy (Keiser41/mangaaa model/vgg16-397923af.pth), which agrees with the prefix.
        # Size: the Content-Length download.pytorch.org serves (553433881/553433881 in torch hub's
        # progress output quoted in many public notebooks).
        ModelFile(
            name="vgg16",
            filename="vgg16-397923af.pth",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
            sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
            size=553433881,
            licence="torchvision model zoo (BSD-3-Clause); VGG ImageNet weights by Simonyan & "
            "Zisserman, released under Creative Commons Attribution",
            used_by="models.vgg16",
            kind="vgg16",
            note="torchvision VGG16 ImageNet weights; prefix 397923af in the name is torch hub's "
            "published checksum, the full sha256 is an HF LFS pointer matching it.",
            sha256_prefix="397923af",
        ),
        # face-alignment 1.5.0 (installed): detection/sfd/sfd_detector.py models_urls['s3fd'].
        # Prefix 619a316812 in the name; full sha256 and size from HF LFS pointers of identically
        # named copies (camenduru/Wav2Lip commit bfcd9263 checkpoints/, chunyu-li/face-alignment),
        # which agree with the prefix.
        ModelFile(
            name="s3fd",
            filename="s3fd-619a316812.pth",
            url="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
            sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
            size=89843225,
            licence="face-alignment (BSD-3-Clause)",
            used_by="landmarks.detector=fan",
            kind="fan-detector",
            note="S3FD face detector for face-alignment (ciinv.faces.landmarks points torch hub's "
            "checkpoints folder at models_dir). Full sha256 and size: HF LFS pointers matching the prefix.",
            sha256_prefix="619a316812",
            mirrors=("https://huggingface.co/chunyu-li/face-alignment/resolve/main/s3fd-619a316812.pth",),
        ),
        # face-alignment 1.5.0 (installed): api.py models_urls['2DFAN-4'] — a plain state dict
        # loaded with torch.load(weights_only=True). (Older face-alignment used the TorchScript
        # 2DFAN4-cd938726ad.zip instead; 1.5.0 no longer does.) Only the name's prefix is published.
        ModelFile(
            name="2dfan4",
            filename="2DFAN4-11f355bf06.pth.tar",
            url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
            sha256=None,
            size=None,
            licence="face-alignment (BSD-3-Clause)",
            used_by="landmarks.detector=fan",
            kind="fan-landmarks",
            note="2D-FAN-4 68-point landmark network for face-alignment 1.5.0. No full sha256 or size "
            "is published: only the sha256 prefix 11f355bf06 in the file name is verified.",
            sha256_prefix="11f355bf06",
        ),
        # torchvision models/optical_flow/raft.py, Raft_Large_Weights.C_T_SKHT_V2 (the default
        # weights of raft_large): the URL's name carries the published sha256 prefix ff5fadd5.
        ModelFile(
            name="raft",
            filename="raft_large_C_T_SKHT_V2-ff5fadd5.pth",
            url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
            sha256=None,
            size=None,
            licence="BSD-3-Clause (torchvision)",
            used_by="models.flow",
            kind="raft-torchvision",
            note="RAFT-large, torchvision's C_T_SKHT_V2 weights (needs the optional torchvision extra). "
            "Only the sha256 prefix ff5fadd5 in the file name is published.",
            sha256_prefix="ff5fadd5",
        ),
        # The face parser (ciinv/models/parser.py) that pastes the face back with `paste.mask: parser`:
        # zllrunning/face-parsing.PyTorch's BiSeNet, `79999_iter.pth` (its README links Google Drive
        # 154JgKpzCPW82qINcVieuPH3fZ2e0P812, no checksum). sha256 and size: the HF LFS pointers of three
        # independent uploads (ManyOtherFunctions/face-parse-bisent, AI2lab/face-parsing.PyTorch,
        # waveydaveygravy/swap-mukham), the huggingface.co/bes-dev/face_parsing file page and the
        # clibdev/face-parsing.PyTorch README all give this digest. facexlib's `parsing_bisenet.pth`
        # (GitHub release xinntao/facexlib v0.2.0) is the same file under another name (a public
        # model-card note records that asset as byte-identical: this sha256, 53,289,463 bytes): a
        # stable non-Drive URL. Mirrors: vivym/face-parsing-bisenet on HF pinned to a commit (pinned
        # elsewhere with this digest), and clibdev's release asset (this digest in its README).
        ModelFile(
            name="face-parsing-bisenet",
            filename="parsing_bisenet.pth",  # the URL's name (as every entry's); the bytes of 79999_iter.pth
            url="https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth",
            sha256="468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
            size=53289463,
            licence="MIT (zllrunning/face-parsing.PyTorch; facexlib MIT); trained on CelebAMask-HQ, whose "
            "images are for non-commercial research only",
            used_by="models.parser",
            kind="bisenet-face-parsing",
            note="BiSeNet (ResNet-18 context path), 19 CelebAMask-HQ classes, trained at 512²: a bare state dict "
            "of 191 tensors under the model's own keys (cp.*, ffm.*, conv_out*). Fetched only with "
            "paste.mask: parser. Original: Google Drive 154JgKpzCPW82qINcVieuPH3fZ2e0P812; sha256/size from "
            "the HF LFS pointers of three independent uploads. A 79999_iter.pth of your own is the same file: "
            "put it at this name, or point models.parser at it.",
            mirrors=(
                "https://huggingface.co/vivym/face-parsing-bisenet/resolve/"
                "768606b84908769d31ddd78b2e1105319839edfa/79999_iter.pth",
                "https://github.com/clibdev/face-parsing.PyTorch/releases/latest/download/face-parsing-bisenet.pth",
            ),
        ),
        # Metrics (ciinv/metrics.py, `ciinv bench`). Both are PyPI release files, used as archives:
        # the metric code reads one member from them and never imports the package. sha256 and
        # size: PyPI's published digest for the file (the simple index's #sha256, which pip
        # checks on download) and its length.
        ModelFile(
            name=LPIPS_MODEL,
            filename="lpips-0.1.4-py3-none-any.whl",
            url="https://files.pythonhosted.org/packages/9b/13/"
            "1df50c7925d9d2746702719f40e864f51ed66f307b20ad32392f1ad2bb87/lpips-0.1.4-py3-none-any.whl",
            sha256="fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e",
            size=53763,
            licence="BSD-2-Clause (lpips, Zhang et al.)",
            used_by="bench.lpips",
            kind="lpips-wheel",
            note="The lpips package's wheel; LPIPS-VGG v0.1 reads its linear layers from the member "
            "lpips/weights/v0.1/vgg.pth (the VGG16 backbone is the 'vgg16' entry).",
        ),
        ModelFile(
            name=NIQE_MODEL,
            filename="basicsr-1.4.2.tar.gz",
            url="https://files.pythonhosted.org/packages/86/41/"
            "00a6b000f222f0fa4c6d9e1d6dcc9811a374cabb8abb9d408b77de39648c/basicsr-1.4.2.tar.gz",
            sha256="b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87",
            size=172524,
            licence="Apache-2.0 (BasicSR); the parameters are those of the NIQE authors' MATLAB release "
            "(LIVE, UT Austin)",
            used_by="bench.niqe",
            kind="niqe-params-sdist",
            note="BasicSR's source release; NIQE reads the pristine model (mu_pris_param, cov_pris_param, "
            "converted from MATLAB's modelparameters.mat) from basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz.",
        ),
        # FID's Inception-v3: mseitzer/pytorch-fid src/pytorch_fid/inception.py FID_WEIGHTS_URL, the
        # TensorFlow inception-2015-12-05 graph ported to torchvision's key layout (ciinv/models/
        # inception.py). The name carries the sha256 prefix 6726825d (torch hub's convention). The
        # full sha256 is the one genforce/genforce metrics/inception.py pins for this URL
        # (_MODEL_URL_SHA256['tf_inception_v3']); torch-fidelity's mirror of the same weights
        # (toshas/torch-fidelity releases v0.2.0, weights-inception-2015-12-05-6726825d.pth) is
        # pinned elsewhere with this sha256 and 95,628,359 bytes, the size also given for
        # pt_inception-2015-12-05-6726825d.pth itself next to the same digest.
        ModelFile(
            name=INCEPTION_MODEL,
            filename="pt_inception-2015-12-05-6726825d.pth",
            url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
            size=95628359,
            licence="Apache-2.0 (pytorch-fid; the weights are Google's TensorFlow Inception-v3 release "
            "inception-2015-12-05, Apache-2.0)",
            used_by="bench.fid",
            kind="inception-fid",
            note="pytorch-fid's FID Inception-v3 (torchvision Inception3 layout, 1008 classes, no AuxLogits). "
            "Prefix 6726825d in the name is the published checksum; the full sha256 and size are those "
            "pinned by independent projects for this file and its torch-fidelity mirror, and agree with it.",
            sha256_prefix="6726825d",
        ),
        # Semantic directions for `edits: direction:` (ciinv/edits/stage.py), the paper's InterFaceGAN
        # edits (Xu et al. 2021 edit with age, gender, pose, smile and eyeglasses). Each file lives in
        # git in a public repository, so a raw URL pinned to a commit is stable; sha256 and size are
        # those of the file at that commit (the blob git serves).
        # StyleGAN (v1) FFHQ, W space: genforce/interfacegan boundaries/ at commit 8da3fc0f. NumPy
        # arrays (1, 512) float64, unit norm. The folder's Z-space (no `_w`) and conditional
        # (`_c_`) boundaries are not for W+ codes and are left out.
        ModelFile(
            name="interfacegan-stylegan1-age",
            filename="interfacegan/stylegan1/stylegan_ffhq_age_w_boundary.npy",
            url="https://raw.githubusercontent.com/genforce/interfacegan/"
            "8da3fc0fe2a1d4c88dc5f9bee65e8077093ad2bb/boundaries/stylegan_ffhq_age_w_boundary.npy",
            sha256="f92c72c6621fd9630a2100168462a15a531bee410099847fdcdf844159eb7e30",
            size=4224,
            licence="MIT (genforce/interfacegan)",
            used_by="edits.direction",
            kind=DIRECTION_KIND,
            note="InterFaceGAN age boundary for StyleGAN (v1) FFHQ, W space: .npy (1, 512) float64, unit norm. "
            "`direction: age` with a StyleGAN (v1) generator.",
        ),
        ModelFile(
            name="interfacegan-stylegan1-gender",
            filename="interfacegan/stylegan1/stylegan_ffhq_gender_w_boundary.npy",
            url="https://raw.githubusercontent.com/genforce/interfacegan/"
            "8da3fc0fe2a1d4c88dc5f9bee65e8077093ad2bb/boundaries/stylegan_ffhq_gender_w_boundary.npy",
            sha256="077953b129bbb52605b3391d4824938c9ded35337f60d282478c72dcc3c5c28f",
            size=4224,
            licence="MIT (genforce/interfacegan)",
            used_by="edits.direction",
            kind=DIRECTION_KIND,
            note="InterFaceGAN gender boundary for StyleGAN (v1) FFHQ, W space: .npy (1, 512) float64, unit norm. "
            "`direction: gender` with a StyleGAN (v1) generator.",
        ),
        ModelFile(
            name="interfacegan-stylegan1-pose",
            filename="interfacegan/stylegan1/stylegan_ffhq_pose_w_boundary.npy",
            url="https://raw.githubusercontent.com/genforce/interfacegan/"
            "8da3fc0fe2a1d4c88dc5f9bee65e8077093ad2bb/boundaries/stylegan_ffhq_pose_w_boundary.npy",
            sha256="688585cf4d2bc3eead7bc18b4cf6e0985a0beb8a5ed46f25a08b2925d33efc1a",
            size=4224,
            licence="MIT (genforce/interfacegan)",
            used_by="edits.direction",
            kind=DIRECTION_KIND,
            note="InterFaceGAN pose boundary for StyleGAN (v1) FFHQ, W space: .npy (1, 512) float64, unit norm. "
            "`direction: pose` with a StyleGAN (v1) generator.",
        ),
        ModelFile(
            name="interfacegan-stylegan1-smile",
            filename="interfacegan/stylegan1/stylegan_ffhq_smile_w_boundary.npy",
            url="https://raw.githubusercontent.com/genforce/interfacegan/"
            "8da3fc0fe2a1d4c88dc5f9bee65e8077093ad2bb/boundaries/stylegan_ffhq_smile_w_boundary.npy",
            sha256="5a729c200c2c933806116cb77624ccedbd6fce21aa98fca8be49aeaa35caa1c7",
            size=4224,
            licence="MIT (genforce/interfacegan)",
            used_by="edits.direction",
            kind=DIRECTION_KIND,
            note="InterFaceGAN smile boundary for StyleGAN (v1) FFHQ, W space: .npy (1, 512) float64, unit norm. "
            "`direction: smile` with a StyleGAN (v1) generator.",
        ),
        ModelFile(
            name="interfacegan-stylegan1-eyeglasses",
            filename="interfacegan/stylegan1/stylegan_ffhq_eyeglasses_w_boundary.npy",
            url="https://raw.githubusercontent.com/genforce/interfacegan/"
            "8da3fc0fe2a1d4c88dc5f9bee65e8077093ad2bb/boundaries/stylegan_ffhq_eyeglasses_w_boundary.npy",
            sha256="ac826235cc7347eb1f57ba9e6e2904e52f34a6052a4db03dc693648a4f231cc5",
            size=4224,
            licence="MIT (genforce/interfacegan)",
            used_by="edits.direction",
            kind=DIRECTION_KIND,
            note="InterFaceGAN eyeglasses boundary for StyleGAN (v1) FFHQ, W space: .npy (1, 512) float64, unit norm. "
            "`direction: eyeglasses` with a StyleGAN (v1) generator.",
        ),
        # StyleGAN2 FFHQ: the InterFaceGAN directions shipped with e4e, omertov/encoder4editing
        # editings/interfacegan_directions/ at commit 99ea5057. torch tensors float32; smile.pt and
        # pose.pt were saved from a CUDA device (loading needs map_location="cpu"); pose.pt holds one
        # direction per W+ layer of the 1024 generator.
        ModelFile(
            name="interfacegan-stylegan2-age",
            filename="interfacegan/stylegan2/age.pt",
            url="https://raw.githubusercontent.com/omertov/encoder4editing/"
            "99ea50578695d2e8a1cf7259d8ee89b23eea942b/editings/interfacegan_directions/age.pt",
            sha256="50074516b1629707d89b5e43d6b8abd1792212fa3b961a87a11323d6a5222ae0",
            size=2808,
            licence="MIT (omertov/encoder4editing)",
            used_by="edits.direction",
            kind=DIRECTION_KIND,
            note="InterFaceGAN-style age direction for StyleGAN2 FFHQ (e4e): tensor [1, 512] float32, unit norm. "
            "`direction: age` with a StyleGAN2 generator.",
        ),
        ModelFile(
            name="interfacegan-stylegan2-smile",
            filename="interfacegan/stylegan2/smile.pt",
            url="https://raw.githubusercontent.com/omertov/encoder4editing/"
            "99ea50578695d2e8a1cf7259d8ee89b23eea942b/editings/interfacegan_directions/smile.pt",
            sha256="817a7e732b59dee9eba862bec8bd7e8373568443bc9f9731a21cf9b0356f0653",
            size=2808,
            licence="MIT (omertov/encoder4editing)",
            used_by="edits.direction",
            kind=DIRECTION_KIND,
            note="InterFaceGAN-style smile direction for StyleGAN2 FFHQ (e4e): tensor [1, 512] float32, unit norm, saved from a CUDA device. "
            "`direction: smile` with a StyleGAN2 generator.",
        ),
        ModelFile(
            name="interfacegan-stylegan2-pose",
            filename="interfacegan/stylegan2/pose.pt",
            url="https://raw.githubusercontent.com/omertov/encoder4editing/"
            "99ea50578695d2e8a1cf7259d8ee89b23eea942b/editings/interfacegan_directions/pose.pt",
            sha256="736e0eacc8488fa0b020a2e7bd256b957284c364191dfea693705e5d06d43e7d",
            size=37624,
            licence="MIT (omertov/encoder4editing)",
            used_by="edits.direction",
            kind=DIRECTION_KIND,
            note="InterFaceGAN-style pose direction for StyleGAN2 FFHQ (e4e): tensor [1, 18, 512] float32 (one unit vector per W+ layer, norm sqrt(18)), saved from a CUDA device. "
            "`direction: pose` with a StyleGAN2 generator.",
        ),
    ]
}
