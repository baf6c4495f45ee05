// The state directory under faults, against the real plugin process: a second instance on the same directory, a
// full filesystem at start and mid-run (a change reported as failed never comes back), leftovers of a crash, and a
// keys directory that holds no default key. Requests go straight to the plugin's socket (no dockerd): these plugins
// stop and start at will, and a stopped legacy plugin would stay registered in dockerd.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { e2eDir, loadEnv, startLegacyPlugin, uniquePluginName, type LegacyPlugin } from '../e2e/harness.js';
import { call, keyOpts, measured } from './lib.js';

const env = loadEnv();
const started: LegacyPlugin[] = [];
const tmpfsMounts: string[] = [];

async function start(name: string, extraEnv: Record<string, string> = {}): Promise<LegacyPlugin> {
  const plugin = await startLegacyPlugin(name, { env: extraEnv });
  started.push(plugin);
  return plugin;
}

afterAll(async () => {
  for (const p of started) if (p.running()) await p.stop();
  for (const dir of tmpfsMounts) execFileSync('umount', ['-l', dir]);
});

/** A small tmpfs of its own, so the test can fill it. */
function smallFilesystem(kib: number): string {
  const dir = mkdtempSync(path.join(e2eDir(), 'small-fs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${kib}k,mode=0700`, 'tmpfs', dir]);
  tmpfsMounts.push(dir);
  return dir;
}

/** Fills the filesystem holding DIR to the last block; returns the filler file to remove. */
function fill(dir: string): string {
  const filler = path.join(dir, 'filler');
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k'], { stdio: 'ignore' });
  } catch {
    // dd stops with "No space left on device": that is the point
  }
  return filler;
}

/** A Create over the socket; its remote path is long enough (8 KiB) that saving it needs new blocks on disk. */
const createOver = (plugin: LegacyPlugin, name: string) =>
  call(plugin, '/VolumeDriver.Create', { Name: name, Opts: keyOpts(`${env.keyRemoteDir}/${'d'.repeat(8192)}`) });
const names = async (plugin: LegacyPlugin) =>
  ((await call(plugin, '/VolumeDriver.List', {})).Volumes as { Name: string }[]).map((v) => v.Name).sort();

it('refuses a second instance on the same state directory, and starts once the first has gone', async () => {
  await measured('state dir: one instance at a time', import.meta.url, async (row) => {
    row.trials = 2;
    const first = await start(uniquePluginName());
    const secondName = uniquePluginName();
    const error = await start(secondName, { STATE_DIR: first.stateDir }).then(
      () => undefined,
      (e: unknown) => String(e),
    );
    expect(error).toMatch(/another plugin instance is using the state directory/);
    row.passed += 1;
    await first.kill(); // a crash leaves its lock socket behind: it must not keep the next start out
    const again = await start(secondName, { STATE_DIR: first.stateDir });
    expect(again.running()).toBe(true);
    await again.stop();
    row.passed += 1;
  });
});

it('on a full state filesystem: serves what it read, fails changes with the reason, and a failed change never comes back', async () => {
  await measured('state dir: full filesystem', import.meta.url, async (row) => {
    row.trials = 3;
    const stateDir = path.join(smallFilesystem(512), 'state');
    const name = uniquePluginName();
    let plugin = await start(name, { STATE_DIR: stateDir });
    expect((await createOver(plugin, 'kept')).Err).toBe('');

    // Mid-run: the disk fills; a Create fails with the reason and changes nothing.
    const filler = fill(stateDir);
    const failed = await createOver(plugin, 'lost');
    expect(failed.Err).toMatch(/cannot save its state in .* nothing was changed: free space/);
    expect(await names(plugin)).toEqual(['kept']);
    rmSync(filler);
    await plugin.stop();
    plugin = await start(name, { STATE_DIR: stateDir });
    expect(await names(plugin)).toEqual(['kept']); // the failed append did not survive on disk
    row.passed += 1;

    // At start: the disk is full, the state is readable: the plugin serves it and says why it cannot write.
    await plugin.stop();
    const filler2 = fill(stateDir);
    plugin = await start(name, { STATE_DIR: stateDir });
    expect(await names(plugin)).toEqual(['kept']);
    expect((await call(plugin, '/VolumeDriver.Get', { Name: 'kept' })).Err).toBe('');
    expect(plugin.logs()).toMatch(/cannot be written .*serving what was read/);
    expect((await createOver(plugin, 'later')).Err).toMatch(/cannot save its state/);
    row.passed += 1;

    // Space again: changes work without a restart.
    rmSync(filler2);
    expect((await createOver(plugin, 'later')).Err).toBe('');
    expect(await names(plugin)).toEqual(['kept', 'later']);
    await plugin.stop();
    row.passed += 1;
  });
});

it('cleans a crash\'s leftovers at start: temp files of key writes and key files of volumes it does not hold', async () => {
  await measured('state dir: crash leftovers cleaned', import.meta.url, async (row) => {
    row.trials = 1;
    const name = uniquePluginName();
    let plugin = await start(name);
    const key = (await import('node:fs')).readFileSync(env.keyFile, 'utf8');
    expect((await call(plugin, '/VolumeDriver.Create', { Name: 'withkey', Opts: { ...keyOpts(env.keyRemoteDir), IdentityFile: undefined, key } })).Err).toBe('');
    await plugin.kill();
    const keys = path.join(plugin.stateDir, 'keys');
    writeFileSync(path.join(keys, 'withkey.key.tmp-4242'), key, { mode: 0o600 });
    writeFileSync(path.join(keys, 'gone.key'), key, { mode: 0o600 });
    plugin = await start(name);
    expect(readdirSync(keys)).toEqual(['withkey.key']);
    expect(plugin.logs()).toMatch(/removed leftover .*withkey\.key\.tmp-4242/);
    expect((await call(plugin, '/VolumeDriver.Remove', { Name: 'withkey' })).Err).toBe('');
    expect(existsSync(path.join(keys, 'withkey.key'))).toBe(false);
    await plugin.stop();
    row.passed += 1;
  });
});

it('refuses a volume with no credential when the keys directory holds no default key, saying what to pass', async () => {
  await measured('credentials: none given, no default key: refused', import.meta.url, async (row) => {
    row.trials = 1;
    const emptyKeys = path.join(e2eDir(), `empty-keys-${uniquePluginName()}`);
    mkdirSync(emptyKeys, { mode: 0o700 });
    const plugin = await start(uniquePluginName(), { KEYS_DIR: emptyKeys });
    const { IdentityFile: _file, ...noCredential } = keyOpts(env.keyRemoteDir);
    const r = await call(plugin, '/VolumeDriver.Create', { Name: 'nocred', Opts: noCredential });
    expect(r.Err).toMatch(/no credential: give -o IdentityFile=.*default key .* in the plugin's keys directory/);
    expect(await names(plugin)).toEqual([]);
    await plugin.stop();
    rmSync(emptyKeys, { recursive: true, force: true });
    row.passed += 1;
  });
});
