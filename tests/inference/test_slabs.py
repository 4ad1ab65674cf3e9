"""Slab-wise forward passes equal MONAI's whole-volume sliding window and predict_volume."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference

from segattn.inference.slabs import (
    RowBuffer,
    WindowGrid,
    best_axis,
    merge_slabs,
    slice_slabs,
    sliding_window_slabs,
    tensor_slabs,
)
from segattn.inference.volume import predict_volume
from segattn.nets import UNet


def _stitch(slabs, axis: int) -> torch.Tensor:
    rows, parts = 0, []
    for row, t in slabs:
        assert row == rows  # in order, no gaps
        rows += t.shape[1 + axis]
        parts.append(t)
    return torch.cat(parts, 1 + axis)


@pytest.fixture(scope="module")
def net3d() -> torch.nn.Module:
    """A cheap window-dependent net: zero-padded convolutions see each window's borders."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv3d(4, 3, 3, padding=1)
    ).eval()


def _reference(net, image, roi, overlap) -> torch.Tensor:
    out = sliding_window_inference(
        image[None], roi, sw_batch_size=1, predictor=net, overlap=overlap, mode="gaussian"
    )
    assert isinstance(out, torch.Tensor)
    return out[0]


@pytest.mark.parametrize(
    "size, roi, overlap",
    [
        ((17, 19, 21), (8, 10, 6), 0.5),
        ((17, 19, 21), (8, 10, 6), 0.25),
        ((9, 30, 13), (12, 8, 13), 0.5),  # axis 0 shorter than the window: MONAI pads
        ((16, 16, 16), (16, 16, 16), 0.5),  # one window
    ],
)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_sliding_window_equals_monai(net3d, size, roi, overlap, axis: int) -> None:
    torch.manual_seed(1)
    image = torch.randn(2, *size)
    with torch.no_grad():
        expected = _reference(net3d, image, roi, overlap)
        got = _stitch(
            sliding_window_slabs(net3d, image, roi, axis=axis, overlap=overlap, sw_batch_size=1),
            axis,
        )
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.argmax(0), expected.argmax(0))


@pytest.mark.parametrize("blocks", [[(0, 7), (7, 19)], [(0, 5), (5, 6), (6, 13), (13, 19)]])
def test_column_blocks_tile_the_same_result(net3d, blocks) -> None:
    torch.manual_seed(2)
    image = torch.randn(2, 17, 19, 21)
    roi = (8, 10, 6)
    with torch.no_grad():
        expected = _reference(net3d, image, roi, 0.5)
        parts = [
            _stitch(
                sliding_window_slabs(
                    net3d, image, roi, axis=2, sw_batch_size=3, columns=c, column_axis=1
                ),
                2,
            )
            for c in blocks
        ]
    got = torch.cat(parts, 2)  # column axis 1 -> tensor dim 2
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_slab_sizes_follow_the_window_grid(net3d) -> None:
    """Rows are released as soon as no later window touches them: one stride at a time."""
    image = torch.randn(2, 33, 9, 10)
    with torch.no_grad():
        slabs = list(sliding_window_slabs(net3d, image, (8, 9, 10), axis=0, overlap=0.5))
    grid = WindowGrid((33, 9, 10), (8, 9, 10), 0.5)
    starts = sorted({s[0] for s in grid.starts})
    assert [row for row, _ in slabs] == starts
    assert max(t.shape[1] for _, t in slabs) <= 8


def test_buffer_size_and_best_axis() -> None:
    grid = WindowGrid((512, 512, 400), (96, 96, 96), 0.5)
    full = grid.buffer_bytes(20, 0, 1, 512)
    assert full == 21 * 4 * 96 * 512 * 400  # 20 classes + weights, one window deep
    assert grid.buffer_bytes(20, 0, 1, 128) < full / 2
    assert best_axis((512, 512, 400), (96, 96, 96)) == 0  # 512x400 cross-section < 512x512
    assert best_axis((400, 512, 512), (96, 96, 96)) == 1
    assert best_axis((512, 512, 400), (96, 96, 8)) == 2  # a thin window along z


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_equal_predict_volume(axis: int) -> None:
    torch.manual_seed(3)
    net = UNet(2, in_channels=2, num_classes=3, features=(4, 8)).eval()
    image = torch.randn(2, 11, 12, 13)
    with torch.no_grad():
        expected = predict_volume(net, image, mode="2d", slice_axis=axis, slice_batch=4)
        got = _stitch(slice_slabs(net, image, axis=axis, batch=4), axis)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_merge_weights_streams_of_different_heights() -> None:
    a = torch.rand(3, 10, 4, 5)
    b = torch.rand(3, 10, 4, 5)
    merged = _stitch(
        merge_slabs(
            [tensor_slabs(a, axis=0, rows=3), tensor_slabs(b, axis=0, rows=4)],
            [0.25, 0.75],
            axis=0,
            size=10,
        ),
        0,
    )
    torch.testing.assert_close(merged, 0.25 * a + 0.75 * b)


def test_row_buffer_releases_and_refuses_dropped_rows() -> None:
    t = torch.arange(10.0).view(1, 10, 1, 1)
    held = RowBuffer(tensor_slabs(t, axis=0, rows=3), axis=0)
    assert held.get(2, 5).flatten().tolist() == [2, 3, 4]
    held.release(3)
    assert held.get(3, 7).flatten().tolist() == [3, 4, 5, 6]
    with pytest.raises(RuntimeError, match="no longer held"):
        held.get(0, 2)
    with pytest.raises(RuntimeError, match="ended"):
        held.get(8, 12)


def test_small_max_slab_yields_single_rows_with_the_same_values(net3d) -> None:
    torch.manual_seed(4)
    image = torch.randn(2, 17, 19, 21)
    with torch.no_grad():
        expected = _reference(net3d, image, (8, 10, 6), 0.5)
        slabs = list(sliding_window_slabs(net3d, image, (8, 10, 6), axis=1, max_slab=1))
    assert [row for row, _ in slabs] == list(range(19))
    torch.testing.assert_close(_stitch(slabs, 1), expected, rtol=1e-5, atol=1e-5)
