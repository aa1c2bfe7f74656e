"""The base of every typed result: one field = one line (type, unit, meaning), validation on load with a
one-line error naming the field, plain JSON out, and the JSON Schema the package ships.

Why pydantic v2 (not dataclasses with a generator): it validates nested objects, lists and unions on load
and reports *where* a value is wrong (`layers[3].slots`), and it writes JSON Schema from the same class
(`model_json_schema()`); a dataclass generator would re-implement both. It is the library the field uses
for typed outputs (FastAPI, the Hugging Face Hub's cards), and it was installed already.

Conventions every result class follows:
- `name: T = field(unit, meaning)` is a field every writer emits (required); `name: T = optional(unit,
  meaning)` a field some runs emit and others leave out (absent, not null: `T | None` only where a writer
  writes null). The unit is `-` for none.
- Unknown fields are kept (`extra="allow"`): readers ignore what they do not know, and a file written by a
  newer version still loads. `tests/test_output_compat.py` checks that every field today's writers emit is
  declared, so a field cannot be added without its line here.
- Writers build their dict as before and pass it through `Class.dump(data)`: validated (a wrong type is our
  bug, exit 1) and returned as the JSON it writes, with only the fields the writer gave.
- Readers call `Class.load(path)` or `Class.from_data(data, source)`: strict types (a number written as a
  string is refused) and a `TightCompressError` of one line, `report.json: layers[3].slots: expected an
  integer, got 'x'`, for bad input (exit 2).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tightcompress.errors import TightCompressError

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def field(unit: str, meaning: str, **constraints: Any) -> Any:
    """A field every writer of the result emits: its unit (`-` for none) and one-line meaning."""
    return Field(description=meaning, json_schema_extra={"x-unit": unit}, **constraints)


def optional(unit: str, meaning: str, **constraints: Any) -> Any:
    """A field only some runs emit (absent otherwise; reads as None)."""
    return Field(None, description=meaning, json_schema_extra={"x-unit": unit}, **constraints)


class Result(BaseModel):
    """A typed output, or a part of one. Subclasses declare fields with `field` and `optional`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())

    schema_name: ClassVar[str | None] = None  # the shipped schema's name (`pack`), on top-level results

    @classmethod
    def dump(cls, data: dict[str, Any]) -> dict[str, Any]:
        """A writer's dict through the class: the JSON to write (the fields given, validated).

        Raises ValidationError on a wrong type: a writer bug, not bad input."""
        return cls.model_validate(data).to_json()

    def to_json(self) -> dict[str, Any]:
        """The plain JSON this result is written as (fields left out stay out)."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)

    def undeclared(self, prefix: str = "") -> list[str]:
        """Paths of the fields this result holds that no class declares (`layers[0].foo`): kept on load,
        but a writer must declare every field it writes (a test checks)."""
        found = [f"{prefix}{name}" for name in (self.model_extra or {})]
        for name in type(self).model_fields:
            found += _undeclared(getattr(self, name), f"{prefix}{name}")
        return found

    @classmethod
    def from_data(cls, data: Any, source: str | os.PathLike[str]) -> Self:
        """Validate data read from `source` (strict: a string is not a number); bad data is one line."""
        try:
            return cls.model_validate(data, strict=True)
        except ValidationError as exc:
            raise TightCompressError(f"{source}: {describe(exc, cls)}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read and validate a JSON file of this result; a missing, unreadable or wrong file is one line."""
        return cls.from_data(read_json(path), path)


def _undeclared(value: Any, path: str) -> list[str]:
    if isinstance(value, Result):
        return value.undeclared(path + ".")
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _undeclared(item, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _undeclared(item, f"{path}.{key}")]
    return []


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON value in `path`; not found, unreadable or not JSON is one line naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TightCompressError(f"not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise TightCompressError(f"{path}: not a readable JSON file ({exc})") from None
    except RecursionError:  # nested deeper than Python's stack (100,000 levels)
        raise TightCompressError(f"{path}: not a readable JSON file (nested too deeply)") from None


# ------------------------------------------------------------------------------------- error messages
_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "string_type": "a string", "bool_type": "true or false", "bool_parsing": "true or false",
    "list_type": "a list", "dict_type": "an object", "model_type": "an object", "model_attributes_type":
    "an object", "none_required": "null", "missing": None, "extra_forbidden": None,
}  # fmt: skip
_TAGS = ("int", "str", "float", "bool", "none", "list[", "dict[", "function-", "constrained-", "literal[")


