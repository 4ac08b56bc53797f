// Process templates (Keel's answer to Pterodactyl's eggs): a parameterised process definition —
// typed variables with defaults and validation, an argv with `{{VAR}}` placeholders, files to
// write, ports, a stop command and a "done" line — rendered into a process spec for one host.
// Also the import of a Pterodactyl egg (PTDL_v2 JSON), which reports what only makes sense in
// Docker as not applied.
//
// Never a shell string: a template's command is an argv array. An egg's `startup` string is split
// into words ONCE, at import, by quoting rules without any expansion (splitCommandLine), and
// placeholders are substituted afterwards, inside each word: a variable's value always stays
// inside the one argument it was written in, whatever it holds (`; rm -rf /`, `$(id)`, spaces,
// quotes, a leading `-`). The one exception is a variable of type `args` (a list given one item
// per line), which may stand alone as a whole argv element and then becomes one argument per item
// — the items are never split further. No I/O here.
import { z } from 'zod';
import { processNameSchema, stopSignals, type ProcessSpecInput } from './messages/processes.ts';

/** Variable keys look like environment variable names. */
export const TEMPLATE_VARIABLE_KEY = /^[A-Z_][A-Z0-9_]{0,63}$/;
/** `{{ KEY }}` anywhere in a string (argv word, env value, file content, port). */
const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}/g;
/** An argv element that is only one placeholder (where an `args` variable may expand). */
const WHOLE_PLACEHOLDER = /^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$/;
/** How long a template process may take to print its done line before the start counts as failed. */
export const DONE_LINE_START_TIMEOUT_SECONDS = 600;
/** Longest value a variable may hold (the agent's argv element limit). */
export const MAX_VARIABLE_VALUE = 4096;

/** The kinds of variable a template may declare. */
export const templateVariableTypes = ['string', 'integer', 'boolean', 'enum', 'port', 'args'] as const;
export type TemplateVariableType = (typeof templateVariableTypes)[number];

/**
 * A regular expression a template author may use to validate a value: short, compiles, and without
 * a quantified group that itself holds a quantifier (`(a+)+`, `(a*)*`, `(a|aa)+` style), the shape
 * behind catastrophic backtracking — values are checked on the controller, so a template must not
 * be able to stall it.
 */
const safePattern = z
  .string()
  .min(1)
  .max(200)
  .superRefine((p, ctx) => {
    try {
      new RegExp(p, 'u');
    } catch {
      ctx.addIssue({ code: 'custom', message: 'pattern is not a valid regular expression' });
      return;
    }
    if (/\((?:[^()\\]|\\.)*(?:[+*]|\{\d+,\d*\})(?:[^()\\]|\\.)*\)(?:[+*]|\{\d+,\d*\})/.test(p)) {
      ctx.addIssue({ code: 'custom', message: 'pattern nests quantifiers (catastrophic backtracking)' });
    }
  });

export const templateVariableSchema = z.strictObject({
  key: z.string().regex(TEMPLATE_VARIABLE_KEY, 'upper-case letters, digits and _ (an env name)'),
  label: z.string().min(1).max(120),
  description: z.string().max(2000).default(''),
  type: z.enum(templateVariableTypes).default('string'),
  /** Used when the installer gives no value. Absent and `required`: the installer must give one. */
  default: z.union([z.string().max(MAX_VARIABLE_VALUE), z.number(), z.boolean()]).optional(),
  required: z.boolean().default(true),
  /** `enum`: the allowed values. */
  options: z.array(z.string().min(1).max(200)).min(1).max(100).optional(),
  /** `integer`/`port`: bounds of the value; `string`: bounds of its length. */
  min: z.number().int().optional(),
  max: z.number().int().optional(),
  /** `string`: the whole value must match this (anchored). */
  pattern: safePattern.optional(),
  /** Shown as a password field; kept out of the audit trail. */
  secret: z.boolean().default(false),
  /** Also passed to the program as an environment variable of the same name (not for `args`). */
  env: z.boolean().default(true),
});
export type TemplateVariable = z.output<typeof templateVariableSchema>;

const relativePath = z
  .string()
  .min(1)
  .max(255)
  .refine(
    (p) =>
      !p.startsWith('/') &&
      !p.includes('\u0000') &&
      !p.includes('\\') &&
      p.split('/').every((s) => s !== '' && s !== '.' && s !== '..'),
    'a relative path inside the working directory (no "..", no leading "/")',
  );

