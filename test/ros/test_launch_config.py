"""config/detector.yaml, launch/detector.launch.py and the console entry point."""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "detector.launch.py"
CONFIG_FILE = REPO / "config" / "detector.yaml"
LAUNCH_ARGS = {"namespace", "rgb_topic", "thermal_topic", "compressed", "model", "params_file",
               "use_sim_time", "log_level", "autostart", "dds_profile"}


@pytest.mark.ros
def test_yaml_documents_every_parameter_with_its_default() -> None:
    from dlrmamba_ros.params import SPECS

    doc = yaml.safe_load(CONFIG_FILE.read_text())
    values = doc["/**"]["ros__parameters"]
    declared = {s.name: s.default for s in SPECS if s.default is not None}
    assert values == declared
    text = CONFIG_FILE.read_text()
    for spec in SPECS:  # optional ones appear commented out, with an example
        assert f"{spec.name}:" in text, spec.name


@pytest.mark.ros
def test_node_reads_the_params_file(ros_context) -> None:
    from dlrmamba_ros.detector_node import DetectorNode

    edited = yaml.safe_load(CONFIG_FILE.read_text())
    params = edited["/**"]["ros__parameters"]
    params.update(sync="exact", sync_slop_s=0.02, thermal_dropout_policy="rgb_only",
                  thermal_homography=[2.0, 0.0, 1.0, 0.0, 2.0, 3.0, 0.0, 0.0, 1.0])
    path = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"detector_{os.getpid()}.yaml"
    path.write_text(yaml.safe_dump(edited))
    node = DetectorNode(cli_args=["--ros-args", "--params-file", str(path)])
    try:
        for name, value in params.items():
            assert node.get_parameter(name).value == value, name
        assert node._homography is not None and node._homography[1, 2] == 3.0
    finally:
        node.destroy_node()
        path.unlink()


def _launch_ast() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), str(LAUNCH_FILE))


def test_launch_file_declares_described_arguments() -> None:
    """Checked without `launch` (not installable here): the ARGUMENTS table is complete."""
    tree = _launch_ast()
    table = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", "") == "ARGUMENTS")
    names, descriptions = set(), []
    for entry in table.elts:
        name, _default, text = entry.elts
        names.add(ast.literal_eval(name))
        descriptions.append(ast.literal_eval(text))
    assert names == LAUNCH_ARGS
    assert all(len(d) > 10 for d in descriptions)


