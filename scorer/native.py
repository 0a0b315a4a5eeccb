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

import argparse
import hashlib
import importlib
import json
import os
import shlex
import shutil
import sys
import sysconfig
from importlib.machinery import EXTENSION_SUFFIXES, SOURCE_SUFFIXES, FileFinder, SourceFileLoader
from pathlib import Path

MODULES = (
    "scorer.timefmt",
    "scorer.enrichment.domains",
    "scorer.events",
    "scorer.scoring.state",
    "scorer.icp.compiled",
    "scorer.scoring.decision",
    "scorer.scoring.engine",
    "scorer.scoring.intake",
    "scorer.offline",
    "scorer.stream.id_window",
    "scorer.stream.account_codec",
    "scorer.kafka.partition",
    "scorer.stream.store",
    "scorer.stream.tables",
    "scorer.stream.processor",
)
PURE_ENV = "SCORER_PURE_PYTHON"
RECORD = "_core_sources.json"  # in the package: the sources a build was made from
# Not resolved: the import system knows the package by the path it was found at.
ROOT = Path(os.path.dirname(__file__))


def pure_requested() -> bool:
    return os.environ.get(PURE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def module_path(name: str) -> str:
    """A core module's path inside the package, without suffix (`scoring/engine`)."""
    return "/".join(name.split(".")[1:])


def source_digests(root: Path) -> dict[str, str]:
    """Each core module's `.py` and `.pxd` under `root` by SHA-256: setup.py
    records them at build time, `stale_modules` compares them at run time."""
    paths = [f"{module_path(name)}{suffix}" for name in MODULES for suffix in (".py", ".pxd")]
    return {
        path: hashlib.sha256(root.joinpath(path).read_bytes()).hexdigest()
        for path in paths
        if root.joinpath(path).exists()
    }


def built_modules() -> list[str]:
    """The core's modules with a compiled file beside their source (nothing imported)."""
    return [
        name
        for name in MODULES
        if any(ROOT.joinpath(module_path(name) + suffix).exists() for suffix in EXTENSION_SUFFIXES)
    ]


def partial_build() -> bool:
    """Some but not all modules compiled. The compiled ones read each other's
    objects at fixed C offsets, so such a build is never imported."""
    return 0 < len(built_modules()) < len(MODULES)


def use_source_only() -> None:
    """Import scorer's modules from their `.py` files, compiled ones beside or not."""
    hook = FileFinder.path_hook((SourceFileLoader, SOURCE_SUFFIXES))
    for directory in (ROOT, *(init.parent for init in ROOT.rglob("__init__.py"))):
        sys.path_importer_cache[str(directory)] = hook(str(directory))


def compiler_available() -> bool:
    """Whether this machine has the C compiler Python's build would use."""
    configured = shlex.split(sysconfig.get_config_var("CC") or "cc")
    return bool(configured) and shutil.which(configured[0]) is not None


def is_compiled(path: str | None) -> bool:
    """A module's `__file__` is a compiled extension, not Python source or bytecode.
    Also what a core module asks of itself where its two builds take different
    routes (`enrichment.domains`, `stream.processor`)."""
    return not (path or ".py").endswith((".py", ".pyc"))


def compiled_modules() -> list[str]:
    """Which of the core's modules run compiled in this process."""
    return [name for name in MODULES if is_compiled(importlib.import_module(name).__file__)]


def stale_modules() -> list[str]:
    """Compiled modules whose `.py` or `.pxd` changed since the build (setup.py
    records their SHA-256): this process does not run the source as it reads."""
    try:
        built: dict[str, str] = json.loads(ROOT.joinpath(RECORD).read_text())
    except (OSError, ValueError):
        return []  # built without a record: nothing to compare with
    now = source_digests(ROOT)
    changed = {path for path, digest in now.items() if built.get(path, digest) != digest}
    return [
        name
        for name in compiled_modules()
        if {module_path(name) + ".py", module_path(name) + ".pxd"} & changed
    ]


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
    built = len(built_modules())
    if built:
        return f"pure Python (only {built} of {len(MODULES)} modules compiled: reinstall)"
    return "pure Python (not compiled at install time: `pip install -v` shows why)"


def stray_extensions(root: Path = ROOT) -> list[Path]:
    """Compiled modules in the package that are no longer in MODULES (left by an
    earlier build): Python would import them instead of their source."""
    wanted = {module_path(name) for name in MODULES}
    suffixes = sorted(EXTENSION_SUFFIXES, key=len, reverse=True)  # the longest that fits
    stray = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        suffix = next((s for s in suffixes if relative.endswith(s)), None)
        if suffix is not None and relative[: -len(suffix)] not in wanted:
            stray.append(path)
    return stray


def compiled_and_current() -> bool:
    return len(compiled_modules()) == len(MODULES) and not stale_modules()


def main(argv: list[str] | None = None) -> int:
    """Print which core runs; the exit status checks it (`make setup`, the Docker image)."""
    parser = argparse.ArgumentParser(prog="scorer.native.main", description=main.__doc__)
    parser.add_argument(
        "--require-compiled",
        action="store_true",
        help="fail unless the core is compiled and current (default: only when a C "
        "compiler is present, as after `make setup`)",
    )
    args = parser.parse_args(argv)
    for path in stray_extensions():
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}: not part of the compiled core any more")
    print(f"scoring core: {describe()}")
    required = args.require_compiled or (compiler_available() and not pure_requested())
    if required and not compiled_and_current():
        print(
            "the scoring core should be compiled here: reinstall with the build's output "
            "shown (`.venv/bin/pip install -v -e .`) to see why it was not",
            file=sys.stderr,
        )
        return 1
    return 0