export const templateFileSchema = z.strictObject({
  /** Relative to the process's working directory. May not hold placeholders. */
  path: relativePath,
  /** The whole content, with `{{VAR}}` placeholders. */
  content: z.string().max(128 * 1024),
  /** File mode (octal number, e.g. 0o644 = 420). */
  mode: z.number().int().min(0).max(0o777).default(0o644),
});

export const templatePortSchema = z.strictObject({
  name: z.string().min(1).max(64),
  /** A number, or a placeholder such as `{{SERVER_PORT}}`. */
  port: z.union([z.number().int().min(1).max(65_535), z.string().min(1).max(80)]),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
});

/** Where an imported template came from, and what of it Keel did not apply. */
export const templateSourceSchema = z.strictObject({
  kind: z.enum(['pterodactyl-egg']),
  /** The egg's format version (`PTDL_v2`) and author, as given. */
  version: z.string().max(40),
  author: z.string().max(200).default(''),
  /** Parts of the egg that only make sense in Docker / Wings, each with why. */
  notApplied: z.array(z.string().max(500)).max(50).default([]),
});

/** The template document (import/export format `keel-template/1`, JSON or YAML). */
export const processTemplateSchema = z.strictObject({
  format: z.literal('keel-template/1').default('keel-template/1'),
  /** A slug, unique per controller. */
  id: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and "-", starting alphanumeric'),
  name: z.string().min(1).max(120),
  description: z.string().max(4000).default(''),
  /** The program and its arguments, one placeholder-bearing word per element. Never a shell line. */
  argv: z.array(z.string().min(1).max(4096)).min(1).max(256),
  env: z
    .record(
      z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
        .max(256),
      z.string().max(32_768),
    )
    .default({}),
  /** Working directory (absolute; placeholders allowed). Absent: the agent's directory for the process. */
  cwd: z.string().max(4096).optional(),
  variables: z.array(templateVariableSchema).max(64).default([]),
  files: z.array(templateFileSchema).max(32).default([]),
  ports: z.array(templatePortSchema).max(32).default([]),
  stop: z
    .strictObject({
      /** A line written to stdin to stop it (a game server's `stop`). */
      stdinLine: z.string().min(1).max(4096).optional(),
      signal: z.enum(stopSignals).default('SIGTERM'),
      graceMs: z.number().int().min(0).max(60_000).default(10_000),
    })
    .default({ signal: 'SIGTERM', graceMs: 10_000 }),
  /** Output that means "ready" (a substring of one line, e.g. `)! For help, type "`); any of them. */
  doneLines: z.array(z.string().min(1).max(500)).max(8).default([]),
  restart: z.enum(['never', 'on-failure', 'always']).default('on-failure'),
  source: templateSourceSchema.optional(),
});
export type ProcessTemplate = z.output<typeof processTemplateSchema>;
export type ProcessTemplateInput = z.input<typeof processTemplateSchema>;

/** A problem with a template or its values: which variable (or part) and why. */
export interface TemplateProblem {
  /** The variable key, or `argv`, `env.X`, `files.N`, `ports.N`, `cwd`. */
  at: string;
  message: string;
}

/** Thrown by splitCommandLine and renderTemplate; `problems` names every problem found. */
export class TemplateError extends Error {
  constructor(readonly problems: TemplateProblem[]) {
    super(problems.map((p) => `${p.at}: ${p.message}`).join('; '));
    this.name = 'TemplateError';
  }
}

