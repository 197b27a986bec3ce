"""``dlrmamba eval`` of the shipped model on the real pairs of ../shared/real, through an
automatic class map (skips when the folder is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
REAL = REPO.parent / "shared" / "real"
LLVIP = REAL / "llvip_train50"
DRONE = REAL / "dronevehicle6"
MODEL = REPO / "models" / "dlrmamba_student.onnx"


@pytest.mark.skipif(not LLVIP.is_dir(), reason="../shared/real/llvip_train50 not present")
def test_eval_shipped_model_on_llvip_by_name(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from dlrmamba_core.cli import main

    rc = main(["eval", str(MODEL), "--data", str(LLVIP), "--data-format",
               "yolo:thermal_dir=ir", "--split", "", "--limit", "3", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "class map: person->person" in out
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert list(m["per_class"]) == ["person"] and m["num_images"] == 3
    assert m["class_map"]["matched"] == {"person": "person"}
    assert "small_boat" in m["class_map"]["model_classes_ignored"]
    assert m["num_gt"] > 0


@pytest.mark.skipif(not DRONE.is_dir(), reason="../shared/real/dronevehicle6 not present")
def test_eval_shipped_model_on_dronevehicle_given_map(tmp_path: Path) -> None:
    from dlrmamba_core.cli import main

    assert main(["eval", str(MODEL), "--data", str(DRONE), "--data-format", "dronevehicle",
                 "--split", "", "--limit", "2", "--out", str(tmp_path),
                 "--class-map", "car=car,van=car,truck=truck"]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert list(m["per_class"]) == ["car", "truck"]
    cm = m["class_map"]
    assert cm["matched"] == {"car": "car", "van": "car", "truck": "truck"}
    assert cm["data_classes_unknown_to_model"] == ["bus", "van", "freight car"]
