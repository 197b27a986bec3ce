"""Phase T ([teacher]) of docs/results.md: ``ship curves`` stores the runs' metrics.csv, the
page shows the teacher's learning curve, the recipes over seeds, the targets, the rank sweep and
the SAD loss terms, and names what is missing.

Every record and metrics.csv here is a fabricated test fixture with hand-checkable numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
import struct
from typing import Any

import pytest

from dlrmamba_core.errors import ConfigError
from dlrmamba_core.research import results, ship

TEACHER_HEADER = ("epoch,step,lr,epoch_s,data_wait_s,train_task,train_box,train_cls,train_dfl,"
                  "train_loss,val_mAP50,val_mAP50_95")
SAD_HEADER = ("epoch,step,lr,epoch_s,data_wait_s,train_task,train_svd,train_state,train_feat,"
              "train_loss,val_mAP50,val_mAP50_95")
#: Fixture teacher: val mAP50 per epoch (every epoch validated but 1 and 3), best 80.5 at 8 of
#: 10; the last 20% (epochs 9-10) reach 80.4, 0.1 below the best before them.
TEACHER_VAL = {2: 20.0, 4: 40.0, 5: 50.0, 6: 60.0, 7: 70.0, 8: 80.5, 9: 80.2, 10: 80.4}
#: Fixture SAD losses (task, svd, state, feat) per epoch, unweighted. Weighted with the paper's
#: 1 / 0.5 / 0.1 / 1.5: epoch 1 -> 4.0 + 0.05 + 0.1 + 0.6 = 4.75 (structural share 0.75 / 4.75
#: = 15.8%); epoch 3 -> 3.0 + 0.01 + 0.05 + 0.15 = 3.21 (0.21 / 3.21 = 6.5%); the weighted
#: svd term peaks at 0.05, the smallest.
SAD_TERMS = {1: (4.0, 0.1, 1.0, 0.4), 2: (3.5, 0.06, 0.8, 0.2), 3: (3.0, 0.02, 0.5, 0.1)}


def _teacher_csv(path: Path, val: dict[int, float] = TEACHER_VAL, epochs: int = 10) -> Path:
    rows = [TEACHER_HEADER]
    for e in range(1, epochs + 1):
        lr = 0.01 * (1 - (e - 1) / epochs) + 0.0001234567
        v = val.get(e)
        cells = "" if v is None else f"{v},{v / 2}"
        rows.append(f"{e},{37 * e},{lr},5.2,0.9,{5 - e / 10},0.3,2.5,0.7,{5 - e / 10},"
                    + (cells or ","))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    return path


def _sad_csv(path: Path, scale: float = 1.0, epoch_s: float = 27.0, val: float = 70.0) -> Path:
    rows = [SAD_HEADER]
    for e, (task, svd, state, feat) in SAD_TERMS.items():
        task *= scale
        total = task + 0.5 * svd + 0.1 * state + 1.5 * feat
        cells = f"{val},40.0" if e % 2 == 0 else ","
        rows.append(f"{e},{75 * e},0.005,{epoch_s},1.0,{task},{svd},{state},{feat},{total},"
                    f"{cells}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    return path


def _t(m50: float, m95: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"modality": "fused", "test": {"mAP50": m50,
                                          "mAP50_95": m50 / 2 if m95 is None else m95},
            **extra}


def _results_file(path: Path, models: dict[str, Any]) -> Path:
    res = {"created_utc": "2026-12-05T00:00:00+00:00", "device": "test GPU", "torch": "x",
           "input_hw": [96, 128],
           "data": {"splits": {"train": 12, "val": 6, "test": 6}, "seed": 3, "format": "synth"},
           "status": {k.split("/")[0]: "done" for k in models}, "models": models}
    path.write_text(json.dumps(res))
    return path


def _seeded(models: dict[str, Any], base: str, vals: tuple[float, ...],
            distill_gap: float = 1.0) -> None:
    """Add a recipe's seed runs (``base``, ``base_seed2``, ``base_seed3``, as many as ``vals``)
    to ``models``: test mAP50 ``v`` after the fine-tune, ``v - distill_gap`` after the
    distillation stage."""
    for suffix, v in zip(("", "_seed2", "_seed3")[:len(vals)], vals, strict=True):
        models[f"{base}{suffix}/distill"] = _t(v - distill_gap)
        models[f"{base}{suffix}/finetune"] = _t(v)


def _full_models() -> dict[str, Any]:
    """Every phase-T run: teacher 84.0; t_task 79/80/81 (mean 80.0, std 1.00); t_sad
    80.0/81.0/82.5 (mean 81.17, sample std 1.26); the sweep at 0.50 and 0.60 only."""
    models: dict[str, Any] = {"teacher_p5_long": _t(84.0, 50.0)}
    per_seed = {"t_task": (79.0, 80.0, 81.0), "t_sad": (80.0, 81.0, 82.5),
                "t_sad_no_svd": (80.0, 80.0, 80.0), "t_sad_no_state": (81.0, 81.0, 81.0),
                "t_sad_no_feat": (79.5, 80.5, 80.0), "t_random_sad": (44.0, 46.0, 45.0),
                "t_rs4d": (80.9, 80.7, 80.2)}
    for base, vals in per_seed.items():
        _seeded(models, base, vals)
    models["t_sweep_r050/distill"] = _t(78.0, 44.0, rank_ratio=0.5)
    models["t_sweep_r060/distill"] = _t(78.6, 45.0, rank_ratio=0.6)
    return models


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 200


def _page(res: dict[str, Any], images: Path | None = None) -> tuple[str, dict[str, Path]]:
    figs = results.draw_distill_figures(res, images) if images is not None else {}
    md = results.render(res, {}, {}, 2, 5, "test CPU",
                        figures={k: f"images/{p.name}" for k, p in figs.items()})
    return md, figs


def test_ship_curves_stores_each_runs_metrics_csv(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "pipe"
    _teacher_csv(root / "teacher_p5_long" / "metrics.csv")
    _sad_csv(root / "t_sad" / "distill" / "metrics.csv")
    # a run whose distillation-stage model stayed on the GPU machine: its curve still counts
    _sad_csv(root / "t_eq" / "distill" / "metrics.csv")
    path = _results_file(tmp_path / "r.json", {"teacher_p5_long": _t(84.0),
                                               "t_sad/distill": _t(80.0),
                                               "t_sad/finetune": _t(81.0), "cnn": _t(75.0),
                                               "t_eq/finetune": _t(82.0)})
    res = json.loads(path.read_text())
    res["curves"] = {"cnn": {"epoch": [1], "lr": [0.01]}}  # from an earlier session
    path.write_text(json.dumps(res))

    assert ship.main(["curves", str(root), "--results", str(path)]) == 0
    out = capsys.readouterr().out
    assert "curves of 3 runs stored" in out
    assert "no metrics.csv under" in out and \
        "for 3 runs: cnn, t_eq/finetune, t_sad/finetune" in out
    curves = json.loads(path.read_text())["curves"]
    assert sorted(curves) == ["cnn", "t_eq/distill", "t_sad/distill", "teacher_p5_long"]
    assert curves["t_eq/distill"] == curves["t_sad/distill"]
    assert curves["cnn"] == {"epoch": [1], "lr": [0.01]}  # not under root: kept as it was
    teacher = curves["teacher_p5_long"]
    assert list(teacher) == ["epoch", "lr", "epoch_s", "train_task", "train_box", "train_cls",
                             "train_dfl", "train_loss", "val_mAP50", "val_mAP50_95"]
    assert teacher["epoch"] == list(range(1, 11))
    assert teacher["lr"][0] == 0.01012  # 0.0101234567 to 4 significant digits
    assert teacher["val_mAP50"][:4] == [None, 20.0, None, 40.0]  # not validated: null
    assert teacher["val_mAP50_95"][7] == 40.25
    sad = curves["t_sad/distill"]
    assert sad["train_svd"] == [0.1, 0.06, 0.02] and sad["train_feat"] == [0.4, 0.2, 0.1]
    assert sad["train_loss"][0] == 4.75


@pytest.mark.parametrize(("body", "match"), [
    ("", r"no 'epoch' column"),
    ("step,lr\n1,0.1\n", r"no 'epoch' column"),
    (SAD_HEADER + "\n", r"no epochs"),
    (SAD_HEADER + "\n1,75,0.01,3.0,1.0,4.0,0.2\n", r"line 2 has 7 cells, the header 12"),
    (SAD_HEADER + "\n1,75,0.01,3.0,1.0,4.0,0.2,1.0,0.4,nan?,,\n",
     r"line 2: train_loss = 'nan\?' is not a finite number"),
    (SAD_HEADER + "\n1,75,0.01,3.0,1.0,4.0,0.2,1.0,inf,4.8,,\n",
     r"line 2: train_feat = 'inf' is not a finite number"),
    (SAD_HEADER + "\n1.5,75,0.01,3.0,1.0,4.0,0.2,1.0,0.4,4.8,,\n", r"epoch '1.5'"),
])
def test_malformed_metrics_csv_is_refused_naming_the_file(tmp_path: Path, body: str,
                                                          match: str) -> None:
    csv_path = tmp_path / "pipe" / "t_sad" / "distill" / "metrics.csv"
    csv_path.parent.mkdir(parents=True)
    csv_path.write_text(body)
    with pytest.raises(ConfigError, match=match) as info:
        ship.read_curve(csv_path)
    assert str(csv_path) in str(info.value)
    path = _results_file(tmp_path / "r.json", {"t_sad/distill": _t(80.0)})
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=match):
        ship.add_curves(path, tmp_path / "pipe")
    assert path.read_bytes() == before  # nothing written


def test_a_run_resumed_from_an_earlier_epoch_keeps_its_later_rows(tmp_path: Path) -> None:
    p = tmp_path / "metrics.csv"
    p.write_text(SAD_HEADER + "\n"
                 "1,75,0.01,3.0,1.0,4.0,0.2,1.0,0.4,4.8,,\n"
                 "2,150,0.01,3.0,1.0,3.9,0.2,1.0,0.4,4.7,70.0,40.0\n"
                 "2,150,0.01,3.0,1.0,3.8,0.2,1.0,0.4,4.6,71.0,41.0\n")
    curve = ship.read_curve(p)
    assert curve["epoch"] == [1, 2]
    assert curve["train_task"] == [4.0, 3.8] and curve["val_mAP50"] == [None, 71.0]


def test_merge_keeps_the_curves_of_the_records_it_keeps(tmp_path: Path) -> None:
    old = json.loads(_results_file(tmp_path / "old.json", {"a": _t(70.0), "b": _t(71.0)})
                     .read_text())
    old["curves"] = {"a": {"epoch": [1]}, "b": {"epoch": [1, 2]}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    new = _results_file(tmp_path / "new.json", {"b": _t(72.0), "c": _t(73.0)})
    merged = ship.merge_results([tmp_path / "old.json", new])
    # b was retrained (its record comes from new.json, which has no curve of it): its old
    # curve would describe another training, so only a's stays.
    assert merged["curves"] == {"a": {"epoch": [1]}}
    assert "curves" not in ship.merge_results([new])


def test_phase_t_section_from_curves_and_records(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    _teacher_csv(root / "teacher_p5_long" / "metrics.csv")
    for run, scale in (("t_sad", 1.0), ("t_sad_seed2", 1.0), ("t_sad_seed3", 1.1)):
        _sad_csv(root / run / "distill" / "metrics.csv", scale)
    _sad_csv(root / "t_task" / "distill" / "metrics.csv", epoch_s=22.5)  # a cheaper epoch
    _sad_csv(root / "t_random_sad" / "distill" / "metrics.csv")
    path = _results_file(tmp_path / "r.json", _full_models())
    done = ship.add_curves(path, root)
    assert done["stored"] == ["t_random_sad/distill", "t_sad/distill", "t_sad_seed2/distill",
                              "t_sad_seed3/distill", "t_task/distill", "teacher_p5_long"]
    res = json.loads(path.read_text())
    md, figs = _page(res, tmp_path / "images")

    assert "## Long-trained teacher and Structure-Aware Distillation (phase T)" in md
    assert sorted(figs) == ["sad_losses", "teacher_curve"]
    for png in figs.values():
        _assert_png(png)
    assert figs["teacher_curve"].name == "teacher_curve.png"
    assert "![learning curve of teacher_p5_long](images/teacher_curve.png)" in md
    assert "![SAD loss terms](images/sad_losses.png)" in md
    assert ("Best val mAP50 80.50 at epoch 8 of 10. The best val mAP50 of the last 20% of the "
            "epochs (9-10) is 80.40, -0.10 over the best before them (80.50): less than 0.5 "
            "point, the curve had flattened out. But by epoch 9 the learning rate had decayed "
            "to 21% of its peak: the run's schedule (fitted to its minutes) was ending, so the "
            "flat end says the schedule ran out, not that a longer one would gain nothing.") in md
    # the recipes compared in words: against the larger seed spread of the two, and called
    # better or worse only where Welch's test says so (p < 0.05)
    assert ("- SAD vs SVD init + task loss only: 81.17 vs 80.00 (+1.17; 3 vs 3 seeds); 0.9x "
            "the seed spread (1.26), Welch p = 0.28: no difference shown.") in md
    assert ("- RS4D vs SVD init + task loss only: 80.60 vs 80.00 (+0.60; 3 vs 3 seeds); 0.6x "
            "the seed spread (1.00), Welch p = 0.41: no difference shown.") in md
    assert ("- random init + SAD vs SVD init + SAD: 45.00 vs 81.17 (-36.17; 3 vs 3 seeds); "
            "28.7x the seed spread (1.26), Welch p = 4.3e-06: worse.") in md
    assert ("Cost of the distillation stage in the same minutes (seed 0): `t_task` 3 epochs of "
            "22.5 s; `t_sad` 3 epochs of 27.0 s.") in md
    assert ("From random init (`t_random_sad`) L_state goes 1 -> 0.5 and L_feat 0.4 -> 0.1 over "
            "its distillation stage (from the SVD init, `t_sad`: L_state 1 -> 0.5).") in md

    assert "Teacher `teacher_p5_long`: test mAP50 84.0, mAP50:95 50.0." in md
    assert ("| SVD init, task loss only | `t_task`, `t_task_seed2`, `t_task_seed3` | "
            "79.0, 80.0, 81.0 | 80.0 | 1.00 | 40.0 | 79.0 |") in md
    assert ("| SVD init + SAD | `t_sad`, `t_sad_seed2`, `t_sad_seed3` | 80.0, 81.0, 82.5 | "
            "81.2 | 1.26 | 40.6 | 80.2 |") in md  # sample std (population: 1.03)
    assert "| SVD init + SAD without L_state | `t_sad_no_state`" in md
    assert "| 81.0, 81.0, 81.0 | 81.0 | 0.00 |" in md
    assert "| random init + SAD |" in md and "| SVD init + RS4D |" in md
    assert "Not in these results yet: `t_sweep_r055`, `t_sweep_r065`." in md

    assert ("| teacher (`teacher_p5_long`) >= undistilled student (`t_task`, mean of 3) + 3.0 "
            "| 84.0 vs 80.0 (diff +4.0) | yes |") in md
    assert ("| distilled student (`t_sad`, mean of 3) >= teacher (`teacher_p5_long`) - 1.0 | "
            "81.2 vs 84.0 (diff -2.8) | no, short by 1.8 |") in md
    assert ("| distilled student (`t_sad`, mean of 3) >= undistilled (`t_task`, mean of 3) "
            "+ 2.0 | 81.2 vs 80.0 (diff +1.2) | no, short by 0.8 |") in md

    assert "| 0.50 | `t_sweep_r050/distill` | 78.0 | 44.0 | n/a | not in the summary |" in md
    assert "| 0.55 | `t_sweep_r055/distill` | not run yet | - | - | not in the summary |" in md
    assert "paper: not in the summary." in md

    assert "(task / svd / state / feat: 1 / 0.5 / 0.1 / 1.5, from the run list)" in md
    assert ("- `t_sad`: 15.8% -> 6.5%; at the last epoch the largest is 1.5 x L_feat = 0.15 "
            "against 1 x L_task = 3.") in md
    # seed 3's task loss is 10% higher: a smaller structural share (0.75 / 5.15, 0.21 / 3.51)
    assert "- `t_sad_seed3`: 14.6% -> 6.0%;" in md
    assert "The smallest, 0.5 x L_svd, is at most 0.05 at any epoch" in md
    assert "add up to the logged total loss within 0.00% at every epoch: these are the " in md
    # the sections before it are not affected by phase T
    assert md.index("## Targets of issue 5") < md.index("(phase T)") < md.index("_Generated")


def test_a_subset_of_phase_t_renders_and_names_what_is_missing(tmp_path: Path) -> None:
    """Two seeds of t_sad, one of t_task, no teacher, no RS4D, no sweep, no curves."""
    models = {"t_sad/distill": _t(79.0), "t_sad/finetune": _t(80.0),
              "t_sad_seed2/finetune": _t(81.0), "t_task/finetune": _t(78.0),
              "t_rs4d/distill": {"error": "t_rs4d/distill/best.pt missing"}}
    res = json.loads(_results_file(tmp_path / "r.json", models).read_text())
    md, figs = _page(res, tmp_path / "images")
    assert figs == {} and not (tmp_path / "images").exists()
    assert "No learning curve of `teacher_p5_long`" in md
    assert "The teacher `teacher_p5_long` is not in these results yet." in md
    assert ("| SVD init + SAD | `t_sad`, `t_sad_seed2` | 80.0, 81.0 | 80.5 | 0.71 | 40.2 | "
            "79.0 |") in md
    assert "| SVD init, task loss only | `t_task` | 78.0 | 78.0 | - | 39.0 | - |" in md
    assert "| SVD init + RS4D | none yet | - | - | - | - | - |" in md
    missing = next(line for line in md.splitlines() if line.startswith("Not in these results"))
    for run in ("teacher_p5_long", "t_task_seed2", "t_sad_seed3", "t_rs4d", "t_rs4d_seed3"):
        assert f"`{run}`" in missing
    assert "`t_sad`," not in missing and "`t_sad_seed2`" not in missing
    assert ("| teacher (`teacher_p5_long`) >= undistilled student (`t_task`, mean of 1) + 3.0 "
            "| missing | no |") in md
    assert ("| distilled student (`t_sad`, mean of 2) >= undistilled (`t_task`, mean of 1) + "
            "2.0 | 80.5 vs 78.0 (diff +2.5) | yes |") in md
    assert "No loss curves of the SAD stage of `t_sad`" in md
    # The teacher's curve alone: its figure, not the loss figure.
    res["curves"] = {"teacher_p5_long": ship.read_curve(
        _teacher_csv(tmp_path / "t" / "metrics.csv"))}
    md, figs = _page(res, tmp_path / "images")
    assert sorted(figs) == ["teacher_curve"]
    assert "![learning curve of teacher_p5_long](images/teacher_curve.png)" in md
    assert ("- SAD vs SVD init + task loss only: 80.50 vs 78.00 (+2.50; 2 vs 1 seeds); a side "
            "has one seed, so there is no spread to judge it against.") in md
    assert "RS4D vs" not in md  # no RS4D result: no comparison stated


def test_no_phase_t_runs_no_section(tmp_path: Path) -> None:
    res = json.loads(_results_file(tmp_path / "r.json", {"teacher": _t(70.0)}).read_text())
    md, figs = _page(res, tmp_path / "images")
    assert figs == {} and "phase T" not in md and "issue [teacher]" not in md


@pytest.mark.parametrize(("val", "expect"), [
    ({2: 50.0, 8: 70.0, 10: 75.0}, "75.00, +5.00 over the best before them (70.00): the teacher "
                                   "was still improving"),
    ({2: 50.0, 6: 70.0}, "No validation in the last 20% of the epochs (9-10): whether it "
                         "converged cannot be told"),
    ({10: 70.0}, "No validation before the last 20% of the epochs (9-10)"),
])
def test_teacher_convergence_sentence(tmp_path: Path, val: dict[int, float],
                                      expect: str) -> None:
    curve = ship.read_curve(_teacher_csv(tmp_path / "m.csv", val))
    summary = results.teacher_curve_summary(curve)
    assert summary is not None
    assert expect in results._teacher_sentence(summary)
    assert results.teacher_curve_summary(ship.read_curve(_teacher_csv(tmp_path / "n.csv", {})
                                                         )) is None


def test_loss_weights_come_from_the_run_list_and_are_checked_against_the_total(
        tmp_path: Path) -> None:
    assert results.run_weights("t_sad_no_state")["state"] == 0.0
    assert results.run_weights("t_sad_no_state")["feat"] == 1.5
    assert [results.run_weights("t_task")[t] for t in results.SAD_TERMS] == [1.0, 0.0, 0.0, 0.0]
    paper = results.run_weights("t_sad_seed2")
    assert [paper[t] for t in results.SAD_TERMS] == [1.0, 0.5, 0.1, 1.5]
    curve = ship.read_curve(_sad_csv(tmp_path / "m.csv"))
    ok = results.sad_loss_summary(curve, paper)
    assert ok is not None and ok["total_dev"] < 1e-3
    # The same log read with weights it did not train with: the sum misses the logged total.
    wrong = results.sad_loss_summary(curve, {**paper, "feat": 0.0})
    assert wrong is not None and wrong["total_dev"] > 0.1
    assert wrong["last"] == pytest.approx(0.06 / 3.06)


def test_results_main_links_the_phase_t_figures(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI path: figures under --images, linked relative to the page."""
    root = tmp_path / "pipe"
    _teacher_csv(root / "teacher_p5_long" / "metrics.csv")
    _sad_csv(root / "t_sad" / "distill" / "metrics.csv")
    path = _results_file(tmp_path / "r.json", _full_models())
    assert ship.main(["curves", str(root), "--results", str(path)]) == 0
    monkeypatch.setattr(results, "measure_architectures", lambda *a, **k: {})
    monkeypatch.setattr(results, "cpu_model", lambda: "test CPU")
    docs = tmp_path / "docs"
    assert results.main(["--results", str(path), "--out", str(docs / "results.md"),
                         "--front-png", str(docs / "images" / "front.png"),
                         "--images", str(docs / "images"), "--front-size", ""]) == 0
    md = (docs / "results.md").read_text()
    assert "![learning curve of teacher_p5_long](images/teacher_curve.png)" in md
    assert "![SAD loss terms](images/sad_losses.png)" in md
    _assert_png(docs / "images" / "teacher_curve.png")
    _assert_png(docs / "images" / "sad_losses.png")
    assert "- `t_sad`: 15.8% -> 6.5%;" in md and "`t_sad_seed2`: " not in md


