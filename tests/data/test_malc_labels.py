"""Tests for the MALC label IDs and protocols: QuickNAT's 33 classes and the ``all`` renumbering."""

from __future__ import annotations

import numpy as np
import pytest

from segattn.data.malc_labels import (
    NEUROMORPHOMETRICS_NAMES,
    QUICKNAT_IDS,
    QUICKNAT_LABELS,
    all_protocol_labels,
    collapse_cortex,
    id_lookup,
    present_ids,
    relabel,
    structure_name,
    to_quicknat,
)


def test_quicknat_classes_follow_the_design_order():
    assert len(QUICKNAT_IDS) == len(set(QUICKNAT_IDS)) == 32
    assert list(QUICKNAT_LABELS.values()) == list(range(33))
    # the order of DESIGN.md, spelled out by name
    expected = {
        1: "left_cerebral_white_matter", 2: "left_cerebral_cortex", 3: "left_lateral_ventricle",
        4: "left_inferior_lateral_ventricle", 5: "left_cerebellum_white_matter",
        6: "left_cerebellum_cortex", 7: "left_thalamus", 8: "left_caudate", 9: "left_putamen",
        10: "left_pallidum", 11: "third_ventricle", 12: "fourth_ventricle", 13: "brainstem",
        14: "left_hippocampus", 15: "left_amygdala", 16: "csf", 17: "left_accumbens",
        18: "left_ventral_dc", 19: "right_cerebral_white_matter", 20: "right_cerebral_cortex",
        21: "right_lateral_ventricle", 22: "right_inferior_lateral_ventricle",
        23: "right_cerebellum_white_matter", 24: "right_cerebellum_cortex", 25: "right_thalamus",
        26: "right_caudate", 27: "right_putamen", 28: "right_pallidum", 29: "right_hippocampus",
        30: "right_amygdala", 31: "right_accumbens", 32: "right_ventral_dc",
    }  # fmt: skip
    assert {v: k for k, v in QUICKNAT_LABELS.items() if v} == expected


@pytest.mark.parametrize(
    ("label_id", "name"),
    [
        (4, "third_ventricle"), (11, "fourth_ventricle"), (23, "right_accumbens"),
        (30, "left_accumbens"), (31, "right_amygdala"), (32, "left_amygdala"), (35, "brainstem"),
        (36, "right_caudate"), (37, "left_caudate"), (38, "right_cerebellum_cortex"),
        (39, "left_cerebellum_cortex"), (40, "right_cerebellum_white_matter"),
        (41, "left_cerebellum_white_matter"), (44, "right_cerebral_white_matter"),
        (45, "left_cerebral_white_matter"), (46, "csf"), (47, "right_hippocampus"),
        (48, "left_hippocampus"), (49, "right_inferior_lateral_ventricle"),
        (50, "left_inferior_lateral_ventricle"), (51, "right_lateral_ventricle"),
        (52, "left_lateral_ventricle"), (55, "right_pallidum"), (56, "left_pallidum"),
        (57, "right_putamen"), (58, "left_putamen"), (59, "right_thalamus"), (60, "left_thalamus"),
        (61, "right_ventral_dc"), (62, "left_ventral_dc"), (69, "optic_chiasm"),
        (100, "right_anterior_cingulate_gyrus"), (207, "left_transverse_temporal_gyrus"),
        (0, "background"), (999, "label_999"),
    ],
)  # fmt: skip
def test_neuromorphometrics_names(label_id, name):
    assert structure_name(label_id) == name


def test_paired_cortical_parcels_are_odd_left_even_right():
    cortical = {i: n for i, n in NEUROMORPHOMETRICS_NAMES.items() if 100 <= i < 210}
    assert len(cortical) == 98
    for label_id, name in cortical.items():
        assert name.startswith("left_" if label_id % 2 else "right_"), (label_id, name)
    assert len(set(NEUROMORPHOMETRICS_NAMES.values())) == len(NEUROMORPHOMETRICS_NAMES)


def test_to_quicknat_voxel_exact():
    ids = np.array(
        [[0, 45, 44, 101, 143, 207],   # background, WM L/R, left parcels (odd)
         [100, 142, 206, 52, 4, 11],   # right parcels (even), left LV, 3rd/4th ventricles
         [69, 71, 63, 64, 75, 999],    # not kept -> 0; 999 (>= 100, odd): left cortex
         [46, 61, 23, 211, 210, 35]],
        dtype=np.int16,
    )  # fmt: skip
    expected = np.array(
        [[0, 1, 19, 2, 2, 2],
         [20, 20, 20, 3, 11, 12],
         [0, 0, 0, 0, 0, 2],
         [16, 32, 31, 2, 20, 13]],
    )  # fmt: skip
    out = to_quicknat(ids)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(
        collapse_cortex(np.array([99, 100, 101, 1000])), [99, 210, 211, 210]
    )


def test_to_quicknat_handles_negative_and_huge_ids():
    ids = np.array([-5, 45, 2**40, 2**40 + 1], dtype=np.int64)
    np.testing.assert_array_equal(to_quicknat(ids), [0, 1, 20, 2])


def test_all_protocol_renumbers_in_increasing_id_order():
    labels, original = all_protocol_labels({143, 4, 0, 69, 1234})
    assert labels == {
        "background": 0, "third_ventricle": 1, "optic_chiasm": 2,
        "left_middle_frontal_gyrus": 3, "label_1234": 4,
    }  # fmt: skip
    assert original == {
        "background": 0, "third_ventricle": 4, "optic_chiasm": 69,
        "left_middle_frontal_gyrus": 143, "label_1234": 1234,
    }  # fmt: skip
    lookup = id_lookup(labels, original)
    ids = np.array([[0, 4, 69], [143, 1234, 5]])
    np.testing.assert_array_equal(relabel(ids, lookup), [[0, 1, 2], [3, 4, 0]])
    assert labels == all_protocol_labels([1234, 69, 143, 4])[0]  # background always present


def test_present_ids():
    assert present_ids(np.array([[3, 0], [3, 207]], np.uint8)) == {0, 3, 207}
    assert present_ids(np.array([-1, 2**30])) == {-1, 2**30}
