// Load and concurrency: 50 containers starting at once on one volume; a burst of Mounts/Unmounts on one volume over
// the socket (serialized per volume); a hanging mount of one volume must not delay List, Get or another volume's Mount.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { startSilentHost, type SilentHost } from '../../scripts/lib/tcp.js';
import { docker, isSshfsMounted, listVolumes, makeRemoteSubdir, mountCountAt, randomId, sshProcessesMentioning, waitFor } from '../e2e/harness.js';
import {
  call,
  createVolume,
  describeRun,
  keyOpts,
  measured,
  removeContainers,
  round,
  runWith,
  secondsSince,
  stats,
  statusOver,
  uniq,
  useFaultPlugin,
} from './lib.js';

let silent: SilentHost | undefined;
const { plugin, res, env } = useFaultPlugin({ beforeCleanup: async () => silent?.close() });

const sshfsCount = async (mountpoint: string) => (await sshProcessesMentioning(mountpoint)).filter((p) => p.comm === 'sshfs').length;

it('starts 50 containers at once on one volume: one sshfs, 50 references, zero mounts after they exit', async () => {
  await measured('50 containers at once on one volume', import.meta.url, async (row) => {
    const N = 50;
    row.trials = N;
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('fifty'), keyOpts(remote));
    const mountpoint = path.join(plugin.mountRoot, vol);
    const names = Array.from({ length: N }, (_, i) => res.container(`fault-fifty-${i}-${randomId()}`));
    let maxSshfs = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxSshfs = Math.max(maxSshfs, await sshfsCount(mountpoint));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const t0 = performance.now();
    const runs = await Promise.all(
      names.map((name, i) =>
        docker(['run', '-d', '--name', name, '--network', 'none', '--stop-timeout', '1', '-v', `${vol}:/data`, env.image, 'sh', '-c', `echo ${i} > /data/c${i} && exec sleep 600`]),
      ),
    );
    const startS = secondsSince(t0);
    const failed = runs.filter((r) => r.exitCode !== 0);
    row.passed = N - failed.length;
    expect(failed.map((r) => r.stderr)).toEqual([]);
    await waitFor('every container to write its file', () => readdirSync(remote).filter((f) => /^c[0-9]+$/.test(f)).length === N, 60_000);
    sampling = false;
    await sampler;
    const status = await statusOver(plugin, vol);
    row.figures['start 50 (s)'] = startS;
    row.figures['sshfs processes (max seen)'] = Math.max(maxSshfs, await sshfsCount(mountpoint));
    row.figures['mounts on the mountpoint'] = await mountCountAt(mountpoint);
    row.figures['references / mount IDs'] = `${status.references} / ${status.mountIDs}`;
    expect(status).toMatchObject({ mounted: true, references: N, mountIDs: N });
    expect(row.figures['sshfs processes (max seen)']).toBe(1);
    expect(row.figures['mounts on the mountpoint']).toBe(1);

    const t1 = performance.now();
    await removeContainers(res, names);
    await waitFor('the volume to be unmounted', async () => !(await isSshfsMounted(mountpoint)), 60_000);
    row.figures['remove 50 -> unmounted (s)'] = secondsSince(t1);
    const after = await statusOver(plugin, vol);
    row.figures['mounts / references after all exit'] = `${await mountCountAt(mountpoint)} / ${after.references}`;
    expect(after).toMatchObject({ mounted: false, references: 0 });
    expect(await mountCountAt(mountpoint)).toBe(0);
  });
});

it('serializes a burst of 40 concurrent Mounts and Unmounts on one volume over the socket', async () => {
  await measured('burst of 40 Mounts then 40 Unmounts on one volume (socket)', import.meta.url, async (row) => {
    const N = 40;
    row.trials = 2;
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('burst'), keyOpts(remote));
    const mountpoint = path.join(plugin.mountRoot, vol);
    // Half the IDs twice (as docker cp repeats an ID): 40 Mounts on 20 IDs.
    const ids = Array.from({ length: N }, (_, i) => `burst-${i % (N / 2)}`);
    const t0 = performance.now();
    const mounts = await Promise.all(ids.map((ID) => call(plugin, '/VolumeDriver.Mount', { Name: vol, ID })));
    row.figures['40 Mounts answered (s)'] = secondsSince(t0);
    expect(mounts.filter((m) => m.Err !== '').map((m) => m.Err)).toEqual([]);
    expect(await statusOver(plugin, vol)).toMatchObject({ mounted: true, references: N, mountIDs: N / 2 });
    row.figures['sshfs / mounts after Mounts'] = `${await sshfsCount(mountpoint)} / ${await mountCountAt(mountpoint)}`;
    expect(await sshfsCount(mountpoint)).toBe(1);
    expect(await mountCountAt(mountpoint)).toBe(1);
    row.passed += 1;
    const unmounts = await Promise.all(ids.map((ID) => call(plugin, '/VolumeDriver.Unmount', { Name: vol, ID })));
    expect(unmounts.filter((m) => m.Err !== '').map((m) => m.Err)).toEqual([]);
    expect(await statusOver(plugin, vol)).toMatchObject({ mounted: false, references: 0 });
    row.figures['sshfs / mounts after Unmounts'] = `${await sshfsCount(mountpoint)} / ${await mountCountAt(mountpoint)}`;
    expect(await mountCountAt(mountpoint)).toBe(0);
    row.passed += 1;
  });
});

