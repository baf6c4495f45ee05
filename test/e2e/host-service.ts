// The plugin as a host service, as `npm run host:install` installs it (scripts/host-install.sh), into a directory tree
// of a test (the HOST_* variables) so the machine's /usr/local, /etc and /var/lib stay untouched; and its unit's
// ExecStart started the way systemd would start it (systemd is not PID 1 on these machines). Shared by the
// host-install and quick-start tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { PLUGIN_SOCKET_DIR, REPO_ROOT, parseEnvFile, pluginRequest, sleep, waitFor } from './harness.js';

export interface HostPaths {
  HOST_PREFIX: string;
  HOST_CONFIG_DIR: string;
  HOST_STATE_DIR: string;
  HOST_MOUNT_ROOT: string;
  HOST_UNIT_DIR: string;
  HOST_SOCKET: string;
}

/** Where an install under ROOT puts everything, the socket of DRIVER included (/run/docker/plugins/DRIVER.sock). */
export function hostPaths(root: string, driver: string): HostPaths {
  return {
    HOST_PREFIX: path.join(root, 'usr/local/lib/docker-volume-sshfs'),
    HOST_CONFIG_DIR: path.join(root, 'etc/docker-volume-sshfs'),
    HOST_STATE_DIR: path.join(root, 'var/lib/docker-volume-sshfs'),
    HOST_MOUNT_ROOT: path.join(root, 'run/docker-volume-sshfs/volumes'),
    HOST_UNIT_DIR: path.join(root, 'etc/systemd/system'),
    HOST_SOCKET: path.join(PLUGIN_SOCKET_DIR, `${driver}.sock`),
  };
}

/** scripts/host-install.sh STEP with PATHS (dist/ as the global setup built it). */
export function hostScript(step: 'install' | 'remove', paths: HostPaths, extra: Record<string, string> = {}) {
  return execa('bash', [path.join(REPO_ROOT, 'scripts', 'host-install.sh'), step], {
    env: { ...paths, HOST_SKIP_APP_BUILD: '1', ...extra },
    reject: false,
    all: true,
    input: '',
    timeout: 600_000,
  });
}

/** KEY=value of a unit file (the first when repeated). */
export function unitValue(file: string, key: string): string {
  const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${key}=`));
  if (line === undefined) throw new Error(`${file} has no ${key}=`);
  return line.slice(key.length + 1);
}

/** systemd's PATH for services. */
const SYSTEMD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The installed service, started and stopped as systemd would. */
export class HostService {
  private child: ChildProcess | undefined;
  private output = '';

  constructor(readonly paths: HostPaths) {}

  unitFile(ext: 'service' | 'socket'): string {
    return path.join(this.paths.HOST_UNIT_DIR, `docker-volume-sshfs.${ext}`);
  }

  /** Everything the service's processes wrote, and the command lines that started them. */
  log(): string {
    return this.output;
  }

  /**
   * The service's ExecStart as systemd would start it: the EnvironmentFile's variables with systemd's PATH, the
   * CapabilityBoundingSet and NoNewPrivileges (setpriv); with the socket unit, its ListenStream passed as fd 3
   * (systemd-socket-activate sets LISTEN_FDS/LISTEN_PID). Resolves once the plugin answers /Plugin.Activate.
   */
  async start(withSocketUnit: boolean, extraEnv: Record<string, string> = {}): Promise<void> {
    const service = this.unitFile('service');
    const fileEnv = parseEnvFile(readFileSync(unitValue(service, 'EnvironmentFile'), 'utf8'));
    const caps = unitValue(service, 'CapabilityBoundingSet')
      .split(/\s+/)
      .map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`);
    if (unitValue(service, 'NoNewPrivileges') !== 'yes') throw new Error(`${service} lost NoNewPrivileges=yes`);
    const env = { ...fileEnv, ...extraEnv, PATH: SYSTEMD_PATH };
    // systemd-socket-activate passes on only the variables named with -E (systemd passes the EnvironmentFile's).
    const activate = withSocketUnit
      ? ['systemd-socket-activate', '-l', unitValue(this.unitFile('socket'), 'ListenStream'), ...Object.keys(env).flatMap((k) => ['-E', k])]
      : [];
    const argv = ['setpriv', '--no-new-privs', '--bounding-set', `-all,${caps.join(',')}`, ...activate, ...unitValue(service, 'ExecStart').split(' ')];
    this.output += `[test] starting ${argv.join(' ')}\n`;
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child = child;
    const socket = this.paths.HOST_SOCKET;
    // The first request starts a socket-activated plugin; either way it must answer Activate.
    await waitFor(
      `the installed plugin to answer on ${socket}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`the installed plugin exited (${child.exitCode}):\n${this.output}`);
        if (!existsSync(socket)) return false;
        try {
          return (await pluginRequest(socket, '/Plugin.Activate', undefined, 5_000)).status === 200;
        } catch {
          return false;
        }
      },
      60_000,
      250,
    );
  }

  /** True once start() ran, even if the plugin has stopped since. */
  started(): boolean {
    return this.child !== undefined;
  }

  /** SIGTERM to the main process only, as KillMode=process does; SIGKILL after 20 s; waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(20_000).then(() => child.kill('SIGKILL'))]);
    await exited;
  }
}
