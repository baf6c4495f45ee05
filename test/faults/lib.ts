// Shared pieces of the fault suite: each file's plugin with its setup and teardown (useFaultPlugin), recording each
// property's figures, and the docker calls and plugin requests the tests repeat.
import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import {
  createVolume,
  describeRun,
  docker,
  e2eDir,
  keyOpts,
  loadEnv,
  makeRemoteSubdir,
  pluginRequest,
  pwOpts,
  removeContainers,
  Resources,
  runWith,
  sshfsMountsUnder,
  startContainer,
  startDockerd,
  startLegacyPlugin,
  uniq,
  uniquePluginName,
  type E2EEnv,
  type LegacyPlugin,
  type StartPluginOptions,
} from '../e2e/harness.js';

// The docker calls the fault tests share with the end-to-end tests (defined in the harness).
export { createVolume, describeRun, keyOpts, pwOpts, removeContainers, runWith, startContainer, uniq };

export interface FaultPluginOptions extends StartPluginOptions {
  /** First in afterAll: put back what the file's faults may have left broken (a stopped daemon, a stalled server). */
  beforeCleanup?: () => Promise<unknown>;
  /** After the tracked containers and volumes are removed, while the plugin still runs. */
  afterCleanup?: () => Promise<unknown>;
  /** After the plugin stopped: the file's own last checks, and the servers it started. */
  afterStop?: () => Promise<unknown>;
}

export interface FaultPlugin {
  /** The file's plugin: always the process running now (start() replaces it), so it may be kept in a variable. */
  plugin: LegacyPlugin;
  /** What the file's tests create (containers, volumes); removed in afterAll. */
  res: Resources;
  env: E2EEnv;
  /** Starts the plugin again (same name, options and state) after a test stopped or killed it; resolves once it answers. */
  start(): Promise<LegacyPlugin>;
}

/**
 * The setup and teardown every fault-test file shares: beforeAll starts the plugin in host mode; afterAll starts it
 * again if a test left it dead, removes what `res` tracks, stops the plugin, and checks that removing went without
 * errors and that no sshfs mount is left under its mount root. Call once, at the top of a file.
 */
export function useFaultPlugin(options: FaultPluginOptions = {}): FaultPlugin {
  const { beforeCleanup, afterCleanup, afterStop, ...startOptions } = options;
  // One name for every start: the same state dir and mount root, as a restarted plugin has.
  const name = uniquePluginName();
  const res = new Resources();
  let current: LegacyPlugin | undefined;
  const now = (): LegacyPlugin => {
    if (current === undefined) throw new Error(`plugin ${name} has not started`);
    return current;
  };
  const start = async (): Promise<LegacyPlugin> => {
    current = await startLegacyPlugin(name, startOptions);
    return current;
  };
  const plugin: LegacyPlugin = {
    name,
    get readyMs() { return now().readyMs; },
    get socketPath() { return now().socketPath; },
    get stateDir() { return now().stateDir; },
    get mountRoot() { return now().mountRoot; },
    get baseDir() { return now().baseDir; },
    get pid() { return now().pid; },
    logs: () => now().logs(),
    running: () => now().running(),
    stop: () => now().stop(),
    kill: () => now().kill(),
    end: () => now().end(),
  };

  beforeAll(async () => {
    await start();
  });

  afterAll(async () => {
    await beforeCleanup?.();
    if (current === undefined) return;
    if (!current.running()) await start();
    const errors = await res.cleanup();
    await afterCleanup?.();
    const left = await sshfsMountsUnder(plugin.mountRoot);
    await plugin.end();
    await afterStop?.();
    expect(errors).toEqual([]);
    expect(left.map((m) => m.mountpoint)).toEqual([]);
  });

  return { plugin, res, env: loadEnv(), start };
}

/**
 * A fresh remote dir of the key user holding the file `marker` with TEXT, and a volume PREFIX-<id> on it; returns
 * both and the volume's mountpoint.
 */
export async function markedVolume(
  res: Resources,
  plugin: LegacyPlugin,
  prefix: string,
  text: string,
): Promise<{ remote: string; vol: string; mountpoint: string }> {
  const env = loadEnv();
  const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
  writeFileSync(path.join(remote, 'marker'), text);
  const vol = await createVolume(res, plugin, uniq(prefix), keyOpts(remote));
  return { remote, vol, mountpoint: path.join(plugin.mountRoot, vol) };
}

/** Starts the test dockerd again if a test left it stopped (the next files need it). */
export async function ensureDockerd(): Promise<void> {
  if ((await docker(['info'], { timeoutMs: 10_000 })).exitCode !== 0) await startDockerd();
}

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
