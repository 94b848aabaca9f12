import { describe, expect, it } from 'vitest';
import { SmtpTalk } from '../../test/support/smtp-talk.js';
import { originalInitSource, originalSources, patchGreetingDelay } from './smtp-server-patch.js';
import { SMTPServer } from 'smtp-server';

describe('smtp-server patch', () => {
  it('replaces library code that still looks the way the patch expects (fails on an smtp-server upgrade that changed it)', () => {
    const source = originalInitSource();
    expect(source).toContain('setTimeout(() => this.connectionReady(), 100)');
    expect(source).toContain('maxClients');
    const { armTimeout, starttls, handleProxy, quit } = originalSources();
    expect(quit.replace(/\s+/g, ' ')).toContain("{ this.send(221, 'Bye'); this.close(); callback(); }");
    expect(handleProxy).toContain("crypto.randomBytes(10)");
    expect(handleProxy).toContain('if (!this._expectsProxyHeader(socket)) {');
    expect(handleProxy).toContain('setImmediate(() => callback(null, socketOptions));');
    expect(armTimeout).toContain('socket.setTimeout(socketTimeout(this._server.options), () => this._onTimeout())');
    expect(starttls).toContain("this.send(220, 'Ready to start TLS')");
  });

  it('honours greetingDelayMs (0 greets at once) and keeps our own enhanced status codes', async () => {
    patchGreetingDelay();
    const start = async (greetingDelayMs: number) => {
      const server = new SMTPServer({
        disableReverseLookup: true,
        authOptional: true,
        logger: false,
        greetingDelayMs,
        onMailFrom(_address, _session, cb) {
          cb(Object.assign(new Error('5.7.1 not this one'), { responseCode: 550 }));
        },
      } as ConstructorParameters<typeof SMTPServer>[0]);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return server;
    };
    const greetingTime = async (server: SMTPServer) => {
      const started = performance.now();
      const { talk, greeting } = await SmtpTalk.connect((server.server.address() as { port: number }).port);
      expect(greeting).toMatch(/^220 /);
      const ms = performance.now() - started;
      await talk.send('EHLO client.test');
      expect(await talk.send('MAIL FROM:<a@b.test>')).toBe('550 5.7.1 not this one');
      await talk.quit();
      return ms;
    };
    const quick = await start(0);
    const slow = await start(400);
    try {
      // Unpatched, both would greet after smtp-server's fixed 100 ms.
      expect(await greetingTime(slow)).toBeGreaterThanOrEqual(390);
      expect(await greetingTime(quick)).toBeLessThan(300);
    } finally {
      for (const s of [quick, slow]) await new Promise<void>((r) => s.close(() => r()));
    }
  });

  it('names each session apart: 16 base-32 characters, one prefix per process, in the order they came', async () => {
    patchGreetingDelay();
    const ids: string[] = [];
    const server = new SMTPServer({
      disableReverseLookup: true,
      authOptional: true,
      logger: false,
      greetingDelayMs: 0,
      onConnect(session, cb) {
        ids.push(session.id);
        cb();
      },
    } as ConstructorParameters<typeof SMTPServer>[0]);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      for (let i = 0; i < 3; i++) {
        const { talk } = await SmtpTalk.connect((server.server.address() as { port: number }).port);
        await talk.quit();
      }
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    expect(ids).toHaveLength(3);
    for (const id of ids) expect(id).toMatch(/^[0-9a-v]{16}$/);
    expect(new Set(ids).size).toBe(3);
    expect(new Set(ids.map((id) => id.slice(0, 8))).size).toBe(1);
    expect([...ids].sort()).toEqual(ids);
  });
});