def test_launch_file_has_no_side_effects() -> None:
    tree = _launch_ast()
    forbidden = {"system", "popen", "run", "call", "check_call", "check_output", "eval", "exec",
                 "remove", "unlink", "rmtree", "makedirs", "mkdir", "write_text", "open"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            assert name not in forbidden, f"line {node.lineno}: {name}()"
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
            assert not {"subprocess", "shutil", "os"} & set(mods), mods
    # Only one top-level function and constants: nothing runs at import.
    kinds = {type(n).__name__ for n in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Import", "Assign", "FunctionDef"}


@pytest.mark.launch
def test_launch_description_builds() -> None:
    pytest.importorskip("launch_ros", reason="ROS 2 `launch_ros` is not importable here")
    launch = pytest.importorskip("launch.actions")
    spec = importlib.util.spec_from_file_location("detector_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    args = {a.name: a for a in ld.entities if isinstance(a, launch.DeclareLaunchArgument)}
    assert set(args) == LAUNCH_ARGS
    assert all(a.description for a in args.values())


def _run_node(model: str, *extra: str) -> subprocess.Popen:
    ns = f"/main{os.getpid()}"
    cmd = [sys.executable, "-m", "dlrmamba_ros.detector_node", "--ros-args",
           "-r", f"__ns:={ns}", "-p", f"model:={model}", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO)


@pytest.mark.ros
def test_main_shuts_down_cleanly_on_sigint(nano_model: str) -> None:
    proc = _run_node(nano_model)
    lines = []
    try:
        for line in proc.stdout:  # blocks until the node logs that it is up
            lines.append(line)
            if "detector node ready" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + out
    assert "Traceback" not in out


@pytest.mark.ros
def test_main_rejects_bad_start_parameter(nano_model: str) -> None:
    proc = _run_node(nano_model, "-p", "thermal_homography:=[1.0, 2.0]")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "thermal_homography needs 9 floats" in out
    assert "Traceback" not in out


@pytest.mark.ros
def test_node_configures_without_importing_torch(nano_model: str) -> None:
    """The robot path (node + runtime Detector on ONNX) must not need torch."""
    code = (
        "import sys, rclpy\n"
        "from rclpy.lifecycle import TransitionCallbackReturn\n"
        "from rclpy.parameter import Parameter\n"
        "from dlrmamba_ros.detector_node import DetectorNode\n"
        "rclpy.init()\n"
        f"n = DetectorNode(parameter_overrides=[Parameter('model', value={nano_model!r})])\n"
        "assert n.trigger_configure() == TransitionCallbackReturn.SUCCESS\n"
        "n.close(); n.destroy_node(); rclpy.shutdown()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False", "the node path imported torch"


@pytest.mark.ros
def test_default_model_resolution(tmp_path: Path) -> None:
    from dlrmamba_core.errors import ModelFileError
    from dlrmamba_ros.detector_node import resolve_default_model

    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(ModelFileError, match=r"default\.json not found.*'model' parameter"):
        resolve_default_model(str(tmp_path))
    (models / "default.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="is not valid"):
        resolve_default_model(str(tmp_path))
    (models / "default.json").write_text('{"model": "student.onnx"}')
    with pytest.raises(ModelFileError, match=r"names 'student\.onnx' but .* does not exist"):
        resolve_default_model(str(tmp_path))
    (models / "student.onnx").write_bytes(b"onnx")
    assert resolve_default_model(str(tmp_path)) == str(models / "student.onnx")


@pytest.mark.launch
@pytest.mark.ros
def test_launch_configures_and_activates_the_node(nano_model: str, ros_context) -> None:
    """Run the launch file for real (where `launch_ros` exists): the node reaches *active*."""
    pytest.importorskip("launch_ros", reason="ROS 2 `launch_ros` is not importable here")
    from lifecycle_msgs.srv import GetState
    import rclpy

    ns = f"/launch{os.getpid()}"
    code = (
        "import sys\n"
        "from launch import LaunchService\n"
        "from launch.actions import IncludeLaunchDescription\n"
        "from launch.launch_description_sources import PythonLaunchDescriptionSource\n"
        "ls = LaunchService()\n"
        f"ls.include_launch_description(IncludeLaunchDescription(PythonLaunchDescriptionSource("
        f"{str(LAUNCH_FILE)!r}), launch_arguments={{'namespace': {ns!r}, "
        f"'model': {nano_model!r}, 'rgb_topic': 'rgb_in', 'thermal_topic': 'th_in'}}.items()))\n"
        "sys.exit(ls.run())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd="/")
    node = rclpy.create_node("launch_probe")
    try:
        client = node.create_client(GetState, f"{ns}/dlrmamba_detector/get_state")
        assert client.wait_for_service(timeout_sec=60), "the launched node never appeared"
        label = ""
        for _ in range(120):
            future = client.call_async(GetState.Request())
            rclpy.spin_until_future_complete(node, future, timeout_sec=5)
            label = future.result().current_state.label if future.result() else ""
            if label == "active":
                break
            time.sleep(0.25)
        assert label == "active"
        topics = dict(node.get_topic_names_and_types())
        assert f"{ns}/rgb_in" in topics and f"{ns}/th_in" in topics  # remapped inputs
    finally:
        node.destroy_node()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert "Traceback" not in out, out


def _start_launch(ns: str, model: str, noninteractive: bool = False,
                  **args: str) -> subprocess.Popen:
    launch_args = {"namespace": ns, "model": model, "rgb_topic": "rgb_in",
                   "thermal_topic": "th_in", **args}
    code = (
        "import sys\n"
        "from launch import LaunchService\n"
        "from launch.actions import IncludeLaunchDescription\n"
        "from launch.launch_description_sources import PythonLaunchDescriptionSource\n"
        f"ls = LaunchService(noninteractive={noninteractive!r})\n"
        f"ls.include_launch_description(IncludeLaunchDescription(PythonLaunchDescriptionSource("
        f"{str(LAUNCH_FILE)!r}), launch_arguments={launch_args!r}.items()))\n"
        "sys.exit(ls.run())\n"
    )
    # A session of its own: SIGINT to its process group is what Ctrl-C in a terminal does.
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd="/",
                            start_new_session=True)


def _lifecycle_clients(node, ns: str):
    from lifecycle_msgs.srv import ChangeState, GetState

    get = node.create_client(GetState, f"{ns}/dlrmamba_detector/get_state")
    change = node.create_client(ChangeState, f"{ns}/dlrmamba_detector/change_state")
    assert get.wait_for_service(timeout_sec=60), "the launched node never appeared"
    assert change.wait_for_service(timeout_sec=10)
    return get, change


def _call(node, client, request):
    import rclpy

    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=10)
    assert future.result() is not None, "service call timed out"
    return future.result()


def _state(node, get) -> str:
    from lifecycle_msgs.srv import GetState

    return _call(node, get, GetState.Request()).current_state.label


def _wait_state(node, get, label: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _state(node, get) == label:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.launch
@pytest.mark.ros
@pytest.mark.parametrize("how", ["ctrl_c_group", "pid_noninteractive"])
def test_launch_autostart_is_one_shot_and_sigint_stops_cleanly(nano_model: str, ros_context,
                                                               how: str) -> None:
    """cleanup -> configure -> activate by the user after autostart; then SIGINT stops the
    node without launch escalating to SIGTERM: Ctrl-C in a terminal (SIGINT to the process
    group), or SIGINT to the launch pid alone with a noninteractive launch (what
    ``ros2 launch`` is without a tty, e.g. under systemd). An interactive launch that alone
    gets SIGINT assumes the terminal signalled the node too and escalates after 5 s."""
    pytest.importorskip("launch_ros", reason="ROS 2 `launch_ros` is not importable here")
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    import rclpy

    ns = f"/oneshot{os.getpid()}"
    proc = _start_launch(ns, nano_model, noninteractive=how == "pid_noninteractive")
    node = rclpy.create_node("launch_probe_oneshot")
    out = ""
    try:
        get, change = _lifecycle_clients(node, ns)
        assert _wait_state(node, get, "active"), "autostart never reached active"
        for t in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                  Transition.TRANSITION_CONFIGURE):
            assert _call(node, change, ChangeState.Request(
                transition=Transition(id=t))).success, t
        time.sleep(2.0)  # a second autostart would activate within this time
        assert _state(node, get) == "inactive", "configure after cleanup auto-activated"
        assert _call(node, change, ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_ACTIVATE))).success
        assert _state(node, get) == "active"
    finally:
        node.destroy_node()
        t0 = time.monotonic()
        if how == "ctrl_c_group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        stop_s = time.monotonic() - t0
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "XMLPARSER" not in out, out  # the DDS profile loads
    assert "SIGTERM" not in out and "SIGKILL" not in out, out
    assert stop_s < 5.0, f"stop took {stop_s:.1f} s:\n{out}"
