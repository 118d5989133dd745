#!/usr/bin/env node
/**
 * `node bench/profile-top.js <file.cpuprofile> [count]`: the functions with the most self time in
 * a V8 CPU profile (as `BENCH_PROFILE=<dir> npm run bench` writes for each jit process), with
 * their share of the busy (non-idle) time. Enough to see where a relay spends its CPU.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** Self time per function (name + file:line), busiest first: `[{ name, where, ms, share }]`. */
export function topFunctions(profile, count = 25) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const byFunction = new Map();
  let busy = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)?.callFrame;
    if (!f) continue;
    const name = f.functionName || '(anonymous)';
    if (name === '(idle)' || name === '(program)') continue;
    busy += us;
    const where = f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : '';
    const key = `${name} ${where}`;
    const e = byFunction.get(key) ?? { name, where, us: 0 };
    e.us += us;
    byFunction.set(key, e);
  }
  return [...byFunction.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, count)
    .map((e) => ({ name: e.name, where: e.where, ms: e.us / 1000, share: busy ? e.us / busy : 0 }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, n] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node bench/profile-top.js <file.cpuprofile> [count]\n');
    process.exitCode = 2;
  } else {
    const profile = JSON.parse(readFileSync(file, 'utf8'));
    for (const f of topFunctions(profile, Number(n) || 25)) {
      process.stdout.write(`${(f.share * 100).toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(7)} ms  ${f.name}  ${f.where}\n`);
    }
  }
}
