"""Where downloaded datasets live, and the error raised when they are not there.

The data root is `$MINILDM_DATA` when set, else the `datasets/` folder of the course
repository (found from this file's location), else `./datasets`. Dataset NAME lives in
`<data root>/NAME/`. Loading never downloads: `minildm data download NAME` does.
"""

from __future__ import annotations

import os
from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing from the data root; the message says which, where, and how to get them."""


def repo_root() -> Path | None:
    """The course repository holding this package (a folder with pyproject.toml and minildm/), or None."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "pyproject.toml").is_file() and (folder / "minildm" / "__init__.py").is_file():
            return folder
    return None


def data_root() -> Path:
    """`$MINILDM_DATA`, else `<repo>/datasets`, else `./datasets` (the folder need not exist yet)."""
    if os.environ.get("MINILDM_DATA"):
        return Path(os.environ["MINILDM_DATA"]).expanduser()
    repo = repo_root()
    return repo / "datasets" if repo is not None else Path.cwd() / "datasets"


def missing_files_message(name: str, missing: list[str], folder: Path) -> str:
    """The text of a DatasetNotFoundError: what is missing, where it should be, how to get it."""
    return (f"dataset {name!r} is not on this machine: missing {', '.join(missing)} in {folder}. "
            f"Get it with `minildm data download {name}` (needs internet), or copy the files there "
            f"yourself; set MINILDM_DATA to use another data root (now {data_root()}).")
