// What an idle agent keeps alive, from a V8 heap snapshot of it: the heap by kind of object, the
// largest objects (the bundle's source string is one), and how many zod schemas are alive (zod 4
// keeps one `Internals` object per schema). Take the snapshot from an agent run as its unit runs it
// plus `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=DIR` and `kill -USR2 <pid>` once it has
// settled (docs/benchmarks.md, agent-idle).
//
// Run: npx tsx bench/agent-heap.ts --file DIR/Heap.….heapsnapshot [--top 30]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    top: { type: 'string', default: '30' },
    file: { type: 'string' },
  },
});

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

const kb = (n: number) => `${(n / 1024).toFixed(0).padStart(7)} KiB`;

/** Summarizes a .heapsnapshot: self sizes by type and name, the biggest nodes, scripts, zod schemas. */
export function summarize(file: string, top: number): void {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [
    number,
    number,
    number,
  ];
  const byType = new Map<string, number>();
  const byName = new Map<string, { size: number; count: number }>();
  const biggest: { label: string; size: number }[] = [];
  let total = 0;
  let zod = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType]!]!;
    const name = snap.strings[snap.nodes[i + iName]!]!;
    const size = snap.nodes[i + iSize]!;
    total += size;
    byType.set(type, (byType.get(type) ?? 0) + size);
    const key =
      type === 'object' || type === 'closure'
        ? `${type} ${name}`
        : type === 'code'
          ? `code ${name.slice(0, 40)}`
          : type;
    const e = byName.get(key) ?? { size: 0, count: 0 };
    e.size += size;
    e.count++;
    byName.set(key, e);
    if (type === 'object' && name === 'Internals') zod++; // zod 4 keeps each schema's internals in one
    if (size > 32 * 1024) biggest.push({ label: `${type} ${name.slice(0, 90).replace(/\s+/g, ' ')}`, size });
  }
  console.log(
    `heap snapshot ${file}: ${kb(total)} in ${snap.nodes.length / width} nodes; zod schema objects alive: ${zod}`,
  );
  console.log('\nby node type:');
  for (const [t, s] of [...byType].sort((a, b) => b[1] - a[1])) console.log(`  ${kb(s)}  ${t}`);
  console.log(`\ntop ${top} by type and constructor/name (self size):`);
  for (const [k, e] of [...byName].sort((a, b) => b[1].size - a[1].size).slice(0, top))
    console.log(`  ${kb(e.size)}  ${String(e.count).padStart(6)}x  ${k.slice(0, 100)}`);
  console.log('\nobjects over 32 KiB:');
  for (const b of biggest.sort((a, b) => b.size - a.size).slice(0, top))
    console.log(`  ${kb(b.size)}  ${b.label}`);
}

if (!args.file) {
  console.error('usage: npx tsx bench/agent-heap.ts --file X.heapsnapshot [--top 30]');
  process.exit(2);
}
summarize(args.file, Number(args.top));
