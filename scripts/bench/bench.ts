// `npm run bench`: measures the plugin in host mode against a real sshd on 127.0.0.1 and an isolated dockerd
// (scripts/e2e-env.sh), prints one table (each figure with its method and target) and writes it to bench-results.md.
// Not a test: it asserts nothing. Run as root. `npm run bench -- --sweep` runs the option sweep instead, `-- --reads`
// the read findings alone (scripts/bench/reads.ts, about a minute), `-- --cold` the cold docker run alone (requests.ts).
//
// Environment: BENCH_SKIP_CONTROL / BENCH_MOUNT_ONLY (=1: skip the control-plane / data sections), BENCH_DIR (default <repo>/.e2e-bench), BENCH_NODE_FLAGS (extra node flags for the plugin, e.g.
// "--max-semi-space-size=1"), BENCH_OUT (default <repo>/bench-results.md), BENCH_REPS (data repetitions, default 3),
// BENCH_COLD_RUNS (rounds of the cold-run rows, default 11), BENCH_BASELINE (with --cold: another build's dist/adapter/main.js, run interleaved).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_READ_AHEAD_KB, DEFAULT_SSH, DEFAULT_SSHFS } from '../../handlers/options.js';
import { DATA_BYTES, elapsedOf, mbps, mountRaw, scripts, SMALL_FILES, sshPipe, unmountRaw } from './data.js';
import { keyUserSshArgs, randomId, readE2EEnv, type E2EEnv } from '../lib/e2e-env.js';
import { startSilentHost } from '../lib/tcp.js';
import {
  docker, dockerOk, fmt, formatSteps, load1, log, logSize, median, medianSteps, mountStepsSince, percentile, type PeerPlugin,
  type Plugin, REPO_ROOT, rssMiB, rssParts, rssWithHelpers, run, runOk, sh, SocketClient, sleep, spawnPlugin, spawnRclone, timeMany, waitActivate,
  waitServing,
} from './lib.js';
import { floorSummary, sshfsFloor } from './floor.js';
import { tracedMount } from './phases.js';
import { handlerMedians, pluginTimes, tracedColdRows, tracedSide } from './requests.js';
import { pipeOnce, readFindings } from './reads.js';
import { sweep } from './sweep.js';

const DIR = process.env.BENCH_DIR || path.join(REPO_ROOT, '.e2e-bench');
const OUT = process.env.BENCH_OUT || path.join(REPO_ROOT, 'bench-results.md');
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter((f) => f !== '');
const REPS = Math.max(1, Math.min(9, Number(process.env.BENCH_REPS ?? 3) || 3));
const E2E_ENV = path.join(REPO_ROOT, 'scripts', 'e2e-env.sh');
const LAT_N = 2000; // requests per latency figure (after 200 warm-up requests)
const COLD_RUNS = Math.max(3, Math.min(51, Number(process.env.BENCH_COLD_RUNS ?? 11) || 11)); // rounds of the interleaved cold-run rows

/** The median of the ratios a[i] / b[i] of runs made side by side: a noisy moment slows both sides of one pair. */
function pairedRatio(a: number[], b: number[]): number {
  return median(a.map((x, i) => x / (b[i] ?? NaN)));
}

interface Row {
  section: string;
  metric: string;
  value: string;
  target?: string;
  met?: boolean;
  method: string;
}
const rows: Row[] = [];
function row(section: string, metric: string, value: string, method: string, target?: string, met?: boolean): void {
  rows.push({ section, metric, value, method, ...(target !== undefined ? { target } : {}), ...(met !== undefined ? { met } : {}) });
  log(`${metric}: ${value}${target !== undefined ? ` (target ${target}: ${met === true ? 'met' : 'MISSED'})` : ''}`);
}

// Everything the run started, stopped in `cleanup` whatever happens.
const plugins: Plugin[] = [];
const peers: PeerPlugin[] = [];
const rawMounts = new Set<string>();
const containers = new Set<string>();
const closers: Array<() => Promise<void>> = [];
let envUp = false;

async function cleanup(): Promise<void> {
  for (const c of closers.splice(0)) await c().catch(() => undefined);
  if (envUp) {
    const env = readE2EEnv(DIR);
    for (const c of containers) await docker(env, ['rm', '-f', c], 60_000).catch(() => undefined);
  }
  for (const m of rawMounts) await unmountRaw(m).catch(() => undefined);
  for (const p of plugins) await p.stop().catch(() => undefined);
  for (const p of peers) await p.stop().catch(() => undefined);
  const down = await run('bash', [E2E_ENV, 'down', DIR], { timeoutMs: 180_000 });
  if (down.exitCode !== 0) log(`e2e-env.sh down failed:\n${down.stderr.slice(-3000)}`);
  // The work data (1000 volume records, the 256 MiB file, docker's data) is not needed any more.
  for (const d of ['work', 'plugins', 'docker-data']) rmSync(path.join(DIR, d), { recursive: true, force: true });
}

/** A percentage with its sign: +12, -1. */
function signed(percent: number): string {
  return `${percent >= 0 ? '+' : ''}${fmt(percent, 0)}`;
}

function latencyRows(section: string, label: string, get: number[], list: number[], target?: string): void {
  const p50g = percentile(get, 50);
  const p50l = percentile(list, 50);
  const met = (p50: number) => (target === undefined ? undefined : p50 <= 0.5);
  row(section, `Get ${label}: p50 / p99 ms`, `${fmt(p50g, 3)} / ${fmt(percentile(get, 99), 3)}`,
    `${LAT_N} sequential POST /VolumeDriver.Get over one keep-alive Unix-socket connection, after 200 warm-up`, target, met(p50g));
  row(section, `List ${label}: p50 / p99 ms`, `${fmt(p50l, 3)} / ${fmt(percentile(list, 99), 3)}`,
    `${LAT_N} sequential POST /VolumeDriver.List, same connection`, target, met(p50l));
}

async function measureGetList(client: SocketClient, names: string[]): Promise<{ get: number[]; list: number[] }> {
  const name = (i: number) => (names.length === 0 ? 'no-such-volume' : (names[(i * 7919) % names.length] ?? 'x'));
  const getOne = (i: number) => client.request('/VolumeDriver.Get', { Name: name(i) });
  const listOne = () => client.request('/VolumeDriver.List', {});
  await timeMany(200, getOne);
  const get = await timeMany(LAT_N, getOne);
  await timeMany(200, listOne);
  const list = await timeMany(LAT_N, listOne);
  return { get, list };
}

function createBody(env: E2EEnv, name: string, port = env.sshPort): unknown {
  return {
    Name: name,
    Opts: { sshcmd: `${env.keyUser}@${env.sshHost}:${env.keyRemoteDir}/cp`, port: String(port), IdentityFile: env.keyFile },
  };
}

async function settleRss(pid: number): Promise<{ rss: number; text: string }> {
  await sleep(2_000);
  const m = rssParts(pid);
  return { rss: m.rss, text: `${fmt(m.rss, 1)} MiB (own ${fmt(m.anon, 1)} + mapped files ${fmt(m.file, 1)})` };
}

const RSS_METHOD = 'VmRSS; "own" is RssAnon, "mapped files" RssFile (mostly pages of the node binary, shared)';

