// Wires the handlers' dependencies: for a real run, or for a dry run that runs and writes nothing on the host.
import { createKeyedLock } from '../handlers/keyed-lock.js';
import type { Config, Deps, Logger, VolumeStore } from '../handlers/types.js';
import { MemoryStore } from '../state/memory-store.js';
import { createDryRunFs } from './dry-run-fs.js';
import { createExecaRunner } from './execa-runner.js';
import { FakeMountTable } from './fake-mount-table.js';
import { FakeRunner } from './fake-runner.js';
import { createHostFs } from './host-fs.js';
import { mountUsers } from './mount-users.js';
import { createProcMountTable } from './proc-mounts.js';
import { createTimers } from './timers.js';

function common(config: Config, log: Logger) {
  return { config, locks: createKeyedLock(), timers: createTimers(), now: () => new Date(), log };
}

export function createDeps(config: Config, store: VolumeStore, log: Logger): Deps {
  const mounts = createProcMountTable();
  mounts.usersOf = (path) => mountUsers(path);
  return { ...common(config, log), store, runner: createExecaRunner(), mounts, fs: createHostFs() };
}

/**
 * A dry run: every command is printed instead of run (FakeRunner), mounts are simulated (FakeMountTable), volumes
 * live in memory (MemoryStore) and files are written in memory (dry-run-fs.ts): the state directory, the mount root
 * and the host's mounts stay as they are.
 */
export function createDryRunDeps(config: Config, log: Logger): Deps {
  const print = (line: string) => log.info(`dry run: ${line}`);
  const mounts = new FakeMountTable(print);
  return { ...common(config, log), store: new MemoryStore(), runner: new FakeRunner(mounts, print), mounts, fs: createDryRunFs(createHostFs()) };
}
