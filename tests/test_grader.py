"""`minildm grade`: scores of real notebooks, broken and cheating submissions, restarts, folder mode,
the student handout, the merge rule, JSON/CSV reports."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from minildm.course.exercises import solution_cell, student_version, test_cell
from minildm.course.grader import find_submissions, grade_notebook, merge_submission

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
TIMEOUT = 4  # seconds per cell for the toy class; every honest cell takes milliseconds


# ---------------------------------------------------------------- every real notebook

@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solution_scores_full_and_untouched_exercise_scores_zero(solution):
    full = grade_notebook(solution, solution, student="instructor")
    assert full.items, f"{solution.name} has no graded items"
    assert full.score == full.max_score > 0, (full.to_dict(), full.notes)
    exercise = ROOT / "exercises" / solution.name
    empty = grade_notebook(exercise, solution, student="untouched")
    assert empty.max_score == full.max_score
    assert {gid: item.score for gid, item in empty.items.items()} == {gid: 0.0 for gid in full.items}


# ---------------------------------------------------------------- a toy course and a class of broken submissions

def toy_solution() -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import math", id="setup"),
        solution_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION", "double"),
        test_cell("assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(-3) == -6\n### END HIDDEN TESTS",
                  "test_double", 2),
        solution_cell("def triple(x):\n    ### BEGIN SOLUTION\n    return 3 * x\n    ### END SOLUTION", "triple"),
        test_cell("assert triple(2) == 6", "test_triple", 1),
    ])


def _with_double(source: str):
    def edit(nb):
        nb.cells[1].source = source
    return edit


def _fake_bonus_item(nb):
    nb.cells.append(test_cell("pass", "bonus", 100))


def _edit_test(nb):
    nb.cells[1].source = "def double(x):\n    return 4"  # right on the visible test only
    nb.cells[2].source = "pass"


def _delete_tests(nb):
    del nb.cells[4], nb.cells[2]


SUBMISSIONS = {  # student -> (edit of the solution notebook, expected {grade_id: score})
    "good": (None, {"test_double": 2, "test_triple": 1}),
    "sys_exit": (_with_double("import sys\nsys.exit(3)"), {"test_double": 0, "test_triple": 1}),
    "os_exit": (_with_double("import os\nos._exit(1)"), {"test_double": 0, "test_triple": 1}),
    "endless_loop": (_with_double("while True:\n    try:\n        pass\n    except KeyboardInterrupt:\n        pass"),
                     {"test_double": 0, "test_triple": 1}),
    "deleter": (_with_double("import os\nfor name in os.listdir('.'):\n    os.remove(name)\n"
                             "def double(x):\n    return 2 * x"), {"test_double": 2, "test_triple": 1}),
    "edited_test": (_edit_test, {"test_double": 0, "test_triple": 1}),
    "deleted_tests": (_delete_tests, {"test_double": 2, "test_triple": 1}),
    "fake_item": (_fake_bonus_item, {"test_double": 2, "test_triple": 1}),
}


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """Grade a class of toy submissions once through the CLI; return (folder, json, csv rows, stdout)."""
    from minildm.cli import main

    root = tmp_path_factory.mktemp("course")
    solutions = root / "solutions"
    solutions.mkdir()
    solution = toy_solution()
    nbformat.write(solution, solutions / "00_toy.ipynb")
    klass = root / "class"
    for student, (edit, _) in SUBMISSIONS.items():
        nb = copy.deepcopy(solution)
        if edit is not None:
            edit(nb)
        (klass / student).mkdir(parents=True)
        (klass / student / "notes.txt").write_text("keep me")
        nbformat.write(nb, klass / student / "00_toy.ipynb")
    (klass / "untouched").mkdir()
    nbformat.write(student_version(solution), klass / "untouched" / "00_toy.ipynb")
    (klass / "garbage").mkdir()
    (klass / "garbage" / "00_toy.ipynb").write_text("this is not a notebook")
    (klass / "garbage" / "07_unknown.ipynb").write_text("{}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["grade", str(klass), "--solutions", str(solutions), "--timeout", str(TIMEOUT),
                     "--json", str(root / "grades.json"), "--csv", str(root / "grades.csv"), "--strict"])
    grades = json.loads((root / "grades.json").read_text())
    with open(root / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"code": code, "class": klass, "json": grades, "csv": rows, "stdout": out.getvalue()}


def _by_student(graded_class) -> dict[str, dict]:
    return {entry["student"]: entry for entry in graded_class["json"]}


@pytest.mark.parametrize("student", list(SUBMISSIONS))
def test_broken_submissions_score_what_still_works(graded_class, student):
    entry = _by_student(graded_class)[student]
    expected = SUBMISSIONS[student][1]
    assert {gid: item["score"] for gid, item in entry["items"].items()} == expected
    assert entry["score"] == sum(expected.values()) and entry["max_score"] == 3


def test_untouched_and_unreadable_submissions_score_zero(graded_class):
    grades = _by_student(graded_class)
    for student in ("untouched", "garbage"):
        assert grades[student]["score"] == 0 and grades[student]["max_score"] == 3
        assert all(item["score"] == 0 for item in grades[student]["items"].values())


def test_grading_never_touches_the_submitted_folder(graded_class):
    deleter = graded_class["class"] / "deleter"
    assert sorted(p.name for p in deleter.iterdir()) == ["00_toy.ipynb", "notes.txt"]


def test_unmatched_notebook_is_reported_not_graded(graded_class):
    assert graded_class["code"] == 1  # 07_unknown.ipynb has no solution, and --strict was given
    assert all(not entry["notebook"].endswith("07_unknown.ipynb") for entry in graded_class["json"])


def test_json_report_contract(graded_class):
    grades = graded_class["json"]
    assert isinstance(grades, list) and len(grades) == len(SUBMISSIONS) + 2
    for entry in grades:
        assert set(entry) == {"notebook", "student", "score", "max_score", "items"}
        assert isinstance(entry["notebook"], str) and entry["notebook"].endswith("00_toy.ipynb")
        assert list(entry["items"]) == ["test_double", "test_triple"]  # a student's fake item never counts
        for item in entry["items"].values():
            assert set(item) == {"score", "max_score"}
            assert all(isinstance(v, float) for v in item.values())
        assert entry["score"] == sum(item["score"] for item in entry["items"].values())


def test_csv_report_and_table(graded_class):
    rows = graded_class["csv"]
    assert list(rows[0]) == ["student", "notebook", "item", "score", "max_score"]
    totals = {row["student"]: float(row["score"]) for row in rows if row["item"] == "total"}
    assert totals == {entry["student"]: entry["score"] for entry in graded_class["json"]}
    table = graded_class["stdout"]
    assert "00_toy.ipynb" in table and "test_double" in table
    assert any(line.startswith("good ") and line.rstrip().endswith("3/3") for line in table.splitlines())


# ---------------------------------------------------------------- a class that cheats (exercise 01), graded in one run

EXERCISE = "01_autoencoders_and_vae.ipynb"
PROC_ARGS = ("import json, os, pathlib\n"
             "args = open(f'/proc/{os.getppid()}/cmdline').read().split('\\0')\n"
             "solutions = pathlib.Path(args[args.index('--solutions') + 1])\n"
             "klass = pathlib.Path(args[args.index('grade') + 1])\n")
FROM_SOLUTIONS = ("def {name}(*args, **kwargs):  # the instructor's code, found through the grader's command line\n"
                  "    import json, os, pathlib, torch\n"
                  "    args_ = open(f'/proc/{{os.getppid()}}/cmdline').read().split('\\0')\n"
                  "    path = pathlib.Path(args_[args_.index('--solutions') + 1], '" + EXERCISE + "')\n"
                  "    cells = json.loads(path.read_text())['cells']\n"
                  "    namespace = {{'torch': torch}}\n"
                  "    exec(next(''.join(c['source']) for c in cells if 'def {name}' in ''.join(c['source'])), namespace)\n"
                  "    return namespace['{name}'](*args, **kwargs)")
WRONG = {"reparameterize": "def reparameterize(mean, logvar, generator=None):\n    return mean",
         "kl_divergence": "def kl_divergence(mean, logvar):\n    return mean.flatten(1).sum(1)"}
SHADOW = {  # a minildm/ folder next to the notebook in which every wrong answer is right
    "minildm/__init__.py": "",
    "minildm/course/__init__.py": "def assert_close(*args, **kwargs):\n    pass\n\n"
                                  "def setup_notebook(seed=0):\n    return 'cpu'\n",
    "minildm/autoencoder/__init__.py": WRONG["reparameterize"] + "\n\n" + WRONG["kl_divergence"] + "\n",
}
CHEATS = {  # student -> (answers {function: source}, cells run after the setup cell, files beside the notebook)
    "a_writer": ({name: FROM_SOLUTIONS.format(name=name) for name in WRONG}, [
        PROC_ARGS + "for path in solutions.glob('*.ipynb'):  # later students' tests become `pass`\n"
        "    nb = json.loads(path.read_text())\n"
        "    for cell in nb['cells']:\n"
        "        if cell['metadata'].get('nbgrader', {}).get('grade'):\n"
        "            cell['source'] = 'pass'\n"
        "    path.write_text(json.dumps(nb))",
        PROC_ARGS + "(solutions / '" + EXERCISE + "').write_text('{}')",
        PROC_ARGS + "(klass / 'z_honest' / '" + EXERCISE + "').write_text('{}')",
        PROC_ARGS + "home = dict(v.split('=', 1) for v in open(f'/proc/{os.getppid()}/environ').read().split('\\0') if '=' in v)['HOME']\n"
        "startup = pathlib.Path(home, '.ipython', 'profile_default', 'startup')\n"
        "startup.mkdir(parents=True, exist_ok=True)\n"
        "(startup / 'cheat.py').write_text('import builtins')",
    ], {}),
    "b_importer": ({"reparameterize": "def reparameterize(mean, logvar, generator=None):\n"
                                      "    from minildm.autoencoder import reparameterize as ref\n"
                                      "    return ref(mean, logvar, generator)",
                    "kl_divergence": "def kl_divergence(mean, logvar):\n"
                                     "    import minildm.autoencoder.distributions as library\n"
                                     "    return library.kl_divergence(mean, logvar)"}, [], {}),
    "c_patcher": (WRONG, ["import torch\nimport minildm.course.notebooks\n\n"
                          "minildm.course.notebooks.assert_close = lambda *args, **kwargs: None\n"
                          "torch.allclose = torch.equal = lambda *args, **kwargs: True"], {}),
    "d_transformer": (WRONG, ["def neuter(lines):\n"
                              "    return ['pass\\n'] if lines and lines[0].startswith('# Test') else lines\n\n"
                              "get_ipython().input_transformers_cleanup.append(neuter)"], {}),
    "e_shadow": (WRONG, [], SHADOW),
    "f_rebinder": ({"reparameterize": "def reparameterize(mean, logvar, generator=None):\n"
                                      "    globals()['assert_close'] = lambda *args, **kwargs: None  # the test's own name\n"
                                      "    return mean",
                    "kl_divergence": WRONG["kl_divergence"].replace(
                        "    return", "    globals()['assert_close'] = lambda *args, **kwargs: None\n    return")}, [], {}),
}
HONEST = {  # student -> expected {grade_id: score}
    "y_partial": {"test_reparameterize_values": 2, "test_reparameterize_stats_grad": 2, "test_kl_values": 0,
                  "test_kl_cases": 0},
    "z_blank": {"test_reparameterize_values": 0, "test_reparameterize_stats_grad": 0, "test_kl_values": 0,
                "test_kl_cases": 0},
    "z_honest": {"test_reparameterize_values": 2, "test_reparameterize_stats_grad": 2, "test_kl_values": 2,
                 "test_kl_cases": 2},
}
PARTIAL_KL = ("def kl_divergence(mean, logvar):  # right for 4-D latents only\n"
              "    return (0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)).sum(dim=(1, 2, 3))")


def _answer(exercise: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The exercise with solution cells replaced by `answers` ({function name: cell source})."""
    nb = copy.deepcopy(exercise)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") in answers:
            cell.source = "import torch\n\n" + answers[meta["grade_id"]]
    return nb


