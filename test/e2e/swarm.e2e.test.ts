// The plugin in a multi-node Swarm, as users deploy it: scripts/swarm-env.sh brings up 3 dockerd nodes (each in its
// own network namespace, joined as one swarm), an sshd file server every node reaches, and the managed plugin on each
// node via `npm run plugin:install`. Everything goes through the docker CLI: `docker stack deploy` of a compose file
// with `driver: sshfs` and `driver_opts`, `docker service create --mount ...volume-opt=...`, drain, a killed node,
// `docker stack rm`, and the trap of changed driver_opts. The commands are the README's Swarm section.
import { readFileSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, type CmdResult, parseEnvFile, randomId, waitFor } from './harness.js';
import { forTest, quickstart } from './readme-blocks.js';

const SWARM_SCRIPT = path.join(REPO_ROOT, 'scripts', 'swarm-env.sh');
const DIR = path.join(REPO_ROOT, '.e2e-swarm');

interface SwarmEnv {
  nodes: number;
  hosts: string[];
  nodeIds: string[];
  sshHost: string;
  sshUser: string;
  keyFile: string;
  remoteDir: string;
  image: string;
}
let env: SwarmEnv;

async function swarmScript(args: string[], timeoutMs = 600_000): Promise<void> {
  const r = await execa('bash', [SWARM_SCRIPT, ...args], {
    cwd: REPO_ROOT,
    env: { SWARM_SKIP_APP_BUILD: '1' }, // the e2e global setup has just built dist/
    reject: false,
    all: true,
    timeout: timeoutMs,
    input: '',
  });
  if (r.exitCode !== 0) throw new Error(`swarm-env.sh ${args.join(' ')} failed (${r.exitCode}):\n${r.all}`);
}

