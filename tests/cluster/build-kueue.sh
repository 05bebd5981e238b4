#!/usr/bin/env bash
# Build Kueue's manager (sigs.k8s.io/kueue/cmd/kueue at $KUEUE_VERSION, versions.env) from its Go
# module into the cache the control plane is built into, and copy the CRDs its module ships
# (config/components/crd/bases/) beside it:
#   ${SUANLI_CACHE:-~/.cache/suanli}/bin/kueue-<version>/kueue
#   ${SUANLI_CACHE:-~/.cache/suanli}/bin/kueue-<version>/crds/*.yaml
# Only the Kueue benchmark (tests/bench/test_bench_kueue.py) needs it, so build.sh does not build
# it. Skips whatever is already there: a warm machine returns in well under a second; a cold one
# takes about 7 minutes (2 cores). Prints the binary's folder on stdout as its last line.
#
# Kueue's go.mod has no replace directives, so a plain `go install module@version` builds it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v go >/dev/null || [[ -x /usr/local/go/bin/go ]] || die "Go is not installed (need Go >= 1.25 on PATH or at /usr/local/go)"
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"

export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
JOBS="${SUANLI_BUILD_JOBS:-2}"
mkdir -p "$KUEUE_BIN_DIR"

if [[ -x "$KUEUE_BIN_DIR/kueue" && -f "$KUEUE_BIN_DIR/crds/kueue.x-k8s.io_workloads.yaml" ]]; then
  echo "$KUEUE_BIN_DIR"
  exit 0
fi

# One build at a time per cache (the control plane's build takes the same lock).
exec 9>"$SUANLI_CACHE/build.lock"
if ! flock -n 9; then
  log "another build is running (lock $SUANLI_CACHE/build.lock); waiting for it..."
  flock 9
fi

start=$SECONDS
if [[ ! -x "$KUEUE_BIN_DIR/kueue" ]]; then
  log "building kueue $KUEUE_VERSION from sigs.k8s.io/kueue (first time takes about 7 minutes)..."
  tmp="$KUEUE_BIN_DIR/.build.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  GOBIN="$tmp" GOFLAGS=-buildvcs=false go install -p "$JOBS" -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
    "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION" \
    || { rm -rf "$tmp"; die "building kueue $KUEUE_VERSION failed (see above)"; }
  mv "$tmp/kueue" "$KUEUE_BIN_DIR/kueue"
  rm -rf "$tmp"
fi

if [[ ! -f "$KUEUE_BIN_DIR/crds/kueue.x-k8s.io_workloads.yaml" ]]; then
  # The module is in the module cache after the build (or downloaded now if the cache was cleaned).
  dir=$(cd "$KUEUE_BIN_DIR" && go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  bases="$dir/config/components/crd/bases"
  [[ -f "$bases/kueue.x-k8s.io_workloads.yaml" ]] || die "no CRDs in $bases (sigs.k8s.io/kueue@$KUEUE_VERSION)"
  rm -rf "$KUEUE_BIN_DIR/crds.tmp"
  mkdir -p "$KUEUE_BIN_DIR/crds.tmp"
  cp "$bases"/*.yaml "$KUEUE_BIN_DIR/crds.tmp/"
  chmod u+w "$KUEUE_BIN_DIR/crds.tmp"/*.yaml  # the module cache is read-only
  rm -rf "$KUEUE_BIN_DIR/crds"
  mv "$KUEUE_BIN_DIR/crds.tmp" "$KUEUE_BIN_DIR/crds"
fi
log "kueue $KUEUE_VERSION ready in $((SECONDS - start))s: $KUEUE_BIN_DIR"
echo "$KUEUE_BIN_DIR"
