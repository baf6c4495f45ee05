// Quick sweep of sshfs/ssh option candidates on the host (raw sshfs, no Docker): 256 MiB write, read after a
// remount, and 2000 small files, each the median of REPS runs. Used to choose DEFAULT_SSHFS / DEFAULT_SSH.
import path from 'node:path';
import { DATA_BYTES, elapsedOf, mbps, mountRaw, scripts, sshPipe, unmountRaw } from './data.js';
import type { E2EEnv } from '../lib/e2e-env.js';
import { fmt, log, median, runOk, sh } from './lib.js';

export const CANDIDATES: Array<{ name: string; opts: string[] }> = [
  { name: 'sshfs defaults', opts: [] },
  { name: 'chacha20-poly1305', opts: ['Ciphers=chacha20-poly1305@openssh.com'] },
  { name: 'aes128-gcm', opts: ['Ciphers=aes128-gcm@openssh.com'] },
  { name: 'aes256-gcm', opts: ['Ciphers=aes256-gcm@openssh.com'] },
  { name: 'aes128-gcm max_conns=2', opts: ['Ciphers=aes128-gcm@openssh.com', 'max_conns=2'] },
  { name: 'aes128-gcm max_conns=4', opts: ['Ciphers=aes128-gcm@openssh.com', 'max_conns=4'] },
  { name: 'aes128-gcm max_read/write=64K', opts: ['Ciphers=aes128-gcm@openssh.com', 'max_read=65536', 'max_write=65536'] },
  { name: 'aes128-gcm max_read/write=128K', opts: ['Ciphers=aes128-gcm@openssh.com', 'max_read=131072', 'max_write=131072'] },
  { name: 'aes128-gcm kernel_cache', opts: ['Ciphers=aes128-gcm@openssh.com', 'kernel_cache'] },
  { name: 'aes128-gcm Compression=no cache_timeout=60', opts: ['Ciphers=aes128-gcm@openssh.com', 'Compression=no', 'dcache_timeout=60'] },
];

export async function sweep(env: E2EEnv, work: string, reps: number, candidates = CANDIDATES): Promise<string> {
  const src = path.join(work, 'src', 'rand');
  const remote = path.join(env.keyRemoteDir, 'sweep');
  const mnt = path.join(work, 'sweep-mnt');
  await runOk('install', ['-d', '-o', env.keyUser, '-g', env.keyUser, remote]);
  const rows: string[] = [
    '| candidate (-o …) | write MB/s | read MB/s | 2000 small files s |',
    '|---|---|---|---|',
  ];
  for (const c of candidates) {
    const w: number[] = [];
    const r: number[] = [];
    const s: number[] = [];
    for (let i = 0; i < reps; i++) {
      await sh(`rm -rf ${remote}/big ${remote}/small`);
      await mountRaw(env, remote, mnt, c.opts);
      try {
        w.push(elapsedOf((await sh(scripts.write(src, mnt))).stdout));
        await unmountRaw(mnt);
        await mountRaw(env, remote, mnt, c.opts); // fresh mount: the read cannot come from the page cache
        const out = (await sh(scripts.read(mnt))).stdout;
        if (!out.includes(String(DATA_BYTES))) throw new Error(`read returned the wrong size: ${out}`);
        r.push(elapsedOf(out));
        s.push(elapsedOf((await sh(scripts.small(mnt))).stdout));
      } finally {
        await unmountRaw(mnt);
      }
    }
    const row = `| ${c.name} (${c.opts.join(',') || '-'}) | ${fmt(mbps(median(w)), 0)} | ${fmt(mbps(median(r)), 0)} | ${fmt(median(s), 2)} |`;
    log(row);
    rows.push(row);
  }
  await sh(`cp ${src} ${remote}/big && chown ${env.keyUser}: ${remote}/big`);
  for (const cipher of [undefined, 'aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com']) {
    const p = await sshPipe(env, src, `${remote}/big`, cipher, reps);
    const row = `| ssh pipe ceiling, ${cipher ?? 'ssh default cipher'} | ${fmt(mbps(p.write), 0)} | ${fmt(mbps(p.read), 0)} | - |`;
    log(row);
    rows.push(row);
  }
  await sh(`rm -rf ${remote}`);
  return rows.join('\n');
}
