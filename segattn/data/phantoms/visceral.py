"""VISCERAL-like synthetic contrast-enhanced CT of the thorax and abdomen, with 20 labelled organs.

Stands in for VISCERAL Anatomy3 ``CTce_ThAb`` scans (see :mod:`segattn.data.visceral` and
DESIGN.md "Data layouts") where the real ones are not at hand: a torso from the pelvis to the lower
neck in Hounsfield units (air -1000, lung about -850, fat -100, muscle 50, enhanced liver 60-110,
aorta 150-300, renal cortex 150-220, bone cortex 700-1000 around marrow 200-300, bile and urine
0-20), with all organs of :data:`~segattn.data.visceral.VISCERAL_ORGANS` including the small
adrenal glands, gallbladder and thyroid and the left/right pairs, and unlabelled heart, stomach,
bowel, vena cava, ribs, spine and pelvis around them. Left and right organs look alike and several
organs share their HU range, so a network has to use position and shape.

Each case has its own body pose and size, subcutaneous fat, breathing phase (diaphragm height),
organ positions and sizes, smooth deformation, contrast enhancement, noise level and voxel grid:
axial slices (axis 2), in-plane spacing ``FOV / size`` with a field of view of 400-460 mm and a
slice thickness 1.9-3.75 times the in-plane spacing (0.8 mm pixels with 1.5-3 mm slices at
``size=512``, as in VISCERAL; 3.1-3.6 mm pixels with 6-13 mm slices at the default 128), enough
slices to cover the torso, and an axial voxel order such as LPS or RAS.

Annotation follows the VISCERAL conventions: one annotator ID per case, some organs deliberately
not annotated in some cases (recorded as ``missing_labels`` in the nnU-Net layout), and for some
cases a second annotator's (eroded) mask of one organ with a higher ID, which the converter's
default (lowest ID) leaves aside. ``layout="native"`` writes ``Volumes/`` and ``Segmentations/``
as VISCERAL does; ``layout="nnunet"`` writes what :func:`segattn.data.visceral.convert_visceral`
makes of them (same images, labels, dataset.json), merging masks with the converter's
:func:`~segattn.data.visceral.merge_masks`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from segattn.data.layout import (
    DATASET_JSON,
    Case,
    DatasetInfo,
    channel_file,
    load_dataset,
    write_dataset_json,
)
from segattn.data.phantoms._common import (
    PhantomCase,
    atlas_coordinates,
    case_seeds,
    check_size_and_layout,
    describe_record,
    make_geometry,
    phantom_folder,
    read_record,
    remove_stale,
    reuse_dataset,
    smooth_displacement,
    to_nifti,
)
from segattn.data.phantoms._torso import FOV_CENTRE, TISSUES, Z_RANGE, paint_torso
from segattn.data.visceral import (
    DEFAULT_MODALITY,
    FILE_ENDING,
    VISCERAL_ORGANS,
    conversion_settings,
    label_image,
    mask_voxels,
    merge_masks,
    settings_tag,
    visceral_dataset_json,
    visceral_labels,
)
from segattn.errors import SegattnError
from segattn.fileio import write_text_atomic
from segattn.imageio import write_image

#: Structure name -> label value of a phantom's label map (all 20 VISCERAL organs).
VISCERAL_LABELS: dict[str, int] = visceral_labels()
#: Voxel orders of the axial stacks (voxel axis 2 runs along the body axis).
AXIAL_ORIENTATIONS = ("LPS", "RAS", "LAS", "LPI", "RPI")
#: Case ``i`` is patient ``PATIENT_BASE + i``, volume 1: case name ``"90000000_1"``.
PATIENT_BASE = 90_000_000
MARKER = "synthetic.json"  # native layout: the generation record, written last
_FOV_RANGE = (400.0, 460.0)
_SLICE_RATIO = (1.5 / 0.8, 3.0 / 0.8)
_MISSABLE = (
    "thyroid_gland",
    "gallbladder",
    "urinary_bladder",
    "right_adrenal_gland",
    "left_adrenal_gland",
    "sternum",
    "pancreas",
    "trachea",
)
_PHANTOM_FILE = re.compile(r"^9\d{7}_1[_.]")  # files of cases named like PATIENT_BASE + i


class VisceralAnnotation(NamedTuple):
    """How a phantom case is annotated (drawn from the case seed, independently of the anatomy).

    Attributes:
        annotator: annotator ID of the case's masks.
        missing: organs without a mask, in class order.
        second_reader: ``(organ, annotator ID)`` of an extra, eroded mask by a second annotator
            with a higher ID, or None.
    """

    annotator: int
    missing: tuple[str, ...]
    second_reader: tuple[str, int] | None


def make_visceral_case(
    seed: int, size: int = 128, *, orientation: str | None = None
) -> PhantomCase:
    """Generate one VISCERAL-like CT case of ``size`` x ``size`` axial pixels.

    The same ``seed`` gives identical arrays; the anatomy depends on ``seed`` only, so ``size``
    and ``orientation`` change only how it is sampled and stored.

    Args:
        seed: case seed (>= 0).
        size: in-plane voxels (>= 16); the slice count follows from the slice thickness.
        orientation: axial voxel order such as ``"LPS"`` (axis 2 must be S or I); None picks one
            of :data:`AXIAL_ORIENTATIONS` from the seed.

    Returns:
        ``(image, label, affine)``: float32 HU image holding integers in -1024..3071, uint8
        labels (values of :data:`VISCERAL_LABELS`, every organ, annotated or not), and the 4x4
        voxel-to-RAS-world affine in mm.

    Example:
        >>> image, label, affine = make_visceral_case(0, size=32, orientation="LPS")
        >>> image.shape[:2], image.dtype, label.dtype, float(image.min()) >= -1024
        ((32, 32), dtype('float32'), dtype('uint8'), True)
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if orientation is not None and orientation.upper()[2:] not in ("S", "I"):
        raise ValueError(f"orientation must be axial (third letter S or I), got {orientation!r}")
    rng = np.random.default_rng(seed)
    fov = rng.uniform(*_FOV_RANGE)
    ratio = rng.uniform(*_SLICE_RATIO)
    code = AXIAL_ORIENTATIONS[int(rng.integers(len(AXIAL_ORIENTATIONS)))]
    pixel = fov / size
    thickness = pixel * ratio
    slices = math.ceil(((Z_RANGE[1] - Z_RANGE[0]) * 1.08 + 20.0) / thickness)
    shape = (size, size, slices)
    geometry = make_geometry(
        rng,
        shape,
        (pixel, pixel, thickness),
        orientation=(orientation or code).upper(),
        fov_centre=FOV_CENTRE,
        scale_range=(0.94, 1.06),
        max_head_rotation=3.0,
        max_grid_rotation=1.5,
    )
    coords = atlas_coordinates(geometry)
    coords += smooth_displacement(rng, coords, amplitude_mm=5.0, wavelengths_mm=(120.0, 320.0))
    tissue, label = paint_torso(coords.reshape(3, -1), rng, VISCERAL_LABELS)
    del coords
    image = _render(tissue.reshape(shape), rng)
    return PhantomCase(image, label.reshape(shape), geometry.affine)


