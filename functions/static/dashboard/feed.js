// The live feed of readings: Server-Sent Events while they work, polling when they fail or stall.
//
// Each stream event's id is the sequence number of its last reading, so whichever transport runs
// resumes right after the last reading the page has: no reading twice, none skipped without a
// gap event. Behind API Gateway + Lambda responses are buffered and the stream never delivers:
// the page then polls raw-data?after_sequence= and tries the stream again later.
"use strict";
window.Dash = window.Dash || {};

(function (Dash) {
  const api = Dash.api;

  class Feed {
    // onReadings(readings, lastSequence), onGap(missed), onTransport("live" | "polling").
    constructor(handlers, options) {
      this.handlers = handlers;
      this.options = Object.assign(
        { stallMs: 3000, retryLiveMs: 15000, pollMs: 1000, pollLimit: 10000, backfill: 2000 },
        options || {},
      );
      this.lastSequence = null;
      this.newestKnown = -1; // total_ingested - 1 from /status
      this.transport = null;
      this.lastDelivery = 0;
      this.opened = false;
      this.source = null;
      this.abort = null;
      this.pollTimer = null;
      this.pollingSince = 0;
      this.stallTimer = null;
    }

    // The status poller tells the feed which is the newest reading, to notice a stream that stalls.
    noteNewest(newestSequence) {
      if (this.lastSequence !== null && newestSequence < this.lastSequence) {
        this.lastSequence = newestSequence; // the ingestor started over: its numbers begin again
      }
      if (newestSequence !== this.newestKnown) this.newestKnown = newestSequence;
    }

    start(newestSequence) {
      this.newestKnown = newestSequence;
      if (this.lastSequence === null) {
        this.lastSequence = Math.max(-1, newestSequence - this.options.backfill);
      }
      this.goLive();
    }

    restart() {
      this.stopAll();
      this.goLive();
    }

    stopAll() {
      if (this.source) this.source.close();
      if (this.abort) this.abort.abort();
      this.source = null;
      this.abort = null;
      clearTimeout(this.pollTimer);
      clearInterval(this.stallTimer);
    }

    setTransport(name) {
      if (this.transport !== name) {
        this.transport = name;
        this.handlers.onTransport(name);
      }
    }

    deliver(readings, lastSequence) {
      this.lastDelivery = performance.now();
      if (lastSequence !== null && lastSequence !== undefined) this.lastSequence = lastSequence;
      if (readings.length) this.handlers.onReadings(readings);
    }

    streamUrl() {
      const after = this.lastSequence === null ? "" : `?after_sequence=${this.lastSequence}`;
      return api.url(`api/v1/stream${after}`);
    }

    goLive() {
      this.stopAll();
      this.opened = false;
      this.lastDelivery = performance.now();
      this.setTransport("live");
      if (api.token()) this.fetchStream();
      else this.eventSource();
      // Stalled: never opened, or readings exist that the stream has not brought for a while.
      this.stallTimer = setInterval(() => {
        const quiet = performance.now() - this.lastDelivery > this.options.stallMs;
        const behind = this.newestKnown > (this.lastSequence === null ? -1 : this.lastSequence);
        if (quiet && (!this.opened || behind)) this.fallBack();
      }, 500);
    }

    fallBack() {
      this.stopAll();
      this.setTransport("polling");
      this.pollingSince = performance.now();
      this.poll();
    }

    handleEvent(kind, id, data) {
      if (kind === "gap") {
        this.handlers.onGap(JSON.parse(data).missed);
        this.lastDelivery = performance.now();
      } else if (kind === "error") {
        this.fallBack();
      } else if (kind === "message") {
        this.deliver(JSON.parse(data), id ? Number(id) : null);
      }
    }

    eventSource() {
      // An EventSource reconnects by itself with Last-Event-ID; the stall check covers the rest.
      const source = new EventSource(this.streamUrl());
      this.source = source;
      source.onopen = () => {
        this.opened = true;
        this.lastDelivery = performance.now();
      };
      source.onmessage = (event) => this.handleEvent("message", event.lastEventId, event.data);
      source.addEventListener("gap", (event) => this.handleEvent("gap", null, event.data));
      source.addEventListener("error", (event) => {
        if (event.data) this.handleEvent("error", null, event.data);
        else if (source.readyState === EventSource.CLOSED) this.fallBack();
      });
    }

    // The same stream read with fetch, when a token must go in the Authorization header (an
    // EventSource cannot send one, and the token never goes into a URL).
    async fetchStream() {
      const controller = new AbortController();
      this.abort = controller;
      try {
        const response = await fetch(this.streamUrl(), {
          headers: api.headers({ Accept: "text/event-stream" }),
          signal: controller.signal,
          cache: "no-store",
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        this.opened = true;
        this.lastDelivery = performance.now();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let kind = "message";
            let id = null;
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) continue;
              const colon = line.indexOf(":");
              const name = colon < 0 ? line : line.slice(0, colon);
              const field = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (name === "event") kind = field;
              else if (name === "id") id = field;
              else if (name === "data") data.push(field);
            }
            if (data.length) this.handleEvent(kind, id, data.join("\n"));
          }
        }
        if (this.abort === controller) this.fallBack();
      } catch (error) {
        if (this.abort === controller && !controller.signal.aborted) this.fallBack();
      }
    }

    async poll() {
      const started = this.transport;
      let full = false;
      try {
        const after = this.lastSequence === null ? -1 : this.lastSequence;
        const { body, headers } = await api.request(
          `api/v1/raw-data?after_sequence=${after}&limit=${this.options.pollLimit}`,
        );
        if (this.transport !== "polling" || started !== "polling") return;
        const next = headers.get("Next-After-Sequence");
        this.deliver(body, next === null ? null : Number(next));
        full = body.length >= this.options.pollLimit;
      } catch (error) {
        // The status strip shows what is wrong; polling goes on.
      }
      if (this.transport !== "polling") return;
      if (performance.now() - this.pollingSince >= this.options.retryLiveMs) {
        this.goLive(); // try the stream again, from the last reading polled
      } else {
        this.pollTimer = setTimeout(() => this.poll(), full ? 0 : this.options.pollMs);
      }
    }
  }

  Dash.Feed = Feed;
})(window.Dash);
