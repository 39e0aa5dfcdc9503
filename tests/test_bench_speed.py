"""`ciinv bench speed`: the schedules, the files it writes and the line it ends with."""

import csv
import re

import pytest
import torch

from ciinv.bench.common import render
from ciinv.config import load_config
from ciinv.bench.speed import COLUMNS, make_sequence, run_official
from ciinv.cli import main
from ciinv.inversion.invert import load_nets
from ciinv.inversion.settings import InvertSettings
from tests.conftest import REPO


def test_bench_speed_writes_every_schedule_and_ends_with_the_speedup(smoke_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # models_dir 'models' is empty here: LPIPS is left out
    out = tmp_path / "speed"
    assert main(["bench", "speed", "--config", str(REPO / "config.yaml"), str(smoke_dir / "smoke.yaml"),
                 "--out", str(out), "--frames", "7", "--steps", "3", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"speedup \d+\.\d at mse ratio \d+\.\d\d", printed[-1])

    with open(out / "speed.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(COLUMNS)
    names = [r["schedule"] for r in rows]
    assert names == ["official", "ciinv", "ciinv-no-warm-start", "ciinv-no-stop", "ciinv-no-batch"]  # no fp32 on a CPU
    official, ours = rows[0], rows[1]
    assert int(official["windows"]) == 7 - 5 + 1 and float(official["steps_per_window"]) == 3  # stride 1, S steps
    assert int(ours["windows"]) == 2  # stride 4: [0, 5) and [2, 7)
    for row in rows:
        assert float(row["seconds_per_frame"]) > 0 and float(row["flops_per_frame"]) > 0
        assert float(row["mse"]) > 0 and row["lpips"] == "" and row["peak_mem_gib"] == ""
    # The work counted is in proportion to windows × steps: here 3 × 3 against 2 × 3.
    assert float(official["flops_per_frame"]) / float(ours["flops_per_frame"]) == pytest.approx(3 / 2, rel=1e-4)
    table = (out / "speed.md").read_text()
    assert all(f"| {name} |" in table for name in names)


def test_the_truth_carries_its_own_noise_and_official_keeps_each_windows_base_frame(smoke_dir):
    config = load_config([REPO / "config.yaml", smoke_dir / "smoke.yaml"])
    settings = InvertSettings.from_dict(config["invert"]).replace(steps=2, stride=1, warm_start=False,
                                                                   early_stop=False, windows_per_batch=1)
    nets = load_nets(settings, generator_path=config["models"]["generator"], flow_path=config["models"]["flow"],
                     vgg_path=config["models"]["vgg16"], device=torch.device("cpu"))
    codes, truth = make_sequence(nets.generator, 7, seed=0)
    assert codes.shape == (7, nets.generator.num_ws, 512) and truth.shape == (7, 3, 64, 64)
    # Not reachable with the constant maps every inversion starts from.
    assert (render(nets.generator, codes) - truth).abs().max() > 1e-3

    kept, results = run_official(nets, truth, settings, seed=2)
    assert [r.start for r in results] == [0, 1, 2]
    for r in results:
        assert torch.equal(kept[r.start], r.codes[0])
    assert torch.equal(kept[3:], results[-1].codes[1:])


def test_with_init_e4e_the_encoder_start_is_compared_with_the_mean_start():
    from ciinv.bench.speed import lever_schedules

    schedules = lever_schedules(InvertSettings(init="e4e"), steps=10, device=torch.device("cpu"))
    assert schedules["ciinv"].init == "e4e" and schedules["ciinv-init-mean"].init == "mean"
    assert schedules["ciinv-init-e4e-offsets-zero"].e4e_offsets == "zero"
    assert not schedules["ciinv-no-warm-start"].warm_start  # every window from the encoder
    assert not any("init" in name for name in lever_schedules(InvertSettings(), 10, torch.device("cpu")))