def test_a_train_run_in_a_distill_phase_gets_its_own_minutes() -> None:
    """The phase table gives a mixed phase's distill minutes; its train run's own budget and
    run-list overrides are said below it."""
    res = {"models": {"teacher_p5_long": _t(80.0), "t_sad/distill": _t(79.0)},
           "phases": [{"models": ["t_sad/distill", "teacher_p5_long"], "device": "GPU",
                       "created_utc": "2026-12-05T08:36:30",
                       "settings": {"phase_a_min": 8.0, "phase_b_min": 7.3, "parallel": 9,
                                    "batch_size": 32, "lr": 0.01}}]}
    lines = results._phase_lines(res)
    assert any("| 7.3 | 9 | 32 |" in line for line in lines)
    assert ("`teacher_p5_long` (phase T, a train run): 8.0 min budget before the others of its "
            "phase started, with the run list's `--batch-size 64 --workers 8`.") in lines
    res["phases"][0]["models"] = ["t_sad/distill"]  # distill runs only: nothing more to say
    assert not any("a train run" in line for line in results._phase_lines(res))


def test_training_on_section_compares_the_teacher_with_its_student_for_the_same_minutes(
        tmp_path: Path) -> None:
    """teacher_p5_cont (84 -> 85.5) against t_task_cont (83.9 after its fine-tune): the gap is
    1.6, the [teacher] target (+3) is not met; the joined curve numbers the continuation's
    epochs after the first run's and the figure is drawn."""
    root = tmp_path / "pipe"
    _teacher_csv(root / "teacher_p5_long" / "metrics.csv")
    _teacher_csv(root / "teacher_p5_cont" / "metrics.csv", epochs=4,
                 val={2: 84.5, 4: 85.0})
    models = {**_full_models(), "teacher_p5_cont": _t(85.5, 51.0),
              "t_task_cont/distill": _t(83.0), "t_task_cont/finetune": _t(83.9),
              "teacher_p5_large": _t(82.25)}
    path = _results_file(tmp_path / "r.json", models)
    assert ship.main(["curves", str(root), "--results", str(path)]) == 0
    res = json.loads(path.read_text())

    joined = results.joined_curve(res["curves"]["teacher_p5_long"],
                                  res["curves"]["teacher_p5_cont"])
    assert joined["epoch"] == list(range(1, 15))
    assert joined["val_mAP50"][10:] == [None, 84.5, None, 85.0]
    assert len(joined["lr"]) == 14

    md, figs = _page(res, tmp_path / "images")
    _assert_png(figs["teacher_cont_curve"])
    sec = md.split("### More minutes")[1].split("### Targets")[0]
    assert "| `teacher_p5_cont` | teacher, trained on | n/a | 4 | 85.5 | 51.0 | +1.5 |" in sec
    assert "| `t_task_cont/finetune` | student, after fine-tune | n/a | - | 83.9 |" in sec
    assert "| `teacher_p5_large` | larger teacher, from scratch | n/a | - | 82.2 |" in sec
    assert "images/teacher_cont_curve.png" in sec
    assert "a gap of +1.6 mAP50" in sec and "not met" in sec
    assert "after ? epochs, against `teacher_p5_cont` 85.5" in sec
    assert "`teacher_p5_long`'s 10 epochs before its own 4" in sec
    # the targets take the best teacher of the architecture: the one trained on
    targets = md.split("### Targets of issue [teacher]")[1]
    assert ("| teacher (`teacher_p5_cont`) >= undistilled student (`t_task`, mean of 3) + 3.0 "
            "| 85.5 vs 80.0 (diff +5.5) | yes |") in targets


