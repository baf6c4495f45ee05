// What a volume may log in with and which files it may read: only what it was given, or the default key the operator
// placed in the keys directory. Every file a user names must be a regular file inside that directory once symlinks
// are resolved, never inside the plugin's state, and small; checked at Create and again at every Mount (the directory
// may change in between).
import { UserError } from './errors.js';
import { printable, type VolumeOptions } from './options.js';
import { boundPassword, checkKeyBinding, destinationOf, KEY_BINDING_SUFFIX, serversReachedBy } from './server-binding.js';
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
 * digest). Never root's ~/.ssh, an agent or ssh_config: sshfs-args.ts turns those off.
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
