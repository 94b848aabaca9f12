/**
 * The container image, built by `docker build` in a real Docker engine and run as a user runs
 * it: read-only root, uid 1000, the spool on a named volume, config and secrets mounted.
 * `npm run test:image` (not part of `npm test`: it needs root, dockerd and debootstrap, and
 * takes minutes; CI runs it through test/image/ci.sh).
 *
 * The engine is our own dockerd (test/image/engine.sh; started here unless it answers, and then
 * stopped again); nothing can be pulled, so the images the Dockerfile builds FROM are made
 * here the way the official ones are (test/image/base-image.sh). Containers use the host's
 * network (loopback only) or none.
 *
 * One file (over 400 lines) because every case runs the one image its first case builds, which
 * vitest shares only within a file; the helpers are in docker.ts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createTransport } from 'nodemailer';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { canConnect, freePort } from '../peers/ports.js';
import { startScriptedSink, type ScriptedSink } from '../peers/scripted-sink.js';
import { M365_RESOURCE, secretClient, startOAuth2Server } from '../peers/oauth2-server.js';
import { selfSignedCert, testCa, type TestCa } from '../peers/tls.js';
import { startWebhookReceiver } from '../peers/webhook-receiver.js';
import { startXOAuth2Smarthost } from '../peers/xoauth2-smarthost.js';
import { waitUntil } from '../peers/wait.js';
import { imageEntrypoint, imageEnv, imageNodeFlags } from '../support/dockerfile.js';
import { describeImage, docker, removeOnExit, report, ROOT, script, seconds, shown } from './docker.js';

const IMAGE = 'mailfleet:image-test';
const SPOOL = '/var/spool/mailfleet';
const CONFIG_DIR = '/etc/mailfleet';

/** `relay --config` in the image on a read-only root, as a pod runs it (the config dir mounted read-only, the spool a tmpfs), once it listens on `port`. */
async function runRelayContainer(name: string, etc: string, port: number): Promise<void> {
  removeOnExit('container', name);
  const started = await docker(['run', '-d', '--name', name, '--read-only', '--network', 'host', '--tmpfs', `${SPOOL}:uid=1000,gid=1000`, '-v', `${etc}:${CONFIG_DIR}:ro`, IMAGE, 'relay', '--config', `${CONFIG_DIR}/relay.yaml`]);
  expect(started.code, shown(started)).toBe(0);
  await waitUntil(
    async () => {
      if (await canConnect(port)) return true;
      const state = await docker(['inspect', '--format', '{{.State.Running}}', name]);
      if (state.stdout.trim() !== 'true') throw new Error(`the relay container exited:\n${shown(await docker(['logs', name]))}`);
      return false;
    },
    { timeoutMs: 30_000, what: 'the relay listening' },
  );
}

