#!/usr/bin/env node
// STAND-IN for telemt (the MTProxy server), which is not packaged for Debian. It is NOT an MTProxy:
// it does what Keel's telemt adapter relies on, so the adapter can be tested end to end:
//   - `telemt-stand-in.mjs <config.toml>` reads the file (real TOML parser) like telemt does:
//     [server] port / listen_addr_ipv4 / metrics_port, [access.users] name = 32-hex secret;
//   - reloads the file by itself when it changes (telemt hot-reloads its config), keeping the old
//     one when the new one does not parse;
//   - serves the documented Prometheus counters telemt_user_octets_from_client{user} and
//     telemt_user_octets_to_client{user} on 127.0.0.1:<metrics_port>/metrics;
//   - its "proxy" port takes a connection whose first line is a user's secret, then echoes bytes,
//     counting them per user (from client = received, to client = sent back).
import { readFileSync, watchFile } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { parse } from 'smol-toml';

const path = process.argv[2];
if (!path) {
  process.stderr.write('usage: telemt-stand-in.mjs <config.toml>\n');
  process.exit(2);
}

function load() {
  const doc = parse(readFileSync(path, 'utf8'));
  const users = new Map(
    Object.entries(doc.access?.users ?? {}).map(([name, secret]) => [String(secret), name]),
  );
  return { doc, users };
}

let config = load();
let reloads = 0;
const octets = new Map(); // user -> { from, to }
const count = (user, key, n) => {
  const e = octets.get(user) ?? { from: 0, to: 0 };
  e[key] += n;
  octets.set(user, e);
};

const proxy = createServer((socket) => {
  let head = '';
  let user = null;
  socket.on('error', () => {});
  socket.on('data', (d) => {
    if (user === null) {
      head += d.toString('latin1');
      const nl = head.indexOf('\n');
      if (nl < 0) {
        if (head.length > 64) socket.destroy();
        return;
      }
      user = config.users.get(head.slice(0, nl).trim()) ?? '';
      if (!user) {
        socket.destroy();
        return;
      }
      const rest = Buffer.from(head.slice(nl + 1), 'latin1');
      if (rest.length) {
        count(user, 'from', rest.length);
        socket.write(rest);
        count(user, 'to', rest.length);
      }
      return;
    }
    count(user, 'from', d.length);
    socket.write(d);
    count(user, 'to', d.length);
  });
});
const server = config.doc.server ?? {};
proxy.listen(server.port, server.listen_addr_ipv4 ?? '0.0.0.0', () => {
  process.stdout.write(`telemt stand-in: proxy on ${server.port}, ${config.users.size} users\n`);
});

const metrics = createHttpServer((req, res) => {
  if (req.url !== '/metrics') {
    res.statusCode = 404;
    res.end();
    return;
  }
  const lines = [
    '# HELP telemt_user_octets_from_client Bytes received from clients, per user.',
    '# TYPE telemt_user_octets_from_client counter',
    ...[...octets].map(([u, e]) => `telemt_user_octets_from_client{user="${u}"} ${e.from}`),
    '# HELP telemt_user_octets_to_client Bytes sent to clients, per user.',
    '# TYPE telemt_user_octets_to_client counter',
    ...[...octets].map(([u, e]) => `telemt_user_octets_to_client{user="${u}"} ${e.to}`),
    '# HELP telemt_stand_in_config_reloads Config reloads (stand-in only).',
    `telemt_stand_in_config_reloads ${reloads}`,
  ];
  res.setHeader('content-type', 'text/plain; version=0.0.4');
  res.end(`${lines.join('\n')}\n`);
});
metrics.listen(server.metrics_port ?? 9090, '127.0.0.1');

watchFile(path, { interval: 100 }, () => {
  try {
    config = load();
    reloads++;
    process.stdout.write(`telemt stand-in: config reloaded, ${config.users.size} users\n`);
  } catch (err) {
    process.stderr.write(`telemt stand-in: config not reloaded: ${err.message}\n`);
  }
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
