// Draws the charts of the analytics page and the home page from the data the page embeds
// with json_script (#analytics-daily: one list per column of automations/stats.py
// DAILY_COLUMNS, every day of the period); a page gets the charts whose canvases it has. Each
// canvas has its text alternative in the page itself; without JavaScript or Chart.js the page
// still reads in full.
(function () {
  "use strict";

  function draw() {
    var source = document.getElementById("analytics-daily");
    if (!source || typeof window.Chart === "undefined") {
      return;
    }
    var daily = JSON.parse(source.textContent);
    var styles = getComputedStyle(document.documentElement);
    var brand = styles.getPropertyValue("--brand").trim() || "#5b3cc4";
    var ok = styles.getPropertyValue("--ok").trim() || "#067647";
    var danger = styles.getPropertyValue("--danger").trim() || "#b42318";
    var muted = styles.getPropertyValue("--muted").trim() || "#667085";
    var reduceMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

    function options(extraScales) {
      var scales = { x: { ticks: { maxRotation: 0, autoSkip: true } }, y: { beginAtZero: true, ticks: { precision: 0 } } };
      Object.keys(extraScales || {}).forEach(function (key) {
        scales[key] = extraScales[key];
      });
      return {
        responsive: true,
        maintainAspectRatio: false,
        animation: reduceMotion ? false : undefined,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom" } },
        scales: scales,
      };
    }

    function chart(id, config) {
      var canvas = document.getElementById(id);
      if (canvas) {
        new window.Chart(canvas, config);
      }
    }

    chart("chart-texts", {
      type: "bar",
      data: {
        labels: daily.day,
        datasets: [
          { label: "Sent", data: daily.sent, backgroundColor: muted },
          { label: "Delivered", data: daily.delivered, backgroundColor: ok },
        ],
      },
      options: options(),
    });

    chart("chart-results", {
      type: "bar",
      data: {
        labels: daily.day,
        datasets: [
          { label: "Unique clicks", data: daily.unique_clicks, backgroundColor: muted, yAxisID: "y" },
          { label: "Attributed orders", data: daily.orders, backgroundColor: brand, yAxisID: "y" },
          {
            type: "line",
            label: "Revenue",
            data: daily.revenue,
            borderColor: ok,
            backgroundColor: ok,
            tension: 0.2,
            yAxisID: "revenue",
          },
        ],
      },
      options: options({
        revenue: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } },
      }),
    });

    chart("chart-growth", {
      type: "bar",
      data: {
        labels: daily.day,
        datasets: [
          { label: "Subscribed", data: daily.subscribed, backgroundColor: ok },
          {
            label: "Opted out",
            data: daily.opt_outs.map(function (n) { return -n; }),
            backgroundColor: danger,
          },
          { type: "line", label: "Net", data: daily.list_growth, borderColor: brand, backgroundColor: brand },
        ],
      },
      options: options({ y: { ticks: { precision: 0 } } }),
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
