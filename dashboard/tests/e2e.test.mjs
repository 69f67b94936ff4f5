// The dashboard end to end, in a real headless Chromium against a running aggregator fed by
// the simulator (the demo command with a crowd that surges into a small square): numbers
// appear and change, an alert appears when the square crosses its thresholds, the history
// view loads a series and downloads a CSV, the page says so when the aggregator is gone, and
// it reconnects by itself when the aggregator is back.
// Screenshots of each view are saved under target/dashboard-e2e/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { ARTIFACTS, DEMO_BINARY, HERE, freePort, scratch, startAggregator, launch, openPage, waitFor, hashToken } from './harness.mjs';

/** The compressed page weight budget (without map tiles). */
const BUDGET_BYTES = 300 * 1024;

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

const number = (text) => Number(String(text).replace(/[^0-9.]/g, '')) || 0;

test('the live and history views against the demo fed by the simulator', async () => {
  const [http, mqtt] = [await freePort(), await freePort()];
  const base = `http://127.0.0.1:${http}`;
  const data = scratch('e2e');
  const demoArgs = ['--http', `127.0.0.1:${http}`, '--mqtt-port', String(mqtt),
    '--data', data.dir, '--scenario', join(HERE, 'data', 'surge.toml'), '--speed', '60', '--start', '12:00'];
  const demo = await startAggregator(demoArgs, base, DEMO_BINARY);
  try {
    // The morning is written and calibrated on first (the aggregator restarts with the fit).
    await waitFor(async () => demo.output().includes('Live numbers appear'), 120_000, 'the demo to go live');
    const { page, errors, bytes } = await openPage(browser);
    await page.goto(base);
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 20_000 });
    assert.equal(await page.title(), 'surge (simulated)');

    // Every zone has a card and an outline on the plan.
    assert.equal(await page.locator('#zones .zone').count(), 2);
    assert.equal(await page.locator('#plan path.zone-shape').count(), 2);

    // Record how long after a window's end the page shows its numbers: when a card's window
    // end changes (a zone event that only re-sends it, at a minute's turn, is no new window).
    await page.evaluate(() => {
      window.lags = [];
      new MutationObserver((changes) => {
        for (const c of changes) {
          const at = c.target.dataset.lastData;
          if (c.attributeName === 'data-last-data' && at && at !== c.oldValue) window.lags.push(Date.now() - Date.parse(at));
        }
      }).observe(document.querySelector('#zones'), { subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ['data-last-data'] });
    });

    // Numbers appear, then change.
    const card = page.locator('#zones .zone[data-zone="plein"]');
    const first = await waitFor(async () => number(await card.locator('.big').textContent()), 60_000, 'numbers on the small square');
    const changed = await waitFor(async () => {
      const now = number(await card.locator('.big').textContent());
      return now !== first && now;
    }, 120_000, 'the small square to change');
    console.log(`small square: ${first} people, then ${changed}`);
    assert.match(await card.locator('.bounds').textContent(), /\(\d[\d,]*–\d[\d,]*\)/);
    // The people figure says how sure it is: calibrated with its error, or a guess.
    assert.match(await card.locator('.basis').textContent(), /^(calibrated ±\d+ %( or more)?|uncalibrated: ±\d+ %)$/);
    // The count under it is addresses, not devices: a randomizing phone is many of them.
    assert.match(await card.locator('.devices').textContent(), /^[\d,]+ address(es)? \(\d[\d,]*–\d[\d,]*\) in \d+ min/);
    // The plan's label says what its number counts, as the card does.
    assert.match(await page.locator('#plan text[data-zone="plein"] .plan-count').textContent(), /^[\d,]+ (people|addr\.)$/);

    // The square crosses its thresholds: an alert appears, unacknowledged, and the zone is marked.
    const alert = page.locator('#alert-list li.alert[data-zone="plein"][data-kind="level"]').first();
    await alert.waitFor({ timeout: 120_000 });
    assert.match(await alert.textContent(), /Small square/);
    assert.match(await alert.locator('.threshold').textContent(), /threshold \d(\.\d+)? p\/m²/);
    assert.ok(await page.locator('#alert-count').isVisible(), 'the header counts new alerts');
    // Times are shown on the replay clock of the header (simulated, 60x), not the real one:
    // the alert's real moment (its datetime) read on the plan's replay clock, within the
    // simulated day so far.
    const replay = await page.evaluate(async () => (await (await fetch('/api/v1/plan')).json()).replay_clock);
    const alertAt = await alert.locator('time').textContent();
    const alertReal = Date.parse(await alert.locator('time').getAttribute('datetime'));
    const alertShown = Date.parse(replay.shows) + (alertReal - Date.parse(replay.real)) * replay.speed;
    const expected = new Date(alertShown).toLocaleTimeString('en-GB', { timeZone: replay.time_zone });
    const replayNow = await page.locator('#replay-clock').textContent();
    assert.equal(alertAt, expected, `alert at ${alertAt}, header ${replayNow}: one clock on the screen`);
    assert.ok(alertShown >= Date.parse(replay.shows) && alertShown <= Date.parse(replay.shows) + (Date.now() - Date.parse(replay.real) + 5_000) * replay.speed,
      `alert at ${alertAt} lies between the replay's start and its now (${replayNow})`);
    await waitFor(async () => (await card.getAttribute('class')).includes('alerting'), 5_000, 'the card to be marked');
    const level = Number(await card.getAttribute('data-level'));
    assert.ok(level >= 1, `the square is above free (level ${level})`);
    const fill = await page.locator('#plan path[data-zone="plein"]').evaluate((p) => getComputedStyle(p).fill);
    const levelColour = await card.locator('.level-badge').evaluate((b) => getComputedStyle(b).backgroundColor);
    assert.equal(fill, levelColour, 'the plan shows the square in its level colour');
    assert.notEqual(fill, 'rgb(154, 165, 177)', 'not the colour of a zone without data');
    await assertPlanReadable(page, ['plein', 'gracht']);
    await page.screenshot({ path: join(ARTIFACTS, 'live.png'), fullPage: true });

    // The most urgent zone is the first card, on a desktop and on a phone (where it must be
    // on the first screen, not under quiet zones).
    const firstCard = () => page.locator('#zones .zone').first().getAttribute('data-zone');
    assert.equal(await firstCard(), 'plein', 'the crowded square leads at desktop width');
    const desktop = page.viewportSize();
    await page.setViewportSize({ width: 390, height: 844 });
    assert.equal(await firstCard(), 'plein', 'and at phone width');
    const top = await page.locator('#zones .zone').first().evaluate((c) => c.getBoundingClientRect().top + window.scrollY);
    console.log(`phone: the first card starts ${Math.round(top)} px down`);
    assert.ok(top < 844 / 2, `on a phone the zone cards come first, on the first screen (${Math.round(top)} px)`);
    await page.screenshot({ path: join(ARTIFACTS, 'live-phone.png'), fullPage: true });
    if (desktop) await page.setViewportSize(desktop);

    // Acknowledged alerts look different and stop being counted.
    await page.locator('#ack-all').click();
    await waitFor(async () => !(await page.locator('#alert-count').isVisible()), 5_000, 'the alert count to clear');
    assert.ok((await alert.getAttribute('class')).includes('acknowledged'));

    // A median of a few windows: under load one window in a few takes about 6.5 s (seen
    // before and after batching changes), and a fast run had seen only two, both slow.
    await waitFor(async () => (await page.evaluate(() => window.lags.length)) >= 5, 90_000, 'five windows on the page');
    const lags = await page.evaluate(() => window.lags);
    lags.sort((a, b) => a - b);
    const median = lags[Math.floor(lags.length / 2)];
    console.log(`window end to page: ${lags.length} updates, median ${(median / 1000).toFixed(1)} s, max ${(lags.at(-1) / 1000).toFixed(1)} s`);
        assert.ok(median < 5_000, `the page shows new data within 5 s of its window's end (median ${median} ms)`);

    // History: a series of both zones by minute since the demo started, distinct visitors and flows.
    await page.locator('#nav-history').click();
    await page.waitForSelector('#history-view:not([hidden])');
    for (const id of ['plein', 'gracht']) await page.locator(`input[name=zone][value="${id}"]`).check();
    // On the replay clock, as the live view: the scenario's day, not today's.
    assert.match(await page.locator('#from').inputValue(), /^2026-04-27T/);
    assert.ok(await page.locator('#replay-note').isVisible());
    await page.selectOption('#step', 'minute');
    await page.locator('#load').click();
    await waitFor(async () => Number(await page.locator('#chart').getAttribute('data-points')), 20_000, 'the series');
    assert.equal(await page.locator('#chart canvas').count(), 1, 'uPlot drew the chart');
    // The demo is still counting: its current minute is partial, drawn dashed and said so.
    assert.match(await page.locator('#filling-note').textContent(), /current minute is still filling/);
    assert.ok(await page.locator('#filling-note').isVisible());
    // The answers' notes are on the page, not only in the JSON: the range has not ended.
    const notes = await page.locator('#history-notes').textContent();
    assert.match(notes, /has not ended/);
    // On the replay clock too: the scenario's day, not the real one.
    assert.match(notes, /27\/04\/2026/);
    assert.doesNotMatch(notes, /\d{4}-\d\d-\d\dT/);
    assert.equal(await page.locator('#chart .u-legend tr.u-series:visible').count(), 3, 'time and one legend entry per zone');
    assert.equal(await page.locator('#distinct tbody tr').count(), 2);
    assert.ok(number(await page.locator('#distinct tr[data-zone="plein"] td.num').first().textContent()) > 0);
    assert.equal(await page.locator('#flows tbody td').count(), 4, 'a 2 x 2 origin-destination matrix');
    await page.screenshot({ path: join(ARTIFACTS, 'history.png'), fullPage: true });

    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#series-csv').click()]);
    const csvPath = join(ARTIFACTS, download.suggestedFilename());
    await download.saveAs(csvPath);
    const csv = readFileSync(csvPath, 'utf8').trim().split('\n');
    console.log(`downloaded ${download.suggestedFilename()}: ${csv.length - 1} rows`);
    assert.match(csv[0], /zone/);
    assert.ok(csv.some((line) => line.includes('plein')), 'the CSV has the square');

    // Nothing went wrong on the page, and it is light.
    assert.deepEqual(errors, []);
    const own = [...bytes].filter(([url]) => url === `${base}/` || url.startsWith(`${base}/assets/`));
    const weight = own.reduce((sum, [, n]) => sum + n, 0);
    console.log(`page weight: ${(weight / 1024).toFixed(1)} KB compressed in ${own.length} files`);
    assert.ok(own.length >= 3 && weight > 0 && weight < BUDGET_BYTES, `page weight ${weight} B`);

    // The aggregator goes away: the page says it is not live any more.
    await page.locator('#nav-live').click();
    await demo.stop('SIGKILL');
    await page.waitForSelector('#connection[data-state="disconnected"]', { timeout: 20_000 });
    assert.ok(await page.locator('#banner').isVisible());
    assert.match(await page.locator('#banner').textContent(), /NOT live/);
    assert.ok(await page.evaluate(() => document.body.classList.contains('disconnected')));
    await page.screenshot({ path: join(ARTIFACTS, 'disconnected.png'), fullPage: true });

    // It comes back (same address, same data): the page reconnects by itself.
    const back = await startAggregator(demoArgs, base, DEMO_BINARY);
    try {
      const gone = Date.now();
      await page.waitForSelector('#connection[data-state="live"]', { timeout: 45_000 });
      console.log(`live again ${((Date.now() - gone) / 1000).toFixed(1)} s after the aggregator answered`);
      assert.ok(await page.locator('#banner').isHidden(), 'the banner is gone');
      assert.ok(!(await page.evaluate(() => document.body.classList.contains('disconnected'))));
    } finally {
      await back.stop('SIGKILL');
    }
  } finally {
    await demo.stop('SIGKILL');
    data.cleanup();
  }
});

