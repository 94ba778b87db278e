"""The runtime half of the safe evaluator: builtins, operators and methods that check sizes first.

A C builtin cannot be stopped once it runs, so every operation whose cost or result size is
not bounded by the values it is given is refused *before* it starts (see `core/budget.py`):

- ``range`` longer than ``MAX_LENGTH``; ``*`` building a sequence past it, or an integer past
  ``MAX_INT_BITS`` bits; ``+`` concatenating past it; ``%`` formatting with a width or
  precision past it; f-string format specs likewise;
- ``str.join``/``replace``/``center``/``ljust``/``rjust``/``zfill`` whose result would pass it;
- ``str()``, f-string fields and ``%`` arguments whose text would pass it (values that share
  their parts, like ``[x] * 1000``, are counted with every repetition);
- builtins that walk a sized argument (``sum``, ``sorted``, ``min``, ``list``, ``map``, ...)
  charge its length to the current `Budget` first, so repeated walks use up the budget.

The wrappers stand in for the builtins of the same name; ``isinstance`` maps them back to the
real types (``isinstance(x, list)`` works), and the type wrappers carry the real type's allowed
methods (``map(str.lower, xs)`` works; ``str.join`` is guarded too).
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable
from typing import Any

from octopipe.core.budget import (
    MAX_LENGTH,
    ResourceLimitExceeded,
    check_format_spec,
    check_length,
    check_printf,
    check_text_size,
    current,
)

MAX_INT_BITS = 100_000
"""Largest integer, in bits, that ``**``, ``*``, ``pow()`` and ``<<`` may produce (about 30,000
digits)."""

_SMALL = 64  # walks shorter than this are not worth a charge: each sits inside a ticked step
_SEQUENCES = (str, list, tuple, bytes)
_SIZED = frozenset(
    {
        str,
        bytes,
        list,
        tuple,
        dict,
        set,
        frozenset,
        range,
        type({}.keys()),
        type({}.values()),
        type({}.items()),
    }
)


def _charge(*values: Any) -> None:
    """Charge the length of every sized value about to be walked (one-shot iterators were
    charged when they were made)."""
    total = 0
    for value in values:
        if type(value) in _SIZED:
            total += len(value)
    if total > _SMALL:
        current().charge(total)


# --- operators ------------------------------------------------------------------------------


def guarded_pow(base: Any, exp: Any, mod: Any = None) -> Any:
    """``pow()`` and ``**``, refusing integer results over `MAX_INT_BITS` bits."""
    if mod is not None:
        return builtins.pow(base, exp, mod)  # modular exponentiation stays small
    if isinstance(base, int) and isinstance(exp, int) and exp > 0:
        bits = abs(base).bit_length()
        if bits > 1 and (bits - 1) * exp > MAX_INT_BITS:
            raise ResourceLimitExceeded(f"the result of ** would exceed {MAX_INT_BITS:,} bits")
    return base**exp


def guarded_lshift(value: Any, shift: Any) -> Any:
    """``<<``, refusing integer results over `MAX_INT_BITS` bits."""
    if (
        isinstance(value, int)
        and isinstance(shift, int)
        and value
        and shift > 0
        and value.bit_length() + shift > MAX_INT_BITS
    ):
        raise ResourceLimitExceeded(f"the result of << would exceed {MAX_INT_BITS:,} bits")
    return value << shift


def guarded_mul(left: Any, right: Any) -> Any:
    """``*``: sequence repetition within `MAX_LENGTH`, integer products within the bit limit."""
    kind = type(left)
    other = type(right)
    if kind is int and other is int:
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise ResourceLimitExceeded(f"the result of * would exceed {MAX_INT_BITS:,} bits")
        return left * right
    if kind is float or other is float:
        return left * right
    if kind in _SEQUENCES and isinstance(right, int):
        _repeat_check(left, right)
    elif other in _SEQUENCES and isinstance(left, int):
        _repeat_check(right, left)
    return left * right


def _repeat_check(sequence: Any, times: int) -> None:
    length = len(sequence) * times
    if length > _SMALL:
        check_length(length, f"{type(sequence).__name__} * {times:,}")
        current().charge(length)


def guarded_add(left: Any, right: Any) -> Any:
    """``+``: concatenation within `MAX_LENGTH` (a doubling in a loop is stopped)."""
    kind = type(left)
    if kind is int or kind is float:
        return left + right
    if kind in _SEQUENCES and type(right) is kind:
        length = len(left) + len(right)
        if length > _SMALL:
            check_length(length, f"{kind.__name__} + {kind.__name__}")
            current().charge(length)
    return left + right


def guarded_mod(left: Any, right: Any) -> Any:
    """``%``: printf-style formatting with widths and argument text within `MAX_LENGTH`."""
    if type(left) is str or type(left) is bytes:
        check_printf(left, right)
    return left % right


def guarded_text(value: Any) -> Any:
    """An f-string field: ``value`` unchanged once its text is known to fit."""
    check_text_size(value, "an f-string field")
    return value


def guarded_spec(spec: str) -> str:
    """An f-string field's computed format spec, once its width and precision fit."""
    return check_format_spec(spec)


# --- methods --------------------------------------------------------------------------------


def _padding(method: Callable[..., str], name: str, text_len: Callable[[], int]) -> Callable:
    def padded(width: Any, *fill: Any) -> str:
        if isinstance(width, int) and width > _SMALL:
            check_length(width, f"str.{name}({width:,})")
            current().charge(max(0, width - text_len()))
        return method(width, *fill)

    return padded


