/* pytest-ethosu HTML report: draws the charts and per-layer tables from the JSON inside the page.
   Nothing is fetched; Chart.js is inlined before this script. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("ethosu-data").textContent);
  var COLORS = { npu: "#4e79a7", sram: "#59a14f", dram: "#f28e2b", onflash: "#b07aa1", offflash: "#9c755f",
                 util: "#d62728", finding: "#6a3d9a" };
  var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#e15759"];
  var MAX_CANVAS = 16000;
  var charts = {};
  var fmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var fmt1 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

  Chart.defaults.animation = false;
  Chart.defaults.font.size = 11;

  function num(v) { return v === null || v === undefined ? "-" : fmt.format(v); }
  // the axes of every cycles chart: layers along x (ticks as given), NPU cycles on the left,
  // MAC utilisation on the right
  function cycleScales(xTicks) {
    return {
      x: { ticks: xTicks },
      y: { beginAtZero: true, title: { display: true, text: "NPU cycles" },
           ticks: { callback: function (v) { return fmt.format(v); } } },
      util: { position: "right", min: 0, max: 110, grid: { drawOnChartArea: false },
              title: { display: true, text: "MAC utilisation %" },
              ticks: { stepSize: 20, callback: function (v) { return v <= 100 ? v : ""; } } }
    };
  }
  function pct(now, base) {
    if (base === null || base === undefined || !base) return "";
    var p = 100 * (now - base) / Math.abs(base);
    return (p >= 0 ? "+" : "") + p.toFixed(1) + "%";
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* One chart's width: wide enough to tell layers apart, scrolled sideways when it must be. */
  function sizeWrap(wrap, layers, barsPerLayer) {
    var want = Math.min(MAX_CANVAS, layers * (4 + 4 * barsPerLayer));
    wrap.style.width = Math.max(want, wrap.parentNode.clientWidth - 2) + "px";
  }

  function layerChart(id, canvas) {
    var d = DATA.estimates[id];
    var n = d.index.length;
    var moved = d.moved || [];
    var labels = d.index.map(function (ix, i) { return ix + " " + d.op[i]; });
    var opColor = d.cycles.map(function (_, i) {
      return moved[i] === 1 ? "rgba(214,39,40,0.35)" : moved[i] === -1 ? "rgba(44,160,44,0.3)" :
        moved[i] === 2 ? "rgba(255,159,28,0.35)" : "rgba(0,0,0,0.10)";
    });
    var opBorder = d.cycles.map(function (_, i) { return moved[i] ? "#d62728" : "rgba(0,0,0,0.25)"; });
    var datasets = [{
      type: "bar", label: "op cycles", data: d.cycles, backgroundColor: opColor, borderColor: opBorder,
      borderWidth: 1, grouped: false, order: 5, barPercentage: 1.0, categoryPercentage: 0.96
    }, {
      type: "bar", label: "compute (NPU cycles)", data: d.npu, backgroundColor: COLORS.npu, order: 4,
      barPercentage: 0.9, categoryPercentage: 0.8
    }];
    d.areas.forEach(function (area) {
      datasets.push({ type: "bar", label: area[1] + " cycles", data: d[area[0]], backgroundColor: COLORS[area[0]],
                      order: 4, barPercentage: 0.9, categoryPercentage: 0.8 });
    });
    var wrap = canvas.parentNode;
    sizeWrap(wrap, n, 1 + d.areas.length);
    var slot = Math.max(3, (wrap.clientWidth - 80) / Math.max(1, n));
    if (d.has_baseline) {
      datasets.push({ type: "line", label: "baseline op cycles", data: d.baseline, showLine: false, order: 0,
                      pointStyle: "line", pointRadius: Math.max(3, slot * 0.45), pointHoverRadius: Math.max(3, slot * 0.45),
                      borderColor: "#000", borderWidth: 2, backgroundColor: "#000" });
    }
    datasets.push({ type: "line", label: "MAC utilisation %", data: d.util, yAxisID: "util", spanGaps: true,
                    borderColor: COLORS.util, backgroundColor: COLORS.util, borderWidth: 1.5,
                    pointRadius: n > 150 ? 0 : 2.5, order: 1 });
    var pins = d.index.map(function (_, i) { return d.findings[String(i)] ? 106 : null; });
    if (pins.some(function (p) { return p !== null; })) {
      datasets.push({ type: "line", label: "advisor finding", data: pins, yAxisID: "util", showLine: false,
                      pointStyle: "triangle", rotation: 180, pointRadius: 7, pointHoverRadius: 8,
                      backgroundColor: COLORS.finding, borderColor: COLORS.finding, order: 0 });
    }
    charts[id] = new Chart(canvas, {
      data: { labels: labels, datasets: datasets },
      options: {
        responsive: true, maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: cycleScales({ autoSkip: true, maxRotation: 60, minRotation: 0,
                              color: function (ctx) { return moved[ctx.index] ? "#d62728" : "#555"; },
                              font: function (ctx) { return moved[ctx.index] || d.findings[String(ctx.index)] ? { weight: "bold" } : {}; } }),
        plugins: {
          legend: { position: "top", align: "start", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              title: function (items) {
                var i = items[0].dataIndex;
                return "layer " + d.index[i] + " " + d.op[i] + " (" + d.npu_op[i] + ", " + d.placement[i] + ")";
              },
              afterTitle: function (items) { return d.name[items[0].dataIndex]; },
              label: function (item) {
                if (item.dataset.label === "advisor finding") return null;
                var v = item.raw;
                if (v === null || v === undefined) return null;
                return item.dataset.label + ": " + (item.dataset.yAxisID === "util" ? fmt1.format(v) + "%" : num(v));
              },
              footer: function (items) {
                var i = items[0].dataIndex, lines = [];
                if (d.has_baseline && d.baseline[i] !== null) {
                  lines.push("against baseline " + num(d.baseline[i]) + ": " + (pct(d.cycles[i], d.baseline[i]) || "same"));
                } else if (d.has_baseline) {
                  lines.push("no baseline layer (added)");
                }
                (d.findings[String(i)] || []).forEach(function (f) { lines.push("▼ " + f.kind + ": " + f.text); });
                return lines;
              }
            }
          }
        }
      }
    });
  }

  function layerTable(id, table) {
    var d = DATA.estimates[id];
    var heads = [["#", 1], ["operator", 0], ["NPU op", 0], ["where", 0], ["op cycles", 1]];
    if (d.has_baseline) heads.push(["baseline", 1], ["change", 1]);
    heads.push(["NPU cycles", 1]);
    d.areas.forEach(function (a) { heads.push([a[1], 1]); });
    heads.push(["MACs", 1], ["util %", 1], ["staging bytes", 1], ["advisor", 0], ["name", 0]);
    var thead = el("thead"), tr = el("tr");
    heads.forEach(function (h) { tr.appendChild(el("th", h[1] ? { "class": "n" } : {}, h[0])); });
    thead.appendChild(tr);
    table.appendChild(thead);
    var tbody = el("tbody");
    function cell(row, value, numeric, text) {
      var td = el("td", numeric ? { "class": "n", "data-v": value === null ? "" : String(value) } : {},
                  text !== undefined ? text : numeric ? num(value) : value);
      row.appendChild(td);
      return td;
    }
    for (var i = 0; i < d.index.length; i++) {
      var row = el("tr", { id: id + "-l" + d.index[i] });
      var m = d.moved ? d.moved[i] : 0;
      if (m === 1) row.className = "moved-up"; else if (m === -1) row.className = "moved-down"; else if (m === 2) row.className = "added";
      if (d.findings[String(i)]) row.className += " finding";
      cell(row, d.index[i], true, String(d.index[i]));
      cell(row, d.op[i]); cell(row, d.npu_op[i]); cell(row, d.placement[i]);
      cell(row, d.cycles[i], true);
      if (d.has_baseline) {
        var b = d.baseline[i];
        cell(row, b, true);
        var change = b ? 100 * (d.cycles[i] - b) / Math.abs(b) : null;
        cell(row, change, true, b === null ? "added" : pct(d.cycles[i], b) || "0.0%");
      }
      cell(row, d.npu[i], true);
      d.areas.forEach(function (a) { cell(row, d[a[0]][i], true); });
      cell(row, d.macs[i], true);
      cell(row, d.util[i], true, d.util[i] === null ? "-" : fmt1.format(d.util[i]));
      cell(row, d.staging[i], true);
      var f = d.findings[String(i)] || [];
      cell(row, f.map(function (x) { return x.kind; }).join(", ")).className = "fnd";
      cell(row, d.name[i]).className = "name";
      tbody.appendChild(row);
    }
    table.appendChild(tbody);
    makeSortable(table);
  }

  function makeSortable(table) {
    var ths = table.querySelectorAll("thead th");
    ths.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("asc");
        ths.forEach(function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(asc ? "asc" : "desc");
        var tbody = table.tBodies[0];
        var rows = Array.prototype.slice.call(tbody.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col], y = b.cells[col];
          var xv = x.getAttribute("data-v"), yv = y.getAttribute("data-v"), r;
          if (xv !== null && yv !== null) {
            var xn = xv === "" ? -Infinity : parseFloat(xv), yn = yv === "" ? -Infinity : parseFloat(yv);
            r = xn - yn;
          } else {
            r = x.textContent.localeCompare(y.textContent);
          }
          return asc ? r : -r;
        });
        rows.forEach(function (r) { tbody.appendChild(r); });
      });
    });
  }

  function groupChart(group) {
    var ids = group.getAttribute("data-members").split(" ");
    var heads = JSON.parse(group.getAttribute("data-heads"));
    var first = DATA.estimates[ids[0]];
    var canvas = group.querySelector("canvas.group-chart");
    var n = first.index.length;
    sizeWrap(canvas.parentNode, n, ids.length);
    var datasets = [];
    ids.forEach(function (id, k) {
      var color = PALETTE[k % PALETTE.length];
      datasets.push({ type: "bar", label: heads[k] + " op cycles", data: DATA.estimates[id].cycles,
                      backgroundColor: color + "b0", order: 2, barPercentage: 0.9, categoryPercentage: 0.8 });
      datasets.push({ type: "line", label: heads[k] + " MAC util %", data: DATA.estimates[id].util,
                      yAxisID: "util", spanGaps: true, borderColor: color, backgroundColor: color,
                      borderDash: k ? [5, 3] : [], pointRadius: n > 150 ? 0 : 3, borderWidth: 2, order: 1 });
    });
    var differing = differences(ids);
    var marked = {};
    differing.slice(0, 3).forEach(function (row) { marked[row.i] = true; });
    var top = differing[0];
    var callout = {
      id: "ethosuCallout",
      afterDatasetsDraw: function (chart) {
        if (!top) return;
        var x = chart.scales.x.getPixelForValue(top.i), area = chart.chartArea, c = chart.ctx;
        var same = top.cycles.every(function (c) { return c === top.cycles[0]; });
        var macs = top.macs.slice(1).map(function (m) { return pct(m, top.macs[0]); }).filter(Boolean);
        var text = "layer " + first.index[top.i] + " " + first.op[top.i] + ": " +
          (same ? "same cycles (" + num(top.cycles[0]) + ")" : top.cycles.map(num).join(" vs ") + " cycles") +
          (macs.length ? ", MACs " + macs.join(" / ") : "") + ", MAC util " +
          top.util.map(function (u) { return fmt1.format(u) + "%"; }).join(" vs ");
        c.save();
        c.strokeStyle = "#6a3d9a"; c.lineWidth = 2; c.setLineDash([4, 3]);
        c.beginPath(); c.moveTo(x, area.top + 22); c.lineTo(x, area.bottom); c.stroke();
        c.setLineDash([]);
        c.font = "bold 13px system-ui, sans-serif";
        var w = c.measureText(text).width + 12;
        var left = Math.min(Math.max(area.left, x - w / 2), area.right - w);
        c.fillStyle = "rgba(255,255,255,0.92)"; c.fillRect(left, area.top, w, 20);
        c.strokeRect(left, area.top, w, 20);
        c.fillStyle = "#4b2273"; c.textBaseline = "middle"; c.fillText(text, left + 6, area.top + 10);
        c.restore();
      }
    };
    new Chart(canvas, {
      plugins: [callout],
      data: { labels: first.index.map(function (ix, i) { return ix + " " + first.op[i]; }), datasets: datasets },
      options: {
        responsive: true, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
        scales: cycleScales({ color: function (ctx) { return marked[ctx.index] ? "#6a3d9a" : "#555"; },
                              font: function (ctx) { return marked[ctx.index] ? { weight: "bold", size: 12 } : {}; } }),
        plugins: {
          legend: { position: "top", align: "start", labels: { boxWidth: 12 } },
          tooltip: { callbacks: {
            title: function (items) { var i = items[0].dataIndex; return "layer " + first.index[i] + " " + first.op[i]; },
            label: function (item) {
              return item.dataset.label + ": " + (item.dataset.yAxisID === "util" ? fmt1.format(item.raw || 0) + "%" : num(item.raw));
            } } }
        }
      }
    });
    differTable(group.querySelector(".differ"), ids, heads, differing.slice(0, 5));
  }

  /* Layers where aligned estimates differ, most first: cycles (relative) and MAC utilisation (points). */
  function differences(ids) {
    var first = DATA.estimates[ids[0]], rows = [];
    for (var i = 0; i < first.index.length; i++) {
      var cyc = ids.map(function (id) { return DATA.estimates[id].cycles[i]; });
      var util = ids.map(function (id) { return DATA.estimates[id].util[i] || 0; });
      var macs = ids.map(function (id) { return DATA.estimates[id].macs[i]; });
      var hi = Math.max.apply(null, cyc), lo = Math.min.apply(null, cyc);
      /* weigh each layer by its share of the network's cycles, so a big layer leads */
      var share = hi / Math.max.apply(null, ids.map(function (id) { return DATA.estimates[id].total || 1; }));
      var score = 100 * (hi - lo) / Math.max.apply(null, ids.map(function (id) { return DATA.estimates[id].total || 1; })) +
        share * (Math.max.apply(null, util) - Math.min.apply(null, util));
      if (score > 0.05 || Math.max.apply(null, macs) !== Math.min.apply(null, macs)) {
        rows.push({ i: i, score: score, cycles: cyc, util: util, macs: macs });
      }
    }
    rows.sort(function (a, b) { return b.score - a.score || a.i - b.i; });
    return rows;
  }

  function differTable(box, ids, heads, rows) {
    if (!box || !rows.length) return;
    var first = DATA.estimates[ids[0]];
    box.appendChild(el("h4", {}, "Layers that differ most"));
    var table = el("table"), head = el("tr");
    ["layer", "operator"].forEach(function (h) { head.appendChild(el("th", {}, h)); });
    heads.forEach(function (h) { head.appendChild(el("th", { "class": "n" }, h + " cycles")); });
    heads.forEach(function (h) { head.appendChild(el("th", { "class": "n" }, h + " util %")); });
    head.appendChild(el("th", { "class": "n" }, "MACs vs first"));
    head.appendChild(el("th", {}, "name"));
    var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
    var tbody = el("tbody");
    rows.forEach(function (r, k) {
      var tr = el("tr", k === 0 ? { "class": "top" } : {});
      tr.appendChild(el("td", {}, String(first.index[r.i])));
      tr.appendChild(el("td", {}, first.op[r.i]));
      r.cycles.forEach(function (c) { tr.appendChild(el("td", { "class": "n" }, num(c))); });
      r.util.forEach(function (u) { tr.appendChild(el("td", { "class": "n" }, fmt1.format(u))); });
      var m = r.macs.slice(1).map(function (x) { return pct(x, r.macs[0]) || "same"; }).join(" / ");
      tr.appendChild(el("td", { "class": "n" }, m));
      tr.appendChild(el("td", { "class": "name" }, first.name[r.i]));
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    box.appendChild(table);
  }

  function drawEstimate(details) {
    if (details.getAttribute("data-drawn")) return;
    details.setAttribute("data-drawn", "1");
    var id = details.getAttribute("data-estimate");
    layerChart(id, details.querySelector("canvas.layer-chart"));
    layerTable(id, details.querySelector("table.layers"));
  }

  document.querySelectorAll("details.estimate").forEach(function (details) {
    if (details.open) drawEstimate(details);
    details.addEventListener("toggle", function () { if (details.open) drawEstimate(details); });
  });
  document.querySelectorAll(".group[data-aligned='yes']").forEach(groupChart);
  document.querySelectorAll("table.sortable.overview").forEach(makeSortable);
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.layer-link") : null;
    if (!link) return;
    var details = link.closest("details.estimate");
    details.open = true;
    drawEstimate(details);
    var row = document.getElementById(link.getAttribute("href").slice(1));
    if (row) {
      event.preventDefault();
      row.scrollIntoView({ block: "center" });
      row.classList.add("flash");
      setTimeout(function () { row.classList.remove("flash"); }, 2500);
    }
  });
  window.ethosuReport = { charts: charts, ready: true };
  document.body.setAttribute("data-ready", "1");
})();
