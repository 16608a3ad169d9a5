// One live source for the page: a Server-Sent Events stream while it works, polling when it fails
// or stalls, and the stream again later. Both feeds of the page (readings, window aggregates) run on it.
//
// Behind API Gateway + Lambda responses are buffered and a stream never delivers: the stall check
// (not open after stallMs, or the source says it is behind and nothing came for stallMs) moves the
// page to polling there. With a token the stream is read with fetch, as an EventSource cannot send
// an Authorization header (and the token never goes into a URL).
"use strict";
window.Dash = window.Dash || {};

(function (Dash) {
  const api = Dash.api;

  // source: url() the stream's URL (relative), onEvent(kind, id, data) each event, poll(current)
  // one poll (resolves true when more is waiting at once; it applies its answer only while
  // current() holds), behind() whether the stream is missing something,
  // onTransport("live" | "polling"). options: stallMs, retryLiveMs, pollMs (read at each use).
  class LiveOrPoll {
    constructor(source, options) {
      this.source = source;
      this.options = options;
      this.transport = null;
      this.lastDelivery = 0;
      this.opened = false;
      this.events = null;
      this.abort = null;
      this.pollTimer = null;
      this.pollingSince = 0;
      this.stallTimer = null;
      this.generation = 0; // each stop() ends what was running: late answers are dropped
    }

    stop() {
      this.generation += 1;
      if (this.events) this.events.close();
      if (this.abort) this.abort.abort();
      this.events = null;
      this.abort = null;
      clearTimeout(this.pollTimer);
      clearInterval(this.stallTimer);
    }

    setTransport(name) {
      if (this.transport !== name) {
        this.transport = name;
        this.source.onTransport(name);
      }
    }

    // Something arrived: the stream is not stalled.
    delivered() {
      this.lastDelivery = performance.now();
    }

    goLive() {
      this.stop();
      this.opened = false;
      this.delivered();
      this.setTransport("live");
      if (api.token()) this.fetchStream();
      else this.eventSource();
      this.stallTimer = setInterval(() => {
        const quiet = performance.now() - this.lastDelivery > this.options.stallMs;
        if (quiet && (!this.opened || this.source.behind())) this.fallBack();
      }, 500);
    }

    fallBack() {
      this.stop();
      this.setTransport("polling");
      this.pollingSince = performance.now();
      this.poll();
    }

    handle(kind, id, data) {
      if (kind === "error") this.fallBack();
      else {
        this.delivered();
        this.source.onEvent(kind, id, data);
      }
    }

    eventSource() {
      // An EventSource reconnects by itself with Last-Event-ID; the stall check covers the rest.
      const events = new EventSource(api.url(this.source.url()));
      this.events = events;
      events.onopen = () => {
        this.opened = true;
        this.delivered();
      };
      events.onmessage = (event) => this.handle("message", event.lastEventId, event.data);
      events.addEventListener("gap", (event) => this.handle("gap", null, event.data));
      events.addEventListener("error", (event) => {
        if (event.data) this.handle("error", null, event.data);
        else if (events.readyState === EventSource.CLOSED) this.fallBack();
      });
    }

    async fetchStream() {
      const controller = new AbortController();
      this.abort = controller;
      try {
        const response = await fetch(api.url(this.source.url()), {
          headers: api.headers({ Accept: "text/event-stream" }),
          signal: controller.signal,
          cache: "no-store",
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        this.opened = true;
        this.delivered();
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
            if (data.length) this.handle(kind, id, data.join("\n"));
          }
        }
        if (this.abort === controller) this.fallBack();
      } catch (error) {
        if (this.abort === controller && !controller.signal.aborted) this.fallBack();
      }
    }

    async poll() {
      const generation = this.generation;
      let more = false;
      try {
        more = await this.source.poll(() => this.transport === "polling" && this.generation === generation);
      } catch (error) {
        // The page shows what is wrong elsewhere; polling goes on.
      }
      if (this.transport !== "polling" || this.generation !== generation) return;
      if (performance.now() - this.pollingSince >= this.options.retryLiveMs) {
        this.goLive(); // try the stream again, from where polling got to
      } else {
        this.pollTimer = setTimeout(() => this.poll(), more ? 0 : this.options.pollMs);
      }
    }
  }

  Dash.LiveOrPoll = LiveOrPoll;
})(window.Dash);
