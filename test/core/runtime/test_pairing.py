"""Tests of the message_filters-compatible RGB/thermal pairer."""

from __future__ import annotations

import itertools
import random
import threading

import pytest

from dlrmamba_core.errors import ConfigError, InputError
from dlrmamba_core.runtime.pairing import ApproximateTimePairer, Pair

MS = 1_000_000  # ns per ms


class ReferenceSync:
    """The ApproximateTimeSynchronizer rule written the way message_filters' Python code
    states it (queues as dicts, candidates within slop sorted by distance, a set fires when
    max - min < slop), independent of the pairer's implementation."""

    def __init__(self, queue_size: int, slop_ns: int, exact: bool) -> None:
        self.queues: list[dict[int, str]] = [{}, {}]
        self.queue_size = queue_size
        self.slop_ns = slop_ns
        self.exact = exact
        self.out: list[tuple[str, str]] = []

    def add(self, index: int, stamp: int, msg: str) -> None:
        q = self.queues[index]
        q[stamp] = msg
        while len(q) > self.queue_size:
            del q[min(q)]
        if self.exact:
            common = set(self.queues[0]) & set(self.queues[1])
            for t in sorted(common):
                self.out.append((self.queues[0].pop(t), self.queues[1].pop(t)))
            return
        others = [self.queues[1 - index]]
        cands = []
        for other in others:
            near = sorted(
                ((s, abs(s - stamp)) for s in other if abs(s - stamp) <= self.slop_ns),
                key=lambda x: x[1],
            )
            if not near:
                return
            cands.append([s for s, _ in near])
        for combo in itertools.product(*cands):
            vv = list(combo)
            vv.insert(index, stamp)
            if max(vv) - min(vv) < self.slop_ns and all(
                t in qq for qq, t in zip(self.queues, vv, strict=True)
            ):
                self.out.append((self.queues[0].pop(vv[0]), self.queues[1].pop(vv[1])))
                break


def _names(pairs: list[Pair]) -> list[tuple[str, str]]:
    return [(p.rgb, p.thermal) for p in pairs]


def test_pairs_within_slop_and_reports_signed_skew() -> None:
    p = ApproximateTimePairer(queue_size=5, slop_s=0.05)
    assert p.add("rgb", 1000 * MS, "r0") == []
    out = p.add("thermal", 1000 * MS - 7 * MS, "t0")
    assert len(out) == 1
    pair = out[0]
    assert (pair.rgb, pair.thermal) == ("r0", "t0")
    assert (pair.rgb_stamp_ns, pair.thermal_stamp_ns) == (1000 * MS, 993 * MS)
    assert pair.skew_ns == 7 * MS  # thermal older -> positive
    assert p.stats.last_skew_ns == 7 * MS
    assert p.pending("rgb") == 0 and p.pending("thermal") == 0


def test_slop_is_strict_like_message_filters() -> None:
    p = ApproximateTimePairer(queue_size=5, slop_s=0.05)
    p.add("rgb", 1000 * MS, "r0")
    assert p.add("thermal", 1050 * MS, "t_exactly_slop") == []
    assert _names(p.add("thermal", 1049 * MS, "t_inside")) == [("r0", "t_inside")]


def test_picks_the_closest_partner() -> None:
    p = ApproximateTimePairer(queue_size=5, slop_s=0.05)
    for t in (960, 990, 1030):
        p.add("thermal", t * MS, f"t{t}")
    assert _names(p.add("rgb", 1000 * MS, "r")) == [("r", "t990")]
    assert p.pending("thermal") == 2


def test_queue_overflow_evicts_oldest_and_counts_drops() -> None:
    p = ApproximateTimePairer(queue_size=3, slop_s=0.01)
    for i in range(5):
        p.add("rgb", (100 + i * 100) * MS, f"r{i}")
    assert p.stats.rgb.received == 5
    assert p.stats.rgb.dropped == 2
    assert p.pending("rgb") == 3
    # r0 was evicted: a thermal frame at its stamp finds nothing.
    assert p.add("thermal", 100 * MS, "t") == []
    # A message older than everything in a full queue is evicted at once and never pairs.
    p.add("thermal", 2 * MS, "t_old1")
    p.add("thermal", 1 * MS, "t_old2")
    assert p.add("thermal", 0, "t_oldest") == []
    assert p.stats.thermal.dropped == 1


def test_duplicate_stamp_replaces_and_counts() -> None:
    p = ApproximateTimePairer(queue_size=3, slop_s=0.01)
    p.add("rgb", 5 * MS, "first")
    p.add("rgb", 5 * MS, "second")
    assert p.stats.rgb.dropped == 1
    assert _names(p.add("thermal", 5 * MS, "t")) == [("second", "t")]


