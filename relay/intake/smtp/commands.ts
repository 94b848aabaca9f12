/**
 * What each SMTP command does in a session: checks its syntax and order, asks the listener's
 * handler where there is one (MAIL, RCPT, DATA, AUTH), and replies as smtp-server 3.21 did.
 * The session's transport (reading, the body, TLS, closing) is connection.ts's.
 */
import { refusalReply } from '../../refusals.js';
import type { DataStream, HandlerError, Session } from './session.js';
import { authExchange, type AuthStep } from './sasl.js';
import type { EngineOptions } from './server.js';
import { acceptableHeloName, mailParamsRefusal, parseAddressCommand, rcptParamsRefusal, wordsOf, type Address } from './syntax.js';

/** What a command may do to its session (an SmtpConnection). */
export interface CommandContext {
  readonly session: Session;
  readonly options: EngineOptions;
  readonly name: string;
  readonly rcptIndex: Map<string, number>;
  readonly canStartTls: boolean;
  send(code: number, text: string | string[], enhanced?: string | false): void;
  resetTransaction(): void;
  beginBody(): DataStream;
  bodyAnswered(stream: DataStream, err: HandlerError, message?: string): void;
  quit(): void;
  startTls(): void;
  expectAuthLine(step: AuthStep): void;
  loggedIn(user: unknown): void;
  /** A handler that threw: logged by the listener, never shown to the client. */
  reportError(err: unknown): void;
}

type Command = (c: CommandContext, line: string, done: () => void) => void;

function reply(c: CommandContext, done: () => void, code: number, text: string | string[], enhanced?: string | false): void {
  c.send(code, text, enhanced);
  done();
}

/** HELO's or EHLO's one argument, or undefined when there is not exactly one. */
function greetingName(line: string): string | undefined {
  const words = wordsOf(line);
  return words.length === 2 ? words[1] : undefined;
}

function greeting(c: CommandContext): string {
  return `${c.name} Nice to meet you, ${c.session.clientHostname}`;
}

const EHLO: Command = (c, line, done) => {
  const name = greetingName(line);
  if (name === undefined) return reply(c, done, 501, 'Error: syntax: EHLO hostname', false);
  if (!acceptableHeloName(name)) return reply(c, done, 501, 'Error: Bad hostname syntax', false);
  const { session, options } = c;
  session.hostNameAppearsAs = name.toLowerCase();
  const features = ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES'];
  // Like Postfix's smtpd_tls_auth_only: AUTH is offered once it can succeed.
  if (options.authEnabled && !session.user && (session.secure || options.allowInsecureAuth)) features.push(`AUTH ${options.authMethods.join(' ')}`);
  if (!session.secure && options.starttls) features.push('STARTTLS');
  if (options.size) features.push(`SIZE ${options.size}`);
  c.resetTransaction();
  reply(c, done, 250, [greeting(c), ...features], false);
};

const HELO: Command = (c, line, done) => {
  const name = greetingName(line);
  if (name === undefined) return reply(c, done, 501, 'Error: Syntax: HELO hostname', false);
  if (!acceptableHeloName(name)) return reply(c, done, 501, 'Error: Bad hostname syntax', false);
  c.session.hostNameAppearsAs = name.toLowerCase();
  c.resetTransaction();
  reply(c, done, 250, greeting(c), false);
};

const MAIL: Command = (c, line, done) => {
  const parsed = parseAddressCommand('MAIL FROM', line);
  if (!parsed) return reply(c, done, 501, 'Error: Bad sender address syntax', '5.1.7');
  if (parsed.duplicate) return reply(c, done, 501, `Error: duplicate ${parsed.duplicate} parameter`);
  const envelope = c.session.envelope;
  if (envelope.mailFrom) return reply(c, done, 503, 'Error: nested MAIL command');
  const refused = mailParamsRefusal(parsed.args, c.options.size);
  if (refused) return reply(c, done, refused[0], refused[2], refused[1]);
  const address: Address = { address: parsed.address, args: parsed.args };
  if (address.args) {
    if (typeof address.args.BODY === 'string') envelope.bodyType = address.args.BODY.toLowerCase();
    if (address.args.SMTPUTF8 === true) envelope.smtpUtf8 = true;
  }
  c.options.onMailFrom(address, c.session, (err) => {
    if (err) return reply(c, done, err.responseCode || 550, err.message);
    c.session.envelope.mailFrom = address;
    reply(c, done, 250, 'Accepted', '2.1.0');
  });
};

