"""Class maps: parsing, automatic matching by name, and scoring through a mapping."""

from __future__ import annotations

import numpy as np
import pytest

from dlrmamba_core.data.classmap import match_classes, normalize, parse_class_map
from dlrmamba_core.engine.evaluate import (
    ImageTruth,
    coco_metrics,
    map_to_data,
    summarize,
)
from dlrmamba_core.errors import ConfigError
from dlrmamba_core.runtime.detections import Detections

SHIPPED = ["small_boat", "large_boat", "person", "buoy", "car", "van", "truck"]
DRONEVEHICLE = ["car", "truck", "bus", "van", "freight car"]


def test_parse_pairs_and_ignore() -> None:
    assert parse_class_map(" person=person, car = vehicle,truck=,") == [
        ("person", "person"), ("car", "vehicle"), ("truck", None)]
    assert parse_class_map("") == []


@pytest.mark.parametrize("text, match", [
    ("person", "bad item 'person'"),
    ("=person", "bad item"),
    ("car=a,Car=b", "given twice"),
])
def test_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_class_map(text)


def test_normalize() -> None:
    assert normalize("  Freight_Car ") == "freight car" == normalize("freight-car")


def test_auto_match_dronevehicle_names() -> None:
    m = match_classes(SHIPPED, DRONEVEHICLE)
    assert m.to_dict()["matched"] == {"car": "car", "van": "van", "truck": "truck"}
    assert set(m.how.values()) == {"name"}
    # whole names only: the model's "car" is not DroneVehicle's "freight car"
    assert m.unmatched_data() == ["bus", "freight car"]
    assert m.unmatched_model() == ["small_boat", "large_boat", "person", "buoy"]
    assert m.evaluated_data_ids() == [0, 1, 3]
    text = "\n".join(m.describe())
    assert "model 'car' -> data 'car' (name)" in text and "bus, freight car" in text


def test_auto_match_case_and_synonym() -> None:
    m = match_classes(SHIPPED, ["Pedestrian", "CAR"])
    assert m.model_to_data == {2: 0, 4: 1}
    assert m.how == {2: "synonym", 4: "name"}
    assert not m.is_identity and match_classes(SHIPPED, SHIPPED).is_identity


def test_given_map_overrides_and_ignores() -> None:
    m = match_classes(SHIPPED, ["person", "vehicle"], "car=vehicle,van=vehicle,person=")
    assert m.to_dict()["matched"] == {"car": "vehicle", "van": "vehicle"}
    assert m.ignored_given == ("person",) and m.how[4] == "given"
    assert m.sources_of(1) == [4, 5] and m.unmatched_data() == ["person"]


@pytest.mark.parametrize("text, match", [
    ("boat=person", "'boat' is not a class of the model; its classes are small_boat"),
    ("car=vehicle", "'vehicle' is not a class of the dataset; its classes are person"),
])
def test_given_map_unknown_names(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        match_classes(SHIPPED, ["person"], text)


def _det(boxes: list[list[float]], scores: list[float], cls: list[int]) -> Detections:
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4),
                      np.asarray(scores, np.float32), np.asarray(cls, np.int64))


def test_scoring_through_a_map() -> None:
    """A perfect person detector scores 100 on person; a boat detection and the data's bus
    boxes (a class the model lacks) neither count against it nor enter the mean."""
    data = ["person", "bus"]
    m = match_classes(SHIPPED, data)
    preds = [_det([[10, 10, 50, 90], [200, 10, 260, 60]], [0.9, 0.8], [2, 0])]  # person, boat
    truths = [ImageTruth(np.asarray([[10, 10, 50, 90], [100, 100, 180, 150]], np.float32),
                         np.asarray([0, 1], np.int64), 320, 256)]
    p, t, scored, not_scored = map_to_data(preds, truths, m)
    assert scored == ["person"] and not_scored == {"bus": 1}
    assert p[0].class_ids.tolist() == [0] and len(p[0].boxes) == 1
    res = coco_metrics(p, t, scored)
    assert res["mAP50"] == pytest.approx(100.0) and list(res["per_class"]) == ["person"]
    # Without the map the same detections score the data's bus at 0: the mean halves.
    raw = coco_metrics([_det([[10, 10, 50, 90]], [0.9], [0])], truths, data)
    assert raw["mAP50"] == pytest.approx(50.0)
    res["class_map"] = {**m.to_dict(), "boxes_not_scored": not_scored}
    text = summarize(res)
    assert "class map: person->person" in text
    assert "bus (1 boxes)" in text and "small_boat" in text


def test_summary_names_classes_without_truth() -> None:
    truths = [ImageTruth(np.asarray([[0, 0, 10, 10]], np.float32), np.asarray([0]), 32, 32)]
    res = coco_metrics([_det([[0, 0, 10, 10]], [0.9], [0])], truths, ["car", "bus"])
    assert res["per_class"]["bus"]["AP50"] is None and res["mAP50"] == pytest.approx(100.0)
    assert "not in the mean (no ground truth in this data): bus" in summarize(res)
