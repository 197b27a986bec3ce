"""The ``dlrmamba`` command: one entry point, one subcommand per task.

Each area of the library contributes its subcommands through a ``register(subparsers)``
function in its own ``cli`` module (listed in ``_AREAS``). Those modules import heavy
dependencies (torch, rosbags) inside the command handlers, so ``dlrmamba --help`` and the
runtime commands work on a robot without torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from dlrmamba_core import __version__
from dlrmamba_core.errors import DlrmambaError

# module path -> what it adds; a module that does not exist yet is skipped.
_AREAS = (
    "dlrmamba_core.data.cli",      # data gen | data show | data stats | data register
    "dlrmamba_core.models.cli",    # models (list variants, params, GFLOPs)
    "dlrmamba_core.engine.cli",    # train | distill | eval
    "dlrmamba_core.engine.finetune",  # finetune (a shipped or trained model on a few pairs)
    "dlrmamba_core.deploy.cli",    # export | quantize | bench (torch-side deployment tools)
    "dlrmamba_core.runtime.cli",   # detect (the torch-free robot path)
    "dlrmamba_core.bag.cli",       # synth-bag | bag-eval | bag-play | make-bag | bag-export
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlrmamba",
        description="RGB + thermal low-rank Mamba detector: data, training, export, runtime.",
    )
    parser.add_argument("--version", action="version", version=f"dlrmamba {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only tolerate the area module (or its package) being absent, never a missing
            # dependency inside it.
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise
            continue
        module.register(sub)
    return parser


def _stack_dumps_from_env() -> None:
    """``DLRMAMBA_STACK_DUMP_S=N``: print every thread's stack to stderr every N seconds.

    A diagnosis aid for a run that seems stuck (e.g. on a remote GPU machine without a
    debugger): the log then shows where each thread is waiting.
    """
    raw = os.environ.get("DLRMAMBA_STACK_DUMP_S")
    if not raw:
        return
    try:
        every = float(raw)
    except ValueError:
        print(f"dlrmamba: ignoring DLRMAMBA_STACK_DUMP_S={raw!r} (not a number of seconds)",
              file=sys.stderr)
        return
    if every > 0:
        import faulthandler

        faulthandler.dump_traceback_later(every, repeat=True, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _stack_dumps_from_env()
    try:
        rc = args.func(args)
    except DlrmambaError as exc:
        print(f"dlrmamba {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dlrmamba {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
