// What a volume may log in with and which files it may read: only what it was given, or the default key the operator
// placed in the keys directory. Every file a user names must be a regular file inside that directory once symlinks
// are resolved, never inside the plugin's state, and small; checked at Create and again at every Mount (the directory
// may change in between).
//
// And with which servers an operator's credential may be used: a docker user chooses the server (sshcmd), so without a
// binding a password file of the keys directory would be sent to any server they name, and a key would log in to any
// server that accepts it. The operator names the servers a credential is for in `# sshfs-for:` lines: at the top of a
// password file (required: a password is sent to the server in the clear), or in `<key file>.sshfs-for` next to a key
// (opt-in: a key only signs a challenge bound to the session, but it logs in wherever it is authorized).
import { UserError } from './errors.js';
import { printable, type VolumeOptions } from './options.js';
import type { Deps } from './types.js';

const MAX_KEY_FILE_BYTES = 64 * 1024;
export const MAX_KNOWN_HOSTS_BYTES = 1024 * 1024;
const MAX_PASSWORD_FILE_BYTES = 4096;
const MAX_BINDING_FILE_BYTES = 4096;
/** Tried in this order when a volume names no credential: the operator's plugin-wide default key. */
const DEFAULT_KEY_NAMES = ['id_ed25519', 'id_ecdsa', 'id_rsa'] as const;

/** How sshfs logs in: a key file ssh reads, or a password given on sshfs's stdin. `source` is shown in Status. */
export type Login = { keyFile: string; source: string; certificateFile?: string } | { password: string; source: string };

const within = (path: string, dir: string) => path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);

/**
 * The real path of a file in the keys directory, or a UserError. The message is the same whether the file is missing,
 * too large, not a regular file or a symlink leading out of the directory, so it tells nothing about other paths.
 */
async function readableKeysDirFile(deps: Deps, path: string, option: string, maxBytes: number): Promise<string> {
  const { keysDir, stateDir } = deps.config;
  const [info, keys, state] = await Promise.all([
    deps.fs.fileInfo(path),
    deps.fs.fileInfo(keysDir),
    deps.fs.fileInfo(stateDir),
  ]);
  const keysReal = keys?.realPath ?? keysDir;
  const stateReal = state?.realPath ?? stateDir;
  if (
    info === undefined ||
    !info.isFile ||
    info.size > maxBytes ||
    !within(info.realPath, keysReal) ||
    within(info.realPath, stateReal)
  ) {
    throw new UserError(
      `${option} ${printable(path)} is not a readable file of at most ${maxBytes / 1024} KiB in the plugin's keys directory ` +
        `${keysDir} (symlinks must stay inside it): put the file there (managed plugin: the host directory set as ` +
        `keys.source) and name it as -o ${option}=<file name>`,
    );
  }
  return info.realPath;
}

function noCredential(keysDir: string): UserError {
  return new UserError(
    'the volume has no credential: give -o IdentityFile=<key file in the keys directory>, -o key="$(cat ~/.ssh/id_ed25519)", ' +
      `-o password_file=<file in the keys directory> or -o password=..., or place a default key ` +
      `(${DEFAULT_KEY_NAMES.join(', ')}) in the plugin's keys directory ${keysDir}`,
  );
}

/**
 * What the volume logs in with. keyFile is the file the plugin wrote for `-o key` (the stored options hold only its
 * digest). Never root's ~/.ssh, an agent or ssh_config: the ssh options of ssh-login.ts turn those off.
 */
export async function resolveLogin(opts: VolumeOptions, keyFile: string | undefined, deps: Deps): Promise<Login> {
  if (keyFile !== undefined) return { keyFile, source: 'key' };
  if (opts.password !== undefined) return { password: opts.password, source: 'password' };
  if (opts.identityFile !== undefined) {
    const file = await readableKeysDirFile(deps, opts.identityFile, 'IdentityFile', MAX_KEY_FILE_BYTES);
    await checkKeyServers(deps, opts, file, opts.identityFile, `IdentityFile ${printable(opts.identityFile)}`);
    return { keyFile: file, source: `IdentityFile ${opts.identityFile}` };
  }
  if (opts.passwordFile !== undefined) {
    const file = await readableKeysDirFile(deps, opts.passwordFile, 'password_file', MAX_PASSWORD_FILE_BYTES);
    const password = boundPassword(await deps.fs.readText(file, MAX_PASSWORD_FILE_BYTES), opts.passwordFile, destinationOf(opts));
    return { password, source: `password_file ${opts.passwordFile}` };
  }
  for (const name of DEFAULT_KEY_NAMES) {
    const path = `${deps.config.keysDir}/${name}`;
    let file: string;
    try {
      file = await readableKeysDirFile(deps, path, 'IdentityFile', MAX_KEY_FILE_BYTES);
    } catch {
      continue; // try the next name
    }
    // The first default key found is the default key: a binding that refuses this server is the answer, not a reason
    // to try another key.
    await checkKeyServers(deps, opts, file, path, `the default key ${path}`);
    return { keyFile: file, source: `default key ${path}` };
  }
  throw noCredential(deps.config.keysDir);
}

