// Which servers an operator's credential may be used with. A docker user chooses the server (sshcmd), so without a
// binding a password file of the keys directory would be sent to any server they name, and a key would log in to any
// server that accepts it. The operator names the servers a credential is for in `# sshfs-for:` lines: at the top of a
// password file (required: a password is sent to the server in the clear), or in `<key file>.sshfs-for` next to a key
// (opt-in: a key only signs a challenge bound to the session, but it logs in wherever it is authorized).
import { UserError } from './errors.js';
import { printable, type VolumeOptions } from './options.js';

/** How a binding line starts; the rest of the line is the servers, separated by spaces. */
const BINDING_PREFIX = '# sshfs-for:';
/** The file next to a key (same name plus this) that binds the key to servers, when the operator wants that. */
export const KEY_BINDING_SUFFIX = '.sshfs-for';
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
