// Benchmark: regex search over 1 GiB of one process's stored log lines (issue 8), on its own —
// without the logs bench's capture legs — and the ceilings under it, so the docs can say which part
// of a search's time is Keel's:
//   grep         `grep -cE` over the same lines as a plain file (the issue's yardstick);
//   search       GET /logs/search's service (in this process, no HTTP) with a pattern that requires
//                no literal (every chunk read) and ones that do (the gram filters skip chunks);
//   pg-copy      PostgreSQL's own ceiling for reading the chunk bytes: `psql \copy (select data …)
//                to /dev/null` in binary format (no hex text), one connection;
//   hex-fetch    the chunks' bytes through postgres.js as a query returns them (hex text of bytea);
//   copy-fetch   the same bytes through postgres.js as a binary COPY stream;
//   decode       LZ4 decoding of every chunk on this machine (in memory, nothing fetched): lz4-napi
//                on the thread pool, and the search workers' JavaScript decoder into one buffer;
//   stored       the repository's pages as stored (fetch only: what the no-literal search reads);
//   floor        the repository's decoded pages (fetch + decode), nothing else.
// Each leg prints wall time, this process's CPU-s and the PostgreSQL backends' CPU-s.
//
// The lines are the logs bench's writer's (bench/logs.ts): 100 bytes each, numbered. They are
// appended through the controller's stream repository as the gateway appends what an agent sends,
// then the retention job's summary pass writes every chunk's gram filter. The database
// (keel_bench_search_<mib>) is kept between runs and reused when complete (--fresh rebuilds it).
//
// A/B: --root <checkout> imports the search service and repository from another checkout (e.g. a
// `git worktree` of the commit before a change, with node_modules linked); --runs alternates.
//
// The repository reads pages as the controller does unless --copy on|off forces a way.
//
// Run: npx tsx bench/log-search.ts [--mib 1024] [--fresh] [--runs 1] [--legs grep,search,...]
//      [--root /path/to/other/checkout] [--label old] [--copy default|on|off]
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { type SQL, sql as dsql } from 'drizzle-orm';
import postgres from 'postgres';
import { encodeLogLine, encodeRecords } from '@keel/shared';
import { openDatabase } from '../controller/src/db/index.ts';
import { createLogRetentionRepository } from '../controller/src/repositories/log-retention.ts';
import { createStreamRepository } from '../controller/src/repositories/streams.ts';
import { decodeChunk } from '../controller/src/repositories/chunk-codec.ts';
import { decodeLz4Block } from '../controller/src/repositories/lz4-block.ts';
import { parseCopyRows, readAll } from '../controller/src/repositories/chunk-copy.ts';
import type * as LogSearchRepositoryModule from '../controller/src/repositories/log-search.ts';
import type * as LogSearchServiceModule from '../controller/src/services/log-search.ts';
import { createHostRepository } from '../controller/src/repositories/hosts.ts';
import { PG_ADMIN_URL } from './lib/harness.ts';

const { values: args } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    fresh: { type: 'boolean', default: false },
    runs: { type: 'string', default: '1' },
    legs: { type: 'string', default: 'grep,search,pg-copy,hex-fetch,copy-fetch,decode,stored,floor' },
    root: { type: 'string' },
    label: { type: 'string' },
    patterns: { type: 'string', default: 'none,literal' },
    // How the repository reads pages: as the controller does (default), or forced (`on`: binary
    // COPY, `off`: by query) — e.g. the code before 1 Dec 04:00 read by query unless asked.
    copy: { type: 'string', default: 'default' },
    // `pglite`: the embedded database (a data dir kept in /tmp between runs), as a controller on its
    // defaults stores logs; its reads run in this process, so its CPU is in `node`'s figure.
    driver: { type: 'string', default: 'postgres' },
  },
});
const MiB = 1024 * 1024;
const LINE_BYTES = 100;
const total = Math.floor((Number(args.mib) * MiB) / LINE_BYTES);
const pglite = args.driver === 'pglite';
/** Legs that read PostgreSQL's chunks around the repository (psql, postgres.js): PostgreSQL only. */
const postgresOnly = ['pg-copy', 'hex-fetch', 'copy-fetch', 'decode'];
const legs = new Set(args.legs.split(',').filter((l) => !pglite || !postgresOnly.includes(l)));
// ~100 matches each over the same lines. `none` truly requires no literal of a gram's length (the
// `.` splits it: `99`, `999 `), so it measures the full scan; `counted` is what `none` was before 1
// Dec (`9{5}`), which now requires `99999 ` as `literal` does.
const PATTERNS = {
  none: '^n [0-9]*99.999 ',
  counted: '^n [0-9]*9{5} ',
  literal: '^n [0-9]*99999 ',
};
const dbName = `keel_bench_search_${args.mib}`;
const url = new URL(PG_ADMIN_URL);
url.pathname = `/${dbName}`;
const plain = `/tmp/${dbName}.log`;