def test_no_training_on_runs_no_training_on_section(tmp_path: Path) -> None:
    md, _ = _page(json.loads(_results_file(tmp_path / "r.json", _full_models()).read_text()))
    assert "### More minutes" not in md


def test_phase_d_section_shows_its_teacher_students_targets_and_loss_terms(
        tmp_path: Path) -> None:
    # Round 1: teacher_long 85.0; s_task 79/80/81 (mean 80.0, std 1.00); s_sad 82/83 (mean
    # 82.5, std 0.71), seed 3 missing. Targets: 85.0 >= 80.0 + 3 met; 82.5 >= 84.0 met;
    # 82.5 >= 82.0 met. Round 2: only its teacher, teacher_long_cont 86.0.
    models: dict[str, Any] = {"teacher_long": _t(85.0, 52.0),
                              "teacher_long_cont": _t(86.0, 53.0)}
    _seeded(models, "s_task", (79.0, 80.0, 81.0), distill_gap=2.0)
    _seeded(models, "s_sad", (82.0, 83.0))
    path = _results_file(tmp_path / "r.json", models)
    root = tmp_path / "pipe"
    _teacher_csv(root / "teacher_long" / "metrics.csv")
    _sad_csv(root / "s_sad" / "distill" / "metrics.csv", epoch_s=30.0)
    _sad_csv(root / "s_task" / "distill" / "metrics.csv", epoch_s=20.0)
    assert ship.main(["curves", str(root), "--results", str(path)]) == 0
    res = json.loads(path.read_text())

    md, figs = _page(res, tmp_path / "images")
    assert sorted(figs) == ["curve_teacher_long", "sad_losses_s_sad"]
    for p in figs.values():
        _assert_png(p)
    d = md[md.index("## SAD where the selective scan matters (phase D)"):]
    r1 = d[d.index("### `teacher_long` and its students"):
           d.index("### `teacher_long_cont` and its students")]
    assert "![learning curve of teacher_long](images/teacher_long_curve.png)" in r1
    assert "Best val mAP50 80.50 at epoch 8 of 10." in r1
    assert "Teacher `teacher_long`: test mAP50 85.0, mAP50:95 52.0." in r1
    assert ("| SVD init, task loss only | `s_task`, `s_task_seed2`, `s_task_seed3` | "
            "79.0, 80.0, 81.0 | 80.0 | 1.00 | 40.0 | 78.0 |") in r1
    assert ("| SVD init + SAD, then fine-tune | `s_sad`, `s_sad_seed2` | 82.0, 83.0 | 82.5 | "
            "0.71 | 41.2 | 81.5 |") in r1
    assert "Not in these results yet: `s_sad_seed3`." in r1
    assert ("- SAD vs SVD init + task loss only: 82.50 vs 80.00 (+2.50; 2 vs 3 seeds); "
            "2.5x the seed spread (1.00), Welch p = 0.049: better.") in r1
    assert ("| teacher (`teacher_long`) >= SVD-init student without SAD (`s_task`, mean of 3) "
            "+ 3.0 | 85.0 vs 80.0 (diff +5.0) | yes |") in r1
    assert ("| distilled student (`s_sad`, mean of 2) >= SVD-init student without SAD "
            "(`s_task`, mean of 3) + 2.0 | 82.5 vs 80.0 (diff +2.5) | yes |") in r1
    # round 1 has no random-init recipes: no undistilled row
    assert "undistilled" not in r1
    assert "- `s_sad` 70.00 vs `s_task` 70.00 (+0.00) at epoch 2, 1 seed a side." in r1
    assert "![SAD loss terms of s_sad](images/sad_losses_s_sad.png)" in r1
    assert "- `s_sad`: 15.8% -> 6.5%" in r1
    assert "`s_task` 3 epochs of 20.0 s; `s_sad` 3 epochs of 30.0 s." in r1
    r2 = d[d.index("### `teacher_long_cont` and its students"):]
    assert "No learning curve of `teacher_long_cont`" in r2
    assert "Teacher `teacher_long_cont`: test mAP50 86.0" in r2
    assert "| SVD init, task loss only | none yet |" in r2
    assert ("| teacher (`teacher_long_cont`) >= undistilled student (`c_random_task`, mean of 0) "
            "+ 3.0 | missing | no |") in r2
    assert "| random init, task loss only (undistilled) | none yet |" in r2
    # phase T absent: its section is not drawn
    assert "(phase T)" not in md