def _joiner(separator: str) -> Callable[[Any], str]:
    def join(iterable: Any) -> str:
        return _checked_join(separator, iterable)

    return join


def _checked_join(separator: Any, iterable: Any) -> Any:
    parts = iterable if type(iterable) is list or type(iterable) is tuple else list(iterable)
    if len(parts) > 1 and isinstance(separator, str):
        try:
            total = sum(map(len, parts)) + len(separator) * (len(parts) - 1)
        except TypeError:
            total = 0  # not all strings: join raises TypeError at once
        if total > _SMALL:
            check_length(total, "str.join()")
            current().charge(total // 8 + len(parts))
    return separator.join(parts)


def _replacer(text: str) -> Callable[..., str]:
    def replace(old: Any, new: Any, count: Any = -1) -> str:
        if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
            found = len(text) + 1 if not old else text.count(old)
            if isinstance(count, int) and count >= 0:
                found = min(found, count)
            length = len(text) + found * (len(new) - len(old))
            if length > _SMALL:
                check_length(length, "str.replace()")
                current().charge(length // 8)
        return text.replace(old, new, count)

    return replace


def _unbound(name: str) -> Callable[..., Any]:
    """``str.name`` called as a function (``str.center(s, 9)``), guarded like the method."""

    def call(text: Any, *args: Any) -> Any:
        if not isinstance(text, str):
            return getattr(str, name)(text, *args)  # the usual TypeError
        return guarded_attribute(text, name)(*args)

    call.__name__ = name
    return call


GUARDED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "join", "replace"})
"""Attribute names whose access goes through `guarded_attribute` (see `core/safe_ast.py`)."""


def guarded_attribute(obj: Any, name: str) -> Any:
    """``obj.name`` for a name in `GUARDED_METHODS`: string methods come back size-checked."""
    if not isinstance(obj, str):
        return getattr(obj, name)
    if name == "join":
        return _joiner(obj)
    if name == "replace":
        return _replacer(obj)
    return _padding(getattr(obj, name), name, obj.__len__)


# --- builtins -------------------------------------------------------------------------------


def bounded_range(*args: Any) -> range:
    result = range(*args)
    try:
        length = len(result)
    except OverflowError:
        length = MAX_LENGTH + 1
    if length > MAX_LENGTH:
        raise ResourceLimitExceeded(
            f"range({', '.join(map(str, args))}) would have more than {MAX_LENGTH:,} elements"
        )
    return result


def bounded_sum(iterable: Any, /, start: Any = 0) -> Any:
    _charge(iterable)
    if type(start) is list or type(start) is tuple:
        parts = list(iterable)
        if all(type(part) is type(start) for part in parts):
            check_length(len(start) + sum(map(len, parts)), "sum() of sequences")
            joined = itertools.chain(start, *parts)
            return list(joined) if type(start) is list else tuple(joined)
        iterable = parts
    return builtins.sum(iterable, start)


def bounded_sorted(iterable: Any, /, *, key: Any = None, reverse: bool = False) -> list[Any]:
    if type(iterable) in _SIZED:
        size = len(iterable)
        if size > _SMALL:
            current().charge(size * max(1, size.bit_length() // 2))
    return builtins.sorted(iterable, key=key, reverse=reverse)


def bounded_str(*args: Any, **kwargs: Any) -> str:
    if args and not kwargs and len(args) == 1:
        check_text_size(args[0], "str()")
    return builtins.str(*args, **kwargs)


def _walking(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` after charging the length of its sized positional arguments."""

    def walk(*args: Any, **kwargs: Any) -> Any:
        _charge(*args)
        return function(*args, **kwargs)

    walk.__name__ = function.__name__
    walk.__qualname__ = function.__name__
    walk.__doc__ = function.__doc__
    return walk


_WALKING = (min, max, any, all, enumerate, zip, map, filter, reversed)
_CONSTRUCTORS = (list, tuple, set, frozenset, dict)

BOUNDED_BUILTINS: dict[str, Any] = {
    "range": bounded_range,
    "sum": bounded_sum,
    "sorted": bounded_sorted,
    "str": bounded_str,
    "pow": guarded_pow,
    **{f.__name__: _walking(f) for f in (*_WALKING, *_CONSTRUCTORS)},
}
"""Replacements for the builtins of the same name."""

_REAL_TYPES: dict[Any, type] = {
    BOUNDED_BUILTINS[t.__name__]: t
    for t in (range, str, enumerate, zip, map, filter, reversed, *_CONSTRUCTORS)
}


def _real_type(kind: Any) -> Any:
    if isinstance(kind, tuple):
        return tuple(_real_type(k) for k in kind)
    return _REAL_TYPES.get(kind, kind)


def bounded_isinstance(obj: Any, kinds: Any) -> bool:
    """``isinstance``, with the wrappers above standing for the types they replace."""
    return builtins.isinstance(obj, _real_type(kinds))


def copy_type_methods(allowed: frozenset[str]) -> None:
    """Give each type wrapper the real type's allowed methods (``str.lower``, ``dict.get``);
    the guarded ones (``str.join``) stay guarded."""
    for wrapper, kind in _REAL_TYPES.items():
        for name in allowed:
            if hasattr(kind, name) and not name.startswith("_"):
                value = _unbound(name) if kind is str and name in GUARDED_METHODS else None
                setattr(wrapper, name, value or getattr(kind, name))
