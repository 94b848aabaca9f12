#!/usr/bin/env node
/**
 * The `mailfleet` command: one binary, one subcommand per job. Each command's modules load
 * only when it runs: a relay pod does not carry the operator's Kubernetes client in memory
 * (about 90 MiB of resident memory on Node 24), nor the operator the relay's SMTP stack.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MailfleetError } from '../relay/errors.js';

const USAGE = `usage: mailfleet <command> [options]

commands:
  relay [--config FILE]        run the SMTP relay; without --config, on development defaults
                               (loopback ports 2525 and 2587, spool and outbox in ./.mailfleet)
  operator [--namespaces ...]  reconcile MailRelay and SenderDomain resources (mailfleet operator --help)
  send --server HOST:PORT ...  send a test message and show every step (mailfleet send --help)
  hash-password [--user NAME]  print a users-file entry for a password (asked at a terminal, else read on stdin)
  records [--config FILE]      the DNS records (SPF, DKIM, DMARC, MTA-STS, TLS-RPT) the sender
                               domains need; --verify compares with what DNS serves now
                               (without --config: .mailfleet/relay.yaml, the development relay's)
  suppressions list|remove     the recipients that hard-bounced, per sender domain
  render -f FILE...            the objects the operator would create for MailRelay and
                               SenderDomain manifests, and the DNS records to publish

Run \`mailfleet <command> --help\` for a command's options.`;

async function relayCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log('usage: mailfleet relay [--config FILE]\n\nWithout --config the relay runs on development defaults in ./.mailfleet (see README).');
    return 0;
  }
  let config;
  let banner: string[] = [];
  const [{ loadConfigFile }, { startRelay }] = await Promise.all([import('../relay/config.js'), import('../relay/main.js')]);
  if (values.config) {
    config = loadConfigFile(values.config);
  } else {
    const { DEV_SENDER_DOMAIN, devSetup } = await import('../relay/dev.js');
    const dev = await devSetup();
    config = dev.config;
    banner = [
      'mailfleet relay on development defaults (not for production):',
      `  smtp://127.0.0.1:2525   loopback clients, no AUTH (development listener)`,
      `  smtp://127.0.0.1:2587   STARTTLS + AUTH as user "${dev.user}", password "${dev.password}"`,
      `                          (certificate: ${dev.certFile})`,
      `  spool:   ${config.spool.dir}`,
      `  outbox:  ${config.delivery.route.type === 'file' ? config.delivery.route.dir : ''}  (each delivered message as an .eml file)`,
      `  metrics: http://127.0.0.1:${config.http.port}/metrics`,
      `  DKIM:    mail From ${DEV_SENDER_DOMAIN} is signed (rsa and ed25519 keys in ${path.join(path.dirname(config.spool.dir), 'dkim')});`,
      `           the submission user may send only from ${DEV_SENDER_DOMAIN}`,
      `  config:  ${dev.configFile}  (these defaults as a file: mailfleet records and mailfleet suppressions read it)`,
      `try:  npx mailfleet send --server 127.0.0.1:2525 --from app@example.test --to you@example.test`,
    ];
  }
  // Signals are handled from before the start: the "listening" line is written as soon as the
  // port is bound, and a supervisor that stops the relay on seeing it gets a drain, not a kill.
  const starting = startRelay({ config, configFile: values.config, queue: 'worker' });
  const stop = () => {
    // A start that fails exits through its own error instead.
    void starting.then(
      async (relay) => {
        await relay.shutdown();
        process.exit(process.exitCode ?? 0);
      },
      () => undefined,
    );
  };
  // Every SIGTERM joins the one drain (shutdown is idempotent): Kubernetes may send more than
  // one, and the relay sends itself one when its queue worker dies. A second Ctrl-C (SIGINT) is
  // left to end the process at once.
  process.on('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.on('SIGHUP', () => void starting.then((relay) => relay.reload(), () => undefined));
  await starting;
  for (const line of banner) process.stderr.write(line + '\n');
  return new Promise<number>(() => undefined);
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'relay':
      return relayCommand(rest);
    case 'send':
      return (await import('./send.js')).sendCommand(rest);
    case 'hash-password':
      return (await import('./hash-password.js')).hashPasswordCommand(rest);
    case 'records':
      return (await import('./records.js')).recordsCommand(rest);
    case 'render':
      return (await import('./render.js')).renderCommand(rest);
    case 'operator':
      return (await import('./operator.js')).operatorCommand(rest);
    case 'suppressions':
      return (await import('./suppressions.js')).suppressionsCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return command ? 0 : 2;
    default:
      console.error(`mailfleet: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof MailfleetError) console.error(err.describe());
    else if (err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) console.error(`mailfleet: ${err.message}`);
    else console.error(err);
    process.exit(err instanceof MailfleetError || err instanceof TypeError ? 2 : 1);
  },
);
