"""research/runs.yaml: the pipeline's runs come from the run list, and a bad list is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlrmamba_core.errors import ConfigError
from dlrmamba_core.models.config import FAST_PAIRS, STUDENT_RANK_RATIO, variant_description
from dlrmamba_core.research import pipeline


def _plan(root: Path, runs_file: Path = pipeline.RUNS_FILE) -> dict[str, pipeline.Run]:
    runs = pipeline.plan(root / "data", 2, 2, 1, 2, 4, 0, (96, 128), 1.0, 1.0, root,
                         teacher_variant="nano", runs_file=runs_file)
    return {r.name: r for r in runs}


def _value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_shipped_run_list_fills_placeholders_with_the_registry(tmp_path: Path) -> None:
    runs = _plan(tmp_path)
    listed = pipeline.load_runs()
    assert list(runs) == [s.name for s in listed.runs]
    assert listed.default_phases == ("A", "B")
    assert _value(runs["teacher"].args, "--variant") == "nano"  # {teacher_variant}
    scratch = runs["student_scratch"]
    assert _value(scratch.args, "--rank-ratio") == str(STUDENT_RANK_RATIO)
    assert scratch.info["rank_ratio"] == STUDENT_RANK_RATIO  # typed, not the string "0.15"
    assert int(_value(scratch.args, "--d-state")) >= 1
    assert _value(runs["sweep_r055"].args, "--rank-ratio") == "0.55"
    assert _value(runs["sweep_r055"].args, "--finetune-epochs") == "0"
    for teacher, _ in FAST_PAIRS:
        assert runs[teacher].info["role"] == f"fast teacher: {variant_description(teacher)}"
    assert not any("{" in a for r in runs.values() for a in r.args)


def test_a_custom_run_list_drives_the_plan_and_the_default_selection(tmp_path: Path) -> None:
    f = tmp_path / "runs.yaml"
    f.write_text("""
default_phases: [X]
runs:
  - {name: big, phase: X, recipe: train, args: [--variant, teacher], info: {role: t},
     overrides: [--batch-size, 64]}
  - {name: small, phase: Y, recipe: distill, teacher: big, args: [--weights, feat=0],
     info: {rank_ratio: 0.3, role: s}, overrides: [--workers, 5]}
  - {name: small_again, phase: Y, repeat_of: small, seed: 7}
""")
    runs = _plan(tmp_path, f)
    assert list(runs) == ["big", "small", "small_again"]
    big, small, again = runs["big"], runs["small"], runs["small_again"]
    assert small.needs == ["big"] and small.command == "distill"
    assert _value(small.args, "--teacher") == str(tmp_path / "big" / "best.pt")
    assert _value(small.args, "--rank-ratio") == "0.3"
    assert small.args[:2] == ["--weights", "feat=0"]
    # overrides come after the recipe's value of the same option, so the CLI takes them
    assert small.args[-2:] == ["--workers", "5"] and small.args.count("--workers") == 2
    assert big.args[-2:] == ["--batch-size", "64"]
    from dlrmamba_core.cli import build_parser

    parsed = build_parser().parse_args(["train", *big.args, "--out", str(tmp_path / "o")])
    assert parsed.batch_size == 64
    assert again.args == [*small.args, "--seed", "7"]
    assert again.info == {"rank_ratio": 0.3, "role": "s, seed 7", "repeat_of": "small",
                          "seed": 7}
    assert pipeline.load_runs(f).default_phases == ("X",)
    with pytest.raises(ConfigError, match="no run named teacher"):
        pipeline.main(["--out", str(tmp_path / "p"), "--runs", str(f), "--only", "teacher"])


def test_a_teacher_model_file_instead_of_a_teacher_run(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`teacher: models/x.onnx` distills from that file (absolute path, no run to wait for);
    a selected run whose file is missing stops the pipeline before the data generation."""
    f = tmp_path / "runs.yaml"
    f.write_text("""
default_phases: [Y]
runs:
  - {name: s, phase: Y, recipe: distill, teacher: models/t.onnx, info: {rank_ratio: 0.3}}
  - {name: s2, phase: Y, repeat_of: s, seed: 2}
""")
    monkeypatch.chdir(tmp_path)
    runs = _plan(tmp_path, f)
    assert runs["s"].needs == [] and runs["s2"].needs == []
    assert _value(runs["s"].args, "--teacher") == str(tmp_path / "models" / "t.onnx")
    out = tmp_path / "p"
    with pytest.raises(ConfigError, match=r"run s: its teacher file models/t\.onnx does not"):
        pipeline.main(["--out", str(out), "--runs", str(f)])
    assert not out.exists()  # refused before anything was generated
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "t.onnx").write_bytes(b"x")
    pipeline.check_teacher_files(list(pipeline.load_runs(f).runs), ["s", "s2"])