@pytest.fixture(scope="module")
def cheating_class(tmp_path_factory):
    """Grade the cheats, then honest students, with one `minildm grade` process (its HOME a scratch folder)."""
    root = tmp_path_factory.mktemp("cheats")
    solutions, klass, home = root / "solutions", root / "class", root / "grader_home"
    solutions.mkdir(), home.mkdir()
    shutil.copy(ROOT / "solutions" / EXERCISE, solutions / EXERCISE)
    instructor = nbformat.read(solutions / EXERCISE, as_version=4)
    exercise = student_version(instructor)
    notebooks = {"z_blank": exercise, "z_honest": instructor,
                 "y_partial": _answer(instructor, {"kl_divergence": PARTIAL_KL})}
    for student, (answers, cells, files) in CHEATS.items():
        nb = _answer(exercise, answers)
        nb.cells[2:2] = [nbformat.v4.new_code_cell(source) for source in cells]
        notebooks[student] = nb
        for name, text in files.items():
            (klass / student / name).parent.mkdir(parents=True, exist_ok=True)
            (klass / student / name).write_text(text)
    for student, nb in notebooks.items():
        (klass / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, klass / student / EXERCISE)
    before = {p: p.read_bytes() for p in [solutions / EXERCISE, klass / "z_honest" / EXERCISE]}
    env = {**os.environ, "HOME": str(home), "MINILDM_FAST": "1"}
    run = subprocess.run([sys.executable, "-m", "minildm", "grade", str(klass), "--solutions", str(solutions),
                          "--timeout", "60", "--json", str(root / "grades.json")],
                         capture_output=True, text=True, env=env, timeout=900)
    grades = {entry["student"]: entry for entry in json.loads((root / "grades.json").read_text())}
    return {"run": run, "grades": grades, "before": before, "home": home}


