// Shared by the pages: API calls with the session cookie, small DOM helpers, SVG charts.
"use strict";

const NVF = (() => {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.detail || body.title)) || `HTTP ${status}`);
      this.status = status; this.body = body;
    }
  }

  async function call(method, path, body, headers) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...(headers || {}) } };
    if (method !== "GET") {
      init.headers["X-NVF-Page"] = "1";
      if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    }
    const res = await fetch(path, init);
    if (res.status === 401) { window.location.assign("/login?error=expired"); throw new ApiError(401, null); }
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) throw new ApiError(res.status, data);
    return { data, etag: res.headers.get("ETag"), status: res.status };
  }

  const get = async (path) => (await call("GET", path)).data;

  // A case command through the API: read the case's ETag, then POST with If-Match and a fresh key.
  async function caseCommand(caseRef, action, body) {
    const ref = encodeURIComponent(caseRef);
    const read = await call("GET", `/v1/cases/${ref}`);
    return call("POST", `/v1/cases/${ref}/${action}`, body || {}, { "If-Match": read.etag, "Idempotency-Key": uuid() });
  }

  function status(node, text, kind) {
    node.textContent = text;
    node.className = `status ${kind || ""}`;
  }

  function table(columns, rows, opts) {
    const head = el("tr", {}, columns.map((c) => el("th", {}, c.label)));
    const body = rows.map((r) => el("tr", (opts && opts.rowAttrs) ? opts.rowAttrs(r) : {},
      columns.map((c) => el("td", { class: c.cls }, c.render ? c.render(r) : r[c.key] ?? ""))));
    return el("table", { class: "grid" }, el("thead", {}, head), el("tbody", {}, body));
  }

  function replace(node, ...children) { node.replaceChildren(...children.flat()); }

  function every(ms, fn) {
    let stopped = false;
    const run = async () => {
      try { await fn(); } catch (e) { console.error(e); }
      if (!stopped) setTimeout(run, ms);
    };
    run();
    return () => { stopped = true; };
  }

  // --- charts: inline SVG, no library ---------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f6feb", "#d29922", "#2da44e", "#cf222e", "#8250df", "#1b7c83", "#bf3989", "#6e7781"];
  function svg(tag, attrs, ...children) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    for (const c of children.flat()) if (c !== null && c !== undefined) n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return n;
  }
  const fmt = (v) => (v === null || v === undefined) ? "–" : (Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("sv-SE") : (+v.toFixed(2)).toString());

  // series: {name: {category: value}}; kind "bar" stacks the series per category, "line" draws one line each.
  // opts.max fixes the top of the scale (a share in per cent: 100), so charts compare.
  function chart(title, categories, series, kind, opts) {
    const W = 420, H = 190, L = 46, B = 28, T = 8, R = 8;
    const names = Object.keys(series);
    const figure = el("figure", { class: "chart", "data-chart": title });
    figure.append(el("figcaption", {}, title));
    if (!categories.length || !names.length) { figure.append(el("p", { class: "empty" }, "no data yet")); return figure; }
    const totals = categories.map((c) => kind === "bar"
      ? names.reduce((s, n) => s + (series[n][c] || 0), 0)
      : Math.max(0, ...names.map((n) => series[n][c] || 0)));
    const max = (opts && opts.max) || Math.max(1e-9, ...totals);
    const x0 = L, w = W - L - R, h = H - T - B;
    const step = w / categories.length;
    const y = (v) => T + h - (v / max) * h;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart-svg" });
    root.append(svg("line", { x1: x0, y1: T + h, x2: W - R, y2: T + h, class: "axis" }));
    for (const f of [0, 0.5, 1]) {
      root.append(svg("text", { x: x0 - 4, y: y(max * f) + 4, "text-anchor": "end", class: "tick" }, fmt(max * f)));
      root.append(svg("line", { x1: x0, y1: y(max * f), x2: W - R, y2: y(max * f), class: "gridline" }));
    }
    categories.forEach((c, i) => {
      if (categories.length <= 8 || i % Math.ceil(categories.length / 8) === 0)
        root.append(svg("text", { x: x0 + step * (i + 0.5), y: H - 10, "text-anchor": "middle", class: "tick" }, /^\d{4}-\d{2}-\d{2}$/.test(c) ? c.slice(5) : String(c).slice(0, 14)));
    });
    names.forEach((name, si) => {
      const color = PALETTE[si % PALETTE.length];
      if (kind === "bar") {
        categories.forEach((c, i) => {
          const below = names.slice(0, si).reduce((s, n) => s + (series[n][c] || 0), 0);
          const v = series[name][c] || 0;
          if (!v) return;
          root.append(svg("rect", { x: x0 + step * i + step * 0.15, y: y(below + v), width: step * 0.7,
            height: Math.max(1, y(below) - y(below + v)), fill: color, class: "bar" },
          svg("title", {}, `${name} ${c}: ${fmt(v)}`)));
        });
      } else {
        const pts = categories.map((c, i) => [x0 + step * (i + 0.5), series[name][c]]).filter((p) => p[1] !== null && p[1] !== undefined);
        if (pts.length > 1) root.append(svg("polyline", { points: pts.map((p) => `${p[0]},${y(p[1])}`).join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
        for (const p of pts) root.append(svg("circle", { cx: p[0], cy: y(p[1]), r: 3.5, fill: color, class: "point" }, svg("title", {}, `${name}: ${fmt(p[1])}`)));
      }
    });
    figure.append(root);
    figure.append(el("div", { class: "legend" }, names.map((n, i) => el("span", {}, el("i", { class: `swatch c${i % PALETTE.length}` }), n))));
    return figure;
  }

  function errorText(e) { return e instanceof ApiError ? `${e.status}: ${e.message}` : String(e); }

  // The live stream as server-sent events; onEvent gets each bus entry (already filtered by the server).
  function live(params, onEvent, onState) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v) qs.append(k, v);
    const source = new EventSource(`/v1/stream?${qs}`);
    source.addEventListener("bus", (m) => onEvent(JSON.parse(m.data)));
    source.onopen = () => onState && onState("live");
    source.onerror = () => onState && onState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
    return source;
  }

  // Keep a person's session alive while the page is open: a fresh token at half its lifetime.
  async function keepSession() {
    let next = 60;
    try {
      const res = await fetch("/session/refresh", { method: "POST", credentials: "same-origin", headers: { "X-NVF-Page": "1" } });
      if (res.status === 401) { window.location.assign("/login?error=expired"); return; }
      next = Math.max(10, Number(res.headers.get("X-Session-Expires-In") || 120) / 2);
    } catch (e) { console.error(e); }
    setTimeout(keepSession, next * 1000);
  }

  function logoutButton() {
    return el("form", { method: "post", action: "/logout", class: "logout" }, el("button", { type: "submit" }, "Log out"));
  }

  return { keepSession, el, uuid, ApiError, call, get, caseCommand, status, table, replace, every, chart, errorText, live, logoutButton, fmt };
})();
