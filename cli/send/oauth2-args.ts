/**
 * `mailfleet send --oauth2`'s options: the relay's delivery.route.oauth2 spelled as flags, and
 * checked by the relay's own schema (smarthostOAuth2Schema), so a mistake reads as it would in
 * the config, with the flag to fix in front.
 */
import { smarthostOAuth2Schema, type SmarthostOAuth2Config } from '../../relay/delivery/oauth2/config.js';
import { UsageError } from './usage-error.js';

/** The flag for each key of delivery.route.oauth2. */
const FLAG_OF = {
  provider: 'oauth2',
  user: 'user',
  tenant: 'tenant',
  clientId: 'client-id',
  clientSecretFile: 'client-secret-file',
  certificateFile: 'certificate-file',
  privateKeyFile: 'private-key-file',
  serviceAccountFile: 'service-account-file',
  tokenUrl: 'token-url',
  scope: 'scope',
} as const satisfies Record<keyof SmarthostOAuth2Config, string>;

type OAuth2Flag = (typeof FLAG_OF)[keyof typeof FLAG_OF];

/** For parseArgs: the flags that only apply with --oauth2 (--user is shared with passwords). */
export const OAUTH2_OPTIONS = Object.fromEntries(
  Object.values(FLAG_OF)
    .filter((flag) => flag !== 'user')
    .map((flag) => [flag, { type: 'string' as const }]),
) as Record<Exclude<OAuth2Flag, 'user'>, { type: 'string' }>;

export type OAuth2Values = Partial<Record<OAuth2Flag | 'password-file', string>>;

/** The OAuth 2.0 settings the flags give, undefined without --oauth2. Throws UsageError. */
export function oauth2FromArgs(values: OAuth2Values): SmarthostOAuth2Config | undefined {
  if (values.oauth2 === undefined) {
    const stray = Object.keys(OAUTH2_OPTIONS).filter((flag) => values[flag as OAuth2Flag] !== undefined);
    if (stray.length) throw new UsageError(`${stray.map((f) => `--${f}`).join(', ')} ${stray.length > 1 ? 'apply' : 'applies'} only with --oauth2 microsoft|google|generic`);
    return undefined;
  }
  if (values['password-file'] !== undefined) {
    throw new UsageError('give either --oauth2 or --password-file, not both (a smarthost takes an access token or a password)');
  }
  if (!values.user) throw new UsageError('--oauth2 needs --user MAILBOX: the mailbox to authenticate as (google: the user the service account acts for)');
  const raw = Object.fromEntries(Object.entries(FLAG_OF).map(([key, flag]) => [key, values[flag]]).filter(([, value]) => value !== undefined));
  const parsed = smarthostOAuth2Schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const key = issue.path[0] as keyof typeof FLAG_OF | undefined;
    return key && key in FLAG_OF ? `--${FLAG_OF[key]}: ${issue.message}` : issue.message;
  });
  throw new UsageError(`the OAuth 2.0 options are not valid (the rules of delivery.route.oauth2, docs/providers.md): ${problems.join('; ')}`);
}