const methods = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];
const paths = ['/api/v1/items', '/api/v1/users', '/healthz', '/static/app.js', '/api/v1/orders', '/login'];
const codes = [200, 200, 200, 200, 201, 204, 304, 404, 500];
/** The logs bench writer's line n (without its newline). */
const line = (n: number) => {
  const s =
    'n ' +
    String(n).padStart(9, '0') +
    ' INFO api[' +
    (1000 + (n % 32)) +
    ']: ' +
    methods[n % 6] +
    ' ' +
    paths[(n >> 3) % 6] +
    '/' +
    ((n * 7919) % 100000) +
    ' ' +
    codes[n % 9] +
    ' ' +
    (n % 250) +
    'ms req=' +
    ((n * 2654435761) >>> 0).toString(16).padStart(8, '0');
  return s.padEnd(LINE_BYTES - 1, ' ').slice(0, LINE_BYTES - 1);
};

/** CPU-ms of PostgreSQL backends serving this database (their process title names it). */
function backendCpuMs(): number {
  let ms = 0;
  if (pglite) return 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.startsWith(`postgres: 15/main: postgres ${dbName}`)) continue;
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ms += ((Number(f[11]) + Number(f[12])) * 1000) / 100;
    } catch {
      // gone meanwhile
    }
  }
  return ms;
}

async function measure<T>(what: string, fn: () => Promise<T>, describe: (r: T) => string = () => '') {
  const c0 = process.cpuUsage();
  const b0 = backendCpuMs();
  const t0 = performance.now();
  const r = await fn();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const b = backendCpuMs() - b0;
  console.log(
    `${args.label ? `[${args.label}] ` : ''}${what}: ${(ms / 1000).toFixed(2)} s, node ${((c.user + c.system) / 1e6).toFixed(2)} CPU-s, pg backends ${(b / 1000).toFixed(2)} CPU-s ${describe(r)} (load ${loadavg()[0]!.toFixed(1)})`,
  );
  return { ms, r };
}

// ---- the data set (kept between runs) ------------------------------------------------------------
const pgliteDir = `/tmp/keel-bench-search-pglite-${args.mib}`;
if (pglite && args.fresh) rmSync(pgliteDir, { recursive: true, force: true });
if (!pglite) {
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  const [exists] = await admin`select 1 as x from pg_database where datname = ${dbName}`;
  if (exists && args.fresh) await admin.unsafe(`drop database "${dbName}" with (force)`);
  if (!exists || args.fresh) await admin.unsafe(`create database "${dbName}"`);
  await admin.end();
}
const opened = pglite
  ? await openDatabase({ dataDir: pgliteDir })
  : await openDatabase({ url: url.toString(), dataDir: '/tmp', maxConnections: 4 });
