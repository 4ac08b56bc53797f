// Proves process templates without an agent: a startup line splits into argv by quoting rules and
// refuses shell syntax; a variable's value stays inside its one argument whatever it holds (`;`,
// `$()`, spaces, newlines, a leading `-`), only an `args` list adds arguments, one per item;
// values are checked (required, integer bounds, port, enum, boolean, pattern) and a template
// cannot carry a backtracking-prone pattern; a Pterodactyl egg in the real PTDL_v2 format becomes
// a template (variables, rules, built-in placeholders, stop ^C and stop line, done line) and its
// Docker-only parts are reported as not applied; every built-in renders with its defaults; and
// through the API: import (JSON, YAML, egg), export as JSON and YAML that imports back the same,
// a built-in cannot be replaced or deleted, a viewer reads but cannot import, bad values are a
// 400 with the variable named, and a host the caller cannot see is 404 before the template.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  processSpecSchema,
  processTemplateSchema,
  pterodactylEggToTemplate,
  renderTemplate,
  splitCommandLine,
  TemplateError,
  type ProcessTemplate,
} from '@keel/shared';
import { openTestApp, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import { builtInTemplates } from '../controller/src/services/process-template-catalogue.ts';
import { parseTemplateDocument } from '../controller/src/services/process-templates.ts';
import { testEgg } from './helpers/pterodactyl-egg.ts';

const TIMEOUT = { timeout: 30_000 };

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof TemplateError) return err.problems.map((p) => p.at);
    throw err;
  }
  assert.fail('expected a TemplateError');
}

describe('startup lines and substitution', () => {
  test('a startup line splits by quoting rules, without expansions', TIMEOUT, () => {
    assert.deepEqual(splitCommandLine(`java -Xmx{{MEM}}M  -jar "{{JAR}} x" 'a b' c\\ d "q\\"q"`), [
      'java',
      '-Xmx{{MEM}}M',
      '-jar',
      '{{JAR}} x',
      'a b',
      'c d',
      'q"q',
    ]);
    for (const bad of [
      'a; b',
      'a | b',
      'a && b',
      'a > f',
      'echo $(id)',
      'echo `id`',
      'echo $HOME',
      '"open',
      "'open",
      'a\nb',
    ]) {
      assert.throws(() => splitCommandLine(bad), TemplateError, bad);
    }
  });

  test('a value stays inside its one argument; only an args list adds arguments', TIMEOUT, () => {
    const template = processTemplateSchema.parse({
      id: 't',
      name: 'T',
      argv: ['prog', '--motd={{MOTD}}', '{{MOTD}}', '{{EXTRA}}', '{{OPTIONAL}}', 'end'],
      variables: [
        { key: 'MOTD', label: 'MOTD' },
        { key: 'EXTRA', label: 'Extra', type: 'args', required: false },
        { key: 'OPTIONAL', label: 'Optional', required: false },
      ],
    });
    const hostile = `a; rm -rf / $(id) \`id\` "q" 'q' \n-x --flag`;
    const r = renderTemplate(template, 'p', { MOTD: hostile, EXTRA: ['-1', 'two words', '$(id)'] });
    assert.deepEqual(r.spec.argv, ['prog', `--motd=${hostile}`, hostile, '-1', 'two words', '$(id)', 'end']);
    assert.equal(r.spec.env?.MOTD, hostile);
    // A list cannot hide inside a word.
    const inWord = processTemplateSchema.parse({ ...template, argv: ['prog', 'x{{EXTRA}}'] });
    assert.deepEqual(
      problemsOf(() => renderTemplate(inWord, 'p', { MOTD: 'm', EXTRA: ['a'] })),
      ['argv.1'],
    );
    // Unknown placeholders and unknown values are named.
    const unknown = processTemplateSchema.parse({ ...template, argv: ['prog', '{{NOPE}}'] });
    assert.deepEqual(
      problemsOf(() => renderTemplate(unknown, 'p', { MOTD: 'm' })),
      ['argv.1'],
    );
    assert.deepEqual(
      problemsOf(() => renderTemplate(template, 'p', { MOTD: 'm', OTHER: 1 })),
      ['OTHER'],
    );
    // The spec the agent gets is a valid one.
    assert.ok(processSpecSchema.safeParse(r.spec).success);
  });

  test('values are checked against their variables', TIMEOUT, () => {
    const template = processTemplateSchema.parse({
      id: 't',
      name: 'T',
      argv: ['prog', '{{PORT}}', '{{N}}', '{{MODE}}', '{{FLAG}}', '{{NAME}}'],
      variables: [
        { key: 'PORT', label: 'Port', type: 'port' },
        { key: 'N', label: 'N', type: 'integer', min: 1, max: 10, default: 5 },
        { key: 'MODE', label: 'Mode', type: 'enum', options: ['a', 'b'], default: 'a' },
        { key: 'FLAG', label: 'Flag', type: 'boolean', default: false },
        { key: 'NAME', label: 'Name', pattern: '[a-z]+', default: 'abc' },
      ],
    });
    assert.deepEqual(renderTemplate(template, 'p', { PORT: '8080', FLAG: 'yes' }).spec.argv, [
      'prog',
      '8080',
      '5',
      'a',
      'true',
      'abc',
    ]);
    assert.deepEqual(
      problemsOf(() =>
        renderTemplate(template, 'p', { PORT: 70_000, N: '11', MODE: 'c', FLAG: 'maybe', NAME: 'ABC' }),
      ).sort(),
      ['FLAG', 'MODE', 'N', 'NAME', 'PORT'],
    );
    assert.deepEqual(
      problemsOf(() => renderTemplate(template, 'p', {})),
      ['PORT'],
      'required without default',
    );
    assert.deepEqual(
      problemsOf(() => renderTemplate(template, 'Bad Name', { PORT: 1 })),
      ['name'],
    );
  });

  test('a template cannot carry a pattern prone to catastrophic backtracking', TIMEOUT, () => {
    for (const pattern of ['(a+)+', '(a*)*b', '(x+x+)+y', '([a-z]{1,}){2,}']) {
      const r = processTemplateSchema.safeParse({
        id: 't',
        name: 'T',
        argv: ['p'],
        variables: [{ key: 'V', label: 'V', pattern }],
      });
      assert.equal(r.success, false, pattern);
    }
  });
});

