// The live view for event safety crews: every zone as a card (people and devices with
// bounds, density, level of service, trend, capacity, age of the data), the plan coloured
// by level, and the alert list. Stale zones and unacknowledged alerts are made impossible to
// miss; when the stream is down every number is greyed out and the banner says since when.

import { count, plural, bounds, density, densityBounds, age, clock, levelColour, esc, shownMinutes, perShownMinute } from './format.js';
import { drawPlan, paintZone } from './plan.js';
import { post } from './api.js';

const MAX_ALERTS = 200;

function alertKey(a) {
  return `${a.at}|${a.zone}|${a.kind}|${a.level ?? ''}`;
}

/** Acknowledged on the server (by any screen), not only here. */
function acknowledged(a) {
  return a.acknowledged_at != null;
}

const ARROWS = { rising: '↑', falling: '↓', steady: '→' };

/** A whole number with its sign ("+3", "-2", "0"). */
function signed(v) {
  const r = Math.round(v);
  return r > 0 ? `+${r}` : String(r);
}

export class LiveView {
  constructor(root, plan) {
    this.root = root;
    this.plan = plan;
    this.meta = new Map(plan.zones.map((z) => [z.id, z]));
    this.zones = new Map();
    this.alerts = [];
    this.cards = root.querySelector('#zones');
    this.alertList = root.querySelector('#alert-list');
    this.svg = root.querySelector('#plan');
    const drawn = drawPlan(this.svg, plan, (id) => this.focus(id));
    root.querySelector('#plan-box').hidden = drawn.length === 0;
    root.querySelector('#plan-attribution').textContent = plan.tiles?.attribution || '';
    for (const z of plan.zones) this.cards.append(this.emptyCard(z));
    root.querySelector('#ack-all').addEventListener('click', () => this.acknowledgeAll());
    setInterval(() => this.tick(), 1000);
  }

  emptyCard(z) {
    const card = document.createElement('article');
    card.className = 'zone waiting';
    card.dataset.zone = z.id;
    card.tabIndex = 0;
    card.innerHTML = `<header><h3>${esc(z.name)}</h3><span class="level-badge">waiting</span></header>
      <p class="headline"><span class="big">–</span> <span class="unit"></span> <span class="bounds"></span> <span class="basis" hidden></span></p>
      <p class="detail devices"></p>
      <p class="detail density"></p>
      <p class="detail flow" hidden></p>
      <p class="detail gate" hidden></p>
      <p class="detail forecast" hidden></p>
      <div class="capacity" hidden><div class="bar"><span></span></div><span class="capacity-text"></span></div>
      <p class="stale-flag" hidden></p>
      <footer><span class="age">no data yet</span></footer>`;
    return card;
  }

  card(id) {
    return this.cards.querySelector(`[data-zone="${CSS.escape(id)}"]`);
  }

  snapshot(zones) {
    for (const z of zones) this.zone(z);
  }

  /**
   * Cards in the order a crew needs them: the highest level of service first; within a
   * level, the zones that will be full soonest (a sure net inflow within the hour), then the
   * fullest (share of capacity, else density, else people); zones without data last.
   */
  order() {
    const rank = (card) => {
      const z = this.zones.get(card.dataset.zone);
      if (!z || z.stale) return [-2, Infinity, 0];
      const full = z.flow?.minutes_to_capacity ?? Infinity;
      const fullness = z.capacity_used ?? z.density?.estimate ?? z.people?.estimate ?? 0;
      return [z.level?.index ?? -1, full, fullness];
    };
    const cards = [...this.cards.children];
    const sorted = [...cards].sort((a, b) => {
      const [la, fa, na] = rank(a);
      const [lb, fb, nb] = rank(b);
      return lb - la || (fa === fb ? 0 : fa < fb ? -1 : 1) || nb - na;
    });
    if (sorted.some((c, i) => c !== cards[i])) this.cards.append(...sorted);
  }

