// Issue 19 items 3, 4 and 5 through the docker CLI, a real dockerd, the plugin in host mode and real sshds: a second
// sshd (same users, its own port) stands for "a server of the docker user's choosing", with a Banner the tests write.
// An operator's password file goes only to the server its "# sshfs-for:" line names, a bound key likewise; a banner
// with lines shaped like ssh's cannot make the plugin advise unpinning another server's key; a 250 KB banner leaves a
// small Err, Status, journal and log.
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSshd, type TestSshd } from '../faults/hostile-servers.js';
import {
  describeRun, docker, e2eDir, expectOk, inspectVolume, isSshfsMounted, loadEnv, randomId, Resources, runWith,
  startLegacyPlugin, tryCreateVolume, uniq, type LegacyPlugin,
} from './harness.js';

const env = loadEnv();
const res = new Resources();
let plugin: LegacyPlugin;
let other: TestSshd;
let bannerFile: string;
/** Files this file put in the keys directory, removed at the end. */
const keysFiles: string[] = [];

function keysFile(name: string, content: string): string {
  const file = path.join(env.keysDir, `${name}-${randomId()}`);
  writeFileSync(file, content, { mode: 0o600 });
  keysFiles.push(file);
  return file;
}

/** A private key no server authorizes, given with -o key: its login is refused, after the server's banner. */
async function unauthorizedKey(): Promise<string> {
  const file = path.join(plugin.baseDir, `stray_key_${randomId()}`);
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]);
  const text = readFileSync(file, 'utf8');
  rmSync(file, { force: true });
  rmSync(`${file}.pub`, { force: true });
  return text;
}

/** The plugin's error for a failed mount (what `docker run` prints), checked to be the one Status keeps. */
async function mountError(volume: string): Promise<{ err: string; status: Record<string, unknown> }> {
  const r = await runWith(volume, 'true');
  expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
  expect(await isSshfsMounted(path.join(plugin.mountRoot, volume))).toBe(false);
  const status = (await inspectVolume(volume)).Status ?? {};
  const lastError = String(status.lastError ?? '');
  expect(r.stderr).toContain(lastError.slice(0, 60));
  return { err: r.stderr, status };
}

beforeAll(async () => {
  plugin = await startLegacyPlugin();
  bannerFile = path.join(e2eDir(), `banner-${randomId()}`);
  writeFileSync(bannerFile, 'Welcome\n');
  other = await startTestSshd({ extraConfig: [`Banner ${bannerFile}`] });
});

afterAll(async () => {
  const errors = await res.cleanup();
  if (plugin) await plugin.end();
  if (other) await other.stop();
  for (const f of [...keysFiles, bannerFile]) rmSync(f, { force: true });
  expect(errors, 'cleanup errors').toEqual([]);
});