def test_teacher_file_option_stands_in_for_a_teacher_run(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """--teacher-file RUN=FILE: the runs RUN teaches distill from FILE and do not wait."""
    f = tmp_path / "runs.yaml"
    f.write_text("""
runs:
  - {name: big, phase: X, recipe: train, info: {role: t}}
  - {name: small, phase: Y, recipe: distill, teacher: big, info: {rank_ratio: 0.3}}
""")
    monkeypatch.chdir(tmp_path)
    runs = {r.name: r for r in pipeline.plan(
        tmp_path / "data", 2, 2, 1, 2, 4, 0, (96, 128), 1.0, 1.0, tmp_path,
        teacher_variant="nano", runs_file=f, teacher_files={"big": "shipped/t.onnx"})}
    assert runs["small"].needs == []
    assert _value(runs["small"].args, "--teacher") == str(tmp_path / "shipped" / "t.onnx")
    for bad, message in ((["--teacher-file", "nope=t.onnx"], "no run named nope"),
                         (["--teacher-file", "big"], "give RUN=FILE"),
                         (["--teacher-file", "big=t.onnx", "--only", "small"],
                          r"teacher file t\.onnx does not exist")):
        with pytest.raises(ConfigError, match=message):
            pipeline.main(["--out", str(tmp_path / "p"), "--runs", str(f), *bad])
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(("entry", "message"), [
    ("{name: a, phase: A, recipe: fit}", "recipe 'fit' is not one of train, distill, sweep"),
    ("{name: a, phase: A, recipe: distill, info: {rank_ratio: 0.5}}", "name a teacher"),
    ("{name: a, phase: A, recipe: sweep, teacher: t}", "needs info.rank_ratio"),
    ("{name: a, phase: A, repeat_of: b, seed: 2}", "repeat_of 'b' is not an earlier run"),
    ("{name: a, recipe: train}", "has no phase"),
    ("{name: a, phase: A, recipe: train, args: ['{nope}']}", "unknown placeholder"),
    ("{name: a, phase: A, recipe: distill, teacher: t, info: {rank_ratio: 0.5}}",
     "teacher 't' is not a run"),
])
def test_a_bad_run_list_is_refused_saying_what_is_wrong(tmp_path: Path, entry: str,
                                                        message: str) -> None:
    f = tmp_path / "runs.yaml"
    f.write_text(f"runs:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _plan(tmp_path, f)


def test_results_page_phases_come_from_the_run_list() -> None:
    from dlrmamba_core.research.results import _phase_a_order, _phase_letter

    assert _phase_a_order() == ["teacher", "student_scratch", "rgb", "thermal", "cnn"]
    assert _phase_letter(["cnn", "rgb"], 0) == "A"
    assert _phase_letter(["student_sad/finetune", "sweep_r050/distill"], 1) == "B"
    assert _phase_letter(["sad_no_svd/distill", "student_sad/finetune"], 2) == "C"
    assert _phase_letter(["teacher_p5", "fusion_mamba"], 3) == "S+V"
    assert _phase_letter(["student_p5/finetune"], 3) == "S"
    assert _phase_letter(["not_in_the_list"], 4) == "5"


def test_equal_step_runs_fix_their_epochs_and_do_not_fit_them_to_time(tmp_path: Path) -> None:
    """c_task_eq / c_sad_eq: the run list's overrides come after the recipe's arguments, so the
    distill command parses to 7 + 9 epochs without schedule fitting and a 6-minute budget a
    stage (argparse: last wins), where c_task keeps the recipe's fitted schedule."""
    from dlrmamba_core.cli import build_parser
    from dlrmamba_core.engine.cli import _train_config, config_from_args
    from dlrmamba_core.engine.config import DistillConfig

    runs = _plan(tmp_path)
    parser = build_parser()
    for name in ("c_task_eq", "c_sad_eq_seed3", "c_task"):
        run = runs[name]
        args = parser.parse_args([run.command, *run.args, "--out", str(tmp_path / name)])
        cfg, dcfg = _train_config(args), config_from_args(DistillConfig, args)
        fixed = name != "c_task"
        assert cfg.fit_to_time is not fixed
        assert (cfg.epochs, dcfg.finetune_epochs) == ((7, 9) if fixed else (2, 1)), name
        assert cfg.max_time_min == (6.0 if fixed else 0.5), name  # phase_b_min 1.0 / 2
    assert _value(runs["c_sad_eq"].args, "--teacher").endswith("teacher_long_cont/best.pt")
    assert "--weights" not in runs["c_sad_eq"].args  # SAD: the paper's weights
    assert _value(runs["c_task_eq"].args, "--weights") == "task=1,svd=0,state=0,feat=0"
    # SAD as a warm-up: the structural terms in the first 2 distillation epochs, c_sad's minutes
    warm = parser.parse_args([runs["c_sad_t2_seed2"].command, *runs["c_sad_t2_seed2"].args,
                              "--out", str(tmp_path / "w")])
    assert config_from_args(DistillConfig, warm).terms_epochs == 2
    assert _train_config(warm).fit_to_time and _train_config(warm).seed == 2
