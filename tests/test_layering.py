"""Imports point one way: every import in minildm/ and benchmarks/ goes down the layers of DESIGN.md.

    base               minildm (the package root), minildm.utils
    data and blocks    data, unet, autoencoder, losses, diffusion, conditioning
    models             autoencoder.training (an autoencoder with its stage-1 loss, what the trainer trains)
    ldm                minildm.ldm
    train, pretrained, metrics
    front              course, the command line (cli, commands, demo, __main__), benchmarks

The rules, checked on every import statement, including those inside functions:

1. A module may import its own package (minildm.train.trainer -> minildm.train.config).
2. A module may import any package of a LOWER layer.
3. Packages of the SAME layer import each other only along the arrows of SIDEWAYS, each with its
   reason; everything else (a block using another block, metrics using train, the course using
   the command line, a benchmark using the course) is refused.
4. Nothing imports a HIGHER layer, not even lazily inside a function.

Import strings are data, not imports, and are not checked here: `minildm.pretrained.build.MODELS`
names models ("minildm.ldm:LatentDiffusion") resolved only when a config asks for them, and
minildm/cli.py wires up its subcommands ("minildm.commands.train", "minildm.course.cli") the same way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("minildm", "minildm.utils")),
    ("data and blocks", ("minildm.data", "minildm.unet", "minildm.autoencoder", "minildm.losses",
                         "minildm.diffusion", "minildm.conditioning")),
    ("models", ("minildm.autoencoder.training",)),
    ("ldm", ("minildm.ldm",)),
    ("train, pretrained, metrics", ("minildm.train", "minildm.pretrained", "minildm.metrics")),
    ("front", ("minildm.course", "minildm.cli", "minildm.commands", "minildm.demo", "minildm.__main__",
               "benchmarks")),
]

SIDEWAYS: dict[tuple[str, str], str] = {
    ("minildm.conditioning", "minildm.data"):
        "the inpainting conditioner draws its training masks with the data package's mask generator",
    ("minildm.train", "minildm.pretrained"):
        "the trainer builds models and reads checkpoints through the one home of model loading",
    ("minildm.pretrained", "minildm.metrics"):
        "a course checkpoint is evaluated on held-out data before it ships",
    ("minildm.metrics", "minildm.pretrained"):
        "a feature extractor is named by its course checkpoint (features='judge-shapes') and loaded where models are",
    ("minildm.demo", "minildm.course"): "the demo shrinks itself in fast mode (minildm.course.fast_mode)",
    ("minildm.__main__", "minildm.cli"): "`python -m minildm` is the `minildm` command",
}


def unit(module: str) -> tuple[int, str]:
    """(layer index, the package it belongs to) of a dotted module name: the longest matching entry of LAYERS."""
    best: tuple[int, str] | None = None
    for index, (_, packages) in enumerate(LAYERS):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and (best is None or len(package) > len(best[1])):
                best = (index, package)
    if best is None:
        raise KeyError(module)
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    """Whether `dotted` names a module or package of this repository (not an attribute of one)."""
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, imported module) of every minildm / benchmarks import in the file (or `text`), at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8") if text is None else text)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from minildm import pretrained` imports the module minildm.pretrained
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if is_module(full) else base))
    if path.parent.name == "benchmarks":  # `from common import ...`: benchmarks/common.py, on sys.path
        found = [(line, f"benchmarks.{target}" if is_module(f"benchmarks.{target}") else target)
                 for line, target in found]
    return [(line, target) for line, target in found if target.split(".")[0] in ("minildm", "benchmarks")]


def sources() -> list[Path]:
    return sorted([*(ROOT / "minildm").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])


def violations() -> list[str]:
    problems = []
    for path in sources():
        source_layer, source_package = unit(module_name(path))
        for line, target in imports(path):
            target_layer, target_package = unit(target)
            if target_package == source_package or source_package.startswith(target_package + "."):
                continue  # rule 1 (and a sub-package using its parent, e.g. autoencoder.training -> autoencoder)
            if target_layer < source_layer or (source_package, target_package) in SIDEWAYS:
                continue
            why = "a higher layer" if target_layer > source_layer else "the same layer, an arrow not in SIDEWAYS"
            problems.append(f"{path.relative_to(ROOT)}:{line}: {source_package} ({LAYERS[source_layer][0]}) imports "
                            f"{target} ({LAYERS[target_layer][0]}): {why}")
    return problems


def test_every_module_has_a_layer():
    unplaced = []
    for path in sources():
        try:
            unit(module_name(path))
        except KeyError:
            unplaced.append(str(path.relative_to(ROOT)))
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_imports_point_down_the_layers():
    problems = violations()
    assert not problems, "imports against the layering of DESIGN.md:\n" + "\n".join(problems)


def test_the_checker_sees_imports_inside_functions():
    """A lazy import in a function body counts as much as one at the top of the file."""
    text = ("import torch\n\ndef f():\n    from minildm.train import build_model\n    import minildm.course.fast\n"
            "    from minildm import pretrained\n    from . import unet\n")
    found = imports(ROOT / "minildm" / "ldm.py", text)
    assert found == [(4, "minildm.train"), (5, "minildm.course.fast"), (6, "minildm.pretrained"), (7, "minildm.unet")]
    assert unit("minildm.train.build_model") == (4, "minildm.train")
    with pytest.raises(KeyError):
        unit("minildm_other")


def test_sideways_arrows_run_within_one_layer_and_are_used():
    for source, target in SIDEWAYS:
        assert unit(source)[0] == unit(target)[0], f"{source} -> {target} is not sideways; drop it from SIDEWAYS"
    used = {(unit(module_name(path))[1], unit(target)[1]) for path in sources() for _, target in imports(path)}
    assert set(SIDEWAYS) <= used, f"no import uses {set(SIDEWAYS) - used}; drop them from SIDEWAYS"
