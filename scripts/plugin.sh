#!/usr/bin/env bash
# Build, create, enable, install and push the sshfs volume driver as a managed Docker plugin.
#
#   scripts/plugin.sh build     npm run build, then PLUGIN_DIR/{config.json,rootfs} from the Dockerfile (when its base
#                               images can be had) or from this machine's binaries (scripts/build-rootfs.sh)
#   scripts/plugin.sh create    docker plugin create PLUGIN_NAME PLUGIN_DIR, replacing an existing plugin of that name
#                               (its `docker plugin set` settings are carried over)
#   scripts/plugin.sh enable    create the host directories of the state/keys mounts, apply settings, enable
#   scripts/plugin.sh install   build + create + enable
#   scripts/plugin.sh push      docker plugin push PLUGIN_NAME, explaining a registry's refusal
#   scripts/plugin.sh remove    disable (forced) and remove PLUGIN_NAME
#
# Every docker command goes to the daemon the docker CLI talks to (DOCKER_HOST / the current context).
# Environment:
#   PLUGIN_CONFIG          which plugin: volumedriver (default: config.json, the VolumeDriver plugin) or csi
#                          (config.csi.json: the CSI plugin for Swarm cluster volumes; default name sshfs-csi)
#   PLUGIN_NAME            plugin name, [registry/][namespace/]name[:tag] (default: sshfs, or sshfs-csi)
#   PLUGIN_DIR             plugin directory to build / create from (default: build/plugin, or build/plugin-csi)
#   PLUGIN_BUILDER         auto | dockerfile | offline (default: auto = Dockerfile when its base images are present
#                          or can be pulled within PLUGIN_PULL_TIMEOUT seconds, else offline)
#   PLUGIN_PULL_TIMEOUT    seconds allowed for pulling a missing base image (default: 20; 0 = never pull)
#   PLUGIN_ARCH            amd64 | arm64 | armv7: the architecture to build for (default: this machine's); another
#                          architecture is always built offline (Debian's packages for it, node from npm). Push
#                          each under its own tag, e.g. PLUGIN_NAME=you/sshfs:arm64
#   PLUGIN_BUILD_NETWORK   network of the Dockerfile build's RUN steps (docker build --network), e.g. host on
#                          daemons without a bridge network (dockerd --bridge=none); default: the daemon's default
#   PLUGIN_STATE_SOURCE    host directory for the state mount  (docker plugin set NAME state.source=...)
#   PLUGIN_KEYS_SOURCE     host directory of private keys, mounted read-only at /keys (keys.source=...)
#   PLUGIN_DEBUG           1 to log every request to the daemon log (DEBUG=...)
#   PLUGIN_SETTINGS        further `docker plugin set` arguments, space-separated (e.g. "MOUNT_TIMEOUT=15")
#   PLUGIN_ENABLE_TIMEOUT  seconds `docker plugin enable` waits for the plugin to answer (default: 30)
#   PLUGIN_SKIP_APP_BUILD  1 to take dist/ as it is (no npm ci / npm run build), e.g. when it was just built
#   PLUGIN_FORCE           1 to replace the plugin even while running containers use its volumes
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "${PLUGIN_CONFIG:-volumedriver}" in
  volumedriver | config.json) CONFIG_FILE=$REPO/config.json DEFAULT_NAME=sshfs DEFAULT_DIR=$REPO/build/plugin ;;
  csi | config.csi.json) CONFIG_FILE=$REPO/config.csi.json DEFAULT_NAME=sshfs-csi DEFAULT_DIR=$REPO/build/plugin-csi ;;
  *) printf 'plugin: ERROR: PLUGIN_CONFIG must be volumedriver or csi (got %s)\n' "$PLUGIN_CONFIG" >&2; exit 1 ;;
esac
PLUGIN_NAME=${PLUGIN_NAME:-$DEFAULT_NAME}
PLUGIN_DIR=$(realpath -m -- "${PLUGIN_DIR:-$DEFAULT_DIR}")
PLUGIN_BUILDER=${PLUGIN_BUILDER:-auto}
PLUGIN_PULL_TIMEOUT=${PLUGIN_PULL_TIMEOUT:-20}
PLUGIN_ENABLE_TIMEOUT=${PLUGIN_ENABLE_TIMEOUT:-30}
BUILD_IMAGE=docker-volume-sshfs-rootfs:build

