// Waiting times per region (lägesbild), the care navigators' provider search and the units'
// free-capacity feed: shared by the region page, the operator console and the public page.
// Everything is read from the API (or, on the public page, from its public reads); nothing here
// judges staleness or suppression itself: the server says which figures are stale or suppressed.
"use strict";

const BROKER = (() => {
  const { el, table, replace, status, errorText, chart } = NVF;
  const SVG = "http://www.w3.org/2000/svg";

  // --- small formatting ------------------------------------------------------------------------
  const pct = (v) => `${(v * 100).toFixed(1)} %`;
  const days = (v) => `${Math.round(v)} d`;
  const count = (v) => Number(v).toLocaleString("sv-SE");
  const suppressed = () => el("span", { class: "suppressed", title: "fewer than 5 patients: not shown" }, "suppressed");
  const noData = () => el("span", { class: "muted" }, "no data");

  // One figure of a month's cell: the value, "suppressed" for a small cell, "no data" when absent.
  function figure(cell, key, format) {
    if (!cell) return noData();
    if (cell.suppressed) return suppressed();
    const v = cell[key];
    return v === null || v === undefined ? noData() : format(v);
  }

  function staleMark(v) {
    if (!v.has_data) return noData();
    if (v.stale) {
      return el("span", { class: "stale", title: `the newest figures (${v.newest}) are more than 6 weeks old` },
        "stale", v.stale_from ? ` since ${v.stale_from}` : "");
    }
    return el("span", { class: "fresh", title: v.stale_from ? `stale from ${v.stale_from} unless newer figures come` : "" },
      "up to date");
  }

  // A 13-month sparkline of the share within 90 days: a line through the months with figures,
  // broken where a month is missing or suppressed; the newest month is dotted.
  function sparkline(trend, label) {
    const W = 100, H = 24, P = 3;
    const values = trend.map((p) => p.share_within_90);
    const known = values.filter((v) => v !== null && v !== undefined);
    if (!known.length) return noData();
    const lo = Math.min(...known), hi = Math.max(...known), span = hi - lo || 1;
    const x = (i) => P + (i * (W - 2 * P)) / Math.max(1, values.length - 1);
    const y = (v) => H - P - ((v - lo) / span) * (H - 2 * P);
    const node = (tag, attrs) => {
      const n = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
      return n;
    };
    const first = known[0], last = known[known.length - 1];
    const root = node("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "sparkline", role: "img",
      "aria-label": `${label}: ${pct(first)} to ${pct(last)} over ${values.length} months` });
    let run = [];
    const flush = () => {
      if (run.length > 1) root.append(node("polyline", { points: run.join(" "), fill: "none", class: "spark-line" }));
      run = [];
    };
    values.forEach((v, i) => { if (v === null || v === undefined) flush(); else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`); });
    flush();
    const lastIndex = values.length - 1 - [...values].reverse().findIndex((v) => v !== null && v !== undefined);
    root.append(node("circle", { cx: x(lastIndex), cy: y(values[lastIndex]), r: 2.2, class: "spark-dot" }));
    return root;
  }

  // --- waiting times ---------------------------------------------------------------------------
  function waitsTable(data) {
    const rows = data.items;
    const t = table([
      { label: "Region", render: (v) => `${v.region_name} (${v.region})` },
      { label: "Newest month", render: (v) => v.newest || noData() },
      { label: "Waiting", render: (v) => figure(v.waiting, "count", count), cls: "num" },
      { label: "Within 90 days", render: (v) => figure(v.waiting, "share_within_90", pct), cls: "num" },
      { label: "Median days waited", render: (v) => figure(v.waiting, "median_days", days), cls: "num" },
      { label: "Operated in month", render: (v) => figure(v.completed, "count", count), cls: "num" },
      { label: "Median wait, operated", render: (v) => figure(v.completed, "median_days", days), cls: "num" },
      { label: "Figures", render: staleMark },
      { label: "Trend, 13 months", render: (v) => sparkline(v.trend, `${v.region_name}, share within 90 days`) },
    ], rows, { rowAttrs: (v) => ({ class: `waits${v.stale ? " stale-row" : ""}`, "data-region": v.region }) });
    t.prepend(el("caption", {}, `${data.care_area_name}: each region's newest month, as of ${data.today}. `,
      "Figures more than 6 weeks past their due date are marked stale; cells of fewer than 5 patients are suppressed."));
    return t;
  }

  function trendChart(data, region) {
    const v = data.items.find((r) => r.region === region);
    const title = v ? `Share waiting within 90 days, %: ${v.region_name}, ${data.care_area_name}` : "Share waiting within 90 days";
    const months = v ? v.trend.map((p) => p.period) : [];
    const series = v ? { [v.region_name]: Object.fromEntries(v.trend.map((p) => [p.period,
      p.share_within_90 === null ? null : +(p.share_within_90 * 100).toFixed(1)])) } : {};
    const fig = chart(title, months, series, "line", { max: 100 });
    fig.classList.add("trend");
    fig.dataset.region = region || "";
    if (v && months.length) {
      const missing = v.trend.filter((p) => p.share_within_90 === null).length;
      fig.append(el("p", { class: "muted" }, `${months.length} months, ${months[0] || ""} to ${months[months.length - 1] || ""}`,
        missing ? `; ${missing} missing or suppressed` : "", v.stale ? "; these figures are stale" : ""));
    }
    return fig;
  }

  // A care area choice, a table of every region and one region's trend over 13 months.
  // source(area) gives the URL to read; myRegion is where the trend starts (the caller's region).
  function waitsPanel(root, reference, source, myRegion) {
    const areaSelect = el("select", { name: "care_area" },
      reference.care_areas.map((a) => el("option", { value: a.code }, a.name)));
    const regionSelect = el("select", { name: "trend_region" },
      reference.regions.map((r) => el("option", { value: r.code }, `${r.name} (${r.code})`)));
    regionSelect.value = myRegion && reference.regions.some((r) => r.code === myRegion) ? myRegion : reference.regions[0].code;
    const state = el("p", { id: "waits-status", class: "status", role: "status", "aria-live": "polite" });
    const body = el("div", { class: "waits-table" });
    const trend = el("div", { class: "waits-trend" });
    let data = null;
    const drawTrend = () => { if (data && data.items.some((v) => v.has_data)) replace(trend, trendChart(data, regionSelect.value)); };
    async function load() {
      status(state, "loading…", "");
      try {
        data = await source(areaSelect.value);
        const stale = data.items.filter((v) => v.stale).map((v) => v.region_name);
        const without = data.items.filter((v) => !v.has_data).length;
        if (without === data.items.length) {
          // Twenty-one rows of "no data" say less than one line.
          replace(body, el("p", { class: "muted" }, `No region has reported waiting times for ${data.care_area_name} yet.`));
          replace(trend);
          status(state, `No waiting-time figures for ${data.care_area_name} yet.`, "warn");
        } else {
          replace(body, waitsTable(data));
          drawTrend();
          status(state, `${data.items.length} regions, ${data.care_area_name}` +
            (without ? `, ${without} without figures` : "") +
            (stale.length ? `; stale: ${stale.join(", ")}` : "; every region's figures up to date"),
          stale.length || without ? "warn" : "ok");
        }
      } catch (e) { status(state, errorText(e), "error"); }
    }
    areaSelect.addEventListener("change", load);
    regionSelect.addEventListener("change", drawTrend);
    replace(root, el("form", { class: "filters", onsubmit: (ev) => ev.preventDefault() },
      el("label", {}, "Care area", areaSelect), el("label", {}, "Trend for region", regionSelect)),
    state, body, trend);
    return load();
  }

  // --- the free-capacity feed ------------------------------------------------------------------
  function capacityCell(c) {
    if (!c) return el("span", { class: "muted" }, "no capacity report");
    return el("span", { class: "capacity" },
      el("span", { class: "band" }, c.wait_band ? `wait ${c.wait_band.label}` : "no wait estimate"), " · ",
      el("span", { class: c.free_capacity ? "free yes" : "free no" }, `free capacity: ${c.free_capacity ? "yes" : "no"}`),
      " · ", `updated ${c.updated_on}`, c.stale ? el("span", { class: "stale" }, " stale") : "");
  }

  function capacityTable(items, areaNames) {
    if (!items.length) return el("p", { class: "muted" }, "No unit has reported capacity yet.");
    return table([
      { label: "Unit (HSA-id)", key: "unit_hsa_id" },
      { label: "Region", render: (c) => `${c.region_name} (${c.region})` },
      { label: "Care area", render: (c) => areaNames[c.care_area] || c.care_area },
      { label: "Estimated wait", render: (c) => c.wait_band ? c.wait_band.label : "–" },
      { label: "Free capacity", render: (c) => el("span", { class: c.free_capacity ? "free yes" : "free no" }, c.free_capacity ? "yes" : "no") },
      { label: "Places", key: "places", cls: "num" },
      { label: "Updated", key: "updated_on" },
      { label: "Report", render: (c) => c.stale
        ? el("span", { class: "stale", title: "not updated for more than 6 weeks" }, "stale")
        : el("span", { class: "fresh" }, "current") },
    ], items, { rowAttrs: (c) => ({ class: `unit-capacity${c.stale ? " stale-row" : ""}`, "data-unit": c.unit_hsa_id }) });
  }

  function capacityPanel(root, reference, today) {
    const areaNames = Object.fromEntries(reference.care_areas.map((a) => [a.code, a.name]));
    const areaSelect = el("select", { name: "care_area" }, el("option", { value: "" }, "all care areas"),
      reference.care_areas.map((a) => el("option", { value: a.code }, a.name)));
    const regionSelect = el("select", { name: "region" }, el("option", { value: "" }, "all regions"),
      reference.regions.map((r) => el("option", { value: r.code }, `${r.name} (${r.code})`)));
    const state = el("p", { id: "capacity-status", class: "status", role: "status", "aria-live": "polite" });
    const body = el("div", { class: "scroll capacity-feed" });
    async function load() {
      const qs = new URLSearchParams({ today: today() });
      if (areaSelect.value) qs.set("care_area", areaSelect.value);
      if (regionSelect.value) qs.set("region", regionSelect.value);
      try {
        const data = await NVF.get(`/v1/capacity?${qs}`);
        replace(body, capacityTable(data.items, areaNames));
        const stale = data.items.filter((c) => c.stale).length;
        status(state, `${data.items.length} unit reports as of ${data.today}${stale ? `, ${stale} stale` : ""}`, stale ? "warn" : "ok");
      } catch (e) { status(state, errorText(e), "error"); }
    }
    areaSelect.addEventListener("change", load);
    regionSelect.addEventListener("change", load);
    replace(root, el("form", { class: "filters", onsubmit: (ev) => ev.preventDefault() },
      el("label", {}, "Care area", areaSelect), el("label", {}, "Unit's region", regionSelect)), state, body);
    return load;
  }

  // --- provider search -------------------------------------------------------------------------
  function contact(c) {
    if (!c) return [];
    return [el("span", { class: "contact-name" }, c.name),
      c.phone ? el("span", {}, "☎ ", el("a", { href: `tel:${c.phone.replace(/[^\d+]/g, "")}` }, c.phone)) : null,
      c.email ? el("span", {}, el("a", { href: `mailto:${c.email}` }, c.email)) : null,
      c.address ? el("span", { class: "muted" }, c.address) : null];
  }

  function agreementCell(h, regionNames) {
    const validity = h.valid_from ? `valid ${h.valid_from} – ${h.valid_to || "until ended"}` : "";
    if (h.with_my_region) {
      return el("span", { class: "agreement mine" }, el("strong", {}, "Agreement with your region"),
        ` ${h.agreement_id}`, validity ? el("span", { class: "muted" }, ` (${validity})`) : "");
    }
    return el("span", { class: "agreement other" }, "No agreement with your region",
      el("span", { class: "muted" }, ` (agreements with ${h.purchasers.map((p) => regionNames[p] || p).join(", ")})`));
  }

  function resultsTable(hits, capacityByUnit, regionNames) {
    return table([
      { label: "#", key: "rank", cls: "num" },
      { label: "Unit", render: (h) => el("span", { class: "unit" }, el("strong", {}, h.unit_name),
        el("span", { class: "muted hsa" }, h.unit_hsa_id || "no HSA-id")) },
      { label: "Region", render: (h) => `${h.provider_name} (${h.provider})` },
      { label: "Care area", render: (h) => el("span", {}, h.care_area_name,
        el("span", { class: "muted" }, h.exact ? ` (“${h.matched_term}”)` : ` (near spelling of “${h.matched_term}”)`)) },
      { label: "Unit contact", cls: "what", render: (h) => el("span", { class: "contact" }, contact(h.unit_contact)) },
      { label: "Region's contact", cls: "what", render: (h) => el("span", { class: "contact" }, contact(h.region_contact)) },
      { label: "Agreement", cls: "what", render: (h) => agreementCell(h, regionNames) },
      { label: "Free capacity", cls: "what", render: (h) => capacityCell(capacityByUnit[`${h.unit_hsa_id}|${h.care_area}`]) },
    ], hits, { rowAttrs: (h) => ({ class: `provider${h.with_my_region ? " mine" : ""}`, "data-unit": h.unit_hsa_id || "" }) });
  }

  function glossary(reference) {
    return el("details", { class: "glossary" }, el("summary", {}, "Glossary: the words the search knows"),
      el("dl", {}, reference.care_areas.flatMap((a) => [
        el("dt", {}, `${a.name} (${a.code})`),
        el("dd", {}, a.words.join(", "), a.codes.length ? el("span", { class: "muted" }, ` · codes ${a.codes.join(", ")}`) : "")])));
  }

  // The care navigator's search: words, the providing region, "has agreement with my region".
  function searchPanel(root, reference, today, myRegion) {
    const regionNames = Object.fromEntries(reference.regions.map((r) => [r.code, r.name]));
    const words = el("input", { name: "q", type: "search", size: 28, maxlength: 200, list: "search-words",
      placeholder: "grå starr, ljumskbråck, knäprotes…", autocomplete: "off" });
    const suggestions = el("datalist", { id: "search-words" },
      reference.care_areas.flatMap((a) => a.words.map((w) => el("option", { value: w }))));
    const region = el("select", { name: "provider_region" }, el("option", { value: "" }, "any region"),
      reference.regions.map((r) => el("option", { value: r.code }, `${r.name} (${r.code})`)));
    const mine = el("input", { type: "checkbox", name: "has_agreement", disabled: !myRegion });
    const state = el("p", { id: "search-summary", class: "status", role: "status", "aria-live": "polite" });
    const results = el("div", { class: "scroll tall search-results", "aria-label": "search results" });
    let asked = 0;
    async function search() {
      const q = words.value.trim();
      if (!q) { status(state, "Type what the patient needs, in plain words.", "warn"); replace(results); return; }
      const qs = new URLSearchParams({ q, as_of: today(), limit: "100" });
      if (region.value) qs.set("provider_region", region.value);
      if (mine.checked) qs.set("has_agreement", "true");
      const ticket = ++asked;
      status(state, "searching…", "");
      try {
        const [found, capacity] = await Promise.all([NVF.get(`/v1/providers?${qs}`),
          NVF.get(`/v1/capacity?${new URLSearchParams({ today: today() })}`)]);
        if (ticket !== asked) return; // a newer search has been asked for meanwhile
        const byUnit = Object.fromEntries(capacity.items.map((c) => [`${c.unit_hsa_id}|${c.care_area}`, c]));
        if (!found.care_areas.length) {
          status(state, `No care area matches “${q}”: see the glossary for words that work.`, "warn");
          replace(results);
          return;
        }
        const taken = found.care_areas.map((a) => a.exact ? a.name : `${a.name} (near spelling of “${a.matched_term}”)`).join(", ");
        const n = found.items.length;
        status(state, `${n} ${n === 1 ? "unit" : "units"} for ${taken}` +
          `${found.has_agreement ? ", with an agreement with your region" : ""}` +
          `${region.value ? ` in ${regionNames[region.value]}` : ""}`, n ? "ok" : "warn");
        replace(results, n ? resultsTable(found.items, byUnit, regionNames)
          : el("p", { class: "muted" }, "No unit found: widen the search (any region, without the agreement filter)."));
      } catch (e) {
        if (ticket === asked) status(state, errorText(e), "error");
      }
    }
    const form = el("form", { class: "filters search-form", role: "search",
      onsubmit: (ev) => { ev.preventDefault(); search(); } },
    el("label", {}, "What the patient needs (plain words)", words), suggestions,
    el("label", {}, "Provider's region", region),
    el("label", { class: "check" }, mine, " Has agreement with my region"),
    el("button", { type: "submit" }, "Search"));
    region.addEventListener("change", () => { if (words.value.trim()) search(); });
    mine.addEventListener("change", () => { if (words.value.trim()) search(); });
    replace(root, form, state, results, glossary(reference));
  }

  const reference = () => fetch("/public/reference.json", { credentials: "same-origin" }).then((r) => {
    if (!r.ok) throw new Error(`reference data: HTTP ${r.status}`);
    return r.json();
  });

  return { waitsPanel, capacityPanel, searchPanel, reference, sparkline, waitsTable };
})();
