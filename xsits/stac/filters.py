"""One meaning of ``query`` and ``filter`` for STAC APIs and local catalogs.

Owns: the STAC Query extension operators xsits accepts (:data:`OPERATORS`: ``eq``, ``neq``,
``lt``, ``lte``, ``gt``, ``gte``, ``in``, ``startsWith``, ``endsWith``, ``contains``), their
checks (:func:`check_query`), their translation to CQL2 JSON (:func:`query_to_cql2`), and the
parsing of CQL2 filters, JSON or text, with the ``cql2`` library (:func:`parse_filter`). Both
search paths use the same CQL2: a STAC API with the filter extension is sent it, a local
catalog evaluates it with ``cql2``; so a ``query`` means the same everywhere, whichever
operators the API's own query extension implements.
Must not: search, make requests or know about presets (:class:`xsits.stac.query.StacQuery`
holds a search's filters and asks this module to check and translate them).

Examples
--------
>>> query_to_cql2({"platform": {"in": ["Sentinel-2A"]}})
{'op': 'in', 'args': [{'property': 'platform'}, ['Sentinel-2A']]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import cql2

from xsits.errors import QueryError

#: Comparison operators of the STAC Query extension and their CQL2 equivalent.
COMPARISONS: dict[str, str] = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">",
                               "gte": ">="}
#: String operators of the STAC Query extension: the CQL2 ``like`` pattern of a value.
PATTERNS: dict[str, str] = {"startsWith": "{}%", "endsWith": "%{}", "contains": "%{}%"}
#: Every operator accepted in ``query``.
OPERATORS: tuple[str, ...] = (*COMPARISONS, "in", *PATTERNS)

_EXAMPLE = "e.g. query={'eo:cloud_cover': {'lt': 10}}"


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and not (
        isinstance(value, float) and value != value)


def check_query(query: Any) -> dict[str, dict[str, Any]] | None:
    """``query`` checked against the STAC Query extension, as a plain dict (None if empty).

    Parameters
    ----------
    query
        ``{property: {operator: value}}`` with operators of :data:`OPERATORS`.

    Raises
    ------
    xsits.errors.QueryError
        Not a mapping, an unknown operator, or a value the operator cannot take.

    Examples
    --------
    >>> check_query({"s2:mgrs_tile": {"startsWith": "31T"}})
    {'s2:mgrs_tile': {'startsWith': '31T'}}
    >>> check_query({"platform": {"ne": "x"}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xsits.errors.QueryError: query={'platform': {'ne': 'x'}}: operator 'ne' is not ...
    """
    if query is None:
        return None
    if not isinstance(query, Mapping):
        raise QueryError(f"query={query!r} must be a dict {{property: {{operator: value}}}}; "
                         f"{_EXAMPLE}")
    out: dict[str, dict[str, Any]] = {}
    for prop, ops in query.items():
        where = f"query={dict(query)!r}"
        if not isinstance(prop, str) or not prop.strip():
            raise QueryError(f"{where}: property {prop!r} must be a non-empty name; {_EXAMPLE}")
        if not isinstance(ops, Mapping) or not ops:
            raise QueryError(f"{where}: {prop!r} must map to {{operator: value}}, not {ops!r}; "
                             f"{_EXAMPLE}")
        for op, value in ops.items():
            if op not in OPERATORS:
                raise QueryError(f"{where}: operator {op!r} is not one of the STAC Query "
                                 f"extension's {', '.join(OPERATORS)}")
            if op == "in":
                ok = isinstance(value, list | tuple) and len(value) > 0 and all(
                    _scalar(v) for v in value)
                want = "a non-empty list of values"
            elif op in PATTERNS:
                ok, want = isinstance(value, str) and value != "", "a non-empty string"
            else:
                ok, want = _scalar(value), "a number, a string or a boolean"
            if not ok:
                raise QueryError(f"{where}: {prop!r} {op} {value!r} needs {want}")
        out[prop] = {op: list(v) if isinstance(v, tuple) else v for op, v in ops.items()}
    return out or None


def _like_literal(text: str) -> str:
    """``text`` with the CQL2 ``like`` wildcards (``%``, ``_``) and the escape escaped."""
    return re.sub(r"([\\%_])", r"\\\1", text)


def query_to_cql2(query: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any] | None:
    r"""The CQL2 JSON meaning of a checked ``query`` (see :func:`check_query`); None if empty.

    Examples
    --------
    >>> query_to_cql2({"s2:mgrs_tile": {"endsWith": "_1"}})
    {'op': 'like', 'args': [{'property': 's2:mgrs_tile'}, '%\\_1']}
    """
    args = []
    for prop, ops in (query or {}).items():
        for op, value in ops.items():
            lhs = {"property": prop}
            if op in COMPARISONS:
                args.append({"op": COMPARISONS[op], "args": [lhs, value]})
            elif op == "in":
                args.append({"op": "in", "args": [lhs, list(value)]})
            else:
                args.append({"op": "like", "args": [lhs, PATTERNS[op].format(
                    _like_literal(value))]})
    return and_(*args)


def and_(*exprs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The CQL2 conjunction of the given expressions (None ones are left out).

    Examples
    --------
    >>> and_({"op": "=", "args": [1, 1]}, None)
    {'op': '=', 'args': [1, 1]}
    """
    kept = [e for e in exprs if e is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else {"op": "and", "args": kept}


def _cql2_message(err: BaseException) -> str:
    """cql2's (multi-line, pest) parse error as one line: position and what was expected."""
    text = str(err)
    pos = re.search(r"-->\s*(\d+):(\d+)", text)
    expected = re.search(r"=\s*(expected .*)", text)
    if pos and expected:
        return f"at character {pos.group(2)}: {expected.group(1).strip()}"
    return " ".join(text.split()) or type(err).__name__


def parse_filter(filter: Any) -> dict[str, Any] | None:
    """A CQL2 filter (JSON dict, JSON text or CQL2 text) parsed by ``cql2``, as CQL2 JSON.

    Raises
    ------
    xsits.errors.QueryError
        The filter is not valid CQL2, with where it stops making sense.

    Examples
    --------
    >>> parse_filter("eo:cloud_cover < 10")
    {'op': '<', 'args': [{'property': 'eo:cloud_cover'}, 10.0]}
    >>> parse_filter("eo:cloud_cover <")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xsits.errors.QueryError: filter='eo:cloud_cover <' is not valid CQL2 (at character 17: ...
    """
    if filter is None:
        return None
    if isinstance(filter, str):
        text = filter.strip()
        if not text:
            raise QueryError("filter='' is empty; give a CQL2 expression such as "
                             "filter=\"eo:cloud_cover < 10\" or leave it out")
        if text.startswith("{"):
            try:
                filter = json.loads(text)
            except json.JSONDecodeError as err:
                raise QueryError(f"filter={text!r} is not valid CQL2 JSON ({err.msg} at "
                                 f"character {err.pos + 1}); fix the JSON") from None
    elif not isinstance(filter, Mapping):
        raise QueryError(f"filter={filter!r} must be CQL2 text or a CQL2 JSON dict, "
                         "e.g. filter=\"eo:cloud_cover < 10\"")
    try:
        expr = cql2.Expr(filter if isinstance(filter, str) else dict(filter))
        expr.validate()
    except Exception as err:  # cql2 raises plain Exception / ValueError / ValidationError
        raise QueryError(f"filter={filter!r} is not valid CQL2 ({_cql2_message(err)}); fix "
                         "it, e.g. filter=\"eo:cloud_cover < 10\"") from None
    return expr.to_json()
