"""``dlrmamba models``: list the registered detector variants with params and GFLOPs."""

from __future__ import annotations

import argparse


def cmd_models(args: argparse.Namespace) -> int:
    """Print one line per variant: name, parameters, GFLOPs at the given input size."""
    from dlrmamba_core.errors import ConfigError
    from dlrmamba_core.models.config import list_variants, variant_description
    from dlrmamba_core.models.table import count

    h, w = args.input_hw
    if h % 32 or w % 32 or h <= 0 or w <= 0:
        raise ConfigError(f"--input-hw {h} {w}: both must be positive multiples of 32")
    names = list_variants() if not args.variant else args.variant
    unknown = [n for n in names if n not in list_variants()]
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; choose from {list_variants()}")
    print(f"{'variant':<16} {'params (M)':>10} {'GFLOPs':>8}  (input {w}x{h}, "
          f"{args.num_classes} classes)")
    for name in names:
        r = count(name, args.num_classes, (h, w))
        print(f"{name:<16} {r['params'] / 1e6:>10.3f} {r['gflops']:>8.2f}  "
              f"{variant_description(name)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``models`` to the ``dlrmamba`` command."""
    p = subparsers.add_parser("models", help="list model variants with params and GFLOPs")
    p.add_argument("variant", nargs="*", help="variants to show (default: all)")
    p.add_argument("--input-hw", type=int, nargs=2, default=(512, 640), metavar=("H", "W"),
                   help="network input height and width (multiples of 32)")
    p.add_argument("--num-classes", type=int, default=7)
    p.set_defaults(func=cmd_models)
