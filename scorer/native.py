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

import importlib
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
    """Compiled modules older than their `.py` or `.pxd`: edited since the last
    build, so this process does not run the source as it reads (`make setup`)."""
    stale = []
    for name in compiled_modules():
        built = Path(importlib.import_module(name).__file__ or "")
        base = built.parent / built.name.partition(".")[0]
        sources = [base.with_suffix(".py"), base.with_suffix(".pxd")]
        newest = max((p.stat().st_mtime for p in sources if p.exists()), default=0.0)
        if built.stat().st_mtime < newest:
            stale.append(name)
    return stale


def describe() -> str:
    """One line for logs and `scorer --version`."""
    count = len(compiled_modules())
    if count == len(MODULES):
        stale = stale_modules()
        if stale:
            return f"compiled (Cython), but older than the source of {', '.join(stale)}: rebuild"
        return "compiled (Cython)"
    if pure_requested():
        return f"pure Python ({PURE_ENV} is set)"
    if count == 0:
        return "pure Python (not compiled: no C compiler or Cython at install time)"
    return f"partly compiled ({count} of {len(MODULES)} modules): reinstall to rebuild"
