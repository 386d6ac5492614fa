"""Course machinery: fast mode, exercise generation, grading, notebook helpers.

    fast.py           fast_mode(), pick(full, fast)
    notebooks.py      setup_notebook, show_images, assert_close (used inside notebooks)
    diagrams.py       ldm_diagram(): the two-stage picture of paper Fig. 3
    exercises.py      solutions/ -> exercises/ (`minildm course build`), the handout (`course release`)
    grader.py         `minildm grade`: run submissions with the instructor's tests, score them
    guard.py          inside the grading kernel: taught references stubbed, tampering found and undone
    run_notebooks.py  `python -m minildm.course.run_notebooks`: refresh committed outputs (+ static widget views)
"""

from importlib import import_module

from minildm.course.fast import fast_mode, pick

# Names loaded on first use, so `from minildm.course import pick` stays cheap for library code.
_LAZY = {
    "setup_notebook": "minildm.course.notebooks",
    "show_images": "minildm.course.notebooks",
    "assert_close": "minildm.course.notebooks",
    "ldm_diagram": "minildm.course.diagrams",
    "build_exercises": "minildm.course.exercises",
    "solution_cell": "minildm.course.exercises",
    "test_cell": "minildm.course.exercises",
    "ExerciseError": "minildm.course.exercises",
    "grade": "minildm.course.grader",
    "grade_notebook": "minildm.course.grader",
}

__all__ = ["fast_mode", "pick", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'minildm.course' has no attribute {name!r}")
