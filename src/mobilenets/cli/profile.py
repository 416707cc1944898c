"""`mobilenets profile`: parameters and multiply-adds of a zoo network, per layer and in total."""

from __future__ import annotations

import argparse
import json

from ..profile import Profile, profile
from ..recipes import resolution
from . import add_model_arguments, model_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `profile` and its arguments."""
    parser = subparsers.add_parser(
        "profile", help="count parameters and multiply-adds, per layer and in total",
        description="Count parameters (all, and without batch norm) and multiply-adds of convolutions and linear "
                    "layers for one image, as the papers' tables count them.")
    add_model_arguments(parser)
    parser.add_argument("--resolution", type=resolution, default=224, metavar="R", help="input size in pixels (224)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Profile the network the arguments describe; print the per-layer table and totals, or one JSON object."""
    result = profile(model_from_args(args), args.resolution)
    if args.json:
        print(json.dumps({"model": args.name, "width_mult": args.width, "num_classes": args.num_classes,
                          **result.to_dict()}))
    else:
        print(format_table(result, f"{args.name} α={args.width:g} {args.resolution}x{args.resolution}, "
                                   f"{args.num_classes} classes"))
    return 0


def format_table(result: Profile, title: str) -> str:
    """The per-layer rows as an aligned text table, then a totals line."""
    header = ("layer", "kind", "output shape", "params", "MAdds")
    rows = [(r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.madds:,}")
            for r in result.layers]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        padded = (c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    totals = (f"total: params {result.params:,} ({result.params / 1e6:.1f}M), "
              f"params without BN {result.params_no_bn:,} ({result.params_no_bn / 1e6:.1f}M), "
              f"MAdds {result.madds:,} ({result.madds / 1e6:.1f}M)")
    return "\n".join([title, line(header), "  ".join("-" * w for w in widths), *map(line, rows), totals])
