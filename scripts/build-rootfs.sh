#!/usr/bin/env bash
# Offline plugin builder: assembles OUT_DIR/rootfs + OUT_DIR/config.json from this machine's binaries, without any
# container image or registry. It produces the same layout as the Dockerfile path (`docker export` of the image):
#   /usr/local/bin/node, /usr/bin/{sshfs,ssh,fusermount3,tini}, the shared libraries they load and the dynamic loader,
#   a minimal /etc (root in passwd/group for ssh), the mount points config.json uses, and the app at /app
#   (dist/, production node_modules, package.json).
#
# Usage: scripts/build-rootfs.sh OUT_DIR
# Needs: dist/ built (npm run build). Host programs missing are installed with apt-get when running as root.
# Env:   APP_DIR   where dist/, package.json, package-lock.json come from (default: the repository root)
#        CONFIG    the plugin config to ship (default: <repo>/config.json)
#        PLUGIN_ARCH  amd64 | arm64 | armv7 (default: this machine's): for another architecture the programs come
#                  from Debian's packages for it and node from npm (scripts/lib/foreign-arch.sh; cached in BUILD_CACHE)
set -euo pipefail

die() { echo "build-rootfs: $*" >&2; exit 1; }
log() { echo "build-rootfs: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 OUT_DIR"
OUT_DIR=$1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APP_DIR=${APP_DIR:-$REPO}
CONFIG=${CONFIG:-$REPO/config.json}
start=$(date +%s)
# shellcheck source=lib/apt.sh
. "$REPO/scripts/lib/apt.sh"
# shellcheck source=lib/prod-deps.sh
. "$REPO/scripts/lib/prod-deps.sh"
# Debian's architecture names; uname -m's and Docker's are accepted too.
norm_arch() {
  case "$1" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    armv7 | armv7l | armhf | arm) echo armhf ;;
    *) echo "$1" ;;
  esac
}
HOST_ARCH=$(norm_arch "$(dpkg --print-architecture 2>/dev/null || uname -m)")
TARGET_ARCH=$(norm_arch "${PLUGIN_ARCH:-$HOST_ARCH}")
FOREIGN=
[ "$TARGET_ARCH" = "$HOST_ARCH" ] || FOREIGN=$TARGET_ARCH

[ -f "$APP_DIR/dist/adapter/main.js" ] || die "$APP_DIR/dist/adapter/main.js is missing: run 'npm run build' first"
[ -f "$APP_DIR/package.json" ] || die "$APP_DIR/package.json is missing"
[ -f "$CONFIG" ] || die "$CONFIG is missing"

# --- host programs --------------------------------------------------------------------------------------------------
# program -> Debian package providing it
declare -A PKG=([sshfs]=sshfs [ssh]=openssh-client [fusermount3]=fuse3 [tini]=tini [ldd]=libc-bin [npm]=npm)
missing=()
host_programs=(sshfs ssh fusermount3 tini ldd npm node)
[ -n "$FOREIGN" ] && host_programs=(npm node)   # the rest comes from the other architecture's packages
for prog in "${host_programs[@]}"; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("$prog")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=()
  for prog in "${missing[@]}"; do
    [ "$prog" = node ] && die "node is not installed (the plugin ships this machine's node binary; install Node.js 20)"
    pkgs+=("${PKG[$prog]}")
  done
  install_or_die "missing programs: ${missing[*]} (install the packages: ${pkgs[*]})" "${pkgs[@]}"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old: the plugin needs Node.js >= 20"

# --- layout ---------------------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
ROOTFS=$OUT_DIR/rootfs
rm -rf "$ROOTFS" "$OUT_DIR/config.json"
mkdir -p "$ROOTFS"
cd "$ROOTFS"

# merged-/usr layout, like current Debian images: /bin, /lib, /lib64, /sbin point into /usr
mkdir -p usr/bin usr/sbin usr/lib usr/lib64 usr/local/bin
ln -s usr/bin bin
ln -s usr/sbin sbin
ln -s usr/lib lib
ln -s usr/lib64 lib64
mkdir -p etc root/.ssh tmp var/tmp run/docker/plugins mnt/volumes mnt/state data/published keys dev proc sys app
chmod 0700 root root/.ssh
chmod 1777 tmp var/tmp

# copy FILE to DEST inside the rootfs (following symlinks), once
copy_file() {
  local src=$1 dest=$ROOTFS$2
  [ -e "$dest" ] && return 0
  mkdir -p "$(dirname "$dest")"
  cp -L "$src" "$dest"
}

