/**
 * Debian's Chromium, headless, driven through the DevTools protocol by puppeteer-core (which
 * downloads no browser of its own): for what a person opens in a browser. Root runs it
 * without the sandbox (the sandbox needs an unprivileged user); a fresh profile per launch.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';
import { binary } from './availability.js';

export const CHROMIUM_BINARIES = ['chromium'];

export async function launchChromium(): Promise<Browser & { cleanup: () => Promise<void> }> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: binary('chromium'),
    headless: true,
    userDataDir: profile,
    args: [...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'],
  });
  return Object.assign(browser, {
    cleanup: async () => {
      await browser.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  });
}
