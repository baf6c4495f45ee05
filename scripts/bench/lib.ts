// Helpers for the benchmark: commands, the plugin in host mode, requests over its Unix socket, statistics.
// Loopback only, bounded waits only. Nothing here asserts: it measures and reports.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { dockerCliEnv, type E2EEnv } from '../lib/e2e-env.js';
import { PLUGIN_SOCKET_DIR, spawnLegacyPlugin, type SpawnedPlugin } from '../lib/legacy-plugin.js';
import { pluginRequest, type PluginHttpResponse } from '../lib/plugin-request.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const PLUGIN_ENTRY = path.join(REPO_ROOT, 'dist', 'adapter', 'main.js');

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------------------------
// Commands

export interface CmdResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export async function run(cmd: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; input?: string } = {}): Promise<CmdResult> {
  const started = performance.now();
  const r = await execa(cmd, args, {
    reject: false,
    timeout: opts.timeoutMs ?? 120_000,
    input: opts.input ?? '',
    stripFinalNewline: true,
    ...(opts.env !== undefined ? { env: opts.env } : {}),
    forceKillAfterDelay: 2_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), ms: performance.now() - started };
}

export async function runOk(cmd: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; input?: string } = {}): Promise<CmdResult> {
  const r = await run(cmd, args, opts);
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.exitCode}: ${r.stderr.slice(-2000)}`);
  return r;
}

/** A shell command (for pipes); the command text is built by the benchmark only, never from input. */
export function sh(script: string, timeoutMs = 120_000): Promise<CmdResult> {
  return runOk('bash', ['-c', `set -o pipefail; ${script}`], { timeoutMs });
}

// ---------------------------------------------------------------------------------------------------------------
// docker against the environment's dockerd (scripts/lib/e2e-env.ts reads the environment)

export function docker(env: E2EEnv, args: string[], timeoutMs = 150_000): Promise<CmdResult> {
  return run('docker', args, { env: dockerCliEnv(env), timeoutMs });
}

export async function dockerOk(env: E2EEnv, args: string[], timeoutMs = 150_000): Promise<CmdResult> {
  const r = await docker(env, args, timeoutMs);
  if (r.exitCode !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.exitCode}: ${r.stderr.slice(-2000)}`);
  return r;
}

// ---------------------------------------------------------------------------------------------------------------
// The plugin in host mode

/** The plugin as the tests start it (scripts/lib/legacy-plugin.ts). */
export type Plugin = SpawnedPlugin;

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * Spawns `node [flags] dist/adapter/main.js` as the tests do (scripts/lib/legacy-plugin.ts): socket in
 * /run/docker/plugins (so dockerd finds it as driver NAME), state under DIR/plugins/NAME (so `e2e-env.sh down DIR`
 * stops it if the benchmark dies), DEBUG=0 unless extraEnv says otherwise. Does not wait.
 */
export function spawnPlugin(dir: string, name: string, nodeFlags: string[], extraEnv: Record<string, string> = {}, entry = PLUGIN_ENTRY): Plugin {
  return spawnLegacyPlugin(name, {
    dir,
    entry,
    // the build's own checkout: <checkout>/dist/adapter/main.js
    cwd: path.dirname(path.dirname(path.dirname(entry))),
    keysDir: path.join(dir, 'keys'),
    nodeFlags,
    env: { DEBUG: '0', ...extraEnv },
    keepOutputChars: 100_000,
  });
}

/** Polls until the plugin answers PROBE (default: Activate); returns ms since spawn. Bounded by timeoutMs. */
export async function waitServing(p: Plugin, probe: (c: SocketClient) => Promise<boolean>, timeoutMs = 20_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  const client = new SocketClient(p.socketPath);
  try {
    for (;;) {
      if (!p.running()) throw new Error(`plugin exited during start:\n${p.logs().slice(-3000)}`);
      if (existsSync(p.socketPath)) {
        try {
          if (await probe(client)) return performance.now() - p.spawnedAt;
        } catch {
          // not yet
        }
      }
      if (performance.now() > deadline) throw new Error(`plugin did not serve within ${timeoutMs} ms:\n${p.logs().slice(-3000)}`);
      await sleep(2);
    }
  } finally {
    client.close();
  }
}

/** Resident set size of PID in MiB (VmRSS). */
export function rssMiB(pid: number): number {
  return rssParts(pid).rss;
}

/**
 * VmRSS and its parts in MiB: RssAnon is the process's own memory; RssFile is pages of mapped files (mostly the
 * node binary, whose built-in modules are read from it), shared with other processes running the same file.
 */
export function rssParts(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
    return m === null ? NaN : Number(m[1]) / 1024;
  };
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

// ---------------------------------------------------------------------------------------------------------------
// Requests over the socket, the way dockerd sends them (keep-alive connection, no Content-Type, empty Host)

export class SocketClient {
  private readonly agent: http.Agent;

