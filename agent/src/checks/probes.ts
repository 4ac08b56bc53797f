// The three probes a service check runs: HTTP(S) (status, body match, latency, the TLS
// certificate's notAfter), TCP connect, and DNS (through a chosen resolver). Each answers a
// `CheckResult` and never throws: a failure is a result with `ok: false` and a one-line error.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { Resolver } from 'node:dns/promises';
import type { TLSSocket } from 'node:tls';
import type { CheckResult, CheckSpec } from '@keel/shared';

/** Body bytes an HTTP check reads at most (enough for a match; a huge page is not read whole). */
const MAX_BODY_BYTES = 64 * 1024;

type Spec<K extends CheckSpec['kind']> = Extract<CheckSpec, { kind: K }>;

const oneLine = (err: unknown) =>
  (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 500);

/** Runs one check now; `now` stamps the result. */
export async function runProbe(spec: CheckSpec, now: () => number = Date.now): Promise<CheckResult> {
  const t = now();
  const started = performance.now();
  const elapsed = () => Math.round((performance.now() - started) * 100) / 100;
  try {
    switch (spec.kind) {
      case 'http':
        return { checkId: spec.id, t, ...(await probeHttp(spec, elapsed)) };
      case 'tcp':
        await probeTcp(spec);
        return { checkId: spec.id, t, ok: true, latencyMs: elapsed() };
      case 'dns':
        return { checkId: spec.id, t, ...(await probeDns(spec, elapsed)) };
    }
  } catch (err) {
    return { checkId: spec.id, t, ok: false, latencyMs: null, error: oneLine(err) };
  }
}

async function probeHttp(
  spec: Spec<'http'>,
  elapsed: () => number,
): Promise<Omit<CheckResult, 'checkId' | 't'>> {
  const { url, method, expectStatus, bodyContains, insecure } = spec.target;
  const secure = url.startsWith('https:');
  return new Promise((resolve) => {
    let certExpiresAt: number | undefined;
    let settled = false;
    const finish = (r: Omit<CheckResult, 'checkId' | 't'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(certExpiresAt !== undefined ? { ...r, certExpiresAt } : r);
    };
    const onResponse = (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let size = 0;
      const done = () => {
        const latencyMs = elapsed();
        const statusOk =
          expectStatus.length > 0 ? expectStatus.includes(status) : status >= 200 && status < 400;
        if (!statusOk) return finish({ ok: false, latencyMs, status, error: `HTTP status ${status}` });
        if (bodyContains !== undefined) {
          const body = Buffer.concat(chunks).toString('utf8');
          if (!body.includes(bodyContains)) {
            return finish({
              ok: false,
              latencyMs,
              status,
              error: 'the body does not contain the expected text',
            });
          }
        }
        finish({ ok: true, latencyMs, status });
      };
      res.on('data', (chunk: Buffer) => {
        if (size >= MAX_BODY_BYTES) return;
        chunks.push(chunk);
        size += chunk.length;
        if (size >= MAX_BODY_BYTES) done();
      });
      res.on('end', done);
      res.on('error', (err) => finish({ ok: false, latencyMs: null, status, error: oneLine(err) }));
    };
    const options = {
      method,
      headers: { 'user-agent': 'keel-agent-check/1', accept: '*/*' },
      ...(secure ? { rejectUnauthorized: !insecure, servername: new URL(url).hostname } : {}),
      agent: false as const,
    };
    const req = secure ? httpsRequest(url, options, onResponse) : httpRequest(url, options, onResponse);
    req.on('socket', (socket) => {
      if (!secure) return;
      socket.once('secureConnect', () => {
        const cert = (socket as TLSSocket).getPeerCertificate();
        const notAfter = cert?.valid_to ? Date.parse(cert.valid_to) : NaN;
        if (Number.isFinite(notAfter)) certExpiresAt = notAfter;
      });
    });
    req.on('error', (err) => finish({ ok: false, latencyMs: null, error: oneLine(err) }));
    const timer = setTimeout(
      () => finish({ ok: false, latencyMs: null, error: `no answer within ${spec.timeoutMs} ms` }),
      spec.timeoutMs,
    );
    req.end();
  });
}

function probeTcp(spec: Spec<'tcp'>): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: spec.target.host, port: spec.target.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no connection within ${spec.timeoutMs} ms`));
    }, spec.timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    });
  });
}

async function probeDns(
  spec: Spec<'dns'>,
  elapsed: () => number,
): Promise<Omit<CheckResult, 'checkId' | 't'>> {
  const { name, recordType, server, expect } = spec.target;
  const resolver = new Resolver({ timeout: spec.timeoutMs, tries: 1 });
  if (server) resolver.setServers([server]);
  const addresses = recordType === 'AAAA' ? await resolver.resolve6(name) : await resolver.resolve4(name);
  const latencyMs = elapsed();
  const list = addresses.slice(0, 32);
  if (expect !== undefined && !addresses.includes(expect)) {
    return { ok: false, latencyMs, addresses: list, error: `${expect} is not among the answers` };
  }
  return { ok: true, latencyMs, addresses: list };
}