describe('Pterodactyl eggs', () => {
  test('a PTDL_v2 egg becomes a template; Docker-only parts are reported', TIMEOUT, () => {
    const t = pterodactylEggToTemplate(testEgg);
    assert.equal(t.id, 'echo-game-server');
    assert.deepEqual(t.argv, [
      '{{NODE_BIN}}',
      'server.cjs',
      '--port={{SERVER_PORT}}',
      '--motd',
      '{{MOTD}}',
      '--max',
      '{{MAX_PLAYERS}}',
    ]);
    const v = Object.fromEntries(t.variables.map((x) => [x.key, x]));
    assert.equal(v.MAX_PLAYERS?.type, 'integer');
    assert.equal(v.MAX_PLAYERS?.min, 1);
    assert.equal(v.MAX_PLAYERS?.max, 500);
    assert.deepEqual(v.DIFFICULTY?.options, ['peaceful', 'easy', 'normal', 'hard']);
    assert.equal(v.SERVER_PORT?.type, 'port', 'the built-in port placeholder became a variable');
    assert.equal(t.stop.stdinLine, 'stop');
    assert.deepEqual(t.doneLines, [')! For help, type ']);
    assert.deepEqual(t.ports, [{ name: 'server', port: '{{SERVER_PORT}}', protocol: 'tcp' }]);
    const notes = t.source?.notApplied.join('\n') ?? '';
    for (const part of ['docker_images', 'scripts.installation', 'config.files', 'features']) {
      assert.match(notes, new RegExp(part.replace('.', '\\.')), part);
    }
    const r = renderTemplate(t, 'echo', { MOTD: 'two words; $(id)', SERVER_PORT: 4000 });
    assert.deepEqual(r.spec.health, {
      type: 'output',
      match: ')! For help, type ',
      regex: false,
      startTimeoutSeconds: 600,
    });
    const two = renderTemplate({ ...t, doneLines: ['Done (', 'ready.'] }, 'echo', {});
    assert.equal(two.spec.health?.type === 'output' && two.spec.health.match, 'Done \\(|ready\\.');
    assert.deepEqual(r.spec.argv, [
      'node',
      'server.cjs',
      '--port=4000',
      '--motd',
      'two words; $(id)',
      '--max',
      '20',
    ]);
  });

  test('stop ^C is SIGINT; ${VAR} becomes {{VAR}}; shell syntax is refused', TIMEOUT, () => {
    const t = pterodactylEggToTemplate({
      ...testEgg,
      startup: './server --port ${SERVER_PORT} --name ${MOTD}',
      config: { ...testEgg.config, stop: '^C' },
    });
    assert.equal(t.stop.signal, 'SIGINT');
    assert.equal(t.stop.stdinLine, undefined);
    assert.deepEqual(t.argv, ['./server', '--port', '{{SERVER_PORT}}', '--name', '{{MOTD}}']);
    assert.throws(
      () => pterodactylEggToTemplate({ ...testEgg, startup: './server && rm -rf /' }),
      TemplateError,
    );
    assert.throws(() => pterodactylEggToTemplate({ name: 'x', startup: 'y' }), TemplateError, 'not an egg');
  });
});

