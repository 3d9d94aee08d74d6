// weightstore report --format html: the chart, the histograms and the table sorting.
// Inlined into the page with the report's data (<script id="report-data">); no library,
// nothing from the network, so the page works from file://.
"use strict";
(() => {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const tooltip = document.getElementById("tooltip");
  const PALETTE = ["#1f6feb", "#e8590c", "#16a34a", "#9333ea", "#dc2626", "#0891b2",
                   "#ca8a04", "#db2777", "#4b5563", "#65a30d"];

  function el(name, attrs = {}, parent = null, text = null) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    if (parent) parent.append(node);
    return node;
  }

  /** "4.6 kB", "1.66 MB": decimal units, as file sizes are usually read. */
  function bytesText(b) {
    const units = [[1e9, "GB"], [1e6, "MB"], [1e3, "kB"]];
    for (const [size, unit] of units) {
      if (b >= size) return `${+(b / size).toPrecision(3)} ${unit}`;
    }
    return `${b} B`;
  }

  // --- tooltip ----------------------------------------------------------------------

  function showTip(event, html) {
    tooltip.innerHTML = html;
    tooltip.style.display = "block";
    const pad = 14;
    const { innerWidth: w, innerHeight: h } = window;
    const r = tooltip.getBoundingClientRect();
    let x = event.clientX + pad, y = event.clientY + pad;
    if (x + r.width > w - 4) x = event.clientX - r.width - pad;
    if (y + r.height > h - 4) y = event.clientY - r.height - pad;
    tooltip.style.left = `${Math.max(4, x)}px`;
    tooltip.style.top = `${Math.max(4, y)}px`;
  }
  const hideTip = () => { tooltip.style.display = "none"; };

  const escape = (s) => String(s).replace(/[&<>"]/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

  /** The tooltip of a row: its cells, as the table (and the text report) show them. */
  function rowTip(row) {
    const c = Object.fromEntries(DATA.columns.map((name, i) => [name, row.cells[i]]));
    const lines = [`<b>${escape(row.label)}</b>`,
      `${escape(c.bytes)} bytes (${escape(c["B/weight"])} B/weight, ${escape(c["vs src"])} the source)`,
      `accuracy ${escape(c.accuracy)}, ${escape(c.changed)} predictions changed`,
      row.exact ? "bit-exact round trip" : `lossy (${escape(c.precision)}): max abs error ` +
        `${escape(c["max abs err"])}, max rel ${escape(c["max rel err"])}, ${escape(c["max ULP"])} ULP`,
      `write ${escape(c["write ms"])} ms, read ${escape(c["read ms"])} ms`];
    lines.push(`peak ${escape(c["peak KiB"])} KiB to load; lazy open: ${escape(c.lazy)}, ` +
      `one tensor in ${escape(c["1-tensor ms"])} ms`);
    if (row.pareto) {
      lines.push("on the frontier: the smallest file at its accuracy among the rows " +
        "a user would accept (see the notes)");
    }
    return lines.join("<br>");
  }

  // --- linking the chart and the table ---------------------------------------------

  function highlight(section, index, on) {
    document.querySelectorAll(`[data-section="${section}"][data-row="${index}"]`)
      .forEach((node) => node.classList.toggle("hot", on));
  }

  // --- the size/accuracy chart -----------------------------------------------------

  function drawChart(svg, sectionIndex, full) {
    const section = DATA.sections[sectionIndex];
    const rows = section.rows;
    const h = section.headline;
    svg.replaceChildren();
    const W = 1200, H = 360, M = { l: 74, r: 24, t: 14, b: 48 };
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    if (!rows.length) return;
    const text = !h.text_skipped;  // the text dump was measured (not for large weights)
    const sizes = rows.map((r) => r.bytes).concat(text ? [h.text_dump_bytes] : []);
    const lx0 = Math.log10(Math.min(...sizes) / 1.4), lx1 = Math.log10(Math.max(...sizes) * 1.4);
    const X = (b) => M.l + (Math.log10(b) - lx0) / (lx1 - lx0) * (W - M.l - M.r);
    // y: the full range, or zoomed on the accuracies near the source's (rows far below are
    // drawn on a band at the bottom, their values in the tooltip)
    const accs = rows.map((r) => r.accuracy).concat(text ? [h.accuracy, h.text_accuracy]
      : [h.accuracy]);
    let y0 = Math.min(...accs), y1 = Math.max(...accs);
    const floor = h.accuracy - section.zoom_points;
    const zoomed = !full && y0 < floor;
    if (zoomed) y0 = Math.min(...accs.filter((a) => a >= floor));
    const pad = Math.max((y1 - y0) * 0.08, 0.0005);
    y0 -= pad; y1 += pad;
    const band = zoomed ? 28 : 0;
    const Y = (a) => a < y0 ? H - M.b - band / 2
      : H - M.b - band - (a - y0) / (y1 - y0) * (H - M.t - M.b - band);

    // grid and axes
    for (let k = Math.floor(lx0); k <= Math.ceil(lx1); k++) {
      for (const m of [1, 2, 5]) {
        const b = m * 10 ** k;
        if (Math.log10(b) < lx0 || Math.log10(b) > lx1) continue;
        const x = X(b);
        el("line", { x1: x, x2: x, y1: M.t, y2: H - M.b, class: "grid",
                     "stroke-width": m === 1 ? 1.2 : 0.6 }, svg);
        el("text", { x, y: H - M.b + 16, "text-anchor": "middle", class: "tick" }, svg,
          bytesText(b));
      }
    }
    const span = y1 - y0;
    const step = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2].find((s) => span / s <= 8) ?? 0.5;
    for (let a = Math.ceil(y0 / step) * step; a <= y1; a += step) {
      const y = Y(a);
      el("line", { x1: M.l, x2: W - M.r, y1: y, y2: y, class: "grid" }, svg);
      el("text", { x: M.l - 8, y: y + 4, "text-anchor": "end", class: "tick" }, svg,
        a.toFixed(step < 0.01 ? 3 : 2));
    }
    if (zoomed) {
      el("rect", { x: M.l, y: H - M.b - band, width: W - M.l - M.r, height: band, class: "below" }, svg);
      el("text", { x: M.l - 8, y: H - M.b - band / 2 + 4, "text-anchor": "end", class: "tick" }, svg,
        `< ${(y0 + pad).toFixed(3)}`);
    }
    el("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, class: "axis" }, svg);
    el("line", { x1: M.l, x2: M.l, y1: M.t, y2: H - M.b, class: "axis" }, svg);
    el("text", { x: (M.l + W - M.r) / 2, y: H - 10, "text-anchor": "middle", class: "axis-title" },
      svg, "file size (bytes, log scale)");
    el("text", { x: 16, y: (M.t + H - M.b) / 2, "text-anchor": "middle", class: "axis-title",
                 transform: `rotate(-90 16 ${(M.t + H - M.b) / 2})` }, svg,
      "accuracy on the 10,000 test images");

    // the frontier, as steps: each point's accuracy holds until the next, larger file
    const front = rows.filter((r) => r.pareto).sort((a, b) => a.bytes - b.bytes);
    if (front.length) {
      let d = `M ${X(front[0].bytes)} ${Y(front[0].accuracy)}`;
      for (let i = 1; i < front.length; i++) {
        d += ` H ${X(front[i].bytes)} V ${Y(front[i].accuracy)}`;
      }
      d += ` H ${W - M.r}`;
      el("path", { d, class: "frontier" }, svg);
    }

    // the notes' str(network) text dump, for reference (not a row)
    if (text) {
      const tx = X(h.text_dump_bytes), ty = Y(h.text_accuracy);
      const ref = el("rect", { x: tx - 5, y: ty - 5, width: 10, height: 10, class: "reference" }, svg);
      ref.addEventListener("mousemove", (e) => showTip(e, `<b>str(network) text dump</b> (the notes')` +
        `<br>${h.text_dump_bytes.toLocaleString("en")} bytes, accuracy ${h.text_accuracy.toFixed(4)}` +
        "<br>a reference, not a row of the table"));
      ref.addEventListener("mouseleave", hideTip);
    }

    // one point per row: exact rows first, so that lossy ones stay visible on top
    const order = rows.map((r, i) => i).sort((a, b) => rows[b].exact - rows[a].exact);
    for (const i of order) {
      const r = rows[i];
      const x = X(r.bytes), y = Y(r.accuracy);
      if (r.pareto) el("circle", { cx: x, cy: y, r: 10, class: "ring" }, svg);
      const p = el("circle", { cx: x, cy: y, r: 5.5, class: `point ${r.exact ? "exact" : "lossy"}`,
                               "data-section": sectionIndex, "data-row": i }, svg);
      p.addEventListener("mousemove", (e) => { showTip(e, rowTip(r)); highlight(sectionIndex, i, true); });
      p.addEventListener("mouseleave", () => { hideTip(); highlight(sectionIndex, i, false); });
      p.addEventListener("click", () => document.querySelector(
        `tr[data-section="${sectionIndex}"][data-row="${i}"]`)?.scrollIntoView({ block: "center" }));
      if (r.pareto) {
        const below = r.accuracy < y0;
        el("text", { x: x + 12, y: y - 9, class: "label" }, svg,
          `${r.label}${below ? ` (${r.accuracy.toFixed(4)})` : ""}`);
      }
    }
    svg.dataset.points = String(rows.length);
  }

  // --- per-tensor error histograms -------------------------------------------------

  function binLabel(k, edges) {
    if (k === 0) return "exact";
    if (k === 1) return `< ${edges[0].toExponential(0)}`;
    if (k === edges.length + 1) return `≥ ${edges[edges.length - 1]}`;
    return `${edges[k - 2].toExponential(0)} to ${edges[k - 1].toExponential(0)}`;
  }

  function drawHistograms(container, sectionIndex) {
    const section = DATA.sections[sectionIndex];
    const edges = DATA.error_bin_edges;
    const lossy = section.rows.map((r, i) => [r, i]).filter(([r]) => r.tensor_errors.length);
    if (!lossy.length) {
      container.textContent = "Every round trip is exact: no errors to show.";
      return;
    }
    // one range of bins for every card of the section, so that they compare
    let lo = Infinity, hi = -Infinity;
    for (const [r] of lossy) {
      for (const t of r.tensor_errors) {
        t.histogram.forEach((c, k) => { if (c && k > 0) { lo = Math.min(lo, k); hi = Math.max(hi, k); } });
      }
    }
    lo = Math.max(1, lo - 1); hi = Math.min(edges.length + 1, hi + 1);
    const bins = [0]; // the exact values first, then the error bins in use
    for (let k = lo; k <= hi; k++) bins.push(k);
    const names = [...new Set(lossy.flatMap(([r]) => r.tensor_errors.map((t) => t.name)))];
    const color = (name) => PALETTE[names.indexOf(name) % PALETTE.length];
    // past the palette's ten colours, dashed lines tell the tensors apart
    const dashed = (name) => Math.floor(names.indexOf(name) / PALETTE.length) % 2 === 1;

    for (const [r, i] of lossy) {
      const card = document.createElement("div");
      card.className = "hist";
      card.dataset.section = sectionIndex;
      card.dataset.row = i;
      const worst = Math.max(...r.tensor_errors.map((t) => t.max_abs_error ?? Infinity));
      card.innerHTML = `<h4>${escape(r.label)}</h4><p>${escape(r.precision)} · max abs error ` +
        `${worst.toPrecision(3)} · accuracy ${r.accuracy.toFixed(4)}</p>`;
      const W = 380, H = 168, M = { l: 38, r: 8, t: 8, b: 34 };
      const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
                              "aria-label": `error histogram of ${r.label}` }, card);
      const bw = (W - M.l - M.r) / bins.length;
      const X = (j) => M.l + (j + 0.5) * bw;
      const Y = (share) => H - M.b - share * (H - M.t - M.b);
      for (const s of [0, 0.5, 1]) {
        el("line", { x1: M.l, x2: W - M.r, y1: Y(s), y2: Y(s), class: "grid" }, svg);
        el("text", { x: M.l - 5, y: Y(s) + 4, "text-anchor": "end", class: "tick" }, svg,
          `${s * 100}%`);
      }
      // the exact values apart from the errors, then a label at each decade
      el("line", { x1: M.l + bw, x2: M.l + bw, y1: M.t, y2: H - M.b, class: "axis",
                   "stroke-dasharray": "3 3" }, svg);
      bins.forEach((k, j) => {
        let text = null;
        if (k === 0) text = "0";
        else if (k === edges.length + 1) text = "≥1";
        else if (k >= 2 && (k - 2) % 2 === 0) text = `1e${Math.round(Math.log10(edges[k - 2]))}`;
        if (text === null || (k > 0 && j < 3) || (k > 0 && k < edges.length + 1 && (k - 2) % 4 !== 0 && bins.length > 14)) return;
        el("text", { x: k === 0 || k === edges.length + 1 ? X(j) : M.l + j * bw, y: H - M.b + 13, "text-anchor": "middle",
                     class: "tick" }, svg, text);
      });
      el("text", { x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle", class: "tick" }, svg,
        "absolute error (log scale; 0: read back exactly)");
      el("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, class: "axis" }, svg);
      for (const t of r.tensor_errors) {
        const shares = bins.map((k) => t.values ? t.histogram[k] / t.values : 0);
        const d = shares.map((s, j) => `${j ? "L" : "M"} ${X(j).toFixed(1)} ${Y(s).toFixed(1)}`).join(" ");
        el("path", { d, fill: "none", stroke: color(t.name), "stroke-width": 1.7,
                     "stroke-linejoin": "round", "stroke-dasharray": dashed(t.name) ? "5 3" : "none" },
           svg);
        shares.forEach((s, j) => {
          if (!t.histogram[bins[j]]) return;
          el("circle", { cx: X(j), cy: Y(s), r: 2.4, fill: color(t.name) }, svg);
          const target = el("circle", { cx: X(j), cy: Y(s), r: 7, fill: "transparent" }, svg);
          target.addEventListener("mousemove", (e) => showTip(e,
            `<b>${escape(r.label)}: ${escape(t.name)}</b><br>${binLabel(bins[j], edges)}: ` +
            `${t.histogram[bins[j]].toLocaleString("en")} of ${t.values.toLocaleString("en")} values ` +
            `(${(s * 100).toFixed(1)}%)<br>max abs error ${(t.max_abs_error ?? Infinity).toPrecision(3)}`));
          target.addEventListener("mouseleave", hideTip);
        });
      }
      const keys = document.createElement("div");
      keys.className = "keys";
      keys.innerHTML = r.tensor_errors.map((t) => `<span><i style="${dashed(t.name)
        ? `border-top:3px dashed ${color(t.name)};height:0` : `background:${color(t.name)}`}"></i>` +
        `${escape(t.name)} ≤ ${(t.max_abs_error ?? Infinity).toPrecision(2)}</span>`).join("");
      card.append(keys);
      container.append(card);
    }
  }

  // --- the table: sort by any column -----------------------------------------------

  function sortable(table) {
    const heads = [...table.tHead.rows[0].cells];
    heads.forEach((th, col) => th.addEventListener("click", () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const numeric = th.classList.contains("num") || th.dataset.kind === "bool";
      const key = (tr) => {
        const v = tr.cells[col].dataset.sort;
        return numeric ? Number(v) : v.toLowerCase();
      };
      const body = table.tBodies[0];
      const rows = [...body.rows];
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        const c = x < y ? -1 : x > y ? 1 : Number(a.dataset.row) - Number(b.dataset.row);
        return ascending ? c : -c;
      });
      body.append(...rows);
    }));
    for (const tr of table.tBodies[0].rows) {
      tr.addEventListener("mouseenter", () => highlight(tr.dataset.section, tr.dataset.row, true));
      tr.addEventListener("mouseleave", () => highlight(tr.dataset.section, tr.dataset.row, false));
    }
  }

  // --- the page ----------------------------------------------------------------------

  DATA.sections.forEach((_, s) => {
    const svg = document.querySelector(`svg.chart[data-section="${s}"]`);
    const full = document.querySelector(`input.full-range[data-section="${s}"]`);
    drawChart(svg, s, full.checked);
    full.addEventListener("change", () => drawChart(svg, s, full.checked));
    drawHistograms(document.querySelector(`.hists[data-section="${s}"]`), s);
    sortable(document.querySelector(`table.rows[data-section="${s}"]`));
  });
  document.body.dataset.ready = "yes";
})();