/** A tile server answering every tile with one grey PNG pixel; counts what it served. */
async function tileServer() {
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNoAAAAggCBd81ytgAAAABJRU5ErkJggg==', 'base64');
  const served = [];
  const server = createServer((req, res) => {
    served.push(req.url);
    res.writeHead(200, { 'content-type': 'image/png' }).end(png);
  });
  const port = await freePort();
  await new Promise((ok) => server.listen(port, '127.0.0.1', ok));
  return { port, served, close: () => new Promise((ok) => server.close(ok)) };
}

/**
 * Every zone of `ids` shows on the plan at least 14 px across (tiny zones get a marker), and
 * no label covers another.
 */
async function assertPlanReadable(page, ids) {
  for (const id of ids) {
    const size = await page.locator(`#plan .zone-shape[data-zone="${id}"]`)
      .evaluateAll((shapes) => Math.max(...shapes.map((s) => s.getBoundingClientRect().width)));
    assert.ok(size >= 14, `${id} is ${size.toFixed(0)} px wide on the plan`);
  }
  const boxes = await page.locator('#plan text').evaluateAll((texts) => texts.map((t) => {
    const b = t.getBoundingClientRect();
    return [b.left, b.top, b.right, b.bottom];
  }));
  for (const [i, a] of boxes.entries()) {
    for (const b of boxes.slice(i + 1)) {
      assert.ok(a[2] <= b[0] || b[2] <= a[0] || a[3] <= b[1] || b[3] <= a[1], `labels overlap: ${a} and ${b}`);
    }
  }
}

