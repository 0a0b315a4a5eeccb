"""The compiled scoring core: which modules Cython builds, and running without it.

`pip install` (and so `make setup`) compiles the modules in `MODULES` with
Cython when a C compiler is present (see setup.py). Beside each one a `.pxd`
file declares its classes as extension types and the locals of its inner
loop as C types; the `.py` file stays the only source of the rules and runs
unchanged where nothing was compiled. Set `SCORER_PURE_PYTHON=1` before a
process starts to run the Python source although compiled modules are there:
to compare the two, or to rule the compiled core out when chasing a bug.

This module must not import any of `MODULES` at import time: `scorer`'s
`__init__` calls `use_source_only` before it imports them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from importlib.machinery import SOURCE_SUFFIXES, FileFinder, SourceFileLoader
from pathlib import Path

MODULES = (
    "scorer.timefmt",
    "scorer.enrichment.domains",
    "scorer.events",
    "scorer.scoring.state",
    "scorer.icp.compiled",
    "scorer.scoring.engine",
    "scorer.offline",
)
PURE_ENV = "SCORER_PURE_PYTHON"


def pure_requested() -> bool:
    return os.environ.get(PURE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def use_source_only() -> None:
    """Import scorer's modules from their `.py` files, compiled ones beside or not."""
    root = Path(__file__).resolve().parent
    hook = FileFinder.path_hook((SourceFileLoader, SOURCE_SUFFIXES))
    for directory in (root, *(init.parent for init in root.rglob("__init__.py"))):
        sys.path_importer_cache[str(directory)] = hook(str(directory))


def compiled_modules() -> list[str]:
    """Which of the core's modules run compiled in this process."""
    compiled = []
    for name in MODULES:
        path = importlib.import_module(name).__file__ or ""
        if not path.endswith(".py"):
            compiled.append(name)
    return compiled


def stale_modules() -> list[str]:
    """Compiled modules whose `.py` or `.pxd` changed since the build (setup.py
    records their SHA-256): this process does not run the source as it reads."""
    record = Path(__file__).resolve().parent / "_core_sources.json"
    try:
        built: dict[str, str] = json.loads(record.read_text())
    except (OSError, ValueError):
        return []  # built without a record: nothing to compare with
    root = record.parent
    stale = []
    for name in compiled_modules():
        base = "/".join(name.split(".")[1:])
        for source in (f"{base}.py", f"{base}.pxd"):
            path = root / source
            digest = built.get(source)
            if digest is None or not path.exists():
                continue  # not recorded, or not installed (a wheel has no .pxd)
            if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                stale.append(name)
                break
    return stale


def describe() -> str:
    """One line for logs and `scorer --version`."""
    count = len(compiled_modules())
    if count == len(MODULES):
        stale = stale_modules()
        if stale:
            return f"compiled (Cython), but {', '.join(stale)} changed since the build: rebuild"
        return "compiled (Cython)"
    if pure_requested():
        return f"pure Python ({PURE_ENV} is set)"
    if count == 0:
        return "pure Python (not compiled: no C compiler or Cython at install time)"
    return f"partly compiled ({count} of {len(MODULES)} modules): reinstall to rebuild"
