"""Automatic grading of exercise notebooks (`minildm grade`).

How a submission is graded (the rules a student can rely on):

1. It is matched to the instructor's `solutions/NN_topic.ipynb` by file name (or, failing
   that, by its two-digit NN prefix). Every notebook and student folder that matches nothing
   is listed (`--strict` makes that an error). All instructor notebooks are read into memory
   before any submission runs and never read from disk again.
2. Merge. The student's notebook is the skeleton, so their own extra cells stay. Every test
   cell in it (a cell whose nbgrader metadata says ``grade: true``) is thrown away and the
   instructor's copy from solutions/, hidden tests included, is put in its place. A test
   cell the student deleted is inserted right after the cell holding the nearest graded
   cell before it in the instructor's notebook (or at the end when there is none). So an
   edited, emptied or deleted test counts exactly as the instructor wrote it, and only
   the instructor's grade_ids and points exist. Solution cells are the student's own.
3. Run. The merged notebook runs top to bottom, errors allowed, in a fresh kernel started
   from the grader's own interpreter (``sys.executable -m ipykernel_launcher``), in a
   temporary copy of the submission's folder that also holds HOME and TMPDIR, with a minimal
   environment and MINILDM_FAST=1 by default. A file or folder of the submission that would
   shadow an installed package (``minildm/``, ``torch.py``) is not copied. A cell that runs
   past the timeout or kills the kernel (``os._exit``, a segfault, ``exit()``) is skipped: the
   kernel is restarted and the cells before it are run again, so only what depends on the
   broken cell is lost. After `max_restarts` restarts the remaining cells are not run.
4. Guard (minildm/course/guard.py). Before the first cell the kernel checks that minildm
   imports from the installed package (grading stops with an error otherwise), and replaces
   the minildm functions the exercises teach by stubs that raise "implement this yourself"
   when student code calls them. Reading the instructor's files, writing outside the
   temporary folder and starting programs are refused. Before and after each test cell the
   grader checks that torch, NumPy, minildm, the assertion helpers and IPython's execution
   machinery (input transformers, hooks) are as they were; a change is undone and counts as
   tampering: that test and every later one score 0, with a note.
5. Score. A test cell earns its points when it ran, raised no error and no tampering was
   found; else 0. A failed test's note gives the failing line and the first line of its
   error, or only "a hidden test failed" when the line is in a hidden-test region.

This makes cheating visible and protects the course files and other submissions from
ordinary notebook code; it is not a sandbox: a notebook runs arbitrary code on the grading
machine. Grade untrusted work inside a container or as a separate user (README, "Grading").
"""

from __future__ import annotations

import ast
import copy
import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from minildm.course.exercises import (BEGIN_HIDDEN, END_HIDDEN, NOTEBOOK_PATTERN, cell_kind,
                                      validate_solution_notebook)

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


class GradingError(RuntimeError):
    """Grading cannot go on (the kernel cannot import minildm, ...); the message says what to fix."""


@dataclass
class Submissions:
    """What `find_submissions` found: (student, notebook) pairs to grade and what it had to skip."""

    found: list[tuple[str, Path]]
    skipped: list[str]