def test_phase_d_round_with_random_init_students(tmp_path: Path) -> None:
    # teacher_long_cont 84.0; c_task 83/84/85 (mean 84.0, std 1.00); c_sad 83.5 x3 (std 0);
    # c_random_task 50/55/60 (mean 55.0, std 5.00); c_random_sad 44/45/46 (mean 45.0, std 1.00).
    # Distillation-stage curves of seed 0 (val at epochs 2 only): c_sad 72, c_task 70;
    # c_random_sad 20, c_random_task 30.
    models: dict[str, Any] = {"teacher_long_cont": _t(84.0, 52.0)}
    per_seed = {"c_task": (83.0, 84.0, 85.0), "c_sad": (83.5, 83.5, 83.5),
                "c_random_task": (50.0, 55.0, 60.0), "c_random_sad": (44.0, 45.0, 46.0)}
    for base, vals in per_seed.items():
        _seeded(models, base, vals)
    path = _results_file(tmp_path / "r.json", models)
    root = tmp_path / "pipe"
    for run, val, secs in (("c_sad", 72.0, 30.0), ("c_task", 70.0, 20.0),
                           ("c_random_sad", 20.0, 30.0), ("c_random_task", 30.0, 20.0)):
        _sad_csv(root / run / "distill" / "metrics.csv", epoch_s=secs, val=val)
    assert ship.main(["curves", str(root), "--results", str(path)]) == 0
    md, _ = _page(json.loads(path.read_text()))
    r2 = md[md.index("### `teacher_long_cont` and its students"):]
    assert ("| random init, task loss only (undistilled) | `c_random_task`, "
            "`c_random_task_seed2`, `c_random_task_seed3` | 50.0, 55.0, 60.0 | 55.0 | 5.00 |"
            ) in r2
    assert "| random init + SAD, then fine-tune | `c_random_sad`" in r2
    assert ("- SVD init vs random init (task loss only): what the teacher's weights give: "
            "84.00 vs 55.00 (+29.00; 3 vs 3 seeds); 5.8x the seed spread (5.00), Welch "
            "p = 0.0078: better.") in r2
    # twice the larger spread, but one side's 5.00 over 3 seeds: not shown
    assert ("- SAD vs task loss only, both from a random init: 45.00 vs 55.00 (-10.00; "
            "3 vs 3 seeds); 2.0x the seed spread (5.00), Welch p = 0.069: no difference "
            "shown.") in r2
    assert ("- SVD init + SAD vs random init + SAD: 83.50 vs 45.00 (+38.50; 3 vs 3 seeds); "
            "38.5x the seed spread (1.00), Welch p = 0.00022: better.") in r2
    assert "- `c_sad` 72.00 vs `c_task` 70.00 (+2.00) at epoch 2, 1 seed a side." in r2
    assert ("- `c_random_sad` 20.00 vs `c_random_task` 30.00 (-10.00) at epoch 2, "
            "1 seed a side.") in r2
    assert ("| teacher (`teacher_long_cont`) >= undistilled student (`c_random_task`, mean of "
            "3) + 3.0 | 84.0 vs 55.0 (diff +29.0) | yes |") in r2
    assert ("| teacher (`teacher_long_cont`) >= SVD-init student without SAD (`c_task`, mean "
            "of 3) + 3.0 | 84.0 vs 84.0 (diff +0.0) | no, short by 3.0 |") in r2
    assert ("| distilled student (`c_sad`, mean of 3) >= teacher - 1.0 | 83.5 vs 84.0 "
            "(diff -0.5) | yes |") in r2
    assert ("| distilled student (`c_sad`, mean of 3) >= undistilled (`c_random_task`, mean of "
            "3) + 2.0 | 83.5 vs 55.0 (diff +28.5) | yes |") in r2
    assert ("From random init (`c_random_sad`) L_state goes 1 -> 0.5 and L_feat 0.4 -> 0.1 over "
            "its distillation stage (from the SVD init, `c_sad`: L_state 1 -> 0.5).") in r2
    assert ("In the run list for this teacher, not run yet: the recipes `c_task_eq`, `c_sad_eq`, "
            "`c_task_r005`, `c_sad_r005`, `c_sad_t2`, `c_sad_no_svd`, `c_sad_no_state`, "
            "`c_sad_no_feat` "
            "(seeds 0, 2 and 3 each); the rank sweep `c_sweep_r050`, `c_sweep_r055`, "
            "`c_sweep_r060`, `c_sweep_r065`.") in r2
    assert ("`c_task` 3 epochs of 20.0 s; `c_sad` 3 epochs of 30.0 s; `c_random_task` 3 "
            "epochs of 20.0 s; `c_random_sad` 3 epochs of 30.0 s.") in r2