/**
 * Splits a command line into words the way a POSIX shell splits a simple command — single quotes,
 * double quotes (with `\"`, `\\`, `\$` and `` \` `` escapes inside), backslash outside — and does
 * nothing else: no variable, command or glob expansion. Anything that would make a shell do more
 * than run one program (`;`, `|`, `&`, `<`, `>`, `` ` ``, `$(`, `(`, `)`, a newline, unquoted `$`)
 * is refused rather than silently taken literally: the author must say what they mean.
 *
 * @example splitCommandLine(`java -Xmx{{MEM}}M -jar "{{JAR}}"`) // ['java', '-Xmx{{MEM}}M', '-jar', '{{JAR}}']
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  const fail = (message: string): never => {
    throw new TemplateError([{ at: 'startup', message }]);
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === ' ' || c === '\t') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) fail('unterminated single quote');
      word += line.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j++) {
        const d = line[j]!;
        if (d === '\\' && j + 1 < line.length && '"\\$`'.includes(line[j + 1]!)) {
          word += line[++j];
        } else if (d === '`' || (d === '$' && line[j + 1] === '(')) {
          fail(`command substitution at ${j + 1} is not supported (no shell runs the command)`);
        } else if (d === '$') {
          fail(`"$" at ${j + 1}: shell variables are not expanded; use {{VAR}}`);
        } else {
          word += d;
        }
      }
      if (j >= line.length) fail('unterminated double quote');
      i = j;
    } else if (c === '\\') {
      if (i + 1 >= line.length) fail('trailing backslash');
      word += line[++i];
    } else if (';|&<>()`\n\r'.includes(c)) {
      fail(
        `"${c === '\n' ? '\\n' : c}" at ${i + 1}: shell operators are not supported (no shell runs the command)`,
      );
    } else if (c === '$') {
      fail(`"$" at ${i + 1}: shell variables are not expanded; use {{VAR}}`);
    } else {
      word += c;
    }
  }
  if (inWord) words.push(word);
  if (words.length === 0) fail('empty command');
  return words;
}

/** The values a template needs: the given ones checked and converted, defaults filled in. */
export function resolveTemplateValues(
  template: ProcessTemplate,
  given: Readonly<Record<string, unknown>>,
): { values: Record<string, string | string[]>; problems: TemplateProblem[] } {
  const values: Record<string, string | string[]> = {};
  const problems: TemplateProblem[] = [];
  const known = new Set(template.variables.map((v) => v.key));
  for (const key of Object.keys(given)) {
    if (!known.has(key)) problems.push({ at: key, message: 'the template has no such variable' });
  }
  for (const v of template.variables) {
    const raw = given[v.key] ?? v.default;
    const bad = (message: string) => problems.push({ at: v.key, message });
    if (raw === undefined || raw === '' || (Array.isArray(raw) && raw.length === 0)) {
      if (v.required) bad(`${v.label} is required`);
      else values[v.key] = v.type === 'args' ? [] : '';
      continue;
    }
    if (v.type === 'args') {
      const items = Array.isArray(raw) ? raw : String(raw).split('\n');
      const list = items.map(String).filter((s) => s !== '');
      if (list.length > 200) bad('at most 200 arguments');
      else if (list.some((s) => s.length > MAX_VARIABLE_VALUE || s.includes('\u0000')))
        bad(`each argument: at most ${MAX_VARIABLE_VALUE} characters, no NUL`);
      else values[v.key] = list;
      continue;
    }
    if (typeof raw === 'object') {
      bad('must be a single value');
      continue;
    }
    const text = String(raw);
    if (text.length > MAX_VARIABLE_VALUE) {
      bad(`at most ${MAX_VARIABLE_VALUE} characters`);
      continue;
    }
    if (text.includes('\u0000')) {
      bad('must not contain NUL');
      continue;
    }
    switch (v.type) {
      case 'integer':
      case 'port': {
        if (!/^-?\d{1,15}$/.test(text.trim())) {
          bad('must be a whole number');
          continue;
        }
        const n = Number(text.trim());
        const min = v.min ?? (v.type === 'port' ? 1 : Number.MIN_SAFE_INTEGER);
        const max = v.max ?? (v.type === 'port' ? 65_535 : Number.MAX_SAFE_INTEGER);
        if (n < min || n > max) {
          bad(`must be between ${min} and ${max}`);
          continue;
        }
        values[v.key] = String(n);
        break;
      }
      case 'boolean': {
        const t = text.trim().toLowerCase();
        if (['true', '1', 'yes', 'on'].includes(t)) values[v.key] = 'true';
        else if (['false', '0', 'no', 'off'].includes(t)) values[v.key] = 'false';
        else bad('must be true or false');
        break;
      }
      case 'enum':
        if (!(v.options ?? []).includes(text)) bad(`must be one of ${(v.options ?? []).join(', ')}`);
        else values[v.key] = text;
        break;
      default: {
        if (v.min !== undefined && text.length < v.min) bad(`at least ${v.min} characters`);
        else if (v.max !== undefined && text.length > v.max) bad(`at most ${v.max} characters`);
        else if (v.pattern !== undefined && !new RegExp(`^(?:${v.pattern})$`, 'u').test(text))
          bad(`does not match ${v.pattern}`);
        else values[v.key] = text;
      }
    }
  }
  return { values, problems };
}