it('a hanging mount of one volume delays neither List, Get nor another volume', async () => {
  await measured('hanging mount does not delay List/Get/other volumes', import.meta.url, async (row) => {
    silent = await startSilentHost();
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const good = await createVolume(res, plugin, uniq('good'), keyOpts(remote));
    const hung = await createVolume(res, plugin, uniq('hung'), { ...keyOpts('/srv'), port: String(silent.port) });
    // The hanging Mount, straight to the socket (its own timing), and a docker run on it (what users do).
    let hungDone = false;
    const t0 = performance.now();
    const hungMount = call(plugin, '/VolumeDriver.Mount', { Name: hung, ID: 'hang-1' }).finally(() => {
      hungDone = true;
    });
    const hungRun = runWith(hung, 'true');
    await waitFor('the silent host to get the connection', () => silent !== undefined && silent.accepted() >= 1, 10_000, 20);

    const latency: Record<string, number[]> = { List: [], 'Get (other)': [], 'Get (hanging one)': [], 'Mount+Unmount (other)': [] };
    let rounds = 0;
    let allBeforeHangEnded = true;
    for (let i = 0; i < 3; i++) {
      row.trials += 1;
      const list = await call(plugin, '/VolumeDriver.List', {});
      latency.List?.push(list.ms);
      const g = await call(plugin, '/VolumeDriver.Get', { Name: good });
      latency['Get (other)']?.push(g.ms);
      const gh = await call(plugin, '/VolumeDriver.Get', { Name: hung });
      latency['Get (hanging one)']?.push(gh.ms);
      const m = await call(plugin, '/VolumeDriver.Mount', { Name: good, ID: `other-${i}` });
      const u = await call(plugin, '/VolumeDriver.Unmount', { Name: good, ID: `other-${i}` });
      latency['Mount+Unmount (other)']?.push(m.ms + u.ms);
      const ok = list.Err === '' && g.Err === '' && gh.Err === '' && m.Err === '' && u.Err === '';
      if (ok && !hungDone) row.passed += 1;
      if (hungDone) allBeforeHangEnded = false;
      rounds += 1;
    }
    // The same through dockerd, while the hang lasts: docker volume ls and a container on the other volume.
    const t1 = performance.now();
    const ls = await listVolumes(plugin.name);
    const lsS = secondsSince(t1);
    const t2 = performance.now();
    const other = await runWith(good, 'true');
    const otherRunS = secondsSince(t2);
    const stillHanging = !hungDone;
    const hungResult = await hungMount;
    const hungS = secondsSince(t0);
    const hungRunResult = await hungRun;

    for (const [k, v] of Object.entries(latency)) row.figures[`${k} during the hang (ms)`] = stats(v.map((x) => round(x, 1)));
    row.figures['docker volume ls during the hang (s)'] = lsS;
    row.figures['docker run on the other volume during the hang (s)'] = `${otherRunS}${stillHanging ? '' : ' (hang had ended)'}`;
    row.figures['hanging Mount failed after (s)'] = hungS;
    row.figures['its error'] = hungResult.Err.slice(0, 110);
    expect(allBeforeHangEnded, `the ${rounds} rounds ran while the hanging Mount was pending`).toBe(true);
    expect(ls).toContain(good);
    expect(other.exitCode, describeRun(other, plugin)).toBe(0);
    expect(hungResult.Err).not.toBe('');
    expect(hungRunResult.exitCode).not.toBe(0);
    await waitFor('no process left for the hanging volume', async () => (await sshProcessesMentioning(path.join(plugin.mountRoot, hung))).length === 0, 20_000);
  });
});
