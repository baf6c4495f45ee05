// The plugin in host ("legacy") mode as the tests and the bench start it: `node [flags] <entry>` with its socket at
// /run/docker/plugins/<name>.sock (so dockerd finds it as driver <name>) and its files under <dir>/plugins/<name> (so
// the environment's teardown, scripts/lib/procs.sh, stops it if the caller dies). Starting again with the same name
// reuses its state and mount root (a restart). Spawns only: the caller waits for it the way it needs.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Where dockerd looks for legacy plugin sockets; shared by every dockerd on the machine. */
export const PLUGIN_SOCKET_DIR = '/run/docker/plugins';

export interface SpawnOptions {
  /** The test environment's directory: the plugin's files go under <dir>/plugins/<name>. */
  dir: string;
  /** The plugin's entry point (dist/adapter/main.js of the caller's checkout) and the directory it runs in. */
  entry: string;
  cwd: string;
  /** The environment's keys directory (KEYS_DIR: volumes may name files only there). */
  keysDir: string;
  /** Extra environment for the plugin process (DEBUG defaults to 1). */
  env?: Record<string, string>;
  /** Flags for node itself, before the entry point. */
  nodeFlags?: string[];
  /**
   * A program that runs the plugin, e.g. ['tini', '-s', '--'] (a reaping init, as in the managed plugin). The wrapper
   * then runs in its own process group, and kill() sends SIGKILL to that whole group (wrapper and plugin).
   */
  wrapper?: string[];
  /**
   * Where this process sees the plugin's PLUGIN_SOCKET_DIR (default: that directory itself): for a plugin that a
   * wrapper starts in another mount namespace, whose /run/docker/plugins is this directory bound there.
   */
  socketDir?: string;
  /** Keep at most this many characters of output in memory (default: all); the log file keeps everything. */
  keepOutputChars?: number;
}

export interface SpawnedPlugin {
  name: string;
  socketPath: string;
  stateDir: string;
  mountRoot: string;
  /** The directory holding stateDir, mountRoot, plugin.log and plugin.pid. */
  baseDir: string;
  /** Everything the plugin printed, appended as it comes (every start under this name). */
  logFile: string;
  pid: number;
  /** performance.now() when the process was spawned. */
  spawnedAt: number;
  /** What the plugin wrote to stdout and stderr so far (of this process). */
  logs(): string;
  /** True while the process runs. */
  running(): boolean;
  /** How it ended; undefined while it runs. */
  exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** SIGTERM, SIGKILL after a bounded wait; removes the socket. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would; leaves the socket file behind. Resolves once the process is gone. */
  kill(): Promise<void>;
}

const livePlugins = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A caller that dies must not leave plugins running (the environment's teardown also checks).
  process.on('exit', () => {
    for (const child of livePlugins) {
      try {
        if (child.spawnargs[0] !== process.execPath && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/** Spawns the plugin NAME; does not wait for it to serve. */
export function spawnLegacyPlugin(name: string, opts: SpawnOptions): SpawnedPlugin {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new Error(`bad plugin name ${name}`);
  const baseDir = path.join(opts.dir, 'plugins', name);
  const stateDir = path.join(baseDir, 'state');
  const mountRoot = path.join(baseDir, 'mnt');
  const logFile = path.join(baseDir, 'plugin.log');
  const pidFile = path.join(baseDir, 'plugin.pid');
  const socketPath = path.join(opts.socketDir ?? PLUGIN_SOCKET_DIR, `${name}.sock`);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  mkdirSync(mountRoot, { recursive: true, mode: 0o755 });
  mkdirSync(opts.socketDir ?? PLUGIN_SOCKET_DIR, { recursive: true, mode: 0o755 });
  rmSync(socketPath, { force: true });

  // The caller's environment minus what belongs to a test runner (loader hooks, vitest's own flags).
  const baseEnv = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => key !== 'NODE_OPTIONS' && !key.startsWith('VITEST') && key !== 'TEST'),
  );
  const spawnedAt = performance.now();
  const wrapper = opts.wrapper ?? [];
  const argv = [...wrapper, process.execPath, ...(opts.nodeFlags ?? []), opts.entry];
  const child = spawn(argv[0] ?? process.execPath, argv.slice(1), {
    cwd: opts.cwd,
    detached: wrapper.length > 0,
    env: {
      ...baseEnv,
      SOCKET_PATH: path.join(PLUGIN_SOCKET_DIR, `${name}.sock`),
      STATE_DIR: stateDir,
      MOUNT_ROOT: mountRoot,
      KEYS_DIR: opts.keysDir,
      DEBUG: '1',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  installExitHook();
  livePlugins.add(child);
  let output = '';
  const keep = opts.keepOutputChars ?? Infinity;
  const append = (text: string): void => {
    output += text;
    if (output.length > keep * 2) output = output.slice(-keep);
    try {
      appendFileSync(logFile, text);
    } catch {
      // the work dir may be gone already
    }
  };
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      livePlugins.delete(child);
      append(`[harness] plugin ${name} exited (code ${code}, signal ${signal})\n`);
      resolve();
    });
  });
  const onData = (chunk: Buffer): void => append(chunk.toString('utf8'));
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start the plugin: ${output}`);
  writeFileSync(pidFile, `${pid}\n`);
  appendFileSync(logFile, `[harness] started plugin ${name} pid ${pid} at ${new Date().toISOString()}\n`);

  const waitExit = async (ms: number): Promise<boolean> => {
    if (exited) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const done = await Promise.race([exitPromise.then(() => true), timeout]);
    if (timer) clearTimeout(timer);
    return done;
  };
  const sigkill = (): void => {
    if (wrapper.length > 0 && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
        return;
      } catch {
        // fall through: the group may be gone
      }
    }
    child.kill('SIGKILL');
  };
  return {
    name,
    socketPath,
    stateDir,
    mountRoot,
    baseDir,
    logFile,
    pid,
    spawnedAt,
    logs: () => output,
    running: () => exited === undefined,
    exitStatus: () => exited,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        if (!(await waitExit(15_000))) {
          sigkill();
          if (!(await waitExit(5_000))) throw new Error(`plugin ${name} (pid ${pid}) survived SIGKILL`);
        }
      }
      rmSync(socketPath, { force: true });
      rmSync(pidFile, { force: true });
    },
    async kill() {
      if (!exited) {
        sigkill();
        if (!(await waitExit(5_000))) throw new Error(`plugin ${name} (pid ${pid}) survived SIGKILL`);
      }
      rmSync(pidFile, { force: true });
    },
  };
}
