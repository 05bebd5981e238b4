#!/usr/bin/env bash
# Build the operator image with podman, on machines without Docker and without access to a
# container registry. `make image` runs `bash tests/tools/image.sh build`.
#
#   bash tests/tools/image.sh build    the image (IMAGE, default localhost/suanli:dev) from the Dockerfile
#   bash tests/tools/image.sh base     only the local base image (Debian bookworm's python3)
#   bash tests/tools/image.sh wheels   only the wheelhouse (requirements.lock's wheels, hash-checked)
#   bash tests/tools/image.sh podman ARGS...   podman with the flags this host needs
#
# Which base (the Dockerfile's PYTHON_IMAGE), IMAGE_BASE:
#   official  the Dockerfile's default, the official python slim image (pulled if missing)
#   local     Debian bookworm's python3, made here with mmdebstrap and `podman import`
#   auto      (default) official when it is present or `podman pull` gets it, else local, and says so
#
# Dependencies never come from the network inside the build: the lock's wheels are downloaded on
# the host (pip, hash-checked against requirements.lock) into a wheelhouse that `podman build -v`
# mounts into the builder stage (build arg PIP_WHEELHOUSE). Caches, all outside the repo:
#   ${SUANLI_CACHE:-~/.cache/suanli}/image/base-<key>.tar    the local base's root filesystem
#   ${SUANLI_CACHE:-~/.cache/suanli}/image/wheels-<lock>/    the wheelhouse, one per lock
#   podman's own storage (/var/lib/containers)                the base image and the built layers
#
# podman runs with the runc runtime and cgroupfs: crun fails on hosts with hybrid cgroups (v1 and
# v2 mounted), and there may be no systemd to manage cgroups. Override with SUANLI_PODMAN_FLAGS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${SUANLI_CACHE:-$HOME/.cache/suanli}"
IMAGE_CACHE="$CACHE/image"
IMAGE="${IMAGE:-localhost/suanli:dev}"
IMAGE_BASE="${IMAGE_BASE:-auto}"
read -r -a PODMAN_FLAGS <<<"${SUANLI_PODMAN_FLAGS:---runtime runc --cgroup-manager cgroupfs --events-backend file}"
PULL_TIMEOUT_S="${SUANLI_IMAGE_PULL_TIMEOUT_SECONDS:-120}"

# The local base: Debian bookworm (with its updates and security fixes) and its python3, plus what
# the Dockerfile's stages use: pip (builder), the `python` name, groupadd/useradd (passwd).
# PEP 668's EXTERNALLY-MANAGED marker is removed so pip installs into the system Python, as in the
# official image. Changing any of this changes the key, so the base is made again.
BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-pip,python-is-python3,passwd,ca-certificates
BASE_MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
BASE_DPKG_OPTS=(
  "path-exclude=/usr/share/man/*" "path-exclude=/usr/share/doc/*" "path-include=/usr/share/doc/*/copyright"
  "path-exclude=/usr/share/locale/*" "path-exclude=/usr/share/info/*"
)
BASE_HOOKS=(
  'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED'
  'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*'
)
BASE_KEY="$(printf '%s\n' "$BASE_SUITE" "$BASE_PACKAGES" "${BASE_MIRRORS[@]}" "${BASE_DPKG_OPTS[@]}" "${BASE_HOOKS[@]}" \
  | sha256sum | cut -c1-12)"
BASE_IMAGE="localhost/suanli-base:$BASE_SUITE-$BASE_KEY"
OFFICIAL_IMAGE="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$ROOT/Dockerfile")"
LOCK_KEY="$(sha256sum "$ROOT/requirements.lock" | cut -c1-12)"
WHEELHOUSE="$IMAGE_CACHE/wheels-$LOCK_KEY"

log() { echo "[suanli-image] $*" >&2; }
die() { echo "[suanli-image] ERROR: $*" >&2; exit 1; }
pm() { podman "${PODMAN_FLAGS[@]}" "$@"; }

need_podman() {
  if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null; then
    bash "$ROOT/tests/tools/install_tools.sh" podman
  fi
}

has_image() { pm image exists "$1"; }

# The local base image, from its cached root filesystem tarball, made with mmdebstrap if missing.
ensure_base() {
  has_image "$BASE_IMAGE" && return
  mkdir -p "$IMAGE_CACHE"
  local tarball="$IMAGE_CACHE/base-$BASE_SUITE-$BASE_KEY.tar"
  if [[ ! -s "$tarball" ]]; then
    [[ $(id -u) == 0 ]] || die "mmdebstrap needs root here to make the local base; run as root, or IMAGE_BASE=official"
    log "making the local base with mmdebstrap ($BASE_SUITE: $BASE_PACKAGES); first run only, a few minutes"
    local args=(--variant=minbase --format=tar "--include=$BASE_PACKAGES")
    local opt hook
    for opt in "${BASE_DPKG_OPTS[@]}"; do args+=("--dpkgopt=$opt"); done
    for hook in "${BASE_HOOKS[@]}"; do args+=("--customize-hook=$hook"); done
    timeout 1500 mmdebstrap --quiet "${args[@]}" "$BASE_SUITE" "$tarball.part" "${BASE_MIRRORS[@]}" \
      || { rm -f "$tarball.part"; die "mmdebstrap $BASE_SUITE failed (are Debian's mirrors reachable? apt-get update works?)"; }
    mv "$tarball.part" "$tarball"
  fi
  log "importing $tarball as $BASE_IMAGE"
  pm import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$tarball" "$BASE_IMAGE" >/dev/null || die "podman import $tarball failed"
}

