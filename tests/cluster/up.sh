#!/usr/bin/env bash
# Start (or reuse) the local Suanli control plane: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (fake nodes), as local processes
# listening on 127.0.0.1 only. State in .cluster/ (kubeconfig, certs, logs, pids).
#
#   bash tests/cluster/up.sh      # or: make cluster-up
#   export KUBECONFIG=$PWD/.cluster/kubeconfig
#
# Further independent clusters by name, each with its own processes and free ports chosen
# automatically (kept in .cluster/NAME/ports.env), state and kubeconfig in .cluster/NAME/:
#
#   CLUSTER=guian bash tests/cluster/up.sh      # or: make cluster-up CLUSTER=guian
#
# Idempotent: a healthy running cluster is reused (returns in about a second); a broken
# one is torn down and started again. Every wait has a deadline
# (SUANLI_READY_TIMEOUT_SECONDS, default 120).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CLUSTER_DIR/components.sh"

for tool in openssl curl ss setsid; do
  command -v "$tool" >/dev/null || die "'$tool' is required but not installed"
done

print_usage_hint() {
  cat >&2 <<HINT
[suanli-cluster] cluster ${CLUSTER_NAME:-(default)} is up (Kubernetes $KUBE_VERSION, kwok $KWOK_VERSION, etcd $ETCD_VERSION)
  kubeconfig:  $STATE_DIR/kubeconfig
  API server:  https://$LISTEN_ADDRESS:$APISERVER_PORT
  logs:        $STATE_DIR/logs/
  use it:      export KUBECONFIG=$STATE_DIR/kubeconfig PATH=$STATE_DIR/bin:\$PATH
               kubectl get nodes
  fake nodes:  python tests/cluster/fake_nodes.py apply -f <ComputeCenter yaml> [--nodes-per-pool N]
  stop it:     make cluster-down$MAKE_ARGS   (or${CLUSTER_NAME:+ CLUSTER=$CLUSTER_NAME} bash tests/cluster/down.sh)
HINT
}

# A setting asked for that the running cluster was not started with: it cannot change in place.
check_kept_settings() {
  local var kept
  for var in NODE_LEASE_SECONDS CONTROLLER_MANAGER_QPS; do
    kept=$(setting_kept "$var")
    [[ -z "$kept" || "$kept" == "${!var}" ]] || die "the running cluster in $STATE_DIR has $var=$kept, \
not the ${!var} asked for with SUANLI_$var; stop it first (make cluster-down$MAKE_ARGS), then start it again"
  done
}

reuse_if_healthy() {
  if [[ -f "$STATE_DIR/kubeconfig" ]] && all_running && apiserver_ready; then
    check_kept_settings
    log "reusing the running cluster in $STATE_DIR"
    print_usage_hint
    exit 0
  fi
}

# --- reuse a healthy cluster (read-only check first, again under the lock) ----------
reuse_if_healthy
take_cluster_lock
reuse_if_healthy
if [[ -f "$STATE_DIR/kubeconfig" ]]; then
  log "found a stopped or broken cluster in $STATE_DIR ($(describe_not_running)); restarting it"
  bash "$CLUSTER_DIR/down.sh"  # a named cluster's ports stay the same: they are read above
fi
[[ -e "$STATE_DIR" ]] && [[ ! -f "$STATE_DIR/.suanli-cluster" ]] && [[ -n "$(own_state_entries)" ]] \
  && die "$STATE_DIR exists but was not made by up.sh; move it away or set SUANLI_CLUSTER_DIR"

if [[ -n "$CLUSTER_NAME" ]]; then
  mkdir -p "$STATE_DIR"
  touch "$STATE_DIR/.suanli-cluster"
  assign_ports
fi
check_ports_free "${COMPONENTS[@]}"

# --- binaries ---------------------------------------------------------------------
bash "$CLUSTER_DIR/build.sh"

# On failure stop what we started (no half cluster left running); keep the logs.
trap 'rc=$?; if ((rc)); then stop_started; log "start failed; logs kept in $LOGS (make cluster-down$MAKE_ARGS removes them)"; fi' EXIT

start=$SECONDS
mkdir -p "$STATE_DIR"/{pki,logs,pids,bin,etcd}  # all in DEFAULT_STATE_SUBDIRS (lib.sh)
touch "$STATE_DIR/.suanli-cluster"
chmod 700 "$STATE_DIR/pki" "$STATE_DIR/etcd"
ln -sfn "$KUBE_BIN_DIR/kubectl" "$STATE_DIR/bin/kubectl"
generate_pki
write_kubeconfigs
write_cluster_env

DEADLINE=$((SECONDS + READY_TIMEOUT_SECONDS))
for name in etcd kube-apiserver; do  # in order: each needs the one before
  start_component "$name"
  wait_until "$name to answer its health check" component_ready "$name"
done
for name in kube-controller-manager kube-scheduler kwok; do start_component "$name"; done  # together
for name in kube-controller-manager kube-scheduler kwok; do
  wait_until "$name to answer its health check" component_ready "$name"
done
# Proves the controller-manager works end to end (and pods can be admitted there).
wait_until "the default ServiceAccount in namespace default" kubectl_quiet get serviceaccount default -n default
check_loopback_only
log "control plane ready in $((SECONDS - start))s"
print_usage_hint
