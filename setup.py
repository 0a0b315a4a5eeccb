"""Builds the compiled scoring core when it can (see scorer/native.py).

Everything else about the package is in pyproject.toml. The core's modules
are compiled with Cython, typed by the .pxd files beside them; without
Cython or a working C compiler the install goes on in pure Python, with a
warning, and `scorer --version` says which one a process runs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CORE = [
    "scorer/timefmt.py",
    "scorer/enrichment/domains.py",
    "scorer/events.py",
    "scorer/scoring/state.py",
    "scorer/icp/compiled.py",
    "scorer/scoring/engine.py",
    "scorer/offline.py",
]


SOURCES_RECORD = Path("scorer/_core_sources.json")


def record_sources() -> None:
    """What the build compiled: each core module's .py and .pxd by SHA-256, so
    that scorer/native.py can tell a build older than its source."""
    paths = [Path(p) for p in CORE] + [Path(p).with_suffix(".pxd") for p in CORE]
    digests = {
        str(path.relative_to("scorer")): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in paths
        if path.exists()
    }
    SOURCES_RECORD.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")


def warn(reason: str) -> None:
    sys.stderr.write(f"\nWARNING: the scoring core stays pure Python ({reason}).\n\n")


class OptionalBuildExt(build_ext):
    """A failed compile leaves the Python source in charge instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no Python headers
            warn(f"build failed: {exc}")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            warn(f"{ext.name} did not compile: {exc}")


def extensions() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:
        warn("Cython is not installed")
        return []
    record_sources()
    return cythonize(
        CORE,
        compiler_directives={"language_level": 3, "annotation_typing": False},
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
