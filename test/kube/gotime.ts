/**
 * metav1.Time and metav1.MicroTime as kube-apiserver reads and writes them: Go 1.19's time.Parse
 * with the layouts RFC3339 ("2006-01-02T15:04:05Z07:00") and RFC3339Micro
 * ("2006-01-02T15:04:05.000000Z07:00"), with Go's own error texts, and the form they are stored
 * and served in (UTC; Time truncated to the second, MicroTime to the microsecond).
 *
 * RFC3339 takes any number of fractional digits (Go accepts a fraction the layout does not have
 * after the seconds); RFC3339Micro wants exactly six, so `toISOString()`'s three are refused.
 */

export const RFC3339 = '2006-01-02T15:04:05Z07:00';
export const RFC3339_MICRO = '2006-01-02T15:04:05.000000Z07:00';

export type GoTimeLayout = typeof RFC3339 | typeof RFC3339_MICRO;

export interface ParsedTime {
  /** Seconds since the epoch, UTC. */
  seconds: number;
  nanos: number;
}

type Chunk = { prefix: string; std: 'year' | 'month' | 'day' | 'hour' | 'minute' | 'second' | 'frac6' | 'tz'; text: string };

const CHUNKS: Record<GoTimeLayout, Chunk[]> = {
  [RFC3339]: [
    { prefix: '', std: 'year', text: '2006' },
    { prefix: '-', std: 'month', text: '01' },
    { prefix: '-', std: 'day', text: '02' },
    { prefix: 'T', std: 'hour', text: '15' },
    { prefix: ':', std: 'minute', text: '04' },
    { prefix: ':', std: 'second', text: '05' },
    { prefix: '', std: 'tz', text: 'Z07:00' },
  ],
  [RFC3339_MICRO]: [
    { prefix: '', std: 'year', text: '2006' },
    { prefix: '-', std: 'month', text: '01' },
    { prefix: '-', std: 'day', text: '02' },
    { prefix: 'T', std: 'hour', text: '15' },
    { prefix: ':', std: 'minute', text: '04' },
    { prefix: ':', std: 'second', text: '05' },
    { prefix: '', std: 'frac6', text: '.000000' },
    { prefix: '', std: 'tz', text: 'Z07:00' },
  ],
};

/** Go's time.quote: ASCII printable as is (`"` and `\` escaped), every other byte as \xNN. */
function quote(bytes: Uint8Array): string {
  let out = '"';
  for (const b of bytes) {
    if (b >= 0x80 || b < 0x20) out += `\\x${b.toString(16).padStart(2, '0')}`;
    else out += (b === 0x22 || b === 0x5c ? '\\' : '') + String.fromCharCode(b);
  }
  return `${out}"`;
}

const isDigit = (s: Uint8Array, i: number) => i < s.length && (s[i] as number) >= 0x30 && (s[i] as number) <= 0x39;

class BadValue extends Error {}

/** Go's getnum: one or two digits (exactly two when fixed). */
function getnum(s: Uint8Array, fixed: boolean): [number, Uint8Array] {
  if (!isDigit(s, 0)) throw new BadValue();
  if (!isDigit(s, 1)) {
    if (fixed) throw new BadValue();
    return [(s[0] as number) - 0x30, s.subarray(1)];
  }
  return [((s[0] as number) - 0x30) * 10 + (s[1] as number) - 0x30, s.subarray(2)];
}

/** Go's time.atoi: an optional sign, then digits only (none is 0). */
function atoi(s: Uint8Array): number {
  let i = 0;
  let negative = false;
  if (s.length > 0 && (s[0] === 0x2d || s[0] === 0x2b)) {
    negative = s[0] === 0x2d;
    i = 1;
  }
  let x = 0;
  for (; i < s.length; i++) {
    if (!isDigit(s, i)) throw new BadValue();
    x = x * 10 + (s[i] as number) - 0x30;
    if (x > 2 ** 62) throw new BadValue();
  }
  return negative ? -x : x;
}

const commaOrPeriod = (b: number | undefined) => b === 0x2e || b === 0x2c;

/** Go's parseNanoseconds: nbytes includes the separator. */
function parseNanoseconds(value: Uint8Array, nbytes: number): { ns: number; range?: string } {
  if (!commaOrPeriod(value[0])) throw new BadValue();
  const digits = Math.min(nbytes, 10);
  const ns = atoi(value.subarray(1, digits));
  if (ns < 0) return { ns, range: 'fractional second' };
  return { ns: ns * 10 ** (10 - digits) };
}

function daysIn(month: number, year: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] as number;
}