/** Replaces every placeholder in `text`; an unknown or list-valued key is a problem at `at`. */
function substitute(
  text: string,
  values: Readonly<Record<string, string | string[]>>,
  at: string,
  problems: TemplateProblem[],
): string {
  return text.replace(PLACEHOLDER, (_m, key: string) => {
    const v = values[key];
    if (v === undefined) {
      problems.push({ at, message: `{{${key}}} names no variable of the template` });
      return '';
    }
    if (Array.isArray(v)) {
      problems.push({ at, message: `{{${key}}} is a list: it may only stand alone as an argv element` });
      return '';
    }
    return v;
  });
}

/** What installing a template on a host produces. */
export interface RenderedTemplate {
  spec: ProcessSpecInput;
  /** Ports the process listens on (for the console and health checks). */
  ports: { name: string; port: number; protocol: 'tcp' | 'udp' }[];
  doneLines: string[];
  /** The checked values (secrets included: they are in the spec's env too). */
  values: Record<string, string | string[]>;
}

/**
 * Renders a template into a process spec named `name`: values checked against the variables,
 * placeholders substituted inside each argv word (never splitting it), env, files, cwd and ports.
 * Throws TemplateError listing every problem.
 */
export function renderTemplate(
  template: ProcessTemplate,
  name: string,
  given: Readonly<Record<string, unknown>>,
  overrides: { cwd?: string; autostart?: boolean; user?: string } = {},
): RenderedTemplate {
  const problems: TemplateProblem[] = [];
  if (!processNameSchema.safeParse(name).success) {
    problems.push({ at: 'name', message: 'a process name: lower-case letters, digits, ".", "_", "-"' });
  }
  const { values, problems: valueProblems } = resolveTemplateValues(template, given);
  problems.push(...valueProblems);
  if (valueProblems.length > 0) throw new TemplateError(problems);

  const argv: string[] = [];
  template.argv.forEach((word, i) => {
    const whole = WHOLE_PLACEHOLDER.exec(word);
    const value = whole ? values[whole[1]!] : undefined;
    if (Array.isArray(value)) argv.push(...value);
    else if (whole && value === '')
      return; // an optional variable left empty drops its argument
    else argv.push(substitute(word, values, `argv.${i}`, problems));
  });
  if (argv.length === 0 || argv[0] === '') problems.push({ at: 'argv', message: 'no program to run' });

  const env: Record<string, string> = {};
  for (const v of template.variables) {
    const value = values[v.key];
    if (v.env && v.type !== 'args' && typeof value === 'string') env[v.key] = value;
  }
  for (const [k, text] of Object.entries(template.env))
    env[k] = substitute(text, values, `env.${k}`, problems);

  const files = template.files.map((f, i) => ({
    path: f.path,
    content: substitute(f.content, values, `files.${i}`, problems),
    mode: f.mode,
  }));

  const ports = template.ports.flatMap((p, i) => {
    const text =
      typeof p.port === 'number' ? String(p.port) : substitute(p.port, values, `ports.${i}`, problems);
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1 || n > 65_535) {
      problems.push({ at: `ports.${i}`, message: `"${text}" is not a port number` });
      return [];
    }
    return [{ name: p.name, port: n, protocol: p.protocol }];
  });

  let cwd = template.cwd === undefined ? undefined : substitute(template.cwd, values, 'cwd', problems);
  if (overrides.cwd) cwd = overrides.cwd;
  if (cwd !== undefined && !cwd.startsWith('/'))
    problems.push({ at: 'cwd', message: 'must be an absolute path' });
  const stdinLine =
    template.stop.stdinLine === undefined
      ? undefined
      : substitute(template.stop.stdinLine, values, 'stop', problems);
  if (stdinLine !== undefined && (/[\r\n]/.test(stdinLine) || stdinLine.includes('\u0000')))
    problems.push({ at: 'stop', message: 'the stop line must be one line' });
  if (problems.length > 0) throw new TemplateError(problems);

  const spec: ProcessSpecInput = {
    name,
    argv,
    env,
    ...(cwd ? { cwd } : {}),
    ...(overrides.user ? { user: overrides.user } : {}),
    ...(files.length > 0 ? { files } : {}),
    restart: { policy: template.restart },
    stop: {
      signal: template.stop.signal,
      graceMs: template.stop.graceMs,
      ...(stdinLine ? { stdinLine } : {}),
    },
    autostart: overrides.autostart ?? true,
    // The done line is the readiness signal: the process stays `starting` until it prints one
    // (a large game world may take minutes to load, hence the long start timeout).
    ...(template.doneLines.length > 0
      ? {
          health: {
            type: 'output' as const,
            match:
              template.doneLines.length === 1
                ? template.doneLines[0]!
                : template.doneLines.map((d) => d.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'),
            regex: template.doneLines.length > 1,
            startTimeoutSeconds: DONE_LINE_START_TIMEOUT_SECONDS,
          },
        }
      : {}),
  };
  return { spec, ports, doneLines: template.doneLines, values };
}

