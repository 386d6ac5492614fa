"""Automatic grading of exercise notebooks (`minildm grade`).

How a submission is graded (the rules a student can rely on):

1. It is matched to the instructor's `solutions/NN_topic.ipynb` by file name (or, failing
   that, by its two-digit NN prefix).
2. Merge. The student's notebook is the skeleton, so their own extra cells stay. Every test
   cell in it (a cell whose nbgrader metadata says ``grade: true``) is thrown away and the
   instructor's copy from solutions/, hidden tests included, is put in its place. A test
   cell the student deleted is inserted right after the cell holding the nearest graded
   cell before it in the instructor's notebook (or at the end when there is none). So an
   edited, emptied or deleted test counts exactly as the instructor wrote it, and only
   the instructor's grade_ids and points exist. Solution cells are the student's own.
3. Run. The merged notebook runs top to bottom in a fresh python3 kernel, errors allowed,
   in a temporary copy of the submission's folder (the kernel's working directory), with
   MINILDM_FAST=1 by default. A cell that runs past the timeout or kills the kernel
   (``os._exit``, a segfault, ``exit()``) is skipped: the kernel is restarted and the
   cells before it are run again, so only what depends on the broken cell is lost.
   After `max_restarts` restarts the remaining cells are not run (they score zero).
4. Score. A test cell earns its points when it ran and raised no error; else 0.

The temporary folder protects the course from a cell that deletes files in its working
directory; it is not a sandbox against deliberately malicious code.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from minildm.course.exercises import NOTEBOOK_PATTERN, cell_kind, validate_solution_notebook

_COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".ipynb_checkpoints")


@dataclass
class ItemScore:
    """Points earned on one graded test cell."""

    score: float
    max_score: float


@dataclass
class NotebookGrade:
    """The grade of one submitted notebook; `notes` say what went wrong while running it."""

    notebook: str
    student: str
    items: dict[str, ItemScore]
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return float(sum(item.score for item in self.items.values()))

    @property
    def max_score(self) -> float:
        return float(sum(item.max_score for item in self.items.values()))

    def to_dict(self) -> dict:
        """The JSON contract: notebook, student, score, max_score, items {grade_id: {score, max_score}}."""
        return {
            "notebook": self.notebook,
            "student": self.student,
            "score": self.score,
            "max_score": self.max_score,
            "items": {gid: {"score": item.score, "max_score": item.max_score} for gid, item in self.items.items()},
        }


def find_submissions(paths: list[str | Path]) -> list[tuple[str, Path]]:
    """(student, notebook path) for every submission under `paths`.

    A path may be a notebook (student = its folder's name), a student's folder of NN_*.ipynb
    notebooks (student = folder name), or a class folder whose subfolders are student folders.
    """
    found: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            if path.suffix != ".ipynb":
                raise ValueError(f"{str(path)!r} is not a notebook; pass .ipynb files or folders of them")
            found.append((path.resolve().parent.name, path))
        elif path.is_dir():
            found += [(path.resolve().name, nb) for nb in sorted(path.glob(NOTEBOOK_PATTERN))]
            for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
                found += [(sub.name, nb) for nb in sorted(sub.glob(NOTEBOOK_PATTERN))]
        else:
            raise FileNotFoundError(f"{str(path)!r} does not exist; pass notebooks or folders of student folders")
    return found


def match_solution(submission: Path, solutions_dir: str | Path) -> Path | None:
    """The instructor notebook for `submission`: same file name, else the same NN_ prefix."""
    folder = Path(solutions_dir)
    exact = folder / submission.name
    if exact.is_file():
        return exact
    prefix = submission.name[:3]
    candidates = sorted(folder.glob(f"{prefix}*.ipynb")) if prefix[:2].isdigit() and prefix[2:] == "_" else []
    return candidates[0] if len(candidates) == 1 else None


def _grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def merge_submission(instructor: NotebookNode, submission: NotebookNode) -> NotebookNode:
    """The notebook to run: the student's cells with the instructor's test cells (rule 2 above)."""
    tests = {_grade_id(c): c for c in instructor.cells if cell_kind(c) == "test"}
    merged: list[NotebookNode] = []
    for cell in submission.cells:
        if cell_kind(cell) == "test":
            gid = _grade_id(cell)
            if gid in tests and all(_grade_id(c) != gid for c in merged):
                merged.append(copy.deepcopy(tests[gid]))
            continue  # unknown or repeated test cells never count
        cell = copy.deepcopy(cell)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        merged.append(cell)

    def position(gid: str | None) -> int | None:
        return next((i for i, c in enumerate(merged) if gid is not None and _grade_id(c) == gid), None)

    anchor: int | None = None  # where the nearest earlier graded instructor cell sits in `merged`
    for cell in instructor.cells:
        gid = _grade_id(cell)
        if gid is None:
            continue
        at = position(gid)
        if at is None and cell_kind(cell) == "test":
            at = len(merged) if anchor is None else anchor + 1
            merged.insert(at, copy.deepcopy(cell))
        if at is not None:
            anchor = at
    result = copy.deepcopy(instructor)
    result.cells = merged
    return result


def _kernel_env(fast: bool) -> dict[str, str]:
    env = dict(os.environ)
    if fast:
        env["MINILDM_FAST"] = "1"
    else:
        env.pop("MINILDM_FAST", None)
    return env


def run_notebook_robustly(nb: NotebookNode, workdir: Path, timeout: float, fast: bool = True,
                          max_restarts: int = 5) -> tuple[set[int], list[str]]:
    """Run `nb` in a fresh kernel in `workdir`; return (indices of code cells that ran cleanly, notes).

    Errors are allowed; a cell that times out or kills the kernel is skipped and the kernel
    restarted, replaying the cells before it (rule 3 above). Outputs land in `nb`.
    """
    from nbclient import NotebookClient

    skipped: set[int] = set()
    notes: list[str] = []
    env = _kernel_env(fast)
    while True:
        passed: set[int] = set()
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        replies: dict[int, str] = {}

        def record(cell: NotebookNode, cell_index: int, execute_reply: dict | None) -> None:
            replies[cell_index] = (execute_reply or {}).get("content", {}).get("status", "error")

        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                record_timing=False, shutdown_kernel="immediate",
                                resources={"metadata": {"path": str(workdir)}}, on_cell_executed=record)
        broken: int | None = None
        try:
            with client.setup_kernel(env=env, stderr=subprocess.DEVNULL):  # kernel start-up chatter
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code" or index in skipped or not cell.source.strip():
                        continue
                    try:
                        client.execute_cell(cell, index)
                    except Exception as error:  # timeout, dead kernel, lost connection
                        broken = index
                        notes.append(f"{_label(cell, index)} {_describe(error)}; cell skipped, kernel restarted")
                        break
                    errored = any(out.get("output_type") == "error" for out in cell.outputs)
                    if replies.get(index) == "ok" and not errored:
                        passed.add(index)
        except Exception as error:  # the kernel would not start or shut down
            notes.append(f"kernel failure: {_describe(error)}")
        if broken is None:
            return passed, notes
        skipped.add(broken)
        if len(skipped) > max_restarts:
            notes[-1] = notes[-1].replace("kernel restarted", "too many restarts, later cells not run")
            return passed, notes


def _label(cell: NotebookNode, index: int) -> str:
    gid = _grade_id(cell)
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return f"cell {index} ({gid})" if gid else f"cell {index} ({first[:40]!r})"


def _describe(error: Exception) -> str:
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    if isinstance(error, CellTimeoutError):
        return "ran past the timeout"
    if isinstance(error, DeadKernelError):
        return "killed the kernel"
    return f"failed with {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def grade_notebook(submission: str | Path, solution: str | Path, student: str = "", timeout: float = 120,
                   fast: bool = True, max_restarts: int = 5) -> NotebookGrade:
    """Grade one submitted notebook against the instructor's solution notebook."""
    submission, solution = Path(submission), Path(solution)
    instructor = nbformat.read(solution, as_version=4)
    points = validate_solution_notebook(instructor, solution)
    grade = NotebookGrade(str(submission), student, {gid: ItemScore(0.0, p) for gid, p in points.items()})
    try:
        student_nb = nbformat.read(submission, as_version=4)
    except Exception as error:  # not JSON, not a notebook
        grade.notes.append(f"could not read the notebook ({type(error).__name__}: {error}); scored 0")
        return grade
    merged = merge_submission(instructor, student_nb)
    with tempfile.TemporaryDirectory(prefix="minildm-grade-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp) / (submission.resolve().parent.name or "work")
        shutil.copytree(submission.resolve().parent, workdir, ignore=_COPY_IGNORE, symlinks=True)
        passed, grade.notes = run_notebook_robustly(merged, workdir, timeout, fast, max_restarts)
    for index, cell in enumerate(merged.cells):
        gid = _grade_id(cell)
        if cell_kind(cell) == "test" and gid in grade.items and index in passed:
            grade.items[gid].score = grade.items[gid].max_score
    return grade


def grade(paths: list[str | Path], solutions_dir: str | Path = "solutions", timeout: float = 120,
          fast: bool = True, max_restarts: int = 5,
          log: Callable[[str], None] | None = None) -> tuple[list[NotebookGrade], list[str]]:
    """Grade every submission under `paths`; return (grades, submissions with no matching solution)."""
    if not Path(solutions_dir).is_dir():
        raise FileNotFoundError(f"solutions folder {str(solutions_dir)!r} does not exist (use --solutions DIR)")
    grades, unmatched = [], []
    for student, path in find_submissions(paths):
        solution = match_solution(path, solutions_dir)
        if solution is None:
            unmatched.append(str(path))
            continue
        if log is not None:
            log(f"grading {path} against {solution}")
        grades.append(grade_notebook(path, solution, student, timeout, fast, max_restarts))
    return grades, unmatched


def _number(value: float) -> str:
    return f"{value:g}"


def format_table(grades: list[NotebookGrade]) -> str:
    """One table per notebook: a row per student, a column per graded item, then the total."""
    blocks = []
    for name in sorted({Path(g.notebook).name for g in grades}):
        group = [g for g in grades if Path(g.notebook).name == name]
        items = list(group[0].items)
        header = ["student", *items, "total"]
        rows = [[g.student or Path(g.notebook).parent.name,
                 *(f"{_number(g.items[i].score)}/{_number(g.items[i].max_score)}" for i in items),
                 f"{_number(g.score)}/{_number(g.max_score)}"] for g in group]
        widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
        lines = [name, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        for g in group:
            lines += [f"  note ({g.student}): {note}" for note in g.notes]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_json(grades: list[NotebookGrade], path: str | Path) -> None:
    """The `--json` report: a list with one object per notebook (see NotebookGrade.to_dict)."""
    Path(path).write_text(json.dumps([g.to_dict() for g in grades], indent=2) + "\n", encoding="utf-8")


def write_csv(grades: list[NotebookGrade], path: str | Path) -> None:
    """The `--csv` report, long format: student, notebook, item, score, max_score; item 'total' sums a notebook."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "notebook", "item", "score", "max_score"])
        for g in grades:
            for gid, item in g.items.items():
                writer.writerow([g.student, g.notebook, gid, item.score, item.max_score])
            writer.writerow([g.student, g.notebook, "total", g.score, g.max_score])
