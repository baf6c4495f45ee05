# shellcheck shell=bash
# Sourced by the scripts that ship the app with its production dependencies (build-rootfs.sh, host-install.sh).

# install_production_deps APP_DIR DEST: DEST/node_modules with the production dependencies of DEST/package.json (and
# its package-lock.json): a clean `npm ci --omit=dev` (npm's cache first, so it works offline once the project's
# dependencies were installed), else `npm install --omit=dev`, else a pruned copy of APP_DIR/node_modules. No .bin.
# Uses: log, die (the sourcing script's).
install_production_deps() {
  local app=$1 dest=$2 err
  local flags=(--omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  err=$(mktemp)
  if [ -f "$dest/package-lock.json" ] && (cd "$dest" && npm ci "${flags[@]}" --prefer-offline >/dev/null 2>"$err"); then
    :
  elif (cd "$dest" && npm install "${flags[@]}" --prefer-offline >/dev/null 2>"$err"); then
    # npm ci refuses a lock file that is out of sync with package.json; install resolves from it as far as it can.
    log "npm ci --omit=dev refused the lock file; used npm install --omit=dev instead"
  elif [ -d "$app/node_modules" ]; then
    log "npm ci --omit=dev failed ($(tail -n1 "$err" 2>/dev/null)); pruning a copy of $app/node_modules"
    rm -rf "$dest/node_modules"
    cp -a "$app/node_modules" "$dest/node_modules"
    (cd "$dest" && npm prune "${flags[@]}" --offline >/dev/null)
  else
    cat "$err" >&2 || true
    rm -f "$err"
    die "could not install production dependencies (no npm cache, no registry and no node_modules to prune)"
  fi
  rm -f "$err"
  if [ -d "$dest/node_modules" ]; then
    rm -rf "$dest/node_modules/.bin" "$dest/node_modules/.package-lock.json"
  else
    mkdir -p "$dest/node_modules" # no runtime dependencies
  fi
}
