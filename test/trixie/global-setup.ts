// vitest globalSetup for the trixie project: Docker 26 and Podman 5 from a Debian 13 root in a private namespace
// (scripts/trixie-env.sh: the root is built once and cached), with its own sshd. Same switches as the e2e project's
// (E2E_SKIP_BUILD, E2E_KEEP).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { setupEnvironment } from '../e2e/global-setup.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export default function setup(project: TestProject): Promise<() => Promise<void>> {
  return setupEnvironment(project, path.join(REPO_ROOT, '.e2e-trixie'), path.join(REPO_ROOT, 'scripts', 'trixie-env.sh'));
}
