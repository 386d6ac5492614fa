"""Command-line pieces of the course: `minildm grade ...` and `minildm course build|check`."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def add_grade_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `minildm grade PATH... [--solutions DIR] [--timeout S] [--json F] [--csv F]`."""
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="submitted notebooks, a student's folder, or a folder of student folders")
    parser.add_argument("--solutions", default="solutions", metavar="DIR",
                        help="the instructor's solution notebooks (default: solutions)")
    parser.add_argument("--timeout", type=float, default=120, metavar="SECONDS",
                        help="time limit per cell (default: 120)")
    parser.add_argument("--json", metavar="FILE", help="write the grades as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write the grades as CSV (one row per item and total)")
    parser.add_argument("--no-fast", dest="fast", action="store_false",
                        help="grade in full mode (default: MINILDM_FAST=1 in the grading kernel)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a notebook or student folder could not be matched")


def run_grade(args: argparse.Namespace) -> int:
    """Grade, print the table, write the reports.

    Exit status 1 when nothing was graded, or (with --strict) when a notebook or folder was left
    out; 2 for bad arguments or a grading setup that cannot work. Without a solutions/ folder
    (a student's handout) each notebook is checked with its own visible tests.
    """
    from minildm.course.grader import GradingError, format_table, grade, write_csv, write_json

    if args.timeout <= 0:
        print(f"--timeout must be a positive number of seconds, got {args.timeout}", file=sys.stderr)
        return 2
    solutions = args.solutions
    if solutions == "solutions" and not Path(solutions).is_dir():
        print("minildm grade: no solutions/ folder here, so each notebook is checked with its own visible "
              "tests; the course grade also runs the instructor's hidden tests", file=sys.stderr)
        solutions = None
    try:
        grades, unmatched = grade(args.paths, solutions, timeout=args.timeout, fast=args.fast,
                                  log=lambda message: print(message, file=sys.stderr))
    except (FileNotFoundError, ValueError, GradingError) as error:
        print(f"minildm grade: {error}", file=sys.stderr)
        return 2
    for problem in unmatched:
        print(f"minildm grade: not graded: {problem}", file=sys.stderr)
    if grades:
        print(format_table(grades))
    else:
        print("minildm grade: nothing to grade", file=sys.stderr)
    if args.json:
        write_json(grades, args.json)
    if args.csv:
        write_csv(grades, args.csv)
    return 1 if not grades or (unmatched and args.strict) else 0


def add_course_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `minildm course build|check|release [OUT] [--solutions DIR] [--exercises DIR]`."""
    parser.add_argument("action", choices=["build", "check", "release"],
                        help="build: regenerate exercises/ from solutions/; check: fail if exercises/ is stale; "
                             "release OUT: write the student handout (no solutions, no hidden tests) to OUT")
    parser.add_argument("out", nargs="?", metavar="OUT", help="release: the new handout folder")
    parser.add_argument("--solutions", default="solutions", metavar="DIR", help="default: solutions")
    parser.add_argument("--exercises", default="exercises", metavar="DIR", help="default: exercises")


def run_course(args: argparse.Namespace) -> int:
    """Build exercises/ (0), check it equals a fresh build (0 if so, 1 if stale), or release a handout (0)."""
    from minildm.course.exercises import NOTEBOOK_PATTERN, ExerciseError, build_exercises, release

    try:
        if args.action == "release":
            if not args.out:
                print("minildm course: release needs the handout folder: minildm course release OUT", file=sys.stderr)
                return 2
            for path in release(args.out, args.solutions):
                print(f"wrote {path}")
            print(f"handout in {args.out}: exercises without solutions or hidden tests; students grade themselves "
                  "there with `minildm grade exercises/NN_topic.ipynb` (visible tests)")
            return 0
        if args.action == "build":
            for path in build_exercises(args.solutions, args.exercises):
                print(f"wrote {path}")
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            fresh = {p.name: p.read_bytes() for p in build_exercises(args.solutions, tmp)}
    except (ExerciseError, FileNotFoundError, FileExistsError) as error:
        print(f"minildm course: {error}", file=sys.stderr)
        return 2
    current = {p.name: p.read_bytes() for p in Path(args.exercises).glob(NOTEBOOK_PATTERN)}
    stale = sorted(name for name in fresh.keys() | current.keys() if fresh.get(name) != current.get(name))
    for name in stale:
        print(f"{Path(args.exercises) / name} differs from a fresh build; run `minildm course build`")
    return 1 if stale else 0
