// Wires the handlers' dependencies for a real run or a dry run.
import { createKeyedLock } from '../handlers/keyed-lock.js';
import type { Config, Deps, Logger, VolumeStore } from '../handlers/types.js';
import { createExecaRunner } from './execa-runner.js';
import { FakeRunner } from './fake-runner.js';
import { createHostFs } from './host-fs.js';
import { mountUsers } from './mount-users.js';
import { createProcMountTable } from './proc-mounts.js';
import { createTimers } from './timers.js';

export function createDeps(config: Config, store: VolumeStore, log: Logger): Deps {
  const common = { store, config, fs: createHostFs(), locks: createKeyedLock(), timers: createTimers(), now: () => new Date(), log };
  if (config.dryRun) {
    const fake = new FakeRunner((line) => log.info(`dry run: ${line}`));
    return { ...common, runner: fake, mounts: fake };
  }
  const mounts = createProcMountTable();
  mounts.usersOf = (path) => mountUsers(path);
  return { ...common, runner: createExecaRunner(), mounts };
}
