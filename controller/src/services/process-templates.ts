// Process templates as a rule: the built-in catalogue plus stored ones; import (a Keel template or a
// Pterodactyl egg, as JSON or YAML text), export (JSON or YAML), delete; and install — a template
// rendered with the installer's values into a process spec, applied on a host through the
// processes service (so the same permission, host checks and audit apply). Reading templates needs
// host.view; importing, deleting and installing need process.control (templates are what operators
// run on hosts). Secret variable values never reach the audit trail.
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import {
  KeelError,
  TemplateError,
  isPterodactylEgg,
  processTemplateSchema,
  pterodactylEggToTemplate,
  renderTemplate,
  type ProcessTemplate,
} from '@keel/shared';
import type { ProcessTemplateRepository } from '../repositories/process-templates.ts';
import { requireAccess, requireHostAccess } from './access.ts';
import type { AuditService } from './audit.ts';
import { builtInTemplates } from './process-template-catalogue.ts';
import type { ProcessActor, ProcessesService, ProcessView } from './processes.ts';

/** A template as the API lists it. */
export interface TemplateView {
  template: ProcessTemplate;
  builtIn: boolean;
  updatedAt: string | null;
}

/** What installing a template answers: the process, and the ports it was given. */
export interface TemplateInstall {
  process: ProcessView;
  template: { id: string; name: string };
  ports: { name: string; port: number; protocol: 'tcp' | 'udp' }[];
}

/** Largest document accepted for import (text). */
export const MAX_TEMPLATE_DOCUMENT = 512 * 1024;

export interface ProcessTemplatesServiceDeps {
  templates: ProcessTemplateRepository;
  processes: ProcessesService;
  audit: AuditService;
}

function invalid(err: unknown): never {
  if (err instanceof TemplateError) throw new KeelError('template.invalid', err.message.slice(0, 2000));
  throw err;
}

/** Parses JSON or YAML text (YAML is a superset, but JSON first gives JSON's error messages). */
export function parseTemplateDocument(text: string): unknown {
  if (text.length > MAX_TEMPLATE_DOCUMENT)
    throw new KeelError('template.invalid', 'the document is over 512 KiB');
  try {
    return JSON.parse(text);
  } catch {
    try {
      // No custom tags, no aliases explosion: maxAliasCount bounds "billion laughs".
      return parseYaml(text, { maxAliasCount: 100, schema: 'core' });
    } catch (err) {
      throw new KeelError(
        'template.invalid',
        `neither JSON nor YAML: ${(err as Error).message.slice(0, 300)}`,
      );
    }
  }
}

