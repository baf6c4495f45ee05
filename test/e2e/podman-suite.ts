// The plugin as Podman's volume plugin, for each tested Podman (Debian 12's 4.3 in podman.e2e.test.ts, Debian 13's
// 5.4 in test/trixie/podman5.trixie.test.ts): podman (rootful) with a test-owned containers.conf (CONTAINERS_CONF)
// naming the plugin's socket in [engine.volume_plugins], and its own --root/--runroot/--tmpdir under the e2e dir, so
// the machine's /etc/containers and /var/lib/containers are never touched. The plugin runs in host ("legacy") mode,
// as the README tells Podman users to run it. The commands are the README's Podman section.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type LegacyPlugin,
  docker,
  loadEnv,
  makeRemoteSubdir,
  randomId,
  readMounts,
  readRemote,
  remoteExists,
  sshfsMountsUnder,
} from './harness.js';

/** A Podman to test, and where it runs. */
export interface PodmanEngine {
  /** Names the describe block, e.g. "Podman 4.3". */
  label: string;
  /** What runs a command where this podman lives: [] on this machine, or a namespace's entry (nsenter...). */
  prefix: string[];
  /** The version `podman --version` must report (a prefix, e.g. "4.3."). */
  version: string;
  /** Lines for containers.conf's [engine] table that this Podman needs on these machines. */
  engineConf: string[];
  /** Starts the plugin in host mode, where this podman reaches its socket. */
  startPlugin: () => Promise<LegacyPlugin>;
  /** Where the plugin's mounts show (readMounts' FILE): default this process's mount table. */
  mountsFile?: string;
}

const IMAGE = 'localhost/e2e-busybox:latest';

