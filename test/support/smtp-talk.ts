/**
 * A minimal line-level SMTP client for tests that must see exact replies (the open-relay
 * battery, limits): send a command, read the whole (multi-line) reply.
 */
import net from 'node:net';
import tls from 'node:tls';

export class SmtpTalk {
  private buffer = '';
  private waiters: ((line: string) => void)[] = [];
  private lines: string[] = [];
  closed = false;

  private constructor(private socket: net.Socket) {
    this.attach(socket);
  }

  static async connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<{ talk: SmtpTalk; greeting: string }> {
    const socket = net.connect({ port, host, localAddress });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const talk = new SmtpTalk(socket);
    return { talk, greeting: await talk.reply() };
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (d: Buffer) => {
      this.buffer += d.toString('utf8');
      let i;
      while ((i = this.buffer.indexOf('\r\n')) >= 0) {
        const line = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 2);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w('');
    });
    socket.on('error', () => undefined);
  }

  private nextLine(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.closed) return Promise.resolve('');
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The next complete reply, multi-line replies joined with \n. */
  async reply(): Promise<string> {
    const out: string[] = [];
    for (;;) {
      const line = await this.nextLine();
      out.push(line);
      if (line.length < 4 || line[3] !== '-') return out.join('\n');
    }
  }

  async send(command: string): Promise<string> {
    this.socket.write(command + '\r\n');
    return this.reply();
  }

  /** DATA, the message, and the final dot; returns the reply to the dot (or to DATA if refused). */
  async data(message: string): Promise<string> {
    const go = await this.send('DATA');
    if (!go.startsWith('354')) return go;
    const body = message.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
    this.socket.write(body + (body.endsWith('\r\n') ? '' : '\r\n') + '.\r\n');
    return this.reply();
  }

  async starttls(servername = 'localhost'): Promise<string> {
    const r = await this.send('STARTTLS');
    if (!r.startsWith('220')) return r;
    await this.upgrade(servername);
    return r;
  }

  /** The TLS handshake after a 220 to STARTTLS. */
  async upgrade(servername = 'localhost'): Promise<void> {
    this.socket.removeAllListeners('data');
    const secure = tls.connect({ socket: this.socket, servername, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    this.socket = secure;
    this.attach(secure);
  }

  authPlain(user: string, password: string, authzid = ''): Promise<string> {
    return this.send(`AUTH PLAIN ${Buffer.from(`${authzid}\0${user}\0${password}`).toString('base64')}`);
  }

  /** Writes raw bytes (no CRLF added, no dot-stuffing): a DATA body in parts, hostile input. */
  write(bytes: string | Buffer): void {
    this.socket.write(bytes);
  }

  async quit(): Promise<void> {
    if (!this.closed) await this.send('QUIT').catch(() => undefined);
    this.socket.destroy();
  }
}

/** One message through a listener that needs no AUTH; returns the reply to the final dot. */
export async function submit(port: number, from: string, to: string[], message: string, host = '127.0.0.1'): Promise<string> {
  const { talk } = await SmtpTalk.connect(port, host);
  try {
    await talk.send('EHLO client.test');
    const mail = await talk.send(`MAIL FROM:<${from}>`);
    if (!mail.startsWith('250')) return mail;
    for (const r of to) {
      const rcpt = await talk.send(`RCPT TO:<${r}>`);
      if (!rcpt.startsWith('250')) return rcpt;
    }
    return await talk.data(message);
  } finally {
    await talk.quit();
  }
}