/** Days from 1970-01-01 to a proleptic Gregorian date (any year). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (month <= 2 ? 1 : 0), month, day];
}

/** time.Parse(layout, value): the instant, or the error text Go gives. */
export function parseGoTime(layout: GoTimeLayout, text: string): { time: ParsedTime; error?: undefined } | { time?: undefined; error: string } {
  const avalue = Buffer.from(text, 'utf8');
  const parseError = (valueElem: Uint8Array, layoutElem: string) => `parsing time ${quote(avalue)} as ${quote(Buffer.from(layout))}: cannot parse ${quote(valueElem)} as ${quote(Buffer.from(layoutElem))}`;
  const messageError = (message: string) => `parsing time ${quote(avalue)}${message}`;
  let value: Uint8Array = avalue;
  let year = 0;
  let month = -1;
  let day = -1;
  let hour = 0;
  let minute = 0;
  let second = 0;
  let nanos = 0;
  let offset = 0;
  for (const chunk of CHUNKS[layout]) {
    for (let i = 0; i < chunk.prefix.length; i++) {
      if (value.length === 0 || value[0] !== chunk.prefix.charCodeAt(i)) return { error: parseError(value, chunk.prefix.slice(i)) };
      value = value.subarray(1);
    }
    // Go reports the value as far as it got: a chunk that failed may already have consumed its bytes.
    let digits: Uint8Array;
    let range = '';
    try {
      switch (chunk.std) {
        case 'year':
          if (value.length < 4 || !isDigit(value, 0)) throw new BadValue();
          digits = value.subarray(0, 4);
          value = value.subarray(4);
          year = atoi(digits);
          break;
        case 'month':
          [month, value] = getnum(value, true);
          if (month <= 0 || month > 12) range = 'month';
          break;
        case 'day':
          [day, value] = getnum(value, true);
          break;
        case 'hour':
          [hour, value] = getnum(value, false);
          if (hour >= 24) range = 'hour';
          break;
        case 'minute':
          [minute, value] = getnum(value, true);
          if (minute >= 60) range = 'minute';
          break;
        case 'second':
          [second, value] = getnum(value, true);
          if (second >= 60) {
            range = 'second';
            break;
          }
          // A fraction the layout does not have (RFC3339): any number of digits.
          if (layout === RFC3339 && value.length >= 2 && commaOrPeriod(value[0]) && isDigit(value, 1)) {
            let n = 2;
            while (n < value.length && isDigit(value, n)) n++;
            [digits, value] = [value, value.subarray(n)];
            const parsed = parseNanoseconds(digits, n);
            nanos = parsed.ns;
            range = parsed.range ?? '';
          }
          break;
        case 'frac6': {
          if (value.length < 7) throw new BadValue();
          [digits, value] = [value, value.subarray(7)];
          const parsed = parseNanoseconds(digits, 7);
          nanos = parsed.ns;
          range = parsed.range ?? '';
          break;
        }
        case 'tz': {
          if (value.length >= 1 && value[0] === 0x5a) {
            value = value.subarray(1);
            break;
          }
          if (value.length < 6 || value[3] !== 0x3a) throw new BadValue();
          const [sign, hh, mm] = [value[0], value.subarray(1, 3), value.subarray(4, 6)];
          value = value.subarray(6);
          const [h] = getnum(hh, true);
          const [m] = getnum(mm, true);
          if (sign !== 0x2b && sign !== 0x2d) throw new BadValue();
          offset = (sign === 0x2d ? -1 : 1) * (h * 60 + m) * 60;
          break;
        }
      }
    } catch (err) {
      if (!(err instanceof BadValue)) throw err;
      if (range) return { error: messageError(`: ${range} out of range`) };
      return { error: parseError(value, chunk.text) };
    }
    if (range) return { error: messageError(`: ${range} out of range`) };
  }
  if (value.length > 0) return { error: messageError(`: extra text: ${quote(value)}`) };
  if (day < 1 || day > daysIn(month, year)) return { error: messageError(': day out of range') };
  const seconds = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
  return { time: { seconds, nanos } };
}

/** How the API server serialises a Time (`micro` false: seconds) or MicroTime: UTC, RFC 3339. */
export function formatGoTime(time: ParsedTime, micro: boolean): string {
  const days = Math.floor(time.seconds / 86400);
  const rest = time.seconds - days * 86400;
  const [year, month, day] = civilFromDays(days);
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const clock = `${pad(Math.floor(rest / 3600))}:${pad(Math.floor(rest / 60) % 60)}:${pad(rest % 60)}`;
  const fraction = micro ? `.${pad(Math.floor(time.nanos / 1000), 6)}` : '';
  return `${pad(year, 4)}-${pad(month)}-${pad(day)}T${clock}${fraction}Z`;
}