// ---- Pterodactyl eggs ---------------------------------------------------------------------------

/** Wings' built-in placeholders an egg may use, and the Keel variables they become. */
const EGG_BUILT_INS: Record<string, { key: string; variable: z.input<typeof templateVariableSchema> }> = {
  'server.build.default.port': {
    key: 'SERVER_PORT',
    variable: { key: 'SERVER_PORT', label: 'Server port', type: 'port', default: 25565 },
  },
  SERVER_PORT: {
    key: 'SERVER_PORT',
    variable: { key: 'SERVER_PORT', label: 'Server port', type: 'port', default: 25565 },
  },
  'server.build.default.ip': {
    key: 'SERVER_IP',
    variable: { key: 'SERVER_IP', label: 'Listen address', default: '0.0.0.0' },
  },
  SERVER_IP: {
    key: 'SERVER_IP',
    variable: { key: 'SERVER_IP', label: 'Listen address', default: '0.0.0.0' },
  },
  'server.build.memory': {
    key: 'SERVER_MEMORY',
    variable: { key: 'SERVER_MEMORY', label: 'Memory (MiB)', type: 'integer', default: 1024, min: 64 },
  },
  SERVER_MEMORY: {
    key: 'SERVER_MEMORY',
    variable: { key: 'SERVER_MEMORY', label: 'Memory (MiB)', type: 'integer', default: 1024, min: 64 },
  },
};

const eggVariableSchema = z.looseObject({
  name: z.string(),
  description: z.string().nullish(),
  env_variable: z.string(),
  default_value: z.union([z.string(), z.number()]).nullish(),
  rules: z.string().nullish(),
  user_viewable: z.union([z.boolean(), z.number()]).nullish(),
  user_editable: z.union([z.boolean(), z.number()]).nullish(),
  field_type: z.string().nullish(),
});

const eggSchema = z.looseObject({
  meta: z.looseObject({ version: z.string() }),
  name: z.string().min(1),
  author: z.string().nullish(),
  description: z.string().nullish(),
  startup: z.string().min(1),
  config: z
    .looseObject({
      files: z.string().nullish(),
      startup: z.string().nullish(),
      logs: z.string().nullish(),
      stop: z.string().nullish(),
    })
    .default({}),
  variables: z.array(eggVariableSchema).default([]),
  docker_images: z.record(z.string(), z.string()).nullish(),
  scripts: z
    .looseObject({ installation: z.looseObject({ script: z.string().nullish() }).nullish() })
    .nullish(),
  features: z.array(z.string()).nullish(),
  file_denylist: z.array(z.string()).nullish(),
});

/** True when `doc` looks like a Pterodactyl egg (has `meta.version` starting with PTDL). */
export function isPterodactylEgg(doc: unknown): boolean {
  const meta = (doc as { meta?: { version?: unknown } } | null)?.meta;
  return typeof meta?.version === 'string' && meta.version.startsWith('PTDL_');
}

