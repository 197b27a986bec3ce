"""research.sad_probe: the SAD quantities (L_SVD, SS2D output and state errors, P3-P5 level
errors) of students against their teacher, on real forward passes of a nano teacher over
synthetic frames."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlrmamba_core.data.synthetic import SYNTH_CLASSES
from dlrmamba_core.errors import ConfigError
from dlrmamba_core.models import build_model, student_from_teacher
from dlrmamba_core.models.io import load_model, save_model
from dlrmamba_core.research import sad_probe

INPUT_HW = (96, 128)


@pytest.fixture(scope="module")
def svd_student(nano_teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The teacher's SVD student, untrained, as a file (the same model the probe builds)."""
    teacher, _ = load_model(nano_teacher)
    student = student_from_teacher(teacher).eval()
    return save_model(tmp_path_factory.mktemp("student") / "svd.pt", student,
                      list(SYNTH_CLASSES), INPUT_HW)


def test_probe_rows_measure_the_svd_init_and_a_random_init(nano_teacher: Path,
                                                           svd_student: Path,
                                                           synth_root: Path) -> None:
    res = sad_probe.probe(str(nano_teacher), [str(svd_student)], str(synth_root), split="val",
                          frames=6, with_map=False)
    rows = res["rows"]
    assert list(rows) == ["svd init", "svd.pt", "random init"]
    init, saved, rand = rows["svd init"], rows["svd.pt"], rows["random init"]
    # The file holds the same SVD init: every quantity agrees.
    assert saved["svd"] == pytest.approx(init["svd"], abs=1e-9)
    for name, v in init["blocks"].items():
        for q in ("feat", "state_init", "state_lsq"):
            assert saved["blocks"][name][q] == pytest.approx(v[q], abs=1e-5)
    assert init["svd"] == 0.0  # its factors are the SVD targets themselves
    assert rand["svd"] > 1e-4
    # nano: a conv stage first, SS2D stages after it. The SVD init copies the conv stage, so
    # its P3 output equals the teacher's; a random init's is unrelated (scale-free error ~1).
    assert init["levels"]["backbone P3"] == pytest.approx(0.0, abs=1e-9)
    assert rand["levels"]["backbone P3"] > 0.5
    assert len(init["blocks"]) == 2  # stages 1 and 2
    for name, v in init["blocks"].items():
        assert v["feat"] > 0.0 and 0.0 <= v["state_lsq"] <= 2.0
        assert rand["blocks"][name]["feat"] > 0.5
    text = sad_probe.render(res)
    assert "| svd init |" in text and "state@lsq" in text and "backbone P5" in text


def test_a_full_rank_svd_init_is_the_teacher_itself(nano_teacher: Path, synth_root: Path
                                                     ) -> None:
    # rank and state ratio 1: the SVD student computes the teacher's function, so every
    # error is float rounding, while a random init of that shape is unrelated.
    res = sad_probe.probe(str(nano_teacher), [], str(synth_root), split="val", frames=4,
                          with_map=False, rank_ratio=1.0, state_ratio=1.0)
    init, rand = res["rows"]["svd init"], res["rows"]["random init"]
    for name, v in init["blocks"].items():
        assert v["feat"] < 1e-6 and v["state_init"] < 1e-6 and v["state_lsq"] < 1e-6
        assert rand["blocks"][name]["feat"] > 0.5
    assert max(init["levels"].values()) < 1e-6


def test_probe_scores_each_model_on_the_whole_split(nano_teacher: Path, svd_student: Path,
                                                    synth_root: Path) -> None:
    res = sad_probe.probe(str(nano_teacher), [str(svd_student)], str(synth_root), split="val",
                          frames=4, random_init=False)
    assert 0.0 <= res["teacher_map50"] <= 100.0
    assert res["rows"]["svd init"]["map50"] == pytest.approx(res["rows"]["svd.pt"]["map50"],
                                                             abs=1e-6)
    assert "| mAP50 |" in sad_probe.render(res)


