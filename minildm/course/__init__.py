"""Course machinery: fast mode, exercise generation, grading, notebook helpers."""

from minildm.course.fast import fast_mode, pick

__all__ = ["fast_mode", "pick"]
