"""Label maps as DICOM Segmentation objects (highdicom) referencing their source series.

One segment per structure (label value ``v`` -> segment number ``v``, labelled with the
structure's name and coloured as in :mod:`segattn.imageio.labelfiles`); frame ``k`` is the label
map's slice ``k`` of the source series in slice-position order, so a viewer overlays it on the
source images without any resampling. Empty frames are left out (highdicom's default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segattn.errors import InputFileError
from segattn.fileio import atomic_path
from segattn.imageio.labelfiles import label_colour


def write_dicom_seg(
    labels: np.ndarray,
    slices: Sequence[Path],
    names: Mapping[str, int],
    path: str | Path,
    software: str = "segattn",
) -> None:
    """Write ``labels`` ``(X, Y, Z)`` on the grid of the DICOM series ``slices`` (position order)
    as a DICOM SEG at ``path``, atomically.

    Args:
        labels: integer labels on the series grid (X = columns, Y = rows, Z = slice).
        slices: the series' files in slice-position order (``Scan.slices``).
        names: structure name -> label value (0 = background, not a segment).
        path: the ``.dcm`` to write.
        software: Software Versions attribute.

    Raises:
        InputFileError: the labels do not fit the series, or the object cannot be built/written.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    path = Path(path)
    sources = [pydicom.dcmread(s, stop_before_pixels=True) for s in slices]
    rows, columns = int(sources[0].Rows), int(sources[0].Columns)
    if tuple(labels.shape) != (columns, rows, len(sources)):
        raise InputFileError(
            path, f"labels {labels.shape} do not fit the series ({columns}x{rows}x{len(sources)})"
        )
    by_value = {int(v): str(n) for n, v in names.items() if int(v) != 0}
    values = sorted(by_value)
    if values != list(range(1, len(values) + 1)):
        raise InputFileError(path, f"DICOM SEG needs label values 1..N, got {values}")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=v,
            segment_label=by_value[v][:64],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=codes.SCT.AnatomicalStructure,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="segattn", family=codes.DCM.ArtificialIntelligence, version=software
            ),
            display_color=hd.color.CIELabColor.from_rgb(*label_colour(v)),
        )
        for v in values
    ]
    frames = np.ascontiguousarray(np.asarray(labels).transpose(2, 1, 0)).astype(np.uint16)
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=9000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="segattn",
            manufacturer_model_name="segattn",
            software_versions=software,
            device_serial_number="0",
            series_description="segattn segmentation",
        )
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        raise InputFileError(path, f"cannot build the DICOM SEG ({err})") from err
    try:
        with atomic_path(path) as tmp:
            seg.save_as(tmp)
    except OSError as err:
        raise InputFileError(path, f"cannot write: {err.strerror or err}") from err


def read_dicom_seg(path: str | Path, slices: Sequence[Path]) -> np.ndarray:
    """The label map ``(X, Y, Z)`` of a DICOM SEG written by :func:`write_dicom_seg`, on the grid
    of its source series ``slices`` (position order); 0 where no segment is set."""
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(path)
    uids = [str(pydicom.dcmread(s, stop_before_pixels=True).SOPInstanceUID) for s in slices]
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=True, skip_overlap_checks=True
    )
    return np.asarray(frames).transpose(2, 1, 0)