/** A Laravel validation rule list (`required|string|max:20`) as a Keel variable's type and bounds. */
function eggRules(
  rules: string,
  notes: string[],
  key: string,
): Partial<z.input<typeof templateVariableSchema>> {
  const out: Partial<z.input<typeof templateVariableSchema>> = { required: false, type: 'string' };
  for (const rule of rules
    .split('|')
    .map((r) => r.trim())
    .filter(Boolean)) {
    const [name, arg = ''] = rule.split(/:(.*)/s) as [string, string?];
    switch (name) {
      case 'required':
        out.required = true;
        break;
      case 'nullable':
      case 'sometimes':
      case 'string':
      case 'present':
        break;
      case 'integer':
      case 'numeric':
        out.type = 'integer';
        break;
      case 'boolean':
        out.type = 'boolean';
        break;
      case 'in':
        out.type = 'enum';
        out.options = arg.split(',').filter(Boolean);
        break;
      case 'min':
        out.min = Number.parseInt(arg, 10);
        break;
      case 'max':
        out.max = Number.parseInt(arg, 10);
        break;
      case 'between': {
        const [a, b] = arg.split(',');
        out.min = Number.parseInt(a ?? '', 10);
        out.max = Number.parseInt(b ?? '', 10);
        break;
      }
      case 'alpha_dash':
        out.pattern = '[A-Za-z0-9_-]*';
        break;
      case 'alpha_num':
        out.pattern = '[A-Za-z0-9]*';
        break;
      case 'regex': {
        // Laravel writes /pattern/flags.
        const m = /^\/(.*)\/([a-z]*)$/s.exec(arg);
        const pattern = m ? m[1]!.replace(/^\^/, '').replace(/\$$/, '') : '';
        if (pattern && safePattern.safeParse(pattern).success) out.pattern = pattern;
        else notes.push(`variable ${key}: rule "${rule}" not applied (not a safe JavaScript pattern)`);
        break;
      }
      default:
        notes.push(`variable ${key}: rule "${rule}" not applied (not supported)`);
    }
  }
  for (const k of ['min', 'max'] as const) if (Number.isNaN(out[k])) delete out[k];
  return out;
}

