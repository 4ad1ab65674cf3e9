"""Every image and label-map read and write in segattn: NIfTI, NRRD, MetaImage, DICOM series.

One place owns file naming (:mod:`.naming`), format detection, reading to RAS+ world geometry
(:mod:`.read`, :mod:`.dicom`), the one geometry tolerance and grid checks (:mod:`.geometry`),
label data types and atomic writing (:mod:`.write`), viewer label files (:mod:`.labelfiles`) and
DICOM SEG (:mod:`.dicomseg`). ``predict``, ``explain``, ``evaluate``, the MALC/VISCERAL converters
and the phantoms use it.

Reading input the way ``predict`` does (``explain`` calls the same functions)::

    from segattn.imageio import discover_inputs, read_channels, read_scan
    cases, errors = discover_inputs(["scans/"], in_channels=1, series=None)
    for case in cases:
        scan = read_scan(case.source, series=case.series)
        scan.image.shape, scan.affine    # (X, Y, Z) voxels, RAS+ affine; scan.format "dicom"...
        scans = read_channels(case.images, in_channels=1, series=case.series)  # checked
"""

from __future__ import annotations

from segattn.imageio.dicom import SeriesInfo, list_series, select_series, sorted_slices
from segattn.imageio.dicomseg import read_dicom_seg, write_dicom_seg
from segattn.imageio.dicomwrite import write_dicom_series
from segattn.imageio.discover import (
    CaseError,
    InputCase,
    discover_inputs,
    list_scans,
    read_channels,
)
from segattn.imageio.geometry import (
    GEOMETRY_TOLERANCE,
    affine_difference,
    affine_from_itk,
    align_to_grid,
    check_same_grid,
    itk_from_affine,
    same_grid,
)
from segattn.imageio.labelfiles import (
    ITKSNAP_FILE,
    SLICER_FILE,
    label_colour,
    read_itksnap_labels,
    read_slicer_colours,
    write_label_files,
)
from segattn.imageio.naming import (
    IMAGE_ENDINGS,
    OUTPUT_FORMATS,
    case_name,
    file_format,
    image_ending,
    is_dicom_folder,
    list_images,
    output_name,
    split_channel_suffix,
    strip_ending,
)
from segattn.imageio.read import (
    Scan,
    channel_count,
    describe_error,
    label_array,
    open_nifti,
    read_label_scan,
    read_scan,
    sitk_to_nifti,
)
from segattn.imageio.write import (
    label_dtype,
    label_image,
    to_sitk,
    write_image,
    write_label_map,
)

__all__ = [
    "GEOMETRY_TOLERANCE",
    "IMAGE_ENDINGS",
    "ITKSNAP_FILE",
    "OUTPUT_FORMATS",
    "SLICER_FILE",
    "CaseError",
    "InputCase",
    "Scan",
    "SeriesInfo",
    "affine_difference",
    "affine_from_itk",
    "align_to_grid",
    "case_name",
    "channel_count",
    "check_same_grid",
    "describe_error",
    "discover_inputs",
    "file_format",
    "image_ending",
    "is_dicom_folder",
    "itk_from_affine",
    "label_array",
    "label_colour",
    "label_dtype",
    "label_image",
    "list_images",
    "list_scans",
    "list_series",
    "open_nifti",
    "output_name",
    "read_channels",
    "read_dicom_seg",
    "read_itksnap_labels",
    "read_label_scan",
    "read_scan",
    "read_slicer_colours",
    "same_grid",
    "select_series",
    "sitk_to_nifti",
    "sorted_slices",
    "split_channel_suffix",
    "strip_ending",
    "to_sitk",
    "write_dicom_seg",
    "write_dicom_series",
    "write_image",
    "write_label_files",
    "write_label_map",
]