  constructor(private readonly socketPath: string, maxSockets = 1) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
  }

  request(urlPath: string, body: unknown, timeoutMs = 30_000): Promise<PluginHttpResponse> {
    return pluginRequest(this.socketPath, urlPath, body, timeoutMs, this.agent);
  }

  /** Sends a request and throws unless the answer has an empty Err. */
  async ok(urlPath: string, body: unknown, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const r = await this.request(urlPath, body, timeoutMs);
    const parsed = JSON.parse(r.body) as Record<string, unknown>;
    if (r.status !== 200 || (typeof parsed.Err === 'string' && parsed.Err !== '')) throw new Error(`${urlPath}: ${r.status} ${r.body}`);
    return parsed;
  }

  close(): void {
    this.agent.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics and formatting

export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

export function median(samples: number[]): number {
  return percentile(samples, 50);
}

export function fmt(n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

/** Times FN N times sequentially; returns the durations in ms. */
export async function timeMany(n: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    out.push(performance.now() - t);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// A peer measured side by side: rclone's Docker volume plugin (`rclone serve docker`, Debian's rclone package)

export interface PeerPlugin {
  name: string;
  socketPath: string;
  pid: number;
  mountRoot: string;
  stop(): Promise<void>;
}

/**
 * Spawns `rclone serve docker` as a legacy plugin named NAME on the same dockerd: its socket in /run/docker/plugins,
 * its mounts, cache and (empty) config under DIR/plugins/NAME. STATE_DIR in its environment lets `e2e-env.sh down`
 * stop it should the benchmark die.
 */
export function spawnRclone(dir: string, name: string): PeerPlugin {
  const base = path.join(dir, 'plugins', name);
  const mountRoot = path.join(base, 'mnt');
  const config = path.join(base, 'rclone.conf');
  const socketPath = path.join(PLUGIN_SOCKET_DIR, `${name}.sock`);
  for (const d of [mountRoot, path.join(base, 'cache'), path.join(base, 'state')]) mkdirSync(d, { recursive: true, mode: 0o700 });
  writeFileSync(config, '');
  rmSync(socketPath, { force: true });
  const child = spawn(
    'rclone',
    ['serve', 'docker', '--socket-addr', socketPath, '--no-spec', '--base-dir', mountRoot, '--cache-dir', path.join(base, 'cache'), '--config', config],
    { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: base, STATE_DIR: path.join(base, 'state') }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  live.add(child);
  let exited = false;
  const exitP = new Promise<void>((resolve) => child.on('exit', () => { exited = true; live.delete(child); resolve(); }));
  const logFile = path.join(base, 'rclone.log');
  const onData = (c: Buffer) => {
    try {
      appendFileSync(logFile, c);
    } catch {
      // ignore
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  if (child.pid === undefined) throw new Error('could not spawn rclone');
  writeFileSync(path.join(base, 'plugin.pid'), `${child.pid}\n`);
  return {
    name,
    socketPath,
    pid: child.pid,
    mountRoot,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        if (!(await Promise.race([exitP.then(() => true), sleep(10_000).then(() => false)]))) {
          child.kill('SIGKILL');
          await Promise.race([exitP, sleep(5_000)]);
        }
      }
      const left = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${mountRoot}/`));
      for (const m of left) await run('fusermount3', ['-u', '-z', m]);
      rmSync(socketPath, { force: true });
      rmSync(path.join(base, 'plugin.pid'), { force: true });
    },
  };
}

/** Waits until a plugin socket answers /Plugin.Activate (bounded). */
export async function waitActivate(socketPath: string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  const client = new SocketClient(socketPath);
  try {
    for (;;) {
      try {
        if (existsSync(socketPath) && (await client.request('/Plugin.Activate', {}, 1_000)).status === 200) return;
      } catch {
        // not yet
      }
      if (performance.now() > deadline) throw new Error(`${socketPath} did not answer within ${timeoutMs} ms`);
      await sleep(20);
    }
  } finally {
    client.close();
  }
}

/** RSS (MiB) of PID plus every process whose command line mentions one of MARKERS (a plugin's sshfs and ssh). */
export function rssWithHelpers(pid: number, markers: string[]): number {
  let total = rssMiB(pid);
  for (const p of readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d) && d !== String(pid))) {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (markers.some((m) => cmd.includes(m))) total += rssMiB(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

// ---------------------------------------------------------------------------------------------------------------
// The plugin's Mount breakdown (handlers/lifecycle.ts logs it at debug level: the plugin runs with DEBUG=1)

/** The 1-minute load average, for the record beside every timing figure. */
export function load1(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/** Bytes in the plugin's log so far: a mark to read what a later step logged (mountStepsSince). */
export function logSize(p: Plugin): number {
  try {
    return readFileSync(p.logFile).length;
  } catch {
    return 0;
  }
}

/** The "mount steps" (or "unmount steps") lines of VOLUME logged after byte FROM, each as step -> ms (total included), in order. */
export function mountStepsSince(p: Plugin, volume: string, from: number, request: 'mount' | 'unmount' = 'mount'): Array<Record<string, number>> {
  let text = '';
  try {
    text = readFileSync(p.logFile).subarray(from).toString('utf8');
  } catch {
    return [];
  }
  const out: Array<Record<string, number>> = [];
  for (const line of text.split('\n')) {
    const m = / debug volume (\S+) (mount|unmount) steps: (.*)$/.exec(line);
    if (m === null || m[1] !== volume || m[2] !== request) continue;
    const steps: Record<string, number> = {};
    for (const [, step, ms] of (m[3] ?? '').matchAll(/([a-z-]+) ([0-9.]+)/g)) steps[step ?? '?'] = Number(ms);
    out.push(steps);
  }
  return out;
}

/** Per step, the median over RUNS (steps missing in a run are left out of that step's median); in first-seen order. */
export function medianSteps(runs: Array<Record<string, number>>): Array<[string, number]> {
  const names: string[] = [];
  for (const r of runs) for (const k of Object.keys(r)) if (!names.includes(k)) names.push(k);
  return names.map((k) => [k, median(runs.flatMap((r) => (r[k] === undefined ? [] : [r[k] as number])))]);
}

/** "lock 0.1, store 0.3, …, total 91" */
export function formatSteps(steps: Array<[string, number]>): string {
  return steps.map(([k, v]) => `${k} ${v >= 100 ? v.toFixed(0) : v.toFixed(1)}`).join(', ');
}
