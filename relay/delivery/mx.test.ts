import dgram from 'node:dgram';
import dnsCodes from 'node:dns';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePeer } from '../../test/peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq, type Dnsmasq } from '../../test/peers/dnsmasq.js';
import { MxResolver } from './mx.js';
import { DeliveryFailure } from './outcome.js';

async function failureOf(p: Promise<unknown>): Promise<DeliveryFailure> {
  try {
    await p;
  } catch (err) {
    if (err instanceof DeliveryFailure) return err;
    throw err;
  }
  throw new Error('expected a DeliveryFailure');
}

describePeer('MX resolution against dnsmasq', DNSMASQ_BINARIES, () => {
  let dns: Dnsmasq;
  beforeAll(async () => {
    dns = await startDnsmasq({
      mx: [
        { domain: 'two.test', host: 'backup.two.test', preference: 20 },
        { domain: 'two.test', host: 'primary.two.test', preference: 10 },
      ],
      hosts: [
        { name: 'primary.two.test', address: '127.0.0.2' },
        { name: 'backup.two.test', address: '127.0.0.3' },
        { name: 'bare.test', address: '127.0.0.4' },
      ],
      nullMx: ['nomail.test'],
    });
  });
  afterAll(() => dns.stop());

  it('lists MX hosts in preference order with their addresses', async () => {
    const hosts = await new MxResolver([dns.server]).resolve('two.test');
    expect(hosts).toEqual([
      { name: 'primary.two.test', preference: 10, addresses: ['127.0.0.2'] },
      { name: 'backup.two.test', preference: 20, addresses: ['127.0.0.3'] },
    ]);
  });

  it('falls back to the address records of a domain without MX (implicit MX)', async () => {
    expect(await new MxResolver([dns.server]).resolve('bare.test')).toEqual([{ name: 'bare.test', preference: 0, addresses: ['127.0.0.4'] }]);
  });

  it('fails at once for a null MX (RFC 7505) and for a domain that does not exist', async () => {
    const nullMx = await failureOf(new MxResolver([dns.server]).resolve('nomail.test'));
    expect([nullMx.kind, nullMx.statusCode]).toEqual(['failed', '5.1.10']);
    expect(nullMx.reply).toMatch(/nomail\.test does not accept mail \(null MX/);
    const missing = await failureOf(new MxResolver([dns.server]).resolve('nowhere.test'));
    expect([missing.kind, missing.statusCode]).toEqual(['failed', '5.1.2']);
  });

});

it('defers when the DNS server does not answer (a temporary failure, not a bounce)', async () => {
  // A UDP socket that reads queries and never replies.
  const silent = dgram.createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  try {
    const failure = await failureOf(new MxResolver([`127.0.0.1:${silent.address().port}`], 200).resolve('example.test'));
    expect([failure.kind, failure.statusCode]).toEqual(['deferred', '4.4.3']);
    expect(failure.reply).toMatch(/will retry/);
  } finally {
    silent.close();
  }
});

it('fails at once for a domain that exists with neither MX nor address records (it was retried for days)', async () => {
  // dnsmasq answers NXDOMAIN for a name it holds no record of the asked type for, so the
  // empty answers (NODATA) of a real zone come from a resolver stand-in here.
  const nodata = () => Promise.reject(Object.assign(new Error('no data'), { code: dnsCodes.NODATA }));
  const resolver = new MxResolver([]);
  (resolver as unknown as { resolver: object }).resolver = { resolveMx: nodata, resolve4: nodata, resolve6: nodata };
  const none = await failureOf(resolver.resolve('textonly.test'));
  expect([none.kind, none.statusCode, none.reply]).toEqual(['failed', '5.1.2', 'textonly.test has no MX and no address records']);
});
