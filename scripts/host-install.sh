#!/usr/bin/env bash
# Installs (or removes) the plugin as a host service: the legacy-plugin mode Podman needs and Docker can use.
#
#   scripts/host-install.sh install   build, copy the app with its own production node_modules to HOST_PREFIX, write
#                                     the environment file (kept when it exists), the keys and state directories and
#                                     the systemd units; with systemd running, enable and (re)start the service
#   scripts/host-install.sh remove    stop and disable the units, remove the program, the units and the environment
#                                     file; the keys and state directories stay unless empty (HOST_PURGE=1 removes
#                                     them too)
#
# Environment (defaults are the host's usual places):
#   HOST_PREFIX          the program: dist/, node_modules/, package.json  (/usr/local/lib/docker-volume-sshfs)
#   HOST_CONFIG_DIR      the environment file 'env' and the keys directory 'keys'  (/etc/docker-volume-sshfs)
#   HOST_STATE_DIR       the plugin's state (STATE_DIR)  (/var/lib/docker-volume-sshfs)
#   HOST_MOUNT_ROOT      the volumes' mountpoints (MOUNT_ROOT)  (/run/docker-volume-sshfs/volumes)
#   HOST_SOCKET          the plugin's socket; its file name is the driver name  (/run/docker/plugins/sshfs.sock)
#   HOST_UNIT_DIR        where the units go  (/etc/systemd/system)
#   HOST_UNIT            the units' name  (docker-volume-sshfs: .service and .socket)
#   HOST_SKIP_APP_BUILD  1 to take dist/ as it is (no npm ci / npm run build)
#   HOST_PURGE           1: remove also deletes the keys and state directories
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST_PREFIX=${HOST_PREFIX:-/usr/local/lib/docker-volume-sshfs}
HOST_CONFIG_DIR=${HOST_CONFIG_DIR:-/etc/docker-volume-sshfs}
HOST_STATE_DIR=${HOST_STATE_DIR:-/var/lib/docker-volume-sshfs}
HOST_MOUNT_ROOT=${HOST_MOUNT_ROOT:-/run/docker-volume-sshfs/volumes}
HOST_SOCKET=${HOST_SOCKET:-/run/docker/plugins/sshfs.sock}
HOST_UNIT_DIR=${HOST_UNIT_DIR:-/etc/systemd/system}
HOST_UNIT=${HOST_UNIT:-docker-volume-sshfs}
ENV_FILE=$HOST_CONFIG_DIR/env
KEYS_DIR=$HOST_CONFIG_DIR/keys

