/**
 * `mailfleet records`: the DNS records a relay config's sender domains need, built from their
 * settings, the delivery route and the DKIM keys; with --verify, what DNS serves now.
 */
import { parseArgs } from 'node:util';
import { loadConfigFile, type RelayConfig } from '../relay/config.js';
import { loadDkimKey } from '../relay/dkim-keys.js';
import { verifyRecords, type RecordCheck } from '../relay/records-verify.js';
import { formatZoneRecord, linkHostsOf, recordsFor, SPF_LOOKUP_LIMIT, type DomainRecords, type RelayFacts } from '../relay/records.js';
import { relayConfigFile } from './config-file.js';
import type { Output } from './output.js';

export const RECORDS_USAGE = `usage: mailfleet records [--config FILE] [--json | --zone] [--verify] [--dns-server IP[:PORT]]...

Prints the DNS records (SPF, DKIM, DMARC, MTA-STS, TLS-RPT) the sender domains of a relay
config need, and the MTA-STS policy files to serve over HTTPS.
  --config FILE          the relay config: its senderDomains, their DKIM keys, the delivery route;
                         default: .mailfleet/relay.yaml, the development relay's (npm start)
  --json                 machine-readable output
  --zone                 zone-file lines (name. TTL IN TXT "..." "...") instead of the table
  --verify               also ask DNS what it serves now: match, missing or different per record
  --dns-server IP[:PORT] DNS server for --verify, repeatable ([v6]:PORT for IPv6); default: the
                         mx route's dnsServers, else the system resolver
  --timeout SECONDS      longest wait for each DNS answer (default 5)
Exit status: 0 printed (with --verify: DNS serves every record), 1 with --verify: a record is
missing, different or could not be looked up, 2 bad arguments, config or DKIM key.`;

const DEFAULT_TIMEOUT_SECONDS = 5;
const ZONE_TTL = 3600;

/** A mistake on the command line: reported with the usage text and exit code 2. */
class UsageError extends Error {}

interface RecordsOptions {
  config: string | undefined;
  format: 'table' | 'json' | 'zone';
  verify: boolean;
  dnsServers: string[] | undefined;
  timeoutSeconds: number;
}

/** A domain's records and, when --verify asked, what DNS serves for each (same order). */
interface DomainReport extends DomainRecords {
  checks: RecordCheck[] | undefined;
}

/** Runs `mailfleet records` with the arguments after `records`; resolves to the exit code. */
export async function recordsCommand(argv: string[], out: Output = console): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    out.log(RECORDS_USAGE);
    return 0;
  }
  let options: RecordsOptions;
  try {
    options = parseRecordsArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    out.error(`mailfleet records: ${err.message}`);
    out.error(RECORDS_USAGE);
    return 2;
  }
  const configFile = relayConfigFile(options.config, 'mailfleet records', (line) => out.error(line));
  const config = loadConfigFile(configFile);
  if (config.senderDomains.length === 0) {
    out.error(`${configFile} lists no senderDomains: there are no records to publish`);
    return 0;
  }
  const domains = config.senderDomains.map((d) =>
    recordsFor(
      { ...d, linkHosts: linkHostsOf(d) },
      relayFacts(config),
      (d.dkim?.keys ?? []).map((k) => loadDkimKey(k.privateKeyFile, k.selector)),
    ),
  );
  const reports = options.verify ? await withChecks(domains, options, config) : domains.map((d) => ({ ...d, checks: undefined }));

  if (options.format === 'json') out.log(JSON.stringify({ domains: reports.map(jsonReport) }, null, 2));
  else if (options.format === 'zone') for (const d of domains) out.log(zone(d));
  else for (const report of reports) out.log(table(report));

  if (!options.verify) return 0;
  const checks = reports.flatMap((r) => r.checks ?? []);
  if (options.format === 'table') out.log(summary(checks));
  return checks.every((c) => c.status === 'match') ? 0 : 1;
}

function parseRecordsArgs(argv: string[]): RecordsOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean', default: false },
        zone: { type: 'boolean', default: false },
        verify: { type: 'boolean', default: false },
        'dns-server': { type: 'string', multiple: true },
        timeout: { type: 'string' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.json && values.zone) throw new UsageError('use either --json or --zone, not both');
  if (values.zone && values.verify) throw new UsageError('--zone prints only the records: use --verify with the table or --json');
  if (values['dns-server'] && !values.verify) throw new UsageError('--dns-server only applies with --verify');
  const timeoutSeconds = values.timeout === undefined ? DEFAULT_TIMEOUT_SECONDS : Number(values.timeout);
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw new UsageError(`--timeout must be a positive number of seconds (got ${JSON.stringify(values.timeout)})`);
  return {
    config: values.config,
    format: values.json ? 'json' : values.zone ? 'zone' : 'table',
    verify: values.verify,
    dnsServers: values['dns-server'],
    timeoutSeconds,
  };
}

