/**
 * `mailfleet send`: sends one test message and prints the SMTP session step by step, then, if
 * it failed, a diagnosis a person can act on. Built on nodemailer's SMTPConnection: its
 * transaction log is the transcript, and its errors carry the command and reply that failed.
 * With --oauth2, the token request comes first, made by the relay's own code.
 * Its parts in cli/send/: args.ts and oauth2-args.ts (the command line), token-step.ts (the
 * token request), dialogue.ts (the SMTP steps), transcript.ts (what is printed as it happens),
 * secrets.ts (the secrets masked in all of it), diagnose.ts (the diagnosis).
 */
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { Output } from './output.js';
import { parseSendArgs, SEND_USAGE, UsageError, type SendOptions } from './send/args.js';
import { SmarthostAuthFailure } from '../relay/delivery/smarthost-auth.js';
import type { TokenSource } from '../relay/delivery/oauth2/token-source.js';
import { diagnose, explainAuthReason, type SmtpError } from './send/diagnose.js';
import { authenticate, connectionOptions, describeMode, quit, step } from './send/dialogue.js';
import { MaskedOutput } from './send/secrets.js';
import { sessionTokens } from './send/token-step.js';
import { SessionLog } from './send/transcript.js';

/** Runs `mailfleet send` with the arguments after `send`; resolves to the exit code. */
export async function sendCommand(argv: string[], out: Output = console): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    out.log(SEND_USAGE);
    return 0;
  }
  let options: SendOptions;
  try {
    options = await parseSendArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    out.error(`mailfleet send: ${err.message}`);
    out.error(SEND_USAGE);
    return 2;
  }
  const masked = new MaskedOutput(out);
  if (options.password) masked.hide(options.password, 'password');
  return runSend(options, masked);
}

async function runSend(options: SendOptions, out: MaskedOutput): Promise<number> {
  const session = new SessionLog(out, options);
  let tokens: TokenSource | undefined;
  if (options.oauth2) {
    tokens = sessionTokens(options.oauth2, options, out);
    // The first step: without a token there is nothing to try on the smarthost.
    try {
      await tokens.token();
    } catch (err) {
      return reportFailure(err, session, out);
    }
  }
  const conn = new SMTPConnection(connectionOptions(options, session));
  session.watch(conn);
  // Failures reach the step that is waiting (see step()); without a listener EventEmitter would throw them.
  conn.on('error', () => undefined);
  const message = await composeMessage(options);
  out.log(`* connecting to ${options.host}:${options.port} ${describeMode(options.mode)}`);
  try {
    await step<void>(conn, (done) => conn.connect(done));
    if (options.user) await authenticate(conn, options, session, tokens);
    const info = await step<SMTPConnection.SentMessageInfo>(conn, (done) => conn.send({ from: options.from, to: options.to }, message, done));
    await quit(conn);
    return reportSent(info, session, out);
  } catch (err) {
    await quit(conn);
    return reportFailure(err, session, out);
  }
}

/** Last, so the diagnosis is what the user reads first when the command returns. */
function reportFailure(err: unknown, session: SessionLog, out: Output): number {
  if (err instanceof SmarthostAuthFailure) {
    // Only the token step throws the relay's failure; its detail is what the endpoint said (or the file).
    out.error(`error: ${err.detail}`);
    out.error(`diagnosis: ${explainAuthReason('the token request', err.reason)}`);
  } else {
    out.error(`error: ${(err as Error).message}`);
    out.error(`diagnosis: ${diagnose(err as SmtpError, session.facts)}`);
  }
  return 1;
}

function composeMessage(options: SendOptions): Promise<Buffer> {
  return new MailComposer({
    from: options.from,
    to: options.to,
    subject: options.subject,
    text: options.body,
    headers: { 'X-Mailer': 'mailfleet send' },
  })
    .compile()
    .build();
}

function reportSent(info: SMTPConnection.SentMessageInfo, session: SessionLog, out: Output): number {
  const firstRejection = info.rejectedErrors?.[0];
  if (!firstRejection) {
    out.log(`sent: accepted for ${info.accepted.join(', ')}: ${info.response}`);
    return 0;
  }
  out.error(`error: accepted for ${info.accepted.join(', ')} but refused for ${info.rejected.join(', ')}: ${firstRejection.message}`);
  out.error(`diagnosis: ${diagnose(firstRejection, session.facts)}`);
  return 1;
}
