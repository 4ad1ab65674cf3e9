"""``segattn bench train`` through the entry function on tiny sizes, and its table's ratios."""

from __future__ import annotations

import re

import pytest
import torch

from segattn.cli.bench_train import Row, build_net, format_rows
from segattn.cli.main import main
from segattn.layers import SavedTensorMeter

TINY = ["bench", "train", "--dims", "2", "--batch-2d", "2", "--size-2d", "32", "36"]
TINY += ["--features-2d", "2", "4", "6", "8", "10", "--classes", "3", "--repeats", "2"]
TINY += ["--warmup", "0", "--threads", "1"]


def _row(out: str, net: str, attention: str, variant: str = "eager") -> list[str]:
    match = re.search(rf"^\s+2 {net}\s+{attention}\s+{variant}\s+(.*)$", out, re.M)
    assert match is not None, out
    return match.group(1).split()


def test_bench_train_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "--attention", "scse", "--channels-last", "--plain-autograd"]) == 0
    out = capsys.readouterr().out
    assert "2D 2x1x32x36 widths [2, 4, 6, 8, 10]; 3 classes" in out
    assert "median of 2 interleaved steps after 0 warm-up" in out
    assert "timed with malloc keeping freed memory" in out
    plain = _row(out, "unet", "none")
    scse = _row(out, "unet", "scse")
    _row(out, "basicunet", "none")
    _row(out, "unet", "scse", "channels_last")
    # columns: s/step x peak x saved x params x [x eager]
    assert plain[1] == plain[3] == plain[5] == plain[7] == "1.00"
    net = build_net("unet", 2, 3, (2, 4, 6, 8, 10), "scse")
    assert int(scse[6].replace(",", "")) == sum(p.numel() for p in net.parameters())
    torch.manual_seed(0)
    image = torch.randn(2, 1, 32, 36)
    with SavedTensorMeter(exclude=[net]) as meter:
        net(image)
    assert scse[4] == f"{meter.total_bytes / 1024**2:.1f}"
    assert float(scse[5]) > 1.0  # scSE's output and gates are kept on top of the plain net's
    # without the lean functions scSE also keeps the full-size g_c + g_s of every module
    assert float(_row(out, "unet", "scse", "plain_autograd")[5]) > float(scse[5])


def test_users_allocator_choice_is_timed_as_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGATTN_MALLOC", "default")
    assert main([*TINY, "--no-reference", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "timed with malloc keeping freed memory" not in out
    assert float(_row(out, "unet", "none")[2]) > 0  # peak memory measured after the timed steps


def test_format_rows_ratios_to_plain_network() -> None:
    rows = [
        Row(3, "unet", "none", "eager", params=100, saved_bytes=200, peaks=[10], seconds=[2.0]),
        Row(3, "unet", "se", "eager", params=110, saved_bytes=220, peaks=[20], seconds=[3.0]),
        Row(3, "basicunet", "none", "eager", params=50, saved_bytes=100, peaks=[5], seconds=[4]),
        Row(3, "unet", "se", "bf16", params=110, saved_bytes=None, peaks=[5], seconds=[1.5, 0.1]),
        Row(3, "unet", "cse", "eager", params=110, peaks=[5], seconds=[1], faults=[9, 1200, 7]),
    ]
    lines = format_rows(rows).splitlines()[2:]
    assert lines[1].split()[4:7] == ["3.000", "1.50", "0.0"]
    assert lines[1].split()[10:12] == ["110", "1.10"]
    assert lines[2].split()[5] == "2.00"  # basicunet vs the plain unet
    bf16 = lines[3].split()
    assert bf16[4] == "0.800" and bf16[-2] == "0.27"  # median time; vs eager se: 0.8 / 3
    assert bf16[-1] == "0" and lines[4].split()[-1] == "9"  # page faults per step: the median
    assert bf16[8] == "-"  # saved bytes not measured; the ratio to a missing plain row is itself


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "--attention", "nope"]) == 2
    assert "unknown attention ['nope']" in capsys.readouterr().err
    assert main([*TINY, "--repeats", "0"]) == 2
    assert main([*TINY, "--nets", "resnet", "--no-reference"]) == 2
    assert "unknown network" in capsys.readouterr().err
    assert main([*TINY, "--size-2d", "16", "16"]) == 2  # BasicUNet's bottleneck: 1 voxel
    assert "Expected more than 1 spatial element" in capsys.readouterr().err
