/**
 * `mailfleet send`'s output with its secrets masked: the password, the OAuth 2.0 client secret
 * or assertion, and each access token, as soon as the command knows them. The transcript already
 * hides what is sent during AUTH; this also covers a server or token endpoint that echoes one.
 */
import type { Output } from '../output.js';

export class MaskedOutput implements Output {
  private readonly secrets: { value: string; shown: string }[] = [];

  constructor(private readonly out: Output) {}

  /** From now on, `value` (and its base64, as AUTH sends it) is printed as `<what hidden>`. */
  hide(value: string, what: string): void {
    const shown = `<${what} hidden>`;
    for (const form of [value, Buffer.from(value).toString('base64')]) {
      if (form) this.secrets.push({ value: form, shown });
    }
  }

  log(line: string): void {
    this.out.log(this.mask(line));
  }

  error(line: string): void {
    this.out.error(this.mask(line));
  }

  private mask(line: string): string {
    return this.secrets.reduce((text, { value, shown }) => text.split(value).join(shown), line);
  }
}
