// The live feed of readings, on Dash.LiveOrPoll: the stream while it works, polling when it fails or stalls.
//
// Each stream event's id is the sequence number of its last reading, so whichever transport runs
// resumes right after the last reading the page has: no reading twice, none skipped without a
// gap event. Polling reads raw-data?after_sequence= from there.
"use strict";
window.Dash = window.Dash || {};

(function (Dash) {
  const api = Dash.api;

  class Feed {
    // onReadings(readings), onGap(missed), onTransport("live" | "polling").
    constructor(handlers, options) {
      this.handlers = handlers;
      this.options = Object.assign(
        { stallMs: 3000, retryLiveMs: 15000, pollMs: 1000, pollLimit: 10000, backfill: 2000 },
        options || {},
      );
      this.lastSequence = null;
      this.newestKnown = -1; // total_ingested - 1 from /status
      this.live = new Dash.LiveOrPoll(this, this.options);
    }

    get transport() {
      return this.live.transport;
    }

    // The status poller tells the feed which is the newest reading, to notice a stream that stalls.
    noteNewest(newestSequence) {
      if (this.lastSequence !== null && newestSequence < this.lastSequence) {
        this.lastSequence = newestSequence; // the ingestor started over: its numbers begin again
      }
      this.newestKnown = newestSequence;
    }

    start(newestSequence) {
      this.newestKnown = newestSequence;
      if (this.lastSequence === null) {
        this.lastSequence = Math.max(-1, newestSequence - this.options.backfill);
      }
      this.live.goLive();
    }

    restart() {
      this.live.goLive();
    }

    onTransport(name) {
      this.handlers.onTransport(name);
    }

    behind() {
      return this.newestKnown > (this.lastSequence === null ? -1 : this.lastSequence);
    }

    deliver(readings, lastSequence) {
      if (lastSequence !== null && lastSequence !== undefined) this.lastSequence = lastSequence;
      if (readings.length) this.handlers.onReadings(readings);
    }

    url() {
      return this.lastSequence === null ? "api/v1/stream" : `api/v1/stream?after_sequence=${this.lastSequence}`;
    }

    onEvent(kind, id, data) {
      if (kind === "gap") this.handlers.onGap(JSON.parse(data).missed);
      else if (kind === "message") this.deliver(JSON.parse(data), id ? Number(id) : null);
    }

    async poll(current) {
      const after = this.lastSequence === null ? -1 : this.lastSequence;
      const { body, headers } = await api.request(
        `api/v1/raw-data?after_sequence=${after}&limit=${this.options.pollLimit}`,
      );
      if (!current()) return false;
      const next = headers.get("Next-After-Sequence");
      this.deliver(body, next === null ? null : Number(next));
      return body.length >= this.options.pollLimit;
    }
  }

  Dash.Feed = Feed;
})(window.Dash);
