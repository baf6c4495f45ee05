// Helpers for the end-to-end tests: the environment written by scripts/e2e-env.sh, the docker CLI against the
// isolated dockerd, the plugin started in host ("legacy") mode, and checks on the sshd side and on the kernel's mounts.
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { expect, inject } from 'vitest';
import { parseMountInfo, unescapeMountField } from '../../adapter/host/proc-mounts.js';
import { dockerCliEnv, keyUserSshArgs, parseEnvFile, randomId, readE2EEnv, uniq, type E2EEnv } from '../../scripts/lib/e2e-env.js';
import { PLUGIN_SOCKET_DIR, spawnLegacyPlugin, type SpawnedPlugin, type SpawnOptions } from '../../scripts/lib/legacy-plugin.js';
import { pluginRequest, type PluginHttpResponse } from '../../scripts/lib/plugin-request.js';
import { endedPluginStandIn } from './ended-plugins.js';

export { parseEnvFile, PLUGIN_SOCKET_DIR, pluginRequest, randomId, uniq, type E2EEnv, type PluginHttpResponse };

declare module 'vitest' {
  export interface ProvidedContext {
    e2eDir: string;
  }
}

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The plugin's entry point; E2E_PLUGIN_ENTRY overrides it (e.g. to try another build). */
export const PLUGIN_ENTRY = process.env.E2E_PLUGIN_ENTRY || path.join(REPO_ROOT, 'dist', 'adapter', 'main.js');

// ---------------------------------------------------------------------------------------------------------------
// Environment

let fileDir: string | undefined;

/** Points this test file's harness at the environment in DIR (one the file brings up itself, e.g. the forky one). */
export function useE2EDir(dir: string): void {
  fileDir = dir;
}

/** The e2e work dir: the file's own (useE2EDir), else the global setup's, else $E2E_DIR, else <repo>/.e2e. */
export function e2eDir(): string {
  if (fileDir !== undefined) return fileDir;
  let provided: string | undefined;
  try {
    provided = inject('e2eDir');
  } catch {
    provided = undefined;
  }
  return provided || process.env.E2E_DIR || path.join(REPO_ROOT, '.e2e');
}

let cachedEnv: E2EEnv | undefined;

/** The environment of DIR (default: e2eDir()), read once. */
export function loadEnv(dir: string = e2eDir()): E2EEnv {
  if (cachedEnv?.dir !== dir) cachedEnv = readE2EEnv(dir);
  return cachedEnv;
}

// ---------------------------------------------------------------------------------------------------------------
// docker CLI

export interface CmdResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface DockerOptions {
  input?: string;
  /** Kill the CLI after this long (default 150 s: more than the daemon's own 2 min Create/Mount timeout). */
  timeoutMs?: number;
}

/** Runs the docker CLI against the test dockerd. Never throws; a timeout gives exitCode -1. */
export async function docker(args: string[], opts: DockerOptions = {}): Promise<CmdResult> {
  const env = loadEnv();
  const result = await execa('docker', args, {
    env: dockerCliEnv(env),
    reject: false,
    timeout: opts.timeoutMs ?? 150_000,
    input: opts.input ?? '',
    stripFinalNewline: true,
  });
  const stderr = result.timedOut
    ? `${result.stderr}\n[harness] docker ${args.join(' ')} timed out after ${opts.timeoutMs ?? 150_000} ms`
    : result.stderr;
  return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr };
}

