# How each control plane component is configured, started and health-checked
# (sourced by up.sh / down.sh after lib.sh; not executed on its own).

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
PKI="$STATE_DIR/pki"
LOGS="$STATE_DIR/logs"
PIDS="$STATE_DIR/pids"
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1

binary_of() {
  case "$1" in
    etcd) echo "$ETCD_BIN_DIR/etcd" ;;
    kwok) echo "$KWOK_BIN_DIR/kwok" ;;
    *) echo "$KUBE_BIN_DIR/$1" ;;
  esac
}

port_of() {
  case "$1" in
    etcd) echo "$ETCD_CLIENT_PORT $ETCD_PEER_PORT" ;;
    kube-apiserver) echo "$APISERVER_PORT" ;;
    kube-controller-manager) echo "$CONTROLLER_MANAGER_PORT" ;;
    kube-scheduler) echo "$SCHEDULER_PORT" ;;
    kwok) echo "$KWOK_PORT" ;;
  esac
}

# pid_of NAME: prints the pid of our running component, or fails. The pid must still
# run our binary (pids get reused), so we never signal a stranger.
pid_of() {
  local file="$PIDS/$1.pid" pid exe
  [[ -f "$file" ]] || return 1
  pid=$(<"$file")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ "$exe" == "$(binary_of "$1")" ]] || return 1
  echo "$pid"
}

all_running() {
  local name
  for name in "${COMPONENTS[@]}"; do pid_of "$name" >/dev/null || return 1; done
}

describe_not_running() {
  local name down=()
  for name in "${COMPONENTS[@]}"; do pid_of "$name" >/dev/null || down+=("$name"); done
  if ((${#down[@]})); then echo "not running: ${down[*]}"; else echo "API server not ready"; fi
}

# --- health checks (each a single quick probe) -----------------------------------
etcd_healthy() {
  curl -fsS --max-time 2 "http://$LISTEN_ADDRESS:$ETCD_CLIENT_PORT/health" | grep -q '"health":"true"'
}
apiserver_ready() {
  curl -fsS --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://$LISTEN_ADDRESS:$APISERVER_PORT/readyz" >/dev/null
}
component_healthy() { # component_healthy PORT (self-signed serving certs: -k)
  curl -fsSk --max-time 2 "https://$LISTEN_ADDRESS:$1/healthz" >/dev/null
}
kwok_healthy() {
  curl -fsS --max-time 2 "http://$LISTEN_ADDRESS:$KWOK_PORT/healthz" >/dev/null
}
# component_ready NAME: the health check of one component (what up.sh and restart.sh wait for).
component_ready() {
  case "$1" in
    etcd) etcd_healthy ;;
    kube-apiserver) apiserver_ready ;;
    kube-controller-manager) component_healthy "$CONTROLLER_MANAGER_PORT" ;;
    kube-scheduler) component_healthy "$SCHEDULER_PORT" ;;
    kwok) kwok_healthy ;;
    *) return 1 ;;
  esac
}
kubectl_quiet() {
  "$KUBE_BIN_DIR/kubectl" --kubeconfig "$STATE_DIR/kubeconfig" --request-timeout=5s "$@" >/dev/null 2>&1
}

# wait_until DESCRIPTION CMD...: polls CMD until it succeeds or $DEADLINE passes;
# fails fast, with the log tail, when a component process has died.
wait_until() {
  local what=$1; shift
  log "waiting for $what..."
  until "$@" 2>/dev/null; do
    local name
    for name in "${STARTED[@]}"; do
      if ! pid_of "$name" >/dev/null; then
        tail -n 30 "$LOGS/$name.log" >&2 || true
        die "$name exited while waiting for $what; last log lines above, full log: $LOGS/$name.log"
      fi
    done
    if (( SECONDS >= DEADLINE )); then
      die "timed out after ${READY_TIMEOUT_SECONDS}s waiting for $what; logs in $LOGS/ (raise SUANLI_READY_TIMEOUT_SECONDS on a slow machine)"
    fi
    sleep 0.2
  done
}

check_ports_free() {
  local name port used
  for name in "$@"; do
    for port in $(port_of "$name"); do
      used=$(ss -ltnpH "sport = :$port" 2>/dev/null || true)
      [[ -z "$used" ]] || die "port $port (for $name) is already in use: $used
  stop whatever holds it, or choose other ports with SUANLI_APISERVER_PORT, SUANLI_ETCD_CLIENT_PORT,
  SUANLI_ETCD_PEER_PORT, SUANLI_CONTROLLER_MANAGER_PORT, SUANLI_SCHEDULER_PORT, SUANLI_KWOK_PORT${CLUSTER_NAME:+
  (cluster $CLUSTER_NAME keeps its ports in $PORTS_FILE; make cluster-up$MAKE_ARGS starts it afresh,
  choosing free ports for those taken)}"
    done
  done
}

