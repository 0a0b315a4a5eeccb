"""Builds the compiled scoring core when it can (see scorer/native.py).

Everything else about the package is in pyproject.toml. The core's modules
are compiled with Cython, typed by the .pxd files beside them. The build is
all or nothing: the compiled modules read each other's objects at fixed C
offsets, so when one fails (no compiler, no Python headers) every output is
removed and the install goes on in pure Python, with a warning (`pip -v`
shows it; `make setup` checks the result). Without Cython, likewise.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _native() -> ModuleType:
    """scorer/native.py (standard library only), without importing the package."""
    spec = importlib.util.spec_from_file_location("scorer_native", "scorer/native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


native = _native()
RECORD = f"scorer/{native.RECORD}"
# The same arithmetic as Python's: no fused multiply-add (the default of GCC
# and clang wherever the CPU has one, as on every arm64), which could move a
# total across a threshold in its last bit.
C_FLAGS = [] if sys.platform == "win32" else ["-ffp-contract=off"]


def warn(reason: str) -> None:
    sys.stderr.write(f"\nWARNING: the scoring core stays pure Python ({reason}).\n\n")


class AllOrNothingBuildExt(build_ext):
    """Compiles every core module or none; records the sources it compiled."""

    def run(self) -> None:
        digests = native.source_digests(Path("scorer"))  # what the build is made from
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
        Extension(name, [f"scorer/{native.module_path(name)}.py"], extra_compile_args=C_FLAGS)
        for name in native.MODULES
    ]
    return cythonize(
        modules,
        compiler_directives={"language_level": 3, "annotation_typing": False},
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": AllOrNothingBuildExt})
