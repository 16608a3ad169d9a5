// The window chart's data, on Dash.LiveOrPoll: the live window feed (api/v1/stream/aggregates) while
// it works, /processed-data?window= polled when it fails or stalls (behind API Gateway, always).
//
// Windows are kept by (category, window_start): each feed event replaces the ones it carries, a poll
// replaces them all. Only the windows of the last few minutes to hours (by window length) are kept.
"use strict";
window.Dash = window.Dash || {};

(function (Dash) {
  const api = Dash.api;
  const SPAN_S = { "1s": 300, "10s": 1800, "1m": 10800 };
  const WINDOW_S = { "1s": 1, "10s": 10, "1m": 60 };
  const FIELD = { mean: "avg_value", max: "max", p95: "p95" };

  class WindowFeed {
    // newestReadingMs(): event time of the newest reading the page has (ms); onChange(); onError(text);
    // onTransport(name).
    constructor(handlers, options) {
      this.handlers = handlers;
      this.options = Object.assign({ stallMs: 3000, retryLiveMs: 15000, pollMs: 2000 }, options || {});
      this.windowName = "10s";
      this.statName = "mean";
      this.rows = new Map(); // `${category}\u0000${window_start}` -> window object
      this.watermarkMs = null; // of the last feed event (its id is the newest event time in ns)
      this.live = new Dash.LiveOrPoll(this, this.options);
    }

    get transport() {
      return this.live.transport;
    }

    // Follow another window length or statistic: from scratch, live first.
    select(windowName, statName) {
      this.windowName = windowName;
      this.statName = statName;
      this.rows.clear();
      this.watermarkMs = null;
      this.handlers.onChange();
      this.live.goLive();
    }

    query() {
      const stats = this.statName === "mean" ? "" : `&stats=${this.statName}`;
      return `window=${this.windowName}${stats}`;
    }

    url() {
      return `api/v1/stream/aggregates?${this.query()}`;
    }

    onTransport(name) {
      this.handlers.onTransport(name);
    }

    behind() {
      const newest = this.handlers.newestReadingMs();
      return Number.isFinite(newest) && (this.watermarkMs === null || newest > this.watermarkMs);
    }

    onEvent(kind, id, data) {
      if (kind !== "message") return; // a gap: the windows it touched come again with their new values
      if (id) this.watermarkMs = Number(id.slice(0, -6));
      this.put(JSON.parse(data));
    }

    put(windows) {
      for (const row of windows) this.rows.set(`${row.category}\u0000${row.window_start}`, row);
      this.prune();
      this.handlers.onChange();
    }

    prune() {
      let newest = -Infinity;
      for (const row of this.rows.values()) newest = Math.max(newest, Date.parse(row.window_start));
      const oldest = newest - SPAN_S[this.windowName] * 1000;
      for (const [key, row] of this.rows) if (Date.parse(row.window_start) < oldest) this.rows.delete(key);
    }

    // The windows of the span before the newest reading; `since` on a window boundary, so that the
    // first window is whole.
    async poll(current) {
      const newest = this.handlers.newestReadingMs();
      const to = Number.isFinite(newest) ? newest / 1000 : Date.now() / 1000;
      const size = WINDOW_S[this.windowName];
      const since = new Date(Math.floor((to - SPAN_S[this.windowName]) / size) * size * 1000).toISOString();
      try {
        const rows = await api.get(`api/v1/processed-data?${this.query()}&since=${encodeURIComponent(since)}`);
        if (!current()) return false;
        this.rows.clear();
        this.put(rows);
        this.handlers.onError("");
      } catch (error) {
        if (current()) this.handlers.onError(error.message);
      }
      return false;
    }

    // uPlot's columns: window starts (s), then one series of the chosen statistic per category.
    chart() {
      const field = FIELD[this.statName];
      const rows = Array.from(this.rows.values());
      const categories = Array.from(new Set(rows.map((row) => row.category))).sort();
      const starts = Array.from(new Set(rows.map((row) => Date.parse(row.window_start) / 1000))).sort((a, b) => a - b);
      const index = new Map(starts.map((start, i) => [start, i]));
      const data = [starts].concat(categories.map(() => new Array(starts.length).fill(null)));
      for (const row of rows) {
        data[1 + categories.indexOf(row.category)][index.get(Date.parse(row.window_start) / 1000)] = row[field];
      }
      return { categories, data, title: `${this.statName} per ${this.windowName} window` };
    }
  }

  Dash.WindowFeed = WindowFeed;
})(window.Dash);
