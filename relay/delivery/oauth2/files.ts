/**
 * The files delivery.route.oauth2 names, read and parsed: the client secret, the certificate
 * and its key, or a Google service account key. Read at every token request (a rotated Secret
 * applies to the next token) and by relay/main.ts before a start, so a bad file stops it with
 * its code. A secret's value never appears in an error.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { SmarthostAuthFailure } from '../smarthost-auth.js';
import { tokenUrlProblem, type SmarthostOAuth2Config } from './config.js';

/** The fields of a Google service account key file the relay uses. */
export interface ServiceAccount {
  client_email: string;
  private_key: string;
  private_key_id?: string;
  token_uri?: string;
}

export type OAuth2Files =
  | { kind: 'secret'; secret: string }
  | { kind: 'certificate'; cert: crypto.X509Certificate; key: crypto.KeyObject }
  | { kind: 'serviceAccount'; account: ServiceAccount; key: crypto.KeyObject };

export function readOAuth2Files(cfg: SmarthostOAuth2Config): OAuth2Files {
  if (cfg.serviceAccountFile) {
    const account = readServiceAccount(cfg.serviceAccountFile);
    return { kind: 'serviceAccount', account, key: privateKey(account.private_key, cfg.serviceAccountFile) };
  }
  if (cfg.clientSecretFile) {
    const secret = readSecret(cfg.clientSecretFile, 'client secret');
    if (!secret) throw new SmarthostAuthFailure('credentials_unreadable', `${cfg.clientSecretFile} is empty: put the client secret's value in it`);
    return { kind: 'secret', secret };
  }
  let cert: crypto.X509Certificate;
  try {
    cert = new crypto.X509Certificate(readSecret(cfg.certificateFile!, 'certificate'));
  } catch (err) {
    if (err instanceof SmarthostAuthFailure) throw err;
    throw new SmarthostAuthFailure('credentials_unreadable', `${cfg.certificateFile} is not a PEM certificate: ${(err as Error).message}`);
  }
  const key = privateKey(readSecret(cfg.privateKeyFile!, 'private key'), cfg.privateKeyFile!);
  if (!cert.checkPrivateKey(key)) throw new SmarthostAuthFailure('credentials_unreadable', `${cfg.privateKeyFile} is not the key of the certificate in ${cfg.certificateFile}`);
  return { kind: 'certificate', cert, key };
}

function readServiceAccount(file: string): ServiceAccount {
  let parsed: Partial<ServiceAccount>;
  try {
    parsed = JSON.parse(readSecret(file, 'service account key')) as Partial<ServiceAccount>;
  } catch (err) {
    if (err instanceof SmarthostAuthFailure) throw err;
    throw new SmarthostAuthFailure('credentials_unreadable', `${file} is not a service account key (JSON): ${(err as Error).message}`);
  }
  if (typeof parsed.client_email !== 'string' || typeof parsed.private_key !== 'string') {
    throw new SmarthostAuthFailure('credentials_unreadable', `${file} has no client_email and private_key: download a JSON key for the service account`);
  }
  const problem = typeof parsed.token_uri === 'string' ? tokenUrlProblem(parsed.token_uri) : undefined;
  if (problem) throw new SmarthostAuthFailure('credentials_unreadable', `${file}: token_uri ${parsed.token_uri}: ${problem}`);
  return parsed as ServiceAccount;
}

function privateKey(pem: string, file: string): crypto.KeyObject {
  try {
    return crypto.createPrivateKey(pem);
  } catch (err) {
    throw new SmarthostAuthFailure('credentials_unreadable', `${file} holds no usable private key: ${(err as Error).message}`);
  }
}

/** A Secret key mounted as a file: its value, without the newline an editor may have added. Throws the file system's error. */
export function readMountedSecret(file: string): string {
  return fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
}

/** readMountedSecret, failing as credentials_unreadable. Never the value in an error message. */
function readSecret(file: string, what: string): string {
  try {
    return readMountedSecret(file);
  } catch (err) {
    throw new SmarthostAuthFailure('credentials_unreadable', `cannot read the OAuth 2.0 ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}: ${file})`);
  }
}
