// What dockerd asks a volume plugin during one cold `docker run --rm -v VOL:/data busybox true`, and where the run's
// time goes: each plugin is also reached through a timing proxy under a second driver name (trace-proxy.ts), so every
// request's latency as dockerd sees it is known, beside the plugin's own view (its debug line per request) and the
// stretches of the run between the requests (container create and start before the Mount, the container's run between
// Mount and Unmount, the removal and the CLI's exit after the Unmount).
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { E2EEnv } from '../lib/e2e-env.js';
import { PLUGIN_SOCKET_DIR } from '../lib/legacy-plugin.js';
import { dockerOk, fmt, log, logSize, sleep, median, mountStepsSince, type Plugin } from './lib.js';
import { startTraceProxy, type TraceProxy, type TracedRequest } from './trace-proxy.js';

export interface TracedSide {
  label: string;
  /** The driver name dockerd uses to reach the proxy. */
  driver: string;
  proxy: TraceProxy;
  /** The plugin behind it when it is ours (its debug log gives the plugin's own view). */
  plugin?: Plugin;
}

export interface RunTrace {
  total: number;
  /** Requests during the run, their times relative to the run's start. */
  requests: Array<{ endpoint: string; start: number; ms: number; connection: number }>;
  /** The plugin's own time per request (its debug line), by endpoint, in order. */
  pluginMs: Array<[string, number]>;
  unmountSteps: Array<Record<string, number>>;
  mountSteps: Array<Record<string, number>>;
}

/**
 * A proxy named DRIVER in /run/docker/plugins in front of SOCKET. DRIVER starts with sshfs-e2e- and gets a directory
 * under BENCH_DIR/plugins, so that `e2e-env.sh down` removes its socket should the bench be killed.
 */
export async function tracedSide(benchDir: string, label: string, driver: string, socket: string, plugin?: Plugin): Promise<TracedSide> {
  mkdirSync(path.join(benchDir, 'plugins', driver), { recursive: true });
  const proxy = await startTraceProxy(path.join(PLUGIN_SOCKET_DIR, `${driver}.sock`), socket);
  return { label, driver, proxy, ...(plugin !== undefined ? { plugin } : {}) };
}

/** The plugin's debug line per request: "/VolumeDriver.Mount Name="v" ID=… -> ok (11.2 ms)". */
export function pluginTimes(p: Plugin, volume: string, from: number): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  let text = '';
  try {
    text = readFileSync(p.logFile).subarray(from).toString('utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const m = / debug \/VolumeDriver\.([A-Za-z]+) Name="([^"]*)".* \(([0-9.]+) ms\)$/.exec(line);
    if (m !== null && m[2] === volume) out.push([m[1] ?? '?', Number(m[3])]);
  }
  return out;
}

/** One `docker run --rm -v VOLUME:/data IMG true` through SIDE's proxy. */
export async function traceRun(env: E2EEnv, img: string, side: TracedSide, volume: string): Promise<RunTrace> {
  const mark = side.plugin !== undefined ? logSize(side.plugin) : 0;
  const seen = side.proxy.requests.length;
  const t0 = performance.now();
  await dockerOk(env, ['run', '--rm', '--network', 'none', '-v', `${volume}:/data`, img, 'true']);
  const total = performance.now() - t0;
  await sleep(30); // the plugin's last debug lines reach its log file
  // Only requests about this volume: every dockerd on the host sees the proxy's socket, and others may List it.
  const named = JSON.stringify(volume);
  const requests = side.proxy.requests.slice(seen).filter((r) => r.body.includes(named)).map((r: TracedRequest) => ({
    endpoint: r.path.replace(/^\/(VolumeDriver|Plugin)\./, ''),
    start: r.start - t0,
    ms: r.end - r.start,
    connection: r.connection,
  }));
  // A Get of the mounted volume (dockerd's, right before the Unmount) costs more than one of an unmounted volume.
  const mounted = requests.find((q) => q.endpoint === 'Mount');
  for (const q of requests) if (q.endpoint === 'Get' && mounted !== undefined && q.start > mounted.start) q.endpoint = 'Get (mounted)';
  const p = side.plugin;
  return {
    total,
    requests,
    pluginMs: p === undefined ? [] : pluginTimes(p, volume, mark),
    mountSteps: p === undefined ? [] : mountStepsSince(p, volume, mark),
    unmountSteps: p === undefined ? [] : mountStepsSince(p, volume, mark, 'unmount'),
  };
}

