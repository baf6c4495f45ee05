# shellcheck shell=bash
# Sourced by the scripts that install missing Debian packages themselves (as root, on Debian/Ubuntu).

# True when this process may install packages: it runs as root and apt-get is there.
can_apt_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

# Prints each PACKAGE that dpkg does not list as installed.
missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
  return 0
}

# apt_get_install PACKAGE...: refreshes the package lists, then installs the packages quietly, without recommends.
apt_get_install() {
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# install_or_die REFUSAL PACKAGE...: installs the packages when can_apt_install, else dies with REFUSAL.
# Uses: log, die (the sourcing script's).
install_or_die() {
  local refusal=$1
  shift
  can_apt_install || die "$refusal"
  log "installing $*"
  apt_get_install "$@"
}
