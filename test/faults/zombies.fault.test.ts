// 100 mount/unmount cycles: no defunct (zombie) process under the plugin, no sshfs/ssh left running, no fd leak.
//
// sshfs daemonizes and double-forks its ssh, so both end up children of the nearest reaper: the host's init in host
// mode, tini in the managed plugin. The plugin reaps only its own children (the sshfs/fusermount3 it runs). This
// machine's PID 1 does not reap at all, so the cycles run under `tini -s` (a child subreaper, as in the managed
// plugin): then every process the plugin caused stays in its tree, and none may be defunct.
import { readdirSync } from 'node:fs';
import { expect, it } from 'vitest';
import { descendantsOf, listProcesses, makeRemoteSubdir, sleep, sshfsMountsUnder, sshProcessesMentioning, waitFor } from '../e2e/harness.js';
import { call, keyOpts, measured, pwOpts, secondsSince, uniq, useFaultPlugin } from './lib.js';

const { plugin, env } = useFaultPlugin({ wrapper: ['tini', '-s', '--'] });
const CYCLES = 100;

it(`leaves no zombie and no process after ${CYCLES} mount/unmount cycles`, async () => {
  await measured(`${CYCLES} mount/unmount cycles (key + password)`, import.meta.url, async (row) => {
    const keyVol = uniq('cycle-key');
    const pwVol = uniq('cycle-pw');
    const keyRemote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const pwRemote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser);
    for (const [vol, opts] of [[keyVol, keyOpts(keyRemote)], [pwVol, pwOpts(pwRemote)]] as const) {
      expect((await call(plugin, '/VolumeDriver.Create', { Name: vol, Opts: opts })).Err).toBe('');
    }
    const node = (await listProcesses()).find((p) => p.ppid === plugin.pid && p.cmdline.includes('main.js'));
    if (node === undefined) throw new Error('the plugin process under tini was not found');
    const fds = () => readdirSync(`/proc/${node.pid}/fd`).length;
    // One cycle first, so lazily opened fds (known_hosts, logs...) do not count as a leak.
    await call(plugin, '/VolumeDriver.Mount', { Name: keyVol, ID: 'warm' });
    await call(plugin, '/VolumeDriver.Unmount', { Name: keyVol, ID: 'warm' });
    const fdsBefore = fds();
    const zombiesBefore = new Set((await listProcesses()).filter((p) => p.state === 'Z').map((p) => p.pid));
    const t0 = performance.now();
    for (let i = 0; i < CYCLES; i++) {
      row.trials += 1;
      const vol = i % 2 === 0 ? keyVol : pwVol;
      const m = await call(plugin, '/VolumeDriver.Mount', { Name: vol, ID: `c${i}` });
      const u = await call(plugin, '/VolumeDriver.Unmount', { Name: vol, ID: `c${i}` });
      if (m.Err === '' && u.Err === '') row.passed += 1;
    }
    const cycleS = secondsSince(t0);
    // sshfs and its ssh exit just after the unmount: give them a moment, then look. The key volume's shared login (its
    // ssh master) stays for the idle period, by design: counted apart, and it must go with the volume's Remove.
    const isMaster = (p: { cmdline: string }) => p.cmdline.includes('ControlMaster=yes');
    const nonMasters = async () => (await sshProcessesMentioning(plugin.stateDir)).filter((p) => !isMaster(p));
    await waitFor('sshfs/ssh of the volumes to exit', async () => (await nonMasters()).length === 0, 15_000).catch(() => undefined);
    await sleep(500);
    const procs = await listProcesses();
    const masters = (await sshProcessesMentioning(plugin.stateDir)).filter(isMaster);
    const tree = descendantsOf(procs, plugin.pid).filter((p) => !masters.some((m) => m.pid === p.pid));
    const zombiesInTree = tree.filter((p) => p.state === 'Z');
    const newSystemZombies = procs.filter((p) => p.state === 'Z' && !zombiesBefore.has(p.pid) && (p.comm === 'ssh' || p.comm === 'sshfs'));
    const live = await nonMasters();
    row.figures['cycles / seconds'] = `${CYCLES} / ${cycleS}`;
    row.figures['zombies under the plugin (tini -s tree)'] = zombiesInTree.length;
    row.figures['new sshfs/ssh zombies system-wide'] = newSystemZombies.length;
    row.figures['sshfs/ssh processes left running'] = live.length;
    row.figures['processes in the plugin tree after'] = tree.length;
    row.figures['shared ssh logins kept (idle)'] = masters.length;
    row.figures['plugin fds before -> after'] = `${fdsBefore} -> ${fds()}`;
    row.figures['mounts left'] = (await sshfsMountsUnder(plugin.mountRoot)).length;
    expect(zombiesInTree.map((p) => `${p.pid} ${p.comm}`)).toEqual([]);
    expect(live.map((p) => `${p.pid} ${p.cmdline.slice(0, 80)}`)).toEqual([]);
    expect(tree.map((p) => p.comm)).toEqual(['node']);
    expect(fds() - fdsBefore).toBeLessThan(10);
    expect(masters.length, 'one shared login for the key volume, none for the password volume').toBeLessThanOrEqual(1);
    for (const vol of [keyVol, pwVol]) expect((await call(plugin, '/VolumeDriver.Remove', { Name: vol })).Err).toBe('');
    await waitFor('the shared login to close with its last volume', async () => (await sshProcessesMentioning(plugin.stateDir)).length === 0, 10_000);
  });
});
