// The built-in process templates: what a fresh controller offers under "New from template". They
// live in code (never stored), so an upgrade brings their fixes; an operator who wants a variant
// exports one, edits it and imports it under another id.
import { processTemplateSchema, type ProcessTemplate, type ProcessTemplateInput } from '@keel/shared';

const catalogue: ProcessTemplateInput[] = [
  {
    id: 'minecraft-java',
    name: 'Minecraft-style Java server',
    description:
      'A Java game server started from its jar (Paper, Purpur, Vanilla, Fabric…). Writes eula.txt and server.properties before each start, stops with the console command `stop` and is up once it prints its "Done" line. Put the server jar in the working directory first.',
    argv: [
      '{{JAVA}}',
      '-Xms{{MIN_MEMORY}}M',
      '-Xmx{{MAX_MEMORY}}M',
      '{{JVM_FLAGS}}',
      '-jar',
      '{{SERVER_JAR}}',
      'nogui',
    ],
    variables: [
      { key: 'JAVA', label: 'Java program', default: 'java', pattern: '[A-Za-z0-9_./-]+', env: false },
      { key: 'SERVER_JAR', label: 'Server jar', default: 'server.jar', pattern: '[A-Za-z0-9_.-]+\\.jar' },
      {
        key: 'MIN_MEMORY',
        label: 'Initial heap (MiB)',
        type: 'integer',
        default: 512,
        min: 64,
        max: 1_048_576,
      },
      {
        key: 'MAX_MEMORY',
        label: 'Maximum heap (MiB)',
        type: 'integer',
        default: 2048,
        min: 128,
        max: 1_048_576,
      },
      {
        key: 'JVM_FLAGS',
        label: 'Extra JVM flags (one per line)',
        type: 'args',
        required: false,
        description: 'Each line is one argument, passed as is (e.g. -XX:+UseG1GC).',
      },
      { key: 'SERVER_PORT', label: 'Game port', type: 'port', default: 25565 },
      { key: 'MOTD', label: 'Message of the day', default: 'A Keel server', max: 200 },
      { key: 'MAX_PLAYERS', label: 'Max players', type: 'integer', default: 20, min: 1, max: 10_000 },
      {
        key: 'EULA',
        label: 'I accept the Minecraft EULA (https://aka.ms/MinecraftEULA)',
        type: 'boolean',
        default: false,
      },
    ],
    files: [
      { path: 'eula.txt', content: 'eula={{EULA}}\n' },
      {
        path: 'server.properties',
        content:
          'server-port={{SERVER_PORT}}\nmotd={{MOTD}}\nmax-players={{MAX_PLAYERS}}\nenable-rcon=false\n',
      },
    ],
    ports: [{ name: 'game', port: '{{SERVER_PORT}}', protocol: 'tcp' }],
    stop: { stdinLine: 'stop', signal: 'SIGTERM', graceMs: 30_000 },
    doneLines: [')! For help, type '],
    restart: 'on-failure',
  },
  {
    id: 'mtproxy-telemt',
    name: 'MTProxy node (telemt)',
    description:
      'A Telegram MTProxy served by telemt from a config.toml written before each start (fake-TLS domain, port, one user). For fleets of proxy nodes with many users, use Proxies instead; this is a single hand-run node.',
    argv: ['{{TELEMT}}', 'config.toml'],
    variables: [
      { key: 'TELEMT', label: 'telemt program', default: 'telemt', pattern: '[A-Za-z0-9_./-]+', env: false },
      { key: 'PORT', label: 'Proxy port', type: 'port', default: 443 },
      { key: 'LISTEN', label: 'Listen address (IPv4)', default: '0.0.0.0', pattern: '[0-9.]+' },
      { key: 'TLS_DOMAIN', label: 'Fake-TLS domain', default: 'www.google.com', pattern: '[A-Za-z0-9.-]+' },
      { key: 'USER_NAME', label: 'User name', default: 'main', pattern: '[A-Za-z0-9_-]+' },
      {
        key: 'USER_SECRET',
        label: 'User secret (32 hex digits)',
        pattern: '[0-9a-f]{32}',
        secret: true,
        env: false,
      },
      { key: 'METRICS_PORT', label: 'Metrics port (127.0.0.1)', type: 'port', default: 9090 },
    ],
    files: [
      {
        path: 'config.toml',
        mode: 0o600,
        content:
          '[general]\n[general.modes]\nclassic = false\nsecure = false\ntls = true\n\n[server]\nport = {{PORT}}\nlisten_addr_ipv4 = "{{LISTEN}}"\nmetrics_port = {{METRICS_PORT}}\n\n[censorship]\ntls_domain = "{{TLS_DOMAIN}}"\n\n[access.users]\n{{USER_NAME}} = "{{USER_SECRET}}"\n',
      },
    ],
    ports: [
      { name: 'proxy', port: '{{PORT}}', protocol: 'tcp' },
      { name: 'metrics', port: '{{METRICS_PORT}}', protocol: 'tcp' },
    ],
    stop: { signal: 'SIGTERM', graceMs: 10_000 },
    restart: 'always',
  },
  {
    id: 'static-web',
    name: 'Static web server',
    description:
      "Serves a directory over HTTP with Python's http.server (python3 is on every Debian/Ubuntu host). Writes an index.html when asked. For TLS and many sites, use nginx through Proxies.",
    // -u: unbuffered. A supervised process writes into a file, where Python buffers stdout by the
    // 8 KiB block: without it "Serving HTTP on …" would never reach the console of an idle server.
    argv: ['python3', '-u', '-m', 'http.server', '{{PORT}}', '--bind', '{{BIND}}', '--directory', '{{ROOT}}'],
    variables: [
      { key: 'PORT', label: 'Port', type: 'port', default: 8080 },
      { key: 'BIND', label: 'Listen address', default: '0.0.0.0', pattern: '[0-9A-Fa-f.:]+' },
      { key: 'ROOT', label: 'Directory to serve', default: '.', max: 4096 },
      {
        key: 'INDEX_TITLE',
        label: 'Title of the generated index.html',
        default: 'It works',
        max: 200,
        description: 'index.html in the working directory is rewritten with this title before each start.',
      },
    ],
    files: [
      {
        path: 'index.html',
        content:
          '<!doctype html>\n<html lang="en"><meta charset="utf-8"><title>{{INDEX_TITLE}}</title><h1>{{INDEX_TITLE}}</h1></html>\n',
      },
    ],
    ports: [{ name: 'http', port: '{{PORT}}', protocol: 'tcp' }],
    stop: { signal: 'SIGTERM', graceMs: 5_000 },
    restart: 'on-failure',
  },
  {
    id: 'command',
    name: 'Run this command',
    description:
      'Any program with its arguments, one argument per line — passed to the program exactly as written, never through a shell.',
    argv: ['{{PROGRAM}}', '{{ARGS}}'],
    variables: [
      { key: 'PROGRAM', label: 'Program (path or name on PATH)', max: 4096, env: false },
      {
        key: 'ARGS',
        label: 'Arguments (one per line)',
        type: 'args',
        required: false,
        description: 'Each line is one argument; spaces, quotes and $ are kept literally.',
      },
    ],
    stop: { signal: 'SIGTERM', graceMs: 10_000 },
    restart: 'on-failure',
  },
];

/** The built-in templates, validated (a broken entry fails the controller's tests, not a user). */
export const builtInTemplates: readonly ProcessTemplate[] = catalogue.map((t) =>
  processTemplateSchema.parse(t),
);