test('every built-in template renders with its defaults (plus its required values)', TIMEOUT, () => {
  const required: Record<string, Record<string, unknown>> = {
    'mtproxy-telemt': { USER_SECRET: '0123456789abcdef0123456789abcdef' },
    command: { PROGRAM: '/bin/echo', ARGS: 'hello\nworld' },
  };
  const ids = builtInTemplates.map((t) => t.id);
  for (const id of ['minecraft-java', 'mtproxy-telemt', 'static-web', 'command'])
    assert.ok(ids.includes(id), id);
  for (const t of builtInTemplates) {
    const r = renderTemplate(t, 'p', required[t.id] ?? {});
    assert.ok(processSpecSchema.safeParse(r.spec).success, t.id);
  }
  const mc = renderTemplate(
    builtInTemplates.find((t) => t.id === 'minecraft-java')!,
    'mc',
    { EULA: true },
  );
  assert.deepEqual(mc.spec.files?.[0], { path: 'eula.txt', content: 'eula=true\n', mode: 0o644 });
  assert.equal(mc.spec.stop?.stdinLine, 'stop');
  const cmd = renderTemplate(
    builtInTemplates.find((t) => t.id === 'command')!,
    'c',
    required.command!,
  );
  assert.deepEqual(cmd.spec.argv, ['/bin/echo', 'hello', 'world']);
  // Python's output to a file is block-buffered: without -u its start-up line never shows.
  const web = renderTemplate(
    builtInTemplates.find((t) => t.id === 'static-web')!,
    'w',
    {},
  );
  assert.deepEqual(web.spec.argv.slice(0, 4), ['python3', '-u', '-m', 'http.server']);
});

