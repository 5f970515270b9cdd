"""Checking the workflow's config against its JSON Schema, with one-line errors.

``snakemake.utils.validate`` prints the whole schema when a key is misspelled.
:func:`validate_config` says instead, on one line, where the problem is and
what was expected there::

    config/config.yaml: sweep.are_mib: unknown key; did you mean 'area_mib'? (known: admit_zero, ...)
    config/config.yaml: sweep.area_mib[2]: -1 is less than the minimum of 0

and fills in every default the schema gives, as ``validate(..., set_default=True)``
does. Every error is an :class:`xpipe.errors.InputError`.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from xpipe.errors import InputError

__all__ = ["validate_config"]

#: longest repr of an offending value in a message
MAX_REPR = 80
#: longest "expected" part of a message
MAX_MESSAGE = 240
#: most known keys listed after an unknown one
MAX_KNOWN = 12

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def validate_config(config: dict, schema: dict, source: str = "config") -> dict:
    """Check ``config`` against the JSON Schema ``schema`` and fill in its defaults.

    ``source`` names the config file(s) in the error. Checks, in order: keys
    the schema does not know (with the closest known one), numbers that are
    not finite (NaN, infinities), then the schema itself (the best error
    only). Missing properties that have a ``default`` get a deep copy of it,
    recursively (a default ``{}`` gets its own properties' defaults).
    ``config`` is changed in place and returned.

    Raises :class:`xpipe.errors.InputError` ``(source, key_path, expected)``.
    """
    jsonschema.Draft202012Validator.check_schema(schema)
    _check_keys(config, schema, schema, (), source)
    _check_finite(config, (), source)
    _fill_defaults(config, schema, schema)
    error = best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        where, expected = _describe(error, config)
        raise InputError(source, where, expected)
    return config


# -- key paths and values ----------------------------------------------------


def _key_path(path: tuple) -> str | None:
    """``(("sweep", False), (2, True))`` -> ``sweep.area_mib[2]``; each step is (key, in_list)."""
    out = ""
    for key, in_list in path:
        if in_list:
            out += f"[{key}]"
        elif isinstance(key, str) and _PLAIN_KEY.match(key):
            out += f".{key}" if out else key
        else:
            out += f"[{key!r}]"
    return out or None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def _one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- walking the schema beside the config ------------------------------------


def _resolve(schema: Any, root: dict) -> Any:
    """A local ``$ref`` ("#/$defs/x") merged with its sibling keywords; anything else as is."""
    for _ in range(32):  # a chain of refs, not a loop
        if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
            return schema
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return schema
        target: Any = root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                return schema
        if not isinstance(target, dict):
            return schema
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _views(schema: Any, root: dict) -> list[dict]:
    """The schema objects a value is walked against: the schema itself, plus the
    first alternative of a oneOf/anyOf whose alternatives all have the same
    ``properties`` (other alternatives are left to jsonschema)."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return []
    views = [schema]
    for word in ("oneOf", "anyOf"):
        alts = [_resolve(a, root) for a in schema.get(word) or []]
        if (
            alts
            and all(isinstance(a, dict) and isinstance(a.get("properties"), dict) for a in alts)
            and all(
                a["properties"] == alts[0]["properties"]
                and a.get("additionalProperties", True) == alts[0].get("additionalProperties", True)
                for a in alts
            )
        ):
            views.append(alts[0])
    return views


def _member(schema: dict, word: str) -> dict:
    value = schema.get(word)
    return value if isinstance(value, dict) else {}


def _children(value: Any, schema: dict, root: dict):
    """(key, in_list, child value, child schema or None) for each member of ``value``."""
    if isinstance(value, dict):
        props = _member(schema, "properties")
        patterns = _member(schema, "patternProperties")
        extra = schema.get("additionalProperties", True)
        for key, child in value.items():
            if key in props:
                yield key, False, child, props[key]
                continue
            matched = [s for p, s in patterns.items() if isinstance(key, str) and re.search(p, key)]
            if matched:
                for sub in matched:
                    yield key, False, child, sub
            elif isinstance(extra, dict):
                yield key, False, child, extra
            else:
                yield key, False, child, None
    elif isinstance(value, list):
        prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
        items = schema.get("items")
        for i, child in enumerate(value):
            if i < len(prefix):
                yield i, True, child, prefix[i]
            elif isinstance(items, dict):
                yield i, True, child, items
            elif isinstance(items, list) and i < len(items):  # draft-4 style tuple
                yield i, True, child, items[i]


def _check_keys(value: Any, schema: Any, root: dict, path: tuple, source: str) -> None:
    for view in _views(schema, root):
        if isinstance(value, dict) and view.get("additionalProperties") is False:
            _unknown_keys(value, view, path, source)
        for key, in_list, child, sub in _children(value, view, root):
            if sub is not None:
                _check_keys(child, sub, root, path + ((key, in_list),), source)


def _unknown_keys(value: dict, schema: dict, path: tuple, source: str) -> None:
    props = _member(schema, "properties")
    patterns = _member(schema, "patternProperties")
    known = sorted(str(k) for k in props)
    for key in value:
        if key in props or (isinstance(key, str) and any(re.search(p, key) for p in patterns)):
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        message = "unknown key"
        if close:
            message += f"; did you mean {close[0]!r}?"
        if known:
            listed = ", ".join(known[:MAX_KNOWN]) + (", ..." if len(known) > MAX_KNOWN else "")
            message += f" (known: {listed})"
        else:
            message += " (no keys allowed here)"
        raise InputError(source, _key_path(path + ((key, False),)), message)


def _check_finite(value: Any, path: tuple, source: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(source, _key_path(path), f"{value!r} is not a finite number")
    if isinstance(value, dict):
        for key, child in value.items():
            _check_finite(child, path + ((key, False),), source)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            _check_finite(child, path + ((i, True),), source)


def _fill_defaults(value: Any, schema: Any, root: dict) -> None:
    for view in _views(schema, root):
        if isinstance(value, dict) and isinstance(view.get("properties"), dict):
            for key, sub in view["properties"].items():
                sub = _resolve(sub, root)
                if key not in value and isinstance(sub, dict) and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
        for _key, _in_list, child, sub in _children(value, view, root):
            if sub is not None:
                _fill_defaults(child, sub, root)


# -- jsonschema's errors in one line -----------------------------------------


def _error_path(error: jsonschema.ValidationError, config: Any) -> tuple:
    """The error's path as (key, in_list) steps, read against the config itself."""
    steps = []
    node = config
    for key in error.absolute_path:
        in_list = isinstance(node, list)
        steps.append((key, in_list))
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            node = None
    return tuple(steps)


def _describe(error: jsonschema.ValidationError, config: Any) -> tuple[str | None, str]:
    path = _error_path(error, config)
    instance = error.instance
    word = error.validator
    if word == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        if missing:
            return _key_path(path + ((missing[0], False),)), "required key is missing"
    if word in ("oneOf", "anyOf"):
        alts = error.validator_value if isinstance(error.validator_value, list) else []
        needs = [a["required"] for a in alts if isinstance(a, dict) and set(a) == {"required"}]
        how = "exactly one" if word == "oneOf" else "at least one"
        if needs and len(needs) == len(alts) and all(len(n) == 1 for n in needs):
            names = ", ".join(repr(n[0]) for n in needs)
            return _key_path(path), f"{_short(instance)} needs {how} of the keys {names}"
        return _key_path(path), f"{_short(instance)} does not match {how} of the {len(alts)} allowed forms"
    message = error.message
    full = repr(instance)
    if len(full) > MAX_REPR and full in message:
        message = message.replace(full, _short(instance))
    return _key_path(path), _one_line(message)
