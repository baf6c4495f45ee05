// What the release tests need besides the shared environment: a real registry (Debian's docker-registry, i.e. the
// open-source distribution registry 2.8) on 127.0.0.1 with TLS and htpasswd logins, and a second, fresh dockerd to
// install the pushed plugin on. Both are processes started here and stopped by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { execa } from 'execa';
import { freePort } from '../../scripts/lib/tcp.js';
import { REPO_ROOT, readMounts, sleep } from './harness.js';

/** Installs Debian packages the release tests use (through the project's script, which skips installed ones). */
export async function ensurePackages(...packages: string[]): Promise<void> {
  const r = await execa('bash', [path.join(REPO_ROOT, 'scripts', 'install-system-deps.sh'), ...packages], {
    reject: false,
    all: true,
    input: '',
  });
  if (r.exitCode !== 0) throw new Error(`installing ${packages.join(' ')} failed:\n${r.all ?? ''}`);
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, 'SIGTERM');
  const timer = sleep(graceMs).then(() => 'timeout' as const);
  if ((await Promise.race([exited.then(() => 'exited' as const), timer])) === 'timeout') {
    process.kill(child.pid, 'SIGKILL');
    await exited;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Registry

export interface Registry {
  /** host:port, as in plugin references */
  host: string;
  user: string;
  password: string;
  /** The registry's self-signed certificate (PEM) and its key. */
  certFile: string;
  keyFile: string;
  /** GET PATH with the account's credentials; the body. */
  get(path: string): Promise<string>;
  stop(): Promise<void>;
}

/** GET https://host/v2/ without credentials: the status code (401 once the registry serves). */
async function v2Status(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/v2/', rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

export async function startRegistry(dir: string): Promise<Registry> {
  await ensurePackages('docker-registry', 'apache2-utils', 'openssl');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(path.join(dir, 'data'), { recursive: true, mode: 0o700 });
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  await execa('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
  ], { input: '' });
  const user = 'e2e-publisher';
  const password = `pw-${Math.random().toString(36).slice(2)}`;
  // -i: the password comes on stdin, not in argv; -B: bcrypt, the only hash the registry accepts.
  const htpasswd = await execa('htpasswd', ['-B', '-i', '-n', user], { input: password });
  writeFileSync(path.join(dir, 'htpasswd'), `${htpasswd.stdout.trim()}\n`, { mode: 0o600 });
  const port = await freePort();
  writeFileSync(
    path.join(dir, 'config.yml'),
    [
      'version: 0.1',
      'log:',
      '  level: info',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${path.join(dir, 'data')}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      `  secret: ${Math.random().toString(36).slice(2)}`,
      '  tls:',
      `    certificate: ${certFile}`,
      `    key: ${keyFile}`,
      'auth:',
      '  htpasswd:',
      '    realm: sshfs-e2e',
      `    path: ${path.join(dir, 'htpasswd')}`,
      '',
    ].join('\n'),
  );
  const logFd = openSync(path.join(dir, 'registry.log'), 'a');
  const child = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', logFd, logFd] });
  const registry: Registry = {
    host: `127.0.0.1:${port}`,
    user,
    password,
    certFile,
    keyFile,
    get: (urlPath) =>
      new Promise((resolve, reject) => {
        const auth = Buffer.from(`${user}:${password}`).toString('base64');
        const req = https.get(
          { host: '127.0.0.1', port, path: urlPath, ca: readFileSync(certFile), headers: { Authorization: `Basic ${auth}` } },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (body += d));
            res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${urlPath}: ${res.statusCode} ${body}`))));
          },
        );
        req.on('error', reject);
      }),
    stop: () => stopChild(child, 10_000),
  };
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    if ((await v2Status(port)) === 401) return registry;
    await sleep(200);
  }
  await registry.stop();
  throw new Error(`the registry did not serve on ${registry.host}:\n${readFileSync(path.join(dir, 'registry.log'), 'utf8').slice(-2000)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// A registry that answers as Harbor does: 401 without credentials, 403 for a logged-in account without push rights

export interface DenyingProxy {
  /** host:port: another name for the same registry */
  host: string;
  /** Pushes (POST/PUT/PATCH/DELETE) that were answered 403. */
  denied(): number;
  stop(): Promise<void>;
}

/**
 * A TLS proxy in front of REGISTRY (its certificate; dockerd treats 127.0.0.0/8 as insecure, so it is not checked)
 * that passes everything through, the registry's own 401 for requests without credentials included, except writes to
 * the repositories under /v2/DENIEDNAMESPACE/: those get what Harbor answers an account that may pull but not push
 * there, 403 with the DENIED error code.
 */
export async function startDenyingProxy(registry: Registry, deniedNamespace: string): Promise<DenyingProxy> {
  const [regHost, regPort] = registry.host.split(':');
  let denied = 0;
  const server = https.createServer({ cert: readFileSync(registry.certFile), key: readFileSync(registry.keyFile) }, (req, res) => {
    const write = req.method !== 'GET' && req.method !== 'HEAD';
    if (write && (req.url ?? '').startsWith(`/v2/${deniedNamespace}/`) && req.headers.authorization !== undefined) {
      denied++;
      req.resume();
      res.writeHead(403, { 'Content-Type': 'application/json; charset=utf-8', 'Docker-Distribution-Api-Version': 'registry/2.0' });
      res.end(JSON.stringify({ errors: [{ code: 'DENIED', message: 'requesting access to the resource is denied' }] }));
      return;
    }
    const upstream = https.request(
      { host: regHost, port: Number(regPort), method: req.method, path: req.url, headers: req.headers, rejectUnauthorized: false },
      (up) => {
        // Upload locations name the registry's own address: rewrite them to the proxy's, as a reverse proxy does.
        const headers = { ...up.headers };
        if (typeof headers.location === 'string') headers.location = headers.location.replace(registry.host, `127.0.0.1:${port}`);
        res.writeHead(up.statusCode ?? 502, headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${port}`,
    denied: () => denied,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// A second dockerd (fresh data root), the way the shared environment runs its own

export interface Dockerd {
  host: string;
  dir: string;
  logFile: string;
  docker(args: string[], opts?: { input?: string; env?: Record<string, string> }): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

export async function startDockerd(dir: string): Promise<Dockerd> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Socket paths under the exec root must stay short (108 bytes): keep it in /tmp like the shared environment's.
  const execRoot = mkdtempSync('/tmp/sshfs-e2e2.');
  const sock = path.join(dir, 'docker.sock');
  const logFile = path.join(dir, 'dockerd.log');
  writeFileSync(path.join(dir, 'daemon.json'), '{}\n');
  const logFd = openSync(logFile, 'a');
  const child = spawn(
    'dockerd',
    [
      '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-masq=false',
      '--config-file', path.join(dir, 'daemon.json'),
      '--data-root', path.join(dir, 'docker-data'),
      '--exec-root', execRoot,
      '--pidfile', path.join(dir, 'dockerd.pid'),
      '--containerd-namespace', 'sshfs-e2e2',
      '--containerd-plugins-namespace', 'sshfs-e2e2-plugins',
      '-H', `unix://${sock}`,
    ],
    { stdio: ['ignore', logFd, logFd], detached: true },
  );
  const run: Dockerd['docker'] = async (args, opts = {}) => {
    const r = await execa('docker', args, {
      env: { DOCKER_HOST: `unix://${sock}`, DOCKER_CONTEXT: '', DOCKER_CLI_HINTS: 'false', ...opts.env },
      reject: false,
      input: opts.input ?? '',
      timeout: 300_000,
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  const stop = async (): Promise<void> => {
    await stopChild(child, 40_000);
    // What dockerd left mounted (overlay, plugin rootfs, shm): under its data root or exec root, deepest first.
    const left = (await readMounts())
      .map((m) => m.mountpoint)
      .filter((mp) => mp.startsWith(`${dir}/`) || mp.startsWith(`${execRoot}/`))
      .sort((a, b) => b.length - a.length);
    for (const mp of left) await execa('umount', ['-l', mp], { reject: false });
    rmSync(execRoot, { recursive: true, force: true });
  };
  for (let i = 0; i < 240; i++) {
    if (child.exitCode !== null) break;
    if ((await run(['version', '--format', '{{.Server.Version}}'])).exitCode === 0) {
      return { host: `unix://${sock}`, dir, logFile, docker: run, stop };
    }
    await sleep(250);
  }
  await stop();
  throw new Error(`the second dockerd did not start:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Emulation of another architecture: qemu user mode registered with binfmt_misc

const BINFMT = '/proc/sys/fs/binfmt_misc';

/**
 * Registers qemu-ARCH-static for ARCH's ELF binaries under a unique name, with flag F (the kernel opens the
 * interpreter now, so it also runs inside containers' mount namespaces). Returns the undo: unregister, and unmount
 * binfmt_misc when it was mounted here, leaving the machine as found.
 */
export async function registerQemu(arch: 'aarch64'): Promise<() => Promise<void>> {
  await ensurePackages('qemu-user-static');
  let mountedHere = false;
  if (!existsSync(path.join(BINFMT, 'register'))) {
    await execa('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT]);
    mountedHere = true;
  }
  // Debian's entry for this architecture: ":name:M:offset:magic:mask:interpreter:flags" (colons in magic are escaped).
  const fields = readFileSync(`/usr/lib/binfmt.d/qemu-${arch}.conf`, 'utf8').trim().split(':');
  const [magic, mask] = [fields[4], fields[5]];
  if (!magic || !mask) throw new Error(`cannot read the ELF magic from /usr/lib/binfmt.d/qemu-${arch}.conf`);
  const name = `sshfs-e2e-${arch}-${process.pid}`;
  const undo = async (): Promise<void> => {
    if (existsSync(path.join(BINFMT, name))) writeFileSync(path.join(BINFMT, name), '-1');
    if (mountedHere) await execa('umount', [BINFMT], { reject: false });
  };
  try {
    writeFileSync(path.join(BINFMT, 'register'), `:${name}:M::${magic}:${mask}:/usr/bin/qemu-${arch}-static:F`);
  } catch (e) {
    await undo();
    throw e;
  }
  return undo;
}