const db = opened.db;
/** The legs around the repository read through their own client (PostgreSQL only). */
const sql = pglite ? null : postgres(url.toString(), { max: 2, onnotice: () => {} });
/** A query's rows on either driver (drizzle's execute answers an array or `{ rows }`). */
async function queryRows<T>(query: SQL): Promise<T[]> {
  const r = (await db.execute(query)) as unknown as T[] | { rows: T[] };
  return Array.isArray(r) ? r : r.rows;
}
let [host] = await queryRows<{ id: string; name: string }>(dsql`select id, name from hosts limit 1`);
const [stored] = await queryRows<{ n: string | number; bare: number }>(
  dsql`select coalesce(max(last_seq), 0)::bigint as n, count(*) filter (where grams is null)::int as bare from stream_chunks`,
);
if (!host || Number(stored!.n) < total || stored!.bare > 0) {
  if (!host) {
    [host] = await queryRows<{
      id: string;
      name: string;
    }>(dsql`insert into hosts (name, public_key, last_seen_at)
      values ('bench-search', ${Buffer.alloc(32, 7).toString('base64url')}, now()) returning id, name`);
  }
  const streams = createStreamRepository(db);
  const t0 = performance.now();
  for (let seq = Number(stored!.n) + 1; seq <= total;) {
    const n = Math.min(40_000, total - seq + 1);
    const records = [];
    for (let i = 0; i < n; i++) {
      records.push({
        ts: Date.now(),
        payload: encodeLogLine({
          process: 'writer',
          stream: 'stdout',
          continued: false,
          line: Buffer.from(line(seq + i)),
        }),
      });
    }
    await streams.append(host!.id, 'logs', { firstSeq: seq, count: n, body: encodeRecords(records) });
    seq += n;
  }
  const retention = createLogRetentionRepository(db);
  while ((await retention.summariseMissing(host!.id, 100)) > 0);
  console.log(
    `stored ${total.toLocaleString('en')} lines in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
}
if (!existsSync(plain) || statSync(plain).size !== total * LINE_BYTES) {
  const fd = openSync(plain, 'w');
  for (let n = 1; n <= total;) {
    let s = '';
    for (let i = 0; i < 10_000 && n <= total; i++) s += line(n++) + '\n';
    writeSync(fd, s);
  }
  closeSync(fd);
}
const [size] = await queryRows<{ chunks: number; data: string | number }>(
  dsql`select count(*)::int as chunks, sum(octet_length(data))::bigint as data from stream_chunks where host_id = ${host!.id}`,
);
console.log(
  `${pglite ? pgliteDir : dbName}: ${total.toLocaleString('en')} lines (${(statSync(plain).size / MiB).toFixed(0)} MiB), ${size!.chunks} chunks, ${(Number(size!.data) / MiB).toFixed(0)} MiB of chunk data`,
);

// ---- the code under test -------------------------------------------------------------------------
const root = resolve(args.root ?? new URL('..', import.meta.url).pathname);
const { createLogSearchService } = (await import(
  pathToFileURL(`${root}/controller/src/services/log-search.ts`).href
)) as typeof LogSearchServiceModule;
const { createLogSearchRepository } = (await import(
  pathToFileURL(`${root}/controller/src/repositories/log-search.ts`).href
)) as typeof LogSearchRepositoryModule;
const repositoryOptions = args.copy === 'default' ? {} : { copy: args.copy === 'on' };
const search = createLogSearchService({
  hosts: createHostRepository(db),
  logs: createLogSearchRepository(db, repositoryOptions),
});
const actor = { id: 'bench', role: 'owner' as const, ip: null };

for (let run = 0; run < Number(args.runs); run++) {
  for (const which of args.patterns.split(',') as (keyof typeof PATTERNS)[]) {
    const pattern = PATTERNS[which];
    if (legs.has('grep')) {
      // grep's own CPU-s from /usr/bin/time (its last stderr line: user and system seconds).
      await measure(
        `grep -cE /${pattern}/`,
        async () => {
          const r = spawnSync('/usr/bin/time', ['-f', '%U %S', 'grep', '-cE', pattern, plain]);
          const [user, system] = r.stderr.toString().trim().split('\n').at(-1)!.split(' ').map(Number);
          return { n: Number(r.stdout.toString().trim()), cpu: user! + system! };
        },
        (r) => `${r.n} matches, grep ${r.cpu.toFixed(2)} CPU-s`,
      );
    }
    if (legs.has('search')) {
      await measure(
        `search /${pattern}/`,
        async () => {
          const events = await search.start(actor, {
            q: pattern,
            regex: true,
            hostId: host!.id,
            process: 'writer',
            limit: 2000,
            maxSeconds: 120,
          });
          let end: { matches: number; readRecords: number; reason: string } | undefined;
          for await (const e of events) if (e.type === 'end') end = e;
          return end!;
        },
        (e) => `${e.matches} matches, ${e.readRecords.toLocaleString('en')} records read, ${e.reason}`,
      );
    }
  }
  if (legs.has('pg-copy')) {
    await measure(
      'psql \\copy (select data) to /dev/null, binary',
      async () =>
        spawnSync('psql', [
          url.toString(),
          '-c',
          `\\copy (select data from stream_chunks where host_id = '${host!.id}' and stream = 'logs' order by first_seq) to '/dev/null' with (format binary)`,
        ]).stdout.toString(),
      (out) => out.trim(),
    );
  }
  if (legs.has('hex-fetch')) {
    await measure(
      'postgres.js select data (hex text), pages of 32, decoded',
      async () => {
        let bytes = 0;
        for (let after = -1; ;) {
          const rows = await sql!<{ first_seq: number; codec: number; data: Buffer }[]>`
            select first_seq, codec, data from stream_chunks
            where host_id = ${host!.id} and stream = 'logs' and first_seq > ${after}
            order by first_seq limit 32`;
          if (rows.length === 0) break;
          for (const r of rows) bytes += (await decodeChunk(r.codec, r.data)).length;
          after = Number(rows.at(-1)!.first_seq);
        }
        return bytes;
      },
      (b) => `${(b / MiB).toFixed(0)} MiB of records`,
    );
  }
  const copyAll = async () =>
    readAll(
      await sql!
        .unsafe(
          `copy (select first_seq, count, codec, data from stream_chunks where host_id = '${host!.id}' and stream = 'logs' order by first_seq) to stdout with (format binary)`,
        )
        .readable(),
    );
  if (legs.has('copy-fetch')) {
    await measure(
      'postgres.js copy (select …, data) to stdout binary, bytes only',
      async () => (await copyAll()).length,
      (b) => `${(b / MiB).toFixed(0)} MiB over the connection`,
    );
  }
  if (legs.has('decode')) {
    const rows = parseCopyRows(await copyAll());
    await measure(
      'LZ4 decode of every chunk (in memory), one at a time on the thread pool',
      async () => {
        let bytes = 0;
        for (const r of rows) bytes += (await decodeChunk(r.codec, r.data)).length;
        return bytes;
      },
      (b) => `${(b / MiB).toFixed(0)} MiB of records`,
    );
    await measure(
      'LZ4 decode of every chunk (in memory), JavaScript into one reused buffer, on this thread',
      async () => {
        let bytes = 0;
        let out = Buffer.alloc(0);
        for (const r of rows) {
          const size = r.data.readUInt32LE(0);
          if (out.length < size) out = Buffer.allocUnsafeSlow(size * 2);
          bytes += decodeLz4Block(r.data, 4, r.data.length, out, 0, size);
        }
        return bytes;
      },
      (b) => `${(b / MiB).toFixed(0)} MiB of records`,
    );
    await measure(
      'LZ4 decode of every chunk (in memory), 32 at a time on the thread pool',
      async () => {
        let bytes = 0;
        for (let i = 0; i < rows.length; i += 32) {
          for (const b of await Promise.all(rows.slice(i, i + 32).map((r) => decodeChunk(r.codec, r.data))))
            bytes += b.length;
        }
        return bytes;
      },
      (b) => `${(b / MiB).toFixed(0)} MiB of records`,
    );
  }
  if (legs.has('stored')) {
    // The fetch alone as the no-literal search reads: pages as stored (COPY on PostgreSQL), no decode.
    const logs = createLogSearchRepository(db, repositoryOptions);
    if ('storedPages' in logs) {
      await measure(
        'repository pages as stored (fetch only, as the no-literal search reads)',
        async () => {
          let bytes = 0;
          for await (const page of logs.storedPages(host!.id, {}))
            for (const c of page) bytes += c.data.length;
          return bytes;
        },
        (b) => `${(b / MiB).toFixed(0)} MiB of chunk data`,
      );
    }
  }
  if (legs.has('floor')) {
    // The storage floor as the repository reads now: its pages (listing, COPY, decode), nothing else.
    const logs = createLogSearchRepository(db, repositoryOptions);
    await measure(
      'repository pages (fetch + decode), nothing else',
      async () => {
        let bytes = 0;
        for await (const page of logs.pages(host!.id, {})) for (const c of page) bytes += c.body.length;
        return bytes;
      },
      (b) => `${(b / MiB).toFixed(0)} MiB of records`,
    );
  }
}
await sql?.end();
await opened.close();
