"""Validation errors said in the API's words: what a field expects, read from the request's
own schema in the OpenAPI document. A discriminator's problem lists the kinds it allows, an
unknown field suggests the closest known name, a missing body shows the body expected, and of
the alternatives of a union only the one the request came closest to is reported."""

from __future__ import annotations

import difflib
import json
from typing import Any

Schema = dict[str, Any]
# Pydantic's error types that say the input does not have a union alternative's shape.
SHAPE_ERRORS = frozenset({"missing", "extra_forbidden"})
OBJECT_ERRORS = frozenset({"model_attributes_type", "dict_type", "model_type"})
LONGEST_ECHO = 40  # a name or a tag longer than this is not repeated back
DEEPEST = 8  # unions within unions followed this far (a recursive schema ends the walk)


class BodySchema:
    """The JSON schema of one operation's request body, walked along an error's location."""

    def __init__(self, spec: Schema, operation: Schema) -> None:
        self.spec = spec
        content = (operation.get("requestBody") or {}).get("content") or {}
        self.media = list(content)
        json_media: Schema = content.get("application/json") or next(iter(content.values()), {})
        self.root: Schema = json_media.get("schema") or {}
        self.example = json_media.get("example")

    def resolve(self, node: Any) -> Schema:
        """``node`` with its ``$ref`` followed."""
        for _ in range(32):
            if not (isinstance(node, dict) and "$ref" in node):
                break
            target: Any = self.spec
            for key in str(node["$ref"]).removeprefix("#/").split("/"):
                target = target.get(key, {}) if isinstance(target, dict) else {}
            node = target
        return node if isinstance(node, dict) else {}

    def branches(self, node: Schema, depth: int = 0) -> list[Schema]:
        """The alternatives of a union (nested unions flattened), or the node itself."""
        found: list[Schema] = []
        for key in ("oneOf", "anyOf"):
            for branch in node.get(key, ()):
                resolved = self.resolve(branch)
                nested = ("oneOf" in resolved or "anyOf" in resolved) and depth < DEEPEST
                found.extend(self.branches(resolved, depth + 1) if nested else [resolved])
        return found or [node]

    def tags(self, node: Schema) -> list[str]:
        """The values of the discriminator ``kind`` a union at ``node`` allows, in order."""
        tags: list[str] = []
        for branch in self.branches(node):
            kind = self.resolve((branch.get("properties") or {}).get("kind"))
            for value in [kind.get("const"), *kind.get("enum", ())]:
                if isinstance(value, str) and value not in tags:
                    tags.append(value)
        return tags

    def step(self, node: Schema, part: str | int, depth: int = 0
             ) -> tuple[Schema, bool] | None:
        """The schema one step down from ``node`` and whether the step is a field's (a property
        or an item), not a union's alternative named by its tag or its schema's name."""
        if isinstance(part, int):
            items = node.get("items")
            return (self.resolve(items), True) if items is not None else None
        properties = node.get("properties") or {}
        if part in properties:
            return self.resolve(properties[part]), True
        mapping = (node.get("discriminator") or {}).get("mapping") or {}
        if part in mapping:
            return self.resolve({"$ref": mapping[part]}), False
        for key in ("oneOf", "anyOf"):
            for branch in node.get(key, ()):
                if isinstance(branch, dict) and str(branch.get("$ref", "")).endswith(f"/{part}"):
                    return self.resolve(branch), False
        alternatives = [b for b in self.branches(node) if b is not node]
        for branch in alternatives:
            if part in self.tags(branch):
                return branch, False
        for branch in alternatives if depth < DEEPEST else ():
            if (found := self.step(branch, part, depth + 1)) is not None:
                return found
        return None

    def at(self, loc: list[Any]) -> tuple[Schema | None, list[Any]]:
        """The schema at a raw location (``["body", "optimizer", "adam", "lr"]``), if known,
        and the location as the request names it (``["body", "optimizer", "lr"]``)."""
        node: Schema | None = self.resolve(self.root)
        named: list[Any] = loc[:1] if loc[:1] == ["body"] else []
        for part in loc[len(named):]:
            found = self.step(node, part) if node is not None else None
            if found is None:
                node = None
                named.append(part)
                continue
            node, is_field = found
            if is_field:
                named.append(part)
        return node, named

    def expected_body(self) -> str:
        """What a missing body should have been, for its problem."""
        others = [m for m in self.media if m != "application/json"]
        if self.example is not None:
            text = f"a JSON body such as {json.dumps(self.example, separators=(', ', ': '))}"
        else:
            text = "a JSON body" if "application/json" in self.media else "a body"
        if others:
            text += f" (or {', '.join(others)})"
        return f"this request needs {text}"


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def closest(name: str, known: list[str]) -> str | None:
    """The known name ``name`` is most likely a misspelling or an abbreviation of."""
    lowered = {k.lower(): k for k in known}
    found = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    if found:
        return lowered[found[0]]
    initials = [k for k in known if "_" in k and "".join(p[0] for p in k.split("_") if p)
                == name.lower()]
    if len(initials) == 1:  # lr: learning_rate
        return initials[0]
    within = [k for k in known if len(name) >= 3 and (name.lower() in k.lower() or
                                                      k.lower() in name.lower())]
    return within[0] if len(within) == 1 else None


