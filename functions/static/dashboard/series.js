// Readings the page holds, per category, in bounded ring buffers, and views of them for charts.
"use strict";
window.Dash = window.Dash || {};

(function (Dash) {
  const PER_CATEGORY = 1 << 18; // 262,144 readings a category, 4 MiB: the page's memory is bounded
  const MAX_CATEGORIES = 32; // more are counted but not charted

  class Ring {
    constructor(capacity) {
      this.times = new Float64Array(capacity); // seconds since the epoch
      this.values = new Float64Array(capacity);
      this.capacity = capacity;
      this.size = 0;
      this.next = 0;
    }
    push(time, value) {
      this.times[this.next] = time;
      this.values[this.next] = value;
      this.next = (this.next + 1) % this.capacity;
      if (this.size < this.capacity) this.size += 1;
    }
    // Calls visit(time, value) for each reading held, oldest first.
    forEach(visit) {
      const start = (this.next - this.size + this.capacity) % this.capacity;
      for (let i = 0; i < this.size; i += 1) {
        const at = (start + i) % this.capacity;
        visit(this.times[at], this.values[at]);
      }
    }
  }

  class SeriesStore {
    constructor(perCategory) {
      this.perCategory = perCategory || PER_CATEGORY;
      this.rings = new Map();
      this.newestTime = -Infinity;
      this.oldestTime = Infinity;
    }
    categories() {
      return Array.from(this.rings.keys()).sort();
    }
    add(time, value, category) {
      let ring = this.rings.get(category);
      if (!ring) {
        if (this.rings.size >= MAX_CATEGORIES) return;
        ring = new Ring(this.perCategory);
        this.rings.set(category, ring);
      }
      ring.push(time, value);
      if (time > this.newestTime) this.newestTime = time;
      if (time < this.oldestTime) this.oldestTime = time;
    }
    // uPlot's aligned data for [from, to]: per category the min and max of each of `buckets` time
    // buckets, so each series has at most 2 * buckets points whatever the rate.
    view(categories, from, to, buckets) {
      const width = (to - from) / buckets || 1;
      const xs = new Float64Array(2 * buckets);
      for (let b = 0; b < buckets; b += 1) {
        xs[2 * b] = from + b * width;
        xs[2 * b + 1] = from + (b + 0.5) * width;
      }
      const data = [xs];
      let points = 0;
      let maxSeriesPoints = 0;
      for (const category of categories) {
        let seriesPoints = 0;
        const lows = new Float64Array(buckets).fill(Infinity);
        const highs = new Float64Array(buckets).fill(-Infinity);
        const ring = this.rings.get(category);
        if (ring) {
          ring.forEach((time, value) => {
            if (time < from || time > to) return;
            const b = Math.min(buckets - 1, Math.floor((time - from) / width));
            if (value < lows[b]) lows[b] = value;
            if (value > highs[b]) highs[b] = value;
          });
        }
        const ys = new Array(2 * buckets);
        for (let b = 0; b < buckets; b += 1) {
          const empty = lows[b] === Infinity;
          ys[2 * b] = empty ? null : lows[b];
          ys[2 * b + 1] = empty || highs[b] === lows[b] ? null : highs[b];
          if (!empty) seriesPoints += highs[b] === lows[b] ? 1 : 2;
        }
        data.push(ys);
        points += seriesPoints;
        maxSeriesPoints = Math.max(maxSeriesPoints, seriesPoints);
      }
      return { data, points, maxSeriesPoints };
    }
  }

  Dash.SeriesStore = SeriesStore;
})(window.Dash);
