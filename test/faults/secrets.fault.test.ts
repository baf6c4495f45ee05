// Secrets: with a password volume and a key-text volume mounted (and a wrong password tried), neither the password
// nor the key appears in any process's argv or environment, nor in the plugin's log at DEBUG, nor in the ssh logs;
// every file the plugin keeps is 0600 and every directory 0700.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { e2eDir, listProcesses, makeRemoteSubdir } from '../e2e/harness.js';
import { createVolume, keyOpts, measured, pwOpts, removeContainers, runWith, startContainer, uniq, useFaultPlugin } from './lib.js';

const AGENT_MARKER = `/tmp/sshfs-e2e-agent-${process.pid}.sock`;
// The harness starts the plugin with DEBUG=1: the most verbose log there is. An agent socket in the plugin's
// environment must not reach ssh (a volume logs in only with what it was given).
const { plugin, res, env } = useFaultPlugin({ env: { SSH_AUTH_SOCK: AGENT_MARKER } });

function filesUnder(dir: string): string[] {
  const out: string[] = [dir];
  for (const entry of readdirSync(dir)) {
    const p = path.join(dir, entry);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

it('keeps passwords and keys out of argv, environments and logs, and its files private', async () => {
  await measured('secrets: not in argv/env/logs; files 0600, dirs 0700', import.meta.url, async (row) => {
    const keyText = readFileSync(env.keyFile, 'utf8');
    // A line from the middle of the key: distinctive, and present in any copy of it.
    const keyLine = keyText.split('\n')[2] ?? '';
    const wrongPassword = `${env.password}-wrong`;
    const pwRemote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser);
    const keyRemote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const pwVol = await createVolume(res, plugin, uniq('secret-pw'), pwOpts(pwRemote));
    const { IdentityFile: _file, ...keyBase } = keyOpts(keyRemote);
    const keyVol = await createVolume(res, plugin, uniq('secret-key'), { ...keyBase, key: keyText });
    const badVol = await createVolume(res, plugin, uniq('secret-bad'), { ...pwOpts(pwRemote), password: wrongPassword });
    const sleepers = [await startContainer(res, pwVol), await startContainer(res, keyVol)];
    const bad = await runWith(badVol, 'true');
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toMatch(/Permission denied/);

    const secrets: [string, string][] = [
      ['password', env.password],
      ['wrong password', wrongPassword],
      ['key', keyLine],
    ];
    const found: string[] = [];
    // Every process on the machine, while both volumes are mounted.
    const procs = await listProcesses();
    let scanned = 0;
    for (const p of procs) {
      let environ = '';
      try {
        environ = readFileSync(`/proc/${p.pid}/environ`, 'utf8');
      } catch {
        // gone, or a kernel thread
      }
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8');
      } catch {
        // gone
      }
      scanned += 1;
      if (/^(sshfs|ssh)$/.test(p.comm) && environ.includes(AGENT_MARKER)) found.push(`the plugin's SSH_AUTH_SOCK in the environment of ${p.pid} ${p.comm}`);
      for (const [label, secret] of secrets) {
        if (cmdline.includes(secret)) found.push(`${label} in argv of ${p.pid} ${p.comm}`);
        if (environ.includes(secret)) found.push(`${label} in environment of ${p.pid} ${p.comm}`);
      }
    }
    // Logs: the plugin's (DEBUG), each volume's ssh log.
    const logs: [string, string][] = [['plugin log', plugin.logs()]];
    for (const f of readdirSync(path.join(plugin.stateDir, 'logs'))) logs.push([`ssh log ${f}`, readFileSync(path.join(plugin.stateDir, 'logs', f), 'utf8')]);
    logs.push(['docker CLI error of the wrong password', bad.stderr]);
    for (const [where, text] of logs) for (const [label, secret] of secrets) if (text.includes(secret)) found.push(`${label} in ${where}`);

    // Modes of everything the plugin keeps.
    const bad0600: string[] = [];
    const entries = filesUnder(plugin.stateDir);
    for (const p of entries) {
      const st = statSync(p);
      const mode = st.mode & 0o777;
      if (st.isDirectory() ? mode & 0o077 : mode & 0o177) bad0600.push(`${path.relative(e2eDir(), p)} ${mode.toString(8)}`);
    }
    const keyFiles = readdirSync(path.join(plugin.stateDir, 'keys'));
    row.trials = 2;
    row.figures['processes scanned (argv + environ)'] = scanned;
    row.figures['secret occurrences found'] = found.length;
    row.figures['files/dirs checked, not private'] = `${entries.length}, ${bad0600.length}`;
    row.figures['key files kept'] = keyFiles.length;
    const stateText = ['volumes.json', 'volumes.journal'].map((f) => readFileSync(path.join(plugin.stateDir, f), 'utf8')).join('');
    row.figures['state file holds the password'] = stateText.includes(JSON.stringify(env.password).slice(1, -1))
      ? 'yes (0600, root only: needed to mount again)'
      : 'no';
    row.notes.push('docker volume inspect shows -o values, the password included: Docker stores them itself (use key files)');
    expect(found).toEqual([]);
    row.passed += 1;
    expect(bad0600).toEqual([]);
    expect(keyFiles).toHaveLength(1);
    row.passed += 1;
    await removeContainers(res, sleepers);
  });
});