const ms = (n: number) => fmt(n, n >= 100 ? 0 : 1);

/** "Get ×2, Mount ×1, Unmount ×1" (median count per run, in the order first seen). */
function endpointsOf(runs: RunTrace[]): string[] {
  const names: string[] = [];
  for (const r of runs) for (const q of r.requests) if (!names.includes(q.endpoint)) names.push(q.endpoint);
  return names;
}

export interface TraceSummary {
  /** Requests per run with their latency at the socket (dockerd's view) and, for the plugin, in its handler. */
  requests: string;
  /** Stretches of the run, medians: before the Mount, the Mount, Mount to Unmount, the Unmount, after it. */
  timeline: string;
  /** Per-run medians of the same stretches, for comparing two sides. */
  stretches: Record<string, number>;
}

export function summarize(runs: RunTrace[]): TraceSummary {
  const parts = endpointsOf(runs).map((e) => {
    const count = median(runs.map((r) => r.requests.filter((q) => q.endpoint === e).length));
    const atSocket = median(runs.flatMap((r) => r.requests.filter((q) => q.endpoint === e).map((q) => q.ms)));
    // The plugin's lines name no position: its Gets are matched to the proxy's in order.
    const inPlugin = runs.flatMap((r) => {
      const gets = r.requests.filter((q) => q.endpoint.startsWith('Get'));
      const times = r.pluginMs.filter(([k]) => k === e.replace(/ .*$/, ''));
      if (!e.startsWith('Get')) return times.map(([, v]) => v);
      const handlerGets = r.pluginMs.filter(([k]) => k === 'Get');
      return gets.flatMap((q, i) => (q.endpoint === e && handlerGets[i] !== undefined ? [handlerGets[i][1]] : []));
    });
    return `${e} ×${count} ${ms(atSocket)}${inPlugin.length > 0 ? ` (handler ${ms(median(inPlugin))})` : ''}`;
  });
  const stretch = (r: RunTrace) => {
    const mount = r.requests.find((q) => q.endpoint === 'Mount');
    const unmount = r.requests.find((q) => q.endpoint === 'Unmount');
    if (mount === undefined || unmount === undefined) return undefined;
    return {
      'before Mount': mount.start,
      Mount: mount.ms,
      'Mount to Unmount': unmount.start - (mount.start + mount.ms),
      Unmount: unmount.ms,
      'after Unmount': r.total - (unmount.start + unmount.ms),
      total: r.total,
    };
  };
  const each = runs.flatMap((r) => stretch(r) ?? []);
  const stretches: Record<string, number> = {};
  for (const k of ['before Mount', 'Mount', 'Mount to Unmount', 'Unmount', 'after Unmount', 'total'] as const) stretches[k] = median(each.map((s) => s[k]));
  return {
    requests: parts.join(', '),
    timeline: Object.entries(stretches).map(([k, v]) => `${k} ${ms(v)}`).join(', '),
    stretches,
  };
}

type RowFn = (section: string, metric: string, value: string, method: string) => void;

/**
 * Cold runs through both proxies, interleaved, ROUNDS each, on volumes created for them under the proxies' driver
 * names (OURS_OPTS / RC_OPTS: the -o options); rows for the requests, their latencies and the stretches of a run.
 */
