"""JSON Schemas of every document, generated from the pydantic models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from scorer.icp.document import ICPDocument
from scorer.models import DOCUMENTS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every input and output document."""
    models: dict[str, type[BaseModel]] = {**DOCUMENTS, "icp": ICPDocument}
    out = {}
    for name, model in models.items():
        schema = {"$schema": SCHEMA_DIALECT, **model.model_json_schema(by_alias=True)}
        out[f"{name}.schema.json"] = schema
    return out


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = folder / name
        path.write_bytes(render(schema))
        written.append(path)
    return written


def stale_schemas(folder: Path) -> list[str]:
    """Names of schema files missing from `folder` or differing from the models."""
    stale = []
    for name, schema in schemas().items():
        path = folder / name
        if not path.exists() or path.read_bytes() != render(schema):
            stale.append(name)
    return stale
