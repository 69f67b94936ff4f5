// The history view for traffic planners: a zoomable series chart of several zones (uPlot),
// distinct visitors over the chosen range, and the origin-destination matrix between two
// windows with unreliable cells marked. Series and flows download as CSV.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { get, download, saveBlob } from './api.js';
import { count, bounds, apiTime, inputTime, fromInput, shownMs, realMs, shownTimeZone, dateTime, esc } from './format.js';

const LINE_COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#ff7f0e'];

export class HistoryView {
  constructor(root, plan, role) {
    this.root = root;
    this.role = role;
    this.plan = plan;
    this.names = new Map(plan.zones.map((z) => [z.id, z.name]));
    this.chart = null;
    this.flows = null;
    const picks = root.querySelector('#zone-picks');
    plan.zones.forEach((z, i) => {
      const label = document.createElement('label');
      label.innerHTML = `<input type="checkbox" name="zone" value="${esc(z.id)}"${i < 3 ? ' checked' : ''}> ${esc(z.name)}`;
      picks.append(label);
    });
    if (shownTimeZone()) {
      const note = root.querySelector('#replay-note');
      note.hidden = false;
      note.textContent = `Times here are on the replay clock of the header (${shownTimeZone()}); the API and CSV downloads use the real UTC times the data were stored at.`;
    }
    // The last two hours on the clock times are shown on (a replay's runs faster).
    const now = Date.now();
    root.querySelector('#from').value = inputTime(realMs(shownMs(now) - 2 * 3600_000));
    root.querySelector('#to').value = inputTime(now + 60_000);
    root.querySelector('#history-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.load();
    });
    root.querySelector('#series-csv').addEventListener('click', () => this.seriesCsv());
    root.querySelector('#flows-csv').addEventListener('click', () => this.flowsCsv());
    root.querySelector('#measure').addEventListener('change', () => this.series && this.draw());
    window.addEventListener('resize', () => this.chart?.setSize(this.size()));    if (role === 'viewer') {
      // Asking would only be refused: say what is needed instead.
      for (const b of root.querySelectorAll('#load, #series-csv, #flows-csv')) b.disabled = true;
      this.showError(new Error('History needs the planner role; this is a viewer token. Use "Token" to enter a planner token.'));
    }
  }

  /** What the form asks for, checked before anything is requested. */
  query() {
    const zones = [...this.root.querySelectorAll('input[name=zone]:checked')].map((i) => i.value);
    const from = this.root.querySelector('#from').value;
    const to = this.root.querySelector('#to').value;
    if (zones.length === 0) throw new Error('Pick at least one zone.');
    if (!from || !to) throw new Error('Give a start and an end.');
    if (fromInput(from) >= fromInput(to)) throw new Error('The start must be before the end.');
    return {
      zones,
      step: this.root.querySelector('#step').value,
      from: apiTime(fromInput(from)),
      to: apiTime(fromInput(to)),
    };
  }

  showError(e) {
    const box = this.root.querySelector('#history-error');
    box.hidden = !e;
    box.textContent = e ? e.message : '';
  }

  async load() {
    this.showError(null);
    const status = this.root.querySelector('#history-status');
    let q;
    try {
      q = this.query();
    } catch (e) {
      this.showError(e);
      return;
    }
    status.textContent = 'loading…';
    try {
      const [series, distinct] = await Promise.all([
        get('/api/v1/series', { zones: q.zones.join(','), step: q.step, from: q.from, to: q.to }),
        Promise.all(q.zones.map((zone) => get('/api/v1/distinct', { zone, from: q.from, to: q.to }))),
      ]);
      this.series = series;
      this.forecasts = await this.loadForecasts(q);
      this.draw();
      this.renderDistinct(distinct);
      if (q.zones.length >= 2) await this.loadFlows(q);
      else {
        this.flows = null;
        this.root.querySelector('#flows').innerHTML = '<caption>Pick two or more zones for flows.</caption>';
      }
      this.showNotes(series, distinct);
      const points = series.zones.reduce((n, z) => n + z.points.length, 0);
      status.textContent = `${points} points loaded`;
    } catch (e) {
      status.textContent = '';
      this.showError(e);
    }
  }

  /**
   * The live forecasts (people 15 minutes ahead) of the chosen zones, when the range reaches
   * the present at minute steps: drawn dashed after the series. Empty otherwise.
   */
  async loadForecasts(q) {
    const reachesNow = Date.parse(q.to) >= Date.now() - 5 * 60_000;
    if (q.step !== 'minute' || !reachesNow) return new Map();
    try {
      const zones = await get('/api/v1/zones');
      return new Map(zones.filter((z) => z.forecast).map((z) => {
        const base = Math.floor(Date.parse(z.updated_at) / 60_000) * 60 - 60;
        return [z.id, { t: base + z.forecast.minutes_ahead * 60, ...z.forecast }];
      }));
    } catch {
      return new Map();
    }
  }

  size() {
    const box = this.root.querySelector('#chart');
    return { width: Math.max(320, box.clientWidth), height: Math.max(240, Math.min(420, window.innerHeight * 0.45)) };
  }

  draw() {
    const measure = this.root.querySelector('#measure').value;
    const zones = this.series.zones;
    // The range's ends are points too (without values), so that the axis spans what was asked
    // for even when only a few buckets hold data.
    const ends = [Date.parse(this.series.from) / 1000, Date.parse(this.series.to) / 1000];
    const forecasts = measure === 'people' ? this.forecasts ?? new Map() : new Map();
    const ahead = [...forecasts.values()].map((f) => f.t);
    const times = [...new Set([...ends, ...ahead, ...zones.flatMap((z) => z.points.map((p) => Date.parse(p.t) / 1000))])].sort((a, b) => a - b);
    const index = new Map(times.map((t, i) => [t, i]));
    // Each zone is two series: its complete buckets as a solid line, and the buckets still
    // filling (joined to the last complete one) dashed, so a count that has not finished
    // growing does not read as a falling crowd.
    // The x axis counts on the clock of the header (a replay's runs faster: its ticks are
    // of its own minutes and hours, not of the real seconds between them).
    const data = [times.map((t) => shownMs(t * 1000) / 1000)];
    let filling = 0;
    for (const z of zones) {
      const [done, growing] = [new Array(times.length).fill(null), new Array(times.length).fill(null)];
      let lastDone = null;
      for (const p of z.points) {
        // No people where a zone is uncalibrated: a gap, never its devices under the people label.
        const c = measure === 'people' ? p.people : p.total;
        if (!c) continue;
        const i = index.get(Date.parse(p.t) / 1000);
        const y = Math.round(c.estimate);
        if (p.partial) {
          growing[i] = y;
          filling += 1;
          if (lastDone !== null) growing[lastDone] = done[lastDone];
        } else {
          done[i] = y;
          lastDone = i;
        }
      }
      // The forecast continues the dashed line from the last point.
      const f = forecasts.get(z.zone);
      if (f) {
        const last = growing.findLastIndex((v) => v !== null);
        const from = last >= 0 ? last : lastDone;
        if (from !== null && from >= 0) growing[from] = growing[from] ?? done[from];
        growing[index.get(f.t)] = Math.round(f.estimate);
        filling += 1;
      }
      data.push(done, growing);
    }
    const unit = measure === 'people' ? 'people (estimated)' : 'distinct addresses';
    const opts = {
      ...this.size(),
      title: `${unit} per ${this.series.step}`,
      scales: { x: { time: true } },
      // In the time zone of the header's clock: a replay's (the demo's simulated day), else local.
      tzDate: (ts) => {
        const tz = shownTimeZone();
        return tz ? uPlot.tzDate(new Date(ts * 1000), tz) : new Date(ts * 1000);
      },
      axes: [{}, { label: unit, size: 70 }],
      series: [
        { label: 'time' },
        ...zones.flatMap((z, i) => {
          const stroke = LINE_COLOURS[i % LINE_COLOURS.length];
          return [
            { label: z.name, stroke, width: 2, spanGaps: false },
            { label: `${z.name} (still filling, forecast)`, class: 'filling', stroke, width: 2, dash: [6, 5], spanGaps: true },
          ];
        }),
      ],
      cursor: { drag: { x: true, y: false } },
      // Hiding a zone in the legend hides its dashed part too (that has no legend entry).
      hooks: {
        setSeries: [(u, i, o) => {
          if (i && i % 2 === 1 && o && 'show' in o) u.setSeries(i + 1, { show: o.show }, false);
        }],
      },
    };
    this.chart?.destroy();
    const box = this.root.querySelector('#chart');
    box.replaceChildren();
    this.chart = new uPlot(opts, data, box);
    box.dataset.points = String(zones.reduce((n, z) => n + z.points.length, 0));
    const note = this.root.querySelector('#filling-note');
    note.hidden = filling === 0;
    note.textContent = forecasts.size
      ? `Dashed: the current ${this.series.step} still filling, then the forecast 15 minutes ahead (people).`
      : `Dashed: the current ${this.series.step} is still filling; its numbers will grow.`;
  }

  /**
   * The answers' notes, once each: a range widened to whole buckets, zones or windows with
   * nothing stored (their zeros mean nothing known, not nobody), a range still filling.
   */
  showNotes(series, distinct) {
    const notes = new Set(series.notes ?? []);
    for (const d of distinct) {
      for (const n of d.notes ?? []) if (!notes.has(n)) notes.add(`${this.names.get(d.zone) ?? d.zone}: ${n}`);
    }
    for (const n of this.flows?.notes ?? []) notes.add(`Flows: ${n}`);
    // The API's times are the real ones data were stored at: shown on the page's clock.
    const onClock = (n) => n.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z/g, (iso) => dateTime(iso));
    const list = this.root.querySelector('#history-notes');
    list.hidden = notes.size === 0;
    list.innerHTML = [...notes].map((n) => `<li>${esc(onClock(n))}</li>`).join('');
  }

  renderDistinct(rows) {
    const table = this.root.querySelector('#distinct');
    table.innerHTML = `<thead><tr><th>Zone</th><th><abbr title="addresses of all kinds heard over the range: a phone that randomizes its address is many">Distinct addresses</abbr></th><th>95 % bounds</th><th><abbr title="people present on average over the range (not distinct visitors), with the interval of sketch and calibration error">People present</abbr></th></tr></thead>
      <tbody>${rows.map((d) => `<tr data-zone="${esc(d.zone)}"><td>${esc(this.names.get(d.zone) ?? d.zone)}</td>
        <td class="num">${count(d.total)}${d.total.upper_bound ? ' <abbr title="spans several salt epochs: an upper bound">≤</abbr>' : ''}</td>
        <td class="num">${bounds(d.total)}</td><td class="num">${d.people ? `${count(d.people)} (${bounds(d.people)})` : '–'}</td></tr>`).join('')}</tbody>`;
  }

  async loadFlows(q) {
    const f1 = this.root.querySelector('#from1').value;
    const t1 = this.root.querySelector('#to1').value;
    const f2 = this.root.querySelector('#from2').value;
    const t2 = this.root.querySelector('#to2').value;
    let windows;
    if (f1 && t1 && f2 && t2) {
      windows = { from1: apiTime(fromInput(f1)), to1: apiTime(fromInput(t1)), from2: apiTime(fromInput(f2)), to2: apiTime(fromInput(t2)) };
    } else {
      // Default: the first and second half of the range.
      const mid = new Date((Date.parse(q.from) + Date.parse(q.to)) / 2);
      windows = { from1: q.from, to1: apiTime(mid), from2: apiTime(mid), to2: q.to };
      this.root.querySelector('#from1').value = inputTime(q.from);
      this.root.querySelector('#to1').value = inputTime(mid);
      this.root.querySelector('#from2').value = inputTime(mid);
      this.root.querySelector('#to2').value = inputTime(q.to);
    }
    this.flows = await get('/api/v1/flows', { zones: q.zones.slice(0, 30).join(','), ...windows });
    this.renderFlows();
  }

  renderFlows() {
    const f = this.flows;
    const name = (id) => esc(this.names.get(id) ?? id);
    const cell = (o) => {
      const marks = `${o.unreliable ? '≈' : ''}${o.crosses_epochs ? '‡' : ''}`;
      const cls = [o.unreliable && 'unreliable', o.crosses_epochs && 'crosses'].filter(Boolean).join(' ');
      return `<td class="num ${cls}" title="95 % bounds ${Math.round(o.lower)}–${Math.round(o.upper)}${o.unreliable ? ': unreliable, the bounds are wider than the value' : ''}">${marks}${Math.round(o.estimate)}</td>`;
    };
    this.root.querySelector('#flows').innerHTML = `<caption>Devices in the row's zone in window 1 and in the column's zone in window 2.
        ≈ unreliable (bounds wider than the value), ‡ windows in different salt epochs.</caption>
      <thead><tr><th>from \\ to</th>${f.zones.map((z) => `<th>${name(z)}</th>`).join('')}</tr></thead>
      <tbody>${f.zones.map((z, i) => `<tr><th>${name(z)}</th>${f.matrix[i].map(cell).join('')}</tr>`).join('')}</tbody>`;
  }

  async seriesCsv() {
    this.showError(null);
    try {
      const q = this.query();
      await download('/api/v1/series', { zones: q.zones.join(','), step: q.step, from: q.from, to: q.to, format: 'csv' },
        `crowdflow-series-${q.step}-${q.from.slice(0, 16).replace(':', '')}.csv`);
    } catch (e) {
      this.showError(e);
    }
  }

  flowsCsv() {
    if (!this.flows) {
      this.showError(new Error('Load flows first (pick two or more zones and press Load).'));
      return;
    }
    const f = this.flows;
    const lines = ['origin,destination,estimate,lower,upper,unreliable,crosses_epochs'];
    f.zones.forEach((o, i) => f.zones.forEach((d, j) => {
      const c = f.matrix[i][j];
      lines.push([o, d, c.estimate.toFixed(1), c.lower.toFixed(1), c.upper.toFixed(1), c.unreliable, c.crosses_epochs].join(','));
    }));
    saveBlob(new Blob([`${lines.join('\n')}\n`], { type: 'text/csv' }), 'crowdflow-flows.csv');
  }
}
