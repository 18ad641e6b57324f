"""The JSON Schema of every policy file, generated from the models (policy/schema.json)."""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from opsrunner.policy.models import FILE_MODELS

SCHEMA_ID = "https://opsrunner.example.com/policy/schema.json"


def policy_schema() -> dict[str, Any]:
    """One schema document: `$defs` for every model, `anyOf` the file kinds, `x-files` the map."""
    models = list(FILE_MODELS.values())
    refs, document = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/$defs/{model}"
    )
    files = {pattern: refs[(model, "validation")]["$ref"] for pattern, model in FILE_MODELS.items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "opsrunner policy file",
        "description": (
            "Any file under policy/. x-files maps each file (pattern) to its definition; "
            "editors can point a file at '#/$defs/<Model>'."
        ),
        "x-files": files,
        "anyOf": [{"$ref": ref} for ref in files.values()],
        "$defs": document.get("$defs", {}),
    }


def render_schema() -> str:
    """The schema as the exact text written to policy/schema.json."""
    return json.dumps(policy_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
