"""`ciinv bench speed`: the schedules, the files it writes, the line it ends with, and the reuse
of an earlier run's official rows."""

import csv
import re

import pytest
import torch
import torch.nn.functional as F

from ciinv.bench.common import flop_counter, render
from ciinv.bench.speed import (
    COLUMNS,
    OPTIMISER_LEVERS,
    SEED_BASE,
    lever_schedules,
    make_sequence,
    official_settings,
    run_official,
    speedup_line,
)
from ciinv.cli import main
from ciinv.config import load_config
from ciinv.inversion.invert import load_nets
from ciinv.inversion.settings import InvertSettings
from tests.conftest import REPO

SPEED_LINE = r"speedup \d+\.\d at mse ratio \d+\.\d\d( ± \d+\.\d\d)? \(FLOPs per output frame; seconds \d+\.\d×; .+\)"


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def run_bench(smoke_dir, out, *extra):
    return main(["bench", "speed", "--config", str(REPO / "config.yaml"), str(smoke_dir / "smoke.yaml"),
                 "--out", str(out), "--frames", "7", "--steps", "3", "--device", "cpu", *extra])


def test_bench_speed_writes_every_schedule_per_seed_and_ends_with_the_flop_speedup(smoke_dir, tmp_path, capsys,
                                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)  # models_dir 'models' is empty here: LPIPS is left out
    out = tmp_path / "speed"
    assert run_bench(smoke_dir, out, "--seeds", "0", "1") == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(SPEED_LINE, printed[-1])

    rows = read_rows(out / "speed.csv")
    assert list(rows[0]) == list(COLUMNS)
    names = list(dict.fromkeys(r["schedule"] for r in rows))
    assert names == ["official", "official-fixed-noise", "ciinv", "ciinv-no-warm-start", "ciinv-no-stop",
                     "ciinv-no-batch", *(f"ciinv+{lever}" for lever in OPTIMISER_LEVERS)]  # no fp32 on a CPU
    assert all([r["seed"] for r in rows if r["schedule"] == name] == ["0", "1"] for name in names)
    official, fixed, ours = (next(r for r in rows if r["schedule"] == n and r["seed"] == "0")
                             for n in ("official", "official-fixed-noise", "ciinv"))
    # The official code: stride 1, S steps, and one output frame per window (N − T + 1).
    assert int(official["windows"]) == 3 and int(official["output_frames"]) == 3
    assert float(official["steps_per_window"]) == 3
    assert int(ours["windows"]) == 2 and int(ours["output_frames"]) == 7  # stride 4: [0, 5) and [2, 7)
    assert official["flops_per_frame"] == fixed["flops_per_frame"] and official["mse"] != fixed["mse"]
    for row in rows:
        assert float(row["seconds_per_frame"]) > 0 and float(row["flops_per_frame"]) > 0
        assert float(row["tflops"]) == pytest.approx(float(row["flops_per_frame"]) / float(row["seconds_per_frame"])
                                                     / 1e12, rel=1e-3)
        assert float(row["mse"]) > 0 and row["lpips"] == "" and row["peak_mem_gib"] == ""
        assert "frames=7 steps=3" in row["setup"] and "generator=stylegan2-tiny.pt#" in row["setup"]
    # Per output frame: 3 windows × 3 steps over 3 frames against 2 × 3 over 7; the official step
    # also recomputes the real frames' VGG taps, so it costs more than ours.
    ratio = float(official["flops_per_frame"]) / float(ours["flops_per_frame"])
    assert ratio > (3 / 3) / (2 / 7)
    table = (out / "speed.md").read_text()
    assert all(f"| {name} |" in table for name in names) and "±" in table and "VGG taps every step" in table


