"""`minildm grade`: scores of real notebooks, broken submissions, the merge rule, JSON/CSV reports."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
from pathlib import Path

import nbformat
import pytest

from minildm.course.exercises import solution_cell, student_version, test_cell
from minildm.course.grader import grade_notebook, merge_submission

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
                     "--json", str(root / "grades.json"), "--csv", str(root / "grades.csv")])
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
    assert graded_class["code"] == 1  # 07_unknown.ipynb has no solution
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
