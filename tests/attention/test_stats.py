"""``segattn modules``' numbers are measured on the modules and agree with hand counts."""

from __future__ import annotations

import pytest

from segattn.attention import available, create
from segattn.attention.stats import format_module_table, module_stats, module_table
from segattn.cli.main import main


def test_se_and_sse_counts_match_hand_computation() -> None:
    se = module_stats("se", channels=64, size_2d=(64, 64), size_3d=(32, 32, 32))
    hidden = 64 // 16
    assert se.params_2d == se.params_3d == 2 * 64 * hidden + hidden + 64
    assert se.macs_2d == se.macs_3d == 2 * 64 * hidden  # two linear layers on the pooled vector
    sse = module_stats("sse", channels=64, size_2d=(64, 64), size_3d=(32, 32, 32))
    assert sse.params_2d == 65
    assert sse.macs_2d == 64 * 64 * 64  # C -> 1 at every position
    assert sse.macs_3d == 64 * 32**3
    assert se.gate == "(0, 1)"


def test_gate_range_reflects_the_options_of_the_built_module() -> None:
    assert module_stats("scse", channels=16, size_2d=(8, 8), size_3d=(4, 4, 4)).gate.startswith(
        "(0, 2)"
    )
    assert create("scse", 16, aggregation="max").gate_range == (0.0, 1.0)


def test_table_has_every_registered_module_with_paper_and_costs() -> None:
    rows = module_table(channels=32, size_2d=(16, 16), size_3d=(8, 8, 8))
    assert [r.name for r in rows] == available()
    for row in rows:
        assert row.paper and row.url.startswith("https://")
        assert row.params_2d >= 0 and row.macs_2d >= 0
    text = format_module_table(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + len(available())
    assert "MACs 3D 8x8x8" in lines[0]


def test_cli_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["modules", "--channels", "32", "--size-2d", "16", "16", "--size-3d", "8", "8", "8"])
        == 0
    )
    out = capsys.readouterr().out
    for name in available():
        assert f"| {name} " in out


def test_cli_rejects_a_bad_width(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modules", "--channels", "0"]) == 2
    err = capsys.readouterr().err
    assert "channels" in err and err.count("\n") == 1