def test_the_official_rows_are_reused_only_for_the_setup_they_were_made_with(smoke_dir, tmp_path, capsys,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "first"
    assert run_bench(smoke_dir, first, "--seeds", "0", "--schedules", "ciinv") == 0
    made = read_rows(first / "speed.csv")
    assert [r["schedule"] for r in made] == ["official", "ciinv"]

    again = tmp_path / "again"
    assert run_bench(smoke_dir, again, "--seeds", "0", "--schedules", "official-fixed-noise,ciinv-no-stop",
                     "--reference", str(first / "speed.csv")) == 0
    rows = read_rows(again / "speed.csv")
    assert [r["schedule"] for r in rows] == ["official", "official-fixed-noise", "ciinv-no-stop"]
    assert rows[0] == made[0]  # taken as it was, not run again; the row the reference lacks is run
    assert rows[1]["setup"] == made[0]["setup"] and rows[1]["flops_per_frame"] == made[0]["flops_per_frame"]
    assert "official rows from" in (again / "speed.md").read_text()
    # ciinv's own levers may change against the same official rows; the loss settings may not.
    levers = tmp_path / "levers.yaml"
    levers.write_text("invert: {stop_tolerance: 0.005, lane_windows: 1, warm_lr_scale: 0.5}\n")
    assert run_bench(smoke_dir, tmp_path / "levers", "--seeds", "0", "--schedules", "ciinv", "--config",
                     str(REPO / "config.yaml"), str(smoke_dir / "smoke.yaml"), str(levers),
                     "--reference", str(first / "speed.csv")) == 0
    capsys.readouterr()
    loss = tmp_path / "loss.yaml"
    loss.write_text("invert: {lambda_icc: 0.5}\n")
    assert run_bench(smoke_dir, tmp_path / "loss", "--seeds", "0", "--config", str(REPO / "config.yaml"),
                     str(smoke_dir / "smoke.yaml"), str(loss), "--reference", str(first / "speed.csv")) == 1
    assert "another setup: settings" in capsys.readouterr().err
    capsys.readouterr()

    refused = tmp_path / "refused"
    assert run_bench(smoke_dir, refused, "--seeds", "0", "--steps", "4", "--reference",
                     str(first / "speed.csv")) == 1  # the later --steps wins
    assert "another setup: steps 3 (here 4)" in capsys.readouterr().err
    assert run_bench(smoke_dir, refused, "--seeds", "0", "5", "--reference", str(first / "speed.csv")) == 1
    assert "no official rows for seed(s) 5" in capsys.readouterr().err
    assert not refused.exists()


def test_the_truth_has_seeds_of_its_own_and_official_keeps_only_each_windows_base_frame(smoke_dir):
    config = load_config([REPO / "config.yaml", smoke_dir / "smoke.yaml"])
    settings = official_settings(InvertSettings.from_dict(config["invert"]), steps=2)
    assert settings.init == "zero" and settings.stride == 1 and not settings.early_stop
    nets = load_nets(settings, generator_path=config["models"]["generator"], flow_path=config["models"]["flow"],
                     vgg_path=config["models"]["vgg16"], device=torch.device("cpu"))
    codes, truth = make_sequence(nets.generator, 7, seed=0)
    assert codes.shape == (7, nets.generator.num_ws, 512) and truth.shape == (7, 3, 64, 64)
    # Not reachable with the constant maps every inversion starts from.
    assert (render(nets.generator, codes) - truth).abs().max() > 1e-3
    # The truth's z is not the first z of the mean latent's sample (seed 0) nor any small seed's.
    first = nets.generator.mapping(torch.randn(1, nets.generator.z_dim, generator=torch.Generator().manual_seed(0)))
    assert not torch.allclose(codes[3, 0], first[0])
    assert SEED_BASE > 10**6

    kept, results = run_official(nets, truth, settings, noise_seed=2)
    assert [r.start for r in results] == [0, 1, 2] and len(kept) == 3
    for r in results:
        assert torch.equal(kept[r.start], r.codes[0])


def test_each_optimiser_lever_gets_a_row_on_or_off():
    cpu = torch.device("cpu")
    schedules = lever_schedules(InvertSettings(), steps=10, device=cpu)
    assert schedules["ciinv+lr-ramp"].lr_rampdown == 0.25 and schedules["ciinv+lr-ramp"].lr_rampup == 0.05
    assert schedules["ciinv+warm-lr-x3"].warm_lr_scale == 3 and schedules["ciinv+code-stop"].stop_code_tolerance > 0
    on = lever_schedules(InvertSettings(lr_rampup=0.05, lr_rampdown=0.25), steps=10, device=cpu)
    assert "ciinv+lr-ramp" not in on and on["ciinv-no-lr-ramp"].lr_rampdown == 0


def test_with_init_e4e_the_encoder_start_is_compared_with_the_mean_start():
    schedules = lever_schedules(InvertSettings(init="e4e"), steps=10, device=torch.device("cpu"))
    assert schedules["ciinv"].init == "e4e" and schedules["ciinv-init-mean"].init == "mean"
    assert schedules["ciinv-init-e4e-offsets-zero"].e4e_offsets == "zero"
    assert not schedules["ciinv-no-warm-start"].warm_start  # every window from the encoder
    assert not any("init" in name for name in lever_schedules(InvertSettings(), 10, torch.device("cpu")))


def test_equal_is_said_only_within_the_spread_of_the_seeds():
    def rows(ratios):
        out = []
        for seed, ratio in enumerate(ratios):
            out += [{"schedule": "official", "seed": seed, "mse": 1.0, "flops_per_frame": 40.0,
                     "long_clip_flops_per_frame": 40.0, "seconds_per_frame": 8.0},
                    {"schedule": "ciinv", "seed": seed, "mse": ratio, "flops_per_frame": 2.0,
                     "long_clip_flops_per_frame": 1.6, "seconds_per_frame": 1.0}]
        return out

    assert speedup_line(rows([1.02, 0.96, 1.01])).startswith("speedup 20.0 at mse ratio 1.00 ± 0.03")
    assert speedup_line(rows([1.02, 0.96, 1.01])).endswith("seconds 8.0×; equal within the spread)")
    assert speedup_line(rows([1.10, 1.12, 1.11])).endswith("worse)")
    assert speedup_line(rows([1.10])).endswith("one seed: no spread)")


def test_the_flop_count_of_a_grouped_convolution_does_not_grow_with_its_groups():
    def count(groups):
        x = torch.randn(1, 40, 8, 8, requires_grad=True)
        w = torch.randn(40, 40 // groups, 3, 3, requires_grad=True)
        with flop_counter() as counter:
            F.conv2d(x, w, padding=1, groups=groups).sum().backward()
        return counter.get_total_flops()

    assert count(5) * 5 == count(1) == 3 * 2 * 40 * 40 * 9 * 64  # forward, input and weight gradients
