"""ament_python build for the ``dlrmamba_ros`` package (and the ``dlrmamba_core`` library).

Python dependencies are split by use so that a robot installs only the runtime:

* ``runtime`` (install_requires): what the node runs on a Raspberry Pi: numpy, OpenCV,
  onnxruntime, PyYAML. No torch.
* ``train``: the offline toolkit (training, distillation, export, evaluation).
* ``bag``: rosbag2 reading and writing.
* ``dev``: tests and linters.
"""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = "dlrmamba_ros"


def _tree(src: str) -> list[tuple[str, list[str]]]:
    """data_files entries installing every file under ``src`` into share/<pkg>/<src>."""
    out: list[tuple[str, list[str]]] = []
    for root, _dirs, files in os.walk(src):
        paths = [os.path.join(root, f) for f in files if not f.startswith(".")]
        if paths:
            out.append((os.path.join("share", PACKAGE, root), paths))
    return out


RUNTIME = [
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "onnxruntime>=1.17",
    "pyyaml>=6.0",
]
TRAIN = [
    # 2.13.0 is the CPU wheel on our machines: keep every range satisfied by it.
    "torch>=2.4,<2.14",
    "onnx>=1.16",
    "onnxscript>=0.1",
    "pycocotools>=2.0.7",
    "matplotlib>=3.7",
    "tqdm>=4.66",
    "tensorboard>=2.15",
    "albumentations>=1.4",
]
BAG = [
    "rosbags>=0.10",
    "rosbags-image[opencv-headless]>=0.10",
    "imageio>=2.31",
    "imageio-ffmpeg>=0.5",
    "tqdm>=4.66",
]
DEV = [
    "pytest>=8.0",
    "pytest-timeout>=2.2",
    "ruff>=0.5",
    "mypy>=1.10",
    "types-PyYAML",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["dlrmamba_core", "dlrmamba_core.*", PACKAGE, f"{PACKAGE}.*"]),
    package_data={"dlrmamba_core.research": ["runs.yaml"]},  # the research pipeline's run list
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        *_tree("models"),
    ],
    python_requires=">=3.10",
    install_requires=RUNTIME,
    extras_require={"train": TRAIN, "bag": BAG, "dev": DEV, "all": TRAIN + BAG + DEV},
    zip_safe=True,
    maintainer="dlrmamba team",
    maintainer_email="team@dlrmamba.dev",
    description="RGB + thermal low-rank Mamba object detector for ROS 2 at the edge.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"detector_node = {PACKAGE}.detector_node:main",
            "dlrmamba = dlrmamba_core.cli:main",
        ],
    },
)