log() { printf 'plugin: %s\n' "$*" >&2; }
die() { printf 'plugin: ERROR: %s\n' "$*" >&2; exit 1; }

# --- prerequisites --------------------------------------------------------------------------------------------------
# shellcheck source=lib/apt.sh
. "$REPO/scripts/lib/apt.sh"

need_docker() {
  command -v docker >/dev/null 2>&1 ||
    install_or_die "missing: docker.io (install it, or run as root on Debian/Ubuntu to have it installed)" docker.io
  local err
  if ! err=$(docker version --format '{{.Server.Version}}' 2>&1 >/dev/null); then
    die "cannot reach the Docker daemon${DOCKER_HOST:+ at $DOCKER_HOST}: $err (start Docker, e.g. systemctl start docker, or point DOCKER_HOST at a running daemon)"
  fi
}

# Directories for mount sources can only be made here when the daemon runs on this machine.
daemon_is_local() {
  case "${DOCKER_HOST:-}" in
    "" | unix://*) return 0 ;;
    *) return 1 ;;
  esac
}

plugin_exists() { docker plugin inspect "$PLUGIN_NAME" >/dev/null 2>&1; }
plugin_enabled() { [ "$(docker plugin inspect -f '{{.Enabled}}' "$PLUGIN_NAME" 2>/dev/null)" = true ]; }

# --- build ----------------------------------------------------------------------------------------------------------
build_app() {
  cd "$REPO"
  if [ "${PLUGIN_SKIP_APP_BUILD:-0}" = 1 ]; then
    [ -f dist/adapter/main.js ] || die "PLUGIN_SKIP_APP_BUILD=1 but dist/adapter/main.js is missing: run 'npm run build'"
    return 0
  fi
  if [ ! -x node_modules/.bin/tsc ]; then
    command -v npm >/dev/null 2>&1 || die "npm is missing: install Node.js 20 (with npm)"
    log "installing dependencies (npm ci)"
    local npm_log
    npm_log=$(mktemp)
    if ! npm ci --no-audit --no-fund --loglevel=error >"$npm_log" 2>&1; then
      # npm ci refuses a package-lock.json that is out of sync with package.json; install without touching either.
      log "npm ci failed ($(grep -m1 -v -e '^npm error *$' -e 'code EUSAGE' "$npm_log" | sed 's/^npm error //')); trying npm install --no-save"
      npm install --no-save --no-audit --no-fund --loglevel=error
    fi
    rm -f "$npm_log"
  fi
  log "compiling (npm run build)"
  npm run --silent build
}

base_images() { sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]\{1,\}\).*/\1/Ip' "$REPO/Dockerfile" | sort -u; }

# True when every base image of the Dockerfile is present, pulling each missing one within PLUGIN_PULL_TIMEOUT.
base_images_available() {
  local img
  for img in $(base_images); do
    docker image inspect "$img" >/dev/null 2>&1 && continue
    if [ "$PLUGIN_PULL_TIMEOUT" -le 0 ] 2>/dev/null; then
      log "base image $img is not present (pulling disabled)"
      return 1
    fi
    log "base image $img is not present; trying to pull it (at most ${PLUGIN_PULL_TIMEOUT}s)"
    if ! timeout "$PLUGIN_PULL_TIMEOUT" docker pull -q "$img" >/dev/null 2>&1; then
      log "cannot pull $img"
      return 1
    fi
  done
  return 0
}