/** Like docker(), but throws with the CLI's output when the exit code is not 0. Returns stdout. */
export async function dockerOk(args: string[], opts: DockerOptions = {}): Promise<string> {
  const r = await docker(args, opts);
  if (r.exitCode !== 0) {
    throw new Error(`docker ${args.join(' ')} exited ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r.stdout;
}

export interface VolumeInspect {
  Name: string;
  Driver: string;
  Mountpoint: string;
  CreatedAt?: string;
  Status?: Record<string, unknown> | null;
  Options?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
  Scope?: string;
}

/** `docker volume inspect NAME`, parsed; throws if it fails. */
export async function inspectVolume(name: string): Promise<VolumeInspect> {
  const out = await dockerOk(['volume', 'inspect', name]);
  const parsed = JSON.parse(out) as VolumeInspect[];
  const first = parsed[0];
  if (!first) throw new Error(`docker volume inspect ${name} returned nothing: ${out}`);
  return first;
}

/** Names of the volumes dockerd lists for DRIVER. */
export async function listVolumes(driver?: string): Promise<string[]> {
  const args = ['volume', 'ls', '--format', '{{.Name}}'];
  if (driver) args.push('--filter', `driver=${driver}`);
  const out = await dockerOk(args);
  return out.split('\n').filter((line) => line !== '');
}

/**
 * Tracks what a test file creates so afterAll can remove it even when a test failed halfway.
 * Containers are removed before volumes (a volume in use cannot be removed).
 */
export class Resources {
  readonly containers = new Set<string>();
  readonly volumes = new Set<string>();

  container(name: string): string {
    this.containers.add(name);
    return name;
  }

  volume(name: string): string {
    this.volumes.add(name);
    return name;
  }

  /** Removes everything tracked; returns the errors (a missing object is not an error). */
  async cleanup(): Promise<string[]> {
    const errors: string[] = [];
    for (const c of this.containers) {
      const r = await docker(['rm', '-f', c], { timeoutMs: 60_000 });
      if (r.exitCode !== 0 && !/No such container/i.test(r.stderr)) errors.push(`rm -f ${c}: ${r.stderr}`);
    }
    this.containers.clear();
    for (const v of this.volumes) {
      const r = await docker(['volume', 'rm', '-f', v], { timeoutMs: 90_000 });
      if (r.exitCode !== 0 && !/no such volume/i.test(r.stderr)) errors.push(`volume rm -f ${v}: ${r.stderr}`);
    }
    this.volumes.clear();
    return errors;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The plugin in host mode

/** The plugin as a test drives it (what the launcher gives, less the bench's own measures). */
export interface LegacyPlugin extends Omit<SpawnedPlugin, 'logFile' | 'spawnedAt' | 'exitStatus'> {
  /** stop(), for good: an ended plugin's stand-in answers dockerd on its socket from then on (see endedPluginStandIn). */
  end(): Promise<void>;
  /** Milliseconds from spawning the process to its first answer to /Plugin.Activate (polled every 25 ms). */
  readyMs: number;
}

export interface StartPluginOptions extends Pick<SpawnOptions, 'env' | 'wrapper' | 'socketDir'> {
  /** How long to wait for the socket to answer /Plugin.Activate (default 20 s). */
  readyTimeoutMs?: number;
}

/** A fresh plugin name: legacy plugin sockets share one directory with every dockerd on the machine. */
export function uniquePluginName(): string {
  return `sshfs-e2e-${randomId()}`;
}

/**
 * Starts `node dist/adapter/main.js` in host mode with SOCKET_PATH=/run/docker/plugins/<name>.sock
 * (scripts/lib/legacy-plugin.ts), and waits until it answers /Plugin.Activate. Starting again with the same name
 * reuses its STATE_DIR and MOUNT_ROOT (a restart).
 */
export async function startLegacyPlugin(name: string = uniquePluginName(), opts: StartPluginOptions = {}): Promise<LegacyPlugin> {
  if (!existsSync(PLUGIN_ENTRY)) throw new Error(`${PLUGIN_ENTRY} does not exist: run "npm run build"`);
  const spawned = spawnLegacyPlugin(name, { ...opts, dir: e2eDir(), entry: PLUGIN_ENTRY, cwd: REPO_ROOT, keysDir: loadEnv().keysDir });
  const plugin: LegacyPlugin = {
    ...spawned,
    readyMs: 0,
    async end() {
      await plugin.stop();
      await endedPluginStandIn(spawned.socketPath, e2eDir());
    },
  };
  const { socketPath } = spawned;
  const readyMs = opts.readyTimeoutMs ?? 20_000;
  const deadline = Date.now() + readyMs;
  let lastError = 'socket not created yet';
  for (;;) {
    const exited = spawned.exitStatus();
    if (exited) {
      throw new Error(`plugin ${name} exited before answering /Plugin.Activate (code ${exited.code}, signal ${exited.signal}). Output:\n${spawned.logs()}`);
    }
    if (existsSync(socketPath)) {
      try {
        const res = await pluginRequest(socketPath, '/Plugin.Activate', undefined, 2_000);
        const body = JSON.parse(res.body) as { Implements?: unknown };
        if (res.status === 200 && Array.isArray(body.Implements) && body.Implements.includes('VolumeDriver')) {
          plugin.readyMs = performance.now() - spawned.spawnedAt;
          return plugin;
        }
        lastError = `unexpected answer ${res.status} ${res.body}`;
      } catch (err) {
        lastError = String(err);
      }
    }
    if (Date.now() > deadline) {
      await plugin.kill().catch(() => undefined);
      throw new Error(`plugin ${name} did not answer /Plugin.Activate on ${socketPath} within ${readyMs} ms (${lastError}). Output:\n${spawned.logs()}`);
    }
    await sleep(25);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Volumes and containers through the docker CLI (shared with the fault suite)

/** What a docker command said, and the tail of the plugin's log: the message of a failed assertion. */
export function describeRun(r: CmdResult, plugin?: LegacyPlugin): string {
  return `exit ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\n--- plugin log (tail) ---\n${plugin?.logs().slice(-4000) ?? ''}`;
}

/** Expects the command to have exited 0 (the message says why not); returns its stdout. */
export function expectOk(r: CmdResult, plugin?: LegacyPlugin): string {
  expect(r.exitCode, describeRun(r, plugin)).toBe(0);
  return r.stdout;
}

/** Options for a volume on the test sshd as the key user, with the key in the keys directory (or KEYFILE). */
export function keyOpts(remoteDir: string, keyFile = loadEnv().keyFile): Record<string, string> {
  const env = loadEnv();
  return { sshcmd: `${env.keyUser}@${env.sshHost}:${remoteDir}`, port: String(env.sshPort), IdentityFile: keyFile };
}

/** Options for a volume on the test sshd as the password user (its password, or PASSWORD). */
export function pwOpts(remoteDir: string, password = loadEnv().password): Record<string, string> {
  const env = loadEnv();
  return { sshcmd: `${env.pwUser}@${env.sshHost}:${remoteDir}`, port: String(env.sshPort), password };
}

/** docker volume create -d PLUGIN -o k=v... NAME, tracked in RES for cleanup; the CLI's result (never throws). */
export function tryCreateVolume(res: Resources, plugin: LegacyPlugin, name: string, opts: Record<string, string>): Promise<CmdResult> {
  res.volume(name);
  const args = ['volume', 'create', '-d', plugin.name];
  for (const [k, v] of Object.entries(opts)) args.push('-o', `${k}=${v}`);
  return docker([...args, name]);
}

/** docker volume create as tryCreateVolume, expected to succeed; returns NAME. */
export async function createVolume(res: Resources, plugin: LegacyPlugin, name: string, opts: Record<string, string>): Promise<string> {
  expectOk(await tryCreateVolume(res, plugin, name, opts), plugin);
  return name;
}

/** docker volume rm NAME, expected to succeed; no longer tracked in RES. */
export async function removeVolume(res: Resources, name: string, plugin?: LegacyPlugin): Promise<void> {
  expectOk(await docker(['volume', 'rm', name]), plugin);
  res.volumes.delete(name);
}

/** docker run --rm --network none -v VOLUME:/data busybox sh -c SCRIPT */
export function runWith(volume: string, script: string, extra: string[] = []): Promise<CmdResult> {
  return docker(['run', '--rm', '--network', 'none', ...extra, '-v', `${volume}:/data`, loadEnv().image, 'sh', '-c', script]);
}

/** A detached container on VOLUME running SCRIPT (default: sleep), tracked in RES; returns its name. */
export async function startContainer(res: Resources, volume: string, script = 'exec sleep 600', extra: string[] = []): Promise<string> {
  const name = res.container(uniq('fault'));
  const r = await docker([
    'run', '-d', '--name', name, '--network', 'none', ...extra, '-v', `${volume}:/data`, loadEnv().image, 'sh', '-c', script,
  ]);
  if (r.exitCode !== 0) throw new Error(`docker run -d on ${volume} failed: ${r.stderr}`);
  return name;
}

/** docker rm -f NAMES; no longer tracked in RES. */
export async function removeContainers(res: Resources, names: string[]): Promise<void> {
  if (names.length === 0) return;
  const r = await docker(['rm', '-f', ...names], { timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new Error(`docker rm -f failed: ${r.stderr}`);
  for (const n of names) res.containers.delete(n);
}

// ---------------------------------------------------------------------------------------------------------------
// Mounts (the kernel's view)

export interface MountEntry {
  source: string;
  mountpoint: string;
  fstype: string;
  options: string;
}

/** The mounts of this process's mount namespace, or of another's through FILE (/proc/<pid>/mounts of a process in it). */
export async function readMounts(file = '/proc/self/mounts'): Promise<MountEntry[]> {
  const text = await readFile(file, 'utf8');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [source = '', mountpoint = '', fstype = '', options = ''] = line.split(' ');
      return {
        source: unescapeMountField(source),
        mountpoint: unescapeMountField(mountpoint),
        fstype,
        options,
      };
    });
}

/** fuse.sshfs mounts at or under DIR (of another mount namespace: see readMounts). */
export async function sshfsMountsUnder(dir: string, mountsFile?: string): Promise<MountEntry[]> {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return (await readMounts(mountsFile)).filter(
    (m) => m.fstype === 'fuse.sshfs' && (m.mountpoint === dir || m.mountpoint.startsWith(prefix)),
  );
}

/** The kernel read-ahead (KiB) of the filesystem mounted at PATH, from its /sys/class/bdi entry. */
export async function readAheadKbAt(mountpoint: string): Promise<number> {
  const entry = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8')).find((e) => e.mountPoint === mountpoint);
  if (entry === undefined) throw new Error(`nothing is mounted at ${mountpoint}`);
  return Number((await readFile(`/sys/class/bdi/${entry.device}/read_ahead_kb`, 'utf8')).trim());
}

/** Whether a fuse.sshfs filesystem is mounted exactly at PATH. */
export async function isSshfsMounted(mountpoint: string): Promise<boolean> {
  return (await readMounts()).some((m) => m.fstype === 'fuse.sshfs' && m.mountpoint === mountpoint);
}

// ---------------------------------------------------------------------------------------------------------------
// The sshd side (the remote dirs are local directories, so plain fs access works)

/** Path of REL inside a remote dir (refuses to escape it). */
export function remotePath(remoteDir: string, rel: string): string {
  const p = path.resolve(remoteDir, rel);
  if (p !== remoteDir && !p.startsWith(`${remoteDir}/`)) throw new Error(`${rel} escapes ${remoteDir}`);
  return p;
}

export async function readRemote(remoteDir: string, rel: string): Promise<string> {
  return readFile(remotePath(remoteDir, rel), 'utf8');
}

export function remoteExists(remoteDir: string, rel: string): boolean {
  return existsSync(remotePath(remoteDir, rel));
}

/** Creates a fresh subdirectory of a remote dir, owned by USER (as if the user made it over ssh). */
export async function makeRemoteSubdir(remoteDir: string, user: string, prefix = 'vol'): Promise<string> {
  const sub = remotePath(remoteDir, `${prefix}-${randomId()}`);
  const r = await execa('install', ['-d', '-m', '0755', '-o', user, '-g', user, sub], { reject: false });
  if (r.exitCode !== 0) throw new Error(`cannot create ${sub}: ${r.stderr}`);
  return sub;
}

/** Runs a shell command as USER on the sshd's machine (via su: works for the password user too). */
export async function runAsUser(user: string, command: string): Promise<CmdResult> {
  const r = await execa('su', ['-s', '/bin/sh', '-c', command, user], { reject: false, timeout: 30_000, input: '' });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs COMMAND over a real ssh login as the key user (checks the sshd itself). */
export async function sshAsKeyUser(command: string): Promise<CmdResult> {
  const env = loadEnv();
  const r = await execa('ssh', [...keyUserSshArgs(env, ['-o', 'ConnectTimeout=10']), command], { reject: false, timeout: 30_000, input: '' });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

// ---------------------------------------------------------------------------------------------------------------
// Misc

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls CHECK until it returns true; throws DESCRIPTION (plus the last error) after TIMEOUTMS. */
export async function waitFor(description: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = ` (last error: ${String(err)})`;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}${last}`);
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Processes (for fault tests: what runs, what is defunct, whose child it is)

export interface ProcInfo {
  pid: number;
  ppid: number;
  /** R, S, D, Z (defunct), T... */
  state: string;
  comm: string;
  /** argv joined with spaces ('' for a zombie or a kernel thread). */
  cmdline: string;
}

/** A snapshot of /proc. Processes that end while it is taken are left out. */
export async function listProcesses(): Promise<ProcInfo[]> {
  const pids = (await readdir('/proc')).filter((d) => /^[0-9]+$/.test(d));
  const out = await Promise.all(
    pids.map(async (pid): Promise<ProcInfo | undefined> => {
      try {
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so split at the last ')'.
        const close = stat.lastIndexOf(')');
        const comm = stat.slice(stat.indexOf('(') + 1, close);
        const [state = '?', ppid = '0'] = stat.slice(close + 2).split(' ');
        const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ').trim();
        return { pid: Number(pid), ppid: Number(ppid), state, comm, cmdline };
      } catch {
        return undefined;
      }
    }),
  );
  return out.filter((p): p is ProcInfo => p !== undefined);
}

/** Every descendant of PID in a snapshot (not PID itself). */
export function descendantsOf(procs: ProcInfo[], pid: number): ProcInfo[] {
  const out: ProcInfo[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift();
    for (const p of procs) {
      if (p.ppid === parent) {
        out.push(p);
        queue.push(p.pid);
      }
    }
  }
  return out;
}

/** Live (not defunct) sshfs and ssh processes whose command line mentions NEEDLE (a mountpoint, a state dir...). */
export async function sshProcessesMentioning(needle: string): Promise<ProcInfo[]> {
  return (await listProcesses()).filter(
    (p) => p.state !== 'Z' && (p.comm === 'sshfs' || p.comm === 'ssh') && p.cmdline.includes(needle),
  );
}

/** How many mounts (of any type) sit exactly on MOUNTPOINT: 2 or more means mounts stacked on each other. */
export async function mountCountAt(mountpoint: string): Promise<number> {
  return (await readMounts()).filter((m) => m.mountpoint === mountpoint).length;
}

// ---------------------------------------------------------------------------------------------------------------
// Stopping and starting the environment's daemons (scripts/e2e-env.sh keeps their data and settings)

const ENV_SCRIPT = path.join(REPO_ROOT, 'scripts', 'e2e-env.sh');

async function envScript(command: string): Promise<void> {
  const dir = e2eDir();
  const r = await execa('bash', [ENV_SCRIPT, command, dir], { reject: false, all: true, timeout: 120_000, input: '' });
  if (r.exitCode !== 0) throw new Error(`scripts/e2e-env.sh ${command} ${dir} failed (exit ${r.exitCode}):\n${r.all ?? ''}`);
}

/** Stops the test dockerd (SIGTERM: it stops containers and unmounts their volumes first). */
export const stopDockerd = (): Promise<void> => envScript('dockerd-stop');
/** Starts the test dockerd again with the same data root, and waits until it answers. */
export const startDockerd = (): Promise<void> => envScript('dockerd-start');
/** Stops the test sshd and every connection it serves. */
export const stopSshd = (): Promise<void> => envScript('sshd-stop');
/** Starts the test sshd again on the same port with the same host key. */
export const startSshd = (): Promise<void> => envScript('sshd-start');

/** The pid of the test sshd's listener. */
export function sshdPid(): number {
  const pid = Number(readFileSync(path.join(e2eDir(), 'sshd.pid'), 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error('no sshd.pid');
  return pid;
}

/**
 * Drops every ssh connection the test sshd serves, as a network blink or a server-side kill would: SIGKILL to each
 * per-connection sshd process. Returns how many processes were killed.
 */
export async function dropSshdConnections(): Promise<number> {
  const listener = sshdPid();
  const children = descendantsOf(await listProcesses(), listener).filter((p) => p.state !== 'Z');
  for (const p of children) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  return children.length;
}

/**
 * Ends the plugin's shared ssh logins (the masters listening in STATE_DIR/cm), as a reinstalled or restarted server
 * would: the next Mount logs in afresh and checks the host key again.
 */
export async function closeSharedLogins(stateDir: string): Promise<void> {
  const dir = path.join(stateDir, 'cm');
  if (!existsSync(dir)) return;
  for (const name of await readdir(dir)) {
    await execa('ssh', ['-F', 'none', '-O', 'exit', '-o', `ControlPath=${path.join(dir, name)}`, 'shared-connection'], { reject: false });
  }
}
