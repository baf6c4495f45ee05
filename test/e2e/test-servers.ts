// SSH servers of the shapes users point the plugin at, for test/e2e/servers.e2e.test.ts: OpenSSH sshds with their own
// configuration (on ::1, chrooted SFTP-only, ssh-rsa host key only, a user CA, a bastion that only forwards) and a
// Dropbear server. Each runs in the foreground as a child of the test worker, under serversDir(DIR)/<name>, and is
// stopped by its pid; scripts/e2e-env.sh down stops any a crashed worker left.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { sleep } from './harness.js';

export interface TestServer {
  name: string;
  host: string;
  port: number;
  /** The server's public host key, "type base64". */
  hostKey: string;
  /** Everything the server logged so far. */
  log(): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A port free a moment ago on HOST (127.0.0.1 or ::1). */
export function freePortOn(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function run(file: string, args: string[]): Promise<string> {
  const r = await execa(file, args, { reject: false, all: true, input: '', timeout: 60_000 });
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(' ')} failed (exit ${r.exitCode}): ${r.all ?? ''}`);
  return r.stdout;
}

/**
 * Where the servers of the test environment in ENV_DIR keep their files: outside the checkout, in root-owned 0755
 * directories all the way up, because sshd reads authorized keys as the user (a 0700 directory above, such as the
 * test environment's, hides them) and ChrootDirectory refuses a path with a writable directory above it (a clone
 * under /tmp). Named by the environment's id, as scripts/e2e-env.sh names it (the first 10 hex digits of the
 * SHA-256 of ENV_DIR), so its `down` finds what a crashed worker left.
 */
export function serversDir(envDir: string): string {
  const top = '/var/lib/sshfs-e2e-servers';
  const dir = path.join(top, createHash('sha256').update(envDir).digest('hex').slice(0, 10));
  for (const d of [top, dir]) {
    mkdirSync(d, { recursive: true });
    chmodSync(d, 0o755); // whatever the umask
  }
  return dir;
}

/** A fresh root-owned 0755 directory (sshd's StrictModes and ChrootDirectory accept those). */
export function rootDir(dir: string): string {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  return dir;
}

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function startProcess(name: string, dir: string, host: string, port: number, hostKey: string, file: string, args: string[]): Promise<TestServer> {
  const logFile = path.join(dir, 'server.log');
  let output = '';
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  running.add(child);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.on('exit', () => {
    exited = true;
    running.delete(child);
    resolve();
  }));
  const onData = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    writeFileSync(logFile, output);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const deadline = Date.now() + 20_000;
  while (!(await portOpen(host, port))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not listen on [${host}]:${port}: ${output}`);
    }
    await sleep(50);
  }
  // The port answers: make sure it is this server (one that failed to bind exits at once).
  await sleep(200);
  if (exited) throw new Error(`${name} exited after starting (is [${host}]:${port} taken?): ${output}`);
  return {
    name,
    host,
    port,
    hostKey,
    log: () => output,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const done = await Promise.race([exit.then(() => true), sleep(10_000).then(() => false)]);
      if (!done) {
        child.kill('SIGKILL');
        await exit;
      }
    },
  };
}

export interface SshdOptions {
  /** 127.0.0.1 (default) or ::1. */
  listen?: string;
  /** A fixed port (e.g. 22, for sshcmd without a port option), waited for while another process holds it; default: a free one. */
  port?: number;
  /** Host key type for ssh-keygen -t (default ed25519). */
  hostKeyType?: 'ed25519' | 'rsa';
  /** Users whose authorized keys (public key lines) this sshd reads from a root-owned file of its own. */
  authorizedKeys?: Record<string, string>;
  /** More sshd_config lines (Match blocks last), or a function of the port the sshd gets. */
  config?: string[] | ((port: number) => string[]);
}