/** The docker CLI against node I (1-based). Never throws. */
async function nd(i: number, args: string[], input = ''): Promise<CmdResult> {
  const r = await execa('docker', args, {
    env: { DOCKER_HOST: env.hosts[i - 1], DOCKER_CONTEXT: '', DOCKER_CLI_HINTS: 'false' },
    reject: false,
    timeout: 150_000,
    input,
    stripFinalNewline: true,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function ndOk(i: number, args: string[], input = ''): Promise<string> {
  const r = await nd(i, args, input);
  if (r.exitCode !== 0) throw new Error(`docker ${args.join(' ')} on node ${i} exited ${r.exitCode}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

interface Task {
  id: string;
  node: number;
  state: string;
  desired: string;
  container: string;
  err: string;
}

/** The service's tasks, as the manager (node 1) sees them, with the node given as its number. */
async function tasks(service: string): Promise<Task[]> {
  const ids = (await ndOk(1, ['service', 'ps', '-q', '--no-trunc', service])).split('\n').filter(Boolean);
  if (ids.length === 0) return [];
  const out = await ndOk(1, ['inspect', '--format', '{{.ID}} {{.NodeID}} {{.Status.State}} {{.DesiredState}} {{.Status.ContainerStatus.ContainerID}}|{{.Status.Err}}', ...ids]);
  return out
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [head = '', err = ''] = line.split('|');
      const [id = '', nodeId = '', state = '', desired = '', container = ''] = head.split(' ');
      return { id, node: env.nodeIds.indexOf(nodeId) + 1, state, desired, container, err };
    });
}

async function runningTasks(service: string): Promise<Task[]> {
  return (await tasks(service)).filter((t) => t.state === 'running' && t.desired === 'running');
}

async function waitRunning(service: string, count: number, timeoutMs = 90_000): Promise<Task[]> {
  let last: Task[] = [];
  await waitFor(
    `${count} running task(s) of ${service}`,
    async () => {
      last = await runningTasks(service);
      return last.length === count;
    },
    timeoutMs,
    500,
  ).catch(async (err: unknown) => {
    const all = await tasks(service).catch(() => []);
    throw new Error(`${String(err)}\ntasks: ${JSON.stringify(all)}`);
  });
  return last;
}

/** `docker exec` into a task's container on its node. */
async function execIn(task: Task, script: string): Promise<string> {
  return ndOk(task.node, ['exec', task.container, 'sh', '-c', script]);
}

async function remoteFiles(sub: string): Promise<string[]> {
  return (await readdir(path.join(env.remoteDir, sub))).sort();
}

/** A remote subdirectory owned by the ssh user (as if made over ssh). */
async function remoteSubdir(prefix: string): Promise<string> {
  const sub = `${prefix}-${randomId()}`;
  await execa('install', ['-d', '-m', '0755', '-o', env.sshUser, '-g', env.sshUser, path.join(env.remoteDir, sub)]);
  return sub;
}

/** The README's stack file: a replicated service (one task per node) writing its node's id, on the host network. */
function stackFile(sub: string, extraOpts: Record<string, string> = {}): string {
  const opts = { sshcmd: `${env.sshUser}@${env.sshHost}:${env.remoteDir}/${sub}`, IdentityFile: '/keys/id_ed25519', ...extraOpts };
  return [
    'version: "3.8"',
    'services:',
    '  app:',
    `    image: ${env.image}`,
    '    command: ["sh", "-c", "echo $$NODE > /data/$$NODE.txt && exec sleep 3600"]',
    '    environment:',
    '      NODE: "{{.Node.ID}}"',
    '    volumes: [data:/data]',
    '    networks: [hostnet]',
    '    stop_grace_period: 1s',
    '    deploy:',
    `      replicas: ${env.nodes}`,
    '      placement:',
    '        max_replicas_per_node: 1',
    'volumes:',
    '  data:',
    '    driver: sshfs',
    '    driver_opts:',
    ...Object.entries(opts).map(([k, v]) => `      ${k}: "${v}"`),
    'networks:',
    '  hostnet:',
    '    external: true',
    '    name: host',
    '',
  ].join('\n');
}

async function deploy(stack: string, yaml: string): Promise<void> {
  const file = path.join(DIR, `${stack}.yml`);
  writeFileSync(file, yaml);
  await ndOk(1, ['stack', 'deploy', '-c', file, stack]);
}

async function removeStack(stack: string): Promise<void> {
  await nd(1, ['stack', 'rm', stack]);
  await waitFor(`stack ${stack} gone`, async () => (await nd(1, ['service', 'ls', '-q', '--filter', `label=com.docker.stack.namespace=${stack}`])).stdout === '', 60_000, 500);
}

/** Removes VOLUME on every node, pruning the stopped task containers that hold it first (the README's way out). */
async function removeVolumeEverywhere(volume: string, skipNode = 0): Promise<void> {
  for (let i = 1; i <= env.nodes; i++) {
    if (i === skipNode) continue;
    let last = '';
    await waitFor(`volume ${volume} removed on node ${i}`, async () => {
      await nd(i, ['container', 'prune', '-f']);
      const r = await nd(i, ['volume', 'rm', volume]);
      last = r.stderr;
      return r.exitCode === 0 || /no such volume/i.test(r.stderr);
    }, 60_000, 1000).catch(async (err: unknown) => {
      const ps = await nd(i, ['ps', '-a', '--format', '{{.Names}} {{.Status}}']);
      throw new Error(`${String(err)}\nlast: ${last}\ncontainers on node ${i}:\n${ps.stdout}`);
    });
  }
}

describe('Swarm: 3 nodes, the managed plugin on each, one remote directory', () => {
  beforeAll(async () => {
    await swarmScript(['up', DIR]);
    const raw = parseEnvFile(readFileSync(path.join(DIR, 'env'), 'utf8'));
    const nodes = Number(raw.NODES);
    const pick = (k: string): string => {
      const v = raw[k];
      if (!v) throw new Error(`${DIR}/env has no ${k}`);
      return v;
    };
    env = {
      nodes,
      hosts: Array.from({ length: nodes }, (_, k) => pick(`DOCKER_HOST_${k + 1}`)),
      nodeIds: Array.from({ length: nodes }, (_, k) => pick(`NODE_ID_${k + 1}`)),
      sshHost: pick('SSH_HOST'),
      sshUser: pick('SSH_USER'),
      keyFile: pick('SSH_KEY_FILE'),
      remoteDir: pick('REMOTE_DIR'),
      image: pick('E2E_IMAGE'),
    };
  }, 600_000);

  afterAll(async () => {
    if (process.env.E2E_KEEP) {
      console.log(`[swarm] E2E_KEEP is set: left running; stop it with: scripts/swarm-env.sh down ${DIR}`);
      return;
    }
    await swarmScript(['down', DIR], 300_000);
  }, 300_000);

  it('docker stack deploy: tasks on every node write to one remote directory and see each other\'s files', async () => {
    const sub = await remoteSubdir('stack');
    await deploy('st', stackFile(sub));
    const running = await waitRunning('st_app', env.nodes);
    expect(new Set(running.map((t) => t.node)).size).toBe(env.nodes);
    const expected = env.nodeIds.map((id) => `${id}.txt`).sort();
    await waitFor('a file from every node on the server', async () => (await remoteFiles(sub)).length === env.nodes, 30_000);
    expect(await remoteFiles(sub)).toEqual(expected);
    for (const t of running) {
      // Each task reads what the tasks on the other nodes wrote.
      expect((await execIn(t, 'ls /data')).split('\n').sort()).toEqual(expected);
      const v = JSON.parse(await ndOk(t.node, ['volume', 'inspect', 'st_data'])) as { Driver: string; Status: Record<string, unknown> }[];
      expect(v[0]?.Driver).toBe('sshfs:latest');
      expect(v[0]?.Status.mounted).toBe(true);
    }

    // docker stack rm: the services go, the remote data stays; the volumes stay on the nodes until removed there.
    await removeStack('st');
    expect(await remoteFiles(sub)).toEqual(expected);
    for (let i = 1; i <= env.nodes; i++) expect((await nd(i, ['volume', 'inspect', 'st_data'])).exitCode).toBe(0);
    await removeVolumeEverywhere('st_data');
    expect(await remoteFiles(sub)).toEqual(expected);
  }, 400_000);

  it('the key itself (-o key, base64) reaches every node through docker service create --mount (the keys mount: the stack above)', async () => {
    const sub = await remoteSubdir('creds');
    const key64 = readFileSync(env.keyFile).toString('base64');
    // README: docker service create --mode global --mount 'type=volume,...,volume-driver=sshfs,volume-opt=...'
    await ndOk(1, [
      'service', 'create', '--detach', '--name', 'creds', '--mode', 'global', '--network', 'host', '--stop-grace-period', '1s',
      '--env', 'NODE={{.Node.ID}}',
      '--mount', `type=volume,source=creds,target=/data,volume-driver=sshfs,volume-opt=sshcmd=${env.sshUser}@${env.sshHost}:${env.remoteDir}/${sub},volume-opt=key=${key64}`,
      env.image, 'sh', '-c', 'echo key > /data/$NODE.key && exec sleep 3600',
    ]);
    await waitRunning('creds', env.nodes);
    await waitFor('a file from every node', async () => (await remoteFiles(sub)).length === env.nodes, 30_000);
    expect(await remoteFiles(sub)).toEqual(env.nodeIds.map((id) => `${id}.key`).sort());
    await ndOk(1, ['service', 'rm', 'creds']);
    await removeVolumeEverywhere('creds');
  }, 400_000);

  it('drain moves a task to another node and the new task sees the data; a killed dockerd\'s task is rescheduled with the data intact', async () => {
    const sub = await remoteSubdir('move');
    const file = path.join(DIR, 'move.yml');
    writeFileSync(file, stackFile(sub).replace(`replicas: ${env.nodes}`, 'replicas: 1').replace('max_replicas_per_node: 1', 'constraints: [node.role == worker]'));
    await ndOk(1, ['stack', 'deploy', '-c', file, 'mv']);
    const [first] = await waitRunning('mv_app', 1);
    if (!first) throw new Error('no task');
    await execIn(first, 'echo written-before-drain > /data/marker');

    // README: docker node update --availability drain NODE
    await ndOk(1, ['node', 'update', '--availability', 'drain', env.nodeIds[first.node - 1] ?? '']);
    let second: Task | undefined;
    await waitFor('the task moved to another node', async () => {
      second = (await runningTasks('mv_app')).find((t) => t.node !== first.node);
      return second !== undefined;
    }, 90_000, 500);
    if (!second) throw new Error('no task');
    expect(await execIn(second, 'cat /data/marker')).toBe('written-before-drain');
    await ndOk(1, ['node', 'update', '--availability', 'active', env.nodeIds[first.node - 1] ?? '']);
    await execIn(second, 'echo written-before-kill >> /data/marker');

    // The node running the task loses its dockerd: the manager marks the node down and starts the task elsewhere.
    await swarmScript(['dockerd-kill', DIR, String(second.node)]);
    try {
      let third: Task | undefined;
      await waitFor('the task rescheduled on a live node', async () => {
        third = (await runningTasks('mv_app')).find((t) => t.node !== second?.node);
        return third !== undefined;
      }, 120_000, 1000);
      if (!third) throw new Error('no task');
      expect(await execIn(third, 'cat /data/marker')).toBe('written-before-drain\nwritten-before-kill');
      expect(readFileSync(path.join(env.remoteDir, sub, 'marker'), 'utf8')).toBe('written-before-drain\nwritten-before-kill\n');
    } finally {
      await swarmScript(['dockerd-start', DIR, String(second.node)]);
    }
    await waitFor('the restarted node ready again', async () => {
      const st = await nd(1, ['node', 'inspect', '--format', '{{.Status.State}}', env.nodeIds[(second?.node ?? 1) - 1] ?? '']);
      return st.stdout === 'ready';
    }, 60_000, 1000);
    await removeStack('mv');
    // The killed node never got an Unmount for the task that died with its dockerd: the plugin there still counts
    // that reference and refuses Remove (README: Swarm, "a node's dockerd killed"). Printed, not asserted.
    const killed = second.node;
    await removeVolumeEverywhere('mv_data', killed);
    await nd(killed, ['container', 'prune', '-f']);
    const rm = await nd(killed, ['volume', 'rm', 'mv_data']);
    console.log(`[swarm] after its dockerd was killed, node ${killed}: docker volume rm mv_data -> ${rm.exitCode === 0 ? 'ok' : rm.stderr}`);
  }, 400_000);

  it('changed driver_opts: a node keeps its existing volume with the old options; the way out works', async () => {
    const subA = await remoteSubdir('old');
    const subB = await remoteSubdir('new');
    await deploy('tr', stackFile(subA));
    const before = await waitRunning('tr_app', env.nodes);
    await waitFor('files in the old directory', async () => (await remoteFiles(subA)).length === env.nodes, 30_000);

    // Redeploy with another remote directory: the service is updated, its tasks replaced...
    await deploy('tr', stackFile(subB));
    const oldIds = new Set(before.map((t) => t.id));
    await waitFor('all tasks replaced', async () => {
      const now = await runningTasks('tr_app');
      return now.length === env.nodes && now.every((t) => !oldIds.has(t.id));
    }, 90_000, 500);
    // ...but every node reuses the volume it has, with the old options: the new tasks write to the old directory.
    for (let i = 1; i <= env.nodes; i++) {
      const v = JSON.parse(await ndOk(i, ['volume', 'inspect', 'tr_data'])) as { Options: Record<string, string> }[];
      expect(v[0]?.Options.sshcmd).toBe(`${env.sshUser}@${env.sshHost}:${env.remoteDir}/${subA}`);
    }
    expect(await remoteFiles(subB)).toEqual([]);
    const creates = readFileSync(path.join(DIR, 'node1', 'dockerd.log'), 'utf8').split('\n').filter((l) => l.includes('VolumeDriver.Create') && l.includes('tr_data'));
    // Docker sent the plugin no Create for the new options: only the first one arrived, so the plugin cannot tell
    // (the README says so; this fails if Docker starts passing them).
    expect(creates, 'Creates of tr_data in the plugin log on node 1').toHaveLength(1);

    // The way out (README): stop the tasks, remove the volume on every node (pruning the old task containers that
    // still hold it), deploy again.
    await ndOk(1, ['service', 'scale', '--detach', 'tr_app=0']);
    await waitFor('no running tasks', async () => (await runningTasks('tr_app')).length === 0, 60_000, 500);
    const inUse = await nd(1, ['volume', 'rm', 'tr_data']);
    expect(inUse.exitCode).not.toBe(0);
    expect(inUse.stderr).toMatch(/in use/);
    await removeVolumeEverywhere('tr_data');
    await deploy('tr', stackFile(subB));
    await waitRunning('tr_app', env.nodes);
    await waitFor('files in the new directory', async () => (await remoteFiles(subB)).length === env.nodes, 30_000);
    await removeStack('tr');
    await removeVolumeEverywhere('tr_data');
  }, 400_000);

  it("the README's Swarm quick start, run as it stands: the plugin and key on every node, a global service writing from each", async () => {
    const sub = await remoteSubdir('quickstart');
    const target = { driver: 'sshfs', volume: 'qs_data', remote: `${env.remoteDir}/${sub}`, image: env.image };
    const server = { keyUser: env.sshUser, sshHost: env.sshHost, keyFile: env.keyFile };
    const lines = quickstart('swarm').split('\n');
    const at = lines.findIndex((l) => l.startsWith('docker service create'));
    expect(at).toBeGreaterThan(0);
    const run = async (script: string, extraEnv: Record<string, string>): Promise<void> => {
      const r = await execa('bash', ['-euo', 'pipefail', '-c', script], { cwd: REPO_ROOT, env: { DOCKER_CONTEXT: '', ...extraEnv }, reject: false, all: true, input: '' });
      if (r.exitCode !== 0) throw new Error(`the quick start failed (exit ${r.exitCode}):\n${script}\n${r.all ?? ''}`);
    };
    // Every node: the key into its keys directory, then npm run plugin:install (replacing the plugin swarm-env.sh
    // installed the same way; state and build directories as there).
    for (let i = 1; i <= env.nodes; i++) {
      const node = path.join(DIR, `node${i}`);
      await run(forTest(lines.slice(0, at).join('\n'), server, { ...target, keysDir: path.join(node, 'keys') }), {
        DOCKER_HOST: env.hosts[i - 1]!,
        PLUGIN_DIR: path.join(DIR, 'plugin'),
        PLUGIN_BUILDER: 'offline',
        PLUGIN_SKIP_APP_BUILD: '1',
        PLUGIN_STATE_SOURCE: path.join(node, 'plugin-state'),
      });
    }
    // On a manager, the service. The test nodes have no overlay networking, so its tasks join the host network (as
    // the stack tests do), and the CLI does not wait for convergence: the test does.
    const service = forTest(lines.slice(at).join('\n'), server, { ...target, keysDir: '/unused' })
      .replace('--name app ', '--name qs_app ')
      .replace('--mode global ', '--mode global --network host --detach --stop-grace-period 1s ');
    await run(service, { DOCKER_HOST: env.hosts[0]! });
    await waitRunning('qs_app', env.nodes);
    await waitFor('a file from every node on the server', async () => (await remoteFiles(sub)).length === env.nodes, 30_000);
    expect(await remoteFiles(sub)).toEqual(env.nodeIds.map((id) => `${id}.txt`).sort());
    await ndOk(1, ['service', 'rm', 'qs_app']);
    await removeVolumeEverywhere('qs_data');
  }, 600_000);
});
