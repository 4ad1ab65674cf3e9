"""Ensemble weights, the QuickNAT view preset and compatibility errors."""

from __future__ import annotations

import math

import pytest

from segattn.errors import InputFileError, SegattnError
from segattn.inference.checkpoint import load_checkpoint
from segattn.inference.ensemble import check_compatible, resolve_weights, view_of


def test_equal_and_given_weights(make_ckpt) -> None:
    infos = [load_checkpoint(make_ckpt(f"m{i}.ckpt")) for i in range(3)]
    assert resolve_weights(infos, None) == pytest.approx([1 / 3] * 3)
    assert resolve_weights(infos, [1, 2, 5]) == pytest.approx([0.125, 0.25, 0.625])
    with pytest.raises(SegattnError, match="2 weight\\(s\\) given for 3 model\\(s\\)"):
        resolve_weights(infos, [1, 2])
    for bad in ([1, 0, 2], [1, -1, 2], [1, math.nan, 2], [1, math.inf, 1]):
        with pytest.raises(SegattnError, match="positive"):
            resolve_weights(infos, bad)
    with pytest.raises(SegattnError, match="unknown weights preset 'fastnat'"):
        resolve_weights(infos, "fastnat")


@pytest.mark.parametrize(
    "orientation, axis, view",
    [
        ("RAS", 0, "sagittal"),
        ("RAS", 1, "coronal"),
        ("RAS", 2, "axial"),
        ("LPS", 1, "coronal"),
        ("PIL", 0, "coronal"),
        ("PIL", 1, "axial"),
        ("PIL", 2, "sagittal"),
        (None, 1, None),
    ],
)
def test_view_follows_orientation_and_slice_axis(make_ckpt, orientation, axis, view) -> None:
    info = load_checkpoint(make_ckpt(mode="2d", slice_axis=axis, orientation=orientation))
    assert view_of(info) == view


def test_quicknat_preset_assigns_weights_by_view(make_ckpt) -> None:
    # given in axial, sagittal, coronal order: weights follow the views, not the order
    names = {2: "ax.ckpt", 0: "sag.ckpt", 1: "cor.ckpt"}
    infos = [load_checkpoint(make_ckpt(names[a], mode="2d", slice_axis=a)) for a in (2, 0, 1)]
    assert resolve_weights(infos, "quicknat") == pytest.approx([0.4, 0.2, 0.4])
    assert resolve_weights(infos, "QuickNAT") == pytest.approx([0.4, 0.2, 0.4])
    # two views: renormalised
    assert resolve_weights(infos[:2], "quicknat") == pytest.approx([0.4 / 0.6, 0.2 / 0.6])


def test_quicknat_preset_refuses_3d_duplicates_and_unknown_views(make_ckpt) -> None:
    cor = load_checkpoint(make_ckpt("cor.ckpt", mode="2d", slice_axis=1))
    three_d = load_checkpoint(make_ckpt("3d.ckpt"))
    with pytest.raises(InputFileError, match="3d.ckpt: is a 3D model"):
        resolve_weights([cor, three_d], "quicknat")
    cor2 = load_checkpoint(make_ckpt("cor2.ckpt", mode="2d", slice_axis=1, seed=1))
    with pytest.raises(InputFileError, match="cor2.ckpt: coronal view like .*cor.ckpt"):
        resolve_weights([cor, cor2], "quicknat")
    free = load_checkpoint(make_ckpt("free.ckpt", mode="2d", slice_axis=0, orientation=None))
    with pytest.raises(InputFileError, match="view is unknown"):
        resolve_weights([cor, free], "quicknat")


def test_incompatible_checkpoints_name_both(make_ckpt) -> None:
    a = load_checkpoint(make_ckpt("a.ckpt"))
    renamed = load_checkpoint(make_ckpt("b.ckpt", labels={"background": 0, "x": 1, "right": 2}))
    with pytest.raises(InputFileError) as err:
        check_compatible([a, renamed])
    msg = str(err.value)
    assert msg.startswith(f"{renamed.path}: labels differ from {a.path}")
    assert "class 1: 'x' vs 'left'" in msg and "\n" not in msg
    fewer = load_checkpoint(make_ckpt("c.ckpt", labels={"background": 0, "left": 1}))
    with pytest.raises(InputFileError, match="2 classes vs 3"):
        check_compatible([a, fewer])
    two = load_checkpoint(make_ckpt("d.ckpt", in_channels=2))
    with pytest.raises(InputFileError, match=r"d.ckpt: takes 2 channel\(s\) but .*a.ckpt takes 1"):
        check_compatible([a, two])
    check_compatible([a, load_checkpoint(make_ckpt("e.ckpt", mode="2d", slice_axis=0))])
