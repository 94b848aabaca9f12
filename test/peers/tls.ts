import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isIP } from 'node:net';
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

export interface TestCa {
  /** The CA certificate (PEM), to trust. */
  cert: string;
  /** The CA certificate as a file (for `delivery.tlsPolicy.caFile`). */
  certFile: string;
  /** A key and a certificate for `hostname` (subjectAltName DNS, or IP for an address), signed by this CA. */
  issue(hostname: string): Promise<{ key: string; cert: string }>;
  cleanup(): void;
}

/** A throwaway certificate authority, made by openssl, for tests that verify certificates. */
export async function testCa(name = 'mailfleet test CA'): Promise<TestCa> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mailfleet-ca-'));
  const cleanup = (): void => {
    rmSync(dir, { recursive: true, force: true });
    forgetOnProcessExit(dir);
  };
  onProcessExit(dir, () => rmSync(dir, { recursive: true, force: true }));
  const openssl = async (args: string[]): Promise<void> => {
    const r = await run(binary('openssl'), args);
    if (r.code !== 0) {
      cleanup();
      throw new Error(`openssl ${args[0]} exited ${r.code}: ${r.stderr}`);
    }
  };
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl([
    'req', '-x509', ...newKey, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', `${dir}/ca.key`, '-out', `${dir}/ca.pem`,
  ]);
  let serial = 0;
  return {
    cert: readFileSync(`${dir}/ca.pem`, 'utf8'),
    certFile: `${dir}/ca.pem`,
    async issue(hostname) {
      const base = `${dir}/leaf${++serial}`;
      writeFileSync(`${base}.ext`, `subjectAltName=${isIP(hostname) ? 'IP' : 'DNS'}:${hostname}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
      await openssl(['req', '-new', ...newKey, '-subj', `/CN=${hostname}`, '-keyout', `${base}.key`, '-out', `${base}.csr`]);
      await openssl([
        'x509', '-req', '-in', `${base}.csr`, '-CA', `${dir}/ca.pem`, '-CAkey', `${dir}/ca.key`,
        '-set_serial', String(serial), '-days', '2', '-extfile', `${base}.ext`, '-out', `${base}.pem`,
      ]);
      return { key: readFileSync(`${base}.key`, 'utf8'), cert: readFileSync(`${base}.pem`, 'utf8') };
    },
    cleanup,
  };
}