/** An OpenSSH sshd (`sshd -D`) with a configuration of its own, under DIR/servers/NAME. */
export async function startSshd(envDir: string, name: string, opts: SshdOptions = {}): Promise<TestServer> {
  const dir = rootDir(path.join(serversDir(envDir), name));
  const host = opts.listen ?? '127.0.0.1';
  const port = opts.port ?? (await freePortOn(host));
  if (opts.port !== undefined) {
    // Another run of this file may hold the fixed port for a few seconds: wait for it (bounded), then take it.
    const deadline = Date.now() + 60_000;
    while (await portOpen(host, port)) {
      if (Date.now() > deadline) throw new Error(`[${host}]:${port} stays taken by another process: cannot start ${name} there`);
      await sleep(500);
    }
  }
  const type = opts.hostKeyType ?? 'ed25519';
  const hostKeyFile = path.join(dir, `host_${type}_key`);
  await run('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', `sshfs-e2e-${name}`, '-f', hostKeyFile]);
  const keysDir = rootDir(path.join(dir, 'authorized_keys'));
  for (const [user, line] of Object.entries(opts.authorizedKeys ?? {})) {
    writeFileSync(path.join(keysDir, user), `${line.trim()}\n`, { mode: 0o644 });
  }
  const config = [
    `# sshd of the sshfs plugin's server matrix (test/e2e/servers.e2e.test.ts): ${name}`,
    `ListenAddress ${host.includes(':') ? `[${host}]` : host}:${port}`,
    `HostKey ${hostKeyFile}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${keysDir}/%u`,
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes yes',
    'PermitRootLogin no',
    'AllowAgentForwarding no',
    'X11Forwarding no',
    'PrintMotd no',
    'MaxStartups 100:30:200',
    'MaxSessions 50',
    'LogLevel VERBOSE',
    'Subsystem sftp internal-sftp',
    ...(typeof opts.config === 'function' ? opts.config(port) : (opts.config ?? [])),
  ];
  const configFile = path.join(dir, 'sshd_config');
  writeFileSync(configFile, `${config.join('\n')}\n`, { mode: 0o644 });
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  await run('/usr/sbin/sshd', ['-t', '-f', configFile]);
  const hostKey = readFileSync(`${hostKeyFile}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
  return startProcess(name, dir, host, port, hostKey, '/usr/sbin/sshd', ['-D', '-e', '-f', configFile]);
}

/**
 * A Dropbear server (Debian's dropbear-bin) on 127.0.0.1 for USER, who must exist; Dropbear reads only the user's own
 * ~/.ssh/authorized_keys, so PUBLIC_KEY is added there (and left for the next run: it only authorizes the tests' key).
 */
export async function startDropbear(envDir: string, name: string, user: string, publicKey: string): Promise<TestServer> {
  const dir = rootDir(path.join(serversDir(envDir), name));
  const port = await freePortOn('127.0.0.1');
  const hostKeyFile = path.join(dir, 'dropbear_ed25519_host_key');
  await run('dropbearkey', ['-t', 'ed25519', '-f', hostKeyFile]);
  const hostKey = (await run('dropbearkey', ['-y', '-f', hostKeyFile])).split('\n').find((l) => l.startsWith('ssh-ed25519 '))?.split(' ').slice(0, 2).join(' ') ?? '';
  const home = (await run('getent', ['passwd', user])).split(':')[5] ?? '';
  const sshDir = path.join(home, '.ssh');
  const authorized = path.join(sshDir, 'authorized_keys');
  const { uid, gid } = await ids(user);
  if (!existsSync(sshDir)) mkdirSync(sshDir, { mode: 0o700 });
  chownSync(sshDir, uid, gid);
  const line = publicKey.trim().split(' ').slice(0, 2).join(' ');
  const current = existsSync(authorized) ? readFileSync(authorized, 'utf8') : '';
  if (!current.includes(line)) writeFileSync(authorized, `${current}${line} sshfs-e2e-dropbear\n`, { mode: 0o600 });
  chownSync(authorized, uid, gid);
  chmodSync(authorized, 0o600);
  // -F foreground, -E log to stderr, -s no passwords, -w no root, -R never: the host key is ours.
  return startProcess(name, dir, '127.0.0.1', port, hostKey, '/usr/sbin/dropbear', [
    '-F', '-E', '-s', '-w', '-p', `127.0.0.1:${port}`, '-r', hostKeyFile, '-P', path.join(dir, 'dropbear.pid'),
  ]);
}

export async function ids(user: string): Promise<{ uid: number; gid: number }> {
  return { uid: Number(await run('id', ['-u', user])), gid: Number(await run('id', ['-g', user])) };
}

/** The known_hosts line for a server on a non-default port: `[host]:port type key`. */
export function knownHostsLine(server: TestServer): string {
  return `[${server.host}]:${server.port} ${server.hostKey}`;
}