build_with_dockerfile() {
  local cid build_log net=()
  [ -n "${PLUGIN_BUILD_NETWORK:-}" ] && net=(--network "$PLUGIN_BUILD_NETWORK")
  log "building the rootfs image from the Dockerfile${PLUGIN_BUILD_NETWORK:+ (build network: $PLUGIN_BUILD_NETWORK)}"
  build_log=$(mktemp)
  if ! docker build "${net[@]}" -t "$BUILD_IMAGE" -f "$REPO/Dockerfile" "$REPO" >"$build_log" 2>&1; then
    tail -n 25 "$build_log" | sed 's/^/  docker build: /' >&2
    grep -q -i -e 'network bridge not found' -e 'bridge.*not found' "$build_log" &&
      log "this daemon has no bridge network: build with PLUGIN_BUILD_NETWORK=host"
    rm -f "$build_log"
    return 1
  fi
  rm -f "$build_log"
  rm -rf "$PLUGIN_DIR/rootfs" "$PLUGIN_DIR/config.json"
  mkdir -p "$PLUGIN_DIR/rootfs"
  cid=$(docker create "$BUILD_IMAGE") || return 1
  if ! docker export "$cid" | tar -x -C "$PLUGIN_DIR/rootfs"; then
    docker rm -f "$cid" >/dev/null 2>&1 || true
    return 1
  fi
  docker rm -f "$cid" >/dev/null
  cp "$CONFIG_FILE" "$PLUGIN_DIR/config.json"
}

do_build() {
  local start=$SECONDS builder=$PLUGIN_BUILDER
  build_app
  mkdir -p "$PLUGIN_DIR"
  PLUGIN_DIR=$(cd "$PLUGIN_DIR" && pwd)
  local host_arch target_arch
  host_arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
  target_arch=${PLUGIN_ARCH:-$host_arch}
  # The same architecture under its uname -m / Debian / Docker names.
  case "$host_arch/$target_arch" in amd64/x86_64 | arm64/aarch64 | armhf/armv7* | armhf/arm) target_arch=$host_arch ;; esac
  if [ "$target_arch" != "$host_arch" ]; then
    [ "$builder" = dockerfile ] && die "the Dockerfile builds for this machine ($host_arch) only; PLUGIN_ARCH=$PLUGIN_ARCH is built offline"
    builder=offline
  fi
  case "$builder" in
    auto)
      need_docker
      if base_images_available; then builder=dockerfile; else builder=offline; fi
      ;;
    dockerfile) need_docker ;;
    offline) ;;
    *) die "PLUGIN_BUILDER must be auto, dockerfile or offline (got '$builder')" ;;
  esac
  if [ "$builder" = dockerfile ]; then
    if ! build_with_dockerfile; then
      [ "$PLUGIN_BUILDER" = dockerfile ] && die "docker build failed"
      log "the Dockerfile build failed; using the offline builder"
      builder=offline
    fi
  fi
  if [ "$builder" = offline ]; then
    log "assembling the rootfs from this machine's binaries (scripts/build-rootfs.sh)"
    CONFIG=$CONFIG_FILE bash "$REPO/scripts/build-rootfs.sh" "$PLUGIN_DIR"
  fi
  [ -f "$PLUGIN_DIR/config.json" ] && [ -x "$PLUGIN_DIR/rootfs/usr/bin/tini" ] ||
    die "$PLUGIN_DIR does not hold a complete plugin (config.json, rootfs/usr/bin/tini)"
  log "built $PLUGIN_DIR with the $builder builder ($(du -sm "$PLUGIN_DIR/rootfs" | cut -f1) MiB, $((SECONDS - start))s)"
}

# --- create ---------------------------------------------------------------------------------------------------------
# `docker plugin set` arguments reproducing an installed plugin's settable env values and mount sources.
saved_settings() {
  docker plugin inspect -f '{{json .}}' "$PLUGIN_NAME" 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const p = JSON.parse(s), out = [];
      const settable = (list, name) => (list || []).some((e) => e.Name === name && (e.Settable || []).length);
      for (const kv of p.Settings.Env || []) {
        const name = kv.slice(0, kv.indexOf("="));
        if (settable(p.Config.Env, name)) out.push(kv);
      }
      for (const m of p.Settings.Mounts || []) {
        if (m.Name && m.Source && settable(p.Config.Mounts, m.Name)) out.push(`${m.Name}.source=${m.Source}`);
      }
      process.stdout.write(out.join("\n"));
    });'
}

