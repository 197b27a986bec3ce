"""The prototype-mask segment variant of DetectorNet: shapes, and detect models unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlrmamba_core.errors import ConfigError
from dlrmamba_core.models import build_model, get_config
from dlrmamba_core.models.config import DetectorConfig

HW = (64, 96)
NC = 3
K = 8


def _inputs(b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, *HW, generator=g), torch.rand(b, 1, *HW, generator=g)


def test_detect_config_dict_and_state_dict_have_no_segment_parts() -> None:
    cfg = get_config("nano", NC)
    assert cfg.task == "detect"
    d = cfg.to_dict()
    assert not {"task", "num_protos", "proto_width"} & set(d)  # same dict as before
    assert DetectorConfig.from_dict(d) == cfg  # old checkpoints' configs still load
    keys = build_model("nano", NC).state_dict().keys()
    assert not any(k.startswith(("protonet", "mask_coef")) for k in keys)


def test_segment_outputs_and_shared_weights_give_the_detect_outputs() -> None:
    torch.manual_seed(0)
    det = build_model("nano", NC).eval()
    seg = build_model("nano", NC, task="segment", num_protos=K).eval()
    missing, unexpected = seg.load_state_dict(det.state_dict(), strict=False)
    assert not unexpected
    assert missing and all(k.startswith(("protonet.", "mask_coef.")) for k in missing)
    rgb, thermal = _inputs()
    a = (HW[0] // 8) * (HW[1] // 8) + (HW[0] // 16) * (HW[1] // 16) + (HW[0] // 32) * (
        HW[1] // 32)
    with torch.no_grad():
        ref = det(rgb, thermal)
        pred, protos = seg(rgb, thermal)
    assert ref.shape == (2, 4 + NC, a)
    assert pred.shape == (2, 4 + NC + K, a)
    assert protos.shape == (2, K, HW[0] // 4, HW[1] // 4)
    torch.testing.assert_close(pred[:, : 4 + NC], ref, rtol=0, atol=0)
    seg.train()
    levels, protos = seg(rgb, thermal)
    assert [tuple(p.shape) for p in levels] == [
        (2, 4 * 16 + NC + K, HW[0] // s, HW[1] // s) for s in (8, 16, 32)]
    assert protos.shape == (2, K, HW[0] // 4, HW[1] // 4)


def test_segment_checkpoint_round_trip(tmp_path: Path) -> None:
    from dlrmamba_core.models.io import load_model, save_model

    seg = build_model("nano", NC, task="segment", num_protos=K).eval()
    path = save_model(tmp_path / "seg.pt", seg, ["a", "b", "c"], HW)
    model, meta = load_model(path)
    assert meta["config"]["task"] == "segment" and meta["config"]["num_protos"] == K
    rgb, thermal = _inputs(1)
    with torch.no_grad():
        p0, q0 = seg(rgb, thermal)
        p1, q1 = model(rgb, thermal)
    torch.testing.assert_close(p0, p1)
    torch.testing.assert_close(q0, q1)


@pytest.mark.parametrize("over", [{"task": "panoptic"}, {"num_protos": 0},
                                  {"proto_width": 0}])
def test_bad_segment_config_is_refused(over: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"task|num_protos"):
        get_config("nano", NC, **over)