describe('through the API', () => {
  let t: TestApp;
  let admin: SignedIn;
  let viewer: SignedIn;
  before(async () => {
    t = await openTestApp();
    admin = await t.signInAs('admin');
    viewer = await t.signInAs('viewer');
  });
  after(async () => t?.close());

  test('import an egg, a YAML template; export as JSON and YAML imports back the same', TIMEOUT, async () => {
    let res = await t.request('/api/v1/process-templates/import', {
      method: 'POST',
      json: { document: JSON.stringify(testEgg) },
      as: admin,
    });
    assert.equal(res.status, 201, await res.clone().text());
    const egg = ((await res.json()) as { template: ProcessTemplate }).template;
    assert.equal(egg.source?.kind, 'pterodactyl-egg');

    const yamlDoc = `id: hello\nname: Hello\nargv: [/bin/echo, "{{WORD}}"]\nvariables:\n  - key: WORD\n    label: Word\n    default: hi\n`;
    res = await t.request('/api/v1/process-templates/import', {
      method: 'POST',
      json: { document: yamlDoc },
      as: admin,
    });
    assert.equal(res.status, 201, await res.clone().text());

    res = await t.request('/api/v1/process-templates/import', {
      method: 'POST',
      json: { document: yamlDoc },
      as: admin,
    });
    assert.equal(res.status, 409, 'the id exists');
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'template.exists');

    for (const format of ['json', 'yaml'] as const) {
      res = await t.request(`/api/v1/process-templates/echo-game-server/export?format=${format}`, {
        as: admin,
      });
      assert.equal(res.status, 200);
      const text = await res.text();
      const doc = format === 'json' ? JSON.parse(text) : parseTemplateDocument(text);
      if (format === 'yaml') assert.throws(() => JSON.parse(text), 'really YAML');
      assert.deepEqual(processTemplateSchema.parse(doc), egg, `${format} round trip`);
      res = await t.request('/api/v1/process-templates/import', {
        method: 'POST',
        json: { document: text, id: `copy-${format}` },
        as: admin,
      });
      assert.equal(res.status, 201, await res.clone().text());
    }

    res = await t.request('/api/v1/process-templates', { as: viewer });
    assert.equal(res.status, 200);
    const ids = (
      (await res.json()) as { templates: { template: { id: string }; builtIn: boolean }[] }
    ).templates.map((x) => x.template.id);
    for (const id of [
      'minecraft-java',
      'static-web',
      'echo-game-server',
      'hello',
      'copy-json',
      'copy-yaml',
    ]) {
      assert.ok(ids.includes(id), id);
    }
  });

  test('built-ins stay; a viewer cannot import or delete; bad documents are 400', TIMEOUT, async () => {
    const builtIn = builtInTemplates[0]!;
    let res = await t.request('/api/v1/process-templates/import', {
      method: 'POST',
      json: { document: builtIn, replace: true },
      as: admin,
    });
    assert.equal(res.status, 409);
    res = await t.request(`/api/v1/process-templates/${builtIn.id}`, { method: 'DELETE', as: admin });
    assert.equal(res.status, 409);
    res = await t.request('/api/v1/process-templates/import', {
      method: 'POST',
      json: { document: 'id: x\nname: X\nargv: [a]\n' },
      as: viewer,
    });
    assert.equal(res.status, 403);
    res = await t.request('/api/v1/process-templates/hello', { method: 'DELETE', as: viewer });
    assert.equal(res.status, 403);
    for (const document of [
      '{"id": "x"}',
      '[1,2]',
      'a: [unclosed',
      JSON.stringify({ ...testEgg, startup: 'a; b' }),
    ]) {
      res = await t.request('/api/v1/process-templates/import', {
        method: 'POST',
        json: { document },
        as: admin,
      });
      assert.equal(res.status, 400, document);
    }
    res = await t.request('/api/v1/process-templates/hello', { method: 'DELETE', as: admin });
    assert.equal(res.status, 204);
    res = await t.request('/api/v1/process-templates/hello', { as: admin });
    assert.equal(res.status, 404);
  });

  test('install: bad values name the variable; an unknown host is 404', TIMEOUT, async () => {
    const hostId = (await t.services.hosts.list())[0]?.id ?? '00000000-0000-4000-8000-000000000000';
    let res = await t.request(`/api/v1/hosts/${hostId}/processes/from-template`, {
      method: 'POST',
      json: { template: 'minecraft-java', name: 'mc', values: { MAX_MEMORY: 'lots' } },
      as: admin,
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'template.invalid');
    assert.match(body.error.message, /MAX_MEMORY/);
    res = await t.request('/api/v1/hosts/00000000-0000-4000-8000-000000000000/processes/from-template', {
      method: 'POST',
      json: { template: 'nope', name: 'mc' },
      as: viewer,
    });
    assert.equal(res.status, 403, 'a viewer may not install');
  });
});
