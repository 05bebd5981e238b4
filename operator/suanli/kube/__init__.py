"""Everything that talks to a Kubernetes API server (the operator's cluster and member clusters)."""
