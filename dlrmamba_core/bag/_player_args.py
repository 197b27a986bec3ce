"""Arguments of ``bag-play`` (rclpy-free, so ``dlrmamba --help`` works without ROS)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Add the player's options to a parser."""
    ap.add_argument("bag", type=Path, help="rosbag2 directory or .db3/.mcap file")
    ap.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1.0)")
    ap.add_argument("--clock", action="store_true", help="also publish /clock (bag time)")
    ap.add_argument("--topics", nargs="+", default=None, help="topics to play (default: all)")
    ap.add_argument("--record", metavar="TOPIC", default=None,
                    help="record this Detection2DArray topic while playing")
    ap.add_argument("--record-out", metavar="DIR", type=Path, default=None,
                    help="where the recording goes (a rosbag2 dir + latency.json)")
    ap.add_argument("--record-masks", metavar="TOPIC", default=None,
                    help="also record this instance-mask Image topic (the node's "
                    "~/instance_masks with a segment model) into the same recording")
    ap.add_argument("--wait-for", nargs="+", default=None, metavar="TOPIC",
                    help="wait until these topics have a subscriber before playing")
    ap.add_argument("--activate", metavar="NODE", default=None,
                    help="configure + activate this lifecycle node first")
    ap.add_argument("--ready-timeout", type=float, default=30.0,
                    help="seconds to wait for subscribers / the node (default 30)")
