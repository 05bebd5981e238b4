#!/usr/bin/env bash
# Stop one component of the running local control plane and start it again, after it has
# been down for DOWN_SECONDS: an outage drill for tests (the operator must ride it out).
#
#   bash tests/cluster/restart.sh kube-apiserver 70
#
# The component gets SIGTERM (SIGKILL after 15 s, as in down.sh) and is started with the
# flags up.sh gave it. Components that exited meanwhile are started again too, as a kubelet
# would restart them: kube-controller-manager and kube-scheduler exit when they cannot renew
# their leader lease (an API server down for more than ~10 s). Returns once every component
# answers its health check (deadline: SUANLI_READY_TIMEOUT_SECONDS, default 120). etcd keeps
# its data, so nothing is lost.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CLUSTER_DIR/components.sh"

name=${1:?usage: restart.sh COMPONENT [DOWN_SECONDS]}
down=${2:-0}
[[ "$down" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "DOWN_SECONDS must be a number of seconds, got '$down'"
[[ " ${COMPONENTS[*]} " == *" $name "* ]] || die "unknown component '$name'; one of: ${COMPONENTS[*]}"

# start_and_wait NAME: start one component with up.sh's flags and wait for its health check.
start_and_wait() {
  start_component "$1"
  wait_until "$1 to answer its health check" component_ready "$1"
}

take_cluster_lock
[[ -f "$STATE_DIR/kubeconfig" ]] && all_running \
  || die "no running local control plane in $STATE_DIR ($(describe_not_running)); start it with: make cluster-up"

stop_components "$name"
sleep "$down"
DEADLINE=$((SECONDS + READY_TIMEOUT_SECONDS))
start_and_wait "$name"
log "$name is back after ${down}s down"
for other in "${COMPONENTS[@]}"; do
  if ! pid_of "$other" >/dev/null; then
    log "$other exited while $name was down; starting it again (as a kubelet would)"
    start_and_wait "$other"
  fi
done
