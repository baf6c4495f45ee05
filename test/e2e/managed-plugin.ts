// A managed (v2) plugin put into the test dockerd by scripts/plugin.sh, as operators install it: the pieces the
// managed, release and arm64 tests share (the script, the plugin's directories, a volume's round trip, removal).
import { chmodSync, copyFileSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import { dockerCliEnv } from '../../scripts/lib/e2e-env.js';
import { docker, dockerOk, loadEnv, readRemote, REPO_ROOT, uniq, type CmdResult } from './harness.js';

const PLUGIN_SCRIPT = path.join(REPO_ROOT, 'scripts', 'plugin.sh');

/** Runs scripts/plugin.sh STEP (what `npm run plugin:STEP` runs) against the test dockerd. */
export async function pluginScript(step: string, extraEnv: Record<string, string>, timeoutMs = 600_000): Promise<CmdResult> {
  const r = await execa('bash', [PLUGIN_SCRIPT, step], {
    cwd: REPO_ROOT,
    env: { ...dockerCliEnv(loadEnv()), ...extraEnv },
    reject: false,
    timeout: timeoutMs,
    input: '',
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export interface PluginDirs {
  /** A fresh plugin name. */
  name: string;
  /** NAME:latest, as docker plugin commands want it. */
  ref: string;
  /** DIR/AREA/NAME: everything of this plugin on the host. */
  baseDir: string;
  /** PLUGIN_DIR: the plugin's config.json and rootfs. */
  pluginDir: string;
  /** PLUGIN_STATE_SOURCE. */
  stateSource: string;
  /** PLUGIN_KEYS_SOURCE: holds the environment's key as id_ed25519 once made. */
  keysSource: string;
}

/** A fresh name PREFIX-<id> for a plugin of a test AREA (managed, release, arm64...), and where it keeps its files. */
export function pluginDirs(area: string, prefix: string): PluginDirs {
  const name = uniq(prefix);
  const baseDir = path.join(loadEnv().dir, area, name);
  return { name, ref: `${name}:latest`, baseDir, pluginDir: path.join(baseDir, 'plugin'), stateSource: path.join(baseDir, 'state'), keysSource: path.join(baseDir, 'keys') };
}

/** Empties DIRS.baseDir and puts the environment's key into the keys source as id_ed25519 (0600). */
export function freshPluginDirs(dirs: PluginDirs): void {
  rmSync(dirs.baseDir, { recursive: true, force: true });
  mkdirSync(dirs.keysSource, { recursive: true, mode: 0o700 });
  copyFileSync(loadEnv().keyFile, path.join(dirs.keysSource, 'id_ed25519'));
  chmodSync(path.join(dirs.keysSource, 'id_ed25519'), 0o600);
}

/** Disables and removes the managed plugin REF, if dockerd has it. */
export async function removeManagedPlugin(ref: string): Promise<void> {
  if ((await docker(['plugin', 'inspect', ref])).exitCode !== 0) return;
  await docker(['plugin', 'disable', '-f', ref]);
  await docker(['plugin', 'rm', '-f', ref]);
}

/** Creates VOL on the managed plugin REF as the key user on REMOTE, with the key IDENTITYFILE names (keys mount). */
export async function createKeyVolume(ref: string, vol: string, remote: string, identityFile = 'id_ed25519'): Promise<void> {
  const env = loadEnv();
  await dockerOk([
    'volume', 'create', '-d', ref,
    '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remote}`,
    '-o', `port=${env.sshPort}`,
    '-o', `IdentityFile=${identityFile}`,
    vol,
  ]);
}

/**
 * Creates VOL as createKeyVolume does, writes TEXT to FILE through one container, and expects it back through another
 * and on the sshd side.
 */
export async function keyVolumeRoundTrip(ref: string, vol: string, remote: string, file: string, text: string): Promise<void> {
  const env = loadEnv();
  await createKeyVolume(ref, vol, remote);
  await dockerOk(['run', '--rm', '-i', '-v', `${vol}:/remote`, env.image, 'sh', '-c', `cat > /remote/${file}`], { input: text });
  expect(`${await dockerOk(['run', '--rm', '-v', `${vol}:/remote`, env.image, 'cat', `/remote/${file}`])}\n`).toBe(text);
  expect(await readRemote(remote, file)).toBe(text);
}