def test_phase_d_round_shows_its_further_recipes_and_sweep_once_they_ran(
        tmp_path: Path) -> None:
    # c_task 83/84/85 (mean 84.0, std 1.00), c_sad 83.5 x3; c_task_eq 84.0 x3 (std 0),
    # c_sad_eq 84.5/84.5 (seed 3 missing, std 0); c_sad_no_svd 83.0 (one seed: no spread);
    # the sweep at 0.50 only.
    models: dict[str, Any] = {"teacher_long_cont": _t(84.0, 52.0),
                              "c_sweep_r050/distill": _t(82.0, 50.0, rank_ratio=0.5)}
    per_seed = {"c_task": (83.0, 84.0, 85.0), "c_sad": (83.5, 83.5, 83.5),
                "c_task_eq": (84.0, 84.0, 84.0), "c_sad_eq": (84.5, 84.5),
                "c_sad_no_svd": (83.0,)}
    for base, vals in per_seed.items():
        _seeded(models, base, vals)
    path = _results_file(tmp_path / "r.json", models)
    # the same-schedule pair's distillation stages (their models stayed behind): val at epochs
    # 2 (_sad_csv); c_sad_eq 72 and 74 (two seeds), c_task_eq 70 x3
    root = tmp_path / "pipe"
    for run, val in (("c_sad_eq", 72.0), ("c_sad_eq_seed2", 74.0), ("c_task_eq", 70.0),
                     ("c_task_eq_seed2", 70.0), ("c_task_eq_seed3", 70.0)):
        _sad_csv(root / run / "distill" / "metrics.csv", val=val)
    assert ship.main(["curves", str(root), "--results", str(path)]) == 0
    md, _ = _page(json.loads(path.read_text()))
    r2 = md[md.index("### `teacher_long_cont` and its students"):]
    assert ("trained for the same fixed epochs (not fitted to minutes). Val mAP50 of their "
            "distillation stage at each epoch every seed validated, means of 2 seeds a side:"
            ) in r2
    assert "| epoch | `c_sad_eq` | `c_task_eq` | difference |" in r2
    assert "|---:|---:|---:|---:|\n| 2 | 73.00 | 70.00 | +3.00 |\n\n" in r2
    assert ("| SVD init + SAD, 7 + 9 epochs (equal steps) | `c_sad_eq`, `c_sad_eq_seed2` | "
            "84.5, 84.5 | 84.5 | 0.00 |") in r2
    assert "| SVD init + SAD without L_SVD | `c_sad_no_svd` | 83.0 | 83.0 | - |" in r2
    assert "| rank 0.05: SVD init + SAD |" not in r2  # not run: named below instead
    assert ("- SVD init + SAD, 7 + 9 epochs (equal steps) vs `c_task_eq`: 84.50 vs 84.00 "
            "(+0.50; 2 vs 3 seeds); every seed of both recipes scored the same (spread 0): "
            "better.") in r2
    assert ("- SVD init + SAD without L_SVD vs `c_sad`: 83.00 vs 83.50 (-0.50; 1 vs 3 seeds); "
            "a side has one seed") in r2
    # an own baseline (c_task_eq) is compared with nothing
    assert "SVD init, task loss only, 7 + 9 epochs (equal steps) vs" not in r2
    assert "Rank-ratio sweep from `teacher_long_cont` (SAD only):" in r2
    assert "| 0.50 | `c_sweep_r050/distill` | 82.0 | 50.0 |" in r2
    assert "| 0.55 | `c_sweep_r055/distill` | not run yet |" in r2
    assert ("In the run list for this teacher, not run yet: the recipes `c_task_r005`, "
            "`c_sad_r005`, `c_sad_t2`, `c_sad_no_state`, `c_sad_no_feat` (seeds 0, 2 and 3 "
            "each).") in r2
    assert "Not in these results yet: " in r2 and "`c_sad_eq_seed3`" in r2


