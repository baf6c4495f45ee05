// The environment scripts/e2e-env.sh brings up (an isolated dockerd, an sshd on 127.0.0.1, its users and keys), as the
// tests and the benchmark read it from DIR/env, and the names they make in it. Shared by test/ and scripts/bench/.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface E2EEnv {
  dir: string;
  dockerHost: string;
  sshHost: string;
  sshPort: number;
  keyUser: string;
  /** Private key of keyUser (authorized on the test sshd). */
  keyFile: string;
  pwUser: string;
  /** pwUser's password: contains a space, a comma, '$', quotes... */
  password: string;
  keyRemoteDir: string;
  pwRemoteDir: string;
  /** The test sshd's public host key (one line, "ssh-ed25519 AAAA... comment"). */
  hostKeyFile: string;
  /** A known_hosts file with the test sshd's host key for [127.0.0.1]:port. */
  knownHostsFile: string;
  /** The plugin's keys directory (KEYS_DIR): holds keyFile and knownHostsFile. */
  keysDir: string;
  image: string;
  execRoot: string;
  raw: Record<string, string>;
}

/** Parses DIR/env: literal KEY=VALUE lines (values are not shell-quoted), '#' lines are comments. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/** Reads DIR/env; throws when the file is missing or lacks a value. */
export function readE2EEnv(dir: string): E2EEnv {
  const file = path.join(dir, 'env');
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: run "scripts/e2e-env.sh up ${dir}" (the e2e global setup does it)`);
  }
  const raw = parseEnvFile(readFileSync(file, 'utf8'));
  const need = (key: string): string => {
    const value = raw[key];
    if (value === undefined || value === '') throw new Error(`${file} has no ${key}`);
    return value;
  };
  return {
    dir,
    dockerHost: need('DOCKER_HOST'),
    sshHost: need('SSH_HOST'),
    sshPort: Number(need('SSH_PORT')),
    keyUser: need('SSH_KEY_USER'),
    keyFile: need('SSH_KEY_FILE'),
    pwUser: need('SSH_PW_USER'),
    password: need('SSH_PW'),
    keyRemoteDir: need('SSH_KEY_REMOTE_DIR'),
    pwRemoteDir: need('SSH_PW_REMOTE_DIR'),
    hostKeyFile: need('SSH_KNOWN_HOST_KEY'),
    knownHostsFile: need('SSH_KNOWN_HOSTS_FILE'),
    keysDir: need('KEYS_DIR'),
    image: need('E2E_IMAGE'),
    execRoot: need('EXEC_ROOT'),
    raw,
  };
}

/** The environment for the docker CLI against the test dockerd (not the machine's own daemon or context). */
export function dockerCliEnv(env: E2EEnv): Record<string, string> {
  return { DOCKER_HOST: env.dockerHost, DOCKER_CONTEXT: '', DOCKER_CLI_HINTS: 'false' };
}

/** ssh's arguments for a login to the test sshd as the key user (host key checked), EXTRA options before the host. */
export function keyUserSshArgs(env: E2EEnv, extra: string[] = []): string[] {
  return [
    '-F', '/dev/null', '-p', String(env.sshPort), '-i', env.keyFile,
    '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${env.knownHostsFile}`,
    '-o', 'StrictHostKeyChecking=yes', ...extra, `${env.keyUser}@${env.sshHost}`,
  ];
}

/** A short random suffix for names that must be unique across runs and machines' shared dirs. */
export function randomId(bytes = 4): string {
  return randomBytes(bytes).toString('hex');
}

/** PREFIX-<random id>: a fresh name for a volume, container or plugin. */
export const uniq = (prefix: string): string => `${prefix}-${randomId()}`;
