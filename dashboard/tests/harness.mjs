// What the end-to-end tests share: the aggregator binary on free ports, Debian's Chromium
// driven by playwright-core, and a page that records console errors and bytes transferred.

import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, '../..');
const TARGET = process.env.CARGO_TARGET_DIR || join(ROOT, 'target');
export const BINARY = process.env.CROWDFLOW_AGGREGATOR || join(TARGET, 'debug', 'crowdflow-aggregator');
/** The demo: the aggregator with simulated sensors (`crowdflow-demo`). */
export const DEMO_BINARY = process.env.CROWDFLOW_DEMO || join(TARGET, 'debug', 'crowdflow-demo');
/** Screenshots and downloads land here (CI keeps them as artifacts). */
export const ARTIFACTS = process.env.CROWDFLOW_ARTIFACTS || join(TARGET, 'dashboard-e2e');
mkdirSync(ARTIFACTS, { recursive: true });

// Ports come from below Linux's ephemeral range (32768 up), as in the Rust tests
// (tests/src/lib.rs): a port the kernel picks for `listen(0)` can be taken by any outgoing
// connection before the aggregator binds it. Each is handed out once per process.
const PORT_BASE = 20768;
const PORT_SPAN = 12000;
let nextPort = (process.pid * 7919) % PORT_SPAN;

function canListen(port) {
  return new Promise((ok) => {
    const server = createServer();
    server.once('error', () => ok(false));
    server.listen(port, '127.0.0.1', () => server.close(() => ok(true)));
  });
}

/** A TCP port nothing listens on, not handed out before by this process. */
export async function freePort() {
  for (let tries = 0; tries < PORT_SPAN; tries += 1) {
    const port = PORT_BASE + (nextPort % PORT_SPAN);
    nextPort += 1;
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port in ${PORT_BASE}..${PORT_BASE + PORT_SPAN}`);
}

/** A scratch directory removed by `cleanup()`. */
export function scratch(name) {
  const dir = mkdtempSync(join(tmpdir(), `crowdflow-${name}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `crowdflow-aggregator hash-token` for `token`. */
export function hashToken(token) {
  return execFileSync(BINARY, ['hash-token'], { input: token }).toString().trim();
}

/** Starts `binary` (the aggregator unless named) with `args`; resolves once
 * `http://base/api/v1/health` answers. */
export async function startAggregator(args, base, binary = BINARY) {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((ok) => child.once('exit', (code, signal) => ok({ code, signal })));
  const running = {
    child,
    output: () => output,
    exited,
    stop: async (signal = 'SIGINT') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`the aggregator exited (${child.exitCode}):\n${output}`);
      return (await fetch(`${base}/api/v1/health`).catch(() => null))?.ok;
    }, 60_000, 'the aggregator to answer /api/v1/health');
  } catch (e) {
    await running.stop('SIGKILL');
    throw e;
  }
  return running;
}

/** Polls `check` every 250 ms until it returns something truthy. */
export async function waitFor(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 250));
  }
}

/** Debian's Chromium, headless, with no background traffic (the network here is closed). */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CROWDFLOW_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/** A page that records console errors, uncaught exceptions and compressed bytes received. */
export async function openPage(browser, viewport = { width: 1600, height: 1000 }) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  const bytes = new Map();
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  page.on('response', async (r) => {
    const length = Number(r.headers()['content-length'] || 0);
    bytes.set(r.url(), length);
  });
  return { context, page, errors, bytes };
}