def visceral_annotation(seed: int) -> VisceralAnnotation:
    """The annotation of the phantom case made from ``seed`` (see :class:`VisceralAnnotation`)."""
    rng = np.random.default_rng([int(seed), 1])
    annotator = int(rng.integers(1, 9))
    draw = rng.random()
    count = 0 if draw < 0.6 else 1 if draw < 0.9 else 2
    picked = set(rng.choice(_MISSABLE, size=count, replace=False).tolist())
    missing = tuple(name for name in VISCERAL_ORGANS if name in picked)
    second = None
    if rng.random() < 0.3:
        present = [name for name in VISCERAL_ORGANS if name not in picked]
        second = (
            str(present[int(rng.integers(len(present)))]),
            annotator + int(rng.integers(1, 6)),
        )
    return VisceralAnnotation(annotator, missing, second)


def make_visceral_dataset(
    out_dir: str | Path,
    cases: int,
    size: int = 128,
    seed: int = 0,
    test_cases: int = 0,
    overwrite: bool = False,
    layout: str = "nnunet",
) -> DatasetInfo:
    """Write ``cases`` VISCERAL-like CT cases and return the dataset's :class:`DatasetInfo`.

    Case ``i`` is ``<PATIENT_BASE + i>_1``, made from the ``i``-th seed derived from ``seed``.
    ``layout="nnunet"``: imagesTr/labelsTr (the last ``test_cases`` in imagesTs/labelsTs) and
    dataset.json as :func:`segattn.data.visceral.convert_visceral` writes them, plus the
    generation record under ``"synthetic"``. ``layout="native"``: VISCERAL's ``Volumes/`` and
    ``Segmentations/`` (no test split) and ``synthetic.json``; the returned info then describes
    the converted dataset it corresponds to (its ``root`` is ``out_dir``, no files listed). A
    complete folder made with the same arguments is reused unless ``overwrite``; files are
    written atomically and dataset.json / synthetic.json last.

    Raises:
        ValueError: bad counts, ``size`` or ``layout``, or ``test_cases`` with the native layout.
        SegattnError: the folder holds another dataset and ``overwrite`` is False.

    Example:
        >>> import tempfile
        >>> info = make_visceral_dataset(tempfile.mkdtemp(), cases=3, size=24, test_cases=1)
        >>> len(info.training), len(info.test), info.num_classes, info.channel_names
        (2, 1, 21, {'0': 'CT'})
    """
    check_size_and_layout(size, layout)
    out = phantom_folder(out_dir, cases, test_cases)
    if layout == "native" and test_cases:
        raise ValueError("the native VISCERAL layout has no test split; use test_cases=0")
    record = {
        "kind": "visceral",
        "cases": cases,
        "test_cases": test_cases,
        "seed": seed,
        "size": size,
        "layout": layout,
        "version": 1,
    }
    names = [f"{PATIENT_BASE + i}_1" for i in range(cases)]
    seeds = dict(zip(names, case_seeds(seed, cases), strict=True))
    settings = conversion_settings()
    missing = {name: list(visceral_annotation(seeds[name]).missing) for name in names}
    fields = visceral_dataset_json(settings, missing, cases - test_cases)
    if layout == "native":
        _write_native(out, names, seeds, size, record, overwrite)
        volumes = out / "Volumes"
        return DatasetInfo(
            root=out,
            channel_names=fields["channel_names"],
            labels=fields["labels"],
            training=[Case(n, [volumes / f"{n}_{DEFAULT_MODALITY}{FILE_ENDING}"]) for n in names],
            name="synthetic_visceral",
            layout="visceral",
        )
    if not overwrite:
        existing = reuse_dataset(out, record, test_cases)
        if existing is not None:
            return existing
    (out / DATASET_JSON).unlink(missing_ok=True)
    subsets = ["Tr"] * (cases - test_cases) + ["Ts"] * test_cases
    keep = {(f"images{s}", f"{n}_0000{FILE_ENDING}") for s, n in zip(subsets, names, strict=True)}
    keep |= {(f"labels{s}", f"{n}{FILE_ENDING}") for s, n in zip(subsets, names, strict=True)}
    _remove_stale(out, ("imagesTr", "labelsTr", "imagesTs", "labelsTs"), keep)
    tag = settings_tag(settings)
    for name, subset in zip(names, subsets, strict=True):
        case = make_visceral_case(seeds[name], size)
        annotation = visceral_annotation(seeds[name])
        volume = to_nifti(case.image.astype(np.int16), case.affine)
        masks = {
            organ: mask_voxels(case.label == value)
            for organ, value in VISCERAL_LABELS.items()
            if value and organ not in annotation.missing
        }
        label = merge_masks(masks, VISCERAL_LABELS, case.label.shape).label
        for folder in (out / f"images{subset}", out / f"labels{subset}"):
            folder.mkdir(parents=True, exist_ok=True)
        write_image(volume, channel_file(out / f"images{subset}", name, 0, FILE_ENDING))
        write_image(
            label_image(label, volume, tag), out / f"labels{subset}" / f"{name}{FILE_ENDING}"
        )
    channel_names, labels = fields.pop("channel_names"), fields.pop("labels")
    write_dataset_json(out, channel_names, labels, **fields, synthetic=record)
    return load_dataset(out)


