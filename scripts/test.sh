#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, checks, builds, then runs unit and
# end-to-end tests (a real dockerd, a real sshd on 127.0.0.1 and real FUSE mounts, started and stopped here).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "system packages"
bash scripts/install-system-deps.sh

step "npm dependencies"
npm ci --no-audit --no-fund --loglevel=error

step "lint and type-check"
npx eslint .
npx tsc -p tsconfig.json --noEmit

step "build"
npm run build --silent

step "unit tests"
npx vitest run --project unit

step "end-to-end tests (real dockerd, sshd and FUSE)"
E2E_SKIP_BUILD=1 npx vitest run --project e2e

step "fault suite (kills, restarts, dropped links, load, hostile input; prints a table of figures)"
E2E_SKIP_BUILD=1 npx vitest run --project faults

echo
echo "all test stages passed"
