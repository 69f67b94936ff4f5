// The clock times are shown on: a replay's (the demo's simulated day) maps real moments to
// its own, in its time zone, and the history view's inputs map back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useReplayClock, inputTime, fromInput, clock, shownMs, realMs, plural, density, densityBounds } from '../src/format.js';

test('a replay clock maps real moments to its day and the inputs back, across a DST change', () => {
  // Going live at 12:00 UTC real shows 14:00 in Amsterdam (12:00 UTC) on 27 April, 60x.
  useReplayClock({ real: '2026-12-01T12:00:00Z', shows: '2026-04-27T12:00:00Z', speed: 60, time_zone: 'Europe/Amsterdam' });
  const real = Date.parse('2026-12-01T12:01:00Z');
  assert.equal(new Date(shownMs(real)).toISOString(), '2026-04-27T13:00:00.000Z');
  assert.equal(realMs(shownMs(real)), real);
  assert.equal(inputTime(real), '2026-04-27T15:00', 'wall time in Amsterdam (UTC+2 in April)');
  assert.equal(clock('2026-12-01T12:01:00Z'), '15:00:00');
  assert.equal(fromInput('2026-04-27T15:00').getTime(), real);
  // A winter day of the replay (UTC+1) and the night of the change to summer time.
  useReplayClock({ real: '2026-12-01T12:00:00Z', shows: '2026-03-28T12:00:00Z', speed: 1, time_zone: 'Europe/Amsterdam' });
  for (const wall of ['2026-03-28T13:00', '2026-03-29T01:30', '2026-03-29T03:30', '2026-03-29T12:00']) {
    assert.equal(inputTime(fromInput(wall)), wall, wall);
  }
  assert.equal(fromInput('2026-03-28T13:00').toISOString(), '2026-12-01T12:00:00.000Z');
});

test('a count of one reads singular, others plural', () => {
  const c = (estimate) => ({ estimate, lower: estimate, upper: estimate });
  assert.equal(plural(c(1), 'address', 'addresses'), 'address');
  assert.equal(plural(c(1.2), 'address', 'addresses'), 'address');
  assert.equal(plural(c(0), 'address', 'addresses'), 'addresses');
  assert.equal(plural(c(2), 'address', 'addresses'), 'addresses');
  assert.equal(plural(null, 'address', 'addresses'), 'addresses');
});

test('a density never reads outside its own bounds', () => {
  const low = { estimate: 0.018, lower: 0.011, upper: 0.026 };
  assert.equal(density(low), '0.02 p/m²');
  assert.equal(densityBounds(low), '0.01–0.03');
  const crowded = { estimate: 5.85, lower: 4.62, upper: 7.1 };
  assert.equal(density(crowded), '5.9 p/m²', 'as the alert\'s 5.85 reads');
  assert.equal(densityBounds(crowded), '4.6–7.1');
  assert.equal(density(null), '–');
});