async function controlPlane(env: E2EEnv, pluginName: string): Promise<Plugin> {
  const S = 'control plane';
  let p = spawnPlugin(DIR, pluginName, NODE_FLAGS);
  plugins.push(p);
  await waitServing(p, async (c) => (await c.request('/Plugin.Activate', undefined, 1_000)).status === 200);
  const idle0 = await settleRss(p.pid);
  const bare = spawn(process.execPath, [...NODE_FLAGS, '-e', 'setTimeout(() => {}, 10_000)'], { stdio: 'ignore' });
  const bareRss = await settleRss(bare.pid ?? 0);
  bare.kill();
  row(S, 'RSS of node itself (reference)', bareRss.text, `${RSS_METHOD}, of \`node -e 'setTimeout(…)'\` after 2 s`);
  row(S, 'RSS idle, 0 volumes', idle0.text, `${RSS_METHOD}, of the plugin process 2 s after it answered Activate`, '≤ 45 MB', idle0.rss * 1.048576 <= 45);

  const client = new SocketClient(p.socketPath);
  closers.push(async () => client.close());
  const r0 = await measureGetList(client, []);
  latencyRows(S, '0 volumes', r0.get, r0.list); // with no volume, Get asks for a missing name

  const names = Array.from({ length: 1000 }, (_, i) => `bench-${String(i).padStart(4, '0')}`);
  let createMs = 0;
  const createRange = async (from: number, to: number) => {
    const t = performance.now();
    for (let i = from; i < to; i++) await client.ok('/VolumeDriver.Create', createBody(env, names[i] ?? ''));
    createMs += performance.now() - t;
  };
  await createRange(0, 200);
  const r200 = await measureGetList(client, names.slice(0, 200));
  latencyRows(S, '200 volumes', r200.get, r200.list, '≤ 0.5 ms (p50)');
  await createRange(200, 1000);
  const seqRate = 1000 / (createMs / 1000);
  row(S, 'Creates/s, sequential (1 in flight)', fmt(seqRate, 0),
    '1000 Creates one after another on one connection (key by IdentityFile; each persists the state file)', '≥ 500/s', seqRate >= 500);
  const r1000 = await measureGetList(client, names);
  latencyRows(S, '1000 volumes', r1000.get, r1000.list);

  // Remove all, then create them again with 32 requests in flight (as many CLIs at once would).
  const par = new SocketClient(p.socketPath, 32);
  closers.push(async () => par.close());
  const inFlight = async (fn: (n: string) => Promise<unknown>) => {
    let next = 0;
    const t = performance.now();
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < names.length) await fn(names[next++] ?? '');
    }));
    return performance.now() - t;
  };
  const rmMs = await inFlight((n) => par.ok('/VolumeDriver.Remove', { Name: n }));
  row(S, 'Removes/s, 32 in flight', fmt(1000 / (rmMs / 1000), 0), '1000 Removes, 32 concurrent connections');
  const parMs = await inFlight((n) => par.ok('/VolumeDriver.Create', createBody(env, n)));
  const parRate = 1000 / (parMs / 1000);
  row(S, 'Creates/s, 32 in flight', fmt(parRate, 0), '1000 Creates, 32 concurrent connections (writes coalesce)', '≥ 500/s', parRate >= 500);
  const afterCp = rssMiB(p.pid);
  row(S, 'RSS after the control-plane load', `${fmt(afterCp, 1)} MiB`, 'VmRSS right after the Creates/Removes above');

  // Restart with 1000 volumes in state.
  client.close();
  par.close();
  await p.stop();
  const nodeFloor = median(await timeMany(5, () => runOk(process.execPath, [...NODE_FLAGS, '-e', ''])));
  p = spawnPlugin(DIR, pluginName, NODE_FLAGS);
  plugins.push(p);
  const activateMs = await waitServing(p, async (c) => (await c.request('/Plugin.Activate', undefined, 1_000)).status === 200);
  const c2 = new SocketClient(p.socketPath);
  closers.push(async () => c2.close());
  const first = await c2.request('/VolumeDriver.List', {});
  const listMs = performance.now() - p.spawnedAt;
  const count = (JSON.parse(first.body) as { Volumes: unknown[] }).Volumes.length;
  row(S, 'start to serving, 1000 volumes in state', `${fmt(activateMs, 0)} ms (first List of ${count}: ${fmt(listMs, 0)} ms)`,
    `spawn of node to first answered /Plugin.Activate (socket polled every 2 ms); node -e '' alone takes ${fmt(nodeFloor, 0)} ms here`,
    '< 500 ms', activateMs < 500 && listMs < 500);
  const idle1000 = await settleRss(p.pid);
  row(S, 'RSS idle, 1000 volumes', idle1000.text, `${RSS_METHOD}, 2 s after the restart with 1000 volumes`, '≤ 45 MB', idle1000.rss * 1.048576 <= 45);

  // Head-of-line: Mount of a volume whose server accepts TCP and never speaks, while we List.
  const H = 'head-of-line';
  const silent = await startSilentHost();
  closers.push(() => silent.close());
  await c2.ok('/VolumeDriver.Create', createBody(env, 'bench-hang', silent.port));
  const mountClient = new SocketClient(p.socketPath);
  closers.push(async () => mountClient.close());
  const hungStart = performance.now();
  const hung = mountClient.request('/VolumeDriver.Mount', { Name: 'bench-hang', ID: 'hol' }, 60_000).catch((e: unknown) => e);
  await sleep(500); // sshfs has started and ssh waits for the banner
  const during = await timeMany(300, () => c2.request('/VolumeDriver.List', {}));
  const getDuring = await timeMany(300, (i) => c2.request('/VolumeDriver.Get', { Name: names[i % 1000] }));
  const stillHung = performance.now() - hungStart;
  await silent.close(); // the "server" hangs up: ssh fails, Mount returns
  await hung;
  const p50 = percentile(during, 50);
  const max = Math.max(...during);
  row(H, 'List (1000 volumes) during a hung Mount: p50 / p99 / max ms',
    `${fmt(p50, 3)} / ${fmt(percentile(during, 99), 3)} / ${fmt(max, 3)}`,
    `300 sequential Lists while another volume's Mount waited on a TCP listener that accepts and stays silent (Mount still pending after ${fmt(stillHung / 1000, 1)} s)`,
    '< 50 ms', max < 50);
  row(H, 'Get of another volume during the hung Mount: p50 / p99 ms', `${fmt(percentile(getDuring, 50), 3)} / ${fmt(percentile(getDuring, 99), 3)}`, '300 sequential Gets, same moment');
  await c2.ok('/VolumeDriver.Remove', { Name: 'bench-hang' });
  // Leave a small state for the mount and data sections (the 1000 records are not used by Docker).
  const rm = new SocketClient(p.socketPath, 32);
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < names.length) await rm.ok('/VolumeDriver.Remove', { Name: names[next++] ?? '' });
  }));
  rm.close();
  return p;
}

async function plainPlugin(pluginName: string, extraEnv: Record<string, string> = {}): Promise<Plugin> {
  const p = spawnPlugin(DIR, pluginName, NODE_FLAGS, extraEnv);
  plugins.push(p);
  await waitServing(p, async (c) => (await c.request('/Plugin.Activate', undefined, 1_000)).status === 200);
  return p;
}

async function dockerRunMs(env: E2EEnv, args: string[]): Promise<number> {
  const r = await dockerOk(env, ['run', '--rm', '--network', 'none', ...args]);
  return r.ms;
}

/**
 * Mount and Unmount straight on each plugin's socket, interleaved: the Mount's own cost without Docker's. Our volume's
 * server is logged into (shared login) from the cold rows just before.
 */
async function directMounts(p: Plugin, vol: string, rc: PeerPlugin, rcVol: string) {
  const ours: number[] = [];
  const rcs: number[] = [];
  const oursUnmount: number[] = [];
  const rcUnmount: number[] = [];
  const steps: Array<Record<string, number>> = [];
  const oc = new SocketClient(p.socketPath);
  const rcc = new SocketClient(rc.socketPath);
  try {
    for (let i = 0; i < 7; i++) {
      const id = `bench-direct-${i}-${randomId()}`;
      const mark = logSize(p);
      let t = performance.now();
      await oc.ok('/VolumeDriver.Mount', { Name: vol, ID: id }, 60_000);
      ours.push(performance.now() - t);
      t = performance.now();
      await oc.ok('/VolumeDriver.Unmount', { Name: vol, ID: id }, 60_000);
      oursUnmount.push(performance.now() - t);
      steps.push(...mountStepsSince(p, vol, mark));
      t = performance.now();
      await rcc.ok('/VolumeDriver.Mount', { Name: rcVol, ID: id }, 60_000);
      rcs.push(performance.now() - t);
      t = performance.now();
      await rcc.ok('/VolumeDriver.Unmount', { Name: rcVol, ID: id }, 60_000);
      rcUnmount.push(performance.now() - t);
    }
  } finally {
    oc.close();
    rcc.close();
  }
  return { ours, rc: rcs, oursUnmount, rcUnmount, steps };
}

