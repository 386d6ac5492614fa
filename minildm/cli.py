"""The `minildm` command: demo, train, sample, eval, data, grade, course, convert.

Each subcommand's arguments and work live in one module with `add_arguments(parser)` and
`run(args)` (minildm/commands/, or next to the code they drive when that package needs nothing
above it: minildm/data/cli.py, minildm/course/cli.py, minildm/pretrained/cli.py); this file only
wires them up, importing lazily so `minildm --help` is instant.

The front door: bad input (an unknown model, sampler, dataset or config key, a missing file) ends
in ONE line on stderr naming what was wrong and what is accepted, with exit status 2. The
library says so by raising ValueError (ConfigError, CheckpointError, ...) or FileNotFoundError;
`--debug` (anywhere on the command line) shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, its add-arguments function, its run function, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str, str]] = {
    "demo": ("minildm.demo", "add_arguments", "run", "train the most complete pipeline end to end on shapes"),
    "train": ("minildm.commands.train", "add_arguments", "run", "train a model from a YAML config (key=value overrides)"),
    "sample": ("minildm.commands.sample", "add_arguments", "run", "draw images from a named or saved checkpoint"),
    "eval": ("minildm.commands.eval", "add_arguments", "run",
             "sample a model and score it: FD, KID, IS, precision/recall, density/coverage, memorization"),
    "data": ("minildm.data.cli", "add_arguments", "run", "list, show or download datasets"),
    "grade": ("minildm.course.cli", "add_grade_arguments", "run_grade", "grade student notebooks"),
    "course": ("minildm.course.cli", "add_course_arguments", "run_course", "instructor tools: build/check exercises/, release the handout"),
    "convert": ("minildm.pretrained.cli", "add_arguments", "run", "convert CompVis / diffusers weights"),
}
USAGE_ERRORS = (ValueError, FileNotFoundError)
"""What the library raises for bad input; anything else is a bug and keeps its traceback."""
DEBUG_FLAG = "--debug"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with `only`, import just that subcommand's module."""
    parser = argparse.ArgumentParser(
        prog="minildm", description="minildm: a course on Latent Diffusion Models (Rombach et al., 2022)."
    )
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the full traceback when a command fails")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, add_name, _, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            getattr(importlib.import_module(module), add_name)(sub)
    return parser


def one_line(error: BaseException) -> str:
    """The error's message on one line (a multi-line message joined with "; ")."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `minildm` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module, _, run_name, _ = SUBCOMMANDS[args.command]
    try:
        return int(getattr(importlib.import_module(module), run_name)(args) or 0)
    except USAGE_ERRORS as error:
        if debug:
            raise
        print(f"minildm {args.command}: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
