"""research.results: the accuracy-vs-latency front (rows, PNG, table)."""

from __future__ import annotations

from pathlib import Path

from dlrmamba_core.research import results


def _models() -> dict:
    return {"cnn": {"test": {"mAP50": 75.5}}, "teacher": {"test": {"mAP50": 75.7}},
            "student_sad/finetune": {"test": {"mAP50": 77.7}},
            "student_p5/finetune": {"test": {"mAP50": 77.0}},
            "student_sad/distill": {"test": {"mAP50": 76.6}},  # its finetune is plotted
            "student_sad_seed2/finetune": {"test": {"mAP50": 77.7}},  # a seed repeat
            "rgb": {"test": {"mAP50": 56.0}, "modality": "rgb"},  # single camera
            "broken": {"error": "missing"}}


def test_front_marks_models_nothing_beats_on_both_axes(tmp_path: Path) -> None:
    arch_of = {"cnn": "cnn", "teacher": "teacher", "student_sad/finetune": "student",
               "student_p5/finetune": "p5", "student_sad/distill": "student",
               "student_sad_seed2/finetune": "student", "rgb": "student"}
    ms = {"256x320": {"cnn": {"cpu_ms_p50": 8.0}, "teacher": {"cpu_ms_p50": 70.0},
                      "student": {"cpu_ms_p50": 28.0}, "p5": {"cpu_ms_p50": 15.0}},
          "512x640": {"cnn": {"cpu_ms_p50": 30.0}, "teacher": {"cpu_ms_p50": 300.0},
                      "student": {"cpu_ms_p50": 100.0}, "p5": {"cpu_ms_p50": 50.0}}}
    rows = results.front_rows(_models(), arch_of, ms)
    on = {r["model"]: r["front"] for r in rows}
    # teacher: slower and less accurate than the student -> off the front; cnn fastest,
    # student_p5 faster than the student, the student most accurate -> on it.
    assert on == {"cnn": True, "teacher": False, "student_sad/finetune": True,
                  "student_p5/finetune": True}
    png = results.draw_front(rows, tmp_path / "front.png", 2, "test CPU")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = results.front_lines(rows, "images/front.png", [256, 320])
    assert "![accuracy vs CPU ms](images/front.png)" in lines
    row = next(line for line in lines if line.startswith("| `student_p5/finetune`"))
    assert "| 50.0 | 1.67 |" in row and row.endswith("| yes |")  # 50 / 30 ms at 512x640
    teacher = next(line for line in lines if line.startswith("| `teacher`"))
    assert teacher.endswith("|  |")