async function mountAndData(env: E2EEnv, p: Plugin, pluginName: string): Promise<void> {
  const work = path.join(DIR, 'work');
  const rawMnt = path.join(work, 'raw-mnt');
  const srcDir = path.join(work, 'src');
  const src = path.join(srcDir, 'rand');
  mkdirSync(srcDir, { recursive: true });
  await sh(`head -c ${DATA_BYTES} /dev/urandom > ${src}`);
  const remotePlugin = `${env.keyRemoteDir}/plugin`;
  const remoteRaw = `${env.keyRemoteDir}/raw`;
  for (const d of [remotePlugin, remoteRaw]) await runOk('install', ['-d', '-o', env.keyUser, '-g', env.keyUser, d]);
  const vol = `bench-vol-${randomId()}`;
  await dockerOk(env, ['volume', 'create', '-d', pluginName, '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remotePlugin}`,
    '-o', `port=${env.sshPort}`, '-o', `IdentityFile=${env.keyFile}`, vol]);
  // Side by side on the same dockerd and sshd: the plugin as it was before shared logins (SHARED_CONNECTION_IDLE=0,
  // a fresh process, whose idle RSS is also the reference), and rclone's plugin with its sftp backend.
  const offName = `${pluginName}-off`;
  const pOff = spawnPlugin(DIR, offName, NODE_FLAGS, { SHARED_CONNECTION_IDLE: '0' });
  plugins.push(pOff);
  await waitServing(pOff, async (c) => (await c.request('/Plugin.Activate', undefined, 1_000)).status === 200);
  const rc = spawnRclone(DIR, `sshfs-e2e-rclone-${randomId()}`);
  peers.push(rc);
  await waitActivate(rc.socketPath);
  const [oursIdle, rcIdle] = [await settleRss(pOff.pid), await settleRss(rc.pid)];
  const remoteRclone = `${env.keyRemoteDir}/rclone`;
  await runOk('install', ['-d', '-o', env.keyUser, '-g', env.keyUser, remoteRclone]);
  const volOff = `bench-off-${randomId()}`;
  await dockerOk(env, ['volume', 'create', '-d', offName, '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remotePlugin}`,
    '-o', `port=${env.sshPort}`, '-o', `IdentityFile=${env.keyFile}`, volOff]);
  const rcVol = `bench-rclone-${randomId()}`;
  await dockerOk(env, ['volume', 'create', '-d', rc.name, '-o', 'type=sftp', '-o', `sftp-host=${env.sshHost}`, '-o', `sftp-port=${env.sshPort}`,
    '-o', `sftp-user=${env.keyUser}`, '-o', `sftp-key-file=${env.keyFile}`, '-o', `sftp-known-hosts-file=${env.knownHostsFile}`,
    '-o', `path=${remoteRclone}`, rcVol]);
  /** Closes the plugin's shared logins, so that the next Mount is the first login to the server. */
  const closeShared = async () => {
    const dir = path.join(p.stateDir, 'cm');
    if (!existsSync(dir)) return;
    for (const f of readdirSync(dir).filter((n) => !n.endsWith('.log'))) {
      await run('ssh', ['-F', 'none', '-O', 'exit', '-o', `ControlPath=${path.join(dir, f)}`, 'x']);
    }
  };
  await mountRaw(env, remoteRaw, rawMnt);
  rawMounts.add(rawMnt);
  const img = env.image;
  // Raw sshfs (no reconnect) ends, and its mount with it, when its ssh session is killed, e.g. by other tests that
  // share the machine-wide test user; a container would then silently use the empty directory below. Check before use.
  let rawRemounts = 0;
  const ensureRaw = async (mnt = rawMnt) => {
    if ((await sh(`grep -c ' ${mnt} .* - fuse.sshfs ' /proc/self/mountinfo || true`)).stdout.trim() !== '0') return;
    rawRemounts++;
    log('raw sshfs mount was gone (its ssh session ended): mounting it again');
    await mountRaw(env, remoteRaw, mnt);
  };
  /** 7 rounds of a `docker run` on each volume in turn (a bind of the raw mount first); each volume's times. */
  const interleaved7 = async (vols: string[]): Promise<number[][]> => {
    const times = vols.map((): number[] => []);
    for (let i = 0; i < 7; i++) {
      await ensureRaw();
      for (const [j, v] of vols.entries()) times[j]?.push(await dockerRunMs(env, ['-v', `${v}:/data`, img, 'true']));
    }
    return times;
  };

  // --- mount wall time
  const M = 'mount';
  const none: number[] = [];
  const bind: number[] = [];
  const cold: number[] = [];
  const coldFirst: number[] = [];
  const coldOff: number[] = [];
  const coldRc: number[] = [];
  const byHand: number[] = [];
  const handMnt = `${rawMnt}-by-hand`;
  await dockerRunMs(env, [img, 'true']); // warm-up
  for (const v of [vol, volOff, rcVol]) await dockerRunMs(env, ['-v', `${v}:/data`, img, 'true']);
  // The plugin's own breakdown of each Mount (its DEBUG=1 lines, handlers/lifecycle.ts), per kind of cold run.
  const stepsFirst: Array<Record<string, number>> = [];
  const stepsShared: Array<Record<string, number>> = [];
  const unmountShared: Array<Record<string, number>> = [];
  const coldLoad = [load1()];
  for (let i = 0; i < COLD_RUNS; i++) {
    none.push(await dockerRunMs(env, [img, 'true']));
    await ensureRaw();
    bind.push(await dockerRunMs(env, ['-v', `${rawMnt}:/data`, img, 'true']));
    await closeShared();
    let mark = logSize(p);
    coldFirst.push(await dockerRunMs(env, ['-v', `${vol}:/data`, img, 'true'])); // logs in, and keeps the login
    stepsFirst.push(...mountStepsSince(p, vol, mark));
    mark = logSize(p);
    cold.push(await dockerRunMs(env, ['-v', `${vol}:/data`, img, 'true'])); // joins that login
    await sleep(30); // the Unmount's debug line reaches the log
    stepsShared.push(...mountStepsSince(p, vol, mark));
    unmountShared.push(...mountStepsSince(p, vol, mark, 'unmount'));
    coldOff.push(await dockerRunMs(env, ['-v', `${volOff}:/data`, img, 'true']));
    coldRc.push(await dockerRunMs(env, ['-v', `${rcVol}:/data`, img, 'true']));
    // What an operator without the plugin pays per run: mount, run on a bind of it, unmount.
    const t = performance.now();
    rawMounts.add(handMnt);
    await mountRaw(env, remoteRaw, handMnt);
    await dockerRunMs(env, ['-v', `${handMnt}:/data`, img, 'true']);
    await unmountRaw(handMnt);
    rawMounts.delete(handMnt);
    byHand.push(performance.now() - t);
  }
  coldLoad.push(load1());
  // The same cold runs through timing proxies: every request dockerd makes, and where the run's time goes.
  const traced = {
    ours: await tracedSide(DIR, 'plugin', `${pluginName}-traced`, p.socketPath, p),
    rclone: await tracedSide(DIR, 'rclone', `${rc.name}-traced`, rc.socketPath),
  };
  closers.push(() => traced.ours.proxy.close(), () => traced.rclone.proxy.close());
  const direct = await directMounts(p, vol, rc, rcVol);
  const phases = await tracedMount(p, vol, `bench-traced-${randomId()}`);
  const holder = `bench-holder-${randomId()}`;
  containers.add(holder);
  await dockerOk(env, ['run', '-d', '--name', holder, '--network', 'none', '-v', `${vol}:/data`, img, 'sleep', '900']);
  const rcHolder = `bench-rcholder-${randomId()}`;
  containers.add(rcHolder);
  await dockerOk(env, ['run', '-d', '--name', rcHolder, '--network', 'none', '-v', `${rcVol}:/data`, img, 'sleep', '900']);
  const [bind2 = [], warm = [], warmRc = []] = await interleaved7([rawMnt, vol, rcVol]);
  await dockerOk(env, ['rm', '-f', rcHolder]);
  containers.delete(rcHolder);
  // Get on a mounted volume (the path that checks sshfs is still running), while the holder keeps it mounted.
  const gc = new SocketClient(p.socketPath);
  await timeMany(50, () => gc.request('/VolumeDriver.Get', { Name: vol }));
  const getMounted = await timeMany(500, () => gc.request('/VolumeDriver.Get', { Name: vol }));
  gc.close();
  // Get and List side by side (a few volumes each, not mounted), in alternating blocks of 200.
  const oc = new SocketClient(pOff.socketPath);
  const rcc = new SocketClient(rc.socketPath);
  const lat = { ours: { get: [] as number[], list: [] as number[] }, rc: { get: [] as number[], list: [] as number[] } };
  for (let b = 0; b < 6; b++) {
    for (const [c, v, out] of [[oc, volOff, lat.ours], [rcc, rcVol, lat.rc]] as const) {
      const get = await timeMany(200, () => c.request('/VolumeDriver.Get', { Name: v }));
      const list = await timeMany(200, () => c.request('/VolumeDriver.List', {}));
      if (b > 0) { out.get.push(...get); out.list.push(...list); } // the first block warms up
    }
  }
  oc.close();
  rcc.close();
  await dockerOk(env, ['rm', '-f', holder]);
  containers.delete(holder);
  const mb = median(bind);
  const mb2 = median(bind2);
  const runArgs = `docker run --rm --network none -v X:/data ${img} true`;
  row(M, 'docker run, no volume (reference)', `${fmt(median(none), 0)} ms`, `median of ${COLD_RUNS} \`docker run --rm --network none ${img} true\``);
  row(M, 'docker run, bind of a pre-mounted raw sshfs', `${fmt(mb, 0)} ms`, `median of ${COLD_RUNS} \`${runArgs}\`, X = host dir with sshfs mounted`);
  const mc = median(cold);
  const mrc = median(coldRc);
  const vsRc = pairedRatio(cold, coldRc);
  const firstVsOff = pairedRatio(coldFirst, coldOff);
  const paired = `ratios: median over the ${COLD_RUNS} rounds of the ratio of the two runs made in the same round`;
  row(M, 'docker run, rclone volume cold (rclone serve docker, sftp backend)', `${fmt(mrc, 0)} ms (${signed((mrc / median(none) - 1) * 100)} % vs no volume)`,
    `median of ${COLD_RUNS}, X = an rclone volume (\`-o type=sftp\`, same server, key and known_hosts) not mounted before the run; rclone keeps its sftp connection between mounts; interleaved with every cold row`);
  row(M, 'docker run, plugin volume cold, login shared (server logged into within the idle period)', `${fmt(mc, 0)} ms (${fmt(vsRc, 2)}× rclone, ${signed((mc / mb - 1) * 100)} % vs bind)`,
    `median of ${COLD_RUNS}, X = plugin volume not mounted before the run, run right after the row below (whose login it joins); interleaved; ${paired}`, '≤ 1.1× rclone', vsRc <= 1.1);
  row(M, 'docker run, plugin volume cold, first login to the server', `${fmt(median(coldFirst), 0)} ms (${fmt(firstVsOff, 2)}× sharing off)`,
    `median of ${COLD_RUNS}, the shared login closed (\`ssh -O exit\`) before each run: the Mount starts the master, then sshfs joins it; ${paired}`, 'no slower than sharing off (≤ 1.05×)', firstVsOff <= 1.05);
  row(M, 'docker run, plugin volume cold, sharing off (SHARED_CONNECTION_IDLE=0: every Mount logs in, as before)', `${fmt(median(coldOff), 0)} ms (${fmt(pairedRatio(coldOff, coldRc), 2)}× rclone)`,
    `median of ${COLD_RUNS}, a second plugin process with SHARED_CONNECTION_IDLE=0; interleaved; ${paired}`);
  const loadText = `1-min load average ${fmt(coldLoad[0] ?? NaN, 1)} before the cold rows, ${fmt(coldLoad[1] ?? NaN, 1)} after`;
  row(M, 'cold docker run: no volume / rclone / plugin (login shared) / plugin (first login)',
    `${fmt(median(none), 0)} / ${fmt(mrc, 0)} / ${fmt(mc, 0)} / ${fmt(median(coldFirst), 0)} ms (plugin / rclone ${fmt(vsRc, 2)}×; load ${fmt(coldLoad[0] ?? NaN, 1)} → ${fmt(coldLoad[1] ?? NaN, 1)})`,
    `the rows above side by side: medians of ${COLD_RUNS} interleaved rounds after a first login; ${loadText}`, '≤ 1.0× rclone', vsRc <= 1.0);
  row(M, 'Mount breakdown, login shared (plugin\'s own timing, ms)', formatSteps(medianSteps(stepsShared)),
    `median per step over the ${stepsShared.length} Mounts of the \`login shared\` row, from the plugin's debug line (handlers/lifecycle.ts): lock = wait for the volume's lock, store = read the record, state = is it mounted (mountinfo), prepare = options, credentials, mountpoint and ssh log, shared-login = find (or start) the shared ssh login, sshfs = sshfs started until its mount shows in mountinfo (ssh session, SFTP init, mount), check = the fresh-mount check (one bounded stat: FUSE INIT and the server's first SFTP answer), read-ahead = write read_ahead_kb, journal = write the reference`);
  row(M, 'Mount breakdown, first login (plugin\'s own timing, ms)', formatSteps(medianSteps(stepsFirst)),
    `same, over the ${stepsFirst.length} Mounts of the \`first login\` row (shared-login includes the master's ssh login)`);
  row(M, 'Mount request alone: plugin (login shared) / rclone', `${fmt(median(direct.ours), 1)} / ${fmt(median(direct.rc), 1)} ms (${fmt(pairedRatio(direct.ours, direct.rc), 2)}×)`,
    `median of ${direct.ours.length} interleaved POST /VolumeDriver.Mount on each plugin's socket (as dockerd sends it) of a volume not mounted, each followed by its Unmount; the plugin's login to the server shared; plugin steps: ${formatSteps(medianSteps(direct.steps))}`);
  if (phases !== undefined) {
    row(M, 'inside the Mount\'s sshfs step, login shared (one Mount under strace -f, ms)', formatSteps(phases.phases),
      'strace -f -tt on the plugin during one Mount on its socket (strace slows every call: read the shares): exec ssh = sshfs starts ssh; ssh session = until ssh reads the SFTP INIT from sshfs (the session is open over the shared login); SFTP init = until sshfs reads SSH_FXP_VERSION; sshfs root check = until fusermount3 starts; fusermount3 mount; sshfs exit = until the foreground sshfs exits (the Mount\'s sshfs step ends); FUSE INIT reaches the daemon = after that exit, the daemon reads the kernel\'s INIT; first request after INIT = the read-ahead\'s stat (or Docker\'s first access)');
  }
  row(M, 'Unmount request alone (the last reference): plugin / rclone', `${fmt(median(direct.oursUnmount), 1)} / ${fmt(median(direct.rcUnmount), 1)} ms`,
    'the Unmounts of the row above (a `docker run --rm` waits for it too): the plugin saves the released reference and answers; fusermount3 -u and the check that the mount is gone run right after, under the volume\'s lock (not awaited by the answer); rclone unmounts in its own process before it answers');
  row(M, 'Unmount breakdown, last reference (plugin\'s own timing, ms)', formatSteps(medianSteps(unmountShared)),
    `median per step over the ${unmountShared.length} Unmounts of the \`login shared\` row (handlers/lifecycle.ts): journal = the released reference saved (fsync), after which dockerd's Unmount is answered; then, not awaited by the answer: state = is it mounted (mountinfo), fusermount = fusermount3 -u, unmounted = the check that it is gone, rmdir = the empty mountpoint removed`);
  await tracedColdRows(env, img, traced, volumeOpts(env, remotePlugin, remoteRclone), 7, row, load1);
  await floorRow(env, rc, rcVol, median(coldRc));
  row(M, 'sshfs mount + docker run on a bind of it + fusermount -u, by hand', `${fmt(median(byHand), 0)} ms (plugin cold: ${signed((median(cold) / median(byHand) - 1) * 100)} %)`,
    `median of ${COLD_RUNS} (interleaved), timed around the three commands: the cold run without the plugin, so the difference is the plugin's own cost`);
  row(M, 'docker run, plugin volume warm (held by another container)', `${fmt(median(warm), 0)} ms (${signed((median(warm) / mb2 - 1) * 100)} % vs ${fmt(mb2, 0)} ms bind)`,
    'median of 7, X = plugin volume kept mounted by a running container; interleaved with 7 bind runs', '≤ +10 %', median(warm) <= mb2 * 1.1);
  row(M, 'docker run warm: plugin / rclone', `${fmt(median(warm), 0)} / ${fmt(median(warmRc), 0)} ms (${fmt(pairedRatio(warm, warmRc), 2)}×)`,
    'median of 7 each, both volumes kept mounted by a running container; interleaved; the ratio is the median of the 7 paired ratios');
  const q = (a: number[]) => fmt(percentile(a, 50), 3);
  row(M, 'Get / List p50: plugin / rclone (ms)', `${q(lat.ours.get)} / ${q(lat.rc.get)} ; ${q(lat.ours.list)} / ${q(lat.rc.list)}`,
    '1000 sequential Gets and Lists on each plugin\'s socket over one keep-alive connection, alternating blocks of 200 (after a warm-up block), a few unmounted volumes each');
  row('control plane', 'RSS idle: plugin / rclone', `${fmt(oursIdle.rss, 1)} / ${fmt(rcIdle.rss, 1)} MiB`,
    'VmRSS 2 s after each fresh process answered Activate, no volume');
  // A volume that outlives its containers for a while (-o unmount_delay): repeated short runs find it mounted.
  const lingerVol = `bench-linger-${randomId()}`;
  await dockerOk(env, ['volume', 'create', '-d', pluginName, '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remotePlugin}`,
    '-o', `port=${env.sshPort}`, '-o', `IdentityFile=${env.keyFile}`, '-o', 'unmount_delay=600', lingerVol]);
  await dockerRunMs(env, ['-v', `${lingerVol}:/data`, img, 'true']); // the first run mounts
  const [bind3 = [], linger = []] = await interleaved7([rawMnt, lingerVol]);
  await dockerOk(env, ['volume', 'rm', lingerVol]); // unmounts it at once
  const mb3 = median(bind3);

  // The ssh handshake is most of a cold Mount: how much the key exchange (the one default left to ssh) costs.
  const kexDefault: number[] = [];
  const kexCurve: number[] = [];
  for (let i = 0; i < 7; i++) {
    kexDefault.push((await runOk('ssh', [...keyUserSshArgs(env, []), 'true'])).ms);
    kexCurve.push((await runOk('ssh', [...keyUserSshArgs(env, ['-o', 'KexAlgorithms=^curve25519-sha256']), 'true'])).ms);
  }
  row(M, 'docker run, plugin volume with -o unmount_delay=600, run again', `${fmt(median(linger), 0)} ms (${signed((median(linger) / mb3 - 1) * 100)} % vs ${fmt(mb3, 0)} ms bind)`,
    'median of 7 after a first run, each run after the previous container ended: the volume stays mounted between them; interleaved with 7 bind runs',
    '≤ +10 %', median(linger) <= mb3 * 1.1);
  row(M, 'ssh connect: default key exchange / -o KexAlgorithms=^curve25519-sha256', `${fmt(median(kexDefault), 0)} / ${fmt(median(kexCurve), 0)} ms`,
    'median of 7 `ssh host true` each, interleaved; ssh\'s default (OpenSSH ≥ 9: post-quantum sntrup761x25519) is kept, curve25519 is an opt-in');
  row(M, 'Get of a mounted volume: p50 / p99 ms', `${fmt(percentile(getMounted, 50), 3)} / ${fmt(percentile(getMounted, 99), 3)}`,
    '500 sequential Gets while the volume is mounted (reads mountinfo and scans /proc for the sshfs process)');

  if (process.env.BENCH_MOUNT_ONLY) return; // BENCH_MOUNT_ONLY=1 (with BENCH_SKIP_CONTROL=1): the mount rows alone, for quick reruns

  // --- data
  // The baseline is sshfs at its defaults, measured exactly like the plugin's volume (in a container, a fresh mount
  // per run): a second volume whose options undo the plugin's tuning (ssh's own default cipher first). Run on the
  // host instead, the raw mount lost files between the write and the check in this environment (cause not found),
  // so its figures could not be trusted.
  await unmountRaw(rawMnt);
  rawMounts.delete(rawMnt);
  const volDefaults = `bench-defaults-${randomId()}`;
  await dockerOk(env, ['volume', 'create', '-d', pluginName, '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remoteRaw}`,
    '-o', `port=${env.sshPort}`, '-o', `IdentityFile=${env.keyFile}`, '-o', 'Ciphers=chacha20-poly1305@openssh.com', '-o', 'read_ahead_kb=128', volDefaults]);
  const D = 'data';
  const inContainer = async (volArg: string, script: string) =>
    (await dockerOk(env, ['run', '--rm', '--network', 'none', '-v', volArg, '-v', `${srcDir}:/src:ro`, img, 'sh', '-c', script], 600_000)).stdout;
  const clean = (remote: string) => sh(`rm -rf ${remote}/big ${remote}/small`);
  const res = {
    plugin: { w: [] as number[], r: [] as number[], s: [] as number[] },
    raw: { w: [] as number[], r: [] as number[], s: [] as number[] },
    rc: { w: [] as number[], r: [] as number[], s: [] as number[] },
  };
  const loaded = { ours: 0, rc: 0 };
  /** Runs FN while sampling an RSS every 100 ms; keeps the largest. */
  const sampled = async <T>(sample: () => number, fn: () => Promise<T>): Promise<[T, number]> => {
    let max = 0;
    const timer = setInterval(() => { try { max = Math.max(max, sample()); } catch { /* process gone */ } }, 250);
    try {
      return [await fn(), max];
    } finally {
      clearInterval(timer);
    }
  };
  const dataLoad = [load1()];
  // The ssh pipe, measured in every round right before the plugin's runs (a busy moment slows both of a pair).
  const pipes: Array<{ toNull: number; toReader: number; write: number }> = [];
  const remotePipe = `${env.keyRemoteDir}/pipe`;
  await sh(`install -d -o ${env.keyUser} -g ${env.keyUser} ${remotePipe} && cp ${src} ${remotePipe}/big && chown ${env.keyUser}: ${remotePipe}/big`);
  const dataLoadText = () => `1-min load average ${dataLoad.map((l) => fmt(l, 1)).join(' → ')} over the runs`;
  for (let i = 0; i < REPS; i++) {
    // plugin volume: each container run mounts and unmounts it, so the read starts from a fresh mount
    await clean(remotePlugin);
    pipes.push(await pipeOnce(env, `${remotePipe}/big`, src));
    res.plugin.w.push(elapsedOf(await inContainer(`${vol}:/data`, scripts.write('/src/rand', '/data'))));
    const [out, oursRss] = await sampled(() => rssWithHelpers(p.pid, [p.mountRoot, p.stateDir]), () => inContainer(`${vol}:/data`, scripts.read('/data')));
    loaded.ours = Math.max(loaded.ours, oursRss);
    if (!out.includes(String(DATA_BYTES))) throw new Error(`plugin read returned the wrong size: ${out}`);
    res.plugin.r.push(elapsedOf(out));
    res.plugin.s.push(elapsedOf(await inContainer(`${vol}:/data`, scripts.small('/data'))));
    await clean(remoteRaw);
    res.raw.w.push(elapsedOf(await inContainer(`${volDefaults}:/data`, scripts.write('/src/rand', '/data'))));
    const outRaw = await inContainer(`${volDefaults}:/data`, scripts.read('/data'));
    if (!outRaw.includes(String(DATA_BYTES))) throw new Error(`baseline read returned the wrong size: ${outRaw}`);
    res.raw.r.push(elapsedOf(outRaw));
    res.raw.s.push(elapsedOf(await inContainer(`${volDefaults}:/data`, scripts.small('/data'))));
    await clean(remoteRclone);
    res.rc.w.push(elapsedOf(await inContainer(`${rcVol}:/data`, scripts.write('/src/rand', '/data'))));
    const [outRc, rcRss] = await sampled(() => rssMiB(rc.pid), () => inContainer(`${rcVol}:/data`, scripts.read('/data')));
    loaded.rc = Math.max(loaded.rc, rcRss);
    if (!outRc.includes(String(DATA_BYTES))) throw new Error(`rclone read returned the wrong size: ${outRc}`);
    res.rc.r.push(elapsedOf(outRc));
    res.rc.s.push(elapsedOf(await inContainer(`${rcVol}:/data`, scripts.small('/data'))));
    dataLoad.push(load1());
  }
  const cw = mbps(median(res.rc.w));
  const cr = mbps(median(res.rc.r));
  const cs = median(res.rc.s);
  const chosenCipher = DEFAULT_SSH.Ciphers?.replace(/^\^/, '').split(',')[0];
  const pipeDefault = await sshPipe(env, src, `${remoteRaw}/big`, undefined, REPS);
  const pipeChosen = chosenCipher === undefined ? pipeDefault : await sshPipe(env, src, `${remoteRaw}/big`, chosenCipher, REPS);
  const ceilW = Math.max(mbps(pipeDefault.write), mbps(pipeChosen.write));
  const ceilR = Math.max(mbps(pipeDefault.read), mbps(pipeChosen.read));
  const pw = mbps(median(res.plugin.w));
  const pr = mbps(median(res.plugin.r));
  const rw = mbps(median(res.raw.w));
  const rr = mbps(median(res.raw.r));
  const how = `median of ${REPS}, timed inside the container from /proc/uptime (10 ms steps)`;
  row(D, 'sequential write 256 MiB: plugin / sshfs defaults / ratio', `${fmt(pw, 0)} / ${fmt(rw, 0)} MB/s / ${fmt(pw / rw, 2)}×`,
    `${how}: \`dd if=/src/rand of=/data/big bs=1M\` (random bytes), plugin volume vs a volume with sshfs/ssh defaults (\`-o Ciphers=chacha20-poly1305@openssh.com -o read_ahead_kb=128\`: ssh's own first cipher, the kernel's read-ahead), both in containers, same commands`, '≥ 1.2× sshfs defaults', pw >= 1.2 * rw);
  row(D, 'sequential read 256 MiB: plugin / sshfs defaults / ratio', `${fmt(pr, 0)} / ${fmt(rr, 0)} MB/s / ${fmt(pr / rr, 2)}×`,
    `${how}: \`dd if=/data/big of=/dev/null bs=1M\` on a fresh mount (each container run mounts the volume anew)`, '≥ 1.2× sshfs defaults', pr >= 1.2 * rr);
  row(D, 'ssh-pipe ceiling write / read (ssh default cipher)', `${fmt(mbps(pipeDefault.write), 0)} / ${fmt(mbps(pipeDefault.read), 0)} MB/s`,
    `median of ${REPS}: \`cat rand | ssh host 'cat > /dev/null'\` and \`ssh host 'cat big' > /dev/null\` over 127.0.0.1, minus the median \`ssh host true\` (${fmt(pipeDefault.handshake * 1000, 0)} ms)`);
  if (chosenCipher !== undefined) {
    row(D, `ssh-pipe ceiling write / read (-o Ciphers=${chosenCipher})`, `${fmt(mbps(pipeChosen.write), 0)} / ${fmt(mbps(pipeChosen.read), 0)} MB/s`, 'same, with the plugin\'s default cipher');
  }
  row(D, 'plugin write / read as a share of the best ssh-pipe ceiling', `${fmt(pw / ceilW, 2)}× / ${fmt(pr / ceilR, 2)}×`,
    `plugin MB/s divided by the faster of the two ceilings above; ${dataLoadText()}`, '≥ 0.6×', pw >= 0.6 * ceilW && pr >= 0.6 * ceilR);
  const ps = median(res.plugin.s);
  const rs = median(res.raw.s);
  row(D, `create+stat ${SMALL_FILES} small files: plugin / sshfs defaults / speed-up`, `${fmt(ps, 2)} s / ${fmt(rs, 2)} s / ${fmt(rs / ps, 2)}×`,
    `${how}: \`echo $i > f$i\` ×${SMALL_FILES}, then \`[ -s f$i ]\` ×${SMALL_FILES} and \`ls -l\` (shell built-ins, no fork per file)`, '≥ 1.5× sshfs defaults', rs / ps >= 1.5);
  row(D, 'sequential write 256 MiB: plugin / rclone / ratio', `${fmt(pw, 0)} / ${fmt(cw, 0)} MB/s / ${fmt(pw / cw, 2)}×`,
    `${how}, same commands on an rclone volume (its defaults: no VFS cache), interleaved with the plugin's runs`, '≥ 2× rclone', pw >= 2 * cw);
  row(D, 'sequential read 256 MiB: plugin / rclone / ratio', `${fmt(pr, 0)} / ${fmt(cr, 0)} MB/s / ${fmt(pr / cr, 2)}×`,
    `${how}, fresh mount each`, '≥ 2× rclone', pr >= 2 * cr);
  row(D, `create+stat ${SMALL_FILES} small files: plugin / rclone / speed-up`, `${fmt(ps, 2)} s / ${fmt(cs, 2)} s / ${fmt(cs / ps, 2)}×`,
    `${how}, same script`, 'faster than rclone', cs > ps);
  row(D, 'RSS loaded (during the 256 MiB read): plugin with its sshfs + ssh / rclone', `${fmt(loaded.ours, 1)} / ${fmt(loaded.rc, 1)} MiB`,
    'largest VmRSS sampled every 250 ms during the reads: the plugin process plus every process naming its mount root or state dir (sshfs, its ssh, the shared master); rclone is one process');
  await busyVolumes(env, pluginName, offName, remotePlugin, srcDir, img);
  // Why reads trail the pipe: raw sshfs against read-ahead and SFTP request size, CPU per process, the pipe with a reader.
  await sh(`rm -rf ${remotePipe}`);
  const reads = await readFindings(env, work, src, REPS);
  const share = (plugin: number[], pipe: (p: (typeof pipes)[number]) => number) => pairedRatio(pipes.map(pipe), plugin);
  row(D, 'plugin write / read as a share of the ssh pipe, measured in the same rounds (aes128-gcm)',
    `write ${fmt(share(res.plugin.w, (x) => x.write), 2)}×; read ${fmt(share(res.plugin.r, (x) => x.toNull), 2)}× of the pipe to /dev/null, ${fmt(share(res.plugin.r, (x) => x.toReader), 2)}× of the pipe into dd (pipe ${fmt(mbps(median(pipes.map((x) => x.write))), 0)} / ${fmt(mbps(median(pipes.map((x) => x.toNull))), 0)} / ${fmt(mbps(median(pipes.map((x) => x.toReader))), 0)} MB/s)`,
    `median over the ${REPS} rounds of pipe time / plugin time, the pipe measured right before the plugin's runs of that round: \`cat rand | ssh host 'cat > /dev/null'\`, \`ssh host 'cat big' > /dev/null\` (the issue's ceiling: nothing reads the bytes here) and \`ssh host 'cat big' | dd of=/dev/null bs=1M\` (a reader here, as dd reads in the container; the write pipe has its reader on the server); minus one \`ssh host true\` each; ${dataLoadText()}`);
  for (const r of reads.rows) row('reads', r.metric, r.value, r.method);
  if (rawRemounts > 0) row(M, 'raw sshfs mounts lost during the mount runs (re-mounted)', String(rawRemounts), 'its ssh session was ended from outside');
  const masterRss = rssWithHelpers(p.pid, [`ControlPath=${path.join(p.stateDir, 'cm')}`]) - rssMiB(p.pid);
  row('control plane', 'RSS of the idle shared login (the ssh master process)', `${fmt(masterRss, 1)} MiB`,
    'VmRSS of the plugin\'s ssh master(s) kept open for the idle period, outside the plugin process');
  await dockerOk(env, ['volume', 'rm', vol]);
  await dockerOk(env, ['volume', 'rm', volDefaults]);
  await dockerOk(env, ['volume', 'rm', volOff]);
  await dockerOk(env, ['volume', 'rm', rcVol]);
  const after = await settleRss(p.pid);
  row('control plane', 'RSS after the whole run', after.text, `${RSS_METHOD}, 2 s after the data section`, '≤ 45 MB', after.rss * 1.048576 <= 45);
}