def _discriminator(ctx: dict[str, Any]) -> str:
    return str(ctx.get("discriminator", "kind")).strip("'\"()") or "kind"


def _clean(loc: list[Any], labels: frozenset[str]) -> list[Any]:
    return [p for p in loc if isinstance(p, int) or p not in labels]


def closest_alternatives(raw: list[dict[str, Any]], labels: frozenset[str]
                         ) -> list[dict[str, Any]]:
    """The errors of a union's alternatives kept only for the alternative the input fits best
    (fewest missing or unknown fields): ``{"fraction": 1.5}`` is a fraction out of range, not
    also a validation dataset without its ``dataset_id``."""
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for error in raw:
        loc = list(error.get("loc", ()))
        for i, part in enumerate(loc):
            if isinstance(part, str) and part in labels:
                groups.setdefault(tuple(loc[:i]), {}).setdefault(part, []).append(error)
                break
    dropped: set[int] = set()
    for alternatives in groups.values():
        if len(alternatives) < 2:
            continue
        fit = {name: sum(e.get("type") in SHAPE_ERRORS for e in errors)
               for name, errors in alternatives.items()}
        best = min(fit.values())
        for name, errors in alternatives.items():
            if fit[name] > best:
                dropped.update(id(e) for e in errors)
    return [e for e in raw if id(e) not in dropped]


def reword(error: dict[str, Any], schema: BodySchema | None,
           labels: frozenset[str]) -> tuple[list[Any], str] | None:
    """A better location and message for one of pydantic's errors, or None to keep its own."""
    kind = error.get("type")
    raw_loc = list(error.get("loc", ()))
    loc = _clean(raw_loc, labels)
    ctx = error.get("ctx") or {}
    given = error.get("input")
    node, named = schema.at(raw_loc) if schema is not None else (None, loc)
    loc = _clean(named, labels)
    tags = schema.tags(node) if schema is not None and node is not None else []
    if kind == "union_tag_invalid":
        field = _discriminator(ctx)
        tag = str(ctx.get("tag", ""))
        allowed = tags or [t.strip().strip("'") for t in str(ctx.get("expected_tags", ""))
                           .split(",") if t.strip()]
        shown = f'"{tag}"' if len(tag) <= LONGEST_ECHO else "this value"
        message = f"{shown} is not one of the allowed values {_quoted(allowed)}"
        guess = closest(tag, allowed)
        return [*loc, field], message + (f'; did you mean "{guess}"?' if guess else "")
    if kind == "union_tag_not_found":
        field = _discriminator(ctx)
        message = f"required: one of {_quoted(tags)}" if tags else "required"
        if isinstance(given, dict):
            named = [(k, v) for k, v in given.items() if isinstance(v, str) and v in tags]
            if named:
                key, value = named[0]
                message += (f'; did you mean "{field}": "{value}" instead of '
                            f'"{key}": "{value}"?')
        return [*loc, field], message
    if kind in OBJECT_ERRORS and tags:
        field = "kind"
        if isinstance(given, str) and given in tags:
            return loc, f'expected an object such as {{"{field}": "{given}"}}, not a string'
        return loc, f'expected an object with "{field}": one of {_quoted(tags)}'
    if kind == "extra_forbidden" and raw_loc:
        name = str(raw_loc[-1])
        parent = schema.at(raw_loc[:-1])[0] if schema is not None else None
        known = list((parent or {}).get("properties") or {})
        shown = f'"{name}"' if len(name) <= LONGEST_ECHO else "this field"
        if not known:
            return loc, f"unknown field {shown}"
        guess = closest(name, known)
        hint = f'did you mean "{guess}"?' if guess else f"the fields are {_quoted(known)}"
        return loc, f"unknown field {shown}; {hint}"
    if kind == "missing" and loc == ["body"] and schema is not None:
        return loc, schema.expected_body()
    if loc != _clean(raw_loc, labels):  # a union's tag left out of the location
        return loc, str(error.get("msg", "invalid"))
    return None
