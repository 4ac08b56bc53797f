#!/usr/bin/env node
// Summarises .cpuprofile files (V8 sampling profiles, as the benchmarks write them): self time by
// function, and total (inclusive) time of the functions that matter most.
// Usage: node scripts/profile-top.mjs file.cpuprofile [more…] [--top 40]
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 40;

for (const file of args) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const dt = new Map();
  profile.samples.forEach((id, i) => dt.set(id, (dt.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...dt.values()].reduce((a, b) => a + b, 0);
  const label = (n) => {
    const f = n.callFrame;
    const url = f.url ? basename(f.url.replace(/^file:\/\//, '')) : '';
    return `${f.functionName || '(anonymous)'} ${url}${url ? ':' + (f.lineNumber + 1) : ''}`;
  };
  const self = new Map();
  const inclusive = new Map();
  for (const [id, t] of dt) {
    const n = nodes.get(id);
    self.set(label(n), (self.get(label(n)) ?? 0) + t);
    // Inclusive: count each function once per sample stack.
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(nodes.get(cur));
      if (seen.has(l)) continue;
      seen.add(l);
      inclusive.set(l, (inclusive.get(l) ?? 0) + t);
    }
  }
  const pct = (t) => ((100 * t) / total).toFixed(1).padStart(5) + '%';
  console.log(`\n== ${file}: ${(total / 1000).toFixed(0)} ms sampled`);
  console.log('-- self');
  for (const [l, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(pct(t), l);
  console.log('-- inclusive');
  for (const [l, t] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(pct(t), l);
}