describe("an operator's credential goes only to the servers named for it", () => {
  it('a password file is refused for a server its "# sshfs-for:" line does not name, and works for the one it does', async () => {
    const bound = `${env.pwUser}@${env.sshHost}:${env.sshPort}`;
    const pw = keysFile('alice.pw', `# sshfs-for: ${bound}\n${env.password}\n`);
    // The docker user's own server (the second sshd, same users and password): refused at create, nothing sent.
    const elsewhere = `${env.pwUser}@${env.sshHost}:${other.port}`;
    const vol = uniq('pw-elsewhere');
    const r = await tryCreateVolume(res, plugin, vol, { sshcmd: `${env.pwUser}@${env.sshHost}:/tmp`, port: String(other.port), password_file: pw });
    expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
    expect(r.stderr).toContain(`password_file ${pw} may not be sent to ${elsewhere}`);
    expect(r.stderr).toContain(`the operator must add ${elsewhere} to that line`);
    expect(r.stderr).not.toContain(env.password);
    expect((await docker(['volume', 'inspect', vol])).exitCode).not.toBe(0);

    // The server it names: mounted with the password from the file.
    const ok = uniq('pw-bound');
    const created = await tryCreateVolume(res, plugin, ok, { sshcmd: `${env.pwUser}@${env.sshHost}:/tmp`, port: String(env.sshPort), password_file: pw });
    expect(created.exitCode, describeRun(created, plugin)).toBe(0);
    expectOk(await runWith(ok, 'ls -d /data'), plugin);
    expect((await inspectVolume(ok)).Status?.auth).toBe(`password_file ${pw}`);
  });

  it('a password file without "# sshfs-for:" is sent nowhere, and the Err gives the line to write', async () => {
    // The file as the README described it before: one line. A docker user's own server must not get it.
    const pw = keysFile('legacy.pw', `${env.password}\n`);
    const vol = uniq('pw-legacy');
    const r = await tryCreateVolume(res, plugin, vol, { sshcmd: `${env.pwUser}@${env.sshHost}:/tmp`, port: String(other.port), password_file: pw });
    expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
    expect(r.stderr).toContain(`does not say which servers it may be sent to, so the plugin sends it to none: the operator must make its first line "# sshfs-for: ${env.pwUser}@${env.sshHost}:${other.port}"`);
    expect((await docker(['volume', 'inspect', vol])).exitCode).not.toBe(0);
  });

  it('a key bound by <key>.sshfs-for logs in only to the servers named there', async () => {
    const key = keysFile('bound_key', readFileSync(env.keyFile, 'utf8'));
    writeFileSync(`${key}.sshfs-for`, `# sshfs-for: ${env.keyUser}@${env.sshHost}:${env.sshPort}\n`, { mode: 0o600 });
    keysFiles.push(`${key}.sshfs-for`);
    const r = await tryCreateVolume(res, plugin, uniq('key-elsewhere'), { sshcmd: `${env.keyUser}@${env.sshHost}:${env.keyRemoteDir}`, port: String(other.port), IdentityFile: key });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(`IdentityFile ${key} may not log in to ${env.keyUser}@${env.sshHost}:${other.port}`);
    const ok = uniq('key-bound');
    const created = await tryCreateVolume(res, plugin, ok, { sshcmd: `${env.keyUser}@${env.sshHost}:${env.keyRemoteDir}`, port: String(env.sshPort), IdentityFile: key });
    expect(created.exitCode, describeRun(created, plugin)).toBe(0);
    expectOk(await runWith(ok, 'ls -d /data'), plugin);
  });
});

describe("the server's banner is data, never advice, and bounded", () => {
  it('forged ssh lines in a banner do not make the Err advise ssh-keygen -R for another host', async () => {
    const knownHosts = path.join(plugin.stateDir, 'known_hosts');
    writeFileSync(
      bannerFile,
      [
        '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@',
        '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @',
        '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@',
        `Offending ED25519 key in ${knownHosts}:1`,
        'Host key for fileserver.corp has changed and you have requested strict checking.',
        'Host key verification failed.',
        '',
      ].join('\n'),
    );
    const vol = uniq('banner-spoof');
    const created = await tryCreateVolume(res, plugin, vol, { sshcmd: `${env.keyUser}@${env.sshHost}:${env.keyRemoteDir}`, port: String(other.port), key: await unauthorizedKey() });
    expect(created.exitCode, describeRun(created, plugin)).toBe(0);
    const { err, status } = await mountError(vol);
    expect(err).toMatch(/Permission denied \(publickey,password\)\. \(the server refused the login/);
    for (const text of [err, String(status.lastError), String(status.lastSshMessage)]) {
      expect(text).not.toMatch(/fileserver\.corp|ssh-keygen|Offending|IDENTIFICATION/);
    }
  });

  it('a 250 KB banner leaves an Err, a Status, a journal entry and log lines of a few KB', async () => {
    writeFileSync(bannerFile, `${'The server says a lot. '.repeat(11_000)}\n`);
    expect(statSync(bannerFile).size).toBeGreaterThan(250_000);
    const vol = uniq('banner-huge');
    const created = await tryCreateVolume(res, plugin, vol, { sshcmd: `${env.keyUser}@${env.sshHost}:${env.keyRemoteDir}`, port: String(other.port), key: await unauthorizedKey() });
    expect(created.exitCode, describeRun(created, plugin)).toBe(0);
    const journal = path.join(plugin.stateDir, 'volumes.journal');
    const journalBefore = existsSync(journal) ? statSync(journal).size : 0;
    const logBefore = plugin.logs().length;
    const { err, status } = await mountError(vol);
    console.log(`[trust] 250 KB banner: Err ${err.length} B, Status ${JSON.stringify(status).length} B, log +${plugin.logs().length - logBefore} B`);
    expect(err.length).toBeLessThan(8192);
    expect(JSON.stringify(status).length).toBeLessThan(8192);
    // The journal may have been folded into the snapshot meanwhile: then it shrank, which is bounded too.
    expect((existsSync(journal) ? statSync(journal).size : 0) - journalBefore).toBeLessThan(8192);
    expect(plugin.logs().length - logBefore).toBeLessThan(8192);
  });
});
