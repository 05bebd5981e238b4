"""DRA devices: each cluster's ResourceSlices, DeviceClasses and ResourceClaims, and what a pool
declared with `deviceClassName` counts from them: per node, the devices its DeviceClass and its own
`selectors` select (capacity), and how many of those ResourceClaims hold (used).

Counted as kube-scheduler allocates: only the newest generation of each resource pool of a driver
(a driver republishing its slices bumps it; older slices are ignored until they are gone); a
device's node is its slice's `nodeName` (or, with `perDeviceNodeSelection`, its own); devices of
slices meant for several nodes (`nodeSelector`, `allNodes`: network-attached devices) are not any
one node's and are not counted. A device is used while a ResourceClaim's allocation names it,
whoever's claim it is. What this does not model: device taints, shared counters (partitionable
devices) and consumable capacity; a device is one accelerator, whole.

Pure: objects go in as the API returns them; nothing is read from anywhere.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from suanli.api import device_cel
from suanli.kube import objects as kobj

DeviceId = tuple[str, str, str]  # (driver, resource pool, device name)
MAX_MEMO = 100_000  # selector verdicts kept (per device kind and selector set), dropped whole beyond it


@dataclasses.dataclass(frozen=True)
class Device:
    id: DeviceId
    node: str  # qualified (kobj.qualify) node name; "" when the device is not any one node's
    kind: str  # driver, attributes and capacity as JSON: devices that are alike share a selector verdict
    attributes: Mapping[str, Any]
    capacity: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class SliceInfo:
    cluster: str
    name: str
    uid: str
    driver: str
    pool: str
    generation: int
    devices: tuple[Device, ...]


@dataclasses.dataclass(frozen=True)
class ClaimInfo:
    key: kobj.Key  # (qualified namespace, name)
    uid: str
    allocated: tuple[DeviceId, ...]


@dataclasses.dataclass(frozen=True)
class Selected:
    """What a DeviceClass and selectors select in one cluster."""

    by_node: Mapping[str, frozenset[DeviceId]]  # qualified node name -> its selected devices
    problem: str = ""  # why some devices could not be judged (a missing class, a failing selector); "" if none


def slice_info(raw: Mapping[str, Any], cluster: str = "") -> SliceInfo:
    meta = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    driver = str(spec.get("driver") or "")
    pool = spec.get("pool") or {}
    pool_name = str(pool.get("name") or "")
    node = str(spec.get("nodeName") or "")
    per_device = bool(spec.get("perDeviceNodeSelection"))
    devices = []
    for d in spec.get("devices") or []:
        where = str(d.get("nodeName") or "") if per_device else node
        attributes, capacity = d.get("attributes") or {}, d.get("capacity") or {}
        kind = json.dumps([driver, attributes, capacity], sort_keys=True, separators=(",", ":"))
        devices.append(Device((driver, pool_name, str(d.get("name") or "")), kobj.qualify(cluster, where) if where else "",
                              kind, attributes, capacity))
    return SliceInfo(cluster, str(meta.get("name") or ""), str(meta.get("uid") or ""), driver, pool_name,
                     int(pool.get("generation") or 0), tuple(devices))


def claim_info(raw: Mapping[str, Any], cluster: str = "") -> ClaimInfo:
    meta = raw.get("metadata") or {}
    allocation = (raw.get("status") or {}).get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or []
    allocated = tuple((str(r.get("driver") or ""), str(r.get("pool") or ""), str(r.get("device") or "")) for r in results)
    key = (kobj.qualify(cluster, str(meta.get("namespace") or "")), str(meta.get("name") or ""))
    return ClaimInfo(key, str(meta.get("uid") or ""), allocated)


def class_selectors(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """A DeviceClass's CEL selectors."""
    return tuple(str((s.get("cel") or {}).get("expression") or "") for s in (raw.get("spec") or {}).get("selectors") or []
                 if (s.get("cel") or {}).get("expression"))


