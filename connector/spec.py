"""The connector manifest that ships beside this package: loading it and checking it."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

__all__ = ["MANIFEST_PATH", "SCHEMA_PATH", "load_manifest", "validate_manifest", "handler_names"]

_ROOT = Path(__file__).resolve().parent.parent / "manifest"
MANIFEST_PATH = _ROOT / "connector.json"
SCHEMA_PATH = _ROOT / "schema.json"


@lru_cache(maxsize=4)
def load_manifest(path: str | None = None) -> dict[str, Any]:
    """Load the manifest (the shipped one unless a path is given)."""
    return json.loads(Path(path or MANIFEST_PATH).read_text())


def handler_names(manifest: dict[str, Any]) -> set[str]:
    """Every handler the manifest names (operations, connection test, dynamic fields)."""
    names = {manifest["connection"]["test"]["handler"]}
    for kind in ("triggers", "actions"):
        for item in manifest.get(kind, []):
            names.update(item.get("operations", {}).values())
            for field in item.get("input", []):
                for key in ("pick_list", "dynamic_schema"):
                    if key in field:
                        names.add(field[key]["handler"])
    return names


def _sample_errors(fields: list[dict[str, Any]], where: str) -> list[str]:
    python_types = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list}
    errors = []
    for field in fields:
        sample = field.get("sample")
        if sample is not None and not isinstance(sample, python_types[field["type"]]):
            errors.append(f"{where}.{field['name']}: sample {sample!r} is not of type {field['type']}")
        errors += _sample_errors(field.get("properties", []), f"{where}.{field['name']}")
    return errors


def validate_manifest(manifest: dict[str, Any], *, handlers: set[str] | None = None) -> list[str]:
    """Return every problem with a manifest: JSON Schema violations, unknown handlers, bad samples, duplicate ids."""
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = Draft202012Validator(schema)
    errors = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))
    ]
    try:  # report the checks below too, not only the schema errors, so every problem shows at once
        for kind in ("triggers", "actions"):
            ids = [item["id"] for item in manifest[kind]]
            errors += [f"{kind}: id {i!r} is declared twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
            for item in manifest[kind]:
                errors += _sample_errors(item["output"], f"{kind}.{item['id']}.output")
        if handlers is not None:
            errors += [f"handler {name!r} is named in the manifest but not implemented in connector/" for name in sorted(handler_names(manifest) - handlers)]
    except (KeyError, TypeError, AttributeError):
        if not errors:
            raise
        # too malformed to walk any further; the schema errors above say where
    return errors
