// Plugin killed (SIGKILL) and restarted while volumes are mounted, in host mode: its sshfs processes survive it.
// On restart it must serve at once, adopt live mounts (or replace stale ones), keep per-ID counts, let a new container
// use the volume, and never stack two mounts on one mountpoint.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { docker, dockerOk, isSshfsMounted, listProcesses, makeRemoteSubdir, mountCountAt, sshProcessesMentioning, waitFor, type LegacyPlugin } from '../e2e/harness.js';
import { call, createVolume, describeRun, keyOpts, markedVolume, measured, removeContainers, round, runWith, secondsSince, startContainer, stats, statusOver, uniq, useFaultPlugin } from './lib.js';

const { plugin, res, env, start } = useFaultPlugin();

/** Kills the plugin and starts it again with the same state; returns the new process once it answers. */
async function killAndRestart(): Promise<LegacyPlugin> {
  await plugin.kill();
  return start();
}

async function waitReconciled(p: LegacyPlugin): Promise<string> {
  let line = '';
  await waitFor('the reconcile report in the plugin log', () => {
    line = p.logs().split('\n').find((l) => l.includes('state reconciled')) ?? '';
    return line !== '';
  }, 60_000);
  return line;
}

async function zombieChildren(p: LegacyPlugin): Promise<number> {
  return (await listProcesses()).filter((x) => x.ppid === p.pid && x.state === 'Z').length;
}

it('SIGKILL with mounted volumes: serves at once, adopts the live mount, keeps per-ID counts, never stacks mounts', async () => {
  await measured('plugin SIGKILL + restart, live sshfs adopted (3 kills)', import.meta.url, async (row) => {
    const { vol, mountpoint } = await markedVolume(res, plugin, 'restart', 'before the crash\n');
    // Two containers: two mount IDs.
    const sleepers = [await startContainer(res, vol), await startContainer(res, vol)];
    const before = await statusOver(plugin, vol);
    expect(before).toMatchObject({ mounted: true, references: 2, mountIDs: 2 });
    const readyMs: number[] = [];
    const recoverS: number[] = [];
    let maxMounts = 0;
    let maxSshfs = 0;
    for (let trial = 0; trial < 3; trial++) {
      row.trials += 1;
      const t0 = performance.now();
      const sshfsBefore = (await sshProcessesMentioning(mountpoint)).filter((p) => p.comm === 'sshfs').map((p) => p.pid);
      const p = await killAndRestart();
      readyMs.push(p.readyMs);
      const report = await waitReconciled(p);
      expect(report).toContain('1 mount(s) adopted');
      // The same sshfs process still serves the mount: adopted, not remounted.
      const sshfsAfter = (await sshProcessesMentioning(mountpoint)).filter((x) => x.comm === 'sshfs').map((x) => x.pid);
      expect(sshfsAfter).toEqual(sshfsBefore);
      expect(await statusOver(p, vol)).toMatchObject({ mounted: true, references: 2, mountIDs: 2 });
      // A new container works, and the running ones still read the volume.
      const r = await runWith(vol, 'cat /data/marker');
      expect(r.exitCode, describeRun(r, p)).toBe(0);
      expect(r.stdout).toBe('before the crash');
      recoverS.push(secondsSince(t0));
      for (const s of sleepers) expect(await dockerOk(['exec', s, 'cat', '/data/marker'])).toBe('before the crash');
      maxMounts = Math.max(maxMounts, await mountCountAt(mountpoint));
      maxSshfs = Math.max(maxSshfs, sshfsAfter.length);
      expect(await mountCountAt(mountpoint)).toBe(1);
      // The new container's Unmount brought the count back to the two sleepers.
      await waitFor('references back to 2', async () => (await statusOver(p, vol)).references === 2, 20_000);
      row.passed += 1;
    }
    await removeContainers(res, sleepers);
    await waitFor('the volume to be unmounted', async () => !(await isSshfsMounted(mountpoint)), 20_000);
    expect(await statusOver(plugin, vol)).toMatchObject({ mounted: false, references: 0 });
    row.figures['serving after restart (ms)'] = stats(readyMs.map((v) => round(v, 0)));
    row.figures['kill -> new container ran (s)'] = stats(recoverS);
    row.figures['max mounts on the mountpoint'] = maxMounts;
    row.figures['max sshfs for the volume'] = maxSshfs;
    row.figures['zombie children of the plugin'] = await zombieChildren(plugin);
    row.figures['mounts left after containers exit'] = await mountCountAt(mountpoint);
    for (const ms of readyMs) expect(ms, 'the plugin answers Activate soon after it starts').toBeLessThan(5_000);
  });
});

