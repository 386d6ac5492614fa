"""minildm.course: exercise generation, notebook helpers, the nbval sanitizer, run_notebooks."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from minildm.course import assert_close, build_exercises, fast_mode, pick, setup_notebook, show_images  # noqa: E402
from minildm.course.exercises import (  # noqa: E402
    ExerciseError,
    notebook_bytes,
    solution_cell,
    strip_hidden_tests,
    strip_solution,
    student_version,
    test_cell,
    validate_solution_notebook,
)

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def toy_solution() -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# toy", id="intro"),
        solution_cell("def double(x):\n    ### BEGIN SOLUTION\n    y = 2 * x\n    return y\n    ### END SOLUTION", "double"),
        test_cell("assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(-3) == -6\n### END HIDDEN TESTS",
                  "test_double", 2),
    ])


# ---------------------------------------------------------------- exercise generation

def test_strip_solution_keeps_indentation_and_code_around():
    source = "def f(x):\n    a = 1\n    ### BEGIN SOLUTION\n    return a + x\n    ### END SOLUTION\n\nprint('after')"
    assert strip_solution(source) == (
        "def f(x):\n    a = 1\n    # YOUR CODE HERE\n    raise NotImplementedError(\"replace this line with your code, then run "
        "the test cell below\")\n\nprint('after')")
    assert strip_solution("### BEGIN SOLUTION\nanswer\n### END SOLUTION", "markdown") == "YOUR ANSWER HERE"


def test_strip_hidden_tests_drops_region_and_markers():
    source = "assert a\n### BEGIN HIDDEN TESTS\nassert secret\n### END HIDDEN TESTS\nassert b"
    assert strip_hidden_tests(source) == "assert a\nassert b"


def test_student_version_content_and_nbgrader_metadata():
    nb = toy_solution()
    student = student_version(nb, "toy.ipynb")
    solution, test = student.cells[1], student.cells[2]
    assert "return y" not in solution.source and "raise NotImplementedError(\"replace this line" in solution.source
    assert "secret" not in test.source and "-6" not in test.source and "double(2) == 4" in test.source
    assert solution.metadata.nbgrader == {"grade": False, "grade_id": "double", "locked": False,
                                          "schema_version": 3, "solution": True, "task": False}
    assert test.metadata.nbgrader == {"grade": True, "grade_id": "test_double", "locked": True, "points": 2,
                                      "schema_version": 3, "solution": False, "task": False}
    assert "### BEGIN SOLUTION" in nb.cells[1].source  # the solution notebook itself is untouched
    nbformat.validate(student)


def test_outputs_and_execution_counts_are_cleared():
    nb = toy_solution()
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi")]
    nb.cells[1].execution_count = 7
    nb.cells[1].metadata["execution"] = {"iopub.execute_input": "2024-01-01T00:00:00"}
    cell = student_version(nb).cells[1]
    assert cell.outputs == [] and cell.execution_count is None and "execution" not in cell.metadata


def test_build_is_deterministic_and_removes_stale(tmp_path):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    nbformat.write(toy_solution(), solutions / "00_toy.ipynb")
    exercises.mkdir()
    (exercises / "01_stale.ipynb").write_text("{}")
    first = build_exercises(solutions, exercises)
    data = first[0].read_bytes()
    assert [p.name for p in first] == ["00_toy.ipynb"]
    assert not (exercises / "01_stale.ipynb").exists()
    build_exercises(solutions, exercises)
    assert first[0].read_bytes() == data
    assert data == notebook_bytes(nbformat.reads(data.decode(), as_version=4))  # stable round trip


@pytest.mark.parametrize("mutate, message", [
    (lambda nb: nb.cells[2].metadata.nbgrader.pop("points"), "points"),
    (lambda nb: nb.cells[2].metadata.nbgrader.update(points=0), "points"),
    (lambda nb: nb.cells[2].metadata.nbgrader.update(grade_id="double"), "duplicate grade_id 'double'"),
    (lambda nb: setattr(nb.cells[1], "source", "### BEGIN SOLUTION\nx = 1"), "never closed"),
    (lambda nb: setattr(nb.cells[1], "source", "x = 1\n### END SOLUTION"), "no matching"),
    (lambda nb: setattr(nb.cells[1], "source", "x = 1"), "has no '### BEGIN SOLUTION'"),
    (lambda nb: setattr(nb.cells[0], "source", "### BEGIN SOLUTION\nx\n### END SOLUTION"), "no nbgrader metadata"),
    (lambda nb: setattr(nb.cells[2], "source", "### BEGIN HIDDEN TESTS\nassert x"), "never closed"),
])
def test_invalid_markup_names_notebook_and_cell(mutate, message):
    nb = toy_solution()
    mutate(nb)
    with pytest.raises(ExerciseError, match=re.escape(message)) as info:
        validate_solution_notebook(nb, "solutions/00_toy.ipynb")
    assert "solutions/00_toy.ipynb, cell " in str(info.value)


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_committed_exercises_equal_a_fresh_build(solution, tmp_path):
    fresh = tmp_path / "solutions"
    fresh.mkdir()
    (fresh / solution.name).write_bytes(solution.read_bytes())
    built = build_exercises(fresh, tmp_path / "exercises")[0]
    committed = ROOT / "exercises" / solution.name
    assert committed.exists(), f"{committed} is missing: run `minildm course build`"
    assert committed.read_bytes() == built.read_bytes(), f"{committed} is stale: run `minildm course build`"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solution_notebooks_have_graded_tests_and_clean_outputs(solution):
    nb = nbformat.read(solution, as_version=4)
    assert validate_solution_notebook(nb, solution), f"{solution.name} has no graded test cell"


def test_no_exercise_without_solution():
    exercises = {p.name for p in (ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")}
    assert exercises <= {p.name for p in SOLUTIONS}


def test_course_check_cli(tmp_path, capsys):
    from minildm.cli import main

    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nbformat.write(toy_solution(), solutions / "00_toy.ipynb")
    args = ["course", "check", "--solutions", str(solutions), "--exercises", str(tmp_path / "ex")]
    assert main(args) == 1 and "differs from a fresh build" in capsys.readouterr().out
    assert main(["course", "build", "--solutions", str(solutions), "--exercises", str(tmp_path / "ex")]) == 0
    assert main(args) == 0


# ---------------------------------------------------------------- notebook helpers

def test_pick_follows_fast_mode(monkeypatch):
    monkeypatch.setenv("MINILDM_FAST", "1")
    assert fast_mode() and pick(100, 3) == 3
    monkeypatch.setenv("MINILDM_FAST", "0")
    assert not fast_mode() and pick(100, 3) == 100


def test_setup_notebook_seeds_everything(capsys):
    setup_notebook(seed=5)
    first = (torch.rand(3), np.random.rand(), __import__("random").random())
    setup_notebook(seed=5)
    second = (torch.rand(3), np.random.rand(), __import__("random").random())
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]
    assert "device:" in capsys.readouterr().out


def test_show_images_grid_layout_and_labels():
    images = torch.rand(10, 3, 8, 8) * 2 - 1
    fig = show_images(images, nrow=4, title="t", labels=list("abcdefghij"))
    axes = fig.get_axes()
    assert len(axes) == 12  # 3 rows of 4, two empty
    assert [ax.get_title() for ax in axes[:10]] == list("abcdefghij")
    assert len(axes[10].get_images()) == 0 and len(axes[0].get_images()) == 1
    shown = axes[0].get_images()[0].get_array()
    assert shown.shape == (8, 8, 3) and shown.dtype == np.uint8
    with pytest.raises(ValueError, match="one label per image"):
        show_images(images, labels=["x"])
    with pytest.raises(ValueError, match="C = 1 or 3"):
        show_images(torch.zeros(2, 5, 8, 8))
    matplotlib.pyplot.close("all")


def test_assert_close_messages():
    assert_close(torch.ones(3), torch.ones(3) + 1e-7, "ok")
    with pytest.raises(AssertionError, match=r"my tensor: shape \(2,\), expected \(3,\)"):
        assert_close(torch.ones(2), torch.ones(3), "my tensor")
    with pytest.raises(AssertionError, match="dtype torch.float64, expected torch.float32"):
        assert_close(torch.ones(3, dtype=torch.float64), torch.ones(3), "x")
    with pytest.raises(AssertionError, match=r"1 of 3 values differ; largest difference 0.5 at index \(1,\)"):
        assert_close(torch.tensor([1.0, 2.5, 3.0]), torch.tensor([1.0, 2.0, 3.0]), "x")
    with pytest.raises(AssertionError, match="expected a ndarray, got a Tensor"):
        assert_close(torch.ones(3), np.ones(3), "x")
    assert_close(np.array([1, 2], dtype=np.uint8), np.array([2, 2], dtype=np.uint8), "x", atol=1, rtol=0)


# ---------------------------------------------------------------- nbval sanitizer and run_notebooks

def test_sanitize_file_normalises_unstable_outputs():
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text())
    assert len(patterns) >= 8

    def clean(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    run_a = "<Model at 0x7f3a2b4c5d60> 100%|####| 50/50 [00:01<00:00, 45.2it/s] took 3.2 s torch 2.14.0+cpu " \
            "/work/main/datasets/x.png device: cpu | fast mode: on (small)"
    run_b = "<Model at 0x55d0a1b2c3e4> 100%|####| 50/50 [00:03<00:00, 17.9it/s] took 11 ms torch 2.1.2+cu121 " \
            "/home/me/minildm/datasets/x.png device: cuda:0 | fast mode: off (full run)"
    assert clean(run_a) == clean(run_b)
    assert clean("shape (3, 32, 32), loss 0.1234") == "shape (3, 32, 32), loss 0.1234"  # real values survive


def test_run_notebooks_writes_outputs_only_on_success(tmp_path, monkeypatch):
    from minildm.course.run_notebooks import main

    good = tmp_path / "00_good.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os\nprint('fast' if os.environ.get('MINILDM_FAST') == '1' else 'full')")]),
        good)
    bad = tmp_path / "01_bad.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")]), bad)
    before = bad.read_bytes()
    monkeypatch.setenv("MINILDM_FAST", "1")
    assert main([str(tmp_path)]) == 1  # full mode by default, even with MINILDM_FAST set outside
    assert nbformat.read(good, as_version=4).cells[0].outputs[0]["text"] == "full\n"
    assert bad.read_bytes() == before


# ---------------------------------------------------------------- committed widget outputs read well without a kernel

def _saved_widgets(nb, models: dict) -> None:
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        mid: {"model_name": name, "state": state} for mid, (name, state) in models.items()}, "version_major": 2}}


def test_add_static_views_gives_widgets_their_final_text_and_first_drawing():
    from minildm.course.run_notebooks import WIDGET_VIEW, add_static_views

    nb = nbformat.v4.new_notebook()
    _saved_widgets(nb, {
        "bar": ("HBoxModel", {"children": ["IPY_MODEL_left", "IPY_MODEL_progress", "IPY_MODEL_right"]}),
        "left": ("HTMLModel", {"value": "training:\u2007100%"}),
        "progress": ("FloatProgressModel", {"value": 6.0, "max": 6.0}),
        "right": ("HTMLModel", {"value": "\u20076/6\u2007[00:40&lt;00:00]"}),
        "explorer": ("VBoxModel", {"children": ["IPY_MODEL_scale", "IPY_MODEL_out"]}),
        "scale": ("FloatSliderModel", {"description": "scale s", "value": 3.0}),
        "out": ("OutputModel", {"outputs": [{"output_type": "display_data", "data": {"image/png": "PNGDATA"}}]}),
    })
    cell = nbformat.v4.new_code_cell("explorer")
    cell.outputs = [nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": mid}, "text/plain": repr_})
                    for mid, repr_ in [("bar", "training:   0%|          | 0/6"), ("explorer", "VBox(children=(...))")]]
    nb.cells.append(cell)
    assert add_static_views(nb) == 2
    bar, explorer = (output["data"] for output in cell.outputs)
    assert bar["text/plain"] == "training: 100%|██████████| 6/6 [00:40<00:00]" and "image/png" not in bar
    assert explorer["image/png"] == "PNGDATA" and "scale s = 3.0" in explorer["text/plain"]
    assert explorer[WIDGET_VIEW] == {"model_id": "explorer"}  # the live widget is still there


@pytest.mark.parametrize("name", ["01_autoencoders_and_vae.ipynb", "09_class_conditioning_and_guidance.ipynb"])
def test_committed_widget_outputs_have_static_views(name):
    from minildm.course.run_notebooks import WIDGET_VIEW

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / name, as_version=4)
    views = [o["data"] for c in nb.cells for o in c.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
    assert views
    for data in views:
        assert not re.search(r"(?<!\d)0%\|", data["text/plain"]), data["text/plain"]  # a bar frozen at the start
        assert not data["text/plain"].startswith(("VBox(", "HBox(", "interactive("))
    assert any("image/png" in data for data in views)  # the explorer's first drawing