log() { printf 'host-install: %s\n' "$*" >&2; }
die() { printf 'host-install: ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=lib/apt.sh
. "$REPO/scripts/lib/apt.sh"
# shellcheck source=lib/prod-deps.sh
. "$REPO/scripts/lib/prod-deps.sh"

[ "$(id -u)" = 0 ] || die "run as root (it writes $HOST_PREFIX, $HOST_CONFIG_DIR and $HOST_UNIT_DIR): sudo npm run host:${1:-install}"
for var in HOST_PREFIX HOST_CONFIG_DIR HOST_STATE_DIR HOST_MOUNT_ROOT HOST_SOCKET HOST_UNIT_DIR; do
  # Each lands in a unit file or the environment file, where spaces and specials would split or be expanded.
  [[ ${!var} =~ ^/[A-Za-z0-9._/@+-]+$ ]] || die "$var must be an absolute path of letters, digits and . _ / @ + - (got '${!var}')"
done
[[ $HOST_UNIT =~ ^[A-Za-z0-9._-]+$ ]] || die "HOST_UNIT may hold only letters, digits and . _ - (got '$HOST_UNIT')"
[[ $HOST_SOCKET == *.sock ]] || die "HOST_SOCKET must end in .sock: engines find legacy plugins as /run/docker/plugins/<driver>.sock"

systemd_runs() { [ -d /run/systemd/system ]; }
units() { printf '%s\n' "$HOST_UNIT_DIR/$HOST_UNIT.service" "$HOST_UNIT_DIR/$HOST_UNIT.socket"; }

# node 20 or newer: the path goes into ExecStart.
find_node() {
  local node major
  node=$(command -v node) || die "node is missing: install Node.js 20 or newer (e.g. apt-get install nodejs on Debian 13, or nodejs.org)"
  node=$(realpath "$node")
  major=$("$node" -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || die "$node is Node.js $major: the plugin needs 20 or newer"
  printf '%s\n' "$node"
}

build_app() {
  cd "$REPO"
  if [ "${HOST_SKIP_APP_BUILD:-0}" = 1 ]; then
    [ -f dist/adapter/main.js ] || die "HOST_SKIP_APP_BUILD=1 but dist/adapter/main.js is missing: run 'npm run build'"
    return 0
  fi
  if [ ! -x node_modules/.bin/tsc ]; then
    log "installing dependencies (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  fi
  log "compiling (npm run build)"
  npm run --silent build
}

render() { # TEMPLATE NODE: the unit with its paths filled in
  sed -e "s|@PREFIX@|$HOST_PREFIX|g" -e "s|@CONFIG_DIR@|$HOST_CONFIG_DIR|g" -e "s|@SOCKET@|$HOST_SOCKET|g" -e "s|@NODE@|$2|g" "$1"
}

write_env_file() {
  if [ -f "$ENV_FILE" ]; then
    log "keeping $ENV_FILE as it is"
    return 0
  fi
  cat >"$ENV_FILE" <<EOF
# Settings of the sshfs volume plugin's host service ($HOST_UNIT.service); see "Running it outside Docker's plugin
# system" in $HOST_PREFIX/README.md. Restart the service after a change.
# The socket's file name is the driver name engines use (-d sshfs for sshfs.sock); keep it equal to ListenStream= in
# $HOST_UNIT.socket when you use that unit.
SOCKET_PATH=$HOST_SOCKET
STATE_DIR=$HOST_STATE_DIR
KEYS_DIR=$KEYS_DIR
MOUNT_ROOT=$HOST_MOUNT_ROOT
MOUNT_TIMEOUT=20
SHARED_CONNECTION_IDLE=300
DEBUG=0
EOF
  chmod 0644 "$ENV_FILE"
  log "wrote $ENV_FILE"
}

do_install() {
  local node staged
  node=$(find_node)
  local missing=()
  command -v sshfs >/dev/null 2>&1 || missing+=(sshfs)
  command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
  command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
  [ ${#missing[@]} -eq 0 ] || install_or_die "missing: ${missing[*]} (install them: apt-get install ${missing[*]})" "${missing[@]}"
  build_app

  # A fresh copy next to the old one, swapped in at the end: a running service keeps its files until it restarts.
  staged=$HOST_PREFIX.new
  rm -rf "$staged"
  mkdir -p "$staged"
  cp -a "$REPO/dist" "$staged/dist"
  cp "$REPO/package.json" "$REPO/README.md" "$staged/"
  [ -f "$REPO/package-lock.json" ] && cp "$REPO/package-lock.json" "$staged/"
  install_production_deps "$REPO" "$staged"
  chmod -R go-w "$staged"
  if [ -d "$HOST_PREFIX" ]; then
    rm -rf "$HOST_PREFIX.old"
    mv "$HOST_PREFIX" "$HOST_PREFIX.old"
  fi
  mv "$staged" "$HOST_PREFIX"
  rm -rf "$HOST_PREFIX.old"
  log "installed the plugin in $HOST_PREFIX (node: $node)"

  install -d -m 0755 "$HOST_CONFIG_DIR"
  install -d -m 0700 "$KEYS_DIR" "$HOST_STATE_DIR"
  write_env_file
  install -d -m 0755 "$HOST_UNIT_DIR"
  render "$REPO/scripts/systemd/docker-volume-sshfs.service" "$node" >"$HOST_UNIT_DIR/$HOST_UNIT.service"
  render "$REPO/scripts/systemd/docker-volume-sshfs.socket" "$node" >"$HOST_UNIT_DIR/$HOST_UNIT.socket"
  chmod 0644 "$HOST_UNIT_DIR/$HOST_UNIT.service" "$HOST_UNIT_DIR/$HOST_UNIT.socket"
  log "wrote $HOST_UNIT_DIR/$HOST_UNIT.service and $HOST_UNIT.socket"

  local driver
  driver=$(basename "$HOST_SOCKET" .sock)
  if systemd_runs; then
    systemctl daemon-reload
    systemctl enable "$HOST_UNIT.service" >/dev/null 2>&1
    systemctl restart "$HOST_UNIT.service"
    log "started $HOST_UNIT.service (logs: journalctl -u $HOST_UNIT)"
  else
    log "systemd is not running on this machine: start the plugin by hand with
  (set -a; . $ENV_FILE; exec $node $HOST_PREFIX/dist/adapter/main.js)"
  fi
  cat >&2 <<EOF
host-install: done. The driver name is '$driver' (the socket's file name); every engine on this host sees its volumes.
  key:     install -m 0600 ~/.ssh/id_ed25519 $KEYS_DIR/id_ed25519
  volume:  docker volume create -d $driver -o sshcmd=user@host:/path -o IdentityFile=id_ed25519 NAME
           podman volume create --driver $driver ... (with [engine.volume_plugins] $driver = "$HOST_SOCKET" in containers.conf)
EOF
}

# Live sshfs mounts under the mount root: their mountpoints must stay.
mounted_under() { awk -v root="$1/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts; }

do_remove() {
  local unit
  if systemd_runs; then
    for unit in "$HOST_UNIT.socket" "$HOST_UNIT.service"; do
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
  fi
  for unit in $(units); do
    if [ -e "$unit" ]; then
      rm -f "$unit"
      log "removed $unit"
    fi
  done
  if systemd_runs; then systemctl daemon-reload; fi
  rm -rf "$HOST_PREFIX" "$HOST_PREFIX.new" "$HOST_PREFIX.old"
  log "removed $HOST_PREFIX"
  rm -f "$ENV_FILE"

  # Mountpoints of volumes no longer mounted are empty directories: rmdir never deletes a file.
  local live
  live=$(mounted_under "$HOST_MOUNT_ROOT")
  if [ -n "$live" ]; then
    log "sshfs mounts are still live under $HOST_MOUNT_ROOT (containers use them; they end with those): $(echo "$live" | tr '\n' ' ')"
  elif [ -d "$HOST_MOUNT_ROOT" ]; then
    find "$HOST_MOUNT_ROOT" -mindepth 1 -maxdepth 1 -type d -empty -delete
    rmdir "$HOST_MOUNT_ROOT" 2>/dev/null || log "kept $HOST_MOUNT_ROOT (not empty)"
    rmdir "$(dirname "$HOST_MOUNT_ROOT")" 2>/dev/null || true
  fi

  if [ "${HOST_PURGE:-0}" = 1 ]; then
    [ -z "$live" ] || die "not purging $HOST_STATE_DIR while volumes are mounted"
    rm -rf "$HOST_STATE_DIR" "$KEYS_DIR"
    log "purged $HOST_STATE_DIR and $KEYS_DIR"
  else
    local dir
    for dir in "$KEYS_DIR" "$HOST_STATE_DIR"; do
      [ -d "$dir" ] || continue
      rmdir "$dir" 2>/dev/null ||
        log "kept $dir (it holds your keys or volumes; HOST_PURGE=1 npm run host:remove deletes it)"
    done
  fi
  rmdir "$HOST_CONFIG_DIR" 2>/dev/null || true
}

case "${1:-}" in
  install) do_install ;;
  remove) do_remove ;;
  *)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
