/**
 * The smarthost's credentials, read from files (mounted Kubernetes Secrets; never environment
 * variables). Read where the route is built and at every connection (a rotated Secret applies
 * from the next one), and by relay/main.ts before a start or a reload, so a bad file stops it
 * with its code rather than killing the queue's thread. Apart from the routes so the main
 * thread checks them without loading the delivery stack.
 */
import type { RouteConfig } from '../config.js';
import { ErrorCodes, MailfleetError } from '../errors.js';
import { readMountedSecret, readOAuth2Files } from './oauth2/files.js';
import { SmarthostAuthFailure } from './smarthost-auth.js';

const CREDENTIALS_HINT = 'mount the smarthost credentials Secret, or fix delivery.route.credentialsFile / usernameFile / passwordFile / oauth2';

/** A Secret key mounted as a file: its value, without the newline an editor may have added. */
function readSecretFile(file: string): string {
  try {
    return readMountedSecret(file);
  } catch (err) {
    throw new MailfleetError(ErrorCodes.CREDENTIALS_UNREADABLE, `cannot read smarthost credentials: ${(err as Error).message}`, CREDENTIALS_HINT);
  }
}

/** `username:password` on the first line; the password may contain colons. */
export function readCredentials(file: string): { user: string; pass: string } {
  const line = readSecretFile(file).split(/\r?\n/)[0] ?? '';
  const colon = line.indexOf(':');
  if (colon <= 0) throw new MailfleetError(ErrorCodes.CREDENTIALS_UNREADABLE, `${file} must hold "username:password" on its first line`, 'write the Secret key as username:password (the password may contain colons), or use usernameFile and passwordFile');
  return { user: line.slice(0, colon), pass: line.slice(colon + 1) };
}

/** The smarthost's user name and password, from credentialsFile or from usernameFile and passwordFile; undefined for a route without them. */
export function smarthostCredentials(route: RouteConfig): { user: string; pass: string } | undefined {
  if (route.type !== 'smarthost') return undefined;
  if (route.credentialsFile) return readCredentials(route.credentialsFile);
  if (route.usernameFile && route.passwordFile) return { user: readSecretFile(route.usernameFile), pass: readSecretFile(route.passwordFile) };
  return undefined;
}

/**
 * Every file the smarthost's authentication needs, read and parsed now: the user name and
 * password, or the OAuth 2.0 client secret, certificate and key, or service account key.
 */
export function checkSmarthostCredentials(route: RouteConfig): void {
  smarthostCredentials(route);
  if (route.type !== 'smarthost' || !route.oauth2) return;
  try {
    readOAuth2Files(route.oauth2);
  } catch (err) {
    if (err instanceof SmarthostAuthFailure) throw new MailfleetError(ErrorCodes.CREDENTIALS_UNREADABLE, err.detail, CREDENTIALS_HINT);
    throw err;
  }
}
