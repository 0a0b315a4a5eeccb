"""Reading ICP documents from YAML or JSON, with errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from scorer.errors import InvalidICPError
from scorer.icp.document import ICPDocument


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``('fit', 1, 'between')`` -> ``fit[1].between``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "in_":
            out += ".in"
        elif not str(part).startswith(("function-", "tagged-union")):
            out += f".{part}" if out else str(part)
    return out or "(document)"


def validation_problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{_key_path(item['loc'])}: {message}")
    return problems


def parse_icp(data: Any, source: str = "") -> ICPDocument:
    """Validate a parsed ICP mapping."""
    if not isinstance(data, dict):
        raise InvalidICPError(["(document): expected a mapping of keys to values"], source)
    try:
        return ICPDocument.model_validate(data)
    except ValidationError as exc:
        raise InvalidICPError(validation_problems(exc), source) from None


def loads_icp(text: str | bytes, source: str = "") -> ICPDocument:
    """Parse ICP text: JSON when it looks like JSON, else YAML (a superset)."""
    stripped = text.lstrip()
    try:
        looks_json = stripped[:1] in ("{", b"{")
        data = orjson.loads(text) if looks_json else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise InvalidICPError([f"(document): not valid YAML or JSON{where}"], source) from None
    return parse_icp(data, source)


def load_icp(path: str | Path) -> ICPDocument:
    """Read and validate an ICP file."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InvalidICPError([f"(file): cannot read ({exc.strerror})"], str(path)) from None
    return loads_icp(text, str(path))
