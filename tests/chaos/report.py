"""The chaos run's report: Markdown, short, printed and written to reports/chaos/.

Faults injected by kind, jobs submitted / succeeded / failed / waiting, invariant violations by kind
(must be 0; each listed with its evidence, at most ``MAX_LISTED`` per kind), findings that did not
persist (not violations, shown for context), the time to quiesce, and the fault log.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from tests.chaos import scenario

REPORTS = Path(__file__).resolve().parents[2] / "reports" / "chaos"
MAX_LISTED = 8
MAX_DETAIL = 600


def _cut(text: str, limit: int = MAX_DETAIL) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(r: scenario.Result) -> str:
    p = r.params
    kinds = r.fault_counts
    waiting = sum(n for phase, n in r.phases.items() if phase in ("Queued", "Deferred"))
    total_violations = len(r.violations)
    lines = [
        f"# Chaos run, seed {p.seed} ({p.label})",
        "",
        f"Started {r.started_utc} on the {r.cluster}; namespace `{r.namespace}`; operator from {r.operator_source} "
        f"(operator.resync_seconds {p.resync_s:g}). Asked for {p.jobs} jobs and {p.faults} faults within "
        f"{p.duration_s:g} s, quiesce within {p.quiesce_timeout_s:g} s. Logs: `{r.log_dir}`.",
        "",
        f"**Invariant violations: {total_violations}** (must be 0) · faults {len(r.faults)} of {len(kinds)} kinds · "
        f"jobs {r.jobs_submitted} · time to quiesce "
        + (f"{r.quiesce_seconds:.1f} s" if r.quiesce_seconds is not None else f"> {p.quiesce_timeout_s:g} s (did not quiesce)"),
        "",
    ]
    if r.aborted:
        lines += [f"**Aborted:** {r.aborted}", ""]
    lines += ["## Faults injected", "", "| kind | count |", "|---|---:|"]
    lines += [f"| {k} | {n} |" for k, n in sorted(kinds.items())]
    lines += [f"| **total** | {len(r.faults)} |", ""]
    for original, substitute in r.substitutions.items():
        lines.append(f"On this cluster (not the local control plane) `{original}` is replaced by `{substitute}`.")
    for note in r.fault_notes:
        lines.append(f"- {_cut(note, 300)}")
    if r.substitutions or r.fault_notes:
        lines.append("")
    lines += [
        "## Jobs", "",
        f"Submitted {r.jobs_submitted} ({r.recreated_jobs} deleted and recreated under the same name). At the end: "
        + ", ".join(f"{phase} {n}" for phase, n in sorted(r.phases.items()))
        + f" (waiting: {waiting}).", "",
    ]
    if r.failed_reasons:
        lines += ["| failed with | jobs |", "|---|---:|"]
        lines += [f"| {_cut(reason, 160)} | {n} |" for reason, n in list(r.failed_reasons.items())[:MAX_LISTED]]
        lines.append("")
    if r.waiting_but_fits:
        lines += [f"Waiting although the gang fits a free pool now ({len(r.waiting_but_fits)}; a hint, not a violation):", ""]
        lines += [f"- {_cut(text, 300)}" for text in r.waiting_but_fits[:MAX_LISTED]]
        lines.append("")
    lines += ["## Invariant violations", "",
              f"{r.checks} checks every {p.check_interval_s:g} s ({r.checks_skipped} skipped: the API did not answer).", "",
              "| kind | rule | violations |", "|---|---|---:|"]
    by_kind = r.violations_by_kind
    for kind, rule in r.rules.items():
        lines.append(f"| {kind} | {rule.description} (seen in {rule.min_checks} checks"
                     f"{f' over {rule.min_seconds:g} s' if rule.min_seconds else ''}) | {len(by_kind.get(kind, []))} |")
    lines.append("")
    for kind, found in sorted(by_kind.items()):
        lines += [f"### {kind} ({len(found)})", ""]
        for v in found[:MAX_LISTED]:
            lines.append(f"- t={v.first_seen:.0f}s, seen {v.checks}x over {v.persisted_seconds:.0f}s: {_cut(v.detail)}")
        if len(found) > MAX_LISTED:
            lines.append(f"- … and {len(found) - MAX_LISTED} more")
        lines.append("")
    if r.transient:
        lines += ["Findings that did not persist (within the rules' grace; not violations): "
                  + ", ".join(f"{k} {n}" for k, n in sorted(r.transient.items())), ""]
    lines += [
        "## Timing", "",
        f"Submit-and-inject phase {r.active_seconds:.0f} s; time to quiesce "
        + (f"{r.quiesce_seconds:.1f} s" if r.quiesce_seconds is not None else "none (not quiet by the deadline)")
        + f"; operator started {r.operator_starts} times"
        + (f" (healthy after {min(r.operator_start_seconds):.1f}-{max(r.operator_start_seconds):.1f} s)"
           if r.operator_start_seconds else "") + ".", "",
        "## Fault log", "", "| t (s) | UTC | kind | target | detail |", "|---:|---|---|---|---|",
    ]
    lines += [f"| {f.t:.1f} | {f.wall} | {f.kind} | {_cut(f.target, 80)} | {_cut(f.detail, 160)} |" for f in r.faults]
    return "\n".join(lines) + "\n"


def write(r: scenario.Result, directory: Path = REPORTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{r.params.label}-seed{r.params.seed}-{stamp}.md"
    path.write_text(render(r))
    return path
