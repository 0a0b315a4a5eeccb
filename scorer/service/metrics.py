"""Metrics every service exports, whatever else it measures."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Gauge


def package_version() -> str:
    try:
        return version("icp-scorer")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def build_info(registry: CollectorRegistry, name: str, documentation: str) -> Gauge:
    """`<name>{version}` = 1: which release a process runs."""
    info = Gauge(name, documentation, ["version"], registry=registry)
    info.labels(package_version()).set(1)
    return info