# requirements.lock's wheels for this platform and Python 3.11, hash-checked by pip on the host.
ensure_wheels() {
  [[ -f "$WHEELHOUSE/.complete" ]] && return
  mkdir -p "$IMAGE_CACHE"
  local py="${PYTHON:-python3}"
  "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "the wheelhouse is downloaded with the host's Python and must match the image's 3.11: set PYTHON=python3.11"
  log "downloading requirements.lock's wheels into $WHEELHOUSE (hash-checked; once per lock)"
  rm -rf "$WHEELHOUSE.part"
  PIP_FIND_LINKS="" timeout 900 "$py" -m pip download --quiet --disable-pip-version-check --require-hashes \
      --only-binary=:all: --dest "$WHEELHOUSE.part" -r "$ROOT/requirements.lock" \
    || { rm -rf "$WHEELHOUSE.part"; die "pip download -r requirements.lock failed (is PyPI reachable?)"; }
  rm -rf "$WHEELHOUSE" && mv "$WHEELHOUSE.part" "$WHEELHOUSE" && touch "$WHEELHOUSE/.complete"
}

# The base the build uses, by IMAGE_BASE; prints the image name.
choose_base() {
  case "$IMAGE_BASE" in
    local) ensure_base; echo "$BASE_IMAGE" ;;
    official)
      has_image "$OFFICIAL_IMAGE" || timeout "$PULL_TIMEOUT_S" podman "${PODMAN_FLAGS[@]}" pull --quiet "$OFFICIAL_IMAGE" >/dev/null \
        || die "cannot pull $OFFICIAL_IMAGE (no registry access?); IMAGE_BASE=local builds on Debian's python3 instead"
      echo "$OFFICIAL_IMAGE" ;;
    auto)
      if has_image "$OFFICIAL_IMAGE" || timeout "$PULL_TIMEOUT_S" podman "${PODMAN_FLAGS[@]}" pull --quiet "$OFFICIAL_IMAGE" >/dev/null 2>&1; then
        echo "$OFFICIAL_IMAGE"
      else
        log "$OFFICIAL_IMAGE cannot be pulled here: building on the local base (Debian bookworm's python3); IMAGE_BASE=official makes this an error"
        ensure_base; echo "$BASE_IMAGE"
      fi ;;
    *) die "IMAGE_BASE=$IMAGE_BASE: use official, local or auto" ;;
  esac
}

build() {
  local base started
  started=$(date +%s)
  base="$(choose_base)"
  ensure_wheels
  log "podman build $IMAGE on $base (log: $IMAGE_CACHE/build.log)"
  mkdir -p "$IMAGE_CACHE"
  if ! pm build --pull=never --layers \
      --file "$ROOT/Dockerfile" --tag "$IMAGE" \
      --build-arg "PYTHON_IMAGE=$base" \
      --build-arg PIP_WHEELHOUSE=/wheelhouse \
      --volume "$WHEELHOUSE:/wheelhouse:ro" \
      --label "io.suanli.base=$base" \
      "$ROOT" >"$IMAGE_CACHE/build.log" 2>&1; then
    tail -n 40 "$IMAGE_CACHE/build.log" >&2
    die "podman build failed at the step above (whole log: $IMAGE_CACHE/build.log)"
  fi
  log "built $IMAGE ($(pm image inspect --format '{{.Size}}' "$IMAGE") bytes) in $(( $(date +%s) - started )) s"
}

cmd="${1:-build}"
shift || true
need_podman
if [[ $cmd != podman ]]; then
  # One build at a time (parallel test runs share the caches and podman's storage); bounded wait.
  mkdir -p "$IMAGE_CACHE"
  exec 9>"$IMAGE_CACHE/image.lock"
  flock -w 1800 9 || die "another tests/tools/image.sh held $IMAGE_CACHE/image.lock for 30 minutes"
fi
case "$cmd" in
  build) build ;;
  base) ensure_base; echo "$BASE_IMAGE" ;;
  wheels) ensure_wheels; echo "$WHEELHOUSE" ;;
  podman) pm "$@" ;;
  *) die "unknown command '$cmd' (build, base, wheels, podman)" ;;
esac
