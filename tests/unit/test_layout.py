"""The package's layout rules, read from the import statements of its source."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "scorer"
SERVICES = ("scorer.stream", "scorer.route", "scorer.collect")
SHARED = ("scorer.kafka", "scorer.service")
PURE = ("scorer.icp", "scorer.scoring", "scorer.models", "scorer.events", "scorer.enrichment")
IO_LIBRARIES = ("aiokafka", "aiohttp", "prometheus_client", "rocksdict")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every module of the package and the modules it imports (at any depth)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[module_name(path)] = names
    return found


def under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_services_never_import_each_other() -> None:
    """The worker, the router and the collector share only the toolkit and the core."""
    for module, names in imports().items():
        own = next((s for s in SERVICES if under(module, (s,))), None)
        if own is None:
            continue
        others = [n for n in names if under(n, SERVICES) and not under(n, (own,))]
        assert not others, f"{module} imports another service: {others}"


def test_the_shared_toolkit_imports_no_service() -> None:
    """scorer.kafka and scorer.service serve every service, so they import none."""
    for module, names in imports().items():
        if under(module, SHARED):
            wrong = [n for n in names if under(n, SERVICES)]
            assert not wrong, f"{module} imports a service: {wrong}"


def test_the_pure_core_does_no_io() -> None:
    """ICPs, scoring, models, events and enrichment import no Kafka, web or metrics client."""
    checked = 0
    for module, names in imports().items():
        if under(module, PURE):
            checked += 1
            wrong = [n for n in names if under(n, IO_LIBRARIES) or under(n, (*SERVICES, *SHARED))]
            assert not wrong, f"{module} (pure core) imports {wrong}"
    assert checked >= 10, "the pure core's modules were not found"
