// dockerd restarted (stopped with SIGTERM, started again on the same data root) while volumes exist and are in use:
// every volume must still be listed and mountable, counts must be right (dockerd asks Get for every volume at start).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { dockerOk, isSshfsMounted, listVolumes, makeRemoteSubdir, mountCountAt, sshfsMountsUnder, startDockerd, stopDockerd, waitFor } from '../e2e/harness.js';
import {
  createVolume,
  describeRun,
  ensureDockerd,
  markedVolume,
  measured,
  pwOpts,
  removeContainers,
  runWith,
  secondsSince,
  startContainer,
  statusOver,
  uniq,
  useFaultPlugin,
} from './lib.js';

// Whatever happened, leave dockerd running for the next files.
const { plugin, res, env } = useFaultPlugin({ beforeCleanup: ensureDockerd });

const count = (text: string, needle: string): number => text.split(needle).length - 1;

it('keeps every volume listed and mountable across a dockerd restart, with running and restarting containers', async () => {
  await measured('dockerd restarted with volumes in use', import.meta.url, async (row) => {
    row.trials = 1;
    const vols: string[] = [];
    for (let i = 0; i < 5; i++) vols.push((await markedVolume(res, plugin, `dockerd-${i}`, `volume ${i}\n`)).vol);
    const pwRemote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser);
    writeFileSync(path.join(pwRemote, 'marker'), 'volume pw\n');
    vols.push(await createVolume(res, plugin, uniq('dockerd-pw'), pwOpts(pwRemote)));
    const [v0, v1] = vols as [string, string];
    // One plain running container (stopped by the restart) and one --restart=always (started again by dockerd).
    // (--stop-timeout 1: a sleeping PID 1 ignores SIGTERM, and dockerd would wait 10 s for each.)
    const plain = await startContainer(res, v0, 'exec sleep 600', ['--stop-timeout', '1']);
    const always = await startContainer(res, v1, 'exec sleep 600', ['--restart', 'always', '--stop-timeout', '1']);
    expect(await statusOver(plugin, v1)).toMatchObject({ mounted: true, references: 1 });

    const logBefore = plugin.logs().length;
    const t0 = performance.now();
    await stopDockerd();
    const stopS = secondsSince(t0);
    // dockerd stopped its containers and unmounted their volumes on the way down.
    const mountedWhileDown = (await sshfsMountsUnder(plugin.mountRoot)).length;
    const t1 = performance.now();
    await startDockerd();
    await waitFor('all volumes listed again', async () => {
      const listed = await listVolumes(plugin.name);
      return vols.every((v) => listed.includes(v));
    }, 60_000);
    const listS = secondsSince(t1);
    await waitFor('the --restart=always container to run', async () => (await dockerOk(['inspect', '-f', '{{.State.Running}}', always])) === 'true', 60_000);
    const startLog = plugin.logs().slice(logBefore);
    row.figures['dockerd stop (s)'] = stopS;
    row.figures['sshfs mounts while dockerd was down'] = mountedWhileDown;
    row.figures['dockerd start -> all volumes listed (s)'] = listS;
    row.figures['Get calls during dockerd start'] = count(startLog, '/VolumeDriver.Get ');
    row.figures['Gets answered with Err'] = startLog.split('\n').filter((l) => l.includes('/VolumeDriver.Get ') && l.includes('Err:')).length;
    expect(row.figures['Gets answered with Err']).toBe(0);
    // The restarted container holds exactly one reference; the stopped one none.
    expect(await statusOver(plugin, v1)).toMatchObject({ mounted: true, references: 1, mountIDs: 1 });
    expect(await statusOver(plugin, v0)).toMatchObject({ mounted: false, references: 0 });
    expect(await mountCountAt(path.join(plugin.mountRoot, v1))).toBe(1);

    // Every volume mounts and reads after the restart.
    const t2 = performance.now();
    for (const [i, v] of vols.entries()) {
      const r = await runWith(v, 'cat /data/marker');
      expect(r.exitCode, describeRun(r, plugin)).toBe(0);
      expect(r.stdout).toBe(i < 5 ? `volume ${i}` : 'volume pw');
    }
    row.figures['6 volumes mounted one by one after restart (s)'] = secondsSince(t2);
    await removeContainers(res, [plain, always]);
    for (const v of vols) {
      await waitFor(`${v} unmounted`, async () => !(await isSshfsMounted(path.join(plugin.mountRoot, v))), 20_000);
    }
    row.figures['mounts left after containers exit'] = (await sshfsMountsUnder(plugin.mountRoot)).length;
    expect(row.figures['mounts left after containers exit']).toBe(0);
    row.passed = 1;
  });
});