# Running containers that use a volume of the installed plugin (their mounts die with the plugin).
containers_using_plugin() {
  local ref driver name
  ref=$(docker plugin inspect -f '{{.Name}}' "$PLUGIN_NAME" 2>/dev/null) || return 0
  docker volume ls --format '{{.Driver}} {{.Name}}' | while read -r driver name; do
    [ "$driver" = "$ref" ] || [ "$driver" = "${ref%:latest}" ] || continue
    docker ps -q --filter "volume=$name"
  done | sort -u
}

do_create() {
  need_docker
  [ -f "$PLUGIN_DIR/config.json" ] && [ -d "$PLUGIN_DIR/rootfs" ] ||
    die "$PLUGIN_DIR has no config.json + rootfs/: run 'npm run plugin:build' first"
  local saved=() users
  if plugin_exists; then
    users=$(containers_using_plugin | tr '\n' ' ')
    if [ -n "${users// /}" ] && [ "${PLUGIN_FORCE:-0}" != 1 ]; then
      die "running containers use volumes of $PLUGIN_NAME: $users
  Replacing the plugin would cut their mounts. Stop them first, or set PLUGIN_FORCE=1."
    fi
    mapfile -t saved < <(saved_settings || true)
    log "replacing the installed plugin $PLUGIN_NAME (keeping its settings: ${saved[*]:-none})"
    if plugin_enabled; then
      docker plugin disable -f "$PLUGIN_NAME" >/dev/null
    fi
    docker plugin rm -f "$PLUGIN_NAME" >/dev/null
  fi
  log "creating plugin $PLUGIN_NAME from $PLUGIN_DIR"
  docker plugin create "$PLUGIN_NAME" "$PLUGIN_DIR" >/dev/null
  if [ ${#saved[@]} -gt 0 ]; then
    docker plugin set "$PLUGIN_NAME" "${saved[@]}" ||
      log "WARNING: could not re-apply the previous settings (${saved[*]}); set them again with docker plugin set"
  fi
}

# --- enable ---------------------------------------------------------------------------------------------------------
mount_sources() {
  docker plugin inspect -f '{{range .Settings.Mounts}}{{.Name}}={{.Source}}{{"\n"}}{{end}}' "$PLUGIN_NAME"
}

do_enable() {
  need_docker
  plugin_exists || die "no plugin named $PLUGIN_NAME: run 'npm run plugin:install' (or plugin:build + plugin:create)"
  local settings=() kv
  [ -n "${PLUGIN_STATE_SOURCE:-}" ] && settings+=("state.source=$PLUGIN_STATE_SOURCE")
  [ -n "${PLUGIN_KEYS_SOURCE:-}" ] && settings+=("keys.source=$PLUGIN_KEYS_SOURCE")
  [ -n "${PLUGIN_DEBUG:-}" ] && settings+=("DEBUG=$PLUGIN_DEBUG")
  for kv in ${PLUGIN_SETTINGS:-}; do settings+=("$kv"); done

  if [ ${#settings[@]} -gt 0 ]; then
    if plugin_enabled; then
      local users
      users=$(containers_using_plugin | tr '\n' ' ')
      [ -z "${users// /}" ] || [ "${PLUGIN_FORCE:-0}" = 1 ] ||
        die "running containers use volumes of $PLUGIN_NAME: $users
  Settings change only while the plugin is disabled, which would cut their mounts. Stop them first, or set PLUGIN_FORCE=1."
      # Docker refuses a plain disable while any volume of the plugin exists; its volumes survive a forced one.
      log "disabling $PLUGIN_NAME to change its settings"
      docker plugin disable -f "$PLUGIN_NAME" >/dev/null
    fi
    log "docker plugin set $PLUGIN_NAME ${settings[*]}"
    docker plugin set "$PLUGIN_NAME" "${settings[@]}"
  fi

  # A bind mount whose host source is missing makes enable fail: create the sources (state private to root).
  local line name src
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    name=${line%%=*} src=${line#*=}
    [ -n "$src" ] || continue
    if daemon_is_local; then
      if [ ! -d "$src" ]; then
        log "creating $src (host source of the $name mount)"
        mkdir -p "$src"
        chmod 0700 "$src"
      fi
    else
      log "the daemon is remote (${DOCKER_HOST}): make sure $src exists on it (host source of the $name mount)"
    fi
  done < <(mount_sources)

  if plugin_enabled; then
    log "$PLUGIN_NAME is already enabled"
  else
    log "enabling $PLUGIN_NAME"
    docker plugin enable --timeout "$PLUGIN_ENABLE_TIMEOUT" "$PLUGIN_NAME" >/dev/null
  fi
  plugin_enabled || die "$PLUGIN_NAME did not stay enabled; see the daemon log (lines tagged plugin=<id>)"
}

do_install() {
  need_docker # fail before a minute of building when no daemon answers
  do_build
  do_create
  do_enable
  docker plugin ls --filter enabled=true
  local short=${PLUGIN_NAME%:latest}
  if [ "$CONFIG_FILE" = "$REPO/config.csi.json" ]; then
    cat >&2 <<EOF
plugin: installed and enabled: $PLUGIN_NAME (Swarm cluster volumes; install it on every node, under the same name)
  id=\$(printf '%s' "\$PASSWORD" | docker secret create NAME-pw -)      (--secret takes the secret's id)
  docker volume create -d $short --type mount --scope multi --sharing all -o sshcmd=user@host:/path --secret password=\$id NAME
  docker service create --mount type=cluster,src=NAME,dst=/data ...
EOF
    return 0
  fi
  cat >&2 <<EOF
plugin: installed and enabled: $PLUGIN_NAME
  docker volume create -d $short -o sshcmd=user@host:/path [-o IdentityFile=/keys/id_ed25519 | -o password=...] NAME
  keys:  docker plugin disable $short && docker plugin set $short keys.source=/root/.ssh && docker plugin enable $short
EOF
}

# --- push -----------------------------------------------------------------------------------------------------------
# Explains a failed `docker plugin push`. Daemons word refusals differently: some (containerd's pusher) give only the
# HTTP status ("unexpected status: 403 Forbidden"), others the registry's error code ("denied: ...").
push_hint() {
  local out=$1 registry=$2 repo=$3
  case "$out" in
    *insufficient_scope* | *"insufficient scope"*)
      cat <<EOF
The registry's token service did not grant the 'repository(plugin)' scope Docker asks for when pushing a plugin:
  - either your account may not push to '${repo%/*}' (use a namespace you own, or get push rights), or
  - its auth service does not know plugin repositories (older Harbor releases, some custom token servers): push to a
    registry that supports plugins (Docker Hub, the open-source distribution registry 'registry:2', Harbor >= 2.0).
EOF
      ;;
    *MANIFEST_INVALID* | *"manifest invalid"* | *"400 Bad Request"* | *"415 Unsupported Media Type"* | *"nsupported media type"* | *"unknown media type"*)
      cat <<EOF
The registry $registry refused the plugin's manifest: it does not support Docker plugins (a manifest whose config
has media type application/vnd.docker.plugin.v1+json). Push to a registry that does: Docker Hub, the open-source
distribution registry ('registry:2'), Harbor >= 2.0.
EOF
      ;;
    *"401 Unauthorized"* | *unauthorized* | *UNAUTHORIZED* | *"authentication required"* | *"no basic auth credentials"* | *"incorrect username or password"*)
      cat <<EOF
The registry $registry wants credentials that allow this push (401 Unauthorized):
  1. Log in:  docker login $registry
  2. Already logged in? Your account may not push to '${repo%/*}': use a namespace you own
     (PLUGIN_NAME=<your-user>/sshfs:<tag>) or ask for push rights on it.
EOF
      ;;
    *"403 Forbidden"* | *denied* | *DENIED*)
      cat <<EOF
The registry $registry denied the push to $repo (403). In order of likelihood:
  1. You are not logged in to $registry:        docker login $registry
  2. Your account may not push to '${repo%/*}':  use a namespace you own (PLUGIN_NAME=<your-user>/sshfs:<tag>),
     or create the repository/project first and give your account push (developer) rights.
  3. The registry does not accept plugins: Docker asks for the 'repository(plugin)' scope, which older Harbor
     releases and some token servers refuse with exactly this error. Use Docker Hub, 'registry:2' or Harbor >= 2.0.
EOF
      ;;
    *"404 Not Found"* | *"name unknown"* | *NAME_UNKNOWN* | *"repository name not known"* | *"not found"* | *"does not exist"*)
      cat <<EOF
The registry $registry has no repository '$repo' and does not create one on push (404): create it first (Harbor:
the project '${repo%%/*}'), or push under an existing namespace (PLUGIN_NAME=<registry>/<namespace>/sshfs:<tag>).
EOF
      ;;
    *"server gave HTTP response to HTTPS client"*)
      cat <<EOF