  zone(z) {
    this.zones.set(z.id, z);
    const card = this.card(z.id);
    const meta = this.meta.get(z.id);
    if (!card || !meta) return;
    const levels = meta.levels.length;
    const colour = z.stale ? levelColour(null) : levelColour(z.level?.index, levels);
    const headline = z.people ?? z.total_devices;
    card.classList.remove('waiting');
    card.classList.toggle('stale', z.stale);
    card.dataset.level = z.level?.index ?? '';
    card.dataset.lastData = z.last_data ?? '';
    card.style.setProperty('--level', colour);
    const level = card.querySelector('.level-badge');
    level.textContent = z.stale ? 'no data' : z.level?.name ?? 'uncalibrated';
    level.style.background = colour;
    card.querySelector('.big').textContent = count(headline);
    // Without a calibration the headline is addresses: a phone randomizing its address is
    // many of them (a lab read ten per person), so calling them devices overstates a crowd.
    card.querySelector('.unit').textContent = z.people ? 'people' : plural(headline, 'address', 'addresses');
    card.querySelector('.bounds').textContent = `(${bounds(headline)})`;
    const basis = card.querySelector('.basis');
    basis.hidden = !z.people_basis;
    if (z.people_basis) {
      const b = z.people_basis;
      const pct = Math.round(b.error * 100);
      // Under 19 head counts the error is the largest residual seen, not a 95 % bound.
      const floor = b.calibrated && b.error_is_floor ? ' or more' : '';
      basis.textContent = b.calibrated ? `calibrated ±${pct} %${floor}` : `uncalibrated: ±${pct} %`;
      basis.classList.toggle('guess', !b.calibrated);
      basis.title = Object.entries(b.kinds)
        .map(([k, c]) => `${k}: ${c.factor} persons per device above a floor of ${Math.round(c.floor)} (${c.floor_source.replace('_', ' ')})`)
        .join('; ') + (b.calibrated ? '' : '. The factor is a guess: calibrate the zone with head counts to narrow the interval.')
        + (floor ? '. Fitted on fewer than 19 head counts: the error is the largest seen, not a 95 % bound; add counts and calibrate again.' : '');
    }
    // Spans and rates on the header's clock: a replay at 10x shows ten of its minutes a real one.
    const mins = (m) => Math.round(shownMinutes(m));
    const perMin = (c) => c && { ...c, estimate: perShownMinute(c.estimate), lower: perShownMinute(c.lower), upper: perShownMinute(c.upper) };
    const trend = z.trend
      ? ` · <span class="trend ${z.trend.direction}" title="change over ${mins(z.trend.minutes)} min">${ARROWS[z.trend.direction] ?? ''} ${z.trend.change >= 0 ? '+' : ''}${Math.round(z.trend.change)} over the last ${mins(z.trend.minutes)} min</span>`
      : '';
    const physical = z.devices?.wifi_derandomized;
    const wifiDevices = physical
      ? ` · <b><abbr title="physical Wi-Fi devices: one phone's random addresses grouped by its capability elements; a lower bound where many phones of one model are heard (docs/counting-devices.md)">${count(physical)}</abbr></b> ${plural(physical, 'Wi-Fi device', 'Wi-Fi devices')}`
      : '';
    card.querySelector('.devices').innerHTML =
      `<b>${count(z.total_devices)}</b> ${plural(z.total_devices, 'address', 'addresses')} (${bounds(z.total_devices)})${wifiDevices} in ${mins(z.window_min)} min${trend}`;
    card.querySelector('.density').textContent = z.density
      ? `density ${density(z.density)} (${densityBounds(z.density)}) on ${Math.round(z.area_m2).toLocaleString('en-GB')} m²`
      : 'density: no calibration for this zone';
    const flow = card.querySelector('.flow');
    flow.hidden = !z.flow;
    if (z.flow) {
      const f = z.flow;
      // An unreliable figure (too few stable devices, or a salt change in the lookback) is
      // not shown as a number: a crew would read any number as one.
      const n = (o) => (o == null || o.unreliable ? '—' : count(perMin(o)));
      const rate = f.net_people_per_min == null ? null : perShownMinute(f.net_people_per_min);
      // With its interval: a rate without one reads as sure.
      const span = f.net_lower == null ? '' : ` (${signed(perShownMinute(f.net_lower))} to ${signed(perShownMinute(f.net_upper))})`;
      const net = rate == null ? '' : ` · net ${signed(rate)}/min${span}`;
      const full = f.minutes_to_capacity == null
        ? ''
        : f.minutes_to_capacity === 0 ? ' · <b>at capacity</b>' : ` · full in ~${mins(f.minutes_to_capacity)} min`;
      flow.innerHTML = `<span title="persons arriving in ${esc(clock(f.minute))}, sampled on ${Math.round(f.sample_devices)} ${esc(f.kind)} devices with stable addresses present; leaving = arriving minus the net rate of the last minutes; — while too few are heard or just after a salt change">in ${n(f.inflow)} · out ${n(f.outflow)} persons a minute</span>${net}${full}`;
    }
    const gate = card.querySelector('.gate');
    gate.hidden = !z.gate;
    if (z.gate) {
      const g = z.gate;
      const t = perMin(g.throughput);
      const few = g.unreliable ? '<abbr title="fewer than ten devices passed in the minute: not precise">≈</abbr>' : '';
      gate.innerHTML = `passage ${g.width_m} m: ${few}<b>${t.estimate.toFixed(0)}</b> persons/m/min (${t.lower.toFixed(0)}–${t.upper.toFixed(0)}), ${esc(g.level_name)}`
        + (g.stop_and_go ? ' · <b class="warn">stop-and-go: density rising while throughput falls</b>' : '');
      gate.dataset.level = g.level;
    }
    const ahead = card.querySelector('.forecast');
    // Without one yet, say when there will be one rather than nothing.
    ahead.hidden = !z.forecast && !z.people;
    if (!z.forecast && z.people) {
      ahead.textContent = `forecast: once ${mins(this.plan.forecast_after_min)} min of this zone's people are stored`;
      ahead.title = 'The forecast sizes its interval on its own past errors, which need this much history.';
    }
    if (z.forecast) {
      const f = z.forecast;
      ahead.textContent = `in ${mins(f.minutes_ahead)} min: ~${count(f)} people (${bounds(f)}), forecast`;
      ahead.title = 'Damped-trend smoothing of the zone\'s last 90 minutes; the range holds 95 % of its past errors at this horizon.';
    }
    const cap = card.querySelector('.capacity');
    cap.hidden = z.capacity_used == null;
    if (z.capacity_used != null) {
      const pct = Math.round(z.capacity_used * 100);
      cap.querySelector('.bar span').style.width = `${Math.min(100, pct)}%`;
      cap.querySelector('.bar span').style.background = colour;
      cap.querySelector('.capacity-text').textContent = `${pct} % of ${z.capacity.toLocaleString('en-GB')} capacity`;
    }
    const flag = card.querySelector('.stale-flag');
    flag.hidden = !z.stale;
    const silent = z.last_data ? `every sensor silent since ${clock(z.last_data)}` : 'nothing received from its sensors yet';
    flag.textContent = z.stale ? `NO DATA: ${silent}` : '';
    // The plan says what its number counts too: some zones may show people, others addresses.
    const label = `${count(headline)} ${z.people ? 'people' : 'addr.'}`;
    paintZone(this.svg, z.id, colour, z.stale ? 'no data' : label, z.stale);
    this.updateAge(card, z);
    this.order();
  }