it('SIGKILL of the plugin and of its sshfs: the dead mount is detached at restart, the next Mount mounts it, never stacked', async () => {
  await measured('plugin + sshfs SIGKILLed: dead mount released, next Mount mounts afresh', import.meta.url, async (row) => {
    row.trials = 1;
    const { vol, mountpoint } = await markedVolume(res, plugin, 'stale', 'still here\n');
    const sleeper = await startContainer(res, vol);
    const sshfs = (await sshProcessesMentioning(mountpoint)).filter((p) => p.comm === 'sshfs');
    expect(sshfs).toHaveLength(1);
    const t0 = performance.now();
    await plugin.kill();
    for (const p of sshfs) process.kill(p.pid, 'SIGKILL');
    await waitFor('sshfs to be gone', async () => (await sshProcessesMentioning(mountpoint)).every((p) => p.comm !== 'sshfs'), 10_000);
    // The kernel still lists the mount, but nothing serves it.
    expect(await mountCountAt(mountpoint)).toBe(1);
    await start();
    const report = await waitReconciled(plugin);
    // Not mounted again at start: the old container cannot use a new mount, and its reference (which may be one
    // whose Unmount was lost) holds nothing, so it is released.
    expect(report).toContain('1 whose mount was gone released');
    expect(await statusOver(plugin, vol)).toMatchObject({ mounted: false, references: 0, mountIDs: 0 });
    expect(await mountCountAt(mountpoint)).toBe(0);
    // A new container mounts it afresh, and sees exactly one mount of the volume.
    const r = await runWith(vol, 'cat /data/marker && grep -c " /data " /proc/self/mountinfo');
    expect(r.exitCode, describeRun(r, plugin)).toBe(0);
    expect(r.stdout).toBe('still here\n1');
    row.figures['kill -> new container ran (s)'] = secondsSince(t0);
    // Its Unmount left no reference: unmounted again, the sshfs gone.
    await waitFor('the volume to be unmounted after the new container', async () => !(await isSshfsMounted(mountpoint)), 20_000);
    row.figures['mounts on the mountpoint after it'] = await mountCountAt(mountpoint);
    await waitFor('its sshfs to exit', async () => (await sshProcessesMentioning(mountpoint)).length === 0, 20_000);
    row.figures['sshfs for the volume after it'] = (await sshProcessesMentioning(mountpoint)).length;
    // A container started before the crash keeps its bind of the dead FUSE mount: say what users see there.
    const old = await docker(['exec', sleeper, 'ls', '/data']);
    row.figures['container from before the crash'] = old.exitCode === 0 ? 'still reads' : `sees "${old.stderr.split(':').pop()?.trim()}" (restart it)`;
    await removeContainers(res, [sleeper]);
    await waitFor('the volume to be unmounted', async () => !(await isSshfsMounted(mountpoint)), 20_000);
    row.figures['mounts left after containers exit'] = await mountCountAt(mountpoint);
    expect(await statusOver(plugin, vol)).toMatchObject({ mounted: false, references: 0 });
    row.passed = 1;
  });
});

it('sshfs killed while the plugin runs: Status says stale, and the next Mount replaces the mount', async () => {
  await measured('sshfs killed under a live plugin: next Mount replaces it', import.meta.url, async (row) => {
    row.trials = 1;
    const { vol, mountpoint } = await markedVolume(res, plugin, 'stale-live', 'ok\n');
    const sleeper = await startContainer(res, vol);
    for (const p of await sshProcessesMentioning(mountpoint)) if (p.comm === 'sshfs') process.kill(p.pid, 'SIGKILL');
    await waitFor('the mount to be stale', async () => (await statusOver(plugin, vol)).stale !== undefined, 10_000);
    const t0 = performance.now();
    const r = await runWith(vol, 'cat /data/marker');
    expect(r.exitCode, describeRun(r, plugin)).toBe(0);
    row.figures['new container ran (s)'] = secondsSince(t0);
    row.figures['mounts on the mountpoint'] = await mountCountAt(mountpoint);
    expect(row.figures['mounts on the mountpoint']).toBe(1);
    expect(await statusOver(plugin, vol)).toMatchObject({ mounted: true, references: 1 });
    await removeContainers(res, [sleeper]);
    await waitFor('the volume to be unmounted', async () => !(await isSshfsMounted(mountpoint)), 20_000);
    row.figures['mounts left after containers exit'] = await mountCountAt(mountpoint);
    row.passed = 1;
  });
});

