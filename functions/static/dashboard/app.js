// The dashboard: status strip, controls, live chart, per-category cards, window chart, newest readings.
"use strict";

(function (Dash) {
  const api = Dash.api;
  const $ = (id) => document.getElementById(id);
  const BUCKETS = 5000; // at most 10,000 points a series in view
  const TAIL_KEEP = 500;
  const STALE_S = 3; // the newest reading is this old while running: shown as a warning

  // What the page did, for the eye and for tests.
  const stats = {
    redraws: 0,
    received: 0,
    gaps: 0,
    transport: null,
    windowTransport: null,
    pointsInView: 0,
    maxSeriesPoints: 0,
    lastDrawMs: 0,
  };
  window.dashboard = { stats };

  const store = new Dash.SeriesStore();
  const live = new Dash.Chart($("live-chart"), "value over event time", 300);
  const windows = new Dash.Chart($("window-chart"), "", 260, true);
  const tail = [];
  const lastValue = new Map();
  let status = null;
  let paused = false;
  let dirty = false;
  let tailDirty = false;

  const number = new Intl.NumberFormat("en", { maximumFractionDigits: 3 });
  const integer = new Intl.NumberFormat("en");

  function say(text, isError) {
    $("message").textContent = text;
    $("message").classList.toggle("error", Boolean(isError));
  }

  function showTokenField() {
    $("token-box").classList.remove("hidden");
  }

  let windowsDirty = false;
  const windowFeed = (window.dashboard.windowFeed = new Dash.WindowFeed({
    newestReadingMs: () => Math.round(store.newestTime * 1000), // whole ms, as the feed's id gives them
    onChange() {
      windowsDirty = true;
    },
    onError(text) {
      $("window-message").textContent = text;
    },
    onTransport(name) {
      stats.windowTransport = name;
      $("window-transport").textContent = name;
      $("window-transport").classList.toggle("warn", name === "polling");
    },
  }));
  window.dashboard.windowChart = windows;

  function drawWindows() {
    const { categories, data, title } = windowFeed.chart();
    windows.title = title;
    if (categories.length) windows.draw(categories, data);
  }

  const feed = (window.dashboard.feed = new Dash.Feed({
    onReadings(readings) {
      for (const reading of readings) {
        const time = Date.parse(reading.timestamp) / 1000;
        store.add(time, reading.value, reading.category);
        lastValue.set(reading.category, reading);
        tail.push(reading);
      }
      if (tail.length > 2 * TAIL_KEEP) tail.splice(0, tail.length - TAIL_KEEP);
      stats.received += readings.length;
      dirty = true;
      tailDirty = true;
    },
    onGap(missed) {
      stats.gaps += missed;
    },
    onTransport(name) {
      stats.transport = name;
      $("transport").textContent = name;
      $("transport").classList.toggle("warn", name === "polling");
    },
  }));

  async function refreshStatus() {
    try {
      status = await api.get("api/v1/status");
    } catch (error) {
      $("state").textContent = error.status === 401 ? "token needed" : "unreachable";
      $("state").className = "badge warn";
      return null;
    }
    $("state").textContent = status.running ? "running" : "stopped";
    $("state").className = `badge ${status.running ? "running" : "stopped"}`;
    $("rate").textContent = `${number.format(status.rate_hz)}/s`;
    $("buffered").textContent = `${integer.format(status.buffered)} / ${integer.format(status.capacity)}`;
    $("fill").style.width = `${(100 * status.buffered) / status.capacity}%`;
    $("evicted").textContent = integer.format(status.evicted);
    $("total").textContent = integer.format(status.total_ingested);
    feed.noteNewest(status.total_ingested - 1);
    return status;
  }

  function showAge() {
    const newest = store.newestTime;
    if (!Number.isFinite(newest)) return;
    const age = Math.max(0, Date.now() / 1000 - newest);
    $("age").textContent = age < 60 ? `${age.toFixed(1)} s ago` : `${Math.round(age / 60)} min ago`;
    $("age").classList.toggle("warn", Boolean(status && status.running && age > STALE_S));
    $("received").textContent = integer.format(stats.received);
    $("gaps").textContent = integer.format(stats.gaps);
  }

  function drawLive() {
    const categories = store.categories();
    if (!categories.length) return;
    const started = performance.now();
    const range = $("range").value;
    const to = store.newestTime;
    const from = range === "all" ? store.oldestTime : Math.max(store.oldestTime, to - Number(range));
    const view = store.view(categories, from, to, BUCKETS);
    live.draw(categories, view.data);
    stats.pointsInView = view.points;
    stats.maxSeriesPoints = view.maxSeriesPoints;
    stats.redraws += 1;
    stats.lastDrawMs = performance.now() - started;
    $("points").textContent = `${integer.format(view.points)} points`;
  }

  function drawTail() {
    const wanted = $("tail-category").value;
    const rows = [];
    for (let i = tail.length - 1; i >= 0 && rows.length < 50; i -= 1) {
      if (!wanted || tail[i].category === wanted) rows.push(tail[i]);
    }
    const body = $("tail");
    body.replaceChildren(
      ...rows.map((reading) => {
        const row = document.createElement("tr");
        for (const text of [reading.timestamp, reading.category, number.format(reading.value)]) {
          const cell = document.createElement("td");
          cell.textContent = text;
          row.append(cell);
        }
        return row;
      }),
    );
    const select = $("tail-category");
    const known = new Set(Array.from(select.options, (option) => option.value));
    for (const category of store.categories()) {
      if (!known.has(category)) select.append(new Option(category, category));
    }
  }

  let lastTailDraw = 0;
  let lastWindowsDraw = 0;
  function frame(now) {
    if (dirty && !paused) {
      dirty = false;
      drawLive();
    }
    if (windowsDirty && now - lastWindowsDraw > 100) {
      windowsDirty = false;
      lastWindowsDraw = now;
      drawWindows();
    }
    if (tailDirty && now - lastTailDraw > 250) {
      tailDirty = false;
      lastTailDraw = now;
      drawTail();
    }
    requestAnimationFrame(frame);
  }

  async function refreshCards() {
    let rows;
    try {
      rows = await api.get("api/v1/processed-data?stats=min,max");
    } catch (error) {
      return;
    }
    const cards = $("cards");
    cards.replaceChildren(
      ...rows.map((row) => {
        const card = document.createElement("div");
        card.className = "card";
        card.dataset.category = row.category;
        const title = document.createElement("h3");
        title.textContent = row.category;
        const list = document.createElement("dl");
        const last = lastValue.get(row.category);
        const fields = [
          ["mean", number.format(row.avg_value), row.avg_value],
          ["count", integer.format(row.count), row.count],
          ["min", number.format(row.min), row.min],
          ["max", number.format(row.max), row.max],
          ["last value", last ? number.format(last.value) : "–", last ? last.value : ""],
          ["last timestamp", row.last_timestamp.replace(/^.*T/, ""), row.last_timestamp],
        ];
        for (const [name, text, raw] of fields) {
          const term = document.createElement("dt");
          term.textContent = name;
          const value = document.createElement("dd");
          value.textContent = text;
          value.dataset.field = name;
          value.dataset.raw = String(raw);
          list.append(term, value);
        }
        card.append(title, list);
        return card;
      }),
    );
  }

  async function start(event) {
    event.preventDefault();
    const body = {};
    const rate = $("rate-input").value.trim();
    const categories = $("categories-input").value.trim();
    const seed = $("seed-input").value.trim();
    if (rate) body.rate_hz = Number(rate);
    if (categories) body.categories = categories.split(",").map((name) => name.trim()).filter(Boolean);
    if (seed) body.seed = Number(seed);
    try {
      const answer = await api.post("api/v1/start-ingestion", Object.keys(body).length ? body : undefined);
      say(answer.message);
    } catch (error) {
      if (error.status === 409) say(`Not started: ${error.message}`, true);
      else if (error.status === 401) say("Not started: the API needs a token (enter it on the right).", true);
      else say(`Not started: ${error.message}`, true);
    }
    refreshStatus();
  }

  async function stop() {
    try {
      say((await api.post("api/v1/stop-ingestion")).message);
    } catch (error) {
      say(`Not stopped: ${error.message}`, true);
    }
    refreshStatus();
  }

  function useToken() {
    api.setToken($("token-input").value.trim());
    $("token-input").value = "";
    say(api.token() ? "Token set for this tab." : "Token cleared.");
    refreshStatus().then((current) => {
      if (current) feed.start(current.total_ingested - 1);
      windowFeed.live.goLive();
    });
  }

  async function init() {
    api.onUnauthorized(showTokenField);
    if (api.token()) showTokenField();
    $("start-form").addEventListener("submit", start);
    $("stop").addEventListener("click", stop);
    $("token-save").addEventListener("click", useToken);
    $("pause").addEventListener("click", () => {
      paused = !paused;
      $("pause").textContent = paused ? "Resume" : "Pause";
      dirty = true;
    });
    $("range").addEventListener("change", () => (dirty = true));
    $("tail-category").addEventListener("change", () => (tailDirty = true));
    const selectWindows = () => windowFeed.select($("window").value, $("stat").value);
    $("window").addEventListener("change", selectWindows);
    $("stat").addEventListener("change", selectWindows);
    requestAnimationFrame(frame);
    setInterval(refreshStatus, 1000);
    setInterval(showAge, 500);
    setInterval(refreshCards, 1500);
    const current = await refreshStatus();
    if (current) feed.start(current.total_ingested - 1);
    refreshCards();
    selectWindows();
  }

  init();
})(window.Dash);
