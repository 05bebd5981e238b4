#!/usr/bin/env bash
# Stop one component of the running local control plane and start it again, after it has
# been down for DOWN_SECONDS: an outage drill for tests (the operator must ride it out).
#
#   bash tests/cluster/restart.sh kube-apiserver 70
#   CLUSTER=guian bash tests/cluster/restart.sh kube-apiserver 70     # a named cluster's
#
# The component gets SIGTERM (SIGKILL after 15 s, as in down.sh) and is started with the
# flags up.sh gave it. Components that exited meanwhile are started again too, as a kubelet
# would restart them: kube-controller-manager and kube-scheduler exit when they cannot renew
# their leader lease (an API server down for more than ~10 s). Returns once every component
# answers its health check (deadline: SUANLI_READY_TIMEOUT_SECONDS, default 120). etcd keeps
# its data, so nothing is lost.
#
# An outage of open length, in two steps (a member cluster lost, then back):
#
#   bash tests/cluster/restart.sh --stop [COMPONENT...]   # default: the whole control plane
#   bash tests/cluster/restart.sh --start                 # every component not running
#
# Both keep the state (etcd data, certificates, kubeconfig, ports): --start brings back the
# same cluster on the same ports, where up.sh would replace a stopped cluster by a fresh one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CLUSTER_DIR/components.sh"

usage="usage: restart.sh COMPONENT [DOWN_SECONDS] | restart.sh --stop [COMPONENT...] | restart.sh --start"

# start_and_wait NAME: start one component with up.sh's flags and wait for its health check.
start_and_wait() {
  start_component "$1"
  wait_until "$1 to answer its health check" component_ready "$1"
}

# start_missing: start (in dependency order) every component that is not running, once all of
# their ports are found free (a cluster keeps its ports: its kubeconfigs and certificates name them).
start_missing() {
  local name missing=()
  for name in "${COMPONENTS[@]}"; do pid_of "$name" >/dev/null || missing+=("$name"); done
  ((${#missing[@]})) || return 0
  check_ports_free "${missing[@]}"
  for name in "${missing[@]}"; do
    log "$name is not running; starting it"
    start_and_wait "$name"
  done
}

need_state() {
  [[ -f "$STATE_DIR/kubeconfig" && -n "$APISERVER_PORT" ]] \
    || die "no local control plane in $STATE_DIR; start it with: make cluster-up$MAKE_ARGS"
}

check_names() {
  local name
  for name in "$@"; do
    [[ " ${COMPONENTS[*]} " == *" $name "* ]] || die "unknown component '$name'; one of: ${COMPONENTS[*]}"
  done
}

case "${1:-}" in
  --stop)
    shift
    (($#)) || set -- "${COMPONENTS[@]}"
    check_names "$@"
    take_cluster_lock
    need_state
    # In reverse dependency order, as down.sh: clients of the API server, then it, then etcd.
    for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
      [[ " $* " == *" $name "* ]] && stop_components "$name"
    done
    log "stopped: $* (state kept in $STATE_DIR; restart.sh --start${CLUSTER_NAME:+ with CLUSTER=$CLUSTER_NAME} starts them again)"
    exit 0
    ;;
  --start)
    (($# == 1)) || die "$usage"
    take_cluster_lock
    need_state
    DEADLINE=$((SECONDS + READY_TIMEOUT_SECONDS))
    start_missing
    log "every component of ${CLUSTER_NAME:-the default cluster} answers its health check"
    exit 0
    ;;
  ""|-*) die "$usage" ;;
esac

name=$1
down_seconds=${2:-0}
[[ "$down_seconds" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "DOWN_SECONDS must be a number of seconds, got '$down_seconds'"
check_names "$name"

take_cluster_lock
[[ -f "$STATE_DIR/kubeconfig" ]] && all_running \
  || die "no running local control plane in $STATE_DIR ($(describe_not_running)); start it with: make cluster-up$MAKE_ARGS"

stop_components "$name"
sleep "$down_seconds"
DEADLINE=$((SECONDS + READY_TIMEOUT_SECONDS))
start_and_wait "$name"
log "$name is back after ${down_seconds}s down"
for other in "${COMPONENTS[@]}"; do
  if ! pid_of "$other" >/dev/null; then
    log "$other exited while $name was down; starting it again (as a kubelet would)"
    start_and_wait "$other"
  fi
done
