/**
 * The development relay (`npm start`) has no config file of its own making the user write one:
 * it writes its configuration to .mailfleet/relay.yaml, and the commands that read a relay's
 * config (`records`, `suppressions`) use that file when given no --config, and say so.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../relay/config.js';
import { devSetup } from '../relay/dev.js';
import { CLI } from './support/process.js';

function mailfleet(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
  });
}

describe('the development relay\'s config file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-devconfig-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const withDev = path.join(dir, 'with-dev');
  const empty = path.join(dir, 'empty');
  fs.mkdirSync(withDev);
  fs.mkdirSync(empty);

  it('is written on start as .mailfleet/relay.yaml and loads back, through the relay\'s own loader, to the same configuration', async () => {
    const dev = await devSetup(path.join(withDev, '.mailfleet'));
    expect(dev.configFile).toBe(path.join(withDev, '.mailfleet', 'relay.yaml'));
    expect(loadConfigFile(dev.configFile)).toEqual(dev.config);
    // Paths stay relative to the file: a copy elsewhere of the whole directory still loads.
    expect(fs.readFileSync(dev.configFile, 'utf8')).not.toContain(withDev);
  });

  it('mailfleet records and mailfleet suppressions read it without --config, and say which file they read', async () => {
    const records = await mailfleet(['records'], withDev);
    expect(records.code, records.stderr).toBe(0);
    expect(records.stderr).toContain('mailfleet records: reading .mailfleet/relay.yaml (the development relay\'s config, written by npm start)');
    expect(records.stdout).toMatch(/^ {2}dev-rsa\._domainkey\.example\.test +TXT/m);
    const list = await mailfleet(['suppressions', 'list'], withDev);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stderr).toContain('mailfleet suppressions: reading .mailfleet/relay.yaml');
    expect(list.stdout).toContain('no suppressed recipients');
  });

  it('where there is neither --config nor a development relay, both commands exit 2 with MF_CONFIG_REQUIRED and what to pass', async () => {
    for (const args of [['records'], ['suppressions', 'list']]) {
      const r = await mailfleet(args, empty);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`MF_CONFIG_REQUIRED: mailfleet ${args[0]} needs a relay config: no --config given, and there is no .mailfleet/relay.yaml here`);
      expect(r.stderr).toMatch(/hint: give --config FILE/);
      expect(r.stderr, 'no stack trace').not.toMatch(/^\s+at /m);
    }
  });
});
