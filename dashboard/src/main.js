// The dashboard's entry: loads the plan, asks for a token when the API wants one, switches
// between the live view (#live) and the history view (#history), and wires the live stream.

import './style.css';
import { get, token, setToken } from './api.js';
import { LiveStream } from './stream.js';
import { LiveView } from './live.js';
import { HistoryView } from './history.js';
import { clock, useReplayClock } from './format.js';

const $ = (selector) => document.querySelector(selector);

function askForToken(reason) {
  const dialog = $('#token-dialog');
  $('#token-reason').textContent = reason || '';
  $('#token-input').value = token();
  if (!dialog.open) dialog.showModal();
}

function setupTokenDialog() {
  $('#token-button').addEventListener('click', () => askForToken('The token is kept in this browser only.'));
  $('#token-form').addEventListener('submit', () => {
    setToken($('#token-input').value);
    location.reload();
  });
  $('#token-clear').addEventListener('click', () => {
    setToken('');
    location.reload();
  });
}

function showConnection(state, since) {
  const box = $('#connection');
  box.dataset.state = state;
  document.body.classList.toggle('disconnected', state === 'disconnected');
  const banner = $('#banner');
  if (state === 'live') {
    box.textContent = '● live';
    banner.hidden = true;
  } else if (state === 'connecting') {
    box.textContent = 'connecting…';
  } else {
    box.textContent = `✕ disconnected since ${clock(since.toISOString())}`;
    banner.hidden = false;
    banner.textContent = `Connection to the aggregator lost at ${clock(since.toISOString())}. The numbers below are NOT live; reconnecting…`;
  }
}

function route(views) {
  const name = location.hash === '#history' ? 'history' : 'live';
  $('#live-view').hidden = name !== 'live';
  $('#history-view').hidden = name !== 'history';
  $('#nav-live').classList.toggle('current', name === 'live');
  $('#nav-history').classList.toggle('current', name === 'history');
  if (name === 'history' && !views.history) views.history = new HistoryView($('#history-view'), views.plan, views.role);
}

async function start() {
  setupTokenDialog();
  let plan;
  let session;
  try {
    // Asked first, so that a missing token is a question, not a refused request.
    session = await get('/api/v1/session');
    if (!session.role) {
      askForToken(`${session.reason}. Enter a viewer token (a planner token also opens the history view).`);
      return;
    }
    plan = await get('/api/v1/plan');
  } catch (e) {
    $('#banner').hidden = false;
    $('#banner').textContent = `The aggregator did not answer: ${e.message}. Reload to try again.`;
    return;
  }
  document.title = plan.title;
  $('#title').textContent = plan.title;
  if (plan.replay_clock) {
    useReplayClock(plan.replay_clock);
    showReplayClock(plan.replay_clock);
  }
  const views = { plan, role: session.role, history: null };
  const live = new LiveView($('#live-view'), plan);
  window.addEventListener('hashchange', () => route(views));
  route(views);
  try {
    live.loadAlerts(await get('/api/v1/alerts'));
  } catch (e) {
    console.warn(`crowdflow: alerts not loaded: ${e.message}`);
  }
  const stream = new LiveStream({
    snapshot: (zones) => live.snapshot(zones),
    zone: (zone) => live.zone(zone),
    alert: (alert) => live.alert(alert),
    state: showConnection,
    unauthorized: (e) => askForToken(e.message),
  });
  stream.start();
}

/** The replayed event's time in the header (the demo's simulated day, a drill), ticking. */
function showReplayClock(c) {
  const el = $('#replay-clock');
  const format = new Intl.DateTimeFormat('en-GB', {
    timeZone: c.time_zone, weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  const tick = () => {
    const shows = Date.parse(c.shows) + (Date.now() - Date.parse(c.real)) * c.speed;
    el.textContent = `replay ${format.format(new Date(shows))}${c.speed === 1 ? '' : ` · ${c.speed}× speed`}`;
  };
  el.hidden = false;
  tick();
  setInterval(tick, 1000);
}

start();
