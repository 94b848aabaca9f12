import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { binary } from './availability.js';
import { forgetOnProcessExit, onProcessExit, run } from './proc.js';

export interface TestCert {
  key: string;
  cert: string;
  /** The certificate as a file, for clients that want a path (swaks --tls-ca-path). */
  certFile: string;
  dir: string;
  cleanup(): void;
}

/** A fresh self-signed certificate for `hostname` (CN and subjectAltName), made by openssl. */
export async function selfSignedCert(hostname = 'localhost'): Promise<TestCert> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mailfleet-cert-'));
  const cleanup = (): void => {
    rmSync(dir, { recursive: true, force: true });
    forgetOnProcessExit(dir);
  };
  onProcessExit(dir, () => rmSync(dir, { recursive: true, force: true }));
  const r = await run(binary('openssl'), [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${hostname}`, '-addext', `subjectAltName=DNS:${hostname},IP:127.0.0.1`,
    '-keyout', `${dir}/key.pem`, '-out', `${dir}/cert.pem`,
  ]);
  if (r.code !== 0) {
    cleanup();
    throw new Error(`openssl req exited ${r.code}: ${r.stderr}`);
  }
  return {
    key: readFileSync(`${dir}/key.pem`, 'utf8'),
    cert: readFileSync(`${dir}/cert.pem`, 'utf8'),
    certFile: `${dir}/cert.pem`,
    dir,
    cleanup,
  };
}