/** The -o options of the plugin's and of rclone's bench volumes on REMOTE dirs of the test sshd. */
function volumeOpts(env: E2EEnv, remotePlugin: string, remoteRclone: string): { ours: string[]; rclone: string[] } {
  return {
    ours: [`sshcmd=${env.keyUser}@${env.sshHost}:${remotePlugin}`, `port=${env.sshPort}`, `IdentityFile=${env.keyFile}`],
    rclone: ['type=sftp', `sftp-host=${env.sshHost}`, `sftp-port=${env.sshPort}`, `sftp-user=${env.keyUser}`, `sftp-key-file=${env.keyFile}`,
      `sftp-known-hosts-file=${env.knownHostsFile}`, `path=${remoteRclone}`],
  };
}

/** The floor of a cold Mount + Unmount with an sshfs per mount (floor.ts), against rclone's, in the same rounds. */
async function floorRow(env: E2EEnv, rc: PeerPlugin, rcVol: string, rcloneRunMs: number): Promise<void> {
  const before = load1();
  const f = floorSummary(await sshfsFloor(env, DIR, rc, rcVol, COLD_RUNS), fmt);
  row('mount', 'the least a cold Mount + Unmount costs with one sshfs per mount, against rclone\'s',
    `${f.value} (${fmt((f.gapMs / rcloneRunMs) * 100, 1)} % of rclone's cold run; load ${fmt(before, 1)} → ${fmt(load1(), 1)})`,
    `medians of ${COLD_RUNS} interleaved rounds (scripts/bench/floor.ts): a bare \`sshfs -f\` with the plugin's default options over an ssh ControlMaster already logged in, started with spawn, until a stat of the mountpoint is answered by the new mount (FUSE INIT and sshfs's first SFTP answer, what the plugin's fresh-mount check waits for), and a bare \`fusermount3 -u\`; against rclone's Mount and Unmount requests straight on its socket (in-process, over the SFTP session it keeps). No plugin code runs on the sshfs side: this much of the cold run's difference stays whatever the plugin does, short of keeping mounts or sessions open between runs`);
}

