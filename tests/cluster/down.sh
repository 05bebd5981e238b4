#!/usr/bin/env bash
# Stop the local Suanli control plane started by up.sh and remove its state (.cluster/).
# Built binaries stay in ${SUANLI_CACHE:-~/.cache/suanli}. Safe to run when nothing runs.
#
#   bash tests/cluster/down.sh                  # or: make cluster-down
#   CLUSTER=guian bash tests/cluster/down.sh    # or: make cluster-down CLUSTER=guian
#
# Each stops only its own cluster: the default one keeps the named clusters' folders
# (.cluster/NAME/), which live inside its state dir.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CLUSTER_DIR/components.sh"

take_cluster_lock

mapfile -t own < <(own_state_entries)
if [[ ! -e "$STATE_DIR" ]] || ((${#own[@]} == 0)); then
  log "no cluster state in $STATE_DIR; nothing to stop"
  exit 0
fi
[[ -f "$STATE_DIR/.suanli-cluster" ]] \
  || die "$STATE_DIR was not made by up.sh (no .suanli-cluster marker); not touching it"

stop_all
if [[ -n "$CLUSTER_NAME" ]]; then
  rm -rf "$STATE_DIR"
  log "cluster $CLUSTER_NAME stopped; state removed ($STATE_DIR)"
  exit 0
fi
rm -rf -- "${own[@]}"
mapfile -t named < <(named_cluster_names)
if ((${#named[@]})); then
  log "cluster stopped; state removed from $STATE_DIR, except the named clusters' (${named[*]}: make cluster-down CLUSTER=NAME)"
else
  rmdir "$STATE_DIR" 2>/dev/null || true  # unless something appeared meanwhile
  log "cluster stopped; state removed ($STATE_DIR)"
fi