def test_exact_mode_needs_equal_stamps() -> None:
    p = ApproximateTimePairer(queue_size=4, exact=True)
    p.add("rgb", 10 * MS, "r")
    assert p.add("thermal", 10 * MS + 1, "t_off_by_1ns") == []
    assert _names(p.add("thermal", 10 * MS, "t")) == [("r", "t")]
    assert p.stats.last_skew_ns == 0


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_streams(seed: int, exact: bool) -> None:
    rng = random.Random(seed)
    queue_size = rng.choice([1, 2, 5, 10])
    slop_ms = rng.choice([5, 20, 50])
    rgb_period, th_period = rng.choice([(33, 111), (33, 33), (50, 40), (100, 33)])
    events: list[tuple[int, int, int, str]] = []  # (arrival, stream, stamp_ns, name)
    for k in range(120):
        stamp = k * rgb_period * MS + (0 if exact else rng.randint(0, 3 * MS))
        events.append((stamp + rng.randint(0, 60 * MS), 0, stamp, f"r{k}"))
    for k in range(int(120 * rgb_period / th_period)):
        base = k * th_period * MS
        stamp = base if exact else base + rng.randint(-8 * MS, 8 * MS)
        if exact and rng.random() < 0.5:  # some thermal frames share RGB stamps
            stamp = rng.randrange(0, 120) * rgb_period * MS
        if stamp >= 0:
            events.append((stamp + rng.randint(0, 60 * MS), 1, stamp, f"t{k}"))
    events.sort()
    ref = ReferenceSync(queue_size, slop_ms * MS, exact)
    ours = ApproximateTimePairer(queue_size=queue_size, slop_s=slop_ms / 1000, exact=exact)
    got: list[tuple[str, str]] = []
    for _, stream, stamp, name in events:
        ref.add(stream, stamp, name)
        got += _names(ours.add(("rgb", "thermal")[stream], stamp, name))
    assert got == ref.out
    assert len(got) > 0
    for name in ("rgb", "thermal"):
        st = ours.stats.stream(name)
        assert st.received == st.paired + st.dropped + ours.pending(name)
    assert ours.stats.rgb.paired == ours.stats.thermal.paired == len(got)


def test_thread_safe_counters() -> None:
    p = ApproximateTimePairer(queue_size=10, slop_s=0.002)
    n = 3000

    def feed(stream: str) -> None:
        for i in range(n):
            p.add(stream, i * MS, i)

    threads = [threading.Thread(target=feed, args=(s,)) for s in ("rgb", "thermal")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("rgb", "thermal"):
        st = p.stats.stream(name)
        assert st.received == n
        assert st.received == st.paired + st.dropped + p.pending(name)
    assert p.stats.rgb.paired > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"queue_size": 0}, "queue_size"),
        ({"queue_size": 2.5}, "queue_size"),
        ({"slop_s": 0.0}, "slop_s"),
        ({"slop_s": -1.0}, "slop_s"),
    ],
)
def test_rejects_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ApproximateTimePairer(**kwargs)


def test_exact_mode_ignores_slop() -> None:
    """slop_s plays no part in exact mode: 0 is accepted (approximate mode refuses it) and a
    slop of 1 s still pairs only equal stamps."""
    for slop in (0.0, 1.0):
        p = ApproximateTimePairer(queue_size=4, slop_s=slop, exact=True)
        p.add("rgb", 10 * MS, "r")
        assert p.add("thermal", 15 * MS, "t_5ms_off") == []
        assert _names(p.add("thermal", 10 * MS, "t")) == [("r", "t")]


@pytest.mark.parametrize(
    ("stream", "stamp", "match"),
    [("depth", 1, "unknown stream"), ("rgb", -5, "non-negative"), ("rgb", 1.5, "int")],
)
def test_rejects_bad_input(stream: str, stamp: object, match: str) -> None:
    p = ApproximateTimePairer()
    with pytest.raises(InputError, match=match):
        p.add(stream, stamp, None)  # type: ignore[arg-type]


def test_reset_clears_queues_keeps_counters() -> None:
    p = ApproximateTimePairer()
    p.add("rgb", 1, "r")
    p.reset()
    assert p.pending("rgb") == 0
    assert p.stats.rgb.received == 1
    assert p.add("thermal", 1, "t") == []


@pytest.mark.ros
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_matches_real_message_filters_where_installed(seed: int, exact: bool) -> None:
    """Where message_filters is importable (ROS installs), compare with the real thing."""
    message_filters = pytest.importorskip("message_filters")
    from std_msgs.msg import Header

    class Msg:
        def __init__(self, name: str, stamp_ns: int) -> None:
            self.name = name
            self.header = Header()
            self.header.stamp.sec, self.header.stamp.nanosec = divmod(stamp_ns, 10**9)

    rng = random.Random(100 + seed)
    queue_size, slop_ms = rng.choice([2, 5, 10]), rng.choice([10, 30, 50])
    events = []
    for k in range(150):
        stamp = 10**12 + k * 33 * MS + rng.randint(0, 0 if exact else 3 * MS)
        events.append((stamp + rng.randint(0, 50 * MS), 0, stamp, f"r{k}"))
    for k in range(110):
        stamp = 10**12 + k * 45 * MS + (0 if exact else rng.randint(-9 * MS, 9 * MS))
        if exact:
            stamp = 10**12 + rng.randrange(0, 150) * 33 * MS
        events.append((stamp + rng.randint(0, 50 * MS), 1, stamp, f"t{k}"))
    events.sort()
    inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
    if exact:
        sync = message_filters.TimeSynchronizer(inputs, queue_size)
    else:
        sync = message_filters.ApproximateTimeSynchronizer(inputs, queue_size, slop_ms / 1000)
    reference: list[tuple[str, str]] = []
    sync.registerCallback(lambda a, b: reference.append((a.name, b.name)))
    ours = ApproximateTimePairer(queue_size=queue_size, slop_s=slop_ms / 1000, exact=exact)
    got: list[tuple[str, str]] = []
    for _, stream, stamp, name in events:
        inputs[stream].signalMessage(Msg(name, stamp))
        got += _names(ours.add(("rgb", "thermal")[stream], stamp, name))
    assert got == reference
    assert len(got) > 0
