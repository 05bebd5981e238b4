# Shared settings of the local control plane scripts (sourced, not executed).
# Everything here can be overridden from the environment.

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/../.." && pwd)"
# shellcheck source=versions.env
source "$CLUSTER_DIR/versions.env"

log() { printf '[suanli-cluster] %s\n' "$*" >&2; }
die() { printf '[suanli-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

SUANLI_CACHE="${SUANLI_CACHE:-$HOME/.cache/suanli}"
KUBE_BIN_DIR="$SUANLI_CACHE/bin/kubernetes-$KUBE_VERSION"
ETCD_BIN_DIR="$SUANLI_CACHE/bin/etcd-$ETCD_VERSION"
KWOK_BIN_DIR="$SUANLI_CACHE/bin/kwok-$KWOK_VERSION"
KUBE_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
# Kueue's manager and the CRDs of its module (tests/cluster/build-kueue.sh; only the Kueue benchmark uses them).
KUEUE_BIN_DIR="$SUANLI_CACHE/bin/kueue-$KUEUE_VERSION"

# --- which cluster ------------------------------------------------------------------
# The default cluster (no name) keeps its state in .cluster/ (SUANLI_CLUSTER_DIR). Further,
# independent clusters are named: CLUSTER=NAME (or SUANLI_CLUSTER=NAME), state in .cluster/NAME/,
# free ports chosen at their first start and kept in .cluster/NAME/ports.env.
# What the default cluster keeps in its state dir: no named cluster may take these names.
DEFAULT_STATE_SUBDIRS=(bin etcd logs pids pki demo)

# is_cluster_name NAME: a lowercase DNS label (RFC 1123) that is not one of the default's folders.
is_cluster_name() {
  [[ ${#1} -le 63 && "$1" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ && " ${DEFAULT_STATE_SUBDIRS[*]} " != *" $1 "* ]]
}

if [[ -n "${SUANLI_CLUSTER:-}" && -n "${CLUSTER:-}" && "$SUANLI_CLUSTER" != "$CLUSTER" ]]; then
  die "CLUSTER=$CLUSTER and SUANLI_CLUSTER=$SUANLI_CLUSTER name different clusters; set only one"
fi
CLUSTER_NAME="${SUANLI_CLUSTER:-${CLUSTER:-}}"
if [[ -n "$CLUSTER_NAME" ]] && ! is_cluster_name "$CLUSTER_NAME"; then
  die "CLUSTER='$CLUSTER_NAME' is not a usable cluster name: it must be a lowercase DNS label (a-z, 0-9 and '-', \
starting and ending with a letter or digit, at most 63 characters) and none of: ${DEFAULT_STATE_SUBDIRS[*]}"
fi

# Runtime state of one local cluster (gitignored): certs, etcd data, logs, pids.
CLUSTERS_ROOT="${SUANLI_CLUSTER_DIR:-$REPO_ROOT/.cluster}"
if [[ -n "$CLUSTER_NAME" ]]; then STATE_DIR="$CLUSTERS_ROOT/$CLUSTER_NAME"; else STATE_DIR="$CLUSTERS_ROOT"; fi
# How it appears in kubeconfigs and messages.
CLUSTER_LABEL="suanli-${CLUSTER_NAME:-local}"
MAKE_ARGS="${CLUSTER_NAME:+ CLUSTER=$CLUSTER_NAME}"

# --- ports ------------------------------------------------------------------------
LISTEN_ADDRESS=127.0.0.1
PORT_VARS=(APISERVER_PORT ETCD_CLIENT_PORT ETCD_PEER_PORT CONTROLLER_MANAGER_PORT SCHEDULER_PORT KWOK_PORT)
declare -A DEFAULT_PORTS=([APISERVER_PORT]=16443 [ETCD_CLIENT_PORT]=12379 [ETCD_PEER_PORT]=12380
  [CONTROLLER_MANAGER_PORT]=16257 [SCHEDULER_PORT]=16259 [KWOK_PORT]=16080)
PORTS_FILE="$STATE_DIR/ports.env"
# Named clusters choose free ports in this range (below Linux's ephemeral 32768-60999).
NAMED_PORT_MIN=20000
NAMED_PORT_MAX=32767

# read_ports_file FILE: prints "VAR PORT" for each well-formed line of a ports.env.
read_ports_file() {
  [[ -f "$1" ]] || return 0
  local line
  while IFS= read -r line; do
    [[ "$line" =~ ^([A-Z_]+_PORT)=([0-9]+)$ ]] && echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
  done < "$1"
}

# Explicit SUANLI_*_PORT variables win; then (named clusters) the ports kept in ports.env; then
# the default cluster's fixed ports, or, for a named cluster, none yet (up.sh chooses them).
EXPLICIT_PORT_VARS=()
declare -A PERSISTED_PORTS=()
if [[ -n "$CLUSTER_NAME" ]]; then
  while read -r var port; do PERSISTED_PORTS[$var]=$port; done < <(read_ports_file "$PORTS_FILE")
fi
for var in "${PORT_VARS[@]}"; do
  env_var="SUANLI_$var"
  if [[ -n "${!env_var:-}" ]]; then
    [[ "${!env_var}" =~ ^[0-9]+$ ]] || die "$env_var must be a port number, got '${!env_var}'"
    printf -v "$var" '%s' "${!env_var}"
    EXPLICIT_PORT_VARS+=("$var")
  elif [[ -n "$CLUSTER_NAME" ]]; then
    printf -v "$var" '%s' "${PERSISTED_PORTS[$var]:-}"
  else
    printf -v "$var" '%s' "${DEFAULT_PORTS[$var]}"
  fi
done
unset var env_var port

# Deadline for the whole control plane to become ready, in seconds.
READY_TIMEOUT_SECONDS="${SUANLI_READY_TIMEOUT_SECONDS:-120}"

# --- scale settings (kept in cluster.env: a cluster restarted keeps the ones it was started with) ---
# NODE_LEASE_SECONDS: kwok renews one Lease per fake node every quarter of it, and the controller-manager
# takes a node whose Lease went 1.25x it unrenewed for unhealthy (40 -> 50 s: the kubelet's and
# Kubernetes' defaults). CONTROLLER_MANAGER_QPS: the controller-manager's API rate (burst 1.5x it), one
# budget for all its controllers (Kubernetes' default 20). Thousands of fake nodes on a small host need
# both raised: at 40 s, 5,000 Leases are 500 writes a second, and at 20 QPS the node lifecycle controller
# lifts the not-ready taint of about 4 new nodes a second (the big-fleet benchmark uses 120 and 200).
setting_kept() { # setting_kept NAME: its value in this cluster's cluster.env, if any (never fails)
  [[ -f "$STATE_DIR/cluster.env" ]] || return 0
  sed -n "s/^$1=\([0-9][0-9]*\)$/\1/p" "$STATE_DIR/cluster.env" | head -n 1
}
NODE_LEASE_SECONDS="${SUANLI_NODE_LEASE_SECONDS:-$(setting_kept NODE_LEASE_SECONDS)}"
NODE_LEASE_SECONDS="${NODE_LEASE_SECONDS:-40}"
[[ "$NODE_LEASE_SECONDS" =~ ^[0-9]+$ ]] && ((NODE_LEASE_SECONDS >= 10 && NODE_LEASE_SECONDS <= 3600)) \
  || die "SUANLI_NODE_LEASE_SECONDS must be whole seconds from 10 to 3600, got '$NODE_LEASE_SECONDS'"
CONTROLLER_MANAGER_QPS="${SUANLI_CONTROLLER_MANAGER_QPS:-$(setting_kept CONTROLLER_MANAGER_QPS)}"
CONTROLLER_MANAGER_QPS="${CONTROLLER_MANAGER_QPS:-20}"
[[ "$CONTROLLER_MANAGER_QPS" =~ ^[0-9]+$ ]] && ((CONTROLLER_MANAGER_QPS >= 1 && CONTROLLER_MANAGER_QPS <= 10000)) \
  || die "SUANLI_CONTROLLER_MANAGER_QPS must be a whole number from 1 to 10000, got '$CONTROLLER_MANAGER_QPS'"

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

# own_state_entries: what in $STATE_DIR belongs to this cluster. The default cluster's state
# dir also holds the named clusters' folders: those are not its own (its down.sh keeps them).
own_state_entries() {
  local entry
  [[ -d "$STATE_DIR" ]] || return 0
  for entry in "$STATE_DIR"/* "$STATE_DIR"/.[!.]* "$STATE_DIR"/..?*; do
    [[ -e "$entry" || -L "$entry" ]] || continue
    if [[ -z "$CLUSTER_NAME" && -d "$entry" && ! -L "$entry" ]] && is_cluster_name "${entry##*/}"; then
      continue
    fi
    printf '%s\n' "$entry"
  done
}

# named_cluster_names: the named clusters whose state is in $CLUSTERS_ROOT.
named_cluster_names() {
  local entry
  for entry in "$CLUSTERS_ROOT"/*/; do
    entry=${entry%/}
    [[ -d "$entry" && ! -L "$entry" ]] && is_cluster_name "${entry##*/}" && echo "${entry##*/}"
  done
  return 0
}