/** Parses an egg's JSON-in-a-string config field; null when absent or empty. */
function eggJson(text: string | null | undefined, field: string, notes: string[]): unknown {
  if (!text || !text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch {
    notes.push(`config.${field}: not valid JSON, ignored`);
    return null;
  }
}

/**
 * Converts a Pterodactyl egg (PTDL_v2 JSON, also PTDL_v1) into a Keel template: name, description,
 * variables (Laravel rules mapped to types and bounds), the startup line split into argv (see
 * splitCommandLine), the stop command (`^C` = SIGINT, otherwise a line to stdin) and the done
 * line(s). Wings' built-in placeholders (`{{server.build.default.port}}`, `{{SERVER_MEMORY}}`, …)
 * become template variables. What only makes sense under Wings/Docker — docker images, the
 * install script, config-file edits, features — is listed in `source.notApplied`.
 */
export function pterodactylEggToTemplate(doc: unknown, id?: string): ProcessTemplate {
  if (!isPterodactylEgg(doc)) {
    throw new TemplateError([
      { at: 'meta.version', message: 'not a Pterodactyl egg (no meta.version PTDL_*)' },
    ]);
  }
  const parsed = eggSchema.safeParse(doc);
  if (!parsed.success) {
    throw new TemplateError(
      parsed.error.issues.map((i) => ({ at: i.path.join('.') || 'egg', message: i.message })),
    );
  }
  const egg = parsed.data;
  const notes: string[] = [];
  if (egg.meta.version !== 'PTDL_v2') notes.push(`format ${egg.meta.version}: read as PTDL_v2`);

  const variables: z.input<typeof templateVariableSchema>[] = [];
  const declared = new Set<string>();
  for (const v of egg.variables) {
    const key = v.env_variable.trim();
    if (!TEMPLATE_VARIABLE_KEY.test(key)) {
      notes.push(`variable "${v.name}": env name ${JSON.stringify(key)} is not supported, skipped`);
      continue;
    }
    declared.add(key);
    const rules = eggRules(v.rules ?? '', notes, key);
    const def =
      v.default_value === null || v.default_value === undefined ? undefined : String(v.default_value);
    variables.push({
      key,
      label: v.name.slice(0, 120) || key,
      description: (v.description ?? '').slice(0, 2000),
      ...rules,
      ...(def !== undefined && def !== '' ? { default: def } : {}),
      // An egg variable the user may not see is usually a password or an internal value.
      secret: v.user_viewable === false || v.user_viewable === 0 ? true : undefined,
    });
  }

  // Wings' built-ins and `${VAR}` (expanded by the container's shell) become {{VAR}}.
  const normalise = (text: string): string =>
    text
      .replace(PLACEHOLDER, (m, key: string) => {
        const b = EGG_BUILT_INS[key];
        if (!b) return m;
        if (!declared.has(b.key)) {
          declared.add(b.key);
          variables.push(b.variable);
        }
        return `{{${b.key}}}`;
      })
      .replace(
        /\$\{([A-Z_][A-Z0-9_]*)\}|\$([A-Z_][A-Z0-9_]*)/g,
        (m: string, a?: string, b?: string): string => {
          const key = (a ?? b)!;
          if (declared.has(key)) return `{{${key}}}`;
          if (EGG_BUILT_INS[key]) return normalise(`{{${key}}}`);
          return m;
        },
      );

  const startup = normalise(egg.startup.trim());
  const argv = splitCommandLine(startup);
  for (const word of argv) {
    for (const m of word.matchAll(PLACEHOLDER)) {
      if (!declared.has(m[1]!)) {
        throw new TemplateError([
          { at: 'startup', message: `{{${m[1]}}} is not one of the egg's variables` },
        ]);
      }
    }
  }

  const stopText = (egg.config.stop ?? '').trim();
  const stop: ProcessTemplate['stop'] = { signal: 'SIGTERM', graceMs: 30_000 };
  if (stopText === '^C' || stopText === '^^C') stop.signal = 'SIGINT';
  else if (stopText !== '' && !/[\r\n]/.test(stopText)) stop.stdinLine = stopText;

  const startupConfig = eggJson(egg.config.startup, 'startup', notes) as { done?: unknown } | null;
  const done = startupConfig?.done;
  const doneLines = (Array.isArray(done) ? done : done === undefined || done === null ? [] : [done])
    .filter((d): d is string => typeof d === 'string' && d.length > 0)
    .map((d) => d.slice(0, 500))
    .slice(0, 8);
  if (startupConfig && typeof startupConfig === 'object') {
    for (const k of Object.keys(startupConfig)) {
      if (k !== 'done') notes.push(`config.startup.${k}: not applied (Wings-only)`);
    }
  }

  const files = eggJson(egg.config.files, 'files', notes);
  if (files && typeof files === 'object' && Object.keys(files).length > 0) {
    notes.push(
      `config.files (${Object.keys(files).join(', ')}): not applied — Wings edits files the install script created; a Keel template writes whole files (add them under "files")`,
    );
  }
  const images = Object.values(egg.docker_images ?? {});
  if (images.length > 0)
    notes.push(`docker_images (${images.join(', ')}): not applied — Keel runs the program on the host`);
  if (egg.scripts?.installation?.script?.trim()) {
    notes.push(
      'scripts.installation: not applied — it runs in a Docker install container; install the server files first',
    );
  }
  if (egg.features?.length)
    notes.push(`features (${egg.features.join(', ')}): not applied (Wings/panel features)`);
  if (egg.file_denylist?.length)
    notes.push('file_denylist: not applied (Keel has no per-process file manager yet)');
  const logs = eggJson(egg.config.logs, 'logs', notes);
  if (logs && typeof logs === 'object' && Object.keys(logs).length > 0) {
    notes.push('config.logs: not applied (Keel keeps every line the process prints)');
  }

  const slug =
    id ??
    (egg.name
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 63) ||
      'egg');
  const ports = declared.has('SERVER_PORT')
    ? [{ name: 'server', port: '{{SERVER_PORT}}', protocol: 'tcp' as const }]
    : [];
  const result = processTemplateSchema.safeParse({
    id: slug,
    name: egg.name.slice(0, 120),
    description: (egg.description ?? '').slice(0, 4000),
    argv,
    variables,
    ports,
    stop,
    doneLines,
    source: {
      kind: 'pterodactyl-egg',
      version: egg.meta.version.slice(0, 40),
      author: (egg.author ?? '').slice(0, 200),
      notApplied: notes.slice(0, 50).map((n) => n.slice(0, 500)),
    },
  });
  if (!result.success) {
    throw new TemplateError(
      result.error.issues.map((i) => ({ at: i.path.join('.') || 'egg', message: i.message })),
    );
  }
  return result.data;
}