class Devices:
    """The DRA objects of every cluster the cache mirrors (keyed by cluster: "" is the operator's own)."""

    def __init__(self) -> None:
        self.slices: dict[tuple[str, str], SliceInfo] = {}
        self.classes: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}  # (cluster, name) -> (uid, selectors)
        self.claims: dict[kobj.Key, ClaimInfo] = {}
        self.allocated: collections.Counter[tuple[str, DeviceId]] = collections.Counter()  # (cluster, device) -> claims
        self._version: collections.Counter[str] = collections.Counter()  # per cluster: bumped when slices/classes change
        self._selected: dict[tuple[str, str, tuple[str, ...]], tuple[int, Selected]] = {}
        self._verdicts: dict[tuple[tuple[str, ...], str], bool | str] = {}  # (selectors, device kind) -> match or error

    # --- slices and classes ---------------------------------------------------------------

    def mirror(self, kind: str, deleted: bool, raw: Mapping[str, Any], cluster: str = "") -> bool:
        """A watch event of `kind` ("slices", "deviceclasses" or "claims") from `cluster`; True when
        it can change what a DRA pool counts."""
        meta = raw.get("metadata") or {}
        name = str(meta.get("name") or "")
        if kind == "claims":
            if deleted:
                return self.delete_claim((kobj.qualify(cluster, str(meta.get("namespace") or "")), name))
            return self.upsert_claim(raw, cluster)
        if kind == "slices":
            return self.delete_slice(name, cluster) if deleted else self.upsert_slice(raw, cluster)
        return self.delete_class(name, cluster) if deleted else self.upsert_class(raw, cluster)

    def _put(self, table: dict[tuple[str, str], Any], cluster: str, name: str, value: Any) -> bool:
        if table.get((cluster, name)) == value:
            return False
        table[(cluster, name)] = value
        self._version[cluster] += 1
        return True

    def _drop(self, table: dict[tuple[str, str], Any], cluster: str, name: str) -> bool:
        if table.pop((cluster, name), None) is None:
            return False
        self._version[cluster] += 1
        return True

    def upsert_slice(self, raw: Mapping[str, Any], cluster: str = "") -> bool:
        """Returns True when the change can matter for capacity."""
        info = slice_info(raw, cluster)
        return self._put(self.slices, cluster, info.name, info)

    def delete_slice(self, name: str, cluster: str = "") -> bool:
        return self._drop(self.slices, cluster, name)

    def upsert_class(self, raw: Mapping[str, Any], cluster: str = "") -> bool:
        meta = raw.get("metadata") or {}
        return self._put(self.classes, cluster, str(meta.get("name") or ""),
                         (str(meta.get("uid") or ""), class_selectors(raw)))

    def delete_class(self, name: str, cluster: str = "") -> bool:
        return self._drop(self.classes, cluster, name)

    # --- claims ----------------------------------------------------------------------------

    def upsert_claim(self, raw: Mapping[str, Any], cluster: str = "") -> bool:
        """Returns True when the devices it holds changed."""
        info = claim_info(raw, cluster)
        old = self.claims.get(info.key)
        self.claims[info.key] = info
        if old is not None and old.allocated == info.allocated:
            return False
        self._count(cluster, old, -1)
        self._count(cluster, info, +1)
        return True

    def delete_claim(self, key: kobj.Key) -> bool:
        info = self.claims.pop(key, None)
        if info is None:
            return False
        self._count(kobj.split(key[0])[0], info, -1)
        return bool(info.allocated)

    def _count(self, cluster: str, info: ClaimInfo | None, sign: int) -> None:
        for device in info.allocated if info is not None else ():
            k = (cluster, device)
            self.allocated[k] += sign
            if self.allocated[k] <= 0:
                del self.allocated[k]

    def drop_cluster(self, cluster: str) -> None:
        """Forget a member cluster's objects (it was removed; a new connection lists them again)."""
        for key in [k for k in self.slices if k[0] == cluster]:
            del self.slices[key]
        for key in [k for k in self.classes if k[0] == cluster]:
            del self.classes[key]
        for key in [k for k in self.claims if kobj.split(k[0])[0] == cluster]:
            self.delete_claim(key)
        self._version[cluster] += 1

    # --- what a pool counts ----------------------------------------------------------------

    def selected(self, cluster: str, class_name: str, selectors: tuple[str, ...] = ()) -> Selected:
        """The devices, per node of `cluster`, that DeviceClass `class_name` and `selectors` select."""
        key = (cluster, class_name, selectors)
        version = self._version[cluster]
        memo = self._selected.get(key)
        if memo is not None and memo[0] == version:
            return memo[1]
        result = self._select(cluster, class_name, selectors)
        self._selected[key] = (version, result)
        return result

    def _select(self, cluster: str, class_name: str, selectors: tuple[str, ...]) -> Selected:
        found = self.classes.get((cluster, class_name))
        where = f"member cluster {cluster}" if cluster else "the operator's cluster"
        if found is None:
            return Selected({}, f"DeviceClass {class_name} does not exist in {where}; install the DRA driver that "
                                "provides it, or fix the pool's deviceClassName")
        expressions = found[1] + selectors
        newest: dict[tuple[str, str], int] = {}
        for s in self._slices_of(cluster):
            newest[(s.driver, s.pool)] = max(newest.get((s.driver, s.pool), s.generation), s.generation)
        by_node: dict[str, set[DeviceId]] = {}
        problem = ""
        if len(self._verdicts) > MAX_MEMO:
            self._verdicts.clear()
        for s in self._slices_of(cluster):
            if s.generation != newest[(s.driver, s.pool)]:
                continue
            for device in s.devices:
                if not device.node:
                    continue
                verdict = self._verdicts.get((expressions, device.kind))
                if verdict is None:
                    try:
                        verdict = device_cel.matches(
                            expressions, device_cel.device(s.driver, device.attributes, device.capacity))
                    except (device_cel.SelectorError, ValueError) as exc:
                        verdict = str(exc)
                    self._verdicts[(expressions, device.kind)] = verdict
                if verdict is True:
                    by_node.setdefault(device.node, set()).add(device.id)
                elif isinstance(verdict, str) and not problem:
                    problem = (f"device {device.id[2]} of ResourceSlice {s.name} in {where} cannot be judged "
                               f"(DeviceClass {class_name} or the pool's selectors): {verdict}")
        return Selected({node: frozenset(ids) for node, ids in by_node.items()}, problem)

    def _slices_of(self, cluster: str) -> Iterable[SliceInfo]:
        return (s for (c, _), s in self.slices.items() if c == cluster)

    def counts(self, cluster: str, class_name: str, selectors: tuple[str, ...], node: str) -> tuple[int, int]:
        """(devices selected on `node`, how many of them claims hold)."""
        ids = self.selected(cluster, class_name, selectors).by_node.get(node, frozenset())
        return len(ids), sum(1 for d in ids if (cluster, d) in self.allocated)
