"""Pydantic v2 models of the two CRDs (group suanli.io, version v1alpha1).

Pure data and validation: no I/O, no clock, no environment. The CRD YAML in crds/ is
generated from these models by `make crds` (suanli.api.crdgen); field descriptions become
`kubectl explain` text.
"""

GROUP = "suanli.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
