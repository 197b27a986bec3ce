"""Live rosbag replay over rclpy, and a recorder of the detector's output.

``dlrmamba bag-play`` and ``python -m dlrmamba_ros.bag_player`` publish a rosbag2 with its
original timing (or ``--rate`` times faster), optionally with ``/clock``, so the real detector
node runs in the loop. Messages are published as the bag's CDR bytes, unchanged (stamps
included). With ``--record TOPIC --record-out DIR`` the same process subscribes to the node's
``Detection2DArray`` topic and writes what it receives to a rosbag2, plus the end-to-end latency
of every detection (publish of the pair's newest image -> reception of its detections).

The schedule and the bag I/O are in :mod:`dlrmamba_core.bag` (no rclpy); this module only moves
bytes over rclpy.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field
import importlib
import itertools
import json
from pathlib import Path
import sys
import threading
import time
from typing import Any

from dlrmamba_core.bag._player_args import add_arguments
from dlrmamba_core.bag.playback import bag_topics, header_stamp_ns, schedule
from dlrmamba_core.errors import BagError, DlrmambaError

# lifecycle_msgs/msg/Transition ids and lifecycle_msgs/msg/State ids.
_TRANSITION_CONFIGURE = 1
_TRANSITION_ACTIVATE = 3
_STATE_UNCONFIGURED = 1
_STATE_INACTIVE = 2
_STATE_ACTIVE = 3


@dataclass
class PlayReport:
    """What a replay did.

    Attributes:
        published: messages published per topic.
        duration_s: wall time of the replay itself (s).
        recorded: detection messages received (when recording).
        record_path: the rosbag2 the recording went to (or None).
        latency_ms: per received detection message, ms from the publish of the newest image
            with the detection's stamp to its reception (None where no image had the stamp).
        stamps: header stamps (ns) of the received detection messages, in arrival order.
        partial: the replay was interrupted (Ctrl-C) before the end of the bag.
        recorded_masks: instance-mask images received (``record_masks``), in the recording
            beside the detections.
    """

    published: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    recorded: int = 0
    record_path: Path | None = None
    latency_ms: list[float | None] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    partial: bool = False
    recorded_masks: int = 0


def message_class(msgtype: str) -> Any:
    """The rclpy message class of ``pkg/msg/Name``.

    Raises:
        BagError: the message package is not importable in this environment.
    """
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"cannot publish {msgtype}: the Python package {pkg}.msg is not "
                       f"importable ({exc}); install the ROS 2 message package") from exc


def activate_lifecycle_node(node: Any, target: str, timeout_s: float = 20.0) -> None:
    """Bring the lifecycle node ``target`` to *active* (configure first if needed).

    Raises:
        DlrmambaError: its lifecycle services do not answer or a transition fails.
    """
    from lifecycle_msgs.srv import ChangeState, GetState

    target = target if target.startswith("/") else "/" + target
    get = node.create_client(GetState, f"{target}/get_state")
    change = node.create_client(ChangeState, f"{target}/change_state")
    deadline = time.monotonic() + timeout_s
    for cli in (get, change):
        while not cli.wait_for_service(timeout_sec=0.2):
            if time.monotonic() > deadline:
                raise DlrmambaError(f"lifecycle node {target} did not appear within "
                                    f"{timeout_s} s (no {cli.srv_name} service); is it running?")

    def call(cli: Any, req: Any) -> Any:
        fut = cli.call_async(req)
        while not fut.done():
            if time.monotonic() > deadline:
                raise DlrmambaError(f"{cli.srv_name} did not answer within {timeout_s} s")
            time.sleep(0.01)
        return fut.result()

    for _ in range(3):
        state = call(get, GetState.Request()).current_state.id
        if state == _STATE_ACTIVE:
            return
        tid = {_STATE_UNCONFIGURED: _TRANSITION_CONFIGURE,
               _STATE_INACTIVE: _TRANSITION_ACTIVATE}.get(state)
        if tid is None:
            raise DlrmambaError(f"lifecycle node {target} is in state {state}, cannot activate")
        req = ChangeState.Request()
        req.transition.id = tid
        if not call(change, req).success:
            raise DlrmambaError(f"lifecycle node {target}: transition {tid} failed; see its log")
    raise DlrmambaError(f"lifecycle node {target} did not reach the active state")


def play(
    bag: str | Path,
    rate: float = 1.0,
    clock: bool = False,
    topics: list[str] | None = None,
    record_topic: str | None = None,
    record_out: str | Path | None = None,
    record_masks: str | None = None,
    wait_subscribers: list[str] | None = None,
    activate: str | None = None,
    ready_timeout_s: float = 30.0,
    settle_s: float = 2.0,
    max_wait_s: float = 30.0,
    node_name: str = "dlrmamba_bag_player",
    progress: bool = False,
) -> PlayReport:
    """Publish a bag over rclpy (initializes and shuts down its own context).

    The steps: check the bag and its topics (:func:`_open_schedule`), start the player's node,
    create the publishers and the recorder's subscription, wait until the detector node is
    connected (:func:`_wait_until_connected`), publish on schedule (:func:`_publish`), wait for
    the last detections (:meth:`_Recorder.wait_until_settled`), stop the node, then write the
    recording (:func:`_finish_recording`).

    Args:
        bag: rosbag2 directory or .db3/.mcap file.
        rate: speed factor (1.0 = recorded timing).
        clock: also publish ``rosgraph_msgs/Clock`` with the bag's log time.
        topics: topics to publish (None = all).
        record_topic: a ``Detection2DArray`` topic to record while playing.
        record_out: rosbag2 directory for the recording (required with ``record_topic``).
        record_masks: also record this ``sensor_msgs/Image`` topic (the node's
            ``~/instance_masks``) into the same recording; needs ``record_topic``. The node
            decodes masks only while subscribed, so the player waits for its publisher.
        wait_subscribers: topics that must have a subscriber before playback starts.
        activate: name of a lifecycle node to configure + activate before playing.
        ready_timeout_s: how long to wait for subscribers / the recorded topic's publisher.
        settle_s: after the last message, stop once no detection arrived for this long (s).
        max_wait_s: upper bound of that wait (s).
        node_name: name of the player's node.
        progress: show a tqdm bar.

    Raises:
        BagError: bad bag or topics; DlrmambaError: the node did not come up.
    """
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    if record_topic and record_out is None:
        raise BagError("--record needs --record-out DIR for the recorded detections")
    if record_masks and not record_topic:
        raise BagError("--record-masks records beside the detections: give --record TOPIC "
                       "(the node's detections) and --record-out DIR too")
    all_topics, chosen, first, rest = _open_schedule(bag, topics, rate)
    report = PlayReport()
    recorder = _Recorder(first.log_ns, rate)
    interrupted = False

    own_context = not rclpy.ok()
    if own_context:
        # No rclpy signal handler: its SIGINT handler shuts the context down at once, so a
        # Ctrl-C landing inside publish() raised "context is invalid" instead of the
        # KeyboardInterrupt the loop turns into a closed, partial recording.
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(node_name)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        pubs, clock_pub = _create_publishers(node, all_topics, chosen, clock)
        if record_topic:
            recorder.subscribe(node, record_topic)
        if record_masks:
            recorder.subscribe_masks(node, record_masks)
        if activate:
            activate_lifecycle_node(node, activate, ready_timeout_s)
        _wait_until_connected(node, pubs, wait_subscribers or [],
                              [t for t in (record_topic, record_masks) if t],
                              ready_timeout_s)
        # A publisher sees its subscriber matched before the subscriber has always matched
        # the publisher (discovery finishes at each end on its own): a best-effort camera
        # subscription drops what arrives before that. Give both ends time to finish.
        time.sleep(1.0 if wait_subscribers or activate else 0.3)
        interrupted = _publish(first, rest, pubs, clock_pub, recorder, report, progress)
        if interrupted:  # Ctrl-C: still close and write what was recorded (partial)
            max_wait_s = min(max_wait_s, 2.0)
        if record_topic:
            recorder.wait_until_settled(max_wait_s, settle_s)
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        if own_context and rclpy.ok():
            rclpy.shutdown()
    if record_topic:
        assert record_out is not None
        report.partial = interrupted
        _finish_recording(recorder, report, record_topic, record_out, record_masks)
    if interrupted:
        raise KeyboardInterrupt("bag-play interrupted"
                                + (f"; partial recording in {report.record_path}"
                                   if report.record_path else ""))
    return report


def _open_schedule(bag: str | Path, topics: list[str] | None,
                   rate: float) -> tuple[dict[str, str], list[str], Any, Iterator[Any]]:
    """The bag's topics (name -> type), the chosen ones, the schedule's first item, the rest.

    The schedule is lazy: the bag is read while playing.

    Raises:
        BagError: a chosen topic is not in the bag, or it has nothing to play.
    """
    all_topics = bag_topics(bag)
    chosen = list(all_topics) if topics is None else list(topics)
    missing = [t for t in chosen if t not in all_topics]
    if missing:
        raise BagError(f"{bag}: topics {missing} are not in the bag; it has {sorted(all_topics)}")
    items = schedule(bag, chosen, rate)
    first = next(items, None)
    if first is None:
        raise BagError(f"{bag}: nothing to play (no messages on the selected topics)")
    return all_topics, chosen, first, items


def _create_publishers(node: Any, all_topics: dict[str, str], chosen: list[str],
                       clock: bool) -> tuple[dict[str, Any], Any]:
    """One reliable publisher per chosen topic (its bag message type), and ``/clock``."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    pubs = {t: node.create_publisher(message_class(all_topics[t]), t, qos) for t in chosen}
    clock_pub = node.create_publisher(Clock, "/clock", 10) if clock else None
    return pubs, clock_pub


