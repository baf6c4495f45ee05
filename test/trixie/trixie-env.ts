// The pieces of scripts/trixie-env.sh's environment the trixie tests use: commands run inside its namespace (the
// trixie docker and podman CLIs), the plugin in host mode started there with the trixie root's node, and the mounts
// as that namespace sees them. Everything else is test/e2e/harness.ts, pointed at this environment's dockerd 26.
import path from 'node:path';
import { execa } from 'execa';
import { type CmdResult, type LegacyPlugin, loadEnv, REPO_ROOT, startLegacyPlugin, uniquePluginName, useE2EDir } from '../e2e/harness.js';

function need(key: string): string {
  const value = loadEnv().raw[key];
  if (value === undefined || value === '') throw new Error(`the trixie environment's env file has no ${key}: run scripts/trixie-env.sh up`);
  return value;
}

export const trixie = {
  /** DIR/bin/in-ns: runs its arguments inside the namespace. */
  inNs: (): string => need('TRIXIE_IN_NS'),
  /** The process that holds the namespace. */
  holderPid: (): number => Number(need('TRIXIE_HOLDER_PID')),
  /** /proc/<holder>/mounts: the namespace's mount table, for readMounts and sshfsMountsUnder. */
  mountsFile: (): string => `/proc/${need('TRIXIE_HOLDER_PID')}/mounts`,
  /** The address `docker swarm init` advertises (on a veth inside the namespace's own network). */
  swarmAddr: (): string => need('TRIXIE_SWARM_ADDR'),
  /** How many nodes the environment has (TRIXIE_NODES: node 1 is the environment itself). */
  nodes: (): number => Number(loadEnv().raw.TRIXIE_NODES ?? '1'),
  /** Node K (2..) of a multi-node environment: its dockerd, namespace runner, mount table, address, plugin sockets. */
  node: (k: number) => ({
    dockerHost: need(`TRIXIE_NODE${k}_DOCKER_HOST`),
    inNs: need(`TRIXIE_NODE${k}_IN_NS`),
    mountsFile: `/proc/${need(`TRIXIE_NODE${k}_HOLDER_PID`)}/mounts`,
    addr: need(`TRIXIE_NODE${k}_ADDR`),
    socketDir: need(`TRIXIE_NODE${k}_SOCKET_DIR`),
  }),
};

/** Runs ARGS inside the namespace (e.g. the trixie docker CLI). Never throws; a timeout gives exitCode -1. */
export async function inNs(args: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<CmdResult> {
  const r = await execa(trixie.inNs(), args, {
    env: opts.env,
    reject: false,
    timeout: opts.timeoutMs ?? 150_000,
    input: opts.input ?? '',
    stripFinalNewline: true,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** The trixie docker CLI (26) against the environment's dockerd: for what the host's 20.10 CLI cannot say. */
export function docker26(args: string[]): Promise<CmdResult> {
  return inNs(['docker', ...args], { env: { DOCKER_HOST: loadEnv().dockerHost, DOCKER_CLI_HINTS: 'false' } });
}

/**
 * The plugin in host mode inside the namespace: this repository's dist/ run by the trixie root's node (the namespace's
 * PATH), its socket in the namespace's /run/docker/plugins (seen here in DIR/plugin-sockets).
 */
export function startTrixiePlugin(name: string = uniquePluginName()): Promise<LegacyPlugin> {
  // The harness appends its own node and the entry point: drop the former, run the namespace's node.
  return startLegacyPlugin(name, {
    wrapper: [trixie.inNs(), 'sh', '-c', 'shift; exec node "$@"', 'trixie-node'],
    socketDir: need('TRIXIE_SOCKET_DIR'),
  });
}

/**
 * The same environment from another Debian suite's root (TRIXIE_SUITE), in <repo>/.e2e-SUITE, for the one test file
 * that needs that suite's engine (forky: Docker 28.5, whose Swarm calls CSI plugins), with NODES nodes (TRIXIE_NODES:
 * the others each in network and mount namespaces of their own, for a multi-node swarm). Brings it up (building the root
 * once if it is not cached), points this file's harness at it, and returns its teardown (skipped under E2E_KEEP, as
 * the global setups do). dist/ is the project's global setup's build.
 */
export async function upSuiteEnvironment(suite: string, nodes = 1): Promise<() => Promise<void>> {
  const dir = path.join(REPO_ROOT, `.e2e-${suite}`);
  const script = path.join(REPO_ROOT, 'scripts', 'trixie-env.sh');
  const run = async (step: 'up' | 'down', timeoutMs: number) => {
    const env = { TRIXIE_SUITE: suite, TRIXIE_NODES: String(nodes) };
    const r = await execa('bash', [script, step, dir], { env, reject: false, all: true, timeout: timeoutMs, input: '' });
    if (r.exitCode !== 0) throw new Error(`TRIXIE_SUITE=${suite} scripts/trixie-env.sh ${step} ${dir} failed (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}):\n${r.all ?? ''}`);
  };
  await run('up', 1_500_000);
  useE2EDir(dir);
  return async () => {
    if (process.env.E2E_KEEP) {
      console.log(`[e2e] E2E_KEEP is set: environment left running; stop it with: TRIXIE_SUITE=${suite} scripts/trixie-env.sh down ${dir}`);
      return;
    }
    await run('down', 300_000);
  };
}
