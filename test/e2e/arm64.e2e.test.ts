// The plugin for another architecture: `PLUGIN_ARCH=arm64 npm run plugin:install` builds an arm64 rootfs offline
// (Debian's arm64 packages, node from npm) on this amd64 machine; Docker runs it under qemu user emulation
// (binfmt_misc, registered here and unregistered after); a volume mounts through it end to end.
import { openSync, readFileSync, readSync, closeSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Resources, dockerOk, loadEnv, makeRemoteSubdir, randomId, sshfsMountsUnder } from './harness.js';
import { freshPluginDirs, keyVolumeRoundTrip, pluginDirs, pluginScript, removeManagedPlugin } from './managed-plugin.js';
import { registerQemu } from './release-env.js';

const EM_AARCH64 = 0xb7;

/** The ELF machine field of FILE (e_machine, 2 bytes little-endian at offset 18). */
function elfMachine(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(20);
    readSync(fd, head, 0, 20, 0);
    if (head.subarray(0, 4).toString('latin1') !== '\x7fELF') return -1;
    return head.readUInt16LE(18);
  } finally {
    closeSync(fd);
  }
}

describe('arm64 plugin built offline, run under emulation', () => {
  const env = loadEnv();
  const dirs = pluginDirs('arm64', 'sshfs-arm64');
  const { name, ref } = dirs;
  const res = new Resources();
  const vol = res.volume(`a64-${randomId()}`);
  let unregister: (() => Promise<void>) | undefined;
  let buildLog = '';

  beforeAll(async () => {
    freshPluginDirs(dirs);
    unregister = await registerQemu('aarch64');
    const r = await pluginScript('install', {
      PLUGIN_ARCH: 'arm64',
      PLUGIN_NAME: name,
      PLUGIN_DIR: dirs.pluginDir,
      PLUGIN_SKIP_APP_BUILD: '1',
      PLUGIN_STATE_SOURCE: dirs.stateSource,
      PLUGIN_KEYS_SOURCE: dirs.keysSource,
      PLUGIN_ENABLE_TIMEOUT: '90', // node starts slower under emulation
      BUILD_CACHE: '/var/cache/sshfs-e2e', // Debian's arm64 packages and node, kept between runs
    }, 900_000);
    buildLog = r.stderr;
    if (r.exitCode !== 0) throw new Error(`PLUGIN_ARCH=arm64 plugin.sh install failed (${r.exitCode}):\n${r.stderr}\n${r.stdout}`);
    console.log(`[arm64] ${/built .* \((\d+ MiB)/.exec(buildLog)?.[1] ?? '?'} rootfs`);
  }, 1_200_000);

  afterAll(async () => {
    const errors = await res.cleanup();
    await removeManagedPlugin(ref);
    await unregister?.();
    if ((await sshfsMountsUnder(dirs.baseDir)).length === 0) rmSync(dirs.baseDir, { recursive: true, force: true });
    if (errors.length > 0) console.warn(`[arm64] cleanup: ${errors.join('; ')}`);
  }, 300_000);

  it('the rootfs holds arm64 programs, built offline', () => {
    expect(buildLog).toMatch(/with the offline builder/);
    for (const f of ['usr/local/bin/node', 'usr/bin/sshfs', 'usr/bin/ssh', 'usr/bin/fusermount3', 'usr/bin/tini']) {
      expect(elfMachine(path.join(dirs.pluginDir, 'rootfs', f)), f).toBe(EM_AARCH64);
    }
  });

  it('is enabled, and its node runs under qemu', async () => {
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', ref])).trim()).toBe('true');
    const id = (await dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', ref])).trim();
    // The plugin's node: its command line names the app; with binfmt's F flag its executable is the emulator.
    const emulated = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
          return cmd.includes('/app/dist/adapter/main.js') && readFileSync(`/proc/${p}/environ`, 'utf8').includes('SOCKET_PATH=');
        } catch {
          return false;
        }
      })
      .map((p) => {
        try {
          return readlinkSync(`/proc/${p}/exe`);
        } catch {
          return '';
        }
      });
    expect(emulated.some((exe) => exe.endsWith('qemu-aarch64-static')), `${id}: ${emulated.join(', ')}`).toBe(true);
  });

  it('mounts a key-auth volume; data round-trips through containers and reaches the sshd', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'arm64');
    await keyVolumeRoundTrip(ref, vol, remote, 'a64.txt', `through the arm64 plugin: ${randomId(8)}\n`);
  });
});
