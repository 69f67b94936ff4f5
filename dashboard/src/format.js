// How numbers, times and levels read on screen. Every count is an estimate with bounds, and
// the page never shows one without the other.

const whole = new Intl.NumberFormat('en-GB', { maximumFractionDigits: 0 });

/** A count's point estimate, rounded. */
export function count(c) {
  return c ? whole.format(c.estimate) : '–';
}

/** `one` when a count reads 1, else `many` ("1 address", "2 addresses"). */
export function plural(c, one, many) {
  return c && whole.format(c.estimate) === '1' ? one : many;
}

/** A count's 95 % bounds as "lower–upper". */
export function bounds(c) {
  return c ? `${whole.format(c.lower)}–${whole.format(c.upper)}` : '';
}

/** A density in persons per m². */
export function density(c) {
  return c ? `${densityFormat(c).format(c.estimate)} p/m²` : '–';
}

/** A density's 95 % bounds, as "0.01–0.03", with the decimals of {@link density}. */
export function densityBounds(c) {
  const f = densityFormat(c);
  return `${f.format(c.lower)}–${f.format(c.upper)}`;
}

const decimals = [1, 2].map((d) => new Intl.NumberFormat('en-GB', { minimumFractionDigits: d, maximumFractionDigits: d }));

/**
 * One decimal, or two where one would show the bounds equal: the estimate gets the same, so
 * that it never reads outside its own interval ("0.0 (0.01–0.03)").
 */
function densityFormat(c) {
  return decimals[0].format(c.lower) === decimals[0].format(c.upper) ? decimals[1] : decimals[0];
}

/** Seconds or minutes since `iso` on the clock times are shown on, as "12 s ago". */
export function age(iso, now = Date.now()) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round(shownMinutes((now - Date.parse(iso)) / 1000)));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

// A replayed event (the demo's simulated day, a drill): times are shown on its clock, the
// one in the header, so an alert at 14:07 on the header's clock reads 14:07, not the real time.
let replay = null;

/** Shows every time on the replay clock `c` (`plan.replay_clock`: real, shows, speed, time_zone). */
export function useReplayClock(c) {
  replay = c;
}

/**
 * A span of real time as a span of the clock times are shown on, in the same unit: a
 * replay at 10x shows ten of its minutes for each real one (the API counts real minutes).
 */
export function shownMinutes(span) {
  return span * (replay?.speed ?? 1);
}

/** A rate per real minute as a rate per minute of the clock times are shown on. */
export function perShownMinute(rate) {
  return rate / (replay?.speed ?? 1);
}

/** The real moment `ms` (epoch milliseconds) on the clock times are shown on. */
export function shownMs(ms) {
  return replay ? Date.parse(replay.shows) + (ms - Date.parse(replay.real)) * replay.speed : ms;
}

/** The real moment of `ms` on the shown clock: the inverse of `shownMs`. */
export function realMs(ms) {
  return replay ? Date.parse(replay.real) + (ms - Date.parse(replay.shows)) / replay.speed : ms;
}

/** The time zone times are shown in: the replay's, or the browser's (undefined). */
export function shownTimeZone() {
  return replay?.time_zone;
}

/** The moment `iso` on the clock times are shown on, and the time zone to show it in. */
function shown(iso) {
  return { at: new Date(shownMs(Date.parse(iso))), timeZone: shownTimeZone() };
}

/** The wall-clock fields of epoch `ms` in `timeZone` (undefined: the browser's), as numbers. */
function wall(ms, timeZone) {
  const format = new Intl.DateTimeFormat('en-GB', {
    timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  });
  return Object.fromEntries(format.formatToParts(new Date(ms)).filter((p) => p.type !== 'literal').map((p) => [p.type, Number(p.value)]));
}

/** A clock time (local, or the replay's), to the second. */
export function clock(iso) {
  if (!iso) return '–';
  const { at, timeZone } = shown(iso);
  return at.toLocaleTimeString('en-GB', { timeZone });
}

/** A date and time (local, or the replay's) to the minute. */
export function dateTime(iso) {
  const { at, timeZone } = shown(iso);
  return `${at.toLocaleDateString('en-GB', { timeZone })} ${at.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', timeZone })}`;
}

// Level-of-service colours from free to critical: distinguishable for the common forms of
// colour blindness, and each level also has its name written out.
const PALETTE = ['#1b9e77', '#e6ab02', '#e7711b', '#c0262d'];

/** The colour of level `index` out of `levels` levels. */
export function levelColour(index, levels) {
  if (index == null) return '#9aa5b1';
  if (levels <= 1) return PALETTE[0];
  const at = Math.round((index / (levels - 1)) * (PALETTE.length - 1));
  return PALETTE[Math.min(PALETTE.length - 1, Math.max(0, at))];
}

/** RFC 3339 in UTC on a whole minute, as the API wants it. */
export function apiTime(date) {
  const d = new Date(date);
  d.setUTCSeconds(0, 0);
  return d.toISOString().replace('.000Z', 'Z');
}

/**
 * The value of an <input type="datetime-local"> for the real moment `date`: on the clock
 * times are shown on (a replay's, in its time zone; else local), to the minute.
 */
export function inputTime(date) {
  const w = wall(shownMs(new Date(date).getTime()), shownTimeZone());
  const pad = (n) => String(n).padStart(2, '0');
  return `${w.year}-${pad(w.month)}-${pad(w.day)}T${pad(w.hour)}:${pad(w.minute)}`;
}

/**
 * The real moment (a Date) of an <input type="datetime-local"> value read on the clock
 * times are shown on: the inverse of `inputTime`.
 */
export function fromInput(value) {
  const timeZone = shownTimeZone();
  if (!timeZone) return new Date(realMs(new Date(value).getTime()));
  const [y, mo, d, h, mi] = value.split(/[-T:]/).map(Number);
  const target = Date.UTC(y, mo - 1, d, h, mi);
  // The zone's offset at the moment sought, found by two guesses (the second corrects the
  // first across a daylight-saving change).
  let ms = target;
  for (let i = 0; i < 2; i += 1) {
    const w = wall(ms, timeZone);
    ms += target - Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  }
  return new Date(realMs(ms));
}

/** Escapes text for HTML. */
export function esc(text) {
  return String(text ?? '').replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