def test_lsq_state_error_finds_a_linear_map_of_the_teacher_states() -> None:
    g = torch.Generator().manual_seed(0)
    b, k, e, n, r, c = 6, 2, 3, 8, 2, 5
    teacher = torch.randn(b, k * e, n, c, generator=g)
    proj = torch.randn(k, r, n, generator=g)  # one map per direction
    linear = torch.einsum("krn,bkenc->bkerc", proj, teacher.reshape(b, k, e, n, c))
    assert sad_probe.lsq_state_error(linear.reshape(b, k * e, r, c), teacher, k) < 1e-10
    unrelated = torch.randn(b, k * e, r, c, generator=g)
    assert sad_probe.lsq_state_error(unrelated, teacher, k) > 0.5


def test_cli_writes_the_tables_and_refuses_a_student_of_another_teacher(
        nano_teacher: Path, svd_student: Path, synth_root: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "probe.md"
    args = ["--teacher", str(nano_teacher), "--data", str(synth_root), "--split", "val",
            "--frames", "4", "--no-map", "--no-random"]
    assert sad_probe.main([*args, "--student", str(svd_student), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# SAD probe") and "| svd.pt |" in text and "sad_probe" in text

    foreign = save_model(tmp_path / "cnn.pt", build_model("cnn", len(SYNTH_CLASSES)),
                         list(SYNTH_CLASSES), INPUT_HW)
    assert sad_probe.main([*args, "--student", str(foreign)]) == 2
    assert "cnn" in capsys.readouterr().err
    # A low-rank model is no teacher.
    assert sad_probe.main(["--teacher", str(svd_student), "--data", str(synth_root),
                           "--frames", "4", "--no-map"]) == 2
    assert "full-rank" in capsys.readouterr().err


def test_too_few_frames_is_a_clear_error(nano_teacher: Path, synth_root: Path) -> None:
    with pytest.raises(ConfigError, match="at least 4"):
        sad_probe.probe(str(nano_teacher), [], str(synth_root), split="val", frames=2,
                        with_map=False)


def test_truncation_sweep_rows_grow_with_the_rank_and_full_rank_is_the_teacher(
        nano_teacher: Path, synth_root: Path, tmp_path: Path) -> None:
    res = sad_probe.truncation_sweep(str(nano_teacher), [1.0, 0.1, 0.5], str(synth_root),
                                     split="val", frames=6, state_ratio=1.0)
    rows = res["rows"]
    assert [r["rank_ratio"] for r in rows] == [0.1, 0.5, 1.0]  # sorted
    assert rows[0]["params_M"] < rows[1]["params_M"] < rows[2]["params_M"]
    # full rank and all states: the teacher's function, so its outputs and its mAP
    assert rows[2]["feat"] < 1e-6
    assert rows[2]["map50"] == pytest.approx(res["teacher_map50"], abs=1e-6)
    assert rows[0]["feat"] > rows[2]["feat"]
    text = sad_probe.render_truncation(res)
    assert "| 1.00 |" in text and "| +0.00 |" in text

    out = tmp_path / "trunc.md"
    assert sad_probe.main(["--teacher", str(nano_teacher), "--data", str(synth_root),
                           "--split", "val", "--frames", "6", "--truncation", "0.2",
                           "--out", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("# What the truncated SVD alone costs")
    assert "--truncation 0.2" in page and "| 0.20 |" in page
    assert sad_probe.main(["--teacher", str(nano_teacher), "--data", str(synth_root),
                           "--truncation", "0", "--out", str(tmp_path / "no.md")]) == 2
    assert not (tmp_path / "no.md").exists()
    # two teachers: one table each on one page; the probe itself takes one
    assert sad_probe.main(["--teacher", str(nano_teacher), "--teacher", str(nano_teacher),
                           "--data", str(synth_root), "--split", "val", "--frames", "6",
                           "--truncation", "0.2", "--out", str(out)]) == 0
    assert out.read_text().count("| rank ratio |") == 2
    assert sad_probe.main(["--teacher", str(nano_teacher), "--teacher", str(nano_teacher),
                           "--data", str(synth_root)]) == 2
    assert sad_probe.main(["--teacher", str(nano_teacher), "--student", str(nano_teacher),
                           "--data", str(synth_root), "--truncation", "0.2"]) == 2
