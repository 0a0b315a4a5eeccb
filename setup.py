"""Builds the compiled scoring core when it can (see scorer/native.py).

Everything else about the package is in pyproject.toml. The core's modules
are compiled with Cython, typed by the .pxd files beside them. The build is
all or nothing: the compiled modules read each other's objects at fixed C
offsets, so when one fails (no compiler, no Python headers) every output is
removed and the install goes on in pure Python, with a warning (`pip -v`
shows it; `make setup` checks the result). Without Cython, likewise.
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
RECORD = "scorer/_core_sources.json"
# The same arithmetic as Python's: no fused multiply-add (the default of GCC
# and clang wherever the CPU has one, as on every arm64), which could move a
# total across a threshold in its last bit.
C_FLAGS = [] if sys.platform == "win32" else ["-ffp-contract=off"]


def warn(reason: str) -> None:
    sys.stderr.write(f"\nWARNING: the scoring core stays pure Python ({reason}).\n\n")


def source_digests() -> dict[str, str]:
    """Each compiled module's .py and .pxd by SHA-256, for scorer/native.py to
    tell a build older than its source."""
    paths = [Path(p) for p in CORE] + [Path(p).with_suffix(".pxd") for p in CORE]
    return {
        str(path.relative_to("scorer")): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in paths
        if path.exists()
    }


class AllOrNothingBuildExt(build_ext):
    """Compiles every core module or none; records the sources it compiled."""

    def run(self) -> None:
        digests = source_digests()  # before compiling: what the build is made from
        places = [Path(self.build_lib)]
        if self.inplace or getattr(self, "editable_mode", False):
            places.append(Path("."))  # the outputs are copied into the source tree
        try:
            super().run()
        except Exception as exc:
            for ext in self.extensions:
                for place in places:
                    place.joinpath(self.get_ext_filename(ext.name)).unlink(missing_ok=True)
            for place in places:
                place.joinpath(RECORD).unlink(missing_ok=True)
            warn(f"the build failed, so no module is compiled: {exc}")
            return
        for place in places:
            if place.joinpath("scorer").is_dir():
                place.joinpath(RECORD).write_text(json.dumps(digests, indent=1, sort_keys=True))


def extensions() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:
        warn("Cython is not installed")
        return []
    modules = [
        Extension(path[:-3].replace("/", "."), [path], extra_compile_args=C_FLAGS) for path in CORE
    ]
    return cythonize(
        modules,
        compiler_directives={"language_level": 3, "annotation_typing": False},
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": AllOrNothingBuildExt})
