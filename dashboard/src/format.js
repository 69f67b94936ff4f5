// How numbers, times and levels read on screen. Every count is an estimate with bounds, and
// the page never shows one without the other.

const whole = new Intl.NumberFormat('en-GB', { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat('en-GB', { minimumFractionDigits: 1, maximumFractionDigits: 1 });

/** A count's point estimate, rounded. */
export function count(c) {
  return c ? whole.format(c.estimate) : '–';
}

/** A count's 95 % bounds as "lower–upper". */
export function bounds(c) {
  return c ? `${whole.format(c.lower)}–${whole.format(c.upper)}` : '';
}

/** A density in persons per m². */
export function density(c) {
  return c ? `${oneDecimal.format(c.estimate)} p/m²` : '–';
}

/** Seconds or minutes since `iso`, as "12 s ago". */
export function age(iso, now = Date.now()) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
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

/** The moment `iso` on the clock times are shown on, and the time zone to show it in. */
function shown(iso) {
  const t = Date.parse(iso);
  if (!replay) return { at: new Date(t), timeZone: undefined };
  const at = Date.parse(replay.shows) + (t - Date.parse(replay.real)) * replay.speed;
  return { at: new Date(at), timeZone: replay.time_zone };
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

/** The value of an <input type="datetime-local"> for `date` (local time, to the minute). */
export function inputTime(date) {
  const d = new Date(date);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Escapes text for HTML. */
export function esc(text) {
  return String(text ?? '').replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
