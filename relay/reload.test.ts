import { describe, expect, it } from 'vitest';
import { parseConfig } from './config.js';
import { watchedFiles } from './reload.js';

describe('watchedFiles', () => {
  it('is the config file and every Secret it names: TLS pair, users, CA bundle, smarthost credentials, DKIM keys', () => {
    const config = parseConfig(
      {
        hostname: 'r.test',
        spool: { dir: 'spool' },
        listeners: [{ name: 'sub', port: 0 }],
        tls: { certFile: 'tls/crt', keyFile: 'tls/key' },
        auth: { usersFile: 'users' },
        senderDomains: [{ domain: 'example.test', dkim: { keys: [{ selector: 's1', privateKeyFile: 'dkim/s1.key' }] } }],
        delivery: { route: { type: 'smarthost', host: 'smtp.example.net', usernameFile: 'up/username', passwordFile: 'up/password' }, tlsPolicy: { caFile: 'ca.pem' } },
      },
      '/etc/mf',
      'test',
    );
    expect(watchedFiles('/etc/mf/relay.yaml', config)).toEqual(['/etc/mf/relay.yaml', '/etc/mf/tls/crt', '/etc/mf/tls/key', '/etc/mf/users', '/etc/mf/ca.pem', '/etc/mf/up/username', '/etc/mf/up/password', '/etc/mf/dkim/s1.key']);
  });
});
