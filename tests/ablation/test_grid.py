"""Grid files: expansion into cells, composed configs, digests, and the checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ablation_helpers import write_grid

from segattn.ablation.grid import format_value, is_seed_axis, load_grid, set_dotted
from segattn.errors import InputFileError, SegattnError


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    for folder in ("imagesTs", "labelsTs"):
        (root / folder).mkdir(parents=True)
    (root / "splits_final.json").write_text(json.dumps([{"train": ["a"], "val": ["b"]}]))
    return root


def test_cells_are_the_product_of_generic_dotted_axes(data_root: Path, tmp_path: Path) -> None:
    axes = {
        "model.net": ["unet", "quicknat"],  # any dotted key, whether or not the base knows it
        "model.attention": [None, "scse"],
        "seed_everything": [0, 1, 2],
    }
    spec = load_grid(write_grid(tmp_path / "g.yaml", data_root, axes=axes))
    cells = spec.cells()
    assert len(cells) == 12 and spec.seed_axes == ["seed_everything"]
    assert cells[0].name == "net=unet__attention=none__seed_everything=0"
    assert cells[-1].params == {
        "model.net": "quicknat",
        "model.attention": "scse",
        "seed_everything": 2,
    }
    config = cells[-1].config
    assert config["model"]["net"] == "quicknat" and config["model"]["attention"] == "scse"
    assert config["seed_everything"] == 2 and config["trainer"]["max_epochs"] == 1
    assert config["model"]["features"] == [4, 8]  # from overrides
    assert config["data"]["root"] == str(data_root.resolve())
    assert config["model"]["optimizer"]["class_path"] == "torch.optim.AdamW"  # rest of the base
    assert len({c.digest for c in cells}) == 12


def test_digest_follows_the_config(data_root: Path, tmp_path: Path) -> None:
    first = load_grid(write_grid(tmp_path / "a.yaml", data_root)).cells()
    again = load_grid(write_grid(tmp_path / "b.yaml", data_root)).cells()
    assert [c.digest for c in first] == [c.digest for c in again]
    other = load_grid(write_grid(tmp_path / "c.yaml", data_root, metrics=["dice"])).cells()
    assert all(a.digest != b.digest for a, b in zip(first, other))
    # the base config's contents count, not its path
    base = yaml.safe_load((Path(__file__).parents[2] / "configs/unet2d_scse.yaml").read_text())
    base["model"]["norm"] = "batch"
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    edited = load_grid(write_grid(tmp_path / "d.yaml", data_root, base="base.yaml")).cells()
    assert all(a.digest != b.digest for a, b in zip(first, edited))


def test_fold_test_set_trains_on_the_fold(data_root: Path, tmp_path: Path) -> None:
    test = {"fold": 0, "splits_file": "splits_final.json"}
    spec = load_grid(write_grid(tmp_path / "g.yaml", data_root, test=test))
    data = spec.cells()[0].config["data"]
    assert data["fold"] == 0
    assert data["splits_file"] == str((data_root / "splits_final.json").resolve())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"axis": {}}, "did you mean 'axes'"),
        ({"axes": {"model.attention": []}}, "non-empty lists"),
        ({"axes": {"model.attention": ["cse", "cse"]}}, "repeats"),
        ({"baseline": {"model.net": "unet"}}, "not an axis"),
        ({"baseline": {"model.attention": "sse"}}, "not among"),
        ({"baseline": {"seed_everything": 0}}, "seed axis"),
        ({"overrides": {"seed_everything": 3}}, "both in 'axes' and 'overrides'"),
        ({"metrics": ["dice", "iou"]}, "metrics"),
        ({"test": {"images": "imagesTs"}}, "'test' must be"),
        ({"test": {"images": "nope", "labels": "labelsTs"}}, "not found"),
        ({"base": "missing.yaml"}, "base config missing.yaml not found"),
    ],
)
def test_bad_grids_name_the_problem(data_root: Path, tmp_path: Path, changes, message) -> None:
    with pytest.raises(InputFileError, match=message):
        load_grid(write_grid(tmp_path / "g.yaml", data_root, **changes))


def test_helpers() -> None:
    assert [format_value(v) for v in (None, True, "cse", 3, 0.5, [4, 8], {"b": 1})] == [
        "none",
        "true",
        "cse",
        "3",
        "0.5",
        "[4,8]",
        '{"b":1}',
    ]
    assert is_seed_axis("seed_everything") and is_seed_axis("data.seed")
    assert not is_seed_axis("model.seeds")
    config: dict = {"model": {"attention": "scse"}, "trainer": 3}
    set_dotted(config, "model.attention_kwargs.reduction", 4)
    assert config["model"] == {"attention": "scse", "attention_kwargs": {"reduction": 4}}
    with pytest.raises(SegattnError, match="trainer is not a section"):
        set_dotted(config, "trainer.max_epochs", 1)


def test_example_grid_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for folder in ("imagesTs", "labelsTs"):
        (tmp_path / "data" / "malc_phantom" / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    example = Path(__file__).parents[2] / "configs" / "ablation_malc_phantom.yaml"
    spec = load_grid(example)
    cells = spec.cells()
    assert len(cells) == 8 and spec.baseline == {"model.attention": None}
    assert spec.base.name == "unet2d_scse.yaml" and spec.metrics == ("dice", "hd95", "nsd")
    assert {c.config["model"]["attention"] for c in cells} == {None, "cse", "sse", "scse"}
    assert cells[0].config["model"]["lr_scheduler"]["init_args"]["total_iters"] == 8