# assign_ports: the ports of a named cluster, written to ports.env. Explicit SUANLI_*_PORT values
# as given; ports kept in ports.env again, unless something else listens there now (then another
# one, and the log says so); the rest chosen at random among the free ones in
# NAMED_PORT_MIN..NAMED_PORT_MAX. Under a lock shared by all clusters, with the default cluster's
# ports and those of the other named clusters (running or stopped) excluded, so that no two of
# them get the same port.
assign_ports() {
  mkdir -p "$SUANLI_CACHE/locks" "$STATE_DIR"
  exec 7>"$SUANLI_CACHE/locks/ports.lock"
  flock -w 60 7 || die "gave up waiting for the port lock $SUANLI_CACHE/locks/ports.lock after 60s"
  local -A taken=()
  local port var name holder tries
  while read -r port; do
    [[ "$port" =~ ^[0-9]+$ ]] && taken[$port]="a listening process"
  done < <(ss -ltnH 2>/dev/null | awk '{n = split($4, a, ":"); print a[n]}')
  for port in "${DEFAULT_PORTS[@]}"; do taken[$port]="the default cluster"; done
  while read -r port; do taken[$port]="the default cluster"; done \
    < <(grep -oE ':[0-9]+' "$CLUSTERS_ROOT/cluster.env" 2>/dev/null | tr -d : || true)
  while read -r name; do
    [[ "$name" == "$CLUSTER_NAME" ]] && continue
    while read -r var port; do taken[$port]="cluster $name"; done < <(read_ports_file "$CLUSTERS_ROOT/$name/ports.env")
  done < <(named_cluster_names)
  for var in "${EXPLICIT_PORT_VARS[@]}"; do taken[${!var}]="this cluster"; done
  for var in "${PORT_VARS[@]}"; do
    [[ " ${EXPLICIT_PORT_VARS[*]} " == *" $var "* ]] && continue
    port=${!var}
    if [[ -n "$port" ]]; then
      if [[ -z "${taken[$port]:-}" ]]; then taken[$port]="this cluster"; continue; fi
      holder=$(ss -ltnpH "sport = :$port" 2>/dev/null || true)
      holder=${holder:-${taken[$port]}}
    fi
    tries=0
    until [[ -n "${port:-}" && -z "${taken[$port]:-}" ]]; do
      (( ++tries <= 2000 )) || die "found no free port in $NAMED_PORT_MIN..$NAMED_PORT_MAX for $var"
      port=$((NAMED_PORT_MIN + RANDOM % (NAMED_PORT_MAX - NAMED_PORT_MIN + 1)))
    done
    if [[ -n "${!var}" ]]; then
      log "port ${!var} ($var, kept in $PORTS_FILE) is taken now (by: $holder); using $port instead"
    fi
    taken[$port]="this cluster"
    printf -v "$var" '%s' "$port"
  done
  for var in "${PORT_VARS[@]}"; do echo "$var=${!var}"; done > "$PORTS_FILE.tmp"
  mv -f "$PORTS_FILE.tmp" "$PORTS_FILE"
  exec 7>&-
}

# Every listening socket of our processes must be on 127.0.0.1 (nothing on 0.0.0.0/::).
check_loopback_only() {
  local name pid bad
  for name in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$name") || continue
    bad=$(ss -ltnpH 2>/dev/null | grep "pid=$pid," | awk '{print $4}' | grep -v "^$LISTEN_ADDRESS:" || true)
    [[ -z "$bad" ]] || die "$name listens on a non-loopback address: $bad (this is a bug in tests/cluster/components.sh)"
  done
}