export function describePodman(engine: PodmanEngine): void {
  const env = loadEnv();
  let plugin: LegacyPlugin;
  let dir: string;
  let confFile: string;
  const mounts = (under: string): ReturnType<typeof sshfsMountsUnder> => sshfsMountsUnder(under, engine.mountsFile);

  interface PodmanResult {
    exitCode: number;
    stdout: string;
    stderr: string;
    ms: number;
  }

  /** Runs podman against the test's own storage and containers.conf. Never throws. */
  async function podman(args: string[], opts: { input?: string | Uint8Array; conf?: string } = {}): Promise<PodmanResult> {
    const started = performance.now();
    const [file = 'podman', ...pre] = [...engine.prefix, 'podman'];
    const r = await execa(
      file,
      [...pre, '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run'), '--tmpdir', path.join(dir, 'tmp'), ...args],
      {
        env: { CONTAINERS_CONF: opts.conf ?? confFile },
        reject: false,
        timeout: 120_000,
        input: opts.input ?? '',
        stripFinalNewline: true,
      },
    );
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), ms: performance.now() - started };
  }

  async function podmanOk(args: string[], opts: { input?: string | Uint8Array; conf?: string } = {}): Promise<string> {
    const r = await podman(args, opts);
    if (r.exitCode !== 0) {
      throw new Error(`podman ${args.join(' ')} exited ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\n--- plugin log (tail) ---\n${plugin?.logs().slice(-3000)}`);
    }
    return r.stdout;
  }

  interface PodmanVolume {
    Name: string;
    Driver: string;
    Status?: Record<string, unknown>;
    Options?: Record<string, string>;
    Timeout?: number;
  }

  async function inspect(name: string, conf?: string): Promise<PodmanVolume> {
    const parsed = JSON.parse(await podmanOk(['volume', 'inspect', name], { conf })) as PodmanVolume[];
    const first = parsed[0];
    if (!first) throw new Error(`podman volume inspect ${name} returned nothing`);
    return first;
  }

  /** A containers.conf for this test: the plugin's socket, no default ulimits (refused on these machines), no systemd. */
  function writeConf(file: string, extraEngine = ''): void {
    writeFileSync(
      file,
      [
        '[containers]',
        'default_ulimits = []',
        '[engine]',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        ...engine.engineConf,
        extraEngine,
        '[engine.volume_plugins]',
        `${plugin.name} = "${plugin.socketPath}"`,
        '',
      ].join('\n'),
    );
  }

  /** The duration of the plugin's last Mount answer for VOLUME, from its DEBUG log line. */
  function lastMountMs(volume: string): number | undefined {
    const re = new RegExp(`/VolumeDriver\\.Mount Name="${volume}" .*-> ok \\(([0-9.]+) ms\\)`, 'g');
    let last: number | undefined;
    for (const m of plugin.logs().matchAll(re)) last = Number(m[1]);
    return last;
  }

  describe(`${engine.label} (rootful) with the plugin as its volume plugin`, () => {
    beforeAll(async () => {
      dir = path.join(env.dir, `podman-${randomId()}`);
      for (const sub of ['root', 'run', 'tmp']) mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o700 });
      plugin = await engine.startPlugin();
      confFile = path.join(dir, 'containers.conf');
      writeConf(confFile);
      const version = await podman(['--version']);
      if (version.exitCode !== 0) throw new Error(`podman does not run: ${version.stderr} (scripts/install-system-deps.sh installs it)`);
      expect(version.stdout).toMatch(new RegExp(`^podman version ${engine.version.replaceAll('.', '\\.')}`));
      // Podman needs an image too: the e2e busybox image, exported from the test dockerd.
      const cid = `podman-src-${randomId()}`;
      const created = await docker(['create', '--name', cid, env.image, 'true']);
      expect(created.exitCode, created.stderr).toBe(0);
      try {
        const exported = await execa('docker', ['export', cid], {
          env: { DOCKER_HOST: env.dockerHost, DOCKER_CONTEXT: '' },
          encoding: 'buffer',
          maxBuffer: 64 * 1024 * 1024,
        });
        const imported = await podman(['import', '--change', 'CMD ["sh"]', '-', IMAGE], { input: exported.stdout });
        expect(imported.exitCode, imported.stderr).toBe(0);
      } finally {
        await docker(['rm', '-f', cid]);
      }
    });

    afterAll(async () => {
      if (!dir) return;
      // Containers first (they hold references), then volumes, then podman's own storage mounts.
      await podman(['rm', '-af']);
      const vols = await podman(['volume', 'ls', '-q']);
      for (const v of vols.stdout.split('\n').filter(Boolean)) await podman(['volume', 'rm', '-f', v]);
      const left = plugin ? await mounts(plugin.mountRoot) : [];
      await plugin?.stop();
      for (const m of (await readMounts(engine.mountsFile)).filter((e) => e.mountpoint.startsWith(`${dir}/`)).reverse()) {
        const [file = 'umount', ...pre] = [...engine.prefix, 'umount'];
        await execa(file, [...pre, '-l', m.mountpoint], { reject: false });
      }
      rmSync(dir, { recursive: true, force: true });
      expect(left, 'sshfs mounts left after podman volume rm').toEqual([]);
    });

    it('creates, mounts, inspects and removes a volume; the data stays on the server', async () => {
      const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'podman');
      const name = `pv-${randomId()}`;
      // README: podman volume create --driver sshfs -o sshcmd=... -o IdentityFile=... data
      await podmanOk([
        'volume', 'create', '--driver', plugin.name,
        '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remote}`,
        '-o', `port=${env.sshPort}`,
        '-o', `IdentityFile=${env.keyFile}`,
        name,
      ]);
      const before = await inspect(name);
      expect(before.Driver).toBe(plugin.name);
      expect(before.Status?.mounted).toBe(false);
      expect(String(before.Status?.remote)).toContain(`${env.keyUser}@${env.sshHost}`);
      // Podman's default: 5 s for every request to a volume plugin.
      expect(before.Timeout).toBe(5);

      // README: podman run --rm -v data:/data busybox ...
      const write = await podman(['run', '--rm', '--network', 'none', '-v', `${name}:/data`, IMAGE, 'sh', '-c', 'echo from-podman > /data/hello.txt && cat /data/hello.txt']);
      expect(write.exitCode, `${write.stderr}\n${plugin.logs().slice(-3000)}`).toBe(0);
      expect(write.stdout).toBe('from-podman');
      expect(await readRemote(remote, 'hello.txt')).toBe('from-podman\n');
      const mountMs = lastMountMs(name);
      console.log(`[podman] Mount answered in ${mountMs?.toFixed(0)} ms (Podman waits 5000 ms); podman run took ${write.ms.toFixed(0)} ms`);
      expect(mountMs, 'the plugin logged no Mount for the volume').toBeDefined();

      // A second container sees the file; while it runs the mount is there and inspect says so.
      const cname = `pc-${randomId()}`;
      await podmanOk(['run', '-d', '--name', cname, '--network', 'none', '-v', `${name}:/data`, IMAGE, 'sleep', '300']);
      const during = await inspect(name);
      expect(during.Status?.mounted).toBe(true);
      expect(await mounts(plugin.mountRoot)).toHaveLength(1);
      expect(await podmanOk(['exec', cname, 'cat', '/data/hello.txt'])).toBe('from-podman');
      await podmanOk(['rm', '-f', '-t', '0', cname]);
      expect(await mounts(plugin.mountRoot)).toEqual([]);

      // README: podman volume rm data (the remote files stay)
      await podmanOk(['volume', 'rm', name]);
      expect((await podmanOk(['volume', 'ls', '-q'])).split('\n')).not.toContain(name);
      expect(remoteExists(remote, 'hello.txt')).toBe(true);
      const get = await podman(['volume', 'inspect', name]);
      expect(get.exitCode).not.toBe(0);
    });

    it('takes volume_plugin_timeout from containers.conf and -o o=timeout=N per volume, neither reaching the plugin', async () => {
      const slowConf = path.join(dir, 'containers-slow.conf');
      // README: [engine] volume_plugin_timeout = 30
      writeConf(slowConf, 'volume_plugin_timeout = 30');
      const a = `pv-${randomId()}`;
      const b = `pv-${randomId()}`;
      const sshcmd = `${env.keyUser}@${env.sshHost}:${env.keyRemoteDir}`;
      await podmanOk(['volume', 'create', '--driver', plugin.name, '-o', `sshcmd=${sshcmd}`, '-o', `port=${env.sshPort}`, a], { conf: slowConf });
      expect((await inspect(a, slowConf)).Timeout).toBe(30);
      // README: podman volume create --driver sshfs -o o=timeout=30 ...
      await podmanOk(['volume', 'create', '--driver', plugin.name, '-o', `sshcmd=${sshcmd}`, '-o', `port=${env.sshPort}`, '-o', 'o=timeout=30', b]);
      const vb = await inspect(b);
      expect(vb.Timeout).toBe(30);
      // The plugin got only its own options (it refuses unknown ones, so "o" never reached it).
      expect(plugin.logs()).toMatch(new RegExp(`/VolumeDriver\\.Create Name="${b}" Opts keys=\\[port,sshcmd\\] -> ok`));
      await podmanOk(['volume', 'rm', a, b]);
    });

    it("passes the plugin's error through when a mount fails, and leaves nothing mounted", async () => {
      const name = `pv-${randomId()}`;
      // Right server, wrong user's key: ssh refuses the login at once.
      await podmanOk([
        'volume', 'create', '--driver', plugin.name,
        '-o', `sshcmd=${env.pwUser}@${env.sshHost}:${env.pwRemoteDir}`,
        '-o', `port=${env.sshPort}`,
        '-o', `IdentityFile=${env.keyFile}`,
        name,
      ]);
      const r = await podman(['run', '--rm', '--network', 'none', '-v', `${name}:/data`, IMAGE, 'true']);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(/permission denied|authentication/i);
      expect(await mounts(plugin.mountRoot)).toEqual([]);
      const v = await inspect(name);
      expect(v.Status?.mounted).toBe(false);
      expect(String(v.Status?.lastError ?? '')).not.toBe('');
      await podmanOk(['volume', 'rm', name]);
    });

    // Docker beside Podman on one plugin socket: run with this machine's pair (the namespace's dockerd of the trixie
    // tests is covered by their own in-use test).
    it.skipIf(engine.prefix.length > 0)(
      "refuses Podman's Remove of a volume a Docker container uses on the same plugin; the container keeps writing",
      async () => {
        const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'shared');
        const name = `pv-${randomId()}`;
        const opts = ['-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remote}`, '-o', `port=${env.sshPort}`, '-o', `IdentityFile=${env.keyFile}`];
        const created = await docker(['volume', 'create', '-d', plugin.name, ...opts, name]);
        expect(created.exitCode, created.stderr).toBe(0);
        await podmanOk(['volume', 'create', '--driver', plugin.name, ...opts, name]); // the same volume, known to both engines
        const holder = `dc-${randomId()}`;
        const run = await docker(['run', '-d', '--name', holder, '--network', 'none', '-v', `${name}:/data`, env.image, 'sh', '-c', 'while true; do date >> /data/log; sleep 0.2; done']);
        expect(run.exitCode, run.stderr).toBe(0);
        try {
          // Podman knows nothing of Docker's container: the plugin must.
          const rm = await podman(['volume', 'rm', name]);
          expect(rm.exitCode).not.toBe(0);
          expect(rm.stderr).toMatch(/is in use: 1 mount\(s\) of it are held elsewhere/);
          const lines = (await readRemote(remote, 'log')).split('\n').length;
          await new Promise((resolve) => setTimeout(resolve, 1_500));
          // A file of its own: the writer loop appends to log between any write and read of it.
          const probe = await docker(['exec', holder, 'sh', '-c', 'echo still > /data/probe && cat /data/probe']);
          expect(probe.exitCode, probe.stderr).toBe(0);
          expect(probe.stdout.trim()).toBe('still');
          expect((await readRemote(remote, 'log')).split('\n').length).toBeGreaterThan(lines);
        } finally {
          await docker(['rm', '-f', holder]);
        }
        const gone = await docker(['volume', 'rm', name]);
        expect(gone.exitCode, gone.stderr).toBe(0);
        await podman(['volume', 'rm', '-f', name]);
      },
    );
  });
}
