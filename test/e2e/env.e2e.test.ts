// Checks the e2e environment itself (scripts/e2e-env.sh up), so a broken environment fails here, clearly,
// rather than as a confusing plugin failure.
import { statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { docker, loadEnv, runAsUser, sshAsKeyUser } from './harness.js';

describe('e2e environment', () => {
  const env = loadEnv();

  it('has a dockerd that answers and runs the busybox image without a network', async () => {
    const version = await docker(['version', '--format', '{{.Server.Version}}']);
    expect(version.exitCode, version.stderr).toBe(0);
    const run = await docker(['run', '--rm', '--network', 'none', env.image, 'sh', '-c', 'echo hello from busybox']);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toBe('hello from busybox');
  });

  it('has an sshd on 127.0.0.1 that accepts the key user', async () => {
    expect(env.sshHost).toBe('127.0.0.1');
    const r = await sshAsKeyUser('id -un');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe(env.keyUser);
  });

  it('has remote dirs owned by their users', async () => {
    for (const [user, dir] of [
      [env.keyUser, env.keyRemoteDir],
      [env.pwUser, env.pwRemoteDir],
    ] as const) {
      expect(statSync(dir).isDirectory()).toBe(true);
      const r = await runAsUser(user, `touch '${dir}/.probe' && rm '${dir}/.probe' && id -un`);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toBe(user);
    }
  });

  it('has a password with the characters that break naive handling', () => {
    expect(env.password).toMatch(/ /);
    expect(env.password).toMatch(/,/);
    expect(env.password).toMatch(/\$/);
  });
});
