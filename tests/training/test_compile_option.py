"""``--model.compile true``: training steps go through ``torch.compile(net)``; same loss and
gradients as eager, parameters and checkpoint keys unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segattn.training.system import SegmentationSystem


def _system(compile: bool) -> SegmentationSystem:
    torch.manual_seed(0)
    return SegmentationSystem(
        spatial_dims=2, num_classes=3, features=[4, 8], attention="scse", compile=compile
    ).train()


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_compiled_training_step_equals_eager(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()  # shapes seen by earlier compiled tests must not make this one dynamic
    eager, compiled = _system(False), _system(True)
    compiled.load_state_dict(eager.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert len(list(compiled.parameters())) == len(list(eager.parameters()))
    batch = {"image": torch.randn(2, 1, 12, 20), "label": torch.randint(0, 3, (2, 1, 12, 20))}
    losses = []
    for system in (eager, compiled):
        loss = system.training_step(batch, 0)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)
    for (name, p_eager), p_compiled in zip(
        eager.named_parameters(), compiled.parameters(), strict=True
    ):
        torch.testing.assert_close(p_compiled.grad, p_eager.grad, rtol=1e-4, atol=1e-5, msg=name)
    # the compiled forward is not a registered submodule
    assert "_compiled_net" in compiled.__dict__
    assert all(not n.startswith("_compiled_net") for n, _ in compiled.named_modules())
    assert compiled.hparams["compile"] is True
