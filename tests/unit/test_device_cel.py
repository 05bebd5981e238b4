"""DRA device selectors: Kubernetes's CEL variables and functions, evaluated on ResourceSlice devices."""

from __future__ import annotations

from fractions import Fraction

import pytest

from suanli.api import device_cel

H100 = device_cel.device(
    "gpu.example.com",
    {"model": {"string": "H100"}, "index": {"int": 3}, "nvlink": {"bool": True}, "driverVersion": {"version": "550.54.15"},
     "pci.example.org/root": {"string": "0000:3a"}},
    {"memory": {"value": "80Gi"}},
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('device.driver == "gpu.example.com"', True),
        ('device.driver == "npu.example.com"', False),
        ('device.attributes["gpu.example.com"].model == "H100"', True),
        ('device.attributes["gpu.example.com"].index > 2 && device.attributes["gpu.example.com"].nvlink', True),
        ('device.attributes["pci.example.org"].root.startsWith("0000")', True),  # a qualified attribute's own domain
        ('has(device.attributes["other.example.com"].model)', False),  # a domain with nothing in it: an empty map
        ('device.capacity["gpu.example.com"].memory.compareTo(quantity("40Gi")) >= 0', True),
        ('device.capacity["gpu.example.com"].memory.isGreaterThan(quantity("80Gi"))', False),
        ('device.capacity["gpu.example.com"].memory.isLessThan(quantity("81920Mi") )', False),
        ('quantity("1Gi") == quantity("1024Mi")', True),
        ('device.attributes["gpu.example.com"].driverVersion.isGreaterThan(semver("550.9.0"))', True),
        ('device.attributes["gpu.example.com"].driverVersion.major() == 550', True),
        ('isSemver("1.2") || semver("1.0.0-rc.1").isLessThan(semver("1.0.0"))', True),
    ],
)
def test_selectors_read_devices_as_kubernetes_does(expression: str, expected: bool) -> None:
    assert device_cel.matches([expression], H100) is expected


def test_every_selector_must_select() -> None:
    assert device_cel.matches(['device.driver == "gpu.example.com"', 'device.attributes["gpu.example.com"].index == 3'], H100)
    assert not device_cel.matches(['device.driver == "gpu.example.com"', 'device.attributes["gpu.example.com"].index == 4'], H100)
    assert device_cel.matches([], H100)


def test_a_missing_attribute_read_without_has_is_an_error_that_names_the_selector() -> None:
    with pytest.raises(device_cel.SelectorError, match=r"selector 'device.attributes\[\"gpu.example.com\"\].missing == 1' failed"):
        device_cel.matches(['device.attributes["gpu.example.com"].missing == 1'], H100)


def test_a_selector_that_is_not_a_bool_is_an_error() -> None:
    with pytest.raises(device_cel.SelectorError, match="not true or false"):
        device_cel.matches(["1 + 1"], H100)


def test_a_function_kubernetes_has_and_this_does_not_is_named_not_guessed() -> None:
    with pytest.raises(device_cel.SelectorError, match="failed"):
        device_cel.matches(['device.capacity["gpu.example.com"].memory.isInteger()'], H100)


def test_syntax_errors_say_where() -> None:
    problem = device_cel.check('device.driver ==')
    assert problem is not None and "is not a valid CEL expression" in problem
    assert device_cel.check('device.driver == "x"') is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("80Gi", 80 * 2**30), ("500m", Fraction(1, 2)), ("1e3", 1000), ("1.5k", 1500), ("2", 2), ("+.5M", 500_000)],
)
def test_quantities_are_exact(text: str, value: Fraction) -> None:
    assert device_cel.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Gi", "1.2.3", "10 Gi", "1GB"])
def test_what_is_not_a_quantity_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        device_cel.parse_quantity(text)
