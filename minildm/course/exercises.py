"""Exercise notebooks generated from solution notebooks (`minildm course build`).

`solutions/NN_topic.ipynb` is the single source. An instructor marks

* answer cells with nbgrader metadata ``{"solution": true, "grade_id": ...}`` and wraps the
  answer in ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines;
* test cells with ``{"grade": true, "grade_id": ..., "points": N}``; they may hold
  ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` regions that students never see.

`build_exercises` writes `exercises/NN_topic.ipynb` with every solution region replaced by
``# YOUR CODE HERE`` + ``raise NotImplementedError(...)`` (same indentation), hidden tests
removed, outputs cleared, and complete nbgrader (schema 3) metadata, so a course that uses
nbgrader can take the notebooks as they are. The output is byte-for-byte deterministic.
`solution_cell` / `test_cell` build correctly marked cells for authors who write notebooks
with nbformat. `release` writes the student handout: the course without solutions/, tests/ or
benchmarks/, with exercises/ built fresh.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
NOT_IMPLEMENTED = 'raise NotImplementedError("replace this line with your code, then run the test cell below")'
HANDOUT = ("README.md", "Makefile", "pyproject.toml", "environment.yml", ".gitignore", "datasets/README.md",
           "minildm", "notebooks")
"""What `release` copies into the handout besides exercises/ (built fresh)."""
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
_KEPT_CELL_METADATA = ("tags",)


class ExerciseError(ValueError):
    """A solution notebook whose exercise markup is inconsistent (names notebook and cell)."""


def solution_cell(source: str, grade_id: str) -> NotebookNode:
    """A code cell holding an answer between ### BEGIN/END SOLUTION lines (authoring helper)."""
    cell = nbformat.v4.new_code_cell(source, id=grade_id)
    cell.metadata["nbgrader"] = _solution_metadata(grade_id)
    return cell


def test_cell(source: str, grade_id: str, points: float) -> NotebookNode:
    """A graded test cell worth `points` when it runs without error (authoring helper)."""
    cell = nbformat.v4.new_code_cell(source, id=grade_id)
    cell.metadata["nbgrader"] = _test_metadata(grade_id, points)
    return cell


test_cell.__test__ = False  # a notebook-authoring helper, not a pytest test


def _solution_metadata(grade_id: str) -> dict:
    return {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
            "solution": True, "task": False}


def _test_metadata(grade_id: str, points: float) -> dict:
    return {"grade": True, "grade_id": grade_id, "locked": True, "points": points,
            "schema_version": 3, "solution": False, "task": False}


