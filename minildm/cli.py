"""The `minildm` command: demo, train, sample, eval, data, grade, course, convert.

Each subcommand's arguments and work live next to the code they drive
(`minildm/train/cli.py`, `minildm/data/cli.py`, ...); this file only wires them up,
importing lazily so `minildm --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module with add_arguments/run, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str, str]] = {
    "demo": ("minildm.demo", "add_arguments", "run", "train the most complete pipeline end to end on shapes"),
    "train": ("minildm.train.cli", "add_arguments", "run", "train a model from a YAML config (key=value overrides)"),
    "sample": ("minildm.sample", "add_arguments", "run", "draw images from a named or saved checkpoint"),
    "data": ("minildm.data.cli", "add_arguments", "run", "list, show or download datasets"),
    "grade": ("minildm.course.cli", "add_grade_arguments", "run_grade", "grade student notebooks"),
    "course": ("minildm.course.cli", "add_course_arguments", "run_course", "instructor tools: build exercises/"),
    "convert": ("minildm.pretrained.cli", "add_arguments", "run", "convert CompVis / diffusers weights"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with `only`, import just that subcommand's module."""
    parser = argparse.ArgumentParser(
        prog="minildm", description="minildm: a course on Latent Diffusion Models (Rombach et al., 2022)."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, add_name, _, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            getattr(importlib.import_module(module), add_name)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `minildm` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module, _, run_name, _ = SUBCOMMANDS[args.command]
    return int(getattr(importlib.import_module(module), run_name)(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