/** Process templates: catalogue, import/export, install on a host. */
export function createProcessTemplatesService({ templates, processes, audit }: ProcessTemplatesServiceDeps) {
  const builtIns = new Map(builtInTemplates.map((t) => [t.id, t]));

  async function find(id: string): Promise<TemplateView> {
    const b = builtIns.get(id);
    if (b) return { template: b, builtIn: true, updatedAt: null };
    const row = await templates.get(id);
    if (!row) throw new KeelError('template.not_found');
    return {
      template: processTemplateSchema.parse(row.document),
      builtIn: false,
      updatedAt: row.updatedAt.toISOString(),
    };
  }

  return {
    /** Built-in templates first, then stored ones by name. */
    async list(actor: ProcessActor): Promise<TemplateView[]> {
      requireAccess(actor, 'host.view');
      const stored = await templates.list();
      return [
        ...builtInTemplates.map((template) => ({ template, builtIn: true, updatedAt: null })),
        ...stored.map((r) => ({
          template: processTemplateSchema.parse(r.document),
          builtIn: false,
          updatedAt: r.updatedAt.toISOString(),
        })),
      ];
    },

    async get(actor: ProcessActor, id: string): Promise<TemplateView> {
      requireAccess(actor, 'host.view');
      return find(id);
    },

    /** The template as a document to download: `keel-template/1`, JSON or YAML. */
    async export(actor: ProcessActor, id: string, format: 'json' | 'yaml'): Promise<string> {
      requireAccess(actor, 'host.view');
      const { template } = await find(id);
      return format === 'yaml' ? toYaml(template) : `${JSON.stringify(template, null, 2)}\n`;
    },

    /**
     * Imports a document (JSON or YAML text, or an already parsed object): a Keel template, or a
     * Pterodactyl egg converted on the way (what was not applied is in `source.notApplied`).
     * `id` overrides the document's; `replace` overwrites a stored template of that id.
     */
    async import(
      actor: ProcessActor,
      input: { document: string | Record<string, unknown>; id?: string; replace?: boolean },
    ): Promise<TemplateView> {
      requireAccess(actor, 'process.control');
      const doc = typeof input.document === 'string' ? parseTemplateDocument(input.document) : input.document;
      if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
        throw new KeelError('template.invalid', 'the document must be an object');
      }
      let template: ProcessTemplate;
      try {
        if (isPterodactylEgg(doc)) {
          template = pterodactylEggToTemplate(doc, input.id);
        } else {
          const parsed = processTemplateSchema.safeParse(input.id ? { ...doc, id: input.id } : doc);
          if (!parsed.success) {
            throw new TemplateError(
              parsed.error.issues
                .slice(0, 10)
                .map((i) => ({ at: i.path.join('.') || 'template', message: i.message })),
            );
          }
          template = parsed.data;
        }
      } catch (err) {
        invalid(err);
      }
      if (builtIns.has(template.id))
        throw new KeelError(
          'template.built_in',
          `"${template.id}" is a built-in template; import it under another id.`,
        );
      const row = await templates.save(template, actor.id, input.replace ?? false);
      if (!row)
        throw new KeelError(
          'template.exists',
          `A template with id "${template.id}" exists; replace it or choose another id.`,
        );
      await audit.record(
        actor.id,
        'template.import',
        `template:${template.id}`,
        { name: template.name, source: template.source?.kind ?? 'keel', replace: input.replace ?? false },
        actor.ip,
      );
      return { template, builtIn: false, updatedAt: row.updatedAt.toISOString() };
    },

    async remove(actor: ProcessActor, id: string): Promise<void> {
      requireAccess(actor, 'process.control');
      if (builtIns.has(id)) throw new KeelError('template.built_in');
      if (!(await templates.remove(id))) throw new KeelError('template.not_found');
      await audit.record(actor.id, 'template.delete', `template:${id}`, {}, actor.ip);
    },

    /**
     * Installs a template on a host as process `name`: values checked, rendered (see
     * renderTemplate: placeholders are substituted inside each argv word, never split), applied
     * through the processes service (process.control on the host, audited there), and audited here
     * with the non-secret values.
     */
    async install(
      actor: ProcessActor,
      hostId: string,
      input: {
        template: string;
        name: string;
        values: Record<string, unknown>;
        cwd?: string;
        autostart?: boolean;
        user?: string;
      },
    ): Promise<TemplateInstall> {
      // The host first: one the actor may not see answers 404 before anything about the template.
      requireHostAccess(actor, 'process.control', [hostId]);
      const { template } = await find(input.template);
      let rendered: ReturnType<typeof renderTemplate>;
      try {
        rendered = renderTemplate(template, input.name, input.values, {
          cwd: input.cwd,
          autostart: input.autostart,
          user: input.user,
        });
      } catch (err) {
        invalid(err);
      }
      const process = await processes.apply(actor, hostId, rendered.spec);
      const secret = new Set(template.variables.filter((v) => v.secret).map((v) => v.key));
      await audit.record(
        actor.id,
        'template.install',
        `host:${hostId}`,
        {
          process: input.name,
          template: template.id,
          values: Object.fromEntries(
            Object.entries(rendered.values).map(([k, v]) => [k, secret.has(k) ? '(secret)' : v]),
          ),
        },
        actor.ip,
      );
      return { process, template: { id: template.id, name: template.name }, ports: rendered.ports };
    },
  };
}

export type ProcessTemplatesService = ReturnType<typeof createProcessTemplatesService>;