def _wait_until_connected(node: Any, pubs: dict[str, Any], wait_subscribers: list[str],
                          record_topics: list[str], timeout_s: float) -> None:
    """Wait until each topic of ``wait_subscribers`` has a subscriber and someone publishes
    each topic to record (one deadline for all).

    Raises:
        BagError: a topic to wait for is not published by the player.
        DlrmambaError: not connected within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    for t in wait_subscribers:
        if t not in pubs:
            raise BagError(f"--wait-for {t}: the bag has no such topic to publish")
        while pubs[t].get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise DlrmambaError(f"nobody subscribed to {t} within {timeout_s} s; "
                                    "is the detector node running with that topic?")
            time.sleep(0.05)
    for topic in record_topics:
        while node.count_publishers(topic) == 0:
            if time.monotonic() > deadline:
                hint = ("is the detector node active?" if topic == record_topics[0] else
                        "the node publishes ~/instance_masks only with a segment model "
                        "(and instance_masks:=true)")
                raise DlrmambaError(f"nobody publishes {topic} within {timeout_s} s; {hint}")
            time.sleep(0.05)


def _publish(first: Any, rest: Iterator[Any], pubs: dict[str, Any], clock_pub: Any,
             recorder: _Recorder, report: PlayReport, progress: bool) -> bool:
    """Publish every scheduled message at its due time; True when a Ctrl-C stopped it.

    Counts what was published in ``report`` (and the replay's duration), and gives the
    recorder the publish time of each image (for the end-to-end latency).
    """
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="msg", desc="bag-play", leave=False)
    interrupted = False
    start_wall = recorder.start()
    try:
        for it in itertools.chain([first], rest):
            delay = start_wall + it.due_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if clock_pub is not None:
                clock_pub.publish(Clock(clock=Time(sec=it.log_ns // 1_000_000_000,
                                                   nanosec=it.log_ns % 1_000_000_000)))
            pubs[it.topic].publish(it.raw)
            if it.msgtype.startswith("sensor_msgs/msg/"):
                recorder.published(header_stamp_ns(it.raw), time.monotonic())
            report.published[it.topic] = report.published.get(it.topic, 0) + 1
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    if bar is not None:
        bar.close()
    report.duration_s = time.monotonic() - start_wall
    return interrupted


class _Recorder:
    """The detections received while playing, and the publish time of every image.

    ``received`` holds ``(log-time ns, raw CDR, wall receive s)``: the log time is where the
    message would sit on the bag's clock (first log time + elapsed wall time x rate).
    """

    def __init__(self, first_log_ns: int, rate: float) -> None:
        self.first_log_ns, self.rate = first_log_ns, rate
        self.start_wall = 0.0  # monotonic s when publishing started (0: not yet)
        self.received: list[tuple[int, bytes, float]] = []
        self.masks: list[tuple[int, bytes, float]] = []  # instance-mask Image messages
        self.publish_wall: dict[int, float] = {}  # image header stamp (ns) -> monotonic s
        self.lock = threading.Lock()  # received arrives on the executor's threads

    def subscribe(self, node: Any, topic: str) -> None:
        """Record the raw ``Detection2DArray`` messages of ``topic`` (reliable, depth 100)."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from vision_msgs.msg import Detection2DArray

        node.create_subscription(Detection2DArray, topic, self.on_detections,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
                                 raw=True)

    def subscribe_masks(self, node: Any, topic: str) -> None:
        """Record the raw ``sensor_msgs/Image`` messages of ``topic`` (reliable, depth 100)."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        node.create_subscription(Image, topic, self.on_mask,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
                                 raw=True)

    def _log_time(self, now: float) -> int:
        return (self.first_log_ns + int((now - self.start_wall) * self.rate * 1e9)
                if self.start_wall else 0)

    def on_detections(self, raw: bytes) -> None:
        now = time.monotonic()
        with self.lock:
            self.received.append((self._log_time(now), raw, now))

    def on_mask(self, raw: bytes) -> None:
        now = time.monotonic()
        with self.lock:
            self.masks.append((self._log_time(now), raw, now))

    def start(self) -> float:
        """Mark the start of publishing; returns it (monotonic s)."""
        self.start_wall = time.monotonic()
        return self.start_wall

    def published(self, stamp_ns: int, wall_s: float) -> None:
        with self.lock:
            self.publish_wall[stamp_ns] = wall_s

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_until_settled(self, max_wait_s: float, settle_s: float) -> None:
        """Return once no message arrived for ``settle_s`` (at most ``max_wait_s``)."""
        end = time.monotonic() + max_wait_s
        last_n, last_change = -1, time.monotonic()
        while time.monotonic() < end:
            n = self.count()
            if n != last_n:
                last_n, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > settle_s:
                break
            time.sleep(0.05)


def _finish_recording(recorder: _Recorder, report: PlayReport, topic: str,
                      out: str | Path, masks_topic: str | None = None) -> None:
    """Stamps and latencies of the received messages into ``report``; write the recording."""
    with recorder.lock:
        recs = list(recorder.received)
        masks = list(recorder.masks)
    for _, raw, wall in recs:
        stamp = header_stamp_ns(raw)
        report.stamps.append(stamp)
        pub = recorder.publish_wall.get(stamp)
        report.latency_ms.append(None if pub is None else round((wall - pub) * 1e3, 3))
    report.recorded = len(recs)
    report.recorded_masks = len(masks)
    report.record_path = write_recording(out, topic, recs, report,
                                         (masks_topic, masks) if masks_topic else None)


def write_recording(out: str | Path, topic: str, recs: list[tuple[int, bytes, float]],
                    report: PlayReport,
                    masks: tuple[str, list[tuple[int, bytes, float]]] | None = None) -> Path:
    """Write received ``Detection2DArray`` bytes (and ``masks``: a topic and its received
    ``sensor_msgs/Image`` bytes) to a rosbag2 (atomically) + latency JSON."""
    from rosbags.rosbag2 import Writer

    from dlrmamba_core.bag.messages import DETECTIONS, IMAGE
    from dlrmamba_core.bag.outdir import AtomicDir
    from dlrmamba_core.bag.typestore import get_bag_typestore

    target = AtomicDir(out, overwrite=True)
    writer = Writer(target.tmp / "bag", version=9)
    try:
        writer.open()
        conn = writer.add_connection(topic, DETECTIONS, typestore=get_bag_typestore())
        streams = [(conn, recs)]
        if masks is not None:
            streams.append((writer.add_connection(masks[0], IMAGE,
                                                  typestore=get_bag_typestore()), masks[1]))
        for c, items in streams:
            last = 0
            for log_ns, raw, _ in items:
                last = max(last, log_ns)  # log times must not go backwards
                writer.write(c, last, raw)
        writer.close()
        (target.tmp / "latency.json").write_text(json.dumps({
            "partial": report.partial, "topic": topic, "stamps_ns": report.stamps,
            "latency_ms": report.latency_ms,
            "published": report.published, "replay_duration_s": round(report.duration_s, 3),
        }, indent=1) + "\n")
    except BaseException:
        if writer.storage is not None:
            writer.abort()
        target.discard()
        raise
    return target.commit()


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``bag-play`` (shared with ``dlrmamba bag-play``)."""
    ap = argparse.ArgumentParser(prog="bag_player", description=__doc__.split("\n")[0])
    add_arguments(ap)
    return ap


def run(args: argparse.Namespace) -> int:
    """Handler for parsed arguments; prints a summary."""
    report = play(args.bag, rate=args.rate, clock=args.clock, topics=args.topics,
                  record_topic=args.record, record_out=args.record_out,
                  record_masks=args.record_masks,
                  wait_subscribers=args.wait_for, activate=args.activate,
                  ready_timeout_s=args.ready_timeout, progress=True)
    total = sum(report.published.values())
    print(f"published {total} messages in {report.duration_s:.2f} s: "
          + ", ".join(f"{t} {n}" for t, n in sorted(report.published.items())))
    if report.record_path is not None:
        print(f"recorded {report.recorded} messages on {args.record} -> {report.record_path}")
        if args.record_masks:
            print(f"recorded {report.recorded_masks} instance-mask images on "
                  f"{args.record_masks}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m dlrmamba_ros.bag_player BAG [--rate R] [--clock] ...``."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except DlrmambaError as exc:
        print(f"bag_player: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"bag_player: {exc or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
