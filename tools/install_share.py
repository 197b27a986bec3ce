"""Make the virtual environment an ament prefix for dlrmamba_ros (like colcon --symlink-install).

pip's editable install does not install setup.py's data_files, and a venv holding ROS 2 wheels
has no AMENT_PREFIX_PATH. This script:

* registers ``dlrmamba_ros`` in ``<venv>/share/ament_index/resource_index/packages``;
* links ``<venv>/share/dlrmamba_ros/{package.xml,launch,config,models}`` to the checkout, so
  ``get_package_share_directory('dlrmamba_ros')`` sees edits without reinstalling;
* links ``<venv>/lib/dlrmamba_ros/detector_node`` to the console script (where ``ros2 run`` and
  launch_ros look for executables);
* adds a ``.pth`` file that puts the venv on ``AMENT_PREFIX_PATH`` for the venv's interpreter.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
import sysconfig

PKG = "dlrmamba_ros"
ROOT = Path(__file__).resolve().parent.parent


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        raise SystemExit(f"{link} is a real directory; remove it and run make install again")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--venv", type=Path, required=True)
    venv = ap.parse_args().venv.resolve()
    marker = venv / "share" / "ament_index" / "resource_index" / "packages" / PKG
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    share = venv / "share" / PKG
    share.mkdir(parents=True, exist_ok=True)
    for name in ("package.xml", "launch", "config", "models"):
        _link(ROOT / name, share / name)
    _link(venv / "bin" / "detector_node", venv / "lib" / PKG / "detector_node")
    site = Path(sysconfig.get_paths()["purelib"])
    pth = site / "dlrmamba_ament_prefix.pth"
    # One line of code, run by site.py at interpreter start-up (the .pth mechanism).
    pth.write_text(
        "import os; p = os.environ.get('AMENT_PREFIX_PATH', ''); "
        f"os.environ['AMENT_PREFIX_PATH'] = p if {str(venv)!r} in p.split(os.pathsep) "
        f"else os.pathsep.join(x for x in ({str(venv)!r}, p) if x)\n"
    )
    print(f"    {PKG} registered in the ament index of {venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