def test_equal_step_means_needs_an_epoch_every_seed_validated() -> None:
    def curve(val: dict[int, float]) -> dict[str, Any]:
        return {"epoch": [1, 2, 3, 4],
                "val_mAP50": [val.get(e) for e in (1, 2, 3, 4)]}
    curves = {"a/distill": curve({2: 10.0, 4: 20.0}), "a_seed2/distill": curve({2: 12.0, 4: 22.0}),
              "b/distill": curve({2: 5.0, 3: 6.0}), "b_seed2/distill": curve({2: 7.0, 4: 9.0})}
    # epoch 4 is missing in b's seed 0, so epoch 2 is the last common one
    assert results.equal_step_means(curves, "a", "b") == (2, 11.0, 6.0, 2)
    assert results.equal_step_means(curves, "a", "missing") is None
    curves["b/distill"] = curve({3: 6.0})
    assert results.equal_step_means(curves, "a", "b") is None


def test_phase_d_section_absent_without_its_runs() -> None:
    res = json.loads(json.dumps({"created_utc": "x", "device": "d", "torch": "x",
                                 "input_hw": [96, 128],
                                 "data": {"splits": {"train": 1, "val": 1, "test": 1},
                                          "seed": 3}, "models": {"cnn": _t(70.0)}}))
    md, _ = _page(res)
    assert "phase D" not in md