const RCPT: Command = (c, line, done) => {
  const parsed = parseAddressCommand('RCPT TO', line);
  if (!parsed || !parsed.address) return reply(c, done, 501, 'Error: Bad recipient address syntax', '5.1.3');
  if (parsed.duplicate) return reply(c, done, 501, `Error: duplicate ${parsed.duplicate} parameter`);
  const refused = rcptParamsRefusal(parsed.args);
  if (refused) return reply(c, done, refused[0], refused[2], refused[1]);
  if (!c.session.envelope.mailFrom) return reply(c, done, 503, 'Error: need MAIL command');
  const address: Address = { address: parsed.address, args: parsed.args };
  const key = address.address.toLowerCase();
  c.options.onRcptTo(address, c.session, (err) => {
    if (err) return reply(c, done, err.responseCode || 550, err.message);
    // The same recipient twice is one recipient (the later RCPT's parameters).
    const rcptTo = c.session.envelope.rcptTo;
    const at = c.rcptIndex.get(key);
    if (at !== undefined) rcptTo[at] = address;
    else c.rcptIndex.set(key, rcptTo.push(address) - 1);
    reply(c, done, 250, 'Accepted', '2.1.5');
  });
};

const DATA: Command = (c, _line, done) => {
  if (!c.session.envelope.rcptTo.length) return reply(c, done, 503, 'Error: need RCPT command');
  const stream = c.beginBody();
  try {
    c.options.onData(stream, c.session, (err, message) => c.bodyAnswered(stream, err, message));
  } catch (err) {
    // The body still comes (the client is told 354): read it, then answer that it was not taken.
    c.reportError(err);
    c.bodyAnswered(stream, Object.assign(new Error('Error: internal server error'), { responseCode: 451 }));
  }
  reply(c, done, 354, 'End data with <CR><LF>.<CR><LF>');
};

const STARTTLS: Command = (c, line, done) => {
  if (!c.session.secure && !c.canStartTls) return reply(c, done, ...refusalReply('starttlsNotOffered'), false);
  if (wordsOf(line).length > 1) return reply(c, done, 501, 'Error: syntax: STARTTLS');
  if (c.session.secure) return reply(c, done, 503, 'Error: TLS already active');
  c.send(220, 'Ready to start TLS');
  c.startTls();
  done();
};

const AUTH: Command = (c, line, done) => {
  const args = wordsOf(line).slice(1);
  const method = (args.shift() ?? '').toUpperCase();
  const { session, options } = c;
  if (!session.secure && options.starttls && !options.allowInsecureAuth) {
    options.onBuiltinRefusal?.('tlsRequired', session);
    return reply(c, done, ...refusalReply('tlsRequired'), false);
  }
  if (session.user) return reply(c, done, 503, 'Error: No identity changes permitted');
  if (!options.authMethods.includes(method)) return reply(c, done, 504, 'Error: Unrecognized authentication type');
  const exchange = {
    send: (code: number, text: string, enhanced?: string | false) => c.send(code, text, enhanced),
    expect: (step: AuthStep) => c.expectAuthLine(step),
    authenticate: (auth: Parameters<EngineOptions['onAuth']>[0], cb: Parameters<EngineOptions['onAuth']>[2]) => options.onAuth(auth, session, cb),
    loggedIn: (user: unknown) => c.loggedIn(user),
  };
  authExchange(method, args, exchange, done);
};

/** Every command the engine knows (AUTH only where the listener offers it), by verb. */
export const COMMANDS: ReadonlyMap<string, Command> = new Map(Object.entries({
  EHLO,
  HELO,
  MAIL,
  RCPT,
  DATA,
  STARTTLS,
  AUTH,
  RSET: (c, _line, done) => {
    c.resetTransaction();
    reply(c, done, 250, 'Flushed');
  },
  NOOP: (c, _line, done) => reply(c, done, 250, 'OK'),
  HELP: (c, _line, done) => reply(c, done, 214, 'See https://tools.ietf.org/html/rfc5321 for details'),
  VRFY: (c, line, done) => (wordsOf(line)[1] ? reply(c, done, 252, 'Try to send something. No promises though') : reply(c, done, 501, 'Error: Syntax: VRFY address')),
  QUIT: (c, _line, done) => {
    c.send(221, 'Bye');
    c.quit();
    done();
  },
} satisfies Record<string, Command>));
