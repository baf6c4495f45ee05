#!/usr/bin/env bash
# Installs the Debian packages the plugin and its tests need, when running as root and they are missing.
# Usage: scripts/install-system-deps.sh [package...]   (default: everything the tests use)
set -euo pipefail
packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(docker.io docker-compose sshfs openssh-server openssh-client busybox-static tini fuse3 podman openssl debootstrap docker-registry apache2-utils qemu-user-static binutils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
