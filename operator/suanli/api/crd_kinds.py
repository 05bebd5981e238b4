"""The CustomResourceDefinitions' per-kind tables, read by `api/crdgen.py`: the cross-field CEL rules
the JSON Schema cannot say (`RULES`), extra schema keywords (`EXTRA`), and each kind's model, plural,
scope, short names and printer columns (`KINDS`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from suanli.api import objects
from suanli.catalog import accelerators

Schema = dict[str, Any]

def _quote_list(names: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


def _catalog_types() -> str:
    """A CEL map literal {'A100': 'GPU', ...} of the catalog."""
    pairs = ", ".join(f"'{name}': '{accelerators.CATALOG[name].type}'" for name in accelerators.MODEL_NAMES)
    return "{" + pairs + "}"


def _catalog_by_type() -> str:
    parts = []
    for kind in accelerators.ACCELERATOR_TYPES:
        names = [n for n in accelerators.MODEL_NAMES if accelerators.CATALOG[n].type == kind]
        if names:
            parts.append(f"{', '.join(names)} {'are' if len(names) > 1 else 'is'} {kind}")
    return "; ".join(parts)


def _rule(rule: str, message: str, **extra: str) -> dict[str, str]:
    return {"rule": rule, "message": message, **extra}


_MODELS = _quote_list(accelerators.MODEL_NAMES)
_TYPES = _quote_list(accelerators.ACCELERATOR_TYPES)
_PRECISIONS = _quote_list(accelerators.PRECISIONS)

# ComputeJob fields that decided where a bound job runs (see `_placement_fixed`).
PLACEMENT_FIELDS = ("replicas", "accelerators", "images", "data", "runtime", "energy", "schedule", "queue", "policy")


def _placement_fixed(field: str) -> dict[str, str]:
    """A change of spec.<field> is refused while the job is Bound or Running (status.phase)."""
    same = (f"has(self.spec.{field}) == has(oldSelf.spec.{field}) && "
            f"(!has(self.spec.{field}) || self.spec.{field} == oldSelf.spec.{field})")
    return _rule(
        f"!has(oldSelf.status) || !has(oldSelf.status.phase) || !(oldSelf.status.phase in ['Bound', 'Running']) || "
        f"({same})",
        f"spec.{field} cannot change while the job is Bound or Running: it decided where the job runs; suspend "
        "the job first (spec.suspend: true) and change it once it is Suspended, or delete and recreate the job",
        fieldPath=f".spec.{field}",
    )


# Cross-field rules the schema alone cannot say, keyed by kind and a path in the schema:
# "a.b" is a property, "a[]" the items of a list, "a{}" the values of a map. Every message
# names the field and says what to do. A path that no longer exists in the models makes
# generation fail, so a renamed field cannot silently lose its rule.
RULES: dict[str, dict[str, list[dict[str, str]]]] = {
    "ComputeCenter": {
        "spec.region": [
            _rule(
                "self == oldSelf",
                "spec.region is immutable: jobs were placed by it; create a new ComputeCenter for the new region "
                "and delete this one",
            )
        ],
        "spec.pools": [
            _rule(
                "self.all(p, self.exists_one(q, q.name == p.name))",
                "spec.pools[].name must be unique in the center; rename or merge the duplicate pool",
            )
        ],
        "spec.pools[]": [
            _rule(
                "has(self.resourceName) != has(self.deviceClassName)",
                "spec.pools[] must give exactly one of resourceName (a device plugin's extended resource) and "
                "deviceClassName (a DRA DeviceClass); keep the one the pool's accelerators are handed out by",
                messageExpression="'spec.pools[] pool ' + self.name + ' must give exactly one of resourceName (the "
                "extended resource of a device plugin) and deviceClassName (a DRA DeviceClass); keep the one its "
                "accelerators are handed out by'",
            ),
            _rule(
                "!has(self.selectors) || size(self.selectors) == 0 || has(self.deviceClassName)",
                "spec.pools[].selectors need deviceClassName (they select DRA devices); drop them, or replace "
                "resourceName by deviceClassName",
                messageExpression="'spec.pools[].selectors of pool ' + self.name + ' need deviceClassName (they "
                "select DRA devices); drop them, or replace resourceName by deviceClassName'",
                fieldPath=".selectors",
            ),
            _rule(
                f"self.model in {_MODELS} || (has(self.powerWatts) && has(self.memoryGiB) && "
                "has(self.peakTFLOPS) && size(self.peakTFLOPS) > 0)",
                "spec.pools[].model is not in the catalog, so the pool must give powerWatts, peakTFLOPS and "
                f"memoryGiB; or use a catalog model: {', '.join(accelerators.MODEL_NAMES)}",
                messageExpression="'spec.pools[].model ' + self.model + ' of pool ' + self.name + ' is not in the "
                "catalog, so the pool must give powerWatts, peakTFLOPS and memoryGiB; or use a catalog model: "
                f"{', '.join(accelerators.MODEL_NAMES)}'",
                fieldPath=".model",
            ),
            _rule(
                f"!(self.model in {_MODELS}) || {_catalog_types()}[self.model] == self.acceleratorType",
                "spec.pools[].acceleratorType does not match the catalog model "
                f"({_catalog_by_type()}); fix acceleratorType",
                messageExpression=f"'spec.pools[].acceleratorType: model ' + self.model + ' is catalogued as ' + "
                f"{_catalog_types()}[self.model] + ', not ' + self.acceleratorType + "
                f"'; set acceleratorType: ' + {_catalog_types()}[self.model]",
                fieldPath=".acceleratorType",
            ),
        ],
        "spec.pools[].peakTFLOPS": [
            _rule(
                f"self.all(k, k in {_PRECISIONS})",
                f"spec.pools[].peakTFLOPS keys must be precisions ({', '.join(accelerators.PRECISIONS)}); "
                "rename the unknown key",
                messageExpression=f"'spec.pools[].peakTFLOPS key ' + self.filter(k, !(k in {_PRECISIONS}))[0] + "
                f"' is not a precision ({', '.join(accelerators.PRECISIONS)}); rename it'",
            ),
            _rule(
                "self.all(k, self[k] > 0.0)",
                "spec.pools[].peakTFLOPS values must be greater than 0 (TFLOPS, TOPS for int8); "
                "drop a precision the chip does not support instead of writing 0",
            ),
        ],
        "spec.network.links": [
            _rule(
                "self.all(l, self.exists_one(m, m.region == l.region))",
                "spec.network.links[].region must be unique; keep one link per region",
            )
        ],
    },
    "ComputeJob": {
        # Transition rules: what decided where a bound or running job runs cannot change under it.
        "": [_placement_fixed(field) for field in PLACEMENT_FIELDS],
        "spec": [
            _rule(
                "self.accelerators.types.all(t, t in self.images)",
                "spec.images needs an image for every type in spec.accelerators.types; add images.<TYPE> "
                "or drop the type from accelerators.types",
                messageExpression="'spec.images has no image for ' + self.accelerators.types.filter(t, !(t in "
                "self.images))[0] + ', which spec.accelerators.types accepts; add images.' + "
                "self.accelerators.types.filter(t, !(t in self.images))[0] + ' or drop the type'",
                fieldPath=".images",
                reason="FieldValueRequired",
            ),
            _rule(
                "!has(self.schedule) || !has(self.schedule.deadline) || has(self.runtime)",
                "spec.schedule.deadline needs spec.runtime.estimatedDuration to know when the job must start; "
                "add spec.runtime or drop the deadline",
                fieldPath=".schedule.deadline",
            ),
        ],
        "spec.images": [
            _rule(
                f"self.all(k, k in {_TYPES})",
                f"spec.images keys must be accelerator types ({', '.join(accelerators.ACCELERATOR_TYPES)}); "
                "rename the unknown key",
            )
        ],
        "spec.data": [
            _rule(
                "!has(self.sizeGiB) || self.sizeGiB == 0.0 || (has(self.region) && size(self.region) > 0)",
                "spec.data.sizeGiB is set but spec.data.region is not; say where the data lives",
                fieldPath=".region",
                reason="FieldValueRequired",
            )
        ],
        "spec.runtime.referenceModel": [
            _rule(
                f"self in {_MODELS}",
                "spec.runtime.referenceModel is not in the catalog; use one of "
                + ", ".join(accelerators.MODEL_NAMES),
            )
        ],
        "spec.policy.weights": [
            _rule(
                "(has(self.accelerator) ? self.accelerator : 0.0) + (has(self.locality) ? self.locality : 0.0)"
                " + (has(self.energy) ? self.energy : 0.0) > 0.0",
                "spec.policy.weights: at least one of accelerator, locality, energy must be greater than 0; "
                "or drop weights to use the profile's",
            )
        ],
    },
    "ComputeQueue": {
        "spec.quota.accelerators": [
            _rule(
                "self.all(a, self.exists_one(b, b.type == a.type && (has(b.model) ? b.model : '') == "
                "(has(a.model) ? a.model : '')))",
                "spec.quota.accelerators repeats a type and model; keep one entry per type and model",
            )
        ],
        "spec.quota.accelerators[]": [
            _rule(
                "!has(self.lendingLimit) || self.lendingLimit <= self.count",
                "spec.quota.accelerators[].lendingLimit is more than count: a queue lends at most its own quota",
                fieldPath=".lendingLimit",
            )
        ],
        "spec.quota": [
            _rule(
                "has(self.computeUnits) || (!has(self.computeUnitsBorrowingLimit) && !has(self.computeUnitsLendingLimit))",
                "spec.quota.computeUnitsBorrowingLimit and computeUnitsLendingLimit need computeUnits; set it or drop them",
                fieldPath=".computeUnits",
                reason="FieldValueRequired",
            ),
            _rule(
                "!has(self.computeUnitsLendingLimit) || !has(self.computeUnits) || "
                "self.computeUnitsLendingLimit <= self.computeUnits",
                "spec.quota.computeUnitsLendingLimit is more than computeUnits: a queue lends at most its own quota",
                fieldPath=".computeUnitsLendingLimit",
            ),
        ],
    },
}


# Schema keywords the models cannot express in JSON Schema terms the API server checks.
EXTRA: dict[str, dict[str, dict[str, Any]]] = {
    "ComputeCenter": {
        "status.conditions": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    },
    "ComputeJob": {
        # pydantic refuses blank images with a validator; the API server with this pattern.
        "spec.images{}": {"pattern": r"\S"},
        # pydantic requires a time zone on the deadline; RFC 3339 with Z or an offset.
        "spec.schedule.deadline": {"pattern": r"(Z|z|[+-][0-9]{2}:[0-9]{2})$"},
        "spec.accelerators.types": {"x-kubernetes-list-type": "set"},
        # Implied by the enum, but CEL cost estimation only reads maxLength.
        "spec.accelerators.types[]": {"maxLength": max(len(t) for t in accelerators.ACCELERATOR_TYPES)},
        "status.conditions": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    },
    "ComputeQueue": {
        "status.conditions": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    },
}


def _column(name: str, path: str, type_: str = "string", priority: int = 0, description: str = "") -> Schema:
    column: Schema = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        column["priority"] = priority
    if description:
        column["description"] = description
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", "date")

KINDS: dict[str, dict[str, Any]] = {
    "ComputeCenter": {
        "model": objects.ComputeCenter,
        "plural": "computecenters",
        "scope": "Cluster",
        "shortNames": ["cc"],
        "columns": [
            _column("Region", ".spec.region", description="Region of the center."),
            _column("PUE", ".spec.energy.pue", "number", description="Power usage effectiveness."),
            _column("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition."),
            _column(
                "Free", ".status.freeAccelerators", "integer", description="Free accelerators, all pools."
            ),
            _AGE,
            _column("Display", ".spec.displayName", priority=1, description="Human name of the center."),
        ],
    },
    "ComputeJob": {
        "model": objects.ComputeJob,
        "plural": "computejobs",
        "scope": "Namespaced",
        # "cj" is the contract's short name, but kubectl resolves it to the built-in CronJob
        # (built-in short names win over CRDs); "cjob" always reaches ComputeJobs.
        "shortNames": ["cj", "cjob"],
        "columns": [
            _column("Phase", ".status.phase", description="Pending, Queued, Deferred, Bound, Running..."),
            _column("Center", ".status.binding.center", description="ComputeCenter the job is bound to."),
            _column("Pool", ".status.binding.pool", description="Pool in that center."),
            _column("Type", ".status.binding.acceleratorType", description="GPU, NPU, DCU or MLU."),
            _column("Score", ".status.binding.score", "number", description="Weighted score in [0, 1]."),
            _AGE,
            _column("Model", ".status.binding.model", priority=1, description="Accelerator model."),
            _column("Profile", ".spec.policy.profile", priority=1, description="Ranking profile."),
            _column("Message", ".status.message", priority=1, description="The latest decision."),
        ],
    },
    "ComputeQueue": {
        "model": objects.ComputeQueue,
        "plural": "computequeues",
        "scope": "Cluster",
        "shortNames": ["cq"],
        "columns": [
            _column("Cohort", ".spec.cohort", description="Queues of one cohort lend and borrow."),
            _column("Accelerators", ".status.accelerators", description="Held / nominal quota."),
            _column("ComputeUnits", ".status.computeUnits", description="Held / nominal, A100-equivalents."),
            _column("Energy", ".status.energy", description="kWh this period / budget."),
            _column("Carbon", ".status.carbon", description="kg CO2e this period / budget."),
            _column("Admitted", ".status.admittedJobs", "integer", description="Jobs bound or running."),
            _column("Waiting", ".status.waitingJobs", "integer", description="Jobs waiting to be placed."),
            _AGE,
            _column("Weight", ".spec.weight", "number", priority=1, description="Fair-share weight."),
            _column("Share", ".status.share", "number", priority=1, description="Weighted dominant share."),
            _column("Period", ".status.period", priority=1, description="Budget period."),
        ],
    },
}
