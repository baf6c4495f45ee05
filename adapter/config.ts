// Reads the plugin's configuration from the environment (settable with `docker plugin set` for the managed plugin).
import { isAbsolute } from 'node:path';
import { DEFAULT_KEYS_DIR } from '../handlers/options.js';
import type { Config } from '../handlers/types.js';

function truthy(value: string | undefined): boolean {
  return value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());
}

function absolute(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const value = env[name] === undefined || env[name] === '' ? fallback : env[name];
  if (!isAbsolute(value)) throw new Error(`${name} must be an absolute path, not "${value}"`);
  return value.replace(/\/+$/, '') || '/';
}

/** The whole configuration: what handlers read, plus what only the adapter uses. */
export interface PluginConfig extends Config {
  socketPath: string;
  /** A listening socket systemd passed (socket activation), served instead of binding socketPath. */
  listenFd?: number;
  debug: boolean;
  /** Run nothing and write nothing on the host: print the commands a real run would run (createDryRunDeps). */
  dryRun: boolean;
}

/** The first descriptor systemd passes (SD_LISTEN_FDS_START). */
const SD_LISTEN_FDS_START = 3;

/**
 * The socket systemd passed, if any: LISTEN_PID names this process (so a child that inherited the variables never
 * takes them for its own) and LISTEN_FDS counts the descriptors from fd 3. The plugin serves one socket.
 */
function inheritedSocket(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  if (env.LISTEN_FDS === undefined || env.LISTEN_FDS === '' || env.LISTEN_PID !== String(pid)) return undefined;
  if (env.LISTEN_FDS !== '1') {
    throw new Error(`systemd passed ${env.LISTEN_FDS} sockets (LISTEN_FDS); the plugin serves one: give its .socket unit one ListenStream=`);
  }
  return SD_LISTEN_FDS_START;
}

export function readConfig(env: NodeJS.ProcessEnv = process.env, pid = process.pid): PluginConfig {
  const timeout = env.MOUNT_TIMEOUT === undefined || env.MOUNT_TIMEOUT === '' ? 20 : Number(env.MOUNT_TIMEOUT);
  if (!Number.isFinite(timeout) || timeout < 1 || timeout > 110) {
    throw new Error(`MOUNT_TIMEOUT must be a number of seconds from 1 to 110, not "${env.MOUNT_TIMEOUT}"`);
  }
  const idle = env.SHARED_CONNECTION_IDLE === undefined || env.SHARED_CONNECTION_IDLE === '' ? 300 : Number(env.SHARED_CONNECTION_IDLE);
  if (!Number.isInteger(idle) || idle < 0 || idle > 86_400) {
    throw new Error(`SHARED_CONNECTION_IDLE must be a whole number of seconds from 0 (off) to 86400, not "${env.SHARED_CONNECTION_IDLE}"`);
  }
  const stateDir = absolute(env, 'STATE_DIR', '/mnt/state');
  // Files under it are named in sshfs -o values (split on commas) and in ssh_command (split on spaces).
  if (!/^[A-Za-z0-9._/@+-]+$/.test(stateDir)) {
    throw new Error(`STATE_DIR may hold only letters, digits and . _ / @ + - (no spaces or commas), not "${stateDir}"`);
  }
  const keysDir = absolute(env, 'KEYS_DIR', DEFAULT_KEYS_DIR);
  // Key file paths are placed in ssh -o values, which ssh splits on spaces.
  if (!/^[A-Za-z0-9._/@+-]+$/.test(keysDir)) {
    throw new Error(`KEYS_DIR may hold only letters, digits and . _ / @ + - (no spaces or commas), not "${keysDir}"`);
  }
  const within = (dir: string, parent: string) => dir === parent || dir.startsWith(`${parent}/`) || parent === '/';
  if (within(stateDir, keysDir) || within(keysDir, stateDir)) {
    // Volumes may name files in KEYS_DIR: it must never reach the plugin's own state (other volumes' keys, the journal).
    throw new Error(`KEYS_DIR (${keysDir}) and STATE_DIR (${stateDir}) must not contain one another`);
  }
  return {
    socketPath: absolute(env, 'SOCKET_PATH', '/run/docker/plugins/sshfs.sock'),
    listenFd: inheritedSocket(env, pid),
    stateDir,
    keysDir,
    mountRoot: absolute(env, 'MOUNT_ROOT', '/mnt/volumes'),
    debug: truthy(env.DEBUG),
    dryRun: truthy(env.DRY_RUN),
    mountTimeoutMs: Math.round(timeout * 1000),
    sharedConnectionIdleSeconds: idle,
  };
}
