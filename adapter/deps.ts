// Wires the handlers' dependencies: for a real run, or for a dry run that runs and writes nothing on the host.
import { createKeyedLock } from '../handlers/keyed-lock.js';
import type { CommandRunner, Config, Deps, Logger, MountTable, ProcessTable, ReadAheadControl, VolumeStore } from '../handlers/types.js';
import { MemoryStore } from '../state/memory-store.js';
import { createDryRunFs } from './fakes/dry-run-fs.js';
import { createExecaRunner } from './host/execa-runner.js';
import { FakeMountTable } from './fakes/fake-mount-table.js';
import { FakeRunner } from './fakes/fake-runner.js';
import { createHostFs } from './host/host-fs.js';
import { mountUsers } from './host/mount-users.js';
import { createProcessTable } from './host/processes.js';
import { createProcMountTable } from './host/proc-mounts.js';
import { createReadAhead } from './host/read-ahead.js';
import { createTimers } from './host/timers.js';

function common(config: Config, log: Logger) {
  return { config, locks: createKeyedLock(), timers: createTimers(), now: () => new Date(), log };
}

/** The host as /proc and /sys show it: mounts, the processes the plugin started, read-ahead. */
export function createHostView(
  runner: CommandRunner,
  procDir = '/proc',
  sysDir = '/sys',
): { mounts: MountTable; processes: ProcessTable; readAhead: ReadAheadControl } {
  const processes = createProcessTable(runner, procDir);
  return {
    mounts: createProcMountTable((server) => processes.alive(server), procDir, sysDir),
    processes,
    readAhead: createReadAhead(procDir, sysDir),
  };
}

export function createDeps(config: Config, store: VolumeStore, log: Logger): Deps {
  const runner = createExecaRunner();
  const host = createHostView(runner);
  host.mounts.usersOf = (path) => mountUsers(path);
  return { ...common(config, log), ...host, store, runner, fs: createHostFs() };
}

/**
 * A dry run: every command is printed instead of run (FakeRunner), mounts are simulated (FakeMountTable), volumes
 * live in memory (MemoryStore) and files are written in memory (dry-run-fs.ts): the state directory, the mount root
 * and the host's mounts stay as they are.
 */
export function createDryRunDeps(config: Config, log: Logger): Deps {
  const print = (line: string) => log.info(`dry run: ${line}`);
  const mounts = new FakeMountTable(print);
  return {
    ...common(config, log),
    store: new MemoryStore(),
    runner: new FakeRunner(mounts, print),
    mounts,
    processes: mounts.processes,
    readAhead: mounts.readAheadControl,
    fs: createDryRunFs(createHostFs()),
  };
}