  updateAge(card, z) {
    card.querySelector('.age').textContent = z.last_data
      ? `data ${age(z.last_data)} · at ${clock(z.last_data)}`
      : 'no data received yet';
  }

  tick() {
    for (const [id, z] of this.zones) {
      const card = this.card(id);
      if (card) this.updateAge(card, z);
    }
  }

  focus(id) {
    const card = this.card(id);
    if (!card) return;
    card.scrollIntoView({ behavior: 'smooth', block: 'center' });
    card.focus({ preventScroll: true });
  }

  /** Alerts loaded from the API, newest first. */
  loadAlerts(alerts) {
    this.alerts = alerts.slice(0, MAX_ALERTS);
    this.renderAlerts();
  }

  /** A new alert, or an alert again (acknowledged on some screen). */
  alert(a) {
    const at = this.alerts.findIndex((x) => alertKey(x) === alertKey(a));
    if (at >= 0) {
      this.alerts[at] = a;
    } else {
      this.alerts.unshift(a);
      this.alerts.length = Math.min(this.alerts.length, MAX_ALERTS);
    }
    this.renderAlerts();
  }

  /** Acknowledges on the server, for every screen; the answer is the alert, acknowledged. */
  async acknowledge(a) {
    try {
      this.alert(await post('/api/v1/alerts/acknowledge', { at: a.at, zone: a.zone, kind: a.kind, level: a.level ?? null }));
    } catch (e) {
      // Acknowledged meanwhile elsewhere (404): the stream brings it; otherwise say why.
      if (e.status !== 404) window.alert(`Not acknowledged: ${e.message}`);
    }
  }

