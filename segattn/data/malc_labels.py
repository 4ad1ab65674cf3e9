"""Label IDs of the MICCAI 2012 Multi-Atlas Labeling Challenge (MALC) and its label protocols.

The MALC label maps (``training-labels/1000_3_glm.nii``) carry Neuromorphometrics brainCOLOR IDs
(http://www.neuromorphometrics.com/2012_MICCAI_Challenge_Data.html): non-cortical structures below
100 and cortical parcels from 100 on; paired structures have odd IDs on the left and even IDs on
the right (44 right / 45 left cerebral white matter, 100 right / 101 left anterior cingulate
gyrus). Names here are snake_case renderings of the protocol's names; "Cerebellum Exterior" is
called ``cerebellum_cortex`` and "Thalamus Proper" ``thalamus``, as in QuickNAT's tables.

Protocols (``dataset.json`` labels made from those IDs):

- ``quicknat``: QuickNAT's 33 classes (Roy et al., "QuickNAT: A fully convolutional network for
  quick and accurate segmentation of neuroanatomy", NeuroImage 2019,
  https://arxiv.org/abs/1801.04161): cortical parcels collapse to left (odd) -> 211 and right
  (even) -> 210 cortex (not Neuromorphometrics IDs), then the IDs of :data:`QUICKNAT_IDS` become
  classes 1..32 in that order and every other ID (vermis, vessels, optic chiasm, ...) becomes
  background.
- ``all``: every ID present, renumbered 1..K-1 in increasing order (:func:`all_protocol_labels`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

#: Non-cortical Neuromorphometrics IDs -> structure name.
_SUBCORTICAL = {
    4: "third_ventricle",
    11: "fourth_ventricle",
    23: "right_accumbens",
    30: "left_accumbens",
    31: "right_amygdala",
    32: "left_amygdala",
    35: "brainstem",
    36: "right_caudate",
    37: "left_caudate",
    38: "right_cerebellum_cortex",
    39: "left_cerebellum_cortex",
    40: "right_cerebellum_white_matter",
    41: "left_cerebellum_white_matter",
    42: "right_cerebral_exterior",
    43: "left_cerebral_exterior",
    44: "right_cerebral_white_matter",
    45: "left_cerebral_white_matter",
    46: "csf",
    47: "right_hippocampus",
    48: "left_hippocampus",
    49: "right_inferior_lateral_ventricle",
    50: "left_inferior_lateral_ventricle",
    51: "right_lateral_ventricle",
    52: "left_lateral_ventricle",
    53: "right_lesion",
    54: "left_lesion",
    55: "right_pallidum",
    56: "left_pallidum",
    57: "right_putamen",
    58: "left_putamen",
    59: "right_thalamus",
    60: "left_thalamus",
    61: "right_ventral_dc",
    62: "left_ventral_dc",
    63: "right_vessel",
    64: "left_vessel",
    69: "optic_chiasm",
    71: "cerebellar_vermal_lobules_i_v",
    72: "cerebellar_vermal_lobules_vi_vii",
    73: "cerebellar_vermal_lobules_viii_x",
    75: "left_basal_forebrain",
    76: "right_basal_forebrain",
    210: "right_cerebral_cortex",
    211: "left_cerebral_cortex",
}

#: Cortical parcels: right-hemisphere ID -> gyrus; the left parcel is ID + 1.
_CORTICAL = {
    100: "anterior_cingulate_gyrus",
    102: "anterior_insula",
    104: "anterior_orbital_gyrus",
    106: "angular_gyrus",
    108: "calcarine_cortex",
    112: "central_operculum",
    114: "cuneus",
    116: "entorhinal_area",
    118: "frontal_operculum",
    120: "frontal_pole",
    122: "fusiform_gyrus",
    124: "gyrus_rectus",
    128: "inferior_occipital_gyrus",
    132: "inferior_temporal_gyrus",
    134: "lingual_gyrus",
    136: "lateral_orbital_gyrus",
    138: "middle_cingulate_gyrus",
    140: "medial_frontal_cortex",
    142: "middle_frontal_gyrus",
    144: "middle_occipital_gyrus",
    146: "medial_orbital_gyrus",
    148: "postcentral_gyrus_medial_segment",
    150: "precentral_gyrus_medial_segment",
    152: "superior_frontal_gyrus_medial_segment",
    154: "middle_temporal_gyrus",
    156: "occipital_pole",
    160: "occipital_fusiform_gyrus",
    162: "opercular_part_of_inferior_frontal_gyrus",
    164: "orbital_part_of_inferior_frontal_gyrus",
    166: "posterior_cingulate_gyrus",
    168: "precuneus",
    170: "parahippocampal_gyrus",
    172: "posterior_insula",
    174: "parietal_operculum",
    176: "postcentral_gyrus",
    178: "posterior_orbital_gyrus",
    180: "planum_polare",
    182: "precentral_gyrus",
    184: "planum_temporale",
    186: "subcallosal_area",
    190: "superior_frontal_gyrus",
    192: "supplementary_motor_cortex",
    194: "supramarginal_gyrus",
    196: "superior_occipital_gyrus",
    198: "superior_parietal_lobule",
    200: "superior_temporal_gyrus",
    202: "temporal_pole",
    204: "triangular_part_of_inferior_frontal_gyrus",
    206: "transverse_temporal_gyrus",
}

#: Neuromorphometrics ID -> snake_case structure name (read-only).
NEUROMORPHOMETRICS_NAMES = MappingProxyType(
    dict(
        sorted(
            {
                **_SUBCORTICAL,
                **{rid: f"right_{name}" for rid, name in _CORTICAL.items()},
                **{rid + 1: f"left_{name}" for rid, name in _CORTICAL.items()},
            }.items()
        )
    )
)


def structure_name(label_id: int) -> str:
    """Name of a Neuromorphometrics ID; ``0`` is ``background``, unknown IDs ``label_<id>``.

    Example:
        >>> structure_name(45), structure_name(143), structure_name(999)
        ('left_cerebral_white_matter', 'left_middle_frontal_gyrus', 'label_999')
    """
    if label_id == 0:
        return "background"
    return NEUROMORPHOMETRICS_NAMES.get(int(label_id), f"label_{int(label_id)}")


PROTOCOLS = ("quicknat", "all")
#: Cortical parcels start at this Neuromorphometrics ID; odd IDs are left, even IDs right.
FIRST_CORTICAL_ID = 100
LEFT_CORTEX_ID, RIGHT_CORTEX_ID = 211, 210
#: Neuromorphometrics IDs of QuickNAT's classes 1..32, in class order (DESIGN.md "Data layouts").
QUICKNAT_IDS = (
    45, 211, 52, 50, 41, 39, 60, 37, 58, 56, 4, 11, 35, 48, 32, 46,
    30, 62, 44, 210, 51, 49, 40, 38, 59, 36, 57, 55, 47, 31, 23, 61,
)  # fmt: skip
#: QuickNAT class name -> class value, background 0 (the ``labels`` of dataset.json).
QUICKNAT_LABELS: dict[str, int] = {
    "background": 0,
    **{structure_name(i): c for c, i in enumerate(QUICKNAT_IDS, start=1)},
}
_QUICKNAT_TABLE = np.zeros(LEFT_CORTEX_ID + 1, dtype=np.int64)
_QUICKNAT_TABLE[list(QUICKNAT_IDS)] = np.arange(1, len(QUICKNAT_IDS) + 1)

IdToClass = Callable[[np.ndarray], np.ndarray]


def collapse_cortex(ids: np.ndarray) -> np.ndarray:
    """Cortical parcels (IDs >= 100) -> 211 (odd, left) or 210 (even, right); others unchanged."""
    ids = np.asarray(ids)
    return np.where(
        ids >= FIRST_CORTICAL_ID, np.where(ids % 2 == 1, LEFT_CORTEX_ID, RIGHT_CORTEX_ID), ids
    )


def quicknat_class(ids: np.ndarray) -> np.ndarray:
    """QuickNAT class (0..32, int64) of each Neuromorphometrics ID in ``ids``."""
    collapsed = collapse_cortex(np.asarray(ids, dtype=np.int64))
    return np.where(collapsed >= 0, _QUICKNAT_TABLE[np.clip(collapsed, 0, LEFT_CORTEX_ID)], 0)


def to_quicknat(ids: np.ndarray) -> np.ndarray:
    """Neuromorphometrics ID map -> QuickNAT class map (uint8, values 0..32, same shape).

    Example:
        >>> to_quicknat(np.array([0, 45, 143, 142, 69, 61])).tolist()
        [0, 1, 2, 20, 0, 32]
    """
    return relabel(ids, quicknat_class, np.uint8)


def all_protocol_labels(ids: Iterable[int]) -> tuple[dict[str, int], dict[str, int]]:
    """``labels`` and ``original_label_ids`` of the ``all`` protocol for the IDs present.

    Background (0) stays 0; the other IDs become 1..K-1 in increasing order, named by
    :func:`structure_name`.

    Example:
        >>> all_protocol_labels([45, 0, 999])[0]
        {'background': 0, 'left_cerebral_white_matter': 1, 'label_999': 2}
    """
    kept = [0, *sorted({int(i) for i in ids} - {0})]
    labels = {structure_name(i): c for c, i in enumerate(kept)}
    return labels, {structure_name(i): i for i in kept}


def relabel(ids: np.ndarray, id_to_class: IdToClass, dtype: Any = np.uint8) -> np.ndarray:
    """Apply ``id_to_class`` (vectorised over an array of distinct IDs) to every voxel of ``ids``.

    A lookup table over the ID range when it is small (the usual case), ``np.unique`` otherwise.
    """
    ids = np.asarray(ids)
    if ids.size == 0:
        return np.zeros(ids.shape, dtype=dtype)
    low, high = int(ids.min()), int(ids.max())
    if low >= 0 and high < 1 << 20:
        table = id_to_class(np.arange(high + 1, dtype=np.int64)).astype(dtype)
        return table[ids]
    unique, inverse = np.unique(ids, return_inverse=True)
    return id_to_class(unique.astype(np.int64)).astype(dtype)[inverse].reshape(ids.shape)


def present_ids(ids: np.ndarray) -> set[int]:
    """The distinct values of an integer array."""
    ids = np.asarray(ids)
    if ids.size and int(ids.min()) >= 0 and int(ids.max()) < 1 << 20:
        return {int(i) for i in np.flatnonzero(np.bincount(ids.ravel()))}
    return {int(i) for i in np.unique(ids)}


def id_lookup(labels: Mapping[str, int], original_ids: Mapping[str, int]) -> IdToClass:
    """Vectorised ID -> class from dataset.json's ``labels`` (name -> class) and
    ``original_label_ids`` (name -> ID); IDs not listed map to background 0."""
    pairs = sorted((int(original_ids[name]), int(value)) for name, value in labels.items())
    ids_sorted = np.array([i for i, _ in pairs], dtype=np.int64)
    classes = np.array([c for _, c in pairs], dtype=np.int64)

    def id_to_class(ids: np.ndarray) -> np.ndarray:
        position = np.clip(np.searchsorted(ids_sorted, ids), 0, len(ids_sorted) - 1)
        return np.where(ids_sorted[position] == ids, classes[position], 0)

    return id_to_class