it('SIGTERM in the middle of a burst of docker runs: requests in flight finish, no run fails', async () => {
  await measured('plugin SIGTERM 0.2-0.4 s into 10 concurrent docker runs (2 bursts)', import.meta.url, async (row) => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vols = [await createVolume(res, plugin, uniq('term-a'), keyOpts(remote)), await createVolume(res, plugin, uniq('term-b'), keyOpts(remote))];
    const stopS: number[] = [];
    let failed = 0;
    let runs = 0;
    for (const delay of [200, 400]) {
      row.trials += 1;
      const burst = Array.from({ length: 10 }, (_, i) => runWith(vols[i % 2] as string, `echo ${delay}-${i} > /data/term-${delay}-${i}`));
      await new Promise((resolve) => setTimeout(resolve, delay));
      const t0 = performance.now();
      await plugin.stop(); // SIGTERM
      stopS.push(secondsSince(t0));
      await start();
      const results = await Promise.all(burst);
      runs += results.length;
      const bad = results.filter((r) => r.exitCode !== 0);
      failed += bad.length;
      expect(bad.map((r) => r.stderr), 'every run of the burst succeeded').toEqual([]);
      for (let i = 0; i < 10; i++) expect(readFileSync(path.join(remote, `term-${delay}-${i}`), 'utf8')).toBe(`${delay}-${i}\n`);
      row.passed += 1;
    }
    row.figures['runs failed'] = `${failed} of ${runs}`;
    row.figures['SIGTERM -> exited (s)'] = stats(stopS);
    for (const v of vols) await waitFor(`${v} unmounted`, async () => !(await isSshfsMounted(path.join(plugin.mountRoot, v))), 20_000);
  });
});

it('a reference whose Unmount was lost pins nothing: unmounted once no container holds it, and removable', async () => {
  await measured('lost Unmount: volume released, then removable', import.meta.url, async (row) => {
    row.trials = 2;
    // 1. Across a restart (host mode, sshfs survives): the state after dockerd's Unmount hit a dying plugin.
    const { remote, vol, mountpoint } = await markedVolume(res, plugin, 'lost', 'kept\n');
    const sleeper = await startContainer(res, vol);
    expect((await call(plugin, '/VolumeDriver.Mount', { Name: vol, ID: 'unmount-never-came' })).Err).toBe('');
    await killAndRestart();
    expect(await waitReconciled(plugin)).toContain('1 mount(s) adopted');
    expect(await statusOver(plugin, vol)).toMatchObject({ mounted: true, references: 2 });
    await removeContainers(res, [sleeper]);
    const t0 = performance.now();
    await waitFor('the volume to be unmounted although one reference was never released', async () => !(await isSshfsMounted(mountpoint)), 90_000, 500);
    row.figures['last container gone -> unmounted (s)'] = secondsSince(t0);
    await waitFor('its sshfs and ssh to exit', async () => (await sshProcessesMentioning(mountpoint)).length === 0, 20_000);
    expect(await statusOver(plugin, vol)).toMatchObject({ mounted: false, references: 0 });
    row.passed += 1;
    // 2. Without a restart: docker volume rm drops the reference (Docker checked that no container uses the volume).
    const vol2 = await createVolume(res, plugin, uniq('lost-rm'), keyOpts(remote));
    expect((await call(plugin, '/VolumeDriver.Mount', { Name: vol2, ID: 'unmount-never-came' })).Err).toBe('');
    const rm = await docker(['volume', 'rm', vol2]);
    expect(rm.exitCode, describeRun(rm, plugin)).toBe(0);
    res.volumes.delete(vol2);
    expect(await isSshfsMounted(path.join(plugin.mountRoot, vol2))).toBe(false);
    expect(readFileSync(path.join(remote, 'marker'), 'utf8')).toBe('kept\n');
    row.figures['docker volume rm with a lost reference'] = 'removed, remote files kept';
    row.passed += 1;
  });
});
