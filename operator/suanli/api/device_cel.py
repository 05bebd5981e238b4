"""CEL device selectors of Dynamic Resource Allocation, evaluated as kube-scheduler does when it
counts which devices a DeviceClass (and a pool's own `selectors`) select.

The variables are Kubernetes's (k8s.io/dynamic-resource-allocation/cel): `device.driver`,
`device.attributes["<domain>"].<name>` (bool, int, string or version) and
`device.capacity["<domain>"].<name>` (a quantity); an attribute or capacity named without a domain
in the ResourceSlice belongs to the driver's domain, and a domain the device has nothing in reads
as an empty map (so `has(device.attributes["x"].y)` is false, not an error). The Kubernetes
functions selectors use are here too: `quantity("80Gi")`, `semver("1.2.3")`, `isSemver(...)`,
and on quantities and versions `compareTo`, `isGreaterThan`, `isLessThan`, plus
`major`/`minor`/`patch` on versions and `asInteger`/`asApproximateFloat` on quantities.

Where this evaluation and kube-scheduler's can differ: an expression that uses a function not
listed above fails here with an error that names it (the pool reports it; it is not guessed),
and a quantity also compares with plain numbers here, where Kubernetes refuses the mix.

Pure: compiling and evaluating touch nothing outside. `celpy` (cel-python) is imported on first
use, so a fleet without DRA pools never pays for it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

_BINARY: dict[str, Fraction | int] = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: dict[str, Fraction | int] = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1, "k": 10**3,
            "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$")
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


class SelectorError(ValueError):
    """A selector that does not compile, or that failed on a device; the message says which and why."""


def parse_quantity(text: str) -> Fraction:
    """A Kubernetes quantity ("80Gi", "500m", "1e3") as an exact number; ValueError if it is not one."""
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (like 80Gi, 500m or 1e3)")
    number, exponent, suffix = match.groups()
    value = Fraction(number)
    if exponent:
        value *= Fraction(10) ** int(exponent[1:])
    elif suffix:
        value *= Fraction(_BINARY.get(suffix) or _DECIMAL[suffix])
    return value


def parse_version(text: str) -> tuple[int, int, int, str]:
    """A semantic version ("1.2.3", "1.2.3-rc.1") as (major, minor, patch, pre-release)."""
    match = _SEMVER.match(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a semantic version (like 1.2.3)")
    return int(match[1]), int(match[2]), int(match[3]), match[4] or ""


def _version_order(v: tuple[int, int, int, str]) -> tuple[Any, ...]:
    # A pre-release sorts before its release; pre-release identifiers compare numerically when numeric.
    pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in v[3].split(".")) if v[3] else ()
    return (*v[:3], 0 if pre else 1, pre)


@functools.cache
def _celpy() -> tuple[Any, Any, dict[str, Any], type, type, type]:
    """celpy, its types, the Kubernetes functions, and the Quantity, Version and domain-map types."""
    import celpy
    from celpy import celtypes

    class Quantity(celtypes.DoubleType):
        """A quantity: compares as a number, keeps its exact value for the methods."""

        exact: Fraction

        def __new__(cls, exact: Fraction) -> Any:
            obj: Any = super().__new__(cls, float(exact))
            obj.exact = exact
            return obj

    class Version(celtypes.StringType):
        parts: tuple[int, int, int, str]

        def __new__(cls, text: str) -> Any:
            obj: Any = super().__new__(cls, text)
            obj.parts = parse_version(text)
            return obj

    class Domains(celtypes.MapType):
        """device.attributes / device.capacity: a domain the device has nothing in is an empty map."""

        def __getitem__(self, key: Any) -> Any:
            try:
                return super().__getitem__(key)
            except KeyError:
                return celtypes.MapType({})

    def order(value: Any) -> Any:
        if isinstance(value, Quantity):
            return value.exact
        if isinstance(value, Version):
            return _version_order(value.parts)
        raise TypeError(f"compareTo, isGreaterThan and isLessThan take quantities or versions, not {value!r}")

    def compare(a: Any, b: Any) -> Any:
        x, y = order(a), order(b)
        return celtypes.IntType((x > y) - (x < y))

    def is_semver(text: Any) -> Any:
        try:
            parse_version(str(text))
        except ValueError:
            return celtypes.BoolType(False)
        return celtypes.BoolType(True)

    functions = {
        "quantity": lambda text: Quantity(parse_quantity(str(text))),
        "semver": lambda text: Version(str(text)),
        "isSemver": is_semver,
        "compareTo": compare,
        "isGreaterThan": lambda a, b: celtypes.BoolType(compare(a, b) > 0),
        "isLessThan": lambda a, b: celtypes.BoolType(compare(a, b) < 0),
        "major": lambda v: celtypes.IntType(v.parts[0]),
        "minor": lambda v: celtypes.IntType(v.parts[1]),
        "patch": lambda v: celtypes.IntType(v.parts[2]),
        "asInteger": lambda q: celtypes.IntType(int(q.exact)),
        "asApproximateFloat": lambda q: celtypes.DoubleType(float(q.exact)),
    }
    return celpy, celtypes, functions, Quantity, Version, Domains


@functools.lru_cache(maxsize=1024)
def compile_selector(expression: str) -> Any:
    """A compiled selector (cached by its text); SelectorError with the parser's message if it is not CEL."""
    celpy, _, functions, *_ = _celpy()
    env = celpy.Environment()
    try:
        return env.program(env.compile(expression), functions=functions)
    except Exception as exc:  # celpy's parse errors carry the position in their text
        raise SelectorError(f"{expression!r} is not a valid CEL expression: {str(exc).strip()}") from None