/**
 * A key the operator bound to servers (a `<key>.sshfs-for` file next to it, by the name the volume gave or by the
 * file that name resolves to) logs in only to those; a key without one, to any server. The binding file is held to the
 * keys directory's rules like the key.
 */
async function checkKeyServers(deps: Deps, opts: VolumeOptions, realKey: string, namedKey: string, keyName: string): Promise<void> {
  for (const candidate of new Set([`${namedKey}${KEY_BINDING_SUFFIX}`, `${realKey}${KEY_BINDING_SUFFIX}`])) {
    if ((await deps.fs.fileInfo(candidate)) === undefined) continue;
    const file = await readableKeysDirFile(deps, candidate, 'IdentityFile', MAX_BINDING_FILE_BYTES);
    const text = await deps.fs.readText(file, MAX_BINDING_FILE_BYTES);
    for (const server of serversReachedBy(opts)) checkKeyBinding(text, candidate, keyName, server);
  }
}

/** The known_hosts file ssh checks: the user's (read only) or the plugin's own, where keys are pinned on first use. */
export async function resolveKnownHosts(opts: VolumeOptions, pluginFile: string, deps: Deps): Promise<string> {
  if (opts.knownHostsFile === undefined) return pluginFile;
  return readableKeysDirFile(deps, opts.knownHostsFile, 'UserKnownHostsFile', MAX_KNOWN_HOSTS_BYTES);
}

/**
 * The volume's login with its certificate (-o CertificateFile), confined like IdentityFile: a small regular file in the
 * keys directory, checked at Create and at every Mount. options.ts allows it only with a key login.
 */
export async function withCertificate(opts: VolumeOptions, login: Login, deps: Deps): Promise<Login> {
  if (opts.certificateFile === undefined || !('keyFile' in login)) return login;
  return { ...login, certificateFile: await readableKeysDirFile(deps, opts.certificateFile, 'CertificateFile', MAX_KEY_FILE_BYTES) };
}

// Which servers a credential may be used with (`# sshfs-for:` lines), as resolveLogin checks it.

/** How a binding line starts; the rest of the line is the servers, separated by spaces. */
const BINDING_PREFIX = '# sshfs-for:';
/** The file next to a key (same name plus this) that binds the key to servers, when the operator wants that. */
const KEY_BINDING_SUFFIX = '.sshfs-for';
/** The user ssh logs in as when sshcmd names none: the plugin's own (README: the plugin runs as root). */
const DEFAULT_USER = 'root';
const DEFAULT_PORT = 22;

/** One server a credential may be used with: user@host:port, the host as normalHost() gives it. */
export interface Server {
  user: string;
  host: string;
  port: number;
}

const ENTRY = /^([A-Za-z0-9._][A-Za-z0-9._-]{0,63})@(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252})(?::([0-9]{1,5}))?$/;

/**
 * A host as the binding compares it: names lowercase (DNS ignores case), IPv6 addresses without brackets and in one
 * spelling (`[0:0::1]` is `::1`). IPv4 and names are compared as written: a server named two ways needs both.
 */
export function normalHost(host: string): string {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (!bare.includes(':')) return bare.toLowerCase();
  try {
    return new URL(`ssh://[${bare}]`).hostname.slice(1, -1);
  } catch {
    return bare.toLowerCase();
  }
}

/** user@host:port, an IPv6 host in brackets: how errors name a server and how an operator writes it. */
export function serverText(server: Server): string {
  const host = server.host.includes(':') ? `[${server.host}]` : server.host;
  return `${server.user}@${host}:${server.port}`;
}

/** The server a volume logs in to, as a binding names it. */
export function destinationOf(opts: VolumeOptions): Server {
  return { user: opts.remote.user ?? DEFAULT_USER, host: normalHost(opts.remote.host), port: opts.port ?? DEFAULT_PORT };
}

