// The two charts, drawn with the vendored uPlot: live values over event time, and windowed statistics.
"use strict";
window.Dash = window.Dash || {};

(function (Dash) {
  const COLORS = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac", "#f06292"];
  const AXIS = { stroke: "#9fb3c8", grid: { stroke: "#26384a", width: 1 }, ticks: { stroke: "#26384a" } };

  function color(index) {
    return COLORS[index % COLORS.length];
  }

  // A single x value (one window so far) would make an empty scale: pad it.
  function padded(u, min, max) {
    return min === max ? [min - 30, max + 30] : [min, max];
  }

  function options(element, title, categories, height, showPoints) {
    return {
      title,
      width: Math.max(320, element.clientWidth),
      height,
      scales: { x: { time: true, range: padded } },
      axes: [AXIS, AXIS],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      series: [{}].concat(
        categories.map((category, index) => ({
          label: category,
          stroke: color(index),
          width: 1,
          spanGaps: true,
          points: { show: showPoints, size: 4 },
        })),
      ),
    };
  }

  // A uPlot chart whose series follow the categories seen; rebuilt when a new one appears.
  class Chart {
    constructor(element, title, height, showPoints) {
      this.showPoints = Boolean(showPoints);
      this.element = element;
      this.title = title;
      this.height = height;
      this.categories = [];
      this.plot = null;
      this.hidden = new Set();
      window.addEventListener("resize", () => {
        if (this.plot) this.plot.setSize({ width: Math.max(320, this.element.clientWidth), height: this.height });
      });
    }
    draw(categories, data) {
      const changed = categories.join("\u0000") !== this.categories.join("\u0000") || this.builtTitle !== this.title;
      if (!this.plot || changed) {
        if (this.plot) {
          this.plot.series.forEach((series, index) => {
            if (index > 0 && !series.show) this.hidden.add(series.label);
          });
          this.plot.destroy();
        }
        this.categories = categories.slice();
        this.builtTitle = this.title;
        const opts = options(this.element, this.title, categories, this.height, this.showPoints);
        opts.series.forEach((series, index) => {
          if (index > 0 && this.hidden.has(series.label)) series.show = false;
        });
        this.plot = new uPlot(opts, data, this.element);
      } else {
        this.plot.setData(data);
      }
    }
  }

  Dash.Chart = Chart;
})(window.Dash);