# --- certificates -----------------------------------------------------------------
# sign NAME SUBJECT EXTENSIONS: key + certificate signed by the local CA.
sign() {
  local name=$1 subject=$2 ext=$3
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/$name.key" -subj "$subject" \
    -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile <(printf '%s\n' "$ext") -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}

generate_pki() {
  log "generating certificates in $PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -sha256 -subj "/CN=suanli-local-ca" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign admin "/O=system:masters/CN=suanli-admin" "$client"
  sign kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  sign kube-scheduler "/CN=system:kube-scheduler" "$client"
  # kwok plays every kubelet of the fake nodes (node and pod status, leases, deletes).
  sign kwok "/O=system:masters/CN=kwok-controller" "$client"
  openssl genrsa -out "$PKI/service-account.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/service-account.key" -pubout -out "$PKI/service-account.pub" 2>/dev/null
  chmod 600 "$PKI"/*.key
}

# write_kubeconfig FILE USER: a kubeconfig with the certificates embedded. A named cluster's
# entries carry its name (suanli-NAME), so that kubeconfigs of several clusters can be merged.
write_kubeconfig() {
  local file=$1 user=$2 user_entry=$2
  [[ -z "$CLUSTER_NAME" ]] || user_entry="$CLUSTER_LABEL-$user"
  cat > "$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_LABEL
  cluster:
    server: https://$LISTEN_ADDRESS:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: $user_entry
  user:
    client-certificate-data: $(base64 -w0 < "$PKI/$user.crt")
    client-key-data: $(base64 -w0 < "$PKI/$user.key")
contexts:
- name: $CLUSTER_LABEL
  context: {cluster: $CLUSTER_LABEL, user: $user_entry}
current-context: $CLUSTER_LABEL
KUBECONFIG
  chmod 600 "$file"
}

write_kubeconfigs() {
  write_kubeconfig "$STATE_DIR/kubeconfig" admin
  local name
  for name in kube-controller-manager kube-scheduler kwok; do
    write_kubeconfig "$PKI/$name.kubeconfig" "$name"
  done
}

# Facts about this cluster for tools and tests (tests/cluster/pytest_plugin.py).
write_cluster_env() {
  cat > "$STATE_DIR/cluster.env" <<ENV
CLUSTER_NAME=$CLUSTER_NAME
KUBE_VERSION=$KUBE_VERSION
ETCD_VERSION=$ETCD_VERSION
KWOK_VERSION=$KWOK_VERSION
APISERVER_URL=https://$LISTEN_ADDRESS:$APISERVER_PORT
ETCD_URL=http://$LISTEN_ADDRESS:$ETCD_CLIENT_PORT
CONTROLLER_MANAGER_HEALTHZ=https://$LISTEN_ADDRESS:$CONTROLLER_MANAGER_PORT/healthz
SCHEDULER_HEALTHZ=https://$LISTEN_ADDRESS:$SCHEDULER_PORT/healthz
KWOK_HEALTHZ=http://$LISTEN_ADDRESS:$KWOK_PORT/healthz
NODE_LEASE_SECONDS=$NODE_LEASE_SECONDS
CONTROLLER_MANAGER_QPS=$CONTROLLER_MANAGER_QPS
ENV
}

# --- processes --------------------------------------------------------------------
STARTED=()
# launch NAME ARGS...: runs the component detached from this shell's session (a Ctrl-C
# in the caller's terminal must not kill half a cluster), logs to logs/NAME.log.
launch() {
  local name=$1; shift
  local bin
  bin=$(binary_of "$name")
  [[ -x "$bin" ]] || die "$bin is missing; run bash tests/cluster/build.sh"
  log "starting $name (log: $LOGS/$name.log)"
  # 7>&- 8>&- 9>&-: the component must not inherit (and so hold forever) our lock files.
  setsid "$bin" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 7>&- 8>&- 9>&- &
  local pid=$! i
  echo "$pid" > "$PIDS/$name.pid"
  STARTED+=("$name")
  # $! is our forked shell until it has exec'd setsid and setsid the component, and pid_of
  # recognises only the component: wait for the exec, so wait_until never takes a component
  # still starting for one that exited (on a busy machine it did, with an empty log). A
  # component that dies at once is left for wait_until to report, with its log.
  for ((i = 0; i < 400; i++)); do
    pid_of "$name" >/dev/null && return 0
    alive "$pid" || return 0
    sleep 0.025
  done
  die "$name (pid $pid) was not running $bin 10s after it was started; see $LOGS/$name.log"
}

# start_component NAME: start one component with the flags below.
start_component() {
  case "$1" in
    etcd) start_etcd ;;
    kube-apiserver) start_apiserver ;;
    kube-controller-manager) start_controller_manager ;;
    kube-scheduler) start_scheduler ;;
    kwok) start_kwok ;;
    *) die "unknown component '$1'; one of: ${COMPONENTS[*]}" ;;
  esac
}

start_etcd() {
  launch etcd \
    --name suanli-local \
    --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://$LISTEN_ADDRESS:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://$LISTEN_ADDRESS:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://$LISTEN_ADDRESS:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://$LISTEN_ADDRESS:$ETCD_PEER_PORT" \
    --initial-cluster "suanli-local=http://$LISTEN_ADDRESS:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --quota-backend-bytes 2147483648 \
    --unsafe-no-fsync \
    --log-level warn
}

start_apiserver() {
  launch kube-apiserver \
    --bind-address "$LISTEN_ADDRESS" \
    --advertise-address "$LISTEN_ADDRESS" \
    --secure-port "$APISERVER_PORT" \
    --etcd-servers "http://$LISTEN_ADDRESS:$ETCD_CLIENT_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/service-account.pub" \
    --service-account-signing-key-file "$PKI/service-account.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allow-privileged=true \
    --profiling=false \
    --v=1
}

start_controller_manager() {
  local kubeconfig="$PKI/kube-controller-manager.kubeconfig"
  launch kube-controller-manager \
    --kubeconfig "$kubeconfig" \
    --authentication-kubeconfig "$kubeconfig" \
    --authorization-kubeconfig "$kubeconfig" \
    --bind-address "$LISTEN_ADDRESS" \
    --secure-port "$CONTROLLER_MANAGER_PORT" \
    --controllers '*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/service-account.key" \
    --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" \
    --cluster-signing-key-file "$PKI/ca.key" \
    --cluster-name suanli-local \
    --node-monitor-grace-period "$((NODE_LEASE_SECONDS * 5 / 4))s" \
    --kube-api-qps "$CONTROLLER_MANAGER_QPS" \
    --kube-api-burst "$((CONTROLLER_MANAGER_QPS * 3 / 2))" \
    --leader-elect=true \
    --profiling=false \
    --v=1
}

start_scheduler() {
  local kubeconfig="$PKI/kube-scheduler.kubeconfig"
  launch kube-scheduler \
    --kubeconfig "$kubeconfig" \
    --authentication-kubeconfig "$kubeconfig" \
    --authorization-kubeconfig "$kubeconfig" \
    --bind-address "$LISTEN_ADDRESS" \
    --secure-port "$SCHEDULER_PORT" \
    --leader-elect=true \
    --profiling=false \
    --v=1
}

start_kwok() {
  launch kwok \
    --kubeconfig "$PKI/kwok.kubeconfig" \
    --config "$CLUSTER_DIR/kwok-stages.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --server-address "$LISTEN_ADDRESS:$KWOK_PORT" \
    --node-lease-duration-seconds "$NODE_LEASE_SECONDS" \
    --node-ip 10.244.0.1 \
    --cidr 10.244.0.0/16
}

# stop_components NAME...: SIGTERM to all of them at once, wait (deadline), then SIGKILL
# the stragglers. Only our own recorded pids (see pid_of).
stop_components() {
  local name pid pids=() names=()
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$name")
    fi
    rm -f "$PIDS/$name.pid"
  done
  local deadline=$((SECONDS + ${SUANLI_STOP_TIMEOUT_SECONDS:-15})) i
  for i in "${!pids[@]}"; do
    while alive "${pids[$i]}"; do
      if (( SECONDS >= deadline )); then
        log "${names[$i]} (pid ${pids[$i]}) ignored SIGTERM; sending SIGKILL"
        kill -KILL "${pids[$i]}" 2>/dev/null || true
        break
      fi
      sleep 0.05
    done
  done
}

# alive PID: running and not a zombie (an exited child of a dead parent may linger as one).
alive() {
  local state
  state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# Stop in reverse dependency order: clients of the API server, then it, then etcd.
# The operator `make demo` leaves running against this cluster (tests/cluster/demo.py writes its
# pid): stopped first, like the other clients of the API server. A stale pid file that names no
# `suanli run` is just removed.
stop_demo_operator() {
  local file="$PIDS/suanli-operator.pid" pid i
  [[ -f "$file" ]] || return 0
  pid=$(<"$file"); rm -f "$file"
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq '(^|[ /])suanli(\.cli)? run( |$)' || return 0
  log "stopping the operator the demo left running (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do alive "$pid" || return 0; sleep 0.05; done
  log "the operator (pid $pid) ignored SIGTERM for 15s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

stop_all() {
  stop_demo_operator
  stop_components kwok kube-scheduler kube-controller-manager
  stop_components kube-apiserver
  stop_components etcd
}
stop_started() { stop_all; }
