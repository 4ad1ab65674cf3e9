"""MALC-like synthetic T1-weighted brain MRI phantoms labelled with QuickNAT's 33 classes.

Stands in for the MICCAI 2012 Multi-Atlas Labeling Challenge data (OASIS T1, about 1 mm; see
DESIGN.md "Data layouts") where the real scans are not at hand: a head with scalp, skull and CSF
around a brain whose cortex is a folded ribbon over white matter, lateral, inferior lateral, third
and fourth ventricles, deep grey nuclei, hippocampi and amygdalae, ventral diencephalon,
cerebellum (cortex over a branching white matter core, split by a vermis) and brainstem. Left and
right structures look alike and the deep grey nuclei are about as dark as cortex, so a network has
to use position and shape, not just intensity. Each case gets its own head pose and size, smooth
deformation, ventricle size, gyral pattern, tissue contrasts, bias field, blur and Rician noise
(see ``_common`` for the geometry).

Labels are painted as Neuromorphometrics IDs (:mod:`segattn.data.malc_labels`) and mapped with
the QuickNAT protocol, so the phantom paints all 32 QuickNAT structures; every CSF voxel outside
the ventricles is ``csf`` (46). ``native=True`` returns the IDs as distributed instead: the cortex
split into nine gyral parcels per hemisphere (odd IDs left, even right), plus IDs QuickNAT maps
to background: the cerebellar vermis (71-73), the optic chiasm (69) and two vessels (63/64).
:func:`make_malc_dataset` writes either the nnU-Net layout or, with ``layout="native"``, the
challenge's own layout (:mod:`segattn.data.phantoms.malc_native`), which
:func:`segattn.data.malc.prepare_malc` turns into exactly the nnU-Net layout one.

Anatomy is defined in millimetres, smaller and simpler than a real brain: the cortex is about
6.5 mm thick instead of 2.5 mm and small nuclei and ventricles are enlarged, so that Dice stays
meaningful at 64^3 (2.75 mm voxels): most structures have a few hundred voxels or more there; the
smallest are the inferior lateral ventricles (60-100 voxels), the accumbens, pallidum, amygdala,
ventral DC and third and fourth ventricles (about 90-160).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from segattn.data.layout import DatasetInfo
from segattn.data.malc_labels import QUICKNAT_LABELS, to_quicknat
from segattn.data.phantoms._brain import FOV_CENTRE, TISSUES, paint_brain, parcellate
from segattn.data.phantoms._common import (
    PhantomCase,
    atlas_coordinates,
    bias_field,
    check_size_and_layout,
    make_geometry,
    rician_noise,
    smooth_displacement,
    write_phantom_dataset,
)

#: Field of view (mm) of the cubic grid; ``size`` voxels span it (128 -> 1.375 mm, 64 -> 2.75 mm).
FOV_MM = 176.0
#: Structure name -> label value (nnU-Net ``labels`` order): QuickNAT's 33 classes.
MALC_LABELS: dict[str, int] = dict(QUICKNAT_LABELS)
_VERSION = 2
_INTENSITY_SCALE = 110.0  # WM in image units, roughly as in OASIS scans


def make_malc_case(
    seed: int, size: int = 128, *, orientation: str | None = None, native: bool = False
) -> PhantomCase:
    """Generate one MALC-like T1 case on a ``size``^3 grid spanning :data:`FOV_MM` mm.

    The same ``seed`` gives identical arrays; the anatomy depends on ``seed`` only, so ``size``,
    ``orientation`` and ``native`` change only how it is sampled, stored and labelled.

    Args:
        seed: case seed (>= 0).
        size: voxels per axis (>= 16); spacing is ``FOV_MM / size``.
        orientation: voxel axis order such as ``"LPS"``; None picks one of
            :data:`~segattn.data.phantoms.ORIENTATIONS` from the seed.
        native: label with Neuromorphometrics IDs as the challenge distributes them (cortical
            parcels, vermis, vessels, optic chiasm) instead of QuickNAT classes.

    Returns:
        ``(image, label, affine)``: float32 T1 image, uint8 labels (values of
        :data:`MALC_LABELS`, or Neuromorphometrics IDs with ``native``), and the 4x4
        voxel-to-RAS-world affine in mm.

    Example:
        >>> image, label, affine = make_malc_case(0, size=32, orientation="LIA")
        >>> image.shape, image.dtype, label.dtype, int(label.max())
        ((32, 32, 32), dtype('float32'), dtype('uint8'), 32)
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    rng = np.random.default_rng(seed)
    spacing = FOV_MM / size
    geometry = make_geometry(
        rng, (size, size, size), (spacing,) * 3, orientation=orientation, fov_centre=FOV_CENTRE
    )
    coords = atlas_coordinates(geometry)
    coords += smooth_displacement(rng, coords, amplitude_mm=2.5)
    tissue, ids = paint_brain(coords, rng)
    if native:
        parcellate(coords, ids)
    del coords
    image = _render(tissue, rng, spacing)
    label = ids if native else to_quicknat(ids)
    return PhantomCase(image, label, geometry.affine)