def cell_kind(cell: NotebookNode) -> str:
    """'solution', 'test' or 'plain', read from the cell's nbgrader metadata."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if meta.get("grade"):
        return "test"
    if meta.get("solution"):
        return "solution"
    return "plain"


def _where(notebook: str | Path, index: int, cell: NotebookNode) -> str:
    first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"{notebook}, cell {index} ({cell.cell_type}, starting {first_line[:60]!r})"


def _marker_lines(source: str) -> list[tuple[int, str]]:
    """(line number, marker) for every marker line in `source`."""
    markers = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
    return [(n, line.strip()) for n, line in enumerate(source.splitlines()) if line.strip() in markers]


def _check_regions(source: str, begin: str, end: str, where: str) -> int:
    """Number of balanced, un-nested begin/end regions in `source`; raise ExerciseError otherwise."""
    depth, regions = 0, 0
    for n, marker in _marker_lines(source):
        if marker == begin:
            if depth:
                raise ExerciseError(f"{where}: {begin!r} on line {n + 1} opens a region inside another one")
            depth = 1
        elif marker == end:
            if not depth:
                raise ExerciseError(f"{where}: {end!r} on line {n + 1} has no matching {begin!r}")
            depth, regions = 0, regions + 1
    if depth:
        raise ExerciseError(f"{where}: {begin!r} is never closed by {end!r}")
    return regions


def validate_solution_notebook(nb: NotebookNode, name: str | Path, require_solutions: bool = True) -> dict[str, float]:
    """Check the exercise markup of a solution notebook; return {test grade_id: points}.

    Raises ExerciseError naming the notebook and cell for: markers in the wrong kind of cell,
    unbalanced or nested markers, a graded cell without a grade_id or positive points,
    a solution cell without a solution region (unless `require_solutions=False`, for an
    exercise notebook), and duplicate grade_ids.
    """
    seen: dict[str, int] = {}
    points: dict[str, float] = {}
    for index, cell in enumerate(nb.cells):
        where = _where(name, index, cell)
        kind = cell_kind(cell)
        meta = cell.get("metadata", {}).get("nbgrader", {})
        markers = {marker for _, marker in _marker_lines(cell.source)}
        if kind == "plain":
            if markers:
                raise ExerciseError(f"{where}: has {sorted(markers)} but no nbgrader metadata; mark it with "
                                    "minildm.course.solution_cell / test_cell (metadata.nbgrader)")
            continue
        if meta.get("grade") and meta.get("solution"):
            raise ExerciseError(f"{where}: a cell is either a solution cell or a test cell, not both")
        grade_id = meta.get("grade_id")
        if not isinstance(grade_id, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", grade_id):
            raise ExerciseError(f"{where}: graded cell needs metadata.nbgrader.grade_id made of letters, "
                                f"digits, '_' or '-', got {grade_id!r}")
        if grade_id in seen:
            raise ExerciseError(f"{where}: duplicate grade_id {grade_id!r} (also used by cell {seen[grade_id]})")
        seen[grade_id] = index
        if kind == "solution":
            if markers & {BEGIN_HIDDEN, END_HIDDEN}:
                raise ExerciseError(f"{where}: hidden-test markers belong in test cells, not solution cells")
            if _check_regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, where) == 0 and require_solutions:
                raise ExerciseError(f"{where}: solution cell has no {BEGIN_SOLUTION!r} ... {END_SOLUTION!r} region")
        else:
            if cell.cell_type != "code":
                raise ExerciseError(f"{where}: test cells must be code cells")
            if markers & {BEGIN_SOLUTION, END_SOLUTION}:
                raise ExerciseError(f"{where}: solution markers belong in solution cells, not test cells")
            _check_regions(cell.source, BEGIN_HIDDEN, END_HIDDEN, where)
            value = meta.get("points")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ExerciseError(f"{where}: test cell {grade_id!r} needs metadata.nbgrader.points, "
                                    f"a positive number, got {value!r}")
            points[grade_id] = float(value)
    return points


def strip_solution(source: str, cell_type: str = "code") -> str:
    """Replace each BEGIN/END SOLUTION region by a stub at the marker's indentation.

    Code: ``# YOUR CODE HERE`` + NOT_IMPLEMENTED; markdown: ``YOUR ANSWER HERE``.
    """
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN_SOLUTION:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if cell_type == "code":
                out += [f"{indent}# YOUR CODE HERE", f"{indent}{NOT_IMPLEMENTED}"]
            else:
                out.append(f"{indent}YOUR ANSWER HERE")
        elif stripped == END_SOLUTION:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def strip_hidden_tests(source: str) -> str:
    """Drop every BEGIN/END HIDDEN TESTS region, marker lines included."""
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN_HIDDEN:
            inside = True
        elif stripped == END_HIDDEN:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out).rstrip()


def student_version(nb: NotebookNode, name: str | Path = "notebook") -> NotebookNode:
    """The exercise notebook for solution notebook `nb` (validated; a new object, `nb` untouched)."""
    validate_solution_notebook(nb, name)
    cells = []
    for index, cell in enumerate(nb.cells):
        kind = cell_kind(cell)
        source = cell.source
        if kind == "solution":
            source = strip_solution(source, cell.cell_type)
        elif kind == "test":
            source = strip_hidden_tests(source)
        metadata = {key: cell.metadata[key] for key in _KEPT_CELL_METADATA if key in cell.metadata}
        grader = cell.metadata.get("nbgrader", {})
        if kind == "solution":
            metadata["nbgrader"] = _solution_metadata(grader["grade_id"])
        elif kind == "test":
            metadata["nbgrader"] = _test_metadata(grader["grade_id"], grader["points"])
            metadata.update(deletable=False, editable=False)  # JupyterLab honours these
        cell_id = cell.get("id") or f"cell-{index}"
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(source, id=cell_id, metadata=metadata)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(source, id=cell_id, metadata=metadata)
        else:
            new = nbformat.v4.new_raw_cell(source, id=cell_id, metadata=metadata)
        cells.append(new)
    metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    return nbformat.v4.new_notebook(cells=cells, metadata=metadata)


def notebook_bytes(nb: NotebookNode) -> bytes:
    """Stable serialisation: nbformat v4 JSON (sorted keys, indent 1) + newline, UTF-8."""
    return (nbformat.writes(nb, version=4) + "\n").encode("utf-8")


def solution_notebooks(solutions_dir: str | Path = "solutions") -> list[Path]:
    """The NN_*.ipynb notebooks of `solutions_dir`, sorted by name."""
    folder = Path(solutions_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"solutions folder {str(folder)!r} does not exist")
    return sorted(folder.glob(NOTEBOOK_PATTERN))


def build_exercises(solutions_dir: str | Path = "solutions", exercises_dir: str | Path = "exercises") -> list[Path]:
    """Write exercises_dir/NN_*.ipynb for every solutions_dir/NN_*.ipynb; return the written paths.

    Files are rewritten only when their bytes change; exercise notebooks whose solution
    notebook no longer exists are removed (exercises/ is generated, never edited by hand).
    """
    out_dir = Path(exercises_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source_path in solution_notebooks(solutions_dir):
        nb = nbformat.read(source_path, as_version=4)
        data = notebook_bytes(student_version(nb, source_path))
        target = out_dir / source_path.name
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
        written.append(target)
    for stale in sorted(set(out_dir.glob(NOTEBOOK_PATTERN)) - set(written)):
        stale.unlink()
    return written


def release(out: str | Path, solutions_dir: str | Path = "solutions", root: str | Path = ".") -> list[Path]:
    """Write the student handout to the new folder `out`; return the paths written at its top level.

    The handout is HANDOUT copied from the course folder `root` plus exercises/ built fresh from
    `solutions_dir`: no solutions, no hidden tests, no tests/ or benchmarks/ (which need them).
    Students grade themselves there with the visible tests (`minildm grade exercises/NN_...`).
    """
    import shutil

    out, root = Path(out), Path(root)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{str(out)!r} exists and is not an empty folder; release writes a new handout folder")
    missing = [name for name in HANDOUT if not (root / name).exists()]
    if missing:
        raise FileNotFoundError(f"{str(root)!r} is not the course folder: it has no {', '.join(missing)}")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints", "*.pyc")
    written = []
    for name in HANDOUT:
        source, target = root / name, out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
        written.append(out / Path(name).parts[0])
    build_exercises(solutions_dir, out / "exercises")
    for path in sorted((out / "exercises").glob(NOTEBOOK_PATTERN)):
        text = path.read_text(encoding="utf-8")
        if BEGIN_SOLUTION in text or BEGIN_HIDDEN in text:
            raise ExerciseError(f"{path} still holds solution or hidden-test markers; check {solutions_dir}")
    return sorted(set(written)) + [out / "exercises"]