def _is_tag(part: Any) -> bool:
    """A union member's tag in an error location (`int`, `PackLayer`), not a field or an index."""
    if not isinstance(part, str):
        return False
    return part in _TAGS or part.startswith(_TAGS[5:]) or (part[:1].isupper() and part in _result_names())


def _result_names() -> set[str]:
    names, todo = set(), [Result]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if _is_tag(part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first problem of a validation error as `path: expected ..., got ...` (one line); a wrong value
    before a missing field. Errors of the members of one union at one place are merged, and a field that
    may be null (of `model`, the class validated) says so: `expected an integer, a string or null`."""
    errors = exc.errors(include_url=False)
    # A wrong value names the problem better than a missing field: report it first.
    first = next((e for e in errors if e["type"] != "missing"), errors[0])
    where = _path(first["loc"])
    if first["type"] == "missing":
        return f"{where}: missing (a required field)"
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    same = [e for e in errors if _path(e["loc"]) == where and e["type"] not in ("missing", "extra_forbidden")]
    wanted: list[str] = []
    for error in same:
        expected = _EXPECTED.get(error["type"])
        if expected is None:
            if error["type"] == "literal_error":
                expected = (error.get("ctx") or {}).get("expected", "another value")
            else:
                expected = error["msg"][0].lower() + error["msg"][1:]
                expected = expected.removeprefix("input should be ")
        if expected not in wanted:
            wanted.append(expected)
    if "null" not in wanted and model is not None and _nullable(model, first["loc"]):
        wanted.append("null")
    text = wanted[0] if len(wanted) == 1 else ", ".join(wanted[:-1]) + " or " + wanted[-1]
    return f"{where}: expected {text}, got {_shown(first['input'])}"


def _nullable(model: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    """Whether the field at `loc` (a validation error's location in `model`) accepts null."""
    current: Any = model
    for part in (p for p in loc if not _is_tag(p)):
        union = get_origin(current) in (Union, UnionType)
        options = [a for a in get_args(current) if a is not type(None)] if union else [current]
        inner = next((a for a in options if isinstance(a, type) and issubclass(a, BaseModel)), options[0])
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            info = inner.model_fields.get(part) or next(
                (f for f in inner.model_fields.values() if f.alias == part), None
            )
            if info is None:
                return False
            current = info.annotation
        elif get_origin(inner) in (list, dict):
            current = get_args(inner)[-1]
        else:
            return False
    return type(None) in get_args(current)


# ---------------------------------------------------------------------------------------- JSON Schema
def json_schema(cls: type[Result]) -> dict[str, Any]:
    """The self-contained JSON Schema (draft 2020-12) of a top-level result, as shipped in `schemas/`:
    nested classes inlined (no `$ref`), `T | None` as `"type": [T, "null"]`, no pydantic titles."""
    raw = cls.model_json_schema(mode="validation")
    defs = raw.pop("$defs", {})

    def clean(node: Any) -> Any:
        if isinstance(node, list):
            return [clean(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        if "$ref" in node:
            target = defs[node.pop("$ref").split("/")[-1]]
            node = {**target, **node}  # the field's own meaning and unit win over the class docstring
        if "allOf" in node and len(node["allOf"]) == 1:
            node = {**clean(node.pop("allOf")[0]), **node}
        node.pop("title", None) if isinstance(node.get("title"), str) else None
        node.pop("default", None)
        if node.get("additionalProperties") is True:
            del node["additionalProperties"]
        out = {key: clean(value) for key, value in node.items() if key != "properties"}
        if "properties" in node:  # property names map to schemas: clean each, never drop a name
            out["properties"] = {name: clean(child) for name, child in node["properties"].items()}
        if "anyOf" in out:
            members = out["anyOf"]
            simple = all(set(m) == {"type"} and isinstance(m["type"], str) for m in members)
            objects = [m for m in members if m.get("type") == "object"]
            if simple:
                del out["anyOf"]
                out = {"type": [m["type"] for m in members], **out}
            elif len(members) == 2 and len(objects) == 1 and {"type": "null"} in members:
                del out["anyOf"]
                out = {**objects[0], **out, "type": ["object", "null"]}
        return out

    body = clean(raw)
    body.pop("title", None)
    body.pop("description", None)
    description = " ".join((cls.__doc__ or "").split())
    head = {"$schema": DRAFT, "$id": f"tightcompress/{cls.schema_name}.schema.json", "title": cls.schema_name}
    return {**head, "description": description, **body}


class Versioned(Result):
    """The version stamp of a report (pack, simulate, compress, area)."""

    tightcompress_version: str = field("-", "version of tightcompress that wrote the file")
    report_version: Literal[1] = field("-", "report format version; readers refuse other versions")
