// Self-signed certificates made by openssl at test time, for the files that serve TLS themselves
// (checks' HTTPS endpoint, tls-proxy's nginx in front of the controller).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** PEM files of a certificate and its key, with their contents. */
export interface Certificate {
  keyFile: string;
  certFile: string;
  key: Buffer;
  cert: Buffer;
}

/**
 * Writes key.pem and cert.pem to `dir`: a P-256 key and a certificate for CN 127.0.0.1 valid for
 * `days` days, with `subjectAltName` (default `IP:127.0.0.1`). Throws with openssl's message.
 * @example const { cert, key } = selfSignedCertificate(tempDir(), { days: 3 });
 */
export function selfSignedCertificate(
  dir: string,
  opts: { days: number; subjectAltName?: string },
): Certificate {
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      String(opts.days),
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      `subjectAltName=${opts.subjectAltName ?? 'IP:127.0.0.1'}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { keyFile, certFile, key: readFileSync(keyFile), cert: readFileSync(certFile) };
}
