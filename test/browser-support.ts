// Debian's Chromium through playwright-core, never a downloaded browser: shared by the browser tests.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];

/** Chromium or a reason to skip: missing is a failure under CI=true, a loud skip elsewhere. */
export function chromiumOrSkip(t: TestContext): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.CI === 'true') assert.fail(`${CHROMIUM} is missing: under CI=true the browser suite must run (.ci/run installs it: apt-get install -y chromium)`);
  console.warn(`\n!!! browser suite SKIPPED: ${CHROMIUM} not found. Install it with: apt-get install -y chromium !!!\n`);
  t.skip(`browser suite: ${CHROMIUM} not installed`);
  return false;
}
