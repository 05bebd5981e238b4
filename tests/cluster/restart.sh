#!/usr/bin/env bash
# Stop one component of the running local control plane and start it again, after it has
# been down for DOWN_SECONDS: an outage drill for tests (the operator must ride it out).
#
#   bash tests/cluster/restart.sh kube-apiserver 8
#
# The component gets SIGTERM (SIGKILL after 15 s, as in down.sh) and is started with the
# flags up.sh gave it; returns once it answers its health check again (deadline:
# SUANLI_READY_TIMEOUT_SECONDS, default 120). etcd keeps its data, so nothing is lost.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CLUSTER_DIR/components.sh"

name=${1:?usage: restart.sh COMPONENT [DOWN_SECONDS]}
down=${2:-0}
[[ "$down" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "DOWN_SECONDS must be a number of seconds, got '$down'"
case "$name" in
  etcd) start=start_etcd; ready=(etcd_healthy) ;;
  kube-apiserver) start=start_apiserver; ready=(apiserver_ready) ;;
  kube-controller-manager) start=start_controller_manager; ready=(component_healthy "$CONTROLLER_MANAGER_PORT") ;;
  kube-scheduler) start=start_scheduler; ready=(component_healthy "$SCHEDULER_PORT") ;;
  kwok) start=start_kwok; ready=(kwok_healthy) ;;
  *) die "unknown component '$name'; one of: ${COMPONENTS[*]}" ;;
esac

take_cluster_lock
[[ -f "$STATE_DIR/kubeconfig" ]] && all_running \
  || die "no running local control plane in $STATE_DIR ($(describe_not_running)); start it with: make cluster-up"

stop_components "$name"
sleep "$down"
DEADLINE=$((SECONDS + READY_TIMEOUT_SECONDS))
"$start"
wait_until "$name to answer its health check" "${ready[@]}"
log "$name is back after ${down}s down"