def make_malc_dataset(
    out_dir: str | Path,
    cases: int,
    size: int = 128,
    seed: int = 0,
    test_cases: int = 0,
    overwrite: bool = False,
    layout: str = "nnunet",
) -> DatasetInfo:
    """Write ``cases`` MALC-like cases and return the dataset's :class:`DatasetInfo`.

    Cases are ``malc_000``, ``malc_001``, ...; the last ``test_cases`` are test cases. With
    ``layout="nnunet"`` they go to ``imagesTr``/``labelsTr`` (``imagesTs``/``labelsTs``) with a
    ``dataset.json``; with ``layout="native"`` to the challenge's ``training-images/``,
    ``training-labels/CASE_glm.nii.gz`` (``testing-*``) with Neuromorphometrics IDs (see
    :func:`~segattn.data.phantoms.malc_native.write_native_dataset`). An existing complete
    dataset made with the same arguments is reused unless ``overwrite``; files are written
    atomically and the dataset's record last.

    Example:
        >>> import tempfile
        >>> info = make_malc_dataset(tempfile.mkdtemp(), cases=4, size=32, test_cases=1)
        >>> len(info.training), len(info.test), info.num_classes
        (3, 1, 33)
    """
    from segattn.data.phantoms.malc_native import write_native_dataset

    check_size_and_layout(size, layout)
    params = {"size": size, "version": _VERSION}
    if layout == "native":
        return write_native_dataset(
            out_dir,
            make_case=lambda case_seed: make_malc_case(case_seed, size, native=True),
            cases=cases,
            test_cases=test_cases,
            seed=seed,
            params=params,
            overwrite=overwrite,
        )
    return write_phantom_dataset(
        out_dir,
        kind="malc",
        make_case=lambda case_seed: make_malc_case(case_seed, size),
        channel_names={"0": "T1"},
        labels=MALC_LABELS,
        cases=cases,
        test_cases=test_cases,
        seed=seed,
        params=params,
        description=f"Synthetic MALC-like T1 brain MRI phantoms, {size}^3 voxels of "
        f"{FOV_MM / size:.3g} mm, QuickNAT's 33 classes (segattn.data.phantoms.malc)",
        overwrite=overwrite,
    )


def _render(tissue: np.ndarray, rng: np.random.Generator, spacing: float) -> np.ndarray:
    """T1 image from tissue classes: contrasts, texture, blur, bias field, Rician noise."""
    means = np.array(list(TISSUES.values()), dtype=np.float32)
    means *= 1 + 0.03 * rng.standard_normal(len(means)).astype(np.float32)
    noise_sigma = rng.uniform(0.02, 0.04)
    bias = bias_field(rng, tissue.shape, strength=0.12)
    # Everything below depends on the grid size; draws that do not come first.
    texture_sigma = max(2.0 / spacing, 0.5)
    texture = ndimage.gaussian_filter(
        rng.standard_normal(tissue.shape, dtype=np.float32), texture_sigma
    )
    texture *= np.float32(0.03 * (4 * math.pi * texture_sigma**2) ** 0.75)
    image = means[tissue] * (1 + texture)
    del texture
    image = ndimage.gaussian_filter(image, 0.6)
    image *= bias
    image = rician_noise(rng, image, noise_sigma)
    image *= np.float32(_INTENSITY_SCALE)
    return image.astype(np.float32, copy=False)
