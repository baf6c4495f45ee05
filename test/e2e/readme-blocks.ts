// The README's quick starts as tests run them: the fenced block after `<!-- quickstart: NAME -->`, and the test's own
// server, key, names and directories put in for the README's example values.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './harness.js';

const README = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');

/** The fenced block that follows `<!-- quickstart: NAME -->`. */
export function quickstart(name: string): string {
  const m = new RegExp(`<!-- quickstart: ${name} -->\\n\`\`\`sh\\n([\\s\\S]*?)\\n\`\`\`\\n`).exec(README);
  if (!m?.[1]) throw new Error(`README has no quick start "${name}"`);
  return m[1];
}

/** The test's ssh server: the README's alice@files.example.com and ~/.ssh/id_ed25519. */
export interface TestServer {
  keyUser: string;
  sshHost: string;
  /** When not 22. */
  sshPort?: number | string;
  keyFile: string;
}

export interface Target {
  /** The driver name (the README's `sshfs`). */
  driver: string;
  /** The volume's name (the README's `data`). */
  volume: string;
  /** The remote directory on the test sshd (the README's `/srv/data` on files.example.com). */
  remote: string;
  /** The keys directory the block writes the key to (the README's /srv/sshfs-keys or /etc/docker-volume-sshfs/keys). */
  keysDir: string;
  /** The image (the README's busybox). */
  image: string;
  /** Podman's drop-in directory (the README's /etc/containers/containers.conf.d). */
  confDir?: string;
  /** The socket (the README's /run/docker/plugins/sshfs.sock). */
  socket?: string;
}

/** BLOCK with the test's values for the README's. Each replacement must apply where the README has its text. */
export function forTest(block: string, server: TestServer, t: Target): string {
  const login = `${server.keyUser}@${server.sshHost}:${t.remote}`;
  const port = server.sshPort === undefined ? '' : ` -o port=${server.sshPort}`;
  const subs: [RegExp, string][] = [
    [/-o sshcmd=alice@files\.example\.com:\/srv\/data/g, `-o sshcmd=${login}${port}`],
    [/volume-opt=sshcmd=alice@files\.example\.com:\/srv\/data/g, `volume-opt=sshcmd=${login}${port.replace(' -o ', ',volume-opt=')}`],
    [/~\/\.ssh\/id_ed25519/g, server.keyFile],
    [/\/srv\/sshfs-keys/g, t.keysDir],
    [/\/etc\/docker-volume-sshfs\/keys/g, t.keysDir],
    [/-d sshfs /g, `-d ${t.driver} `],
    [/--driver sshfs /g, `--driver ${t.driver} `],
    [/volume-driver=sshfs/g, `volume-driver=${t.driver}`],
    [/ data$/gm, ` ${t.volume}`],
    [/-v data:/g, `-v ${t.volume}:`],
    [/source=data,/g, `source=${t.volume},`],
    [/ busybox /g, ` ${t.image} `],
  ];
  if (t.confDir) subs.push([/\/etc\/containers\/containers\.conf\.d/g, t.confDir]);
  if (t.socket) subs.push([/sshfs = "\/run\/docker\/plugins\/sshfs\.sock"/g, `${t.driver} = "${t.socket}"`]);
  let out = block;
  for (const [re, value] of subs) out = out.replace(re, value);
  return out;
}