/**
 * `npm run bench -- --cold` (a minute or two): the cold docker run alone, plugin (login shared) against rclone and no
 * volume, interleaved, with the Mount and Unmount breakdowns and the requests dockerd makes (through timing proxies).
 */
async function coldOnly(env: E2EEnv): Promise<void> {
  const pluginName = `sshfs-e2e-bench-${randomId()}`;
  const p = await plainPlugin(pluginName, { DEBUG: '1' });
  const rc = spawnRclone(DIR, `sshfs-e2e-rclone-${randomId()}`);
  peers.push(rc);
  await waitActivate(rc.socketPath);
  const remotePlugin = `${env.keyRemoteDir}/plugin`;
  const remoteRclone = `${env.keyRemoteDir}/rclone`;
  for (const d of [remotePlugin, remoteRclone]) await runOk('install', ['-d', '-o', env.keyUser, '-g', env.keyUser, d]);
  const opts = volumeOpts(env, remotePlugin, remoteRclone);
  const vol = `bench-vol-${randomId()}`;
  const rcVol = `bench-rclone-${randomId()}`;
  await dockerOk(env, ['volume', 'create', '-d', pluginName, ...opts.ours.flatMap((o) => ['-o', o]), vol]);
  await dockerOk(env, ['volume', 'create', '-d', rc.name, ...opts.rclone.flatMap((o) => ['-o', o]), rcVol]);
  const img = env.image;
  await dockerRunMs(env, [img, 'true']);
  for (const v of [vol, rcVol]) await dockerRunMs(env, ['-v', `${v}:/data`, img, 'true']); // first login, rclone's connection
  // BENCH_BASELINE=<another checkout>/dist/adapter/main.js: that build too, interleaved (a before/after at one load).
  const baselineEntry = process.env.BENCH_BASELINE;
  let baseVol: string | undefined;
  let baseline: Plugin | undefined;
  const handlers = { ours: [] as Array<Array<[string, number]>>, base: [] as Array<Array<[string, number]>> };
  const baseSteps: Array<Record<string, number>> = [];
  if (baselineEntry !== undefined && baselineEntry !== '') {
    const baseName = `sshfs-e2e-base-${randomId()}`; // no longer than the plugin's: a longer state path leaves no room for ssh control sockets
    const b = spawnPlugin(DIR, baseName, NODE_FLAGS, { DEBUG: '1' }, path.resolve(baselineEntry));
    baseline = b;
    plugins.push(b);
    await waitServing(b, async (c) => (await c.request('/Plugin.Activate', undefined, 1_000)).status === 200);
    baseVol = `bench-base-${randomId()}`;
    await dockerOk(env, ['volume', 'create', '-d', baseName, ...opts.ours.flatMap((o) => ['-o', o]), baseVol]);
    await dockerRunMs(env, ['-v', `${baseVol}:/data`, img, 'true']);
  }
  const base: number[] = [];
  const none: number[] = [];
  const ours: number[] = [];
  const rcs: number[] = [];
  const mountSteps: Array<Record<string, number>> = [];
  const unmountSteps: Array<Record<string, number>> = [];
  const loads = [load1()];
  for (let i = 0; i < COLD_RUNS; i++) {
    none.push(await dockerRunMs(env, [img, 'true']));
    rcs.push(await dockerRunMs(env, ['-v', `${rcVol}:/data`, img, 'true']));
    const mark = logSize(p);
    ours.push(await dockerRunMs(env, ['-v', `${vol}:/data`, img, 'true']));
    await sleep(30); // the Unmount's debug line reaches the log
    mountSteps.push(...mountStepsSince(p, vol, mark));
    unmountSteps.push(...mountStepsSince(p, vol, mark, 'unmount'));
    handlers.ours.push(pluginTimes(p, vol, mark));
    if (baseVol !== undefined && baseline !== undefined) {
      const at = logSize(baseline);
      base.push(await dockerRunMs(env, ['-v', `${baseVol}:/data`, img, 'true']));
      await sleep(30);
      handlers.base.push(pluginTimes(baseline, baseVol, at));
      baseSteps.push(...mountStepsSince(baseline, baseVol, at));
    }
  }
  loads.push(load1());
  if (baseVol !== undefined) {
    row('mount', 'cold docker run: baseline build (BENCH_BASELINE) / this build / rclone',
      `${fmt(median(base), 0)} / ${fmt(median(ours), 0)} / ${fmt(median(rcs), 0)} ms (this / baseline ${fmt(pairedRatio(ours, base), 3)}×, baseline / rclone ${fmt(pairedRatio(base, rcs), 2)}×)`,
      `${baselineEntry ?? ''}, interleaved in the same ${COLD_RUNS} rounds (login shared for both)`);
    row('mount', 'plugin\'s time per request (its handler, ms): baseline build / this build', `${handlerMedians(handlers.base)} / ${handlerMedians(handlers.ours)}`,
      'medians over the same runs, from each plugin\'s debug line per request (DEBUG=1 for both); Get (mounted) = dockerd\'s Get right before the Unmount');
    row('mount', 'Mount breakdown, baseline build (ms)', formatSteps(medianSteps(baseSteps)), 'same runs, the baseline\'s own debug line');
    await dockerOk(env, ['volume', 'rm', baseVol]);
  }
  const M = 'mount';
  const ratio = pairedRatio(ours, rcs);
  row(M, 'cold docker run: no volume / rclone / plugin (login shared)',
    `${fmt(median(none), 0)} / ${fmt(median(rcs), 0)} / ${fmt(median(ours), 0)} ms (plugin / rclone ${fmt(ratio, 2)}×; load ${fmt(loads[0] ?? NaN, 1)} → ${fmt(loads[1] ?? NaN, 1)})`,
    `medians of ${COLD_RUNS} interleaved rounds of \`docker run --rm --network none -v X:/data busybox true\` after a first login; the ratio is the median of the ${COLD_RUNS} paired ratios; 1-min load average before → after`,
    '≤ 1.0× rclone', ratio <= 1.0);
  row(M, 'Mount breakdown, login shared (plugin\'s own timing, ms)', formatSteps(medianSteps(mountSteps)), `median per step over the ${mountSteps.length} Mounts above (handlers/lifecycle.ts)`);
  row(M, 'Unmount breakdown (plugin\'s own timing, ms)', formatSteps(medianSteps(unmountSteps)),
    `median per step over the ${unmountSteps.length} Unmounts above: journal = the reference released and saved (fsync), after which dockerd's Unmount is answered; then, not awaited by the answer: state = is it mounted (mountinfo), fusermount = fusermount3 -u, unmounted = the check that it is gone, rmdir = the empty mountpoint removed`);
  const sides = {
    ours: await tracedSide(DIR, 'plugin', `${pluginName}-traced`, p.socketPath, p),
    rclone: await tracedSide(DIR, 'rclone', `${rc.name}-traced`, rc.socketPath),
  };
  closers.push(() => sides.ours.proxy.close(), () => sides.rclone.proxy.close());
  await tracedColdRows(env, img, sides, opts, COLD_RUNS, row, load1);
  await floorRow(env, rc, rcVol, median(rcs));
  for (const v of [vol, rcVol]) await dockerOk(env, ['volume', 'rm', v]);
}