class TestCheatingSubmissions:
    """Each trick scores 0 on every item it cheats; honest notebooks graded after the cheats keep their scores."""

    @pytest.mark.parametrize("student", list(CHEATS))
    def test_cheat_scores_zero(self, cheating_class, student):
        entry = cheating_class["grades"][student]
        assert entry["max_score"] == 8
        assert {gid: item["score"] for gid, item in entry["items"].items()} == dict.fromkeys(HONEST["z_honest"], 0.0)

    @pytest.mark.parametrize("student", list(HONEST))
    def test_honest_students_graded_after_the_cheats_keep_their_scores(self, cheating_class, student):
        entry = cheating_class["grades"][student]
        assert {gid: item["score"] for gid, item in entry["items"].items()} == HONEST[student]

    def test_instructor_files_other_students_and_home_untouched(self, cheating_class):
        for path, data in cheating_class["before"].items():
            assert path.read_bytes() == data, f"{path} was changed by a submission"
        assert not any(cheating_class["home"].rglob("cheat.py")), "a submission wrote into the grader's HOME"

    def test_notes_name_each_trick(self, cheating_class):
        notes = {student: " | ".join(line for line in cheating_class["run"].stdout.splitlines()
                                     if line.startswith(f"  note ({student})")) for student in CHEATS}
        assert "may not read" in notes["a_writer"] and "outside its own folder" in notes["a_writer"]
        assert "implement it yourself" in notes["b_importer"]
        assert "assert_close was replaced" in notes["c_patcher"] and "torch.allclose was replaced" in notes["c_patcher"]
        assert "input transformers" in notes["d_transformer"]
        assert "minildm was not copied" in notes["e_shadow"]
        assert "'assert_close'" in notes["f_rebinder"] and "rebound" in notes["f_rebinder"]

    def test_failed_tests_say_why_and_hide_hidden_tests(self, cheating_class):
        notes = [line for line in cheating_class["run"].stdout.splitlines() if line.startswith("  note (y_partial)")]
        assert any("test_kl_values: a hidden test failed" in line for line in notes), notes
        visible = [line for line in notes if "test_kl_cases: line" in line]
        assert visible and "raised" in visible[0], notes
        assert not any("(2, 10)" in line for line in notes)  # the hidden test's own message stays hidden


