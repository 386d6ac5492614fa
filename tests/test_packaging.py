"""The two ways to install the course (pip + pyproject, conda + environment.yml) name the same packages."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip", "-e ."}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def pyproject_packages() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_name(r): r for r in reqs}


def conda_packages() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs: list[str] = []
    for dep in env["dependencies"]:
        reqs.extend(dep["pip"] if isinstance(dep, dict) else [dep])
    out = {}
    for r in reqs:
        if r.strip() in NOT_PACKAGES or _name(r) in NOT_PACKAGES:
            continue
        out[CONDA_TO_PIP.get(_name(r), _name(r))] = r
    return out


def test_environment_yml_and_pyproject_name_the_same_packages():
    pip, conda = pyproject_packages(), conda_packages()
    assert set(pip) == set(conda), f"only in pyproject: {set(pip) - set(conda)}; only in environment.yml: {set(conda) - set(pip)}"


def test_only_lower_bounds_are_declared():
    for name, req in {**pyproject_packages(), **conda_packages()}.items():
        assert "<" not in req and "==" not in req, f"{name}: declare lower bounds only, got {req!r}"


def test_required_runtime_packages_are_declared():
    required = {"torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "jupyterlab", "lpips", "transformers",
                "safetensors", "tqdm", "pyyaml", "scikit-learn", "scikit-image", "pytest", "nbval", "nbclient",
                "nbformat", "diffusers"}
    assert required <= set(pyproject_packages())


def test_cli_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "minildm", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("demo", "train", "sample", "data", "grade", "course", "convert"):
        assert command in out


def test_every_subcommand_has_help_naming_its_arguments():
    expected = {"demo": "--out", "train": "--resume", "sample": "--guidance-scale", "data": "download",
                "grade": "--json", "course": "build", "convert": "--part"}
    for command, word in expected.items():
        out = subprocess.run([sys.executable, "-m", "minildm", command, "--help"], capture_output=True, text=True,
                             check=True).stdout
        assert word in out, f"`minildm {command} --help` does not mention {word}"