/**
 * Several busy volumes of one server: 3 containers reading (then writing) 256 MiB at once through 3 volumes with the
 * same credentials: sharing one login (one TCP stream, one ssh process) against separate logins (SHARED_CONNECTION_IDLE=0).
 */
async function busyVolumes(env: E2EEnv, pluginName: string, offName: string, remote: string, srcDir: string, img: string): Promise<void> {
  const N = 3;
  const make = async (driver: string, tag: string) => {
    const names: string[] = [];
    for (let i = 0; i < N; i++) {
      const v = `bench-busy-${tag}-${i}-${randomId()}`;
      await dockerOk(env, ['volume', 'create', '-d', driver, '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remote}`,
        '-o', `port=${env.sshPort}`, '-o', `IdentityFile=${env.keyFile}`, v]);
      names.push(v);
    }
    return names;
  };
  const shared = await make(pluginName, 's');
  const separate = await make(offName, 'o');
  const allAtOnce = async (vols: string[], script: (i: number) => string) => {
    const t = performance.now();
    await Promise.all(vols.map((v, i) => dockerOk(env, ['run', '--rm', '--network', 'none', '-v', `${v}:/data`, '-v', `${srcDir}:/src:ro`, img, 'sh', '-c', script(i)], 600_000)));
    return (performance.now() - t) / 1000;
  };
  const read = (_: number) => 'dd if=/data/big of=/dev/null bs=1M 2>/dev/null';
  const write = (i: number) => `dd if=/src/rand of=/data/busy${i} bs=1M 2>/dev/null`;
  const r = { shared: [] as number[], separate: [] as number[] };
  const w = { shared: [] as number[], separate: [] as number[] };
  for (let i = 0; i < Math.max(2, REPS); i++) {
    r.shared.push(await allAtOnce(shared, read));
    r.separate.push(await allAtOnce(separate, read));
    w.shared.push(await allAtOnce(shared, write));
    w.separate.push(await allAtOnce(separate, write));
  }
  await sh(`rm -f ${remote}/busy*`);
  const agg = (secs: number[]) => (N * DATA_BYTES) / 1e6 / median(secs);
  const [rs, ro, ws, wo] = [agg(r.shared), agg(r.separate), agg(w.shared), agg(w.separate)];
  const how = `median of ${Math.max(2, REPS)} (interleaved), wall time from starting ${N} containers at once to the last one ending (container start included), ${N} × 256 MiB`;
  row('data', `${N} volumes of one server reading at once: shared login / separate logins`, `${fmt(rs, 0)} / ${fmt(ro, 0)} MB/s total (${fmt(rs / ro, 2)}×)`,
    `${how}: \`dd if=/data/big of=/dev/null bs=1M\` in each`, '≥ 0.95× separate', rs >= 0.95 * ro);
  row('data', `${N} volumes of one server writing at once: shared login / separate logins`, `${fmt(ws, 0)} / ${fmt(wo, 0)} MB/s total (${fmt(ws / wo, 2)}×)`,
    `${how}: \`dd if=/src/rand of=/data/busyN bs=1M\` in each`, '≥ 0.95× separate', ws >= 0.95 * wo);
  for (const v of [...shared, ...separate]) await dockerOk(env, ['volume', 'rm', v]);
}