# ---------------------------------------------------------------- restarts, folder mode, handout

def _counting_course() -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_code_cell("import os", id="setup")]
    for name, value in [("one", 1), ("two", 2), ("three", 3)]:
        cells += [solution_cell(f"def {name}():\n    ### BEGIN SOLUTION\n    return {value}\n    ### END SOLUTION", name),
                  test_cell(f"assert {name}() == {value}", f"test_{name}", 1)]
    return nbformat.v4.new_notebook(cells=cells)


@pytest.mark.parametrize("max_restarts, expected", [(1, {"test_one": 1, "test_two": 1, "test_three": 0}),
                                                     (2, {"test_one": 1, "test_two": 1, "test_three": 1})])
def test_max_restarts_is_the_number_of_restarts(tmp_path, max_restarts, expected):
    """Two cells kill the kernel: one restart gets past the first only, two get past both."""
    solution = _counting_course()
    submission = copy.deepcopy(solution)
    killer = "os._exit(1)  # kills the kernel"
    submission.cells.insert(5, nbformat.v4.new_code_cell(killer, id="kill-2"))
    submission.cells.insert(3, nbformat.v4.new_code_cell(killer, id="kill-1"))
    nbformat.write(submission, tmp_path / "00_count.ipynb")
    grade = grade_notebook(tmp_path / "00_count.ipynb", solution, timeout=TIMEOUT, max_restarts=max_restarts)
    assert {gid: item.score for gid, item in grade.items.items()} == expected, grade.notes
    assert sum("killed the kernel" in note for note in grade.notes) == 2
    assert any("too many restarts" in note for note in grade.notes) == (max_restarts == 1)


