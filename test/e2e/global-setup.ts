// vitest globalSetup for the e2e project: build the plugin, bring up the isolated dockerd + sshd, tear them down.
//
//   E2E_SKIP_BUILD=1   do not run `npm run build` (dist/ as it is)
//   E2E_KEEP=1         leave the environment running after the tests (then: scripts/e2e-env.sh down .e2e)
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { TestProject } from 'vitest/node';
import { endStandIns } from './ended-plugins.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const E2E_DIR = path.join(REPO_ROOT, '.e2e');
const ENV_SCRIPT = path.join(REPO_ROOT, 'scripts', 'e2e-env.sh');

async function run(file: string, args: string[], what: string, timeoutMs: number): Promise<void> {
  const r = await execa(file, args, { cwd: REPO_ROOT, reject: false, all: true, timeout: timeoutMs, input: '' });
  if (r.exitCode !== 0) {
    throw new Error(`${what} failed (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}):\n${r.all ?? ''}`);
  }
}

export default function setup(project: TestProject): Promise<() => Promise<void>> {
  return setupEnvironment(project, E2E_DIR);
}

/**
 * Builds, brings up the environment in DIR (its own dockerd, sshd, users' dirs) with SCRIPT's `up` (default
 * scripts/e2e-env.sh) and returns the teardown (its `down`).
 */
export async function setupEnvironment(project: TestProject, dir: string, script = ENV_SCRIPT): Promise<() => Promise<void>> {
  if (process.getuid?.() !== 0) {
    throw new Error('the e2e tests need root (dockerd, FUSE, local test users)');
  }
  if (!process.env.E2E_SKIP_BUILD) {
    await run('npm', ['run', 'build'], 'npm run build', 300_000);
  }
  const name = path.relative(REPO_ROOT, script);
  await run('bash', [script, 'up', dir], `${name} up ${dir}`, 900_000);
  process.env.E2E_DIR = dir;
  project.provide('e2eDir', dir);

  return async () => {
    if (process.env.E2E_KEEP) {
      console.log(`[e2e] E2E_KEEP is set: environment left running; stop it with: ${name} down ${dir}`);
      return;
    }
    endStandIns(dir);
    await run('bash', [script, 'down', dir], `${name} down ${dir}`, 300_000);
  };
}
