"""``KEY=VALUE`` command-line items -> typed keyword arguments of a function.

One helper for every ``--problem-arg`` / ``--set`` style flag: the target
type comes from the function's signature (its annotation, else its
default's type), so ``normalise=False`` is the boolean ``False`` (not the
truthy string ``"False"``), ``box=64`` an ``int`` and ``r_max=0.16`` a
``float``; a key the function does not take is refused with the list of keys
it does take.  Functions taking ``**kwargs`` accept any key, typed by the
same literal rules (booleans, ``none``, JSON numbers, else the string).
"""
from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable

_TRUE, _FALSE, _NONE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}, {"none", "null"}


def literal(text: str):
    """Untyped value: ``true/false`` (any case) -> bool, ``none`` -> None, JSON numbers/lists, else str."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in _NONE:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _kinds(param: inspect.Parameter) -> set[str]:
    """The type names a parameter accepts, from its (string) annotation or its default."""
    ann = param.annotation
    if ann is not inspect.Parameter.empty:
        text = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
        return {part.strip() for part in text.split("|")}
    if param.default is not inspect.Parameter.empty and param.default is not None:
        return {type(param.default).__name__}
    return set()


def coerce(text: str, kinds: set[str], key: str, flag: str):
    """``text`` as the first of ``kinds`` it parses as (None, bool, int, float, str), else an error."""
    low = text.strip().lower()
    if not kinds:
        return literal(text)
    if "None" in kinds and low in _NONE:
        return None
    if "bool" in kinds:
        if low in _TRUE | _FALSE:
            return low in _TRUE
        if kinds <= {"bool", "None"}:
            raise ValueError(f"{flag} {key}={text!r}: expected true or false")
    if "int" in kinds:
        try:
            return int(text)
        except ValueError:
            if kinds <= {"int", "None"}:
                raise ValueError(f"{flag} {key}={text!r}: expected an integer") from None
    if "float" in kinds:
        try:
            return float(text)
        except ValueError:
            if kinds <= {"float", "int", "None"}:
                raise ValueError(f"{flag} {key}={text!r}: expected a number") from None
    if kinds & {"str", "os.PathLike", "Path"}:
        return text
    return literal(text)


def typed_kwargs(func: Callable, items: Iterable[str], flag: str,
                 reserved: Iterable[str] = ()) -> dict:
    """Parse ``KEY=VALUE`` items into keyword arguments of ``func``, typed by its signature.

    ``reserved`` keys are set by other flags (``scale``, ``seed``) and refused
    here.  Raises ``ValueError`` naming the flag for a malformed item, an
    unknown key or a value of the wrong type.
    """
    params = inspect.signature(func).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in set(reserved)]
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
        if key in set(reserved):
            raise ValueError(f"{flag} {key}: set it with --{key} instead")
        if key not in params or params[key].kind is inspect.Parameter.VAR_KEYWORD:
            if not open_ended:
                raise ValueError(f"{flag} {key}: unknown key; {func.__name__} takes "
                                 f"{', '.join(named)}")
            out[key] = literal(val)
            continue
        out[key] = coerce(val, _kinds(params[key]), key, flag)
    return out