function table(): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = ['| section | figure | measured | target | met | method |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.section} | ${esc(r.metric)} | ${esc(r.value)} | ${esc(r.target ?? '')} | ${r.met === undefined ? '' : r.met ? 'yes' : 'no'} | ${esc(r.method)} |`);
  }
  return lines.join('\n');
}

async function header(): Promise<string> {
  const ver = async (cmd: string, args: string[], want = '') => {
    const r = await run(cmd, args);
    return `${r.stdout}\n${r.stderr}`.split('\n').find((l) => l.trim() !== '' && l.includes(want))?.trim() ?? '?';
  };
  const defaults = [
    ...Object.entries(DEFAULT_SSHFS).map(([k, v]) => (v === '' ? k : `${k}=${v}`)),
    ...Object.entries(DEFAULT_SSH).map(([k, v]) => `${k}=${v}`),
    `read_ahead_kb=${DEFAULT_READ_AHEAD_KB}`,
  ].join(' ');
  return [
    `Measured ${new Date().toISOString()} on ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, Linux ${os.release()}, node ${process.version}` +
      `${NODE_FLAGS.length > 0 ? ` (plugin run with ${NODE_FLAGS.join(' ')})` : ''}, ${await ver('sshfs', ['--version'], 'SSHFS')}, ${await ver('ssh', ['-V'])}, ${await ver('rclone', ['version'], 'rclone')}.`,
    `The plugin runs in host mode (\`node dist/adapter/main.js\`; DEBUG=0 for the control plane, DEBUG=1 from the mount section on, for its Mount breakdown) against sshd and dockerd on 127.0.0.1 (scripts/e2e-env.sh). 1-min load average at the start ${fmt(startLoad, 1)}, at the end ${fmt(load1(), 1)}.`,
    `Plugin defaults in this run: \`${defaults}\`, shared logins kept ${process.env.SHARED_CONNECTION_IDLE ?? 300} s (SHARED_CONNECTION_IDLE). rclone's plugin (\`rclone serve docker\`, sftp backend, its defaults) runs beside it on the same dockerd and sshd; its rows are interleaved with the plugin's. The mount section's raw sshfs (on the host, bind-mounted) uses only what it needs to log in plus allow_other; the data section's baseline is a volume with sshfs/ssh defaults (ssh's default cipher, the kernel's 128 KiB read-ahead).`,
  ].join('\n');
}

