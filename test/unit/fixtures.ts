// Deps for handler tests: the fake runner and the simulated mount table it changes, a memory store and an in-memory
// filesystem.
import { FakeMountTable } from '../../adapter/fakes/fake-mount-table.js';
import { FakeRunner } from '../../adapter/fakes/fake-runner.js';
import { MemoryFs } from '../../adapter/fakes/memory-fs.js';
import { createKeyedLock } from '../../handlers/keyed-lock.js';
import { createMemory } from '../../handlers/memory.js';
import type { Config, Deps, Timers } from '../../handlers/types.js';
import { MemoryStore } from '../../state/memory-store.js';
import { unmount as routeUnmount } from '../../adapter/docker/routes.js';

export const CONFIG: Config = {
  stateDir: '/state',
  keysDir: '/keys',
  mountRoot: '/mnt/volumes',
  mountTimeoutMs: 20_000,
};

/** Timers that fire only when a test says so. */
export class ManualTimers implements Timers {
  readonly pending = new Map<string, { ms: number; fn: () => void }>();

  set(key: string, ms: number, fn: () => void): void {
    this.pending.set(key, { ms, fn });
  }

  clear(key: string): void {
    this.pending.delete(key);
  }

  /** Fires KEY's timer as if its time had come; returns false when none is pending. */
  fire(key: string): boolean {
    const t = this.pending.get(key);
    if (t === undefined) return false;
    this.pending.delete(key);
    t.fn();
    return true;
  }
}

export interface TestDeps extends Deps {
  runner: FakeRunner;
  mounts: FakeMountTable;
  timers: ManualTimers;
  store: MemoryStore;
  fs: MemoryFs;
  logs: string[];
}

/** The operator's default key in the keys directory, which volumes without a credential option use. */
export const DEFAULT_KEY = '/keys/id_ed25519';

/** Deps whose keys directory holds a default key (pass withDefaultKey=false for an empty keys directory). */
export function makeDeps(overrides: Partial<Config> = {}, withDefaultKey = true): TestDeps {
  const runner = new FakeRunner();
  const logs: string[] = [];
  const fs = new MemoryFs();
  fs.dirs.add('/keys');
  fs.dirs.add('/state');
  if (withDefaultKey) fs.files.set(DEFAULT_KEY, { content: 'k', mode: 0o600 });
  return {
    runner,
    mounts: runner.table,
    processes: runner.table.processes,
    readAhead: runner.table.readAheadControl,
    store: new MemoryStore(),
    fs,
    config: { ...CONFIG, ...overrides },
    locks: createKeyedLock(),
    timers: new ManualTimers(),
    now: () => new Date('2026-01-02T03:04:05.000Z'),
    log: {
      debug: (m) => logs.push(`debug ${m}`),
      info: (m) => logs.push(`info ${m}`),
      error: (m) => logs.push(`error ${m}`),
    },
    logs,
    memory: createMemory(),
  };
}

export const TEST_KEY = [
  '-----BEGIN OPENSSH PRIVATE KEY-----',
  'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
  'QyNTUxOQAAACBQ2Vj3Xw2h0XlE3mE4yqfK7c8Xx1f3m0V7yQnJ2hQ2NQAAAJgAAAAAAAAA',
  '-----END OPENSSH PRIVATE KEY-----',
].join('\n');

/**
 * dockerd's Unmount as the tests use it: the route's answer, then the detach the route answers before (the volume's
 * lock free again), so a test's next line sees the Unmount's whole work. Tests of the answer itself use the route.
 */
export async function unmount(body: unknown, deps: Deps): ReturnType<typeof routeUnmount> {
  const answer = await routeUnmount(body, deps);
  const name = (body as { Name?: unknown } | undefined)?.Name;
  if (typeof name === 'string') await deps.locks.withLock(name, async () => undefined);
  return answer;
}
