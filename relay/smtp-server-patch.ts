/**
 * smtp-server waits a fixed 100 ms before every greeting to catch clients that talk too
 * early. That is right for port 25 facing the internet and wrong for submission from our own
 * applications: it caps a client that opens a connection per message at 10 messages a second
 * per session. This makes the pause a per-server option (`greetingDelayMs`), same behaviour
 * otherwise. A test pins the library code this replaces, so an upgrade that changes it fails.
 *
 * smtp-server also prefixes every reply with an enhanced status code guessed from the basic
 * code (550 becomes 5.1.1, whatever the reason). Our refusals carry their own (5.7.1 relay
 * denied, 4.3.1 storage): a reply text that starts with one is sent as it is.
 *
 * And it advertises AUTH before STARTTLS even where AUTH would then be refused (538). Like
 * Postfix with smtpd_tls_auth_only, we offer AUTH only once it can succeed.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

interface PatchedConnection {
  _server: { options: { maxClients?: number; greetingDelayMs?: number; allowInsecureAuth?: boolean }; connections: Set<unknown> };
  secure: boolean;
  name: string;
  _setListeners(cb: () => void): void;
  send(code: number, text: unknown, context?: unknown): void;
  connectionReady(): void;
}

const ORIGINAL_INIT = SMTPConnection.prototype.init.toString();
let patched = false;
const OWN_ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

export function patchGreetingDelay(): void {
  if (patched) return;
  patched = true;
  const proto = SMTPConnection.prototype as unknown as PatchedConnection & { init(): void };
  const originalSend = proto.send;
  proto.send = function (this: PatchedConnection, code: number, text: unknown, context?: unknown) {
    if (typeof text === 'string' && OWN_ENHANCED_CODE.test(text)) return originalSend.call(this, code, text, false);
    if (code === 250 && Array.isArray(text) && !this.secure && !this._server.options.allowInsecureAuth) {
      return originalSend.call(this, code, text.filter((line: unknown) => typeof line !== 'string' || !line.startsWith('AUTH ')), context);
    }
    return originalSend.call(this, code, text, context);
  };
  proto.init = function (this: PatchedConnection) {
    this._setListeners(() => {
      const { maxClients, greetingDelayMs } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        return this.send(421, `${this.name} 4.7.0 Too many connected clients, try again in a moment`, false);
      }
      const delay = greetingDelayMs ?? 100;
      if (delay <= 0) return this.connectionReady();
      setTimeout(() => this.connectionReady(), delay).unref();
    });
  };
}

/** The library source this patch replaces, for the pinning test. */
export function originalInitSource(): string {
  return ORIGINAL_INIT;
}
