#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, checks, builds, then runs unit, end-to-end and
# fault tests (a real dockerd, a real sshd on 127.0.0.1 and real FUSE mounts, started and stopped here).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }
results=.test-results
vitest() { npx vitest run --project "$1" --reporter=default --reporter=json --outputFile="$results/$1.json"; }

step "system packages"
bash scripts/install-system-deps.sh

step "npm dependencies"
npm ci --no-audit --no-fund --loglevel=error

step "lint and type-check"
npx eslint .
npx tsc -p tsconfig.json --noEmit

step "build"
npm run build --silent

rm -rf "$results"
step "unit tests"
vitest unit

step "end-to-end tests (real dockerd, sshd and FUSE)"
E2E_SKIP_BUILD=1 vitest e2e

step "end-to-end on today's engines: Docker 26 and Podman 5 from a Debian 13 root, Docker 28.5 (CSI) from a forky root (scripts/trixie-env.sh)"
E2E_SKIP_BUILD=1 vitest trixie

step "fault suite (kills, restarts, dropped links, load, hostile input; prints a table of figures)"
E2E_SKIP_BUILD=1 vitest faults

# One closing line over all projects, in the plain form CI reads.
node -e '
const fs = require("fs");
let passed = 0, failed = 0;
for (const f of fs.readdirSync(process.argv[1])) {
  const r = JSON.parse(fs.readFileSync(`${process.argv[1]}/${f}`, "utf8"));
  passed += r.numPassedTests; failed += r.numFailedTests;
}
console.log(`\ntests: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
' "$results"