describeImage('the container image, built and run in a real Docker engine', (engineRunning) => {
  const suffix = crypto.randomBytes(4).toString('hex');
  const containers: string[] = [];
  const volumes: string[] = [];
  let buildBase = '';
  let startedEngine = false;

  beforeAll(async () => {
    if (!engineRunning) {
      const started = await script('engine.sh', ['start'], 90_000);
      expect(started.code, shown(started)).toBe(0);
      startedEngine = true;
    }
    const t0 = performance.now();
    const base = await script('base-image.sh', [], 15 * 60_000);
    expect(base.code, shown(base)).toBe(0);
    buildBase = base.stdout.trim().split('\n').pop()!;
    report(`base images ready in ${seconds(performance.now() - t0)} (${base.stderr.trim().split('\n').join('; ')})`);
  }, 16 * 60_000);

  afterAll(async () => {
    for (const name of containers) await docker(['rm', '-f', '-v', name]);
    for (const name of volumes) await docker(['volume', 'rm', '-f', name]);
    await docker(['image', 'rm', IMAGE]);
    if (startedEngine) await script('engine.sh', ['stop'], 60_000);
  }, 120_000);

  /** `docker run --rm` of the image with these docker options and arguments. */
  function runImage(options: string[], args: string[], input?: string) {
    return docker(['run', '--rm', ...(input === undefined ? [] : ['-i']), ...options, IMAGE, ...args], { input, timeoutMs: 120_000 });
  }

  it('builds with docker build --network host', async () => {
    const t0 = performance.now();
    const built = await docker(['build', '--network', 'host', '--build-arg', `BUILD_IMAGE=${buildBase}`, '-t', IMAGE, ROOT], { timeoutMs: 20 * 60_000 });
    expect(built.code, shown(built)).toBe(0);
    report(`docker build took ${seconds(performance.now() - t0)}`);
    const inspected = await docker(['image', 'inspect', IMAGE, '--format', '{{json .Config}}']);
    const config = JSON.parse(inspected.stdout) as { User: string; Volumes: Record<string, unknown>; Entrypoint: string[]; Env: string[] };
    expect(config.User).toBe('1000:1000');
    expect(Object.keys(config.Volumes)).toEqual([SPOOL]);
    // What the benchmarks read from the Dockerfile to run the relay as the image does.
    expect(config.Entrypoint).toEqual(imageEntrypoint());
    expect(config.Entrypoint).toEqual(['node', ...imageNodeFlags(), '/app/dist/cli/main.js']);
    expect(config.Env).toEqual(expect.arrayContaining(['MALLOC_ARENA_MAX=1', ...Object.entries(imageEnv()).map(([k, v]) => `${k}=${v}`)]));
  }, 20 * 60_000);

  it('runs every subcommand on a read-only root as uid 1000, and holds no development tools', async () => {
    const ro = ['--read-only', '--network', 'none'];
    const help = await runImage(ro, ['--help']);
    expect(help.code, shown(help)).toBe(0);
    const commands = [...help.stdout.matchAll(/^ {2}([a-z-]+) /gm)].map((m) => m[1]!);
    expect(commands).toEqual(['relay', 'operator', 'send', 'hash-password', 'records', 'suppressions', 'render']);
    for (const command of commands) {
      const r = await runImage(ro, [command, '--help']);
      expect(r.code, `${command} --help: ${shown(r)}`).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`usage: (echo -n PASSWORD \\| )?mailfleet ${command}`));
    }
    const manifest = fs.readFileSync(path.join(ROOT, 'examples/mailrelay.yaml'), 'utf8');
    const rendered = await runImage(ro, ['render', '-f', '-'], manifest);
    expect(rendered.code, shown(rendered)).toBe(0);
    expect(rendered.stdout).toMatch(/^kind: Deployment$/m);

    const who = await runImage([...ro, '--entrypoint', 'node'], ['-e', 'console.log(process.getuid(), process.getgid(), process.version)']);
    expect(who.stdout.trim()).toMatch(/^1000 1000 v24\./);
    const contents = await runImage([...ro, '--entrypoint', 'sh'], ['-c', 'ls /app/node_modules; echo ---; command -v npm npx || true']);
    const [modules, npm] = contents.stdout.split('---\n');
    for (const dev of ['vitest', 'typescript', 'eslint', 'testcontainers', 'kubernetes-models']) expect(modules!.split('\n'), dev).not.toContain(dev);
    // Only the node binary comes from the Node image: no npm in the final stage.
    expect(npm).toBe('');
  }, 180_000);

  it('relays over STARTTLS and AUTH to a smarthost, drains on docker stop, and delivers what it kept after a restart on the same volume', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-image-'));
    let ca: TestCa | undefined;
    let sink: ScriptedSink | undefined;
    try {
      // What a user mounts: the config, a certificate for the listener, a users file.
      ca = await testCa('mailfleet image test CA');
      const leaf = await ca.issue('127.0.0.1');
      const etc = path.join(dir, 'etc');
      fs.mkdirSync(path.join(etc, 'tls'), { recursive: true });
      fs.mkdirSync(path.join(etc, 'users'));
      fs.writeFileSync(path.join(etc, 'tls/tls.crt'), leaf.cert);
      fs.writeFileSync(path.join(etc, 'tls/tls.key'), leaf.key);
      const password = crypto.randomBytes(12).toString('hex');
      const hashed = await runImage(['--read-only', '--network', 'none'], ['hash-password', '--user', 'app'], password);
      expect(hashed.code, shown(hashed)).toBe(0);
      expect(hashed.stdout).toMatch(/^app:\$scrypt\$/);
      fs.writeFileSync(path.join(etc, 'users/users'), hashed.stdout);
      const submission = await freePort();
      const httpPort = await freePort();
      const sinkPort = await freePort();
      fs.writeFileSync(
        path.join(etc, 'relay.yaml'),
        [
          'hostname: relay.image.test',
          'spool:',
          `  dir: ${SPOOL}`,
          '  minFreeBytes: 10MiB',
          'listeners:',
          '  - name: submission',
          '    address: 127.0.0.1',
          `    port: ${submission}`,
          '    tls: starttls',
          '    auth: required',
          'tls:',
          `  certFile: ${CONFIG_DIR}/tls/tls.crt`,
          `  keyFile: ${CONFIG_DIR}/tls/tls.key`,
          'auth:',
          `  usersFile: ${CONFIG_DIR}/users/users`,
          'senderDomains:',
          '  - domain: example.test',
          'delivery:',
          '  route:',
          '    type: smarthost',
          '    host: 127.0.0.1',
          `    port: ${sinkPort}`,
          '    tls: none',
          'retry:',
          '  minBackoff: 1s',
          '  maxBackoff: 2s',
          'http:',
          '  address: 127.0.0.1',
          `  port: ${httpPort}`,
          '',
        ].join('\n'),
      );
      // Readable by the image's user, as a mounted Secret's files (0644) are.
      for (const d of ['', 'tls', 'users']) fs.chmodSync(path.join(etc, d), 0o755);
      for (const f of ['tls/tls.crt', 'tls/tls.key', 'users/users', 'relay.yaml']) fs.chmodSync(path.join(etc, f), 0o644);
      fs.chmodSync(dir, 0o755);

      const volume = `mailfleet-spool-${suffix}`;
      volumes.push(volume);
      removeOnExit('volume', volume);
      const runRelay = async (name: string) => {
        containers.push(name);
        removeOnExit('container', name);
        const started = await docker([
          'run', '-d', '--name', name, '--read-only', '--network', 'host',
          '-v', `${volume}:${SPOOL}`, '-v', `${etc}:${CONFIG_DIR}:ro`,
          IMAGE, 'relay', '--config', `${CONFIG_DIR}/relay.yaml`,
        ]);
        expect(started.code, shown(started)).toBe(0);
        await waitUntil(
          async () => {
            if (await canConnect(submission)) return true;
            const state = await docker(['inspect', '--format', '{{.State.Running}}', name]);
            if (state.stdout.trim() !== 'true') throw new Error(`the relay container exited:\n${(await logs(name)).join('\n')}`);
            return false;
          },
          { timeoutMs: 30_000, what: `the relay in ${name} listening on ${submission}` },
        );
      };
      const logs = async (name: string) => {
        const r = await docker(['logs', name]);
        return `${r.stdout}${r.stderr}`.split('\n').filter(Boolean);
      };
      const events = async (name: string, event: string) =>
        (await logs(name)).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === event);
      const stop = async (name: string) => {
        const t0 = performance.now();
        const stopped = await docker(['stop', name], { timeoutMs: 60_000 });
        expect(stopped.code, shown(stopped)).toBe(0);
        const state = await docker(['inspect', '--format', '{{.State.ExitCode}} {{.State.OOMKilled}}', name]);
        // 0: it drained and exited; 137 would be docker's SIGKILL after the stop timeout.
        expect(state.stdout.trim(), (await logs(name)).join('\n')).toBe('0 false');
        return performance.now() - t0;
      };
      const transport = createTransport({
        host: '127.0.0.1',
        port: submission,
        secure: false,
        requireTLS: true,
        auth: { user: 'app', pass: password },
        tls: { ca: ca.cert },
      });
      const send = (subject: string) =>
        transport.sendMail({ from: 'app@example.test', to: 'someone@dest.test', subject, text: `${subject}\n` });

      sink = await startScriptedSink({ port: sinkPort });
      const first = 'relay-' + suffix;
      await runRelay(first);

      // An application's client: STARTTLS verified against the mounted certificate, then AUTH.
      const accepted = await send('through the image');
      expect(accepted.response).toMatch(/^250 /);
      await sink.waitForMessages(1);
      expect(sink.messages[0]!.envelope).toEqual({ from: 'app@example.test', to: ['someone@dest.test'] });
      // The relay's trace header, with the TLS and AUTH it saw.
      expect(sink.messages[0]!.raw.toString()).toMatch(/^Received: from [^\r]*\r\n\tby relay\.image\.test \(mailfleet\) with ESMTPSA /m);
      const refused = await createTransport({ host: '127.0.0.1', port: submission, requireTLS: true, auth: { user: 'app', pass: 'wrong' }, tls: { ca: ca.cert } })
        .sendMail({ from: 'app@example.test', to: 'someone@dest.test', text: 'x' })
        .then(() => 'accepted', (err: { responseCode?: number }) => err.responseCode);
      expect(refused).toBe(535);

      // The smarthost goes away; the next message is accepted, tried, and kept.
      await sink.stop();
      const kept = await send('while the sink was down');
      expect(kept.response).toMatch(/^250 /);
      await waitUntil(async () => (await events(first, 'deferred')).length > 0, { timeoutMs: 30_000, what: 'the relay deferring the message' });
      const firstStop = await stop(first);
      report(`docker stop of a relay holding a deferred message: ${seconds(firstStop)}`);
      expect((await events(first, 'stopped'))[0]).toMatchObject({ leftInSpool: 1 });
      const onVolume = await docker(['run', '--rm', '--network', 'none', '-v', `${volume}:/spool:ro`, '--entrypoint', 'grep', IMAGE, '-rl', 'Subject: while the sink was down', '/spool']);
      expect(onVolume.code, shown(onVolume)).toBe(0);
      report(`kept on the volume across the stop: ${onVolume.stdout.trim().split('\n').join(', ')}`);

      // A new container on the same volume, the smarthost back: the kept message goes out, once.
      sink = await startScriptedSink({ port: sinkPort });
      const second = 'relay-again-' + suffix;
      await runRelay(second);
      await sink.waitForMessages(1, 30_000);
      expect(sink.messages.map((m) => /^Subject: (.*)$/m.exec(m.raw.toString())?.[1]?.trim())).toEqual(['while the sink was down']);
      await waitUntil(async () => (await events(second, 'delivered')).length === 1, { what: 'the delivery in the log' });
      await stop(second);
      expect((await events(second, 'stopped'))[0]).toMatchObject({ leftInSpool: 0 });
      expect(sink.messages).toHaveLength(1);
      transport.close();
    } finally {
      await sink?.stop();
      ca?.cleanup();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);

  it('delivers through a Microsoft 365-like smarthost with OAuth 2.0: a token from a real authorization server, XOAUTH2 over verified STARTTLS', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-image-oauth2-'));
    const cert = await selfSignedCert('127.0.0.1');
    const secret = crypto.randomBytes(16).toString('hex');
    const server = await startOAuth2Server({ clients: [secretClient(secret)], tokenTtlSeconds: 3600 });
    const smarthost = await startXOAuth2Smarthost({ jwks: server.jwks, issuer: server.issuer, audience: M365_RESOURCE, mailbox: 'relay@contoso.test', key: cert.key, cert: cert.cert });
    const name = 'relay-oauth2-' + suffix;
    try {
      const etc = path.join(dir, 'etc');
      fs.mkdirSync(path.join(etc, 'smarthost-oauth2'), { recursive: true });
      fs.writeFileSync(path.join(etc, 'smarthost-oauth2/client-secret'), `${secret}\n`);
      fs.writeFileSync(path.join(etc, 'ca.crt'), cert.cert);
      const port = await freePort();
      const config = {
        hostname: 'relay.image.test',
        spool: { dir: SPOOL, minFreeBytes: '10MiB' },
        listeners: [{ name: 'in', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
        delivery: {
          route: { type: 'smarthost', host: '127.0.0.1', port: smarthost.port, tls: 'starttls', oauth2: { provider: 'microsoft', tenant: 'contoso.test', clientId: 'mailfleet-relay', clientSecretFile: `${CONFIG_DIR}/smarthost-oauth2/client-secret`, user: 'relay@contoso.test', tokenUrl: server.tokenUrl } },
          tlsPolicy: { caFile: `${CONFIG_DIR}/ca.crt` },
        },
        http: { address: '127.0.0.1', port: await freePort() },
      };
      fs.writeFileSync(path.join(etc, 'relay.yaml'), JSON.stringify(config));
      for (const d of [dir, etc, path.join(etc, 'smarthost-oauth2')]) fs.chmodSync(d, 0o755);
      for (const f of ['smarthost-oauth2/client-secret', 'ca.crt', 'relay.yaml']) fs.chmodSync(path.join(etc, f), 0o644);
      await runRelayContainer(name, etc, port);
      const sent = await createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true }).sendMail({ from: 'app@contoso.test', to: 'someone@dest.test', subject: 'oauth2 from the image', text: 'hi\n' });
      expect(sent.response).toMatch(/^250 /);
      await waitUntil(() => smarthost.delivered.length === 1, { timeoutMs: 30_000, what: 'the message at the smarthost' });
      expect(smarthost.delivered[0]!.user).toBe('relay@contoso.test');
      expect(server.tokenRequests()).toBe(1);
      const log = await docker(['logs', name]);
      expect(`${log.stdout}${log.stderr}`).not.toContain(secret);
    } finally {
      await docker(['rm', '-f', name]);
      await smarthost.close();
      await server.stop();
      cert.cleanup();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('sends events to a webhook, reads a bounce sent to its return path (postal-mime in the image), serves a one-click unsubscribe, and tracks a click (mailsplit, parse5, linkify-it in the image)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-image-events-'));
    const webhookKey = crypto.randomBytes(24).toString('hex');
    const receiver = await startWebhookReceiver({ keys: { k1: webhookKey } });
    const sink = await startScriptedSink();
    const name = 'relay-events-' + suffix;
    try {
      const etc = path.join(dir, 'etc');
      fs.mkdirSync(etc, { recursive: true });
      fs.writeFileSync(path.join(etc, 'webhook-key'), webhookKey);
      fs.writeFileSync(path.join(etc, 'return-path-key'), crypto.randomBytes(24).toString('hex'));
      fs.writeFileSync(path.join(etc, 'links-key'), crypto.randomBytes(24).toString('hex'));
      const [port, bouncesPort, linksPort] = [await freePort(), await freePort(), await freePort()];
      const config = {
        hostname: 'relay.image.test',
        spool: { dir: SPOOL, minFreeBytes: '10MiB' },
        listeners: [
          { name: 'in', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] },
          { name: 'bounces', address: '127.0.0.1', port: bouncesPort, tls: 'none', auth: 'none', role: 'bounces' },
        ],
        senderDomains: [{ domain: 'example.test', returnPath: 'bounces.example.test', unsubscribe: { url: `http://127.0.0.1:${linksPort}` }, tracking: { url: `http://127.0.0.1:${linksPort}` } }],
        bounces: { keyFile: `${CONFIG_DIR}/return-path-key` },
        links: { keyFile: `${CONFIG_DIR}/links-key`, port: linksPort },
        delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } },
        events: { webhooks: [{ name: 'app', url: receiver.url, signingKeys: [{ id: 'k1', secretFile: `${CONFIG_DIR}/webhook-key` }] }] },
        http: { address: '127.0.0.1', port: await freePort() },
      };
      fs.writeFileSync(path.join(etc, 'relay.yaml'), JSON.stringify(config));
      fs.chmodSync(dir, 0o755);
      fs.chmodSync(etc, 0o755);
      for (const f of ['webhook-key', 'return-path-key', 'links-key', 'relay.yaml']) fs.chmodSync(path.join(etc, f), 0o644);
      await runRelayContainer(name, etc, bouncesPort);
      const sent = await createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true }).sendMail({ from: 'app@example.test', to: 'gone@dest.test', subject: 'events from the image', text: 'hi https://shop.example.test/item\n', html: '<p>hi <a href="https://shop.example.test/item">item</a></p>', messageId: '<image-events@example.test>' });
      expect(sent.response).toMatch(/^250 /);
      await waitUntil(() => sink.messages.length === 1 && receiver.events.some((e) => e.type === 'delivered'), { timeoutMs: 30_000, what: 'the message at the sink and its events at the webhook' });
      const returnPath = sink.messages[0]!.envelope.from;
      expect(returnPath).toMatch(/^b\+[a-z0-9]+-[a-z2-7]{10}@bounces\.example\.test$/);
      const dsn = [
        'From: MAILER-DAEMON@mx.dest.test',
        `To: ${returnPath}`,
        'Subject: Undelivered Mail Returned to Sender',
        'MIME-Version: 1.0',
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
        '',
        '--b',
        'Content-Type: text/plain',
        '',
        'The mailbox does not exist.',
        '--b',
        'Content-Type: message/delivery-status',
        '',
        'Reporting-MTA: dns; mx.dest.test',
        '',
        'Final-Recipient: rfc822; gone@dest.test',
        'Action: failed',
        'Status: 5.1.1',
        'Diagnostic-Code: smtp; 550 5.1.1 no such user',
        '',
        '--b',
        'Content-Type: text/rfc822-headers',
        '',
        'From: app@example.test',
        'Message-ID: <image-events@example.test>',
        '',
        '--b--',
        '',
      ].join('\r\n');
      const bounced = await createTransport({ host: '127.0.0.1', port: bouncesPort, secure: false, ignoreTLS: true }).sendMail({ envelope: { from: '', to: returnPath }, raw: dsn });
      expect(bounced.response).toMatch(/^250 .*Report taken: 1 event/);
      await waitUntil(() => receiver.events.some((e) => e.type === 'bounced'), { timeoutMs: 30_000, what: 'the bounce at the webhook' });
      expect(receiver.events.find((e) => e.type === 'bounced')).toMatchObject({ recipient: 'gone@dest.test', messageId: '<image-events@example.test>', report: { kind: 'dsn' }, bounce: { type: 'permanent' } });
      // The link in the message, POSTed as a mail program does: the image serves it.
      const link = /List-Unsubscribe: <(http:[^>]+)>/.exec(sink.messages[0]!.raw.toString())?.[1];
      expect(link).toContain(`http://127.0.0.1:${linksPort}/u/`);
      const res = await fetch(link!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
      expect(res.status).toBe(200);
      await waitUntil(() => receiver.events.some((e) => e.type === 'unsubscribed'), { timeoutMs: 30_000, what: 'the unsubscribe at the webhook' });
      expect(receiver.events.find((e) => e.type === 'unsubscribed')).toMatchObject({ recipient: 'gone@dest.test', senderDomain: 'example.test', unsubscribe: { via: 'one_click' } });
      // The link in the HTML was rewritten in the image before signing; following it is a 307 to the shop.
      const click = /href=3D"(http:\/\/127\.0\.0\.1:\d+\/c\/[^"]+)"|href="(http:\/\/127\.0\.0\.1:\d+\/c\/[^"]+)"/.exec(sink.messages[0]!.raw.toString().replace(/=\r\n/g, ''));
      expect(click).not.toBeNull();
      const followed = await fetch((click![1] ?? click![2])!.replace(/=3D/g, '='), { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0' } });
      expect(followed.status).toBe(307);
      expect(followed.headers.get('location')).toBe('https://shop.example.test/item');
      await waitUntil(() => receiver.events.some((e) => e.type === 'clicked'), { timeoutMs: 30_000, what: 'the click at the webhook' });
      expect(receiver.refused).toEqual([]);
    } finally {
      await docker(['rm', '-f', name]);
      await receiver.stop();
      await sink.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('tells a newcomer who runs the relay without a config what to pass', async () => {
    // As typed, and as a cluster runs it (read-only root).
    for (const options of [['--network', 'none'], ['--read-only', '--network', 'none']]) {
      const r = await runImage(options, ['relay']);
      expect(r.code, shown(r)).toBe(2);
      expect(r.stderr).toMatch(/^MF_CONFIG_REQUIRED: no --config given/);
      expect(r.stderr).toMatch(/hint: run `mailfleet relay --config FILE`/);
      expect(r.stderr, 'no stack trace').not.toMatch(/^\s+at /m);
    }
  }, 120_000);

  it('says what is missing when the operator has no cluster', async () => {
    const r = await runImage(['--read-only', '--network', 'none'], ['operator']);
    expect(r.code, shown(r)).toBe(2);
    expect(r.stderr).toMatch(/^MF_NO_CLUSTER: no Kubernetes cluster to talk to: KUBECONFIG is not set/);
    expect(r.stderr).toMatch(/hint: .*service account/);
    expect(r.stderr, 'no stack trace').not.toMatch(/^\s+at /m);
  }, 60_000);

  it('reports its size', async () => {
    const size = async (image: string) => Number((await docker(['image', 'inspect', image, '--format', '{{.Size}}'])).stdout.trim());
    const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
    const [image, debian, node] = [await size(IMAGE), await size('debian:bookworm-slim'), await size('node:24-bookworm-slim')];
    report(`image ${mb(image)} (final stage on debian:bookworm-slim ${mb(debian)}; the build stage's node:24-bookworm-slim is ${mb(node)})`);
    // 374 MB when the final stage was node:24-bookworm-slim with declarations and source maps.
    expect(image).toBeLessThan(300e6);
  });
});
