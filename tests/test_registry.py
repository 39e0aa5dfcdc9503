import hashlib
import json
import os
from pathlib import Path

import pytest

from ciinv.errors import CiinvError
from ciinv.models import registry
from ciinv.models.catalogue import CATALOGUE, ModelFile
from ciinv.models.registry import require, resolve, status, verify

DATA = bytes(range(256)) * 40  # 10 kB stand-in for a checkpoint
DATA_SHA = hashlib.sha256(DATA).hexdigest()


def tiny_entry(**changes) -> ModelFile:
    fields = dict(
        name="tiny",
        filename="sub/tiny.pt",
        url="http://127.0.0.1:9/tiny.pt",
        sha256=DATA_SHA,
        size=len(DATA),
        licence="test",
        used_by="models.generator",
        kind="stylegan2-rosinality",
        note="built by the test",
    )
    fields.update(changes)
    return ModelFile(**fields)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A registry entry 'tiny' (monkeypatched in) and its models_dir."""
    entry = tiny_entry()
    monkeypatch.setitem(CATALOGUE, entry.name, entry)
    return entry, tmp_path / "models"


def put(models_dir: Path, entry: ModelFile, data: bytes = DATA) -> Path:
    path = models_dir / entry.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- the table itself ---------------------------------------------------------------------------


def test_registry_has_the_files_the_pipeline_needs():
    by_key = {}
    for e in CATALOGUE.values():
        by_key.setdefault(e.used_by, []).append(e)
    generators = {e.name: e.kind for e in by_key["models.generator"]}
    assert generators == {
        "stylegan2-ffhq-config-f": "stylegan2-rosinality",
        "stylegan1-ffhq": "stylegan1-converted",  # the paper's own generator
        "stylegan2-ada-ffhq": "stylegan2-ada-pkl",
    }
    # load_generator picks the format by suffix (.pkl) or by the keys of a .pt.
    assert CATALOGUE["stylegan2-ffhq-config-f"].filename.endswith(".pt")
    assert CATALOGUE["stylegan1-ffhq"].filename.endswith(".pt")
    assert CATALOGUE["stylegan2-ada-ffhq"].filename.endswith(".pkl")
    assert sorted(e.filename for e in by_key["models.flow"]) == [
        "FlowNet2_checkpoint.pth.tar", "raft_large_C_T_SKHT_V2-ff5fadd5.pth"]
    assert by_key["models.vgg16"][0].url == "https://download.pytorch.org/models/vgg16-397923af.pth"
    assert [(e.name, e.filename, e.kind) for e in by_key["models.encoder"]] == [
        ("e4e-ffhq-encode", "e4e_ffhq_encode.pt", "e4e-encoder")]
    fan = sorted(Path(e.filename).name for e in CATALOGUE.values() if e.used_by == "landmarks.detector=fan")
    # The names face-alignment 1.5.0 itself downloads (detection/sfd/sfd_detector.py, api.py).
    assert fan == ["2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"]


@pytest.mark.parametrize("entry", list(CATALOGUE.values()), ids=list(CATALOGUE))
def test_every_entry_is_checkable_and_consistent(entry):
    assert CATALOGUE[entry.name] is entry
    assert entry.url.startswith("https://") and all(m.startswith("https://") for m in entry.mirrors)
    assert entry.licence and entry.note
    # Something published to check against: a full sha256, or the prefix torch hub puts in the name.
    assert entry.checksum is not None
    if entry.sha256_prefix is not None:
        assert f"-{entry.sha256_prefix}." in Path(entry.filename).name
    else:
        assert entry.sha256 is not None
    if entry.sha256 is None:
        assert "prefix" in entry.note  # the note says what is verified instead
    assert Path(entry.filename).name == entry.url.rsplit("/", 1)[-1]


def test_model_file_rejects_inconsistent_checksums():
    with pytest.raises(ValueError):
        tiny_entry(sha256="abc")
    with pytest.raises(ValueError):
        tiny_entry(sha256_prefix="ffff")  # not a prefix of DATA_SHA
    assert tiny_entry(sha256_prefix=DATA_SHA[:8]).checksum == DATA_SHA


def test_find_entry_by_name_filename_or_base_name():
    s3fd = CATALOGUE["s3fd"]
    assert registry.find_entry("s3fd") is s3fd
    assert registry.find_entry(s3fd.filename) is s3fd
    assert registry.find_entry("s3fd-619a316812.pth") is s3fd
    assert registry.find_entry("nope.pt") is None


# --- resolve / status / verify / require -------------------------------------------------------


def test_resolve_name_and_path(tmp_path):
    assert resolve("flownet2", tmp_path) == tmp_path / "FlowNet2_checkpoint.pth.tar"
    assert resolve("/data/my_g.pt", tmp_path) == Path("/data/my_g.pt")
    assert resolve("checkpoints/g.pt", tmp_path) == Path("checkpoints/g.pt")


def test_status_missing_present_wrong(tiny):
    entry, models_dir = tiny
    assert status("tiny", models_dir) == "missing"
    path = put(models_dir, entry)
    assert status("tiny", models_dir) == "present"
    path.write_bytes(DATA[:-1] + b"\x00")  # same size, different bytes
    assert status("tiny", models_dir) == "wrong checksum"
    path.write_bytes(DATA[:100])  # truncated download
    assert status("tiny", models_dir) == "wrong checksum"


def test_status_of_unpublished_checksum_and_of_plain_paths(monkeypatch, tmp_path):
    entry = tiny_entry(sha256=None, size=None, note="nothing published")
    monkeypatch.setitem(CATALOGUE, "tiny", entry)
    put(tmp_path, entry, b"anything")
    assert status("tiny", tmp_path) == "unverified"
    own = tmp_path / "own.pt"
    assert status(str(own), tmp_path) == "missing"
    own.write_bytes(b"x")
    assert status(str(own), tmp_path) == "unverified"


def test_prefix_only_entry_is_verified_by_prefix(monkeypatch, tmp_path):
    good = tiny_entry(sha256=None, size=None, sha256_prefix=DATA_SHA[:10])
    monkeypatch.setitem(CATALOGUE, "tiny", good)
    put(tmp_path, good)
    assert status("tiny", tmp_path) == "present"
    wrong_prefix = "0" * 10 if not DATA_SHA.startswith("0" * 10) else "1" * 10
    monkeypatch.setitem(CATALOGUE, "tiny", tiny_entry(sha256=None, size=None, sha256_prefix=wrong_prefix))
    assert status("tiny", tmp_path) == "wrong checksum"


def test_verify_error_names_file_expected_actual_and_fix(tiny):
    entry, models_dir = tiny
    path = put(models_dir, entry, b"\x01" * len(DATA))
    with pytest.raises(CiinvError) as err:
        verify(path, entry)
    message = str(err.value)
    assert str(path) in message
    assert DATA_SHA in message  # expected
    assert hashlib.sha256(b"\x01" * len(DATA)).hexdigest() in message  # actual
    assert "ciinv models fetch tiny" in message


def test_verify_reports_wrong_size_without_hashing(tiny, monkeypatch):
    entry, models_dir = tiny
    path = put(models_dir, entry, DATA + b"extra")
    monkeypatch.setattr(registry, "sha256_file", lambda p: pytest.fail("hashed a file of the wrong size"))
    with pytest.raises(CiinvError, match=f"{len(DATA) + 5} bytes, expected {len(DATA)}"):
        verify(path, entry)


def test_require_missing_names_file_and_fetch_commands(tiny):
    entry, models_dir = tiny
    with pytest.raises(CiinvError) as err:
        require("tiny", models_dir)
    message = str(err.value)
    assert str(models_dir / entry.filename) in message
    assert "ciinv models fetch tiny" in message
    assert "snakemake download_models" in message
    assert not (models_dir / entry.filename).exists()  # require never downloads


def test_require_returns_verified_file_and_rejects_corrupt_one(tiny):
    entry, models_dir = tiny
    path = put(models_dir, entry)
    assert require("tiny", models_dir) == path
    path.write_bytes(bytes(len(DATA)))
    os.utime(path, ns=(1, 1))  # a different mtime, as a rewrite would have
    with pytest.raises(CiinvError, match="wrong checksum"):
        require("tiny", models_dir)


def test_require_plain_path(tmp_path):
    own = tmp_path / "my generator.pt"
    own.write_bytes(b"weights")
    assert require(str(own), tmp_path / "models") == own
    with pytest.raises(CiinvError) as err:
        require("stylegan2-ffhq-typo", tmp_path / "models")
    assert "stylegan2-ffhq-typo" in str(err.value) and "stylegan2-ffhq-config-f" in str(err.value)


# --- the digest cache ---------------------------------------------------------------------------


def settle(path: Path, age_s: float = 3600) -> None:
    """Give ``path`` an mtime in the past, as a file downloaded earlier has."""
    then = path.stat().st_mtime_ns - int(age_s * 1e9)
    os.utime(path, ns=(then, then))


def test_digest_is_cached_until_size_or_mtime_change(tiny, monkeypatch):
    entry, models_dir = tiny
    path = put(models_dir, entry)
    settle(path)
    calls = []
    real = registry.sha256_file
    monkeypatch.setattr(registry, "sha256_file", lambda p: calls.append(p) or real(p))

    assert require("tiny", models_dir) == path
    assert require("tiny", models_dir) == path
    assert status("tiny", models_dir) == "present"
    assert len(calls) == 1  # hashed once, then read from the sidecar
    sidecar = json.loads(path.with_name(path.name + ".sha256").read_text())
    assert sidecar["sha256"] == DATA_SHA and sidecar["size"] == len(DATA)

    # Same size, new content, so a new mtime: the cache no longer applies and the change is caught.
    path.write_bytes(bytes(len(DATA)))
    assert status("tiny", models_dir) == "wrong checksum"
    assert len(calls) == 2


def test_freshly_written_file_is_not_cached(tiny, monkeypatch):
    """A rewrite within the same mtime tick must not be hidden by a cached digest."""
    entry, models_dir = tiny
    path = put(models_dir, entry)
    before = path.stat()
    assert status("tiny", models_dir) == "present"
    path.write_bytes(bytes(len(DATA)))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime as when checked
    assert status("tiny", models_dir) == "wrong checksum"
    assert not path.with_name(path.name + ".sha256").exists()


def test_unreadable_sidecar_is_ignored(tiny):
    entry, models_dir = tiny
    path = put(models_dir, entry)
    path.with_name(path.name + ".sha256").write_text("not json")
    assert status("tiny", models_dir) == "present"
