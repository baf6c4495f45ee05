#!/usr/bin/env bash
# Installs the Debian packages the plugin and its tests need, when running as root and they are missing.
# Usage: scripts/install-system-deps.sh [package...]   (default: everything the tests use)
set -euo pipefail
# shellcheck source=lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(docker.io docker-compose sshfs openssh-server openssh-client busybox-static tini fuse3 podman systemd openssl debootstrap docker-registry apache2-utils qemu-user-static binutils dropbear-bin)
mapfile -t missing < <(missing_packages "${packages[@]}")
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt_get_install "${missing[@]}"