const startLoad = load1();

const BEGIN = '<!-- bench:begin (written by npm run bench) -->';
const END = '<!-- bench:end -->';

/** Writes the run into OUT between its markers, keeping the findings written around them; the whole file when it has none. */
function writeResults(text: string): void {
  const old = existsSync(OUT) ? readFileSync(OUT, 'utf8') : '';
  const [b, e] = [old.indexOf(BEGIN), old.indexOf(END)];
  if (b >= 0 && e > b) writeFileSync(OUT, `${old.slice(0, b + BEGIN.length)}\n${text}${old.slice(e)}`);
  else writeFileSync(OUT, `# Benchmark results (\`npm run bench\`)\n\n${BEGIN}\n${text}${END}\n`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: dockerd, FUSE and the test users need it');
  const onSignal = (s: string) => {
    log(`${s}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  const started = performance.now();
  try {
    log(`starting dockerd + sshd in ${DIR}`);
    envUp = true;
    await runOk('bash', [E2E_ENV, 'up', DIR], { timeoutMs: 300_000 });
    // rclone's Docker plugin (`rclone serve docker`) is measured side by side.
    await runOk('bash', [path.join(REPO_ROOT, 'scripts', 'install-system-deps.sh'), 'rclone'], { timeoutMs: 300_000 });
    const env = readE2EEnv(DIR);
    if (process.argv.includes('--reads')) {
      // The read findings alone (about a minute): raw sshfs reads against read-ahead and SFTP request size.
      const work = path.join(DIR, 'work');
      mkdirSync(path.join(work, 'src'), { recursive: true });
      await sh(`head -c ${DATA_BYTES} /dev/urandom > ${path.join(work, 'src', 'rand')}`);
      const f = await readFindings(env, work, path.join(work, 'src', 'rand'), REPS);
      for (const r of f.rows) row('reads', r.metric, r.value, r.method);
      process.stdout.write(`\n${table()}\n`);
      return;
    }
    if (process.argv.includes('--cold')) {
      await coldOnly(env);
      process.stdout.write(`\n${await header()}\n\n${table()}\n\nTotal benchmark time ${fmt((performance.now() - started) / 1000, 0)} s.\n`);
      return;
    }
    if (process.argv.includes('--sweep')) {
      mkdirSync(path.join(DIR, 'work', 'src'), { recursive: true });
      await sh(`head -c ${DATA_BYTES} /dev/urandom > ${path.join(DIR, 'work', 'src', 'rand')}`);
      const text = await sweep(env, path.join(DIR, 'work'), REPS);
      process.stdout.write(`${text}\n`);
      return;
    }
    const pluginName = `sshfs-e2e-bench-${randomId()}`;
    // BENCH_SKIP_CONTROL=1 measures the mount and data sections only (quicker, when tuning the data path).
    const first = process.env.BENCH_SKIP_CONTROL ? await plainPlugin(pluginName) : await controlPlane(env, pluginName);
    // The mount and data sections read the plugin's Mount breakdown, a debug line: the same plugin (same state) with DEBUG=1.
    await first.stop();
    const p = await plainPlugin(pluginName, { DEBUG: '1' });
    await mountAndData(env, p, pluginName);
    const text = `${await header()}\n\n${table()}\n\nTotal benchmark time ${fmt((performance.now() - started) / 1000, 0)} s.\n`;
    process.stdout.write(`\n${text}`);
    writeResults(text);
    log(`written to ${OUT}`);
  } catch (error) {
    // Keep what was measured: the table so far, marked incomplete.
    const text = `${await header()}\n\n${table()}\n\nINCOMPLETE RUN: ${error instanceof Error ? error.message.slice(0, 600) : String(error)}\n`;
    process.stdout.write(`\n${text}`);
    writeResults(text);
    throw error;
  } finally {
    await cleanup();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