def _write_native(
    out: Path,
    names: list[str],
    seeds: dict[str, int],
    size: int,
    record: dict[str, object],
    overwrite: bool,
) -> None:
    marker = out / MARKER
    volumes, segmentations = out / "Volumes", out / "Segmentations"
    files: dict[str, list[str]] = {"Volumes": [], "Segmentations": []}
    plan = []
    for name in names:
        annotation = visceral_annotation(seeds[name])
        stem = f"{name}_{DEFAULT_MODALITY}"
        masks = [
            (organ, radlex, annotation.annotator)
            for organ, radlex in VISCERAL_ORGANS.items()
            if organ not in annotation.missing
        ]
        if annotation.second_reader is not None:
            organ, reader = annotation.second_reader
            masks.append((organ, VISCERAL_ORGANS[organ], reader))
        files["Volumes"].append(f"{stem}{FILE_ENDING}")
        files["Segmentations"] += [f"{stem}_{r}_{a}{FILE_ENDING}" for _, r, a in masks]
        plan.append((name, stem, masks))
    complete = all((out / d / f).is_file() for d, fs in files.items() for f in fs)
    if not overwrite:
        existing = read_record(marker) if marker.is_file() else None
        if existing == record and complete:
            return
        foreign = out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir())
        if (existing is not None and existing != record) or (foreign and existing is None):
            raise SegattnError(
                f"{out} holds {describe_record(existing)}; pass overwrite=True (--overwrite) to "
                "replace it"
            )
    marker.unlink(missing_ok=True)
    keep = {(d, f) for d, fs in files.items() for f in fs}
    _remove_stale(out, ("Volumes", "Segmentations"), keep)
    volumes.mkdir(parents=True, exist_ok=True)
    segmentations.mkdir(parents=True, exist_ok=True)
    for name, stem, masks in plan:
        case = make_visceral_case(seeds[name], size)
        write_image(
            to_nifti(case.image.astype(np.int16), case.affine), volumes / f"{stem}{FILE_ENDING}"
        )
        primary: dict[str, np.ndarray] = {}
        for organ, radlex, reader in masks:
            if organ in primary:  # the second reader draws a little inside the first one
                mask = ndimage.binary_erosion(primary[organ]).astype(np.uint8)
            else:
                mask = primary.setdefault(
                    organ, (case.label == VISCERAL_LABELS[organ]).astype(np.uint8)
                )
            write_image(
                to_nifti(mask, case.affine),
                segmentations / f"{stem}_{radlex}_{reader}{FILE_ENDING}",
            )
    write_text_atomic(marker, json.dumps(record, indent=2) + "\n")


