"""``explain_scan``: per-channel spatial gates are averaged over channels on the scan's grid."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "inference"))
from inference_helpers import checkpoint_meta, phantom, save_checkpoint, save_image  # noqa: E402

from segattn.data.transforms import plain_tensor, preprocess_transforms  # noqa: E402
from segattn.inference import Predictor  # noqa: E402
from segattn.inference.preprocess import run_preprocessing  # noqa: E402
from segattn.inspect import capture_attention, explain_scan, to_image_grid  # noqa: E402
from segattn.inspect.montage import save_montage  # noqa: E402


def test_per_channel_gates_are_the_channel_mean_on_the_grid(tmp_path: Path) -> None:
    meta = checkpoint_meta(mode="3d", orientation=None)  # no spatial step: preprocessed = scan
    meta["net"]["kwargs"]["attention"] = "coord"
    ckpt = save_checkpoint(tmp_path / "coord.ckpt", meta)
    scan = save_image(tmp_path / "scan_0000.nii.gz", phantom((13, 18, 11)), np.eye(4))
    predictor = Predictor(ckpt, device="cpu", progress=False)
    explanation = explain_scan(predictor, scan)
    net = predictor.models[0].net
    assert [g.block for g in explanation.gates] == list(net.attention_modules())
    chain = preprocess_transforms(meta["preprocessing"], ("image",))
    volume = plain_tensor(run_preprocessing(chain, [scan])["image"]).float()
    records = capture_attention(net, volume[None])
    for gate, record in zip(explanation.gates, records, strict=True):
        assert gate.name == "coord" and gate.channel is None and gate.per_channel_map
        assert record.spatial is not None and gate.spatial is not None
        expected = to_image_grid(record.spatial, (13, 18, 11))[0].mean(0)
        np.testing.assert_allclose(gate.spatial, expected.numpy(), atol=1e-5)
    assert explanation.labels.shape == (13, 18, 11) == explanation.scan.shape
    assert save_montage(explanation, tmp_path / "m.png").stat().st_size > 5_000
