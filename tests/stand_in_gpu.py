"""A stand-in accelerator for device-placement tests on a machine without a GPU.

Most GPU bugs in a training or sampling loop are placement bugs: a tensor made on the CPU meets a
model on the GPU ("Expected all tensors to be on the same device"), or a CPU random generator draws
noise on the GPU ("Expected a 'cuda' device type for generator but found 'cpu'"). Those need no GPU
to find, only a second device that keeps the GPU's rules. This module makes one:

    with stand_in_gpu() as device:        # torch.device("meta"), the stand-in's name
        model = model.to(device)
        images = model.sample(...)        # computed on the CPU, but placed "on the device"

Inside the block, a tensor moved to `device` (or made with device=`device`) is an `OnDevice`: a CPU
tensor that reports `device` and computes as usual, so values, `.item()` and training all work. Every
operation then checks CUDA's placement rules and raises the error CUDA would:

- the tensors of one operation share a device, except 0-dim CPU tensors (Python-scalar-like) and the
  index tensors of indexing, which CUDA accepts from the CPU;
- a random draw with a `generator` happens on the generator's device;
- `.numpy()` needs a CPU tensor; `.cpu()` / `.to("cpu")` bring results back as plain tensors.

The stand-in's name is the meta device because PyTorch's autograd runs it without any driver; code that
asks `device.type == "cuda"` (autocast, pinned memory) takes its non-CUDA branch, which the CPU tests
cover. What it cannot find: numerical differences of GPU kernels, and CUDA-only code paths. Code that
builds models on the meta device itself (FLOP counts in notebook 16) cannot run on it.

`python tests/stand_in_gpu.py NOTEBOOK...` runs notebooks on the stand-in (set MINILDM_FAST=1 for the
fast mode).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils._python_dispatch import TorchDispatchMode

DEVICE = torch.device("meta")

aten = torch.ops.aten
# operations that legitimately take tensors from two devices
_CROSS_DEVICE = {aten._to_copy.default, aten.copy_.default, aten.lift_fresh.default, aten.lift_fresh_copy.default,
                 aten._has_compatible_shallow_copy_type.default}
_INDEXING = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default,
             aten._unsafe_index.Tensor}


class DevicePlacementError(RuntimeError):
    """What CUDA would have raised: tensors on two devices, or a generator on the wrong one."""


class OnDevice(torch.Tensor):
    """A CPU tensor (`.cpu_data`) that reports the stand-in device and obeys its placement rules."""

    cpu_data: torch.Tensor

    @staticmethod
    def __new__(cls, data: torch.Tensor) -> OnDevice:
        wrapper = torch.Tensor._make_wrapper_subclass(
            cls, data.shape, strides=data.stride(), storage_offset=data.storage_offset(), dtype=data.dtype,
            layout=data.layout, device=DEVICE, requires_grad=False)
        wrapper.cpu_data = data
        return wrapper

    def __repr__(self, *, tensor_contents: Any = None) -> str:
        return f"OnDevice({self.cpu_data!r})"

    @property
    def is_meta(self) -> bool:  # it holds data: load_state_dict copies into it
        return False

    def __format__(self, spec: str) -> str:  # f"{loss:.3f}" formats a 0-dim tensor's value, as on CUDA
        return self.item().__format__(spec) if self.dim() == 0 else super().__format__(spec)

    def __getitem__(self, index: Any) -> Any:
        return super().__getitem__(_cpu_index(index))

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(_cpu_index(index), value)

    def numpy(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"can't convert {DEVICE} device type tensor to numpy. "
                        "Use Tensor.cpu() to copy the tensor to host memory first.")

    def tolist(self) -> Any:  # CUDA tensors copy to the host for tolist()
        return self.cpu().tolist()

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        return _run(func, args, kwargs or {})


def _cpu_index(index: Any) -> Any:
    """Python lists in an index as CPU index tensors (PyTorch's indexing would build them below the
    dispatcher, on the indexed tensor's device, where the stand-in could not follow)."""
    if isinstance(index, tuple):
        return tuple(_cpu_index(i) for i in index)
    return torch.as_tensor(index) if isinstance(index, list) else index


def _device_of(value: Any) -> str | None:
    if isinstance(value, OnDevice):
        return "device"
    if isinstance(value, torch.Tensor):
        return None if value.dim() == 0 and value.device.type == "cpu" else value.device.type
    return None


def _check_placement(func: Any, args: tuple, kwargs: dict) -> None:
    if func in _CROSS_DEVICE:
        return
    checked = (args[0], *args[2:]) if func in _INDEXING else (args, kwargs)
    devices = {_device_of(x) for x in tree_flatten(checked)[0]} - {None}
    if len(devices) > 1:
        raise DevicePlacementError(f"Expected all tensors to be on the same device, but found at least two "
                                   f"devices, cpu and {DEVICE}! (in {func})")


def _target(kwargs: dict) -> torch.device | None:
    """The device an operation writes to, when it names one (factories, .to(device))."""
    device = kwargs.get("device")
    return torch.device(device) if device is not None else None


class _GeneratorCheck(TorchFunctionMode):
    """A random draw happens on its generator's device. Checked above the dispatcher, where the
    generator is still the Python object the code made (a StandInGenerator knows its device)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        kwargs = kwargs or {}
        generator = kwargs.get("generator")
        if generator is not None:
            if kwargs.get("device") is not None:
                on_device = torch.device(kwargs["device"]) == DEVICE
            else:  # a method that fills a tensor in place (normal_, uniform_), or a draw on the CPU
                on_device = bool(args) and isinstance(args[0], OnDevice)
            generator_device = getattr(generator, "made_for", generator.device)
            if on_device != (generator_device == DEVICE):
                raise DevicePlacementError(f"Expected a '{'cuda' if on_device else 'cpu'}' device type for "
                                           f"generator but found '{'cuda' if not on_device else 'cpu'}' (in {func})")
        return func(*args, **kwargs)


def _run(func: Any, args: tuple, kwargs: dict) -> Any:
    if any(type(x) is torch.Tensor and x.device == DEVICE for x in tree_flatten((args, kwargs))[0]):
        raise RuntimeError(f"{func} got a tensor without data on {DEVICE}, made by a constructor the stand-in "
                           "does not patch (see `_from_data`)")
    _check_placement(func, args, kwargs)
    target = _target(kwargs)
    if target == DEVICE:
        kwargs = {**kwargs, "device": torch.device("cpu")}
    inputs = {id(x.cpu_data): x for x in tree_flatten((args, kwargs))[0] if isinstance(x, OnDevice)}
    unwrapped_args, unwrapped_kwargs = tree_map(lambda x: x.cpu_data if isinstance(x, OnDevice) else x, (args, kwargs))
    out = func(*unwrapped_args, **unwrapped_kwargs)
    place = (target == DEVICE) if target is not None else bool(inputs)

    def wrap(x: Any) -> Any:
        if not isinstance(x, torch.Tensor) or isinstance(x, OnDevice) or not place:
            return x
        same = inputs.get(id(x))  # an in-place operation returns its own input
        return same if same is not None else OnDevice(x)

    return tree_map(wrap, out)


class _Mode(TorchDispatchMode):
    """Routes every operation through the placement rules, so that factories (torch.zeros(device=...))
    with no OnDevice input land on the stand-in too."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        return _run(func, args, kwargs or {})


def _from_data(make: Any) -> Any:
    """torch.tensor(data, device=...) and its kin build the tensor below the dispatcher: build it on the
    CPU, then move it (a dispatched copy that lands on the stand-in)."""

    def build(data: Any, *args: Any, device: Any = None, **kwargs: Any) -> torch.Tensor:
        if isinstance(data, (list, tuple)):  # device scalars in a list are read back, as CUDA does
            data = tree_map(lambda x: x.cpu_data if isinstance(x, OnDevice) else x, data)
        tensor = make(data, *args, **kwargs)
        return tensor.to(device) if device is not None else tensor

    return build


_Generator = torch.Generator


class StandInGenerator(_Generator):
    """torch.Generator(device) inside the block: a CPU generator that reports the device it was made for."""

    def __new__(cls, device: Any = "cpu") -> StandInGenerator:
        generator = super().__new__(cls, "cpu")
        generator.made_for = torch.device(device if device is not None else "cpu")
        if generator.made_for not in (DEVICE, torch.device("cpu")):
            raise RuntimeError(f"the stand-in has no generator for {generator.made_for}")
        return generator

    @property
    def device(self) -> torch.device:
        return self.made_for


def _new_tensor(self: torch.Tensor, data: Any, *, dtype: Any = None, device: Any = None, **kwargs: Any) -> torch.Tensor:
    return torch.tensor(data, dtype=dtype or self.dtype, device=device or self.device, **kwargs)


@contextlib.contextmanager
def stand_in_gpu() -> Iterator[torch.device]:
    """Within the block, `DEVICE` behaves as a GPU with CUDA's placement rules (see the module text)."""
    saved = {name: getattr(torch, name) for name in ("tensor", "as_tensor", "asarray")}
    saved_new_tensor = torch.Tensor.new_tensor
    try:
        for name, make in saved.items():
            setattr(torch, name, _from_data(make))
        torch.Tensor.new_tensor = _new_tensor
        torch.Generator = StandInGenerator
        with _GeneratorCheck(), _Mode():
            yield DEVICE
    finally:
        for name, make in saved.items():
            setattr(torch, name, make)
        torch.Tensor.new_tensor = saved_new_tensor
        torch.Generator = _Generator


def to_cpu(value: Any) -> Any:
    """Plain CPU tensors for every OnDevice in `value` (a tensor or a nest of them)."""
    return tree_map(lambda x: x.cpu_data if isinstance(x, OnDevice) else x, value)


def run_notebook(path: str | Path) -> None:
    """Run a notebook's code cells top to bottom on the stand-in, as a GPU user's kernel would run them
    (`device = setup_notebook()` picks the stand-in); raises the first cell's error, naming the cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import minildm.utils

    path = Path(path).resolve()
    cells = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    namespace: dict[str, Any] = {"__name__": "__main__"}
    minildm.utils.default_device = lambda: DEVICE
    os.chdir(path.parent)  # where Jupyter starts a notebook's kernel
    with stand_in_gpu():
        for number, cell in enumerate(cells, start=1):
            source = "".join(cell["source"])
            try:
                exec(compile(source, f"{path.name}, code cell {number}", "exec"), namespace)
            except Exception as error:
                raise RuntimeError(f"{path.name}, code cell {number}: {type(error).__name__}: {error}") from error
            finally:
                plt.close("all")


if __name__ == "__main__":  # python tests/stand_in_gpu.py notebooks/07_latent_diffusion.ipynb
    for notebook in sys.argv[1:]:
        run_notebook(notebook)
        print(f"{notebook}: every cell ran on the stand-in device")
