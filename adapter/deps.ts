// Opens the handlers' dependencies, complete and never changed afterwards: for a real run (the state directory, the
// host as /proc and /sys show it, execa), or for a dry run that runs and writes nothing on the host. Both front ends
// (the Docker socket, the CSI server) start from here.
import { chmod, mkdir } from 'node:fs/promises';
import { describe } from '../handlers/errors.js';
import { createKeyedLock } from '../handlers/keyed-lock.js';
import { createMemory } from '../handlers/memory.js';
import type { CommandRunner, Config, Deps, Logger, MountTable, ProcessTable, ReadAheadControl, VolumeStore } from '../handlers/types.js';
import { LowdbStore } from '../state/lowdb-store.js';
import { MemoryStore } from '../state/memory-store.js';
import type { PluginConfig } from './config.js';
import { FakeMountTable } from './fakes/fake-mount-table.js';
import { FakeRunner } from './fakes/fake-runner.js';
import { MemoryFs } from './fakes/memory-fs.js';
import { createExecaRunner } from './host/execa-runner.js';
import { createHostFs } from './host/host-fs.js';
import { hostDirsFor } from './host/host-paths.js';
import { createMountProbe } from './host/mount-probe.js';
import { mountUsers } from './host/mount-users.js';
import { createProcessTable } from './host/processes.js';
import { createProcMountTable } from './host/proc-mounts.js';
import { createReadAhead } from './host/read-ahead.js';
import { lockStateDir, removeLeftovers } from './host/state-dir.js';
import { createTimers } from './host/timers.js';

function common(config: Config, log: Logger) {
  return { config, locks: createKeyedLock(), timers: createTimers(), now: () => new Date(), log, memory: createMemory() };
}

/** The host as /proc and /sys show it: mounts (and who else holds them), the processes the plugin started, read-ahead. */
export function createHostView(
  runner: CommandRunner,
  procDir = '/proc',
  sysDir = '/sys',
): { mounts: MountTable; processes: ProcessTable; readAhead: ReadAheadControl } {
  const processes = createProcessTable(runner, procDir);
  return {
    mounts: createProcMountTable({
      alive: (server) => processes.alive(server),
      probe: createMountProbe().probe,
      usersOf: (path) => mountUsers(path, procDir),
      procDir,
      sysDir,
    }),
    processes,
    readAhead: createReadAhead(procDir, sysDir),
  };
}

function createDeps(config: Config, store: VolumeStore, log: Logger): Deps {
  const runner = createExecaRunner();
  return { ...common(config, log), ...createHostView(runner), store, runner, fs: createHostFs() };
}

/**
 * A dry run: every command is printed instead of run (FakeRunner), mounts are simulated (FakeMountTable), volumes
 * live in memory (MemoryStore) and files are written in memory (MemoryFs, over the host's for reading): the state directory, the mount root
 * and the host's mounts stay as they are.
 */
function createDryRunDeps(config: Config, log: Logger): Deps {
  const print = (line: string) => log.info(`dry run: ${line}`);
  const mounts = new FakeMountTable(print);
  return {
    ...common(config, log),
    store: new MemoryStore(),
    runner: new FakeRunner(mounts, print),
    mounts,
    processes: mounts.processes,
    readAhead: mounts.readAheadControl,
    fs: new MemoryFs(createHostFs()),
  };
}

/** The real state directory: one instance at a time, its journal loaded, leftovers of a crash removed. */
async function openState(config: PluginConfig, log: Logger): Promise<Deps> {
  // State first: Docker asks Get for every volume it knows as soon as we answer, and forgets those we deny.
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  const lock = await lockStateDir(config.stateDir);
  if (lock === undefined) log.error(`STATE_DIR ${config.stateDir} is too long for a lock socket: a second instance would not be stopped`);
  const store = await LowdbStore.open(config.stateDir);
  // A STATE_DIR that existed before keeps its mode otherwise (0755 from mkdir -p, or a managed plugin's state.source).
  await chmod(config.stateDir, 0o700).catch((error: unknown) => log.error(`STATE_DIR ${config.stateDir} stays as it was: ${describe(error)}`));
  const hostDirs = await hostDirsFor([config.stateDir]);
  if (store.startupWriteError !== undefined) {
    log.error(`the state in ${config.stateDir} cannot be written (${store.startupWriteError}); serving what was read, every change fails until it can`);
  }
  const volumes = new Set((await store.list()).map((r) => r.name));
  for (const path of await removeLeftovers(config.stateDir, volumes).catch(() => [])) log.info(`removed leftover ${path}`);
  return createDeps({ ...config, hostDirs }, store, log);
}

/**
 * The dependencies for a configuration, complete: in memory for a dry run (which touches neither the state directory
 * nor the host's mounts), else over the real state directory. Frozen, with their configuration: nothing is added later.
 */
export async function openDeps(config: PluginConfig, log: Logger): Promise<Readonly<Deps>> {
  const deps = config.dryRun ? createDryRunDeps(config, log) : await openState(config, log);
  return Object.freeze({ ...deps, config: Object.freeze({ ...deps.config }) });
}