def _notebooks_below(folder: Path) -> list[Path]:
    """Every .ipynb under `folder`, skipping hidden folders and checkpoints."""
    return sorted(p for p in folder.rglob("*.ipynb")
                  if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def find_submissions(paths: list[str | Path]) -> Submissions:
    """The submissions under `paths`, and every notebook or student folder that cannot be graded.

    A path may be a notebook (student = its folder's name), a student's folder of NN_topic.ipynb
    notebooks (student = folder name), or a class folder whose subfolders are student folders.
    Notebooks named otherwise ("Copy of 05_...", "5_ddpm.ipynb") or nested deeper, and student
    folders holding no NN_topic.ipynb notebook, are listed in `skipped` with the reason.
    """
    found: list[tuple[str, Path]] = []
    skipped: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            if path.suffix != ".ipynb":
                raise ValueError(f"{str(path)!r} is not a notebook; pass .ipynb files or folders of them")
            if not path.match(NOTEBOOK_PATTERN):
                skipped.append(f"{path}: the name does not start with a two-digit notebook number and '_' "
                               "(like 05_ddpm_from_scratch.ipynb)")
                continue
            found.append((path.resolve().parent.name, path))
        elif path.is_dir():
            own = [(path.resolve().name, nb) for nb in sorted(path.glob(NOTEBOOK_PATTERN))]
            students = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            found += own
            for sub in students:
                theirs = [(sub.name, nb) for nb in sorted(sub.glob(NOTEBOOK_PATTERN))]
                if not theirs and not own:
                    skipped.append(f"{sub}: no NN_topic.ipynb notebook directly in this folder")
                found += theirs
            graded = {nb for _, nb in found}
            for notebook in _notebooks_below(path):
                if notebook not in graded:
                    reason = ("the name does not start with a two-digit notebook number and '_'"
                              if not notebook.match(NOTEBOOK_PATTERN) else "it is nested too deep")
                    skipped.append(f"{notebook}: not graded: {reason} (put NN_topic.ipynb notebooks in "
                                   "the student's folder)")
        else:
            raise FileNotFoundError(f"{str(path)!r} does not exist; pass notebooks or folders of student folders")
    return Submissions(found, skipped)


def match_solution(submission: Path, solutions: dict[str, NotebookNode] | str | Path) -> str | None:
    """The instructor notebook name for `submission`: same file name, else the only one with its NN_ prefix."""
    names = sorted(solutions) if isinstance(solutions, dict) else [p.name for p in sorted(
        Path(solutions).glob(NOTEBOOK_PATTERN))]
    if submission.name in names:
        return submission.name
    prefix = submission.name[:3]
    candidates = [n for n in names if n.startswith(prefix)] if prefix[:2].isdigit() and prefix[2:] == "_" else []
    return candidates[0] if len(candidates) == 1 else None


def load_solutions(solutions_dir: str | Path) -> dict[str, NotebookNode]:
    """Every solutions_dir/NN_topic.ipynb, read and validated now (grading never reads them again)."""
    folder = Path(solutions_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"solutions folder {str(folder)!r} does not exist (use --solutions DIR)")
    notebooks = {}
    for path in sorted(folder.glob(NOTEBOOK_PATTERN)):
        notebook = nbformat.read(path, as_version=4)
        validate_solution_notebook(notebook, path)
        notebooks[path.name] = notebook
    return notebooks


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


def _test_imports(source: str) -> dict[str, str]:
    """{name bound: dotted name} for the import statements of a test cell (empty if it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:  # `import a.b` binds a; `import a.b as c` binds c to a.b
                top = alias.name.split(".")[0]
                names[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


@dataclass
class GuardPlan:
    """What the kernel guard needs to know about an instructor notebook (see minildm/course/guard.py)."""

    taught: list[str]  # minildm functions the exercises rebuild: stubbed while student code runs
    imports: list[str]  # what the tests import (dotted names): imported before student code
    bindings: dict[str, dict[str, str]]  # test grade_id -> {name: dotted name it imports}
    forbidden: list[str] = field(default_factory=list)  # folders the kernel may not read

    @classmethod
    def from_notebook(cls, instructor: NotebookNode, forbidden: list[str] | None = None) -> GuardPlan:
        """Taught references: minildm names a test imports that a solution cell defines."""
        defined: set[str] = set()
        for cell in instructor.cells:
            if cell_kind(cell) == "solution" and cell.cell_type == "code":
                defined |= set(re.findall(r"^\s*(?:def|class)\s+(\w+)", cell.source, flags=re.M))
        bindings = {_grade_id(c): _test_imports(c.source) for c in instructor.cells if cell_kind(c) == "test"}
        dotted = sorted({d for names in bindings.values() for d in names.values()})
        taught = [d for d in dotted if d.startswith("minildm.") and d.rpartition(".")[2] in defined]
        return cls(taught, dotted, bindings, list(forbidden or []))


def _kernel_env(fast: bool, root: Path) -> dict[str, str]:
    """A minimal environment: PATH, locale, thread counts and MINILDM_*; HOME and TMPDIR inside `root`."""
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("MINILDM_")}
    for name in ("home", "tmp"):
        (root / name).mkdir(exist_ok=True)
    env.update(HOME=str(root / "home"), TMPDIR=str(root / "tmp"), MPLCONFIGDIR=str(root / "home" / ".matplotlib"),
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1", MPLBACKEND="agg")
    if fast:
        env["MINILDM_FAST"] = "1"
    else:
        env.pop("MINILDM_FAST", None)
    return env


def _kernel_manager_class():
    """A kernel manager that starts `sys.executable -m ipykernel_launcher`, whatever kernelspecs say."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class GraderKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="minildm grader", language="python")

    return GraderKernelManager


def _kernel_eval(client, expression: str) -> dict:
    """Evaluate `expression` in the kernel as a user expression (no input transformers run on it)."""
    msg_id = client.kc.execute("", silent=True, store_history=False, user_expressions={"result": expression})
    reply = client.wait_for_reply(msg_id) or {}
    return reply.get("content", {}).get("user_expressions", {}).get("result", {"status": "error", "ename": "NoReply",
                                                                         "evalue": "no answer"})


def _guard_call(client, call: str) -> dict:
    """{"ok": bool, "new": [tampering]} from a guard function, or tampering if it did not answer."""
    result = _kernel_eval(client, f"__import__('minildm.course.guard', fromlist=['guard']).{call}")
    try:
        answer = json.loads(ast.literal_eval(result["data"]["text/plain"]))
        if isinstance(answer.get("ok"), bool) and isinstance(answer.get("new"), list):
            return answer
    except (KeyError, ValueError, SyntaxError, TypeError, AttributeError):
        pass
    return {"ok": False, "new": [f"the grading checks did not answer ({result.get('ename', 'no reply')})"]}


def run_notebook_robustly(nb: NotebookNode, workdir: Path, timeout: float, fast: bool = True,
                          max_restarts: int = 5, plan: GuardPlan | None = None,
                          root: Path | None = None) -> tuple[set[int], list[str]]:
    """Run `nb` in a fresh guarded kernel in `workdir`; return (indices of cells that count, notes).

    `root` (default `workdir`) holds HOME and TMPDIR; the notebook may write only inside it.

    A code cell counts when it ran without error; a test cell also needs clean guard checks
    before and after it (rule 4 above). A cell that times out or kills the kernel is skipped
    and the kernel restarted, replaying the cells before it (rule 3). Outputs land in `nb`.
    Raises GradingError when the kernel cannot start the guard (minildm does not import).
    """
    from nbclient import NotebookClient

    plan = plan or GuardPlan([], [], {})
    root = Path(root or workdir)
    config = json.dumps({"package_root": str(Path(__file__).resolve().parents[1]), "workdir": str(root),
                         "taught": plan.taught, "imports": plan.imports, "forbidden": plan.forbidden,
                         "bindings": plan.imports})
    skipped: set[int] = set()
    notes: list[str] = []
    env = _kernel_env(fast, root)
    while True:
        passed: set[int] = set()
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        replies: dict[int, str] = {}

        def record(cell: NotebookNode, cell_index: int, execute_reply: dict | None) -> None:
            replies[cell_index] = (execute_reply or {}).get("content", {}).get("status", "error")

        client = NotebookClient(nb, kernel_manager_class=_kernel_manager_class(), timeout=timeout,
                                allow_errors=True, record_timing=False, shutdown_kernel="immediate",
                                resources={"metadata": {"path": str(workdir)}}, on_cell_executed=record)
        broken: int | None = None
        try:
            with client.setup_kernel(env=env, stderr=subprocess.DEVNULL):  # kernel start-up chatter
                started = _kernel_eval(client, f"__import__('minildm.course.guard', fromlist=['guard'])"
                                               f".start({config!r})")
                if started.get("status") != "ok":
                    raise GradingError(
                        f"the grading kernel ({sys.executable} -m ipykernel_launcher) could not start the grading "
                        f"guard: {started.get('ename')}: {started.get('evalue')}; install minildm into this "
                        "interpreter (pip install -e .) and grade again")
                clean = True
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code" or index in skipped or not cell.source.strip():
                        continue
                    test = cell_kind(cell) == "test"
                    gid = _grade_id(cell)
                    if test:
                        before = _guard_call(client, f"before_test({cell.source!r})")
                        notes += [f"{gid}: tampering found before the test: {n}" for n in before["new"]]
                        clean = clean and before["ok"]
                    try:
                        client.execute_cell(cell, index)
                    except Exception as error:  # timeout, dead kernel, lost connection
                        broken = index
                        notes.append(f"{_label(cell, index)} {_describe(error)}; cell skipped, kernel restarted")
                        break
                    if test:
                        after = _guard_call(client, f"after_test({plan.bindings.get(gid, {})!r})")
                        notes += [f"{gid}: tampering found while the test ran: {n}" for n in after["new"]]
                        clean = clean and after["ok"]
                    errored = any(out.get("output_type") == "error" for out in cell.outputs)
                    if replies.get(index) == "ok" and not errored and (clean or not test):
                        passed.add(index)
        except GradingError:
            raise
        except Exception as error:  # the kernel would not start or shut down
            notes.append(f"kernel failure: {_describe(error)}")
        if broken is None:
            return passed, list(dict.fromkeys(notes))
        skipped.add(broken)
        if len(skipped) > max_restarts:
            notes[-1] = notes[-1].replace("kernel restarted", "too many restarts, later cells not run")
            return passed, list(dict.fromkeys(notes))


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


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_note(cell: NotebookNode) -> str | None:
    """Why a test cell failed: its failing line and the first line of the error; hidden lines masked."""
    error = next((out for out in cell.get("outputs", []) if out.get("output_type") == "error"), None)
    if error is None:
        return None
    gid, ename = _grade_id(cell), error.get("ename", "Error")
    message = next((line for line in str(error.get("evalue", "")).splitlines() if line.strip()), "")
    if ename == "ReferenceCallError":
        return f"{gid}: {message}"
    text = _ANSI.sub("", "\n".join(error.get("traceback", [])))
    found = re.search(rf"In\[{cell.get('execution_count')}\], line (\d+)", text)
    lines = cell.source.splitlines()
    line = int(found.group(1)) if found else None
    hidden, inside = set(), False
    for number, source_line in enumerate(lines, start=1):
        if source_line.strip() == BEGIN_HIDDEN:
            inside = True
        if inside:
            hidden.add(number)
        if source_line.strip() == END_HIDDEN:
            inside = False
    if line is None or line in hidden or line > len(lines):
        return f"{gid}: a hidden test failed ({ename})" if line in hidden else f"{gid}: {ename}: {message}".rstrip(": ")
    return f"{gid}: line {line} `{lines[line - 1].strip()}` raised {ename}" + (f": {message}" if message else "")


def _shadows_a_package(entry: Path) -> bool:
    """True for a top-level file or folder that `import` would pick instead of an installed package."""
    name = entry.stem if entry.suffix in (".py", ".pyc", ".so") else entry.name
    if entry.is_file() and entry.suffix not in (".py", ".pyc", ".so") or not name.isidentifier():
        return False
    return name == "minildm" or name in sys.stdlib_module_names or importlib.util.find_spec(name) is not None


def _copy_submission(folder: Path, workdir: Path) -> list[str]:
    """Copy a submission's folder, leaving out what would shadow an installed package; return notes."""
    left_out = [p.name for p in sorted(folder.iterdir()) if _shadows_a_package(p)]

    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = set(_COPY_IGNORE(directory, names))
        return skip | (set(left_out) if Path(directory) == folder else set())

    shutil.copytree(folder, workdir, ignore=ignore, symlinks=True)
    return [f"{name} was not copied: it would shadow the installed package of that name" for name in left_out]


def grade_notebook(submission: str | Path, solution: str | Path | NotebookNode | None, student: str = "",
                   timeout: float = 120, fast: bool = True, max_restarts: int = 5,
                   forbidden: list[str | Path] | None = None) -> NotebookGrade:
    """Grade one submitted notebook against the instructor's solution notebook (a path or one in memory).

    `solution=None` checks the notebook with its own visible tests (a student's handout has no
    solutions/). `forbidden`: folders the notebook may not read; a solution path adds its folder.
    """
    submission = Path(submission)
    forbidden = [str(Path(p).resolve()) for p in (forbidden or [])]
    try:
        student_nb = nbformat.read(submission, as_version=4)
    except Exception as error:  # not JSON, not a notebook
        student_nb, unreadable = None, f"could not read the notebook ({type(error).__name__}: {error}); scored 0"
    if solution is None:
        if student_nb is None:
            return NotebookGrade(str(submission), student, {}, [unreadable])
        instructor = copy.deepcopy(student_nb)
        points = validate_solution_notebook(instructor, submission, require_solutions=False)
    else:
        if isinstance(solution, NotebookNode):
            instructor = copy.deepcopy(solution)
        else:
            instructor = nbformat.read(solution, as_version=4)
            forbidden.append(str(Path(solution).resolve().parent))
        points = validate_solution_notebook(instructor, getattr(solution, "name", "solution notebook"))
    grade = NotebookGrade(str(submission), student, {gid: ItemScore(0.0, p) for gid, p in points.items()})
    if student_nb is None:
        grade.notes.append(unreadable)
        return grade
    merged = merge_submission(instructor, student_nb)
    folder = submission.resolve().parent
    plan = GuardPlan.from_notebook(instructor, forbidden=[*forbidden, str(folder)])
    with tempfile.TemporaryDirectory(prefix="minildm-grade-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp) / "work" / (folder.name or "submission")
        workdir.parent.mkdir()
        grade.notes += _copy_submission(folder, workdir)
        passed, notes = run_notebook_robustly(merged, workdir, timeout, fast, max_restarts, plan, Path(tmp))
        grade.notes += notes
    for index, cell in enumerate(merged.cells):
        gid = _grade_id(cell)
        if cell_kind(cell) == "test" and gid in grade.items:
            if index in passed:
                grade.items[gid].score = grade.items[gid].max_score
            elif (note := failure_note(cell)) is not None:
                grade.notes.append(note)
    return grade


def grade(paths: list[str | Path], solutions_dir: str | Path | None = "solutions", timeout: float = 120,
          fast: bool = True, max_restarts: int = 5,
          log: Callable[[str], None] | None = None) -> tuple[list[NotebookGrade], list[str]]:
    """Grade every submission under `paths`; return (grades, what could not be graded and why).

    The instructor notebooks are read once, before any submission runs; the kernel may not
    read the solutions folder nor the submitted folders (it works on a copy). With
    `solutions_dir=None` each notebook is checked with its own visible tests.
    """
    solutions = load_solutions(solutions_dir) if solutions_dir is not None else None
    submissions = find_submissions(paths)
    forbidden = [str(Path(p).resolve()) for p in paths]
    if solutions_dir is not None:
        forbidden.append(str(Path(solutions_dir).resolve()))
    grades, unmatched = [], list(submissions.skipped)
    for student, path in submissions.found:
        name = match_solution(path, solutions) if solutions is not None else path.name
        if name is None:
            unmatched.append(f"{path}: no notebook in {solutions_dir} matches its name")
            continue
        if log is not None:
            log(f"grading {path}" + (f" against {Path(solutions_dir) / name}" if solutions is not None else
                                     " with its own visible tests"))
        instructor = solutions[name] if solutions is not None else None
        grades.append(grade_notebook(path, instructor, student, timeout, fast, max_restarts, forbidden))
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
