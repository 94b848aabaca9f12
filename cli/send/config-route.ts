/**
 * `mailfleet send --config FILE`: the smarthost of a relay config's delivery.route (host, port,
 * tls, certificate check, delivery.tlsPolicy.caFile, and its password or oauth2), read and
 * checked by the relay's own loadConfigFile and credential reader, so send tests what the relay
 * would use (in a relay pod: --config /etc/mailfleet/config/relay.yaml).
 */
import { loadConfigFile } from '../../relay/config.js';
import { smarthostCredentials } from '../../relay/delivery/credentials.js';
import type { SmarthostOAuth2Config } from '../../relay/delivery/oauth2/config.js';
import { MailfleetError } from '../../relay/errors.js';
import type { TlsMode } from './diagnose.js';
import { UsageError } from './usage-error.js';

/** Where and how to send: from the flags, or from a relay config. */
export interface SendTarget {
  host: string;
  port: number;
  mode: TlsMode;
  user: string | undefined;
  password: string | undefined;
  oauth2: SmarthostOAuth2Config | undefined;
  insecure: boolean;
  /** A PEM file of CAs to trust (read and checked like --ca). */
  caFile: string | undefined;
}

/** The flags --config replaces: given together, which one counts would be a guess. */
export const TARGET_FLAGS = ['server', 'starttls', 'tls', 'user', 'password-file', 'insecure', 'ca'] as const;

export function smarthostFromConfig(file: string): SendTarget {
  try {
    const { delivery } = loadConfigFile(file);
    const route = delivery.route;
    if (route.type !== 'smarthost') {
      throw new UsageError(`${file}: delivery.route is ${route.type}, not smarthost; --config tests only a smarthost route (give --server HOST:PORT for any other server)`);
    }
    // The password as the relay reads it (credentialsFile, or usernameFile and passwordFile).
    const credentials = smarthostCredentials(route);
    return {
      host: route.host,
      port: route.port,
      mode: route.tls === 'implicit' ? 'tls' : route.tls === 'starttls' ? 'starttls' : 'plain',
      user: route.oauth2?.user ?? credentials?.user,
      password: credentials?.pass,
      oauth2: route.oauth2,
      insecure: !route.verifyCertificate,
      caFile: delivery.tlsPolicy.caFile,
    };
  } catch (err) {
    if (err instanceof MailfleetError) throw new UsageError(err.describe());
    throw err;
  }
}
