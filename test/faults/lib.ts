// Shared pieces of the fault suite: recording each property's figures, the docker calls the tests repeat, and a
// "silent host" (a TCP listener that accepts connections and never says a word).
import { appendFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { expect } from 'vitest';
import {
  docker,
  e2eDir,
  loadEnv,
  pluginRequest,
  randomId,
  type CmdResult,
  type LegacyPlugin,
  type Resources,
} from '../e2e/harness.js';

export const RESULTS_FILE_NAME = 'fault-results.jsonl';

export interface FaultRow {
  /** What must hold, as the issue words it (short). */
  property: string;
  trials: number;
  passed: number;
  /** Measured figures, printed in the table (seconds, counts...). */
  figures: Record<string, string | number>;
  notes: string[];
}

export interface RecordedRow extends FaultRow {
  ok: boolean;
  error?: string;
  file: string;
  seconds: number;
}

/**
 * Runs one property's test and always records its row (also when it fails halfway), one JSON line in
 * DIR/fault-results.jsonl; the faults global setup prints them as one table at the end.
 */
export async function measured(property: string, file: string, body: (row: FaultRow) => Promise<void>): Promise<void> {
  const row: FaultRow = { property, trials: 0, passed: 0, figures: {}, notes: [] };
  const started = performance.now();
  let error: unknown;
  try {
    await body(row);
  } catch (e) {
    error = e;
  }
  const recorded: RecordedRow = {
    ...row,
    ok: error === undefined && row.passed === row.trials,
    file: path.basename(file),
    seconds: round((performance.now() - started) / 1000, 1),
    ...(error !== undefined ? { error: String(error instanceof Error ? error.message : error).split('\n')[0]?.slice(0, 200) } : {}),
  };
  appendFileSync(path.join(e2eDir(), RESULTS_FILE_NAME), `${JSON.stringify(recorded)}\n`);
  if (error !== undefined) throw error;
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export const secondsSince = (start: number): number => round((performance.now() - start) / 1000);

export function stats(values: number[]): string {
  if (values.length === 0) return '-';
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  return `median ${round(median)} / max ${round(sorted[sorted.length - 1] ?? 0)}`;
}

export const uniq = (prefix: string): string => `${prefix}-${randomId()}`;

export function describeRun(r: CmdResult, plugin?: LegacyPlugin): string {
  return `exit ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\n--- plugin log (tail) ---\n${plugin?.logs().slice(-3000) ?? ''}`;
}

export function keyOpts(remoteDir: string): Record<string, string> {
  const env = loadEnv();
  return { sshcmd: `${env.keyUser}@${env.sshHost}:${remoteDir}`, port: String(env.sshPort), IdentityFile: env.keyFile };
}

export function pwOpts(remoteDir: string): Record<string, string> {
  const env = loadEnv();
  return { sshcmd: `${env.pwUser}@${env.sshHost}:${remoteDir}`, port: String(env.sshPort), password: env.password };
}

/** docker volume create -d PLUGIN -o k=v... NAME; tracked for cleanup; throws on failure. */
export async function createVolume(res: Resources, plugin: LegacyPlugin, name: string, opts: Record<string, string>): Promise<string> {
  res.volume(name);
  const args = ['volume', 'create', '-d', plugin.name];
  for (const [k, v] of Object.entries(opts)) args.push('-o', `${k}=${v}`);
  args.push(name);
  const r = await docker(args);
  expect(r.exitCode, describeRun(r, plugin)).toBe(0);
  return name;
}

/** docker run --rm --network none -v VOLUME:/data busybox sh -c SCRIPT */
export function runWith(volume: string, script: string, extra: string[] = []): Promise<CmdResult> {
  return docker(['run', '--rm', '--network', 'none', ...extra, '-v', `${volume}:/data`, loadEnv().image, 'sh', '-c', script]);
}

/** A detached container on VOLUME running SCRIPT (default: sleep); returns its name. */
export async function startContainer(res: Resources, volume: string, script = 'exec sleep 600', extra: string[] = []): Promise<string> {
  const name = res.container(uniq('fault'));
  const r = await docker([
    'run', '-d', '--name', name, '--network', 'none', ...extra, '-v', `${volume}:/data`, loadEnv().image, 'sh', '-c', script,
  ]);
  if (r.exitCode !== 0) throw new Error(`docker run -d on ${volume} failed: ${r.stderr}`);
  return name;
}

export async function removeContainers(res: Resources, names: string[]): Promise<void> {
  if (names.length === 0) return;
  const r = await docker(['rm', '-f', ...names], { timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new Error(`docker rm -f failed: ${r.stderr}`);
  for (const n of names) res.containers.delete(n);
}

export interface VolumeStatus {
  mounted?: boolean;
  stale?: string;
  references?: number;
  mountIDs?: number;
  lastError?: string;
  lastSshMessage?: string;
  [key: string]: unknown;
}

/** The plugin's own Get over its socket (no dockerd involved): the volume's Status. */
export async function statusOver(plugin: LegacyPlugin, name: string): Promise<VolumeStatus> {
  const r = await pluginRequest(plugin.socketPath, '/VolumeDriver.Get', { Name: name }, 10_000);
  const body = JSON.parse(r.body) as { Volume: { Status?: VolumeStatus } | null; Err: string };
  if (body.Err !== '' || body.Volume === null) throw new Error(`Get ${name}: ${body.Err}`);
  return body.Volume.Status ?? {};
}

/** A POST over the plugin socket, parsed; the time it took is returned too. */
export async function call(
  plugin: LegacyPlugin,
  endpoint: string,
  body: unknown,
  timeoutMs = 60_000,
): Promise<{ Err: string; ms: number; [key: string]: unknown }> {
  const started = performance.now();
  const r = await pluginRequest(plugin.socketPath, endpoint, body, timeoutMs);
  const parsed = JSON.parse(r.body) as { Err?: string };
  return { ...parsed, Err: parsed.Err ?? '', ms: performance.now() - started };
}

export interface SilentHost {
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

/** A TCP listener on 127.0.0.1 that accepts every connection and never sends a byte: an ssh server that hangs. */
export async function startSilentHost(): Promise<SilentHost> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