function relayFacts(config: RelayConfig): RelayFacts {
  const { route } = config.delivery;
  return { route: route.type, smarthostHost: route.type === 'smarthost' ? route.host : undefined, egressAddresses: config.delivery.egressAddresses, bouncesMxHost: config.bounces?.mxHost, linksHost: config.links?.publicHost };
}

async function withChecks(domains: DomainRecords[], options: RecordsOptions, config: RelayConfig): Promise<DomainReport[]> {
  const route = config.delivery.route;
  const servers = options.dnsServers ?? (route.type === 'mx' ? route.dnsServers : []);
  const checks = await verifyRecords(
    domains.flatMap((d) => d.records),
    { servers, timeoutMs: options.timeoutSeconds * 1000 },
  );
  return domains.map((d) => ({ ...d, checks: checks.filter((c) => d.records.includes(c.record)) }));
}

function jsonReport(report: DomainReport) {
  const { checks, ...domain } = report;
  return {
    ...domain,
    records: domain.records.map((record, i) => {
      const check = checks?.[i];
      if (!check) return record;
      const { record: _record, ...dns } = check;
      return { ...record, dns };
    }),
  };
}

/** Zone-file lines; what is not DNS (policy files, warnings) goes in comments so the output still loads. */
function zone(domain: DomainRecords): string {
  return [
    `; ${domain.domain}`,
    ...domain.records.map((r) => formatZoneRecord(r, ZONE_TTL)),
    ...domain.policies.map((p) => `; serve the MTA-STS policy at ${p.url}: ${JSON.stringify(p.content)}`),
    ...domain.warnings.map((w) => `; warning: ${w}`),
  ].join('\n');
}

const STATUS_LABEL: Record<RecordCheck['status'], string> = { match: 'match', missing: 'MISSING', different: 'DIFFERENT', error: 'ERROR' };

/** One domain: a row per record (value last, so long keys wrap without breaking columns). */
function table(report: DomainReport): string {
  const columns = ['NAME', 'TYPE', 'PURPOSE', ...(report.checks ? ['DNS'] : []), 'VALUE'];
  const rows = report.records.map((record, i) => {
    const check = report.checks?.[i];
    return [record.name, record.type, record.purpose, ...(check ? [STATUS_LABEL[check.status]] : []), record.value];
  });
  const widths = columns.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => '  ' + cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ');

  const lines = [report.domain, line(columns)];
  const warnings = [...report.warnings];
  report.records.forEach((record, i) => {
    lines.push(line(rows[i]!));
    const check = report.checks?.[i];
    if (check?.difference) lines.push(`      differs: ${check.difference}`);
    if (check?.error) lines.push(`      error: ${check.error}`);
    if (check?.spf) {
      lines.push(`      SPF: ${check.spf.exact ? '' : 'at least '}${check.spf.lookups} of ${SPF_LOOKUP_LIMIT} DNS lookups (includes followed through DNS)`);
      warnings.push(...check.spf.problems.map((p) => `SPF of ${record.name}: ${p}`));
    } else if (record.note) {
      lines.push(`      note: ${record.note}`);
    }
  });
  for (const policy of report.policies) {
    lines.push(`  MTA-STS policy to serve at ${policy.url}:`, ...policy.content.trimEnd().split('\r\n').map((l) => `    ${l}`));
  }
  if (warnings.length > 0) lines.push('  warnings:', ...warnings.map((w) => `    - ${w}`));
  return lines.join('\n') + '\n';
}

const SUMMARY_LABEL: Record<RecordCheck['status'], string> = { match: 'match', missing: 'missing', different: 'different', error: 'not looked up (DNS error)' };

function summary(checks: RecordCheck[]): string {
  const count = (status: RecordCheck['status']) => checks.filter((c) => c.status === status).length;
  const parts = (['match', 'missing', 'different', 'error'] as const).filter((s) => count(s) > 0).map((s) => `${count(s)} ${SUMMARY_LABEL[s]}`);
  return `DNS: ${parts.join(', ')}${count('match') === checks.length ? ' (all records published)' : ''}`;
}
