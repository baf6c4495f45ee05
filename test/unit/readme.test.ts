// The README is the users' map: its options table, defaults and Status fields are checked against the code, so
// neither can change without the other.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { allowedOptionsText, DEFAULT_SSH, OPTION_SPECS, parseOptions } from '../../handlers/options.js';
import type { VolumeRecord } from '../../handlers/types.js';
import { statusOf, type LiveView } from '../../handlers/status.js';
import { makeDeps } from './fixtures.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

function section(title: string): string {
  const start = README.indexOf(`\n## ${title}`);
  expect(start, `README has a "## ${title}" section`).toBeGreaterThan(0);
  const end = README.indexOf('\n## ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/** Option rows of the table: first cell's `names` -> the whole row. */
function optionRows(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of section('Options (`-o`)').split('\n')) {
    if (!line.startsWith('| `')) continue;
    const first = line.split('|')[1] ?? '';
    for (const m of first.matchAll(/`([A-Za-z_]+)`/g)) rows.set(m[1] ?? '', line);
  }
  return rows;
}

describe('README options table', () => {
  it('lists exactly the options the plugin accepts', () => {
    expect([...optionRows().keys()].sort()).toEqual(Object.keys(OPTION_SPECS).sort());
  });

  it('states each ssh default the plugin sets, in that option\'s row', () => {
    const rows = optionRows();
    for (const [key, value] of Object.entries(DEFAULT_SSH)) {
      expect(rows.get(key), `row for ${key}`).toContain(value);
      expect(rows.get(key), `row for ${key}`).toMatch(/default/);
    }
  });

  it('names the flag values the plugin accepts, and those are the ones it accepts', () => {
    const text = section('Options (`-o`)').replace(/\s+/g, ' ');
    const phrase = /a flag takes no value, ([^)]*)\)/.exec(text)?.[1] ?? '';
    const values = [...phrase.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
    expect(values).toEqual(['true', 'false', 'yes', 'no', 'on', 'off', '1', '0']);
    for (const [i, v] of values.entries()) {
      expect(parseOptions({ sshcmd: 'a@h:/p', ro: v }).sshfs.ro, v).toBe(i % 2 === 0 ? '' : undefined);
    }
    for (const v of ['y', 'enable', '2']) expect(() => parseOptions({ sshcmd: 'a@h:/p', ro: v })).toThrow(/is a flag/);
  });
});

describe('README "How errors look"', () => {
  it('shows the options list of a refused option as the plugin prints it', () => {
    const sample = /the options are:\n?([^\n]*(?:\n[^\n`]*)?)\.\.\./.exec(section('How errors look'))?.[1] ?? '';
    const shown = sample.replace(/\s+/g, ' ').trim().replace(/,$/, '');
    expect(shown).not.toBe('');
    expect(allowedOptionsText().startsWith(shown), `README: ${shown}\nplugin: ${allowedOptionsText()}`).toBe(true);
  });
});

describe('README Status fields', () => {
  it('names every field docker volume inspect can show under Status', () => {
    const record: VolumeRecord = {
      name: 'v',
      createdAt: '2026-01-01T00:00:00.000Z',
      options: { sshcmd: 'a@h:/p', uid: '1' },
      mountpoint: '/mnt/volumes/v',
      mounts: { a: 1 },
      mountedAt: '2026-01-01T00:00:00.000Z',
      idleUntil: '2026-01-01T00:05:00.000Z',
      lastError: 'x',
      lastErrorAt: '2026-01-01T00:00:00.000Z',
      sharedConnection: 'c0',
      stalledAt: '2026-01-01T00:01:00.000Z',
      stalledAfterSeconds: 60,
    };
    // Every field a live view can hold, and every state: each Status field shows up in one of these.
    const full: LiveView = {
      state: 'mounted',
      lastSshMessage: 'said',
      ssh: { startedAt: new Date(0), reconnected: true },
      readAheadKb: 1024,
      sharedMaster: { startedAt: new Date(0) },
    };
    const refused: VolumeRecord = { ...record, options: { sshcmd: 'a@h:/p', nonsense: 'x' } };
    const deps = makeDeps();
    const keys = new Set([
      ...Object.keys(statusOf(record, full, deps)),
      ...Object.keys(statusOf(record, { state: 'stale' }, deps)),
      ...Object.keys(statusOf(refused, { state: 'absent' }, deps)),
    ]);
    const paragraph = /\*\*Status\*\* in `docker volume inspect`[\s\S]*?\n\n/.exec(README)?.[0] ?? '';
    expect(paragraph).not.toBe('');
    for (const key of keys) expect(paragraph, `Status field ${key}`).toContain(`\`${key}\``);
  });
});

describe('README layout', () => {
  /** Source files of a top-level directory, relative to it (dist, node_modules and tests' own files aside). */
  function sources(dir: string): string[] {
    return (readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' }) as string[])
      .filter((f) => /\.(ts|sh)$/.test(f))
      .map((f) => f.split(path.sep).join('/'));
  }
  const layout = () => section('Layout');

  it('names every source file of handlers/, adapter/, state/ and scripts/', () => {
    const text = layout();
    for (const dir of ['handlers', 'adapter', 'state', 'scripts']) {
      for (const file of sources(dir)) {
        if (dir === 'scripts' && file.startsWith('bench/')) continue; // listed as bench/
        // As `name.ts` or as a path ending in it (`lib/name.sh`).
        const named = text.includes(`\`${path.posix.basename(file)}\``) || text.includes(`/${path.posix.basename(file)}\``);
        expect(named, `${dir}/${file} in the layout table`).toBe(true);
      }
    }
  });

  it('names no file that does not exist', () => {
    const all = new Set(['handlers', 'adapter', 'state', 'scripts', 'test'].flatMap((d) => sources(d).map((f) => path.posix.basename(f))));
    for (const m of layout().matchAll(/`([A-Za-z0-9_./-]+\.(?:ts|sh))`/g)) {
      expect(all.has(path.posix.basename(m[1] ?? '')), `${m[1]} exists`).toBe(true);
    }
  });
});

describe('README set-up', () => {
  it('"The two commands" holds exactly the two a newcomer needs', () => {
    const blocks = [...section('The two commands').matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
    expect(blocks).toHaveLength(1);
    const commands = (blocks[0] ?? '').split('\n').filter((l) => l.trim() !== '').map((l) => l.replace(/#.*/, '').trim());
    expect(commands).toEqual(['npm run plugin:install', 'npm test']);
  });

  it('has a quick start per engine, after the two commands, each a block the quick-start tests run', () => {
    const text = section('Quick starts');
    expect(README.indexOf('## Quick starts')).toBeGreaterThan(README.indexOf('## The two commands'));
    for (const name of ['docker-managed', 'docker-host', 'podman', 'swarm']) {
      expect(text, name).toMatch(new RegExp(`<!-- quickstart: ${name} -->\\n\`\`\`sh\\n`));
    }
  });
});