def check(expression: str) -> str | None:
    """Why `expression` is not a valid selector, or None (for validating the API's fields)."""
    try:
        compile_selector(expression)
    except SelectorError as exc:
        return str(exc)
    return None


def device(driver: str, attributes: Mapping[str, Any], capacity: Mapping[str, Any]) -> Any:
    """The `device` variable of one ResourceSlice device (`attributes` and `capacity` as the slice
    writes them: {"model": {"string": "H100"}}, {"memory": {"value": "80Gi"}})."""
    _, celtypes, _, Quantity, Version, Domains = _celpy()

    def split(name: str) -> tuple[str, str]:
        domain, _, local = name.rpartition("/")
        return (domain or driver), local

    attrs: dict[str, dict[Any, Any]] = {}
    for name, value in attributes.items():
        domain, local = split(name)
        value = value or {}
        if "string" in value:
            cel: Any = celtypes.StringType(value["string"])
        elif "int" in value:
            cel = celtypes.IntType(int(value["int"]))
        elif "bool" in value:
            cel = celtypes.BoolType(bool(value["bool"]))
        elif "version" in value:
            cel = Version(str(value["version"]))
        else:
            continue  # a value type newer than this code: left out, as if the attribute were not there
        attrs.setdefault(domain, {})[celtypes.StringType(local)] = cel
    caps: dict[str, dict[Any, Any]] = {}
    for name, value in capacity.items():
        domain, local = split(name)
        caps.setdefault(domain, {})[celtypes.StringType(local)] = Quantity(parse_quantity((value or {}).get("value", "0")))
    return celtypes.MapType({
        celtypes.StringType("driver"): celtypes.StringType(driver),
        celtypes.StringType("attributes"): Domains({celtypes.StringType(d): celtypes.MapType(v) for d, v in attrs.items()}),
        celtypes.StringType("capacity"): Domains({celtypes.StringType(d): celtypes.MapType(v) for d, v in caps.items()}),
        celtypes.StringType("allowMultipleAllocations"): celtypes.BoolType(False),
    })


def matches(expressions: Sequence[str], device_value: Any) -> bool:
    """Whether every selector selects the device (`device()`); SelectorError if one does not compile,
    fails on it (a missing attribute read without `has`), or is not a bool, as kube-scheduler refuses
    to allocate then."""
    for expression in expressions:
        program = compile_selector(expression)
        try:
            result = program.evaluate({"device": device_value})
        except Exception as exc:
            raise SelectorError(f"selector {expression!r} failed: {_first_line(exc)}") from None
        if not isinstance(result, _celpy()[1].BoolType):
            raise SelectorError(f"selector {expression!r} gives {result!r}, not true or false")
        if not result:
            return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__
