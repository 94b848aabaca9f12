/**
 * `mailfleet suppressions list|remove`: the suppression list in the spool directory named by
 * a relay config. Works with the relay running (it notices removals within a second) or
 * stopped, so `kubectl exec POD -- mailfleet suppressions ...` is enough in a cluster.
 */
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../relay/config.js';
import { relayConfigFile } from './config-file.js';
import { SUPPRESSION_FILE, SuppressionList, suppressionJson, type ListedSuppression } from '../relay/suppression.js';

export const SUPPRESSIONS_USAGE = `usage: mailfleet suppressions list [--config FILE] [--domain D] [--json]
       mailfleet suppressions remove [--config FILE] ADDRESS [--domain D]

Recipients that hard-bounced (5.1.1 unknown user, 5.1.2 no such domain, ...) are suppressed
per sender domain: the relay refuses (or bounces) further mail to them until the entry expires
(suppression.ttl) or is removed. The list lives in ${SUPPRESSION_FILE} in the spool directory.
  --config FILE   the relay's config file (for the spool directory and the ttl); default:
                  .mailfleet/relay.yaml, the development relay's (npm start)
  --domain D      only this sender domain; remove without it removes ADDRESS for every one
  --json          list as JSON
Exit status: 0 done, 1 ADDRESS was not on the list, 2 bad arguments or config.`;

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function table(entries: ListedSuppression[]): string {
  const rows = [['SENDER DOMAIN', 'RECIPIENT', 'SINCE', 'EXPIRES', 'LAST REPLY'], ...entries.map((s) => [s.senderDomain, s.recipient, iso(s.since), (s.expiresAt === undefined ? 'never (unsubscribed)' : iso(s.expiresAt)), s.reply])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** Runs `mailfleet suppressions` with the arguments after `suppressions`; resolves to the exit code. */
export async function suppressionsCommand(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (!action || action === '--help' || action === '-h' || rest.includes('--help') || rest.includes('-h')) {
    console.log(SUPPRESSIONS_USAGE);
    return action ? 0 : 2;
  }
  if (action !== 'list' && action !== 'remove') {
    console.error(`mailfleet suppressions: unknown action "${action}"\n\n${SUPPRESSIONS_USAGE}`);
    return 2;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, domain: { type: 'string', short: 'd' }, json: { type: 'boolean' } },
  });
  const wanted = action === 'remove' ? 1 : 0;
  if (positionals.length !== wanted) {
    console.error(`mailfleet suppressions ${action}: ${wanted ? 'give exactly one ADDRESS' : `unexpected argument "${positionals[0]}"`}\n\n${SUPPRESSIONS_USAGE}`);
    return 2;
  }
  const config = loadConfigFile(relayConfigFile(values.config, 'mailfleet suppressions', (line) => console.error(line)));
  const list = await SuppressionList.open(config.spool.dir, { ttl: () => config.suppression.ttl });

  if (action === 'list') {
    const entries = list.list(values.domain);
    if (values.json) console.log(JSON.stringify(entries.map(suppressionJson), null, 2));
    else if (!entries.length) console.log(`no suppressed recipients${values.domain ? ` for ${values.domain}` : ''}`);
    else console.log(table(entries));
    return 0;
  }

  const address = positionals[0]!;
  const removed = await list.remove(address, values.domain);
  if (!removed.length) {
    console.error(`${address} is not on the suppression list${values.domain ? ` for ${values.domain}` : ''}`);
    return 1;
  }
  for (const s of removed) console.log(`removed ${s.recipient} for sender domain ${s.senderDomain} (suppressed since ${iso(s.since)})`);
  return 0;
}
