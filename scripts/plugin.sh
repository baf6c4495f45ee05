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
#   PLUGIN_BINFMT_DIR      where enable looks for qemu emulation of another architecture (/proc/sys/fs/binfmt_misc)
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

# --- architectures --------------------------------------------------------------------------------------------------
# The tag an architecture is published under (the README's table): amd64, arm64 or armv7, from any of its names
# (Debian's, uname -m's, Docker's).
arch_tag() {
  case "$1" in
    amd64 | x86_64) echo amd64 ;;
    arm64 | aarch64) echo arm64 ;;
    armv7 | armv7l | armhf | arm | arm/v7) echo armv7 ;;
    *) echo "$1" ;;
  esac
}
# Docker's platform name for a tag (what `docker version -f '{{.Server.Os}}/{{.Server.Arch}}'` says, plus /v7).
arch_platform() {
  case "$(arch_tag "$1")" in
    armv7) echo linux/arm/v7 ;;
    *) echo "linux/$(arch_tag "$1")" ;;
  esac
}
# The platform a plugin was built for: build stamps it at the end of config.json's description, which
# `docker plugin inspect` shows also for a plugin installed from a registry.
plugin_platform() {
  docker plugin inspect -f '{{.Config.Description}}' "$1" 2>/dev/null | sed -n 's/.*(for \(linux\/[a-z0-9/]*\)).*/\1/p'
}
# qemu's name for a platform's CPU, as binfmt_misc entries name their interpreter (qemu-aarch64-static...).
qemu_cpu() {
  case "$1" in linux/arm64) echo aarch64 ;; linux/arm/v7) echo arm ;; linux/amd64) echo x86_64 ;; *) echo "${1#linux/}" ;; esac
}
# True when the kernel runs binaries of PLATFORM through an enabled qemu binfmt_misc entry (emulation).
emulated() {
  local dir=${PLUGIN_BINFMT_DIR:-/proc/sys/fs/binfmt_misc} entry cpu
  cpu=$(qemu_cpu "$1")
  for entry in "$dir"/*; do
    [ -f "$entry" ] && [ "$(basename "$entry")" != register ] && [ "$(basename "$entry")" != status ] || continue
    grep -qx enabled "$entry" 2>/dev/null && grep -q "^interpreter .*/qemu-$cpu\(-static\)\{0,1\}$" "$entry" && return 0
  done
  return 1
}

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

# A build whose RUN steps had no usable network. Without a bridge (dockerd --bridge=none) dockerd gives RUN steps no
# network at all: npm then fails with EAI_AGAIN (getaddrinfo), apt with "Temporary failure resolving".
build_network_hint() {
  grep -q -i -e 'EAI_AGAIN' -e 'getaddrinfo' -e 'Temporary failure resolving' -e 'Could not resolve' -e 'network bridge not found' \
    -e 'bridge.*not found' "$1" || return 0
  if [ "${PLUGIN_BUILD_NETWORK:-}" = host ]; then
    log "the build's RUN steps could not resolve names even on the host's network: check this machine's DNS (/etc/resolv.conf) and proxy"
  else
    log "the build's RUN steps could not resolve names: a daemon without a bridge network (dockerd --bridge=none) gives them no network. Build on the host's network:
  PLUGIN_BUILD_NETWORK=host npm run plugin:install   (or plugin:build); with a bridge, check the daemon's DNS (\"dns\" in /etc/docker/daemon.json)"
  fi
}

