// A silent host (accepts TCP, never answers), an unroutable address and a closed port: docker run must fail with a
// clear error well inside Docker's 30 s, leaving no sshfs/ssh process, no mount and no mountpoint directory behind.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { freePort, startSilentHost, type SilentHost } from '../../scripts/lib/tcp.js';
import { mountCountAt, sshProcessesMentioning, waitFor } from '../e2e/harness.js';
import { createVolume, measured, runWith, secondsSince, statusOver, uniq, useFaultPlugin } from './lib.js';

let silent: SilentHost;
const { plugin, res, env } = useFaultPlugin({ beforeCleanup: async () => silent?.close() });

beforeAll(async () => {
  silent = await startSilentHost();
});

it('fails Mount of an unreachable or silent host with a clear error well inside 30 s, leaving nothing behind', async () => {
  await measured('silent/unreachable host: Mount fails fast and clean', import.meta.url, async (row) => {
    const cases: { label: string; host: string; port: number; expect: RegExp }[] = [
      { label: 'silent host (accepts, never answers)', host: '127.0.0.1', port: silent.port, expect: /timed out|could not be reached|within/i },
      // TEST-NET-2 (RFC 5737): never routed to a real host; packets vanish or the network says unreachable.
      { label: 'TEST-NET address 198.51.100.1', host: '198.51.100.1', port: 22, expect: /timed out|unreachable|could not be reached|within/i },
      { label: 'closed port', host: '127.0.0.1', port: await freePort(), expect: /Connection refused/i },
    ];
    for (const c of cases) {
      row.trials += 1;
      const vol = await createVolume(res, plugin, uniq('timeout'), {
        sshcmd: `${env.keyUser}@${c.host}:/srv`,
        port: String(c.port),
        IdentityFile: env.keyFile,
      });
      const mountpoint = path.join(plugin.mountRoot, vol);
      const t0 = performance.now();
      const r = await runWith(vol, 'true');
      const seconds = secondsSince(t0);
      const err = r.stderr.replace(/\s+/g, ' ');
      // Processes may need a moment to exit after the failure is reported: wait (bounded), then count.
      await waitFor('processes to exit', async () => (await sshProcessesMentioning(path.join(plugin.stateDir, 'logs', `${vol}.ssh.log`))).length === 0, 15_000).catch(() => undefined);
      const left = (await sshProcessesMentioning(path.join(plugin.stateDir, 'logs', `${vol}.ssh.log`))).length;
      const status = await statusOver(plugin, vol);
      row.figures[`${c.label}: failed after (s)`] = seconds;
      row.figures[`${c.label}: error`] = (err.match(/VolumeDriver\.Mount: (.*)/)?.[1] ?? err).slice(0, 120);
      row.figures[`${c.label}: processes / mounts / dir left`] = `${left} / ${await mountCountAt(mountpoint)} / ${existsSync(mountpoint) ? 1 : 0}`;
      expect(r.exitCode).not.toBe(0);
      expect(err).toMatch(c.expect);
      expect(seconds, 'Mount must fail well inside the 30 s Docker gives a managed plugin').toBeLessThan(30);
      expect(left).toBe(0);
      expect(await mountCountAt(mountpoint)).toBe(0);
      expect(existsSync(mountpoint)).toBe(false);
      expect(status.references).toBe(0);
      expect(status.lastError).toMatch(c.expect);
      row.passed += 1;
    }
  });
});