test('a viewer token opens the live view but not history; a phone gets one column; tiles', async () => {
  const [http, mqtt] = [await freePort(), await freePort()];
  const tiles = await tileServer();
  const base = `http://127.0.0.1:${http}`;
  const data = scratch('e2e-token');
  const [viewer, planner] = ['viewer-token-for-the-e2e-test', 'planner-token-for-the-e2e-test'];
  const config = join(data.dir, 'aggregator.toml');
  writeFileSync(config, `[http]
listen = "127.0.0.1:${http}"
[broker]
mode = "embedded"
listen = "127.0.0.1:${mqtt}"
[storage]
kind = "sqlite"
path = "${join(data.dir, 'crowdflow.db')}"
[dashboard]
title = "Neude control room"
tile_url = "http://127.0.0.1:${tiles.port}/{z}/{x}/{y}.png"
tile_attribution = "test tiles"
[[zones]]
id = "neude"
name = "Neude"
area_m2 = 3000.0
capacity = 6000
calibration = { ble = 1.3 }
polygon = { type = "Polygon", coordinates = [[[5.1187, 52.0935], [5.1205, 52.0935], [5.1205, 52.0925], [5.1187, 52.0925], [5.1187, 52.0935]]] }
[[zones]]
id = "kiosk"
name = "Kiosk"
area_m2 = 60.0
polygon = { type = "Polygon", coordinates = [[[5.1206, 52.0931], [5.12072, 52.0931], [5.12072, 52.09305], [5.1206, 52.09305], [5.1206, 52.0931]]] }
[[zones]]
id = "station"
name = "Station"
area_m2 = 8000.0
polygon = { type = "Polygon", coordinates = [[[5.1090, 52.0895], [5.1105, 52.0895], [5.1105, 52.0889], [5.1090, 52.0889], [5.1090, 52.0895]]] }
[[sensors]]
id = "neude-1"
zone = "neude"
[[tokens]]
name = "control room"
role = "viewer"
blake3 = "${hashToken(viewer)}"
[[tokens]]
name = "planning"
role = "planner"
blake3 = "${hashToken(planner)}"
`);
  const aggregator = await startAggregator(['run', '--config', config], base);
  try {
    const { page, errors } = await openPage(browser, { width: 390, height: 844 });
    await page.goto(base);
    // Without a token the page asks for one, naming the role.
    await page.waitForSelector('#token-dialog[open]', { timeout: 10_000 });
    assert.match(await page.locator('#token-reason').textContent(), /viewer token/);
    await page.locator('#token-input').fill(viewer);
    await page.locator('#token-form button[type=submit]').click();
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 20_000 });
    assert.equal(await page.locator('#zones .zone').count(), 3);
    // A kiosk a few metres across beside the square, a station a kilometre off: each readable.
    await assertPlanReadable(page, ['neude', 'kiosk', 'station']);
    assert.equal(await page.title(), 'Neude control room');
    // The configured tiles lie under the plan, allowed by the page's security policy.
    await waitFor(() => tiles.served.length > 0, 10_000, 'tiles to be requested');
    assert.ok(await page.locator('#plan image').count() >= 1);
    assert.match(tiles.served[0], /^\/\d+\/\d+\/\d+\.png$/);
    assert.equal(await page.locator('#plan-attribution').textContent(), 'test tiles');
    // No sensor has sent anything: the zone says so instead of showing numbers.
    const card = page.locator('#zones .zone[data-zone="neude"]');
    await waitFor(async () => (await card.getAttribute('class')).includes('stale'), 10_000, 'the silent zone to be stale');
    assert.match(await card.locator('.stale-flag').textContent(), /NO DATA/);
    // One column on a phone.
    const box = await card.boundingBox();
    assert.ok(box.width > 300, `a card fills the phone's width (${box.width} px)`);
    await page.screenshot({ path: join(ARTIFACTS, 'phone-viewer.png'), fullPage: true });
    // History needs the planner role, and the page says so.
    await page.locator('#nav-history').click();
    await page.waitForSelector('#history-error:not([hidden])', { timeout: 10_000 });
    assert.match(await page.locator('#history-error').textContent(), /planner role/);
    assert.ok(await page.locator('#load').isDisabled());
    // Nothing was refused: the page asked what the token may do before asking for data.
    assert.deepEqual(errors, []);
  } finally {
    await aggregator.stop();
    await tiles.close();
    data.cleanup();
  }
});
