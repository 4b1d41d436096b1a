"""Validation of responses against the CAMARA OpenAPI files in shared/ (``../shared/specs/camara/``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "camara"


@lru_cache(maxsize=4)
def load(name: str) -> dict[str, Any]:
    """One spec file, parsed."""
    with (SPECS / name).open(encoding="utf-8") as handle:
        spec: dict[str, Any] = yaml.safe_load(handle)
    return spec


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    """``node`` with every local ``$ref`` inlined (the CAMARA files have no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(spec, target)
        return {key: _resolve(spec, value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(spec, item) for item in node]
    return node


def response_schema(name: str, path: str, status: int, *, method: str = "post") -> dict[str, Any]:
    """The JSON schema of the response ``status`` of ``METHOD path`` (429 from the spec's common errors when
    the file does not list it, as its description allows)."""
    spec = load(name)
    responses = spec["paths"][path][method]["responses"]
    response = responses.get(str(status))
    if response is None and status == 429:
        response = load("sim-swap.yaml")["components"]["responses"]["Generic429"]
        return dict(_resolve(load("sim-swap.yaml"), response)["content"]["application/json"]["schema"])
    assert response is not None, f"{path} does not document status {status}"
    return dict(_resolve(spec, response)["content"]["application/json"]["schema"])


def assert_conforms(name: str, path: str, status: int, body: Any, *, method: str = "post") -> None:
    """Raise when ``body`` is not what the spec says ``METHOD path`` answers with ``status``."""
    OAS30Validator(response_schema(name, path, status, method=method)).validate(body)


def schema(name: str, component: str) -> dict[str, Any]:
    """A schema of the spec's components, with its references inlined."""
    spec = load(name)
    return dict(_resolve(spec, spec["components"]["schemas"][component]))


def assert_schema(name: str, component: str, body: Any) -> None:
    """Raise when ``body`` does not match the component schema."""
    OAS30Validator(schema(name, component)).validate(body)
