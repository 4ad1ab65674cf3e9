"""Tests for data_scripts/make_synthetic.py through its main()."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from segattn.data.layout import load_dataset
from segattn.data.phantoms import available

SCRIPT = Path(__file__).resolve().parents[2] / "data_scripts" / "make_synthetic.py"


def _main():
    spec = importlib.util.spec_from_file_location("make_synthetic", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_writes_dataset(tmp_path, capsys):
    out = tmp_path / "malc"
    argv = ["--kind", "malc", "--out", str(out), "--cases", "3", "--size", "32", "--seed", "2"]
    assert _main()([*argv, "--test-cases", "1"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "2 training + 1 test cases" in printed[0]
    info = load_dataset(out)
    assert (out / "imagesTr" / "malc_000_0000.nii.gz").is_file()
    assert (out / "labelsTs" / "malc_002.nii.gz").is_file()
    assert info.num_classes == 33


def test_native_layout(tmp_path, capsys):
    out = tmp_path / "raw"
    argv = ["--kind", "malc", "--out", str(out), "--cases", "2", "--size", "32"]
    assert _main()([*argv, "--layout", "native"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "native layout" in printed[0] and "32 structures" in printed[0]
    assert (out / "training-labels" / "malc_001_glm.nii.gz").is_file()
    assert not (out / "dataset.json").exists()


def test_kind_choices_come_from_the_registry(capsys):
    with pytest.raises(SystemExit):
        _main()(["--help"])
    usage = capsys.readouterr().out
    assert "{" + ",".join(available()) + "}" in usage


@pytest.mark.parametrize(
    "argv",
    [
        ["--kind", "nope", "--out", "x", "--cases", "2"],
        ["--kind", "malc", "--out", "x", "--cases", "two"],
        ["--kind", "malc", "--cases", "2"],
        ["--kind", "malc", "--out", "x", "--cases", "2", "--layout", "msd"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _main()(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("make_synthetic.py: error:")


@pytest.mark.parametrize("extra", [["--cases", "0"], ["--cases", "2", "--test-cases", "2"],
                                   ["--cases", "2", "--size", "4"]])  # fmt: skip
def test_bad_values_exit_1(tmp_path, extra, capsys):
    assert _main()(["--kind", "malc", "--out", str(tmp_path / "d"), *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("make_synthetic.py: error:")


def test_existing_other_dataset_is_refused(tmp_path, capsys):
    out = str(tmp_path / "d")
    assert _main()(["--kind", "malc", "--out", out, "--cases", "2", "--size", "32"]) == 0
    assert _main()(["--kind", "malc", "--out", out, "--cases", "2", "--size", "40"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert _main()(["--kind", "malc", "--out", out, "--cases", "2", "--size", "40",
                    "--overwrite"]) == 0  # fmt: skip