$registry speaks plain HTTP, and plugin pushes go over HTTPS (unverified for registries listed as insecure).
Serve the registry over TLS (a self-signed certificate is fine for an insecure registry).
EOF
      ;;
    *x509* | *certificate*)
      cat <<EOF
The daemon does not trust $registry's TLS certificate. Install its CA as /etc/docker/certs.d/$registry/ca.crt on
the daemon's machine, or list the registry in "insecure-registries" in /etc/docker/daemon.json and restart dockerd.
EOF
      ;;
    *"no such host"* | *"connection refused"* | *"i/o timeout"* | *"dial tcp"* | *"network is unreachable"* | *"TLS handshake timeout"*)
      cat <<EOF
The daemon cannot reach the registry $registry. Check the name, the network, and the proxy settings of the Docker
daemon (not of your shell).
EOF
      ;;
    *)
      echo "See the daemon's message above; 'docker login $registry' and push rights on '${repo%/*}' are the usual causes."
      ;;
  esac
}

do_push() {
  local first=${PLUGIN_NAME%%/*} registry repo
  if [ "$first" != "$PLUGIN_NAME" ] && { [[ $first == *.* ]] || [[ $first == *:* ]] || [ "$first" = localhost ]; }; then
    registry=$first
    repo=${PLUGIN_NAME#*/}
  else
    registry=docker.io
    repo=$PLUGIN_NAME
  fi
  repo=${repo%%:*}
  if [ "$registry" = docker.io ] && [[ $repo != */* ]]; then
    local arch
    case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; armv7l) arch=arm ;; *) arch=$(uname -m) ;; esac
    die "'$PLUGIN_NAME' would be pushed to docker.io/library/$repo, which only Docker Inc. may write.
  Create the plugin under your own namespace (one architecture per tag) and push that:
    PLUGIN_NAME=<your-user>/$repo:$arch npm run plugin:install && PLUGIN_NAME=<your-user>/$repo:$arch npm run plugin:push"
  fi
  need_docker
  plugin_exists || die "no plugin named $PLUGIN_NAME here: build and create it first under the name to push, e.g.
  PLUGIN_NAME=$PLUGIN_NAME npm run plugin:install && PLUGIN_NAME=$PLUGIN_NAME npm run plugin:push"
  log "pushing $PLUGIN_NAME to $registry"
  local out rc=0
  out=$(docker plugin push "$PLUGIN_NAME" 2>&1) || rc=$?
  printf '%s\n' "$out"
  if [ "$rc" -ne 0 ]; then
    printf '\nplugin: ERROR: push of %s failed.\n' "$PLUGIN_NAME" >&2
    push_hint "$out" "$registry" "$repo" >&2
    exit "$rc"
  fi
  log "pushed $PLUGIN_NAME; install it elsewhere with: docker plugin install $PLUGIN_NAME"
}

do_remove() {
  need_docker
  if plugin_exists; then
    plugin_enabled && docker plugin disable -f "$PLUGIN_NAME" >/dev/null
    docker plugin rm -f "$PLUGIN_NAME" >/dev/null
    log "removed $PLUGIN_NAME"
  else
    log "no plugin named $PLUGIN_NAME"
  fi
}

case "${1:-}" in
  build) do_build ;;
  create) do_create ;;
  enable) do_enable ;;
  install) do_install ;;
  push) do_push ;;
  remove) do_remove ;;
  *)
    sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
