"""Measured energy: what finished jobs really drew, read from exporters through Prometheus.

May do HTTP (to the Prometheus API only) and log; may not talk to the Kubernetes API, import kopf,
or read the clock or the environment (times and settings come in as arguments). Errors never
escape to the operator: every failure becomes "no measurement" with a reason for the on-call person.

- `sources`: which exporter metrics give accelerator energy, and the PromQL that reads them (pure).
- `energy_meter`: runs the queries, checks the answers, and says what to settle with.
"""
