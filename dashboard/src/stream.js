// The live stream (Server-Sent Events) with its connection state. The server sends a `ping`
// every 5 s when nothing else happens, so silence for longer than SILENCE_MS means the
// connection is dead even if the browser has not noticed: the page then says so and
// reconnects, rather than showing old numbers as live.

import { streamUrl, get } from './api.js';

const SILENCE_MS = 15_000;
const MAX_BACKOFF_MS = 30_000;

export class LiveStream {
  /**
   * @param {object} on handlers: snapshot(zones), zone(zone), alert(alert),
   *   state(state, since) where state is "connecting", "live" or "disconnected",
   *   unauthorized(error).
   */
  constructor(on) {
    this.on = on;
    this.source = null;
    this.lastMessage = 0;
    this.backoff = 1000;
    this.state = null;
    this.since = null;
    this.retry = null;
    this.watchdog = setInterval(() => this.check(), 2000);
  }

  start() {
    this.close();
    this.setState(this.state === 'disconnected' ? 'disconnected' : 'connecting');
    const source = new EventSource(streamUrl());
    this.source = source;
    const heard = () => {
      this.lastMessage = Date.now();
      this.backoff = 1000;
      this.setState('live');
    };
    const json = (handler) => (e) => {
      heard();
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        console.warn('crowdflow: a stream event that is not JSON was ignored');
        return;
      }
      handler(data);
    };
    source.addEventListener('snapshot', json((zones) => this.on.snapshot(zones)));
    source.addEventListener('zone', json((zone) => this.on.zone(zone)));
    source.addEventListener('alert', json((alert) => this.on.alert(alert)));
    source.addEventListener('ping', heard);
    source.onerror = () => {
      if (this.source !== source) return;
      this.setState('disconnected');
      // The browser retries by itself unless the answer was not a stream (401, 5xx).
      if (source.readyState === EventSource.CLOSED) this.reconnectLater();
    };
  }

  /** Reconnects after a growing pause; asks first whether the token still holds. */
  reconnectLater() {
    this.close();
    clearTimeout(this.retry);
    const wait = this.backoff;
    this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
    this.retry = setTimeout(async () => {
      try {
        const session = await get('/api/v1/session');
        if (!session.role) {
          this.on.unauthorized(new Error(session.reason));
          return;
        }
      } catch {
        // Still unreachable: the stream's own attempt reports it.
      }
      this.start();
    }, wait);
  }

  check() {
    if (this.state === 'live' && Date.now() - this.lastMessage > SILENCE_MS) {
      this.setState('disconnected');
      this.reconnectLater();
    }
  }

  setState(state) {
    if (state === this.state) return;
    this.since = new Date();
    this.state = state;
    this.on.state(state, this.since);
  }

  close() {
    if (this.source) {
      this.source.onerror = null;
      this.source.close();
      this.source = null;
    }
  }
}