# copy a program and every shared library ldd says it loads (paths kept as ldd prints them, plus the loader)
copy_program() {
  local src dest=$2 line lib
  src=$(readlink -f "$(command -v "$1")")
  copy_file "$src" "$dest"
  chmod 0755 "$ROOTFS$dest"
  while IFS= read -r line; do
    lib=""
    line=${line#"${line%%[![:space:]]*}"}                 # ldd indents with a tab
    case "$line" in
      *"=> not found"*) die "$1 needs a library that is not installed: $line" ;;
      *" => /"*) lib=${line#*=> }; lib=${lib%% (*} ;;     # libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
      /*) lib=${line%% (*} ;;                             # /lib64/ld-linux-x86-64.so.2 (0x...)
    esac
    lib=$(echo "$lib" | tr -d '[:space:]')
    [ -n "$lib" ] && copy_file "$lib" "$lib"
  done < <(ldd "$src" 2>/dev/null || true)
}

if [ -n "$FOREIGN" ]; then
  # shellcheck source=lib/foreign-arch.sh
  . "$REPO/scripts/lib/foreign-arch.sh"
  foreign_setup "$FOREIGN"
  log "building for $F_ARCH (this machine is $HOST_ARCH)"
  foreign_programs
else
  copy_program node /usr/local/bin/node
  copy_program sshfs /usr/bin/sshfs
  copy_program ssh /usr/bin/ssh
  copy_program fusermount3 /usr/bin/fusermount3
  copy_program tini /usr/bin/tini
fi
# The app and sshfs call these by name: make them reachable on every PATH the plugin may get.
ln -s ../local/bin/node usr/bin/node

# --- /etc -----------------------------------------------------------------------------------------------------------
# ssh refuses to run without a passwd entry for its uid and wants a home for ~/.ssh.
cat > etc/passwd <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat > etc/group <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat > etc/nsswitch.conf <<'EOF'
passwd: files
group:  files
hosts:  files dns
EOF
# Docker bind-mounts the host's /etc/hosts and /etc/resolv.conf over these (network type host).
: > etc/hosts
: > etc/resolv.conf
# fusermount3 reads the mount table from here; allow_other needs user_allow_other only for non-root users.
ln -s /proc/self/mounts etc/mtab
echo user_allow_other > etc/fuse.conf
mkdir -p etc/ssh
cat > etc/ssh/ssh_config <<'EOF'
# Minimal client config for the sshfs plugin; per-volume options come from the plugin.
Host *
    BatchMode no
EOF

# --- the app --------------------------------------------------------------------------------------------------------
cp -a "$APP_DIR/dist" app/dist
cp "$APP_DIR/package.json" app/package.json
[ -f "$APP_DIR/package-lock.json" ] && cp "$APP_DIR/package-lock.json" app/package-lock.json

# Production dependencies only (scripts/lib/prod-deps.sh), assembled in a temporary directory.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$APP_DIR/package.json" "$tmp/"
[ -f "$APP_DIR/package-lock.json" ] && cp "$APP_DIR/package-lock.json" "$tmp/"
install_production_deps "$APP_DIR" "$tmp"
cp -a "$tmp/node_modules" app/node_modules

# --- smoke test: every program starts inside the rootfs (chroot needs root) -----------------------------------------
# Each program of the rootfs, with arguments that make it start and exit 0.
SMOKE_CHECKS=("/usr/local/bin/node -e process.exit(0)" "/usr/bin/ssh -V" "/usr/bin/sshfs --version"
  "/usr/bin/fusermount3 --version" "/usr/bin/tini --version")
# Docker gives the plugin a populated /dev; ssh needs /dev/null, so lend one for the check and take it away after.
if [ -n "$FOREIGN" ]; then
  foreign_smoke
elif [ "$(id -u)" = 0 ] && command -v chroot >/dev/null 2>&1 && mknod -m 0666 "$ROOTFS/dev/null" c 1 3 2>/dev/null; then
  chroot_bin=$(command -v chroot)
  smoke() { env -i PATH=/usr/local/bin:/usr/bin:/bin "$chroot_bin" "$ROOTFS" "$@" >/dev/null 2>"$tmp/smoke.err"; }
  failed=""
  for check in "${SMOKE_CHECKS[@]}"; do
    # shellcheck disable=SC2086 # each check is a command line
    smoke $check || { failed=${check%% *}; break; }
  done
  rm -f "$ROOTFS/dev/null"
  [ -z "$failed" ] || die "$failed does not start inside the rootfs: $(cat "$tmp/smoke.err")"
fi

cp "$CONFIG" "$OUT_DIR/config.json"
size=$(du -sm "$ROOTFS" | cut -f1)
log "wrote $OUT_DIR/config.json and $ROOTFS (${FOREIGN:+$F_ARCH, }${size} MiB) in $(( $(date +%s) - start ))s"