export async function tracedColdRows(
  env: E2EEnv,
  img: string,
  sides: { ours: TracedSide; rclone: TracedSide },
  opts: { ours: string[]; rclone: string[] },
  rounds: number,
  row: RowFn,
  load: () => number,
): Promise<{ ours: RunTrace[]; rclone: RunTrace[] }> {
  const stamp = Date.now().toString(36);
  const vols = { ours: `bench-traced-${stamp}`, rclone: `bench-traced-rc-${stamp}` };
  for (const k of ['ours', 'rclone'] as const) await dockerOk(env, ['volume', 'create', '-d', sides[k].driver, ...opts[k].flatMap((o) => ['-o', o]), vols[k]]);
  const runs = { ours: [] as RunTrace[], rclone: [] as RunTrace[] };
  const loads = [load()];
  try {
    for (const k of ['ours', 'rclone'] as const) await traceRun(env, img, sides[k], vols[k]); // first use: Activate, Capabilities, the login
    for (let i = 0; i < rounds; i++) {
      runs.rclone.push(await traceRun(env, img, sides.rclone, vols.rclone));
      runs.ours.push(await traceRun(env, img, sides.ours, vols.ours));
    }
  } finally {
    for (const k of ['ours', 'rclone'] as const) await dockerOk(env, ['volume', 'rm', vols[k]]).catch(() => undefined);
  }
  loads.push(load());
  // Two runs in full in the bench's log: the order of the requests and when each came.
  for (const k of ['ours', 'rclone'] as const) {
    for (const t of runs[k].slice(0, 2)) {
      log(`${k} run ${ms(t.total)} ms: ${t.requests.map((q) => `${q.endpoint} at ${ms(q.start)} for ${ms(q.ms)} (connection ${q.connection})`).join('; ')}${t.pluginMs.length > 0 ? `; handlers: ${t.pluginMs.map(([e, v]) => `${e} ${ms(v)}`).join(', ')}` : ''}`);
    }
  }
  const [o, r] = [summarize(runs.ours), summarize(runs.rclone)];
  const loadText = `1-min load average ${fmt(loads[0] ?? NaN, 1)} → ${fmt(loads[1] ?? NaN, 1)}`;
  const S = 'requests';
  row(S, 'requests dockerd sends per cold docker run, latency at the socket (ms): plugin', o.requests,
    `median over ${rounds} cold \`docker run --rm -v VOL:/data busybox true\` (login shared) through a timing proxy in front of the plugin's socket (scripts/bench/trace-proxy.ts: first byte of the request to last byte of the answer, as dockerd sees it, plus the proxy's hop); "handler" = the plugin's own time for it (its debug line, HTTP parsing and reply excluded); interleaved with rclone's; ${loadText}`);
  row(S, 'requests dockerd sends per cold docker run, latency at the socket (ms): rclone', r.requests, 'same, through the same proxy in front of rclone\'s socket');
  row(S, 'where a cold docker run\'s time goes (ms): plugin', o.timeline,
    'medians of the same runs: before Mount = CLI start, container create and any Get/Path until dockerd sends the Mount; Mount to Unmount = container start, run, exit; after Unmount = removal and the CLI\'s exit');
  row(S, 'where a cold docker run\'s time goes (ms): rclone', r.timeline, 'same, rclone\'s runs');
  const diff = Object.entries(o.stretches).map(([k, v]) => `${k} ${v - (r.stretches[k] ?? NaN) >= 0 ? '+' : ''}${fmt(v - (r.stretches[k] ?? NaN), 1)}`).join(', ');
  row(S, 'plugin minus rclone, per stretch (ms)', diff, 'the two rows above, stretch by stretch: where the cold run\'s difference lies');
  return runs;
}

/**
 * The plugin's own time per request over several runs (each from pluginTimes), medians by request: the Gets before
 * the Mount apart from the Get of the mounted volume. "Get 0.7, Mount 14.2, Get (mounted) 1.8, Unmount 5.0".
 */
export function handlerMedians(runs: Array<Array<[string, number]>>): string {
  const byName = new Map<string, number[]>();
  for (const r of runs) {
    let mounted = false;
    for (const [e, v] of r) {
      const name = e === 'Get' && mounted ? 'Get (mounted)' : e;
      if (e === 'Mount') mounted = true;
      byName.set(name, [...(byName.get(name) ?? []), v]);
    }
  }
  return [...byName].map(([k, v]) => `${k} ${ms(median(v))}`).join(', ');
}
