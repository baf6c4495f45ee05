// What a volume may log in with and which files it may read: only what it was given, or the default key the operator
// placed in the keys directory. Every file a user names must be a regular file inside that directory once symlinks
// are resolved, never inside the plugin's state, and small; checked at Create and again at every Mount (the directory
// may change in between).
import { UserError } from './errors.js';
import { printable, type VolumeOptions } from './options.js';
import type { Deps } from './types.js';

export const MAX_KEY_FILE_BYTES = 64 * 1024;
export const MAX_KNOWN_HOSTS_BYTES = 1024 * 1024;
export const MAX_PASSWORD_FILE_BYTES = 4096;
/** Tried in this order when a volume names no credential: the operator's plugin-wide default key. */
export const DEFAULT_KEY_NAMES = ['id_ed25519', 'id_ecdsa', 'id_rsa'] as const;

/** How sshfs logs in: a key file ssh reads, or a password given on sshfs's stdin. `source` is shown in Status. */
export type Login = { keyFile: string; source: string; certificateFile?: string } | { password: string; source: string };

const within = (path: string, dir: string) => path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);

/**
 * The real path of a file in the keys directory, or a UserError. The message is the same whether the file is missing,
 * too large, not a regular file or a symlink leading out of the directory, so it tells nothing about other paths.
 */
export async function keysDirFile(deps: Deps, path: string, option: string, maxBytes: number): Promise<string> {
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
    return { keyFile: await keysDirFile(deps, opts.identityFile, 'IdentityFile', MAX_KEY_FILE_BYTES), source: `IdentityFile ${opts.identityFile}` };
  }
  if (opts.passwordFile !== undefined) {
    const file = await keysDirFile(deps, opts.passwordFile, 'password_file', MAX_PASSWORD_FILE_BYTES);
    const password = (await deps.fs.readText(file, MAX_PASSWORD_FILE_BYTES)).replace(/\r?\n$/, '');
    if (password === '' || /[\r\n]/.test(password)) {
      throw new UserError(`password_file ${opts.passwordFile} must hold the password on one line`);
    }
    return { password, source: `password_file ${opts.passwordFile}` };
  }
  for (const name of DEFAULT_KEY_NAMES) {
    const path = `${deps.config.keysDir}/${name}`;
    try {
      return { keyFile: await keysDirFile(deps, path, 'IdentityFile', MAX_KEY_FILE_BYTES), source: `default key ${path}` };
    } catch {
      // try the next name
    }
  }
  throw noCredential(deps.config.keysDir);
}

/** The known_hosts file ssh checks: the user's (read only) or the plugin's own, where keys are pinned on first use. */
export async function resolveKnownHosts(opts: VolumeOptions, pluginFile: string, deps: Deps): Promise<string> {
  if (opts.knownHostsFile === undefined) return pluginFile;
  return keysDirFile(deps, opts.knownHostsFile, 'UserKnownHostsFile', MAX_KNOWN_HOSTS_BYTES);
}

/**
 * The volume's login with its certificate (-o CertificateFile), confined like IdentityFile: a small regular file in the
 * keys directory, checked at Create and at every Mount. options.ts allows it only with a key login.
 */
export async function withCertificate(opts: VolumeOptions, login: Login, deps: Deps): Promise<Login> {
  if (opts.certificateFile === undefined || !('keyFile' in login)) return login;
  return { ...login, certificateFile: await keysDirFile(deps, opts.certificateFile, 'CertificateFile', MAX_KEY_FILE_BYTES) };
}
