"""The unit suite as a GPU machine runs it: `pytest -p stand_in_plugin tests` runs every test with
`device: auto` (and `default_device()`) picking the stand-in device of tests/stand_in_gpu.py.

Tests that pin the CPU stay there; everything that follows the default device meets CUDA's placement
rules, as it would with a GPU present. Tests marked `not_on_stand_in(reason)` are skipped: they build
on the meta device (the stand-in's own name) or pretend CUDA is present in ways the stand-in is not.
"""

from __future__ import annotations

import pytest

import minildm.utils
from stand_in_gpu import DEVICE, stand_in_gpu


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("not_on_stand_in")
    if marker is not None:
        pytest.skip(f"not on the stand-in device: {marker.args[0] if marker.args else ''}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):  # noqa: ANN201
    saved = minildm.utils.default_device
    minildm.utils.default_device = lambda: DEVICE
    try:
        with stand_in_gpu():
            return (yield)
    finally:
        minildm.utils.default_device = saved