build_with_dockerfile() {
  local cid build_log net=()
  [ -n "${PLUGIN_BUILD_NETWORK:-}" ] && net=(--network "$PLUGIN_BUILD_NETWORK")
  log "building the rootfs image from the Dockerfile${PLUGIN_BUILD_NETWORK:+ (build network: $PLUGIN_BUILD_NETWORK)}"
  build_log=$(mktemp)
  if ! docker build "${net[@]}" -t "$BUILD_IMAGE" -f "$REPO/Dockerfile" "$REPO" >"$build_log" 2>&1; then
    tail -n 25 "$build_log" | sed 's/^/  docker build: /' >&2
    build_network_hint "$build_log"
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
  # Docker plugins carry no architecture: the description names it, so enable (and users) can check it.
  PLATFORM=$(arch_platform "$target_arch") node -e '
    const fs = require("node:fs"), file = process.argv[1], config = JSON.parse(fs.readFileSync(file, "utf8"));
    config.description = `${config.description.replace(/ \(for linux\/[a-z0-9/]+\)/, "")} (for ${process.env.PLATFORM})`;
    fs.writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);' "$PLUGIN_DIR/config.json"
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
  local err
  if ! err=$(docker plugin create "$PLUGIN_NAME" "$PLUGIN_DIR" 2>&1 >/dev/null); then
    # dockerd (20.10) stores each plugin's rootfs layer by its digest and refuses one it already holds for another
    # plugin ("content sha256:...: already exists"): the same build under a second name (another registry) needs a
    # rootfs that differs. A copy of hard links plus one file naming the plugin costs no space.
    [[ $err == *"already exists"* ]] || die "docker plugin create failed: $err"
    log "dockerd already holds this build's rootfs for another plugin name; creating $PLUGIN_NAME from a copy that differs by one file (/.plugin-name)"
    local copy
    copy=$(mktemp -d "$(dirname "$PLUGIN_DIR")/.create.XXXXXX")
    cp -al "$PLUGIN_DIR/rootfs" "$copy/rootfs"
    cp "$PLUGIN_DIR/config.json" "$copy/config.json"
    printf '%s\n' "$PLUGIN_NAME" >"$copy/rootfs/.plugin-name"
    err=$(docker plugin create "$PLUGIN_NAME" "$copy" 2>&1 >/dev/null) || { rm -rf "$copy"; die "docker plugin create failed: $err"; }
    rm -rf "$copy"
  fi
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
  plugin_enabled || check_platform
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
    local err
    err=$(docker plugin enable --timeout "$PLUGIN_ENABLE_TIMEOUT" "$PLUGIN_NAME" 2>&1 >/dev/null) || die "enabling $PLUGIN_NAME failed: $err
  The cause is in the daemon's log, in the lines tagged plugin=$(docker plugin inspect -f '{{.Id}}' "$PLUGIN_NAME" 2>/dev/null) (journalctl -u docker | grep plugin=);
  'exec format error' there means the plugin was built for another architecture."
  fi
  plugin_enabled || die "$PLUGIN_NAME did not stay enabled; see the daemon log (lines tagged plugin=<id>)"
}

# A plugin built for another architecture cannot start: its programs fail with 'exec format error' (in the daemon
# log only) and enable reports just a missing socket. Refuse before enabling, unless the kernel emulates it (qemu).
check_platform() {
  local want have
  want=$(plugin_platform "$PLUGIN_NAME")
  [ -n "$want" ] || return 0 # built before the description named it
  have=$(arch_platform "$(docker version -f '{{.Server.Arch}}' 2>/dev/null)")
  [ "$want" != "$have" ] || return 0
  if daemon_is_local && emulated "$want"; then
    log "$PLUGIN_NAME is built for $want and this daemon runs on $have: running it under qemu emulation (binfmt_misc)"
    return 0
  fi
  die "$PLUGIN_NAME is built for $want, but this Docker daemon runs on $have: its programs cannot start there.
  Install the tag for $have (:$(arch_tag "${have#linux/}")), or build for it: PLUGIN_ARCH=$(arch_tag "${have#linux/}") npm run plugin:install.
  (To run it emulated, register qemu-user-static for $(qemu_cpu "$want") with binfmt_misc.)"
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
  keys:  docker plugin disable -f $short && docker plugin set $short keys.source=/root/.ssh && docker plugin enable $short
EOF
}

# --- push -----------------------------------------------------------------------------------------------------------
# Whether the docker CLI holds a login for REGISTRY: yes, no, or unknown (a credential helper keeps them elsewhere).
logged_in() {
  local registry=$1 file=${DOCKER_CONFIG:-$HOME/.docker}/config.json
  [ -f "$file" ] || { echo no; return 0; }
  REGISTRY=$registry node -e '
    const c = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8") || "{}");
    const r = process.env.REGISTRY, keys = r === "docker.io" ? ["https://index.docker.io/v1/", "docker.io", "index.docker.io"] : [r, `https://${r}`];
    if (keys.some((k) => c.auths && c.auths[k] && (c.auths[k].auth || c.auths[k].identitytoken))) console.log("yes");
    else if (c.credsStore || keys.some((k) => c.credHelpers && c.credHelpers[k])) console.log("unknown");
    else console.log("no");' "$file" 2>/dev/null || echo unknown
}

# Explains a failed `docker plugin push`. Daemons word refusals differently: some (containerd's pusher) give only the
# HTTP status ("unexpected status: 403 Forbidden"), others the registry's error code ("denied: ...").
# REGISTRY is the host as written in PLUGIN_NAME (docker.io when it names none), REPO the repository, TAG its tag.
push_hint() {
  local out=$1 registry=$2 repo=$3 tag=$4 prefix=""
  [ "$registry" = docker.io ] || prefix="$registry/"
  local ns=${repo%/*} other="PLUGIN_NAME=$prefix<namespace>/${repo##*/}:$tag"
  local retry="$other npm run plugin:create && $other npm run plugin:push"
  local login="docker login${prefix:+ $registry}"
  case "$out" in
    *insufficient_scope* | *"insufficient scope"*)
      cat <<EOF
