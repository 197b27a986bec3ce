"""research.ship: merging pipeline results of several phases and shipping a run's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dlrmamba_core.errors import ConfigError, ModelFileError

DATA = {"generator": "dlrmamba_core.data.synthetic.write_frame_dataset", "seed": 3,
        "splits": {"train": 12, "val": 6, "test": 6}, "seconds": 1.0, "format": "synth",
        "synthetic": True}


def _results(path: Path, models: dict[str, Any], created: str, **data: Any) -> Path:
    res = {"created_utc": created, "device": "test device", "torch": "x", "input_hw": [96, 128],
           "data": {**DATA, **data}, "status": {k.split("/")[0]: "done" for k in models},
           "settings": {"phase": created}, "models": models}
    path.write_text(json.dumps(res))
    return path


def test_merge_joins_phases_and_refuses_other_data(tmp_path: Path) -> None:
    from dlrmamba_core.research.ship import main, merge_results

    a = _results(tmp_path / "a.json", {"teacher": {"test": {"mAP50": 60.0}},
                                       "cnn": {"test": {"mAP50": 70.0}}}, "2026-01-01")
    b = _results(tmp_path / "b.json", {"student_sad/finetune": {"test": {"mAP50": 71.0}},
                                       "cnn": {"test": {"mAP50": 72.0}}}, "2026-01-02",
                 seconds=9.0)  # generation time may differ: same benchmark
    merged = merge_results([a, b])
    assert sorted(merged["models"]) == ["cnn", "student_sad/finetune", "teacher"]
    assert merged["models"]["cnn"]["test"]["mAP50"] == 72.0  # the later phase wins
    assert [p["file"] for p in merged["phases"]] == [str(a), str(b)]
    assert merged["phases"][1]["settings"] == {"phase": "2026-01-02"}
    assert merged["created_utc"] == "2026-01-02" and "settings" not in merged

    other = _results(tmp_path / "c.json", {"x": {}}, "2026-01-03", seed=4)
    with pytest.raises(ConfigError, match=r"other data"):
        merge_results([a, other])
    out = tmp_path / "merged.json"
    assert main(["merge", str(a), str(other), "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["models"]["teacher"]["test"]["mAP50"] == 60.0
    # A merged file merged again (a later session adds its phases) keeps its phase records.
    c = _results(tmp_path / "c2.json", {"student_p5/finetune": {"test": {"mAP50": 73.0}}},
                 "2026-01-04")
    again = merge_results([out, c])
    assert [p["file"] for p in again["phases"]] == [str(a), str(b), str(c)]
    assert sorted(again["models"]) == ["cnn", "student_p5/finetune", "student_sad/finetune",
                                       "teacher"]
    # Runs evaluated on a CPU after their GPU machine went back (pipeline --evaluate-only):
    # their phase says where they were evaluated; the training's device and torch stay those
    # of the newest phase that trained.
    d = _results(tmp_path / "d.json", {"s_eq/finetune": {"test": {"mAP50": 74.0}}},
                 "2026-01-05")
    d.write_text(json.dumps({**json.loads(d.read_text()), "torch": "cpu torch",
                             "evaluated_on": "cpu"}))
    late = merge_results([out, c, d])
    assert late["phases"][-1]["evaluated_on"] == "cpu"
    assert "evaluated_on" not in late["phases"][0]
    assert (late["created_utc"], late["torch"]) == ("2026-01-04", "x")
    from dlrmamba_core.research.results import _phase_lines

    rows = [line for line in _phase_lines(late) if line.startswith("| ")]
    assert "test device (test metrics on cpu, after the run) | 2026-01-05" in rows[-1]
    assert "after the run" not in rows[-2]
    (tmp_path / "bad.json").write_text("{\"models\": 1}")
    with pytest.raises(ConfigError, match=r"not a results\.json"):
        merge_results([tmp_path / "bad.json"])


def test_ship_writes_card_from_results_and_checks_locally(
        tmp_path: Path, nano_teacher: Path, synth_root: Path) -> None:
    from dlrmamba_core.engine.runs import evaluate_file
    from dlrmamba_core.research.ship import ship_model
    from dlrmamba_core.runtime import Detector

    # What the (untrained) model really scores on the test split: the recorded number.
    truth = evaluate_file(nano_teacher, "synth", synth_root, "test", None, plots=False)
    test = {"mAP50": truth["mAP50"], "mAP50_95": truth["mAP50_95"], "per_class": {}}
    res = _results(tmp_path / "r.json", {"student_sad/finetune": {
        "test": test, "role": "SVD init -> SAD -> fine-tune", "train_seconds": 12.5}},
        "2026-01-01")
    out = tmp_path / "models" / "m.onnx"
    out.parent.mkdir()
    card = ship_model(nano_teacher, "student_sad/finetune", res, out, eval_root=synth_root,
                      make_default=True)
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk == card
    assert card["metrics"]["mAP50"] == truth["mAP50"]
    assert card["metrics"]["split"] == "test (synthetic)"
    assert card["metrics"]["local_onnx_check"]["abs_diff_mAP50"] <= 1.0
    assert card["training"] == {"run": "student_sad/finetune",
                                "role": "SVD init -> SAD -> fine-tune",
                                "device": "test device", "seconds": 12.5, "results": "r.json"}
    assert card["data"]["synthetic"] is True and "SYNTHETIC" in card["data"]["dataset"]
    assert json.loads((out.parent / "default.json").read_text()) == {"model": "m.onnx"}
    Detector(out, require_card=True)  # the rewritten card still matches the ONNX file

    # A recorded number the exported model does not reproduce: nothing is shipped.
    res2 = _results(tmp_path / "r2.json", {"run": {"test": {**test, "mAP50": 95.0}}},
                    "2026-01-01")
    out2 = tmp_path / "m2.onnx"
    with pytest.raises(ModelFileError, match=r"recorded 95.00.*Nothing was shipped"):
        ship_model(nano_teacher, "run", res2, out2, eval_root=synth_root)
    assert not out2.exists() and not out2.with_suffix(".json").exists()
    assert sorted(p.name for p in tmp_path.glob(".*shipping*")) == []
    # ... and a model already shipped at the destination stays as it was.
    shipped = (out.read_bytes(), out.with_suffix(".json").read_text())
    with pytest.raises(ModelFileError, match="Nothing was shipped"):
        ship_model(nano_teacher, "run", res2, out, eval_root=synth_root)
    assert (out.read_bytes(), out.with_suffix(".json").read_text()) == shipped
    assert sorted(p.name for p in out.parent.glob(".*")) == []
    with pytest.raises(ConfigError, match="not in"):
        ship_model(nano_teacher, "nope", res2, out2)


def test_conditions_adds_per_condition_map_and_checks_the_record(
        tmp_path: Path, nano_teacher: Path, synth_root: Path) -> None:
    import shutil

    from dlrmamba_core.engine.runs import evaluate_file
    from dlrmamba_core.research.ship import add_condition_breakdown

    (tmp_path / "pipe" / "m").mkdir(parents=True)
    shutil.copy(nano_teacher, tmp_path / "pipe" / "m" / "best.pt")
    truth = evaluate_file(nano_teacher, "synth", synth_root, "test", None, plots=False)
    res = _results(tmp_path / "r.json", {
        "m": {"checkpoint": "m/best.pt", "modality": "fused",
              "test": {"mAP50": truth["mAP50"], "mAP50_95": truth["mAP50_95"]}},
        "gone": {"checkpoint": "gone/best.pt", "test": {"mAP50": 1.0}}}, "2026-01-01")
    assert add_condition_breakdown(res, tmp_path / "pipe", synth_root) == {"evaluated": ["m"]}
    entry = json.loads(res.read_text())["models"]["m"]["test_by_condition"]
    conds = {k: v for k, v in entry.items() if k != "local_mAP50"}
    assert sum(v["num_images"] for v in conds.values()) == truth["num_images"]
    assert "test_by_condition" not in json.loads(res.read_text())["models"]["gone"]

    before = _results(tmp_path / "r2.json", {"m": {"checkpoint": "m/best.pt",
                                                   "test": {"mAP50": 97.0}}}, "2026-01-01")
    text = before.read_text()
    with pytest.raises(ModelFileError, match=r"record 97\.0"):
        add_condition_breakdown(before, tmp_path / "pipe", synth_root)
    assert before.read_text() == text


def test_add_run_evaluates_a_local_model_on_the_same_benchmark(
        tmp_path: Path, nano_teacher: Path, synth_root: Path) -> None:
    from dlrmamba_core.research.results import _phase_lines
    from dlrmamba_core.research.ship import add_local_run

    res = _results(tmp_path / "r.json", {"a": {"test": {"mAP50": 1.0}}}, "2026-01-01")
    e = add_local_run(res, nano_teacher, "a/cpu", "fine-tuned 2 epochs", synth_root,
                      "CPU: test", seconds=12.0, based_on="a")
    saved = json.loads(res.read_text())
    assert saved["models"]["a/cpu"] == e
    assert e["test"]["num_images"] == 6 and e["device"] == "CPU: test"
    assert sum(v["num_images"] for k, v in e["test_by_condition"].items()
               if k != "local_mAP50") == 6
    text = "\n".join(_phase_lines(saved))
    assert "`a/cpu` was trained outside the pipeline: fine-tuned 2 epochs, on CPU: test" in text
    with pytest.raises(ConfigError, match="already in"):
        add_local_run(res, nano_teacher, "a/cpu", "x", synth_root, "CPU")
    other = _results(tmp_path / "o.json", {}, "2026-01-01", seed=99)
    with pytest.raises(ConfigError, match="evaluate on the results' benchmark"):
        add_local_run(other, nano_teacher, "b", "x", synth_root, "CPU")


def test_add_run_of_a_segment_model_records_its_mask_map(tmp_path: Path,
                                                         synth_root: Path) -> None:
    """A segment model trained outside the pipeline: the entry's test metrics carry the COCO
    segm mAP beside the box mAP (the model card copies them)."""
    from model_helpers import make_segment_checkpoint

    from dlrmamba_core.data.synthetic import SYNTH_CLASSES
    from dlrmamba_core.research.ship import add_local_run

    ck = make_segment_checkpoint(tmp_path / "seg.pt", list(SYNTH_CLASSES))
    res = _results(tmp_path / "r.json", {}, "2026-01-01")
    e = add_local_run(res, ck, "seg/cpu", "segment fine-tune", synth_root, "CPU: test")
    segm = e["test"]["segm"]
    assert set(segm) == {"mAP50", "mAP50_95", "per_class"}
    assert 0.0 <= segm["mAP50"] <= 100.0 and 0.0 <= segm["mAP50_95"] <= segm["mAP50"]
    assert json.loads(res.read_text())["models"]["seg/cpu"]["test"]["segm"] == segm


def test_results_page_marks_the_shipped_run_and_lists_missing_pieces(tmp_path: Path) -> None:
    from dlrmamba_core.research.results import render, shipped_run

    models = {"teacher": {"role": "full-rank teacher", "test": {"mAP50": 60.0, "mAP50_95": 30.0}},
              "student_sad/finetune": {"role": "SAD (shipped)", "rank_ratio": 0.15,
                                       "test": {"mAP50": 70.0, "mAP50_95": 35.0}},
              "student_sad/finetune+cpu": {"role": "more epochs", "device": "CPU",
                                           "test": {"mAP50": 72.0, "mAP50_95": 36.0}}}
    res = json.loads(_results(tmp_path / "r.json", models, "2026-01-01").read_text())
    (tmp_path / "default.json").write_text(json.dumps({"model": "m.onnx"}))
    (tmp_path / "m.json").write_text(json.dumps({"training": {
        "run": "student_sad/finetune+cpu"}}))
    res["_shipped"] = shipped_run(tmp_path)
    assert res["_shipped"] == "student_sad/finetune+cpu"
    md = render(res, {}, {}, 2, 5, "test CPU")
    assert "| `student_sad/finetune+cpu` | **shipped** (more epochs) |" in md
    assert "| `student_sad/finetune` | SAD |" in md  # the old "(shipped)" mark is gone
    assert "not in these results yet" in md  # no sweep runs
    assert shipped_run(tmp_path / "nowhere") is None


def test_results_page_loss_ablation_seed_spread_and_notes(tmp_path: Path) -> None:
    """Phase C rows: weights per row, per-seed values and means, the seed spread; a note
    replaces the 'trained outside the pipeline' sentence; the teacher is listed first."""
    from dlrmamba_core.research.results import render

    def t(m50: float, m95: float = 40.0) -> dict[str, Any]:
        return {"test": {"mAP50": m50, "mAP50_95": m95}}

    models: dict[str, Any] = {
        "student_sad/distill": t(70.0), "student_sad/finetune": t(72.0),
        "student_sad_seed2/distill": t(69.0), "student_sad_seed2/finetune": t(73.0, 42.0),
        "student_nodistill/finetune": t(71.0), "student_nodistill_seed2/finetune": t(70.0),
        "sad_no_feat/distill": t(68.0), "sad_no_feat/finetune": t(71.5),
        "teacher": {**t(65.0), "device": "GPU", "note": "re-evaluated after a lost record"},
    }
    res = json.loads(_results(tmp_path / "r.json", models, "2026-01-01").read_text())
    md = render(res, {}, {}, 2, 5, "test CPU")
    assert md.index("| `teacher` |") < md.index("| `student_sad/distill` |")
    assert ("| all four losses (paper weights) | 1 / 0.5 / 0.1 / 1.5 | `student_sad`, "
            "`student_sad_seed2` | 70.0, 69.0 | 72.0, 73.0 | 72.5 | 41.0 |") in md
    assert "| without L_feat | 1 / 0.5 / 0.1 / 0 | `sad_no_feat` | 68.0 | 71.5 | 71.5 |" in md
    assert "| task loss only (no distillation) | 1 / 0 / 0 / 0 |" in md
    assert "without L_SVD" not in md  # no such run, no row
    assert "differ by `student_sad` 1.0 and `student_nodistill` 1.0 mAP50" in md
    assert "| the same, mean of 2 seeds each | 72.5 vs 70.5 (diff +2.0) | yes |" in md
    assert "`teacher`: re-evaluated after a lost record (`research.ship add-run`, the same" in md
    assert "`teacher` was trained outside the pipeline" not in md
    from dlrmamba_core.research.results import _phase_letter

    assert _phase_letter(["cnn", "teacher"], 0) == "A"
    assert _phase_letter(["student_sad/distill", "sweep_r050/distill"], 1) == "B"
    assert _phase_letter(["teacher_p5", "fusion_mamba"], 3) == "S+V"
    assert _phase_letter(["student_p5_nodistill/finetune"], 4) == "S"
    assert _phase_letter(["sad_no_svd/finetune", "student_sad_seed2/finetune"], 2) == "C"
    assert _phase_letter(["my_run"], 3) == "4"


def test_keep_stores_a_model_in_half_the_bytes_and_it_loads_back_close(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ship keep`: the fp16 copy is a model file (weights_only loading, fp32 again), half the
    size, with outputs within fp16 rounding of the original's; a file that is no model is
    refused by name and leaves nothing behind."""
    import torch

    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import load_model, save_model
    from dlrmamba_core.research import ship

    torch.manual_seed(0)
    model = build_model("nano", 2).eval()
    src = save_model(tmp_path / "best.pt", model, ["a", "b"], (64, 96), extra={"epoch": 7})
    out = tmp_path / "campaign" / "kept.pt"
    assert ship.main(["keep", str(src), "--out", str(out)]) == 0
    assert "kept.pt:" in capsys.readouterr().out
    kept = ship.keep_checkpoint(src, out)
    assert kept["bytes"] < 0.6 * kept["source_bytes"]
    assert kept["max_abs_diff"] <= 2e-3 * kept["max_abs"]
    back, meta = load_model(out)
    assert meta["extra"] == {"epoch": 7, "stored_fp16_from": "best.pt"}
    assert all(p.dtype == torch.float32 for p in back.parameters())
    raw = torch.load(out, weights_only=True)
    assert all(v.dtype == torch.float16 for v in raw["state_dict"].values()
               if v.is_floating_point())

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert ship.main(["keep", str(junk), "--out", str(tmp_path / "no.pt")]) == 2
    assert "ship: error:" in capsys.readouterr().err
    assert not (tmp_path / "no.pt").exists()