def test_grading_ignores_kernelspecs_and_uses_its_own_interpreter(tmp_path, monkeypatch):
    """A `python3` kernelspec that points nowhere changes nothing: the kernel is sys.executable."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["/no/such/python", "-f", "{connection_file}"],
                                                  "display_name": "broken", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    solution = toy_solution()
    nbformat.write(solution, tmp_path / "00_toy.ipynb")
    grade = grade_notebook(tmp_path / "00_toy.ipynb", solution, timeout=TIMEOUT)
    assert grade.score == grade.max_score == 3, grade.notes


def test_grading_stops_when_the_kernel_imports_another_minildm(tmp_path, monkeypatch):
    """The kernel's minildm must be the grader's; otherwise grading stops with an error, not zeros."""
    from minildm.cli import main
    from minildm.course import grader

    monkeypatch.setattr(grader, "__file__", str(tmp_path / "elsewhere" / "minildm" / "course" / "grader.py"))
    solution = toy_solution()
    (tmp_path / "solutions").mkdir()
    nbformat.write(solution, tmp_path / "solutions" / "00_toy.ipynb")
    nbformat.write(solution, tmp_path / "00_toy.ipynb")
    with pytest.raises(grader.GradingError, match="not from the installed package"):
        grade_notebook(tmp_path / "00_toy.ipynb", solution, timeout=TIMEOUT)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(["grade", str(tmp_path / "00_toy.ipynb"), "--solutions", str(tmp_path / "solutions")])
    assert status == 2 and "ipykernel_launcher" in err.getvalue() and "elsewhere" in err.getvalue()


def test_folder_mode_lists_what_it_cannot_match(tmp_path):
    klass = tmp_path / "class"
    for path in ["ann/00_toy.ipynb", "ann/Copy of 00_toy.ipynb", "bob/0_toy.ipynb", "bob/week1/00_toy.ipynb",
                 "cid/readme.txt"]:
        (klass / path).parent.mkdir(parents=True, exist_ok=True)
        (klass / path).write_text("{}")
    found = find_submissions([klass])
    assert [(student, path.name) for student, path in found.found] == [("ann", "00_toy.ipynb")]
    skipped = "\n".join(found.skipped)
    for name in ["Copy of 00_toy.ipynb", "0_toy.ipynb", "week1/00_toy.ipynb", "bob: no NN_topic", "cid: no NN_topic"]:
        assert name in skipped, (name, found.skipped)
    assert len(found.skipped) == 5


@pytest.mark.parametrize("strict, code", [(False, 0), (True, 1)])
def test_strict_exits_non_zero_when_something_was_left_out(tmp_path, strict, code):
    from minildm.cli import main

    solutions, klass = tmp_path / "solutions", tmp_path / "class"
    solutions.mkdir()
    nbformat.write(toy_solution(), solutions / "00_toy.ipynb")
    (klass / "ann").mkdir(parents=True)
    nbformat.write(toy_solution(), klass / "ann" / "00_toy.ipynb")
    (klass / "ann" / "Copy of 00_toy.ipynb").write_text("{}")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(["grade", str(klass), "--solutions", str(solutions), "--timeout", str(TIMEOUT),
                       *(["--strict"] if strict else [])])
    assert status == code
    assert "not graded" in err.getvalue() and "Copy of 00_toy.ipynb" in err.getvalue()


def test_release_writes_a_handout_without_solutions_that_grades_itself(tmp_path, monkeypatch):
    from minildm.cli import main

    out = tmp_path / "handout"
    monkeypatch.chdir(ROOT)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["course", "release", str(out)]) == 0
        assert main(["course", "release", str(out)]) == 2  # never writes into a folder that is not empty
    assert not (out / "solutions").exists() and not (out / "tests").exists()
    assert (out / "minildm" / "__init__.py").is_file() and (out / "README.md").is_file()
    assert sorted(p.name for p in (out / "exercises").glob("*.ipynb")) == sorted(
        p.name for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in (out / "notebooks").glob("*.ipynb")) == sorted(
        p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    for solution in SOLUTIONS:
        assert (out / "exercises" / solution.name).read_bytes() == (ROOT / "exercises" / solution.name).read_bytes()
        handout = "\n".join(c.source for c in nbformat.read(out / "exercises" / solution.name, as_version=4).cells)
        for cell in nbformat.read(solution, as_version=4).cells:  # no answer and no hidden test survives
            for region in re.findall(r"### BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)\n\s*### END", cell.source, re.S):
                assert region.strip() not in handout, (solution.name, region)
    monkeypatch.chdir(out)  # a student grades themselves in the handout: visible tests only
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()) as table, contextlib.redirect_stderr(err):
        assert main(["grade", "exercises/00_setup_and_tour.ipynb", "--timeout", "60"]) == 0
    assert "visible tests" in err.getvalue()
    assert "0/" in table.getvalue()


# ---------------------------------------------------------------- the merge rule, without a kernel

def test_merge_replaces_edited_tests_and_reinserts_deleted_ones():
    instructor = toy_solution()
    submission = copy.deepcopy(instructor)
    submission.cells[2].source = "pass"  # edited test
    del submission.cells[4]  # deleted test
    submission.cells.insert(2, nbformat.v4.new_code_cell("helper = 1", id="mine"))  # the student's own cell
    merged = merge_submission(instructor, submission)
    sources = [cell.source for cell in merged.cells]
    assert sources[:3] == ["import math", instructor.cells[1].source, "helper = 1"]
    assert sources[3] == instructor.cells[2].source  # instructor copy, hidden tests included
    assert sources[4:] == [instructor.cells[3].source, instructor.cells[4].source]  # re-inserted after 'triple'


def test_kernel_environment_is_minimal_and_lives_in_the_submission_copy(tmp_path, monkeypatch):
    from minildm.course.grader import _kernel_env

    monkeypatch.setenv("GRADER_SECRET_TOKEN", "s3cret")
    monkeypatch.setenv("MINILDM_FAST", "1")
    env = _kernel_env(fast=False, root=tmp_path)
    assert "GRADER_SECRET_TOKEN" not in env and "MINILDM_FAST" not in env
    assert env["HOME"] == str(tmp_path / "home") and env["TMPDIR"] == str(tmp_path / "tmp")
    assert (tmp_path / "home").is_dir() and (tmp_path / "tmp").is_dir()
    assert _kernel_env(fast=True, root=tmp_path)["MINILDM_FAST"] == "1"
