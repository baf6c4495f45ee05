#!/usr/bin/env bash
# Makes a stand-in for the Dockerfile's base image (node:20-slim) on machines that cannot pull it, so the Dockerfile
# build can be tested anyway: Debian bookworm from Debian's packages (debootstrap --variant=minbase), this machine's
# node 20 and npm at the paths the official image uses (/usr/local/bin, /usr/local/lib/node_modules), and this
# machine's CA bundle (so npm inside a build reaches the registry through whatever TLS proxy this machine trusts).
#
#   scripts/stand-in-base.sh [IMAGE]   import the stand-in as IMAGE (default: node:20-slim) into the daemon the docker
#                                      CLI talks to (DOCKER_HOST), unless that daemon has IMAGE already
#
# The root filesystem is made once and cached as a tarball in STAND_IN_CACHE (default /var/cache/sshfs-e2e), outside
# the repository; it is rebuilt when missing. Needs root and debootstrap (installed with apt-get when missing).
set -euo pipefail

IMAGE=${1:-node:20-slim}
CACHE=${STAND_IN_CACHE:-/var/cache/sshfs-e2e}
TARBALL=$CACHE/node20-bookworm-minbase.tar
MIRROR=${STAND_IN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'stand-in-base: %s\n' "$*" >&2; }
die() { printf 'stand-in-base: ERROR: %s\n' "$*" >&2; exit 1; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi

make_tarball() {
  [ "$(id -u)" = 0 ] || die "making the stand-in root filesystem needs root (debootstrap)"
  command -v debootstrap >/dev/null 2>&1 || bash "$(dirname "${BASH_SOURCE[0]}")/install-system-deps.sh" debootstrap
  local node npm_dir major root start=$SECONDS
  node=$(readlink -f "$(command -v node)") || die "node is not installed"
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" = 20 ] || die "this machine's node is $(node --version); the stand-in for node:20-slim needs node 20"
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  [ -f "$npm_dir/package.json" ] || die "cannot find npm's directory (from $(command -v npm))"

  mkdir -p "$CACHE"
  root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  log "debootstrap --variant=minbase bookworm from $MIRROR (once; cached as $TARBALL)"
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    die "debootstrap failed (log: $CACHE/debootstrap.log)"
  # The same package sources and apt settings as this machine, so apt-get inside a build works here as it does on it.
  rm -f "$root/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/" 2>/dev/null || true
  [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root/etc/apt/sources.list"
  printf 'Acquire::Check-Valid-Until "false";\n' >"$root/etc/apt/apt.conf.d/99stand-in"
  # Like the official slim images: no docs, no caches.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
  # node and npm where the official image has them.
  install -D -m 0755 "$node" "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  chroot "$root" /usr/local/bin/node -e 'process.exit(0)' || die "node does not start inside the stand-in"
  tar -C "$root" --numeric-owner -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$root"
  trap - EXIT
  log "made $TARBALL ($(du -m "$TARBALL" | cut -f1) MiB) in $((SECONDS - start))s"
}

[ -s "$TARBALL" ] || make_tarball
log "importing $TARBALL as $IMAGE"
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV NODE_VERSION=20' \
  --change 'CMD ["node"]' \
  "$TARBALL" "$IMAGE" >/dev/null