The registry's token service did not grant the 'repository(plugin)' scope Docker asks for when pushing a plugin:
  - either your account may not push to '$ns': push to a namespace you may write (the same build, another name):
      $retry
    or get push rights on '$ns' (Harbor: the Developer role or higher in the project '$ns'), or
  - its auth service does not know plugin repositories (Harbor before 2.0, some custom token servers): push to a
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
    *"403 Forbidden"* | *DENIED* | *"denied:"* | *"access to the resource is denied"*)
      # Docker Hub says "denied" to anonymous pushes too; other registries answer those 401 and keep 403 for an
      # account that is logged in but may not push there (Harbor).
      if [ "$(logged_in "$registry")" = no ]; then
        cat <<EOF
The registry $registry denied the push to $repo: you are not logged in to it.
  Log in, then push again:  $login
EOF
      else
        cat <<EOF
The registry $registry denied the push to $repo (403): you are logged in, but this account may not push there.
  1. Push to a namespace your account may write (the same build under another name):
       $retry
  2. Or get push rights on '$ns': Harbor: create the project '${repo%%/*}' and make your account a member with the
     Developer role or higher; Docker Hub: '$ns' must be your user or an organization you may push to.
  3. Logged in as another account than you meant?  docker logout${prefix:+ $registry} && $login
  4. Registries that refuse the 'repository(plugin)' scope plugins need (Harbor before 2.0, some token servers) say
     the same: use Docker Hub, the distribution registry ('registry:2') or Harbor >= 2.0.
EOF
      fi
      ;;
    *"401 Unauthorized"* | *unauthorized* | *UNAUTHORIZED* | *"authentication required"* | *"no basic auth credentials"* | *"incorrect username or password"*)
      cat <<EOF
The registry $registry wants a login that allows this push (401 Unauthorized).
  1. Log in, then push again:  $login
  2. Already logged in? The account may not push to '$ns': push to a namespace you may write:
       $retry
EOF
      ;;
    *"404 Not Found"* | *"name unknown"* | *NAME_UNKNOWN* | *"repository name not known"* | *"not found"* | *"does not exist"*)
      cat <<EOF
The registry $registry has no repository '$repo' and does not create one on push (404): create it first (Harbor:
the project '${repo%%/*}'), or push under an existing namespace:
  $retry
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
      echo "See the daemon's message above; '$login' and push rights on '$ns' are the usual causes."
      ;;
  esac
}

do_push() {
  local first=${PLUGIN_NAME%%/*} registry repo tag
  if [ "$first" != "$PLUGIN_NAME" ] && { [[ $first == *.* ]] || [[ $first == *:* ]] || [ "$first" = localhost ]; }; then
    registry=$first
    repo=${PLUGIN_NAME#*/}
  else
    registry=docker.io
    repo=$PLUGIN_NAME
  fi
  tag=latest
  [[ $repo == *:* ]] && tag=${repo##*:}
  repo=${repo%%:*}
  if [ "$registry" = docker.io ] && [[ $repo != */* ]]; then
    local arch
    arch=$(arch_tag "${PLUGIN_ARCH:-$(uname -m)}")
    die "'$PLUGIN_NAME' would be pushed to docker.io/library/$repo, which only Docker Inc. may write.
  Create the plugin under your own namespace (one architecture per tag) and push that:
    PLUGIN_NAME=<your-user>/$repo:$arch npm run plugin:create && PLUGIN_NAME=<your-user>/$repo:$arch npm run plugin:push"
  fi
  need_docker
  plugin_exists || die "no plugin named $PLUGIN_NAME here: build and create it first under the name to push, e.g.
  PLUGIN_NAME=$PLUGIN_NAME npm run plugin:build && PLUGIN_NAME=$PLUGIN_NAME npm run plugin:create && PLUGIN_NAME=$PLUGIN_NAME npm run plugin:push"
  log "pushing $PLUGIN_NAME to $registry"
  local out rc=0
  out=$(docker plugin push "$PLUGIN_NAME" 2>&1) || rc=$?
  printf '%s\n' "$out"
  if [ "$rc" -ne 0 ]; then
    printf '\nplugin: ERROR: push of %s failed.\n' "$PLUGIN_NAME" >&2
    push_hint "$out" "$registry" "$repo" "$tag" >&2
    exit "$rc"
  fi
  local platform pull_login=""
  platform=$(plugin_platform "$PLUGIN_NAME")
  [ "$registry" = docker.io ] || pull_login="docker login $registry   # if it wants a login for pulls too"$'\n  '
  cat >&2 <<EOF
plugin: pushed $PLUGIN_NAME. Install it on each machine${platform:+ of $platform} (the mount sources must exist):
  ${pull_login}mkdir -p -m 0700 /var/lib/docker-volume-sshfs/keys /var/lib/docker-volume-sshfs/state
  docker plugin install --grant-all-permissions --alias sshfs $PLUGIN_NAME keys.source=/var/lib/docker-volume-sshfs/keys state.source=/var/lib/docker-volume-sshfs/state
EOF
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
    sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
