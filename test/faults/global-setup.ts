// vitest globalSetup for the fault suite: its own environment (E2E_FAULTS_DIR, default <repo>/.e2e-faults) brought up
// by the e2e setup, a fresh results file, and at the end one table of every property with its figures.
//
//   E2E_FAULTS_DIR=DIR   where the environment lives (must not be shared with a running e2e or benchmark run)
//   E2E_SKIP_BUILD=1, E2E_KEEP=1 as for the e2e project
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { setupEnvironment } from '../e2e/global-setup.js';
import { RESULTS_FILE_NAME, type RecordedRow } from './lib.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIR = path.resolve(process.env.E2E_FAULTS_DIR || path.join(REPO_ROOT, '.e2e-faults'));

/** Table order: as the issue lists the properties. */
const ORDER = ['restart', 'storm', 'state-dir', 'sshd', 'dockerd', 'concurrency', 'timeouts', 'zombies', 'hostile', 'hostile-server', 'secrets', 'chaos'];

export function formatTable(rows: RecordedRow[], wallSeconds: number): string {
  const rank = (r: RecordedRow) => {
    const i = ORDER.findIndex((k) => r.file.startsWith(k));
    return i < 0 ? ORDER.length : i;
  };
  const sorted = [...rows].sort((a, b) => rank(a) - rank(b));
  const width = Math.min(60, Math.max(8, ...sorted.map((r) => r.property.length)));
  const lines: string[] = [];
  const rule = '-'.repeat(width + 40);
  lines.push('', `FAULT SUITE: ${sorted.filter((r) => r.ok).length}/${sorted.length} properties hold (wall time ${wallSeconds.toFixed(0)} s)`, rule);
  lines.push(`${'property'.padEnd(width)}  result  trials     secs  figures`);
  lines.push(rule);
  for (const r of sorted) {
    const figures = Object.entries(r.figures).map(([k, v]) => `${k}: ${v}`);
    const head = `${r.property.slice(0, width).padEnd(width)}  ${(r.ok ? 'PASS' : 'FAIL').padEnd(6)}  ${`${r.passed}/${r.trials}`.padEnd(9)}  ${String(r.seconds).padStart(5)}  `;
    const indent = ' '.repeat(head.length);
    lines.push(head + (figures[0] ?? ''));
    for (const f of figures.slice(1)) lines.push(indent + f);
    for (const n of r.notes) lines.push(`${indent}note: ${n}`);
    if (r.error !== undefined) lines.push(`${indent}ERROR: ${r.error}`);
  }
  lines.push(rule);
  return lines.join('\n');
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = performance.now();
  mkdirSync(DIR, { recursive: true });
  const results = path.join(DIR, RESULTS_FILE_NAME);
  rmSync(results, { force: true });
  const teardownEnv = await setupEnvironment(project, DIR);
  return async () => {
    const rows = existsSync(results)
      ? readFileSync(results, 'utf8')
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as RecordedRow)
      : [];
    const table = formatTable(rows, (performance.now() - started) / 1000);
    writeFileSync(path.join(DIR, 'fault-table.txt'), `${table}\n`);
    process.stdout.write(`${table}\n(table also in ${path.join(DIR, 'fault-table.txt')})\n`);
    await teardownEnv();
  };
}
