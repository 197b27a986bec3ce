"""Open a rosbag2 (directory with ``metadata.yaml``, or a bare ``.db3`` / ``.mcap`` file).

Every failure of the underlying reader becomes a :class:`BagError` that names the bag (and the
topic or message index where it applies) and says what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
import sqlite3
from typing import Any

from dlrmamba_core.bag.messages import deserialize
from dlrmamba_core.bag.typestore import get_bag_typestore
from dlrmamba_core.errors import BagError

STORAGES = ("sqlite3", "mcap")


@dataclass
class BagMessage:
    """One message of a bag.

    Attributes:
        topic: topic name.
        msgtype: ROS type name, e.g. ``sensor_msgs/msg/Image``.
        log_ns: the time the recorder logged it (ns), the bag's own ordering.
        raw: CDR bytes.
        index: index of the message within its topic (0-based).
    """

    topic: str
    msgtype: str
    log_ns: int
    raw: bytes
    index: int

    def decode(self) -> Any:
        """The message object (rosbags typestore class)."""
        return deserialize(self.raw, self.msgtype, f"topic {self.topic} message #{self.index}")


def _reader_errors() -> tuple[type[BaseException], ...]:
    from rosbags.rosbag2 import ReaderError

    # What a damaged bag raises from the storage plugins: rosbags' own ReaderError, sqlite's
    # DatabaseError (a corrupt or truncated .db3), OSError (unreadable file), and the low-level
    # parse errors of a truncated mcap stream.
    return (ReaderError, sqlite3.DatabaseError, OSError, EOFError, ValueError, KeyError,
            IndexError, AssertionError)


class BagReader:
    """A read-only rosbag2 with typed errors. Use as a context manager.

    Args:
        path: the bag directory, or a bare ``.db3`` / ``.mcap`` file.

    Raises:
        BagError: the bag is missing, of an unknown storage, corrupt or truncated.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader: Any = None
        self.topics: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.custom: dict[str, str] = {}
        self.storage = ""

    def __enter__(self) -> BagReader:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        from rosbags.rosbag2 import Reader

        p = self.path
        if not p.exists():
            raise BagError(f"bag {p} does not exist; give a rosbag2 directory or .db3/.mcap file")
        if p.is_dir() and not (p / "metadata.yaml").is_file():
            files = sorted(x.name for x in p.iterdir())
            raise BagError(
                f"{p} is not a rosbag2 directory: no metadata.yaml (it has: {files[:10]}); "
                "give the bag directory, or a .db3/.mcap file directly"
            )
        if p.is_file() and p.suffix not in (".db3", ".mcap"):
            raise BagError(
                f"{p}: unknown bag storage {p.suffix!r}; supported storages: {', '.join(STORAGES)}"
                " (a directory with metadata.yaml, or a .db3 / .mcap file)"
            )
        self.storage = _storage_of(p)
        try:
            reader = Reader(p)
            reader.open()
        except _reader_errors() as exc:
            text = str(exc)
            if "Storage plugin" in text and "not supported" in text:
                raise BagError(
                    f"{p}: unknown bag storage ({text}); supported storages: "
                    f"{', '.join(STORAGES)}"
                ) from exc
            raise BagError(
                f"{p}: cannot open the bag: corrupt or truncated, or not a rosbag2 "
                f"({type(exc).__name__}: {text}); re-record or re-copy it"
            ) from exc
        self._reader = reader
        store = get_bag_typestore()
        for conn in reader.connections:
            self.topics[conn.topic] = conn.msgtype
            self.counts[conn.topic] = self.counts.get(conn.topic, 0) + int(conn.msgcount)
            if conn.msgtype not in store.types and conn.msgdef.data:
                _register_from_bag(store, conn)
        meta_custom = getattr(getattr(reader, "storage", None), "metadata", None)
        custom = getattr(meta_custom, "custom", None)
        self.custom = dict(custom or {})

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close()

    def describe_topics(self) -> str:
        """``topic (type, N msgs)`` for every topic, for error messages."""
        if not self.topics:
            return "(the bag has no topics)"
        return ", ".join(f"{t} ({m}, {self.counts.get(t, 0)} msgs)"
                         for t, m in sorted(self.topics.items()))

    def require_topic(self, topic: str, allowed_types: Iterable[str] | None = None) -> str:
        """The type of ``topic``; raises when the bag lacks it or it has another type.

        Raises:
            BagError: naming the topic and listing the topics the bag has.
        """
        if topic not in self.topics:
            raise BagError(
                f"{self.path}: topic {topic!r} is not in the bag; it has: "
                f"{self.describe_topics()}"
            )
        msgtype = self.topics[topic]
        allowed = list(allowed_types or [])
        if allowed and msgtype not in allowed:
            raise BagError(
                f"{self.path}: topic {topic!r} has type {msgtype}, expected one of {allowed}"
            )
        return msgtype

    def messages(self, topics: Iterable[str]) -> Iterator[BagMessage]:
        """The messages of ``topics`` in log-time order.

        Raises:
            BagError: the storage fails while reading (corrupt or truncated data).
        """
        if self._reader is None:
            raise BagError(f"{self.path}: the bag is not open")
        wanted = set(topics)
        conns = [c for c in self._reader.connections if c.topic in wanted]
        index: dict[str, int] = {}
        it = self._reader.messages(connections=conns)
        while True:
            try:
                conn, log_ns, raw = next(it)
            except StopIteration:
                return
            except _reader_errors() as exc:
                raise BagError(
                    f"{self.path}: reading failed after {sum(index.values())} messages, the bag "
                    f"is corrupt or truncated ({type(exc).__name__}: {exc}); re-record or "
                    "re-copy it"
                ) from exc
            i = index.get(conn.topic, 0)
            index[conn.topic] = i + 1
            yield BagMessage(conn.topic, conn.msgtype, int(log_ns), bytes(raw), i)


def _storage_of(p: Path) -> str:
    if p.is_file():
        return "mcap" if p.suffix == ".mcap" else "sqlite3"
    meta = (p / "metadata.yaml").read_text(errors="replace")
    for line in meta.splitlines():
        if "storage_identifier" in line:
            return line.split(":", 1)[1].strip()
    return ""


def _register_from_bag(store: Any, conn: Any) -> None:
    """Register a message type the typestore lacks from the definition stored in the bag."""
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    fmt = getattr(conn.msgdef.format, "name", "MSG")
    try:
        if fmt == "IDL":
            types = get_types_from_idl(conn.msgdef.data)
        else:
            types = get_types_from_msg(conn.msgdef.data, conn.msgtype)
        store.register(types)
    except Exception as exc:  # any parse failure of foreign definition text
        raise BagError(
            f"topic {conn.topic}: the bag's definition of {conn.msgtype} cannot be parsed "
            f"({type(exc).__name__}: {exc})"
        ) from exc