def _render(tissue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HU image from tissue classes: per-case enhancement, texture, partial volume, CT noise."""
    arterial = rng.uniform(150.0, 300.0)
    liver = rng.uniform(60.0, 110.0)
    cortex = rng.uniform(150.0, 220.0)
    drawn = {
        "blood": arterial,
        "vein": rng.uniform(0.55, 0.8) * arterial + 20.0,
        "liver": liver,
        "spleen": liver + rng.uniform(5.0, 25.0),
        "pancreas": liver + rng.uniform(-15.0, 10.0),
        "kidney_cortex": cortex,
        "kidney_medulla": cortex - rng.uniform(30.0, 70.0),
        "cortical_bone": rng.uniform(700.0, 1000.0),
        "marrow": rng.uniform(200.0, 300.0),
        "thyroid": rng.uniform(100.0, 160.0),
    }
    offsets = rng.normal(0.0, 3.0, len(TISSUES))
    means = np.array(
        [drawn[n] if v is None else v + offsets[i] for i, (n, v) in enumerate(TISSUES.items())],
        dtype=np.float32,
    )
    means[0] = -1000.0  # air is air
    amplitude = np.full(len(TISSUES), 8.0, np.float32)
    amplitude[[0, 1, 3]] = (2.0, 12.0, 40.0)  # air, fat, lung (vessels)
    noise_sigma = rng.uniform(8.0, 22.0)
    # Everything below depends on the grid size; draws that do not come first.
    texture = ndimage.gaussian_filter(rng.standard_normal(tissue.shape, dtype=np.float32), 1.2)
    texture /= max(float(texture.std()), 1e-6)
    image = means[tissue] + amplitude[tissue] * texture
    del texture
    image = ndimage.gaussian_filter(image, (0.6, 0.6, 0.35))  # partial volume
    noise = ndimage.gaussian_filter(rng.standard_normal(tissue.shape, dtype=np.float32), 0.6)
    image += noise * np.float32(noise_sigma / max(float(noise.std()), 1e-6))
    return np.clip(np.rint(image), -1024, 3071).astype(np.float32)


def _remove_stale(out: Path, folders: tuple[str, ...], keep: set[tuple[str, str]]) -> None:
    """Delete phantom-named files (``9xxxxxxx_1...``) not in ``keep`` and leftover temporaries."""
    remove_stale(
        [out / folder for folder in folders],
        lambda path: (
            bool(_PHANTOM_FILE.match(path.name)) and (path.parent.name, path.name) not in keep
        ),
    )
