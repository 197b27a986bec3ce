"""Build the vision_msgs interface package from tools/vision_msgs into a pip-only ROS 2 venv.

ROS 2 from PyPI wheels has no vision_msgs wheel. The wheels do carry rosidl's code generators,
so the interface package is generated and compiled here with cmake and installed into the venv
itself (then nothing is needed at run time: the venv is an ament prefix).

Idempotent: a stamp records a hash of the interface definition; an unchanged definition whose
module imports is not rebuilt.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
import shutil
import subprocess
import sys
import sysconfig

HERE = Path(__file__).resolve().parent
PKG = HERE / "vision_msgs"
# The wheels' exported CMake files name the include dirs of the machine that built them.
FOREIGN_PY_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"


def definition_hash(pkg: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(pkg.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(pkg).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def imports_ok(python: str) -> bool:
    code = "from vision_msgs.msg import Detection2DArray, LabelInfo; Detection2DArray()"
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def patch_wheel_cmake(venv: Path) -> int:
    """Rewrite foreign interpreter include paths in the wheels' CMake configs.

    Returns:
        The number of files changed.
    """
    import numpy

    py_inc = sysconfig.get_paths()["include"]
    np_inc = numpy.get_include()
    changed = 0
    for f in (venv / "share").glob("*/cmake/*.cmake"):
        text = f.read_text(errors="replace")
        if "/opt/python/" not in text:
            continue
        new = text
        # numpy's include dir under the foreign interpreter first (longer, more specific).
        marker = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/"
        while marker in new:
            start = new.index(marker)
            end = start + len(marker)
            # consume up to the end of the path token
            while end < len(new) and new[end] not in ' ;"\n)':
                end += 1
            new = new[:start] + np_inc + new[end:]
        new = new.replace(FOREIGN_PY_INCLUDE, py_inc)
        if new != text:
            f.write_text(new)
            changed += 1
    return changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--venv", type=Path, required=True)
    ap.add_argument("--pkg", type=Path, default=PKG, help="interface package source")
    ap.add_argument("--prefix", type=Path, default=None, help="install prefix (default: venv)")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = ap.parse_args()
    venv = args.venv.resolve()
    pkg = args.pkg.resolve()
    prefix = (args.prefix or venv).resolve()
    python = str(venv / "bin" / "python")
    stamp = prefix / ".vision_msgs.stamp"
    digest = definition_hash(pkg)
    if not args.force and stamp.exists() and stamp.read_text() == digest and imports_ok(python):
        print("    vision_msgs is up to date.")
        return 0
    cmake = shutil.which("cmake")
    if cmake is None:
        print("cmake not found: install cmake>=3.16 (apt install cmake).", file=sys.stderr)
        return 2
    n = patch_wheel_cmake(venv)
    print(f"    patched {n} CMake config file(s) of the ROS wheels for this interpreter.")
    build = prefix / ".vision_msgs_build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    log = build / "log.txt"
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env["AMENT_PREFIX_PATH"] = str(venv)
    env["CMAKE_PREFIX_PATH"] = str(venv)
    cmds = [
        [cmake, "-S", str(pkg), "-B", str(build / "b"), f"-DCMAKE_PREFIX_PATH={venv}",
         f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DPython3_EXECUTABLE={python}",
         "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release"],
        [cmake, "--build", str(build / "b"), "-j", str(os.cpu_count() or 2)],
        [cmake, "--install", str(build / "b")],
    ]
    print(f"    building vision_msgs with cmake (log: {log}) ...")
    with log.open("w") as fh:
        for cmd in cmds:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
            if r.returncode != 0:
                tail = log.read_text(errors="replace").splitlines()[-25:]
                print("\n".join(tail), file=sys.stderr)
                print(f"\ncmake step failed: {' '.join(cmd[:2])} (full log: {log})",
                      file=sys.stderr)
                return 1
    if prefix == venv and not imports_ok(python):
        print("vision_msgs was built but does not import from the venv; see " + str(log),
              file=sys.stderr)
        return 1
    stamp.write_text(digest)
    print("    vision_msgs built and installed into the venv.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
