#!/usr/bin/env bash
# Stop the local Suanli control plane started by up.sh and remove its state (.cluster/).
# Built binaries stay in ${SUANLI_CACHE:-~/.cache/suanli}. Safe to run when nothing runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CLUSTER_DIR/components.sh"

take_cluster_lock

if [[ ! -e "$STATE_DIR" ]]; then
  log "no cluster state in $STATE_DIR; nothing to stop"
  exit 0
fi
[[ -f "$STATE_DIR/.suanli-cluster" ]] \
  || die "$STATE_DIR was not made by up.sh (no .suanli-cluster marker); not touching it"

stop_all
rm -rf "$STATE_DIR"
log "cluster stopped; state removed ($STATE_DIR)"
