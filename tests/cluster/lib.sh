# Shared settings of the local control plane scripts (sourced, not executed).
# Everything here can be overridden from the environment.

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/../.." && pwd)"
# shellcheck source=versions.env
source "$CLUSTER_DIR/versions.env"

SUANLI_CACHE="${SUANLI_CACHE:-$HOME/.cache/suanli}"
KUBE_BIN_DIR="$SUANLI_CACHE/bin/kubernetes-$KUBE_VERSION"
ETCD_BIN_DIR="$SUANLI_CACHE/bin/etcd-$ETCD_VERSION"
KWOK_BIN_DIR="$SUANLI_CACHE/bin/kwok-$KWOK_VERSION"
KUBE_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

# Runtime state of one local cluster (gitignored): certs, etcd data, logs, pids.
STATE_DIR="${SUANLI_CLUSTER_DIR:-$REPO_ROOT/.cluster}"
LISTEN_ADDRESS=127.0.0.1
APISERVER_PORT="${SUANLI_APISERVER_PORT:-16443}"
ETCD_CLIENT_PORT="${SUANLI_ETCD_CLIENT_PORT:-12379}"
ETCD_PEER_PORT="${SUANLI_ETCD_PEER_PORT:-12380}"
CONTROLLER_MANAGER_PORT="${SUANLI_CONTROLLER_MANAGER_PORT:-16257}"
SCHEDULER_PORT="${SUANLI_SCHEDULER_PORT:-16259}"
KWOK_PORT="${SUANLI_KWOK_PORT:-16080}"
# Deadline for the whole control plane to become ready, in seconds.
READY_TIMEOUT_SECONDS="${SUANLI_READY_TIMEOUT_SECONDS:-120}"

log() { printf '[suanli-cluster] %s\n' "$*" >&2; }
die() { printf '[suanli-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# take_cluster_lock: one up.sh/down.sh at a time per state dir (waits up to 10 minutes,
# e.g. behind a first-time build). Nested calls (up.sh -> down.sh) inherit the lock.
take_cluster_lock() {
  [[ "${SUANLI_CLUSTER_LOCKED:-}" == 1 ]] && return 0
  mkdir -p "$SUANLI_CACHE/locks"
  local lock
  lock="$SUANLI_CACHE/locks/state-$(printf '%s' "$STATE_DIR" | sha1sum | cut -c1-12).lock"
  exec 8>"$lock"
  if ! flock -n 8; then
    log "another up.sh/down.sh is working on $STATE_DIR; waiting for it (lock $lock)..."
    flock -w 600 8 || die "gave up waiting for the lock $lock after 600s"
  fi
  export SUANLI_CLUSTER_LOCKED=1
}