  async acknowledgeAll() {
    for (const a of this.alerts.filter((x) => !acknowledged(x))) await this.acknowledge(a);
  }

  renderAlerts() {
    const open = this.alerts.filter((a) => !acknowledged(a));
    const counter = document.querySelector('#alert-count');
    counter.textContent = open.length ? `${open.length} new alert${open.length > 1 ? 's' : ''}` : '';
    counter.hidden = open.length === 0;
    this.root.querySelector('#ack-all').disabled = open.length === 0;
    // A zone is marked while its newest alert asks for attention (a level raised, sensors
    // silent, a gate stopping and going) and is not acknowledged; a clear or a recovery ends it.
    const newest = new Map();
    for (const a of this.alerts) if (!newest.has(a.zone)) newest.set(a.zone, a);
    const alerting = new Set([...newest.values()]
      .filter((a) => ['level', 'stale', 'stop_and_go'].includes(a.kind) && !acknowledged(a))
      .map((a) => a.zone));
    for (const card of this.cards.children) card.classList.toggle('alerting', alerting.has(card.dataset.zone));
    if (this.alerts.length === 0) {
      this.alertList.innerHTML = '<li class="none">No alerts in the last 24 hours.</li>';
      return;
    }
    this.alertList.replaceChildren(...this.alerts.map((a) => this.alertItem(a)));
  }

  alertItem(a) {
    const acked = acknowledged(a);
    const li = document.createElement('li');
    li.className = `alert kind-${a.kind}${acked ? ' acknowledged' : ''}`;
    li.dataset.zone = a.zone;
    li.dataset.kind = a.kind;
    const name = this.meta.get(a.zone)?.name ?? a.zone;
    const threshold = a.threshold != null
      ? `<span class="threshold">threshold ${a.threshold} p/m², measured ${a.value?.toFixed(2) ?? '?'} p/m²</span>`
      : '';
    li.innerHTML = `<time datetime="${esc(a.at)}">${esc(clock(a.at))}</time>
      <b class="alert-zone">${esc(name)}</b> <span class="alert-kind">${esc(a.kind)}</span>
      <p>${esc(a.message)}</p>${threshold}`;
    if (!acked) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'ack';
      button.textContent = 'Acknowledge';
      button.addEventListener('click', () => this.acknowledge(a));
      li.append(button);
    } else {
      li.insertAdjacentHTML('beforeend', `<span class="acked">✓ acknowledged by ${esc(a.acknowledged_by ?? '?')} at ${esc(clock(a.acknowledged_at))}</span>`);
    }
    return li;
  }
}