/**
 * Every server the volume's key is presented to: each jump host (-o ProxyJump; every hop logs in with the volume's
 * key) and the destination. A bound key must allow them all.
 */
export function serversReachedBy(opts: VolumeOptions): Server[] {
  const hops = (opts.jumpHosts ?? []).map((hop) => ({ user: hop.user ?? DEFAULT_USER, host: normalHost(hop.host), port: hop.port ?? DEFAULT_PORT }));
  return [...hops, destinationOf(opts)];
}

/**
 * The servers named by binding lines (each starting with BINDING_PREFIX). `what` names the file in errors; an entry
 * is never echoed (the operator may have put something secret there by mistake).
 */
export function parseBindingLines(lines: readonly string[], what: string): Server[] {
  const servers: Server[] = [];
  for (const line of lines) {
    const entries = line.slice(BINDING_PREFIX.length).trim().split(/\s+/).filter((e) => e !== '');
    for (const [i, entry] of entries.entries()) {
      const m = ENTRY.exec(entry);
      const port = Number(m?.[3] ?? DEFAULT_PORT);
      if (m === null || port < 1 || port > 65535) {
        throw new UserError(
          `${what}: entry ${i + 1} of a "${BINDING_PREFIX}" line is not user@host[:port] (an IPv6 address in brackets, ` +
            `e.g. alice@[2001:db8::1]:22): the operator must correct it`,
        );
      }
      servers.push({ user: m[1] ?? '', host: normalHost(m[2] ?? ''), port });
    }
  }
  return servers;
}

const isBindingLine = (line: string): boolean => line.startsWith(BINDING_PREFIX);

/** True when one of the servers is the destination (user and port exact, host as normalHost() spells it). */
export function allows(servers: readonly Server[], destination: Server): boolean {
  return servers.some((s) => s.user === destination.user && s.host === destination.host && s.port === destination.port);
}

/**
 * A password file's content: `# sshfs-for:` lines first (at least one), then the password on one line. Throws a
 * UserError that says what the operator must write when the file names no server, and when the destination is not
 * among those it names.
 */
export function boundPassword(text: string, file: string, destination: Server): string {
  const what = `password_file ${printable(file)}`;
  const lines = text.replace(/\r?\n$/, '').split(/\r?\n/);
  const firstOther = lines.findIndex((l) => !isBindingLine(l));
  const header = firstOther < 0 ? lines : lines.slice(0, firstOther);
  const rest = firstOther < 0 ? [] : lines.slice(firstOther);
  const wanted = serverText(destination);
  if (header.length === 0) {
    throw new UserError(
      `${what} does not say which servers it may be sent to, so the plugin sends it to none: the operator must make its ` +
        `first line "${BINDING_PREFIX} ${wanted}" (the servers this password is for, user@host[:port], separated by ` +
        'spaces; port 22 when left out) and put the password alone on the next line',
    );
  }
  if (rest.length !== 1 || rest[0] === '' || /\r/.test(rest[0] ?? '')) {
    throw new UserError(`${what} must hold the password on one line, after its "${BINDING_PREFIX}" line(s)`);
  }
  if (!allows(parseBindingLines(header, what), destination)) {
    throw new UserError(
      `${what} may not be sent to ${wanted}: a password file goes only to the servers its "${BINDING_PREFIX}" line names. ` +
        `If this password is meant for that server, the operator must add ${wanted} to that line`,
    );
  }
  return rest[0] ?? '';
}

/**
 * A key's binding file (`<key>.sshfs-for`): `# sshfs-for:` lines, blank lines allowed. Throws when the destination is
 * not among the servers it names; `keyName` is how the error names the key (e.g. "IdentityFile id_alice").
 */
export function checkKeyBinding(text: string, bindingFile: string, keyName: string, destination: Server): void {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const what = `${keyName}: ${printable(bindingFile)}`;
  const bad = lines.findIndex((l) => !isBindingLine(l));
  if (bad >= 0) throw new UserError(`${what}: line ${bad + 1} is not a "${BINDING_PREFIX}" line: the operator must correct it`);
  const wanted = serverText(destination);
  if (!allows(parseBindingLines(lines, what), destination)) {
    throw new UserError(
      `${keyName} may not log in to ${wanted}: ${printable(bindingFile)} names the servers this key is for. If it is meant ` +
        `for that server, the operator must add ${wanted} to a "${BINDING_PREFIX}" line there`,
    );
  }
}
