// The operator console: live tail, consumer groups, dead letters, the book, worklists, timelines, charts.
"use strict";
(() => {
  const { el, get, call, table, replace, every, chart, status, errorText, live, fmt } = NVF;
  const $ = (id) => document.getElementById(id);
  const MAX_ROWS = 500;
  const attention = { stuck: 0, dead: 0, past: 0, referrals: 0, holds: 0 };

  function renderAttention() {
    const card = (label, n, target, urgent) => el("a", { class: `card ${n && urgent ? "urgent" : ""}`, href: `#${target}` },
      el("strong", {}, String(n)), el("span", {}, label));
    replace($("attention-body"),
      card("dead letters", attention.dead, "dlq", true),
      card("stuck entries", attention.stuck, "groups", true),
      card("cases past the guarantee", attention.past, "worklists", true),
      card("referrals unacknowledged", attention.referrals, "worklists", false),
      card("holds awaiting an answer", attention.holds, "book", false));
  }

  // --- live tail ---------------------------------------------------------------------------------
  let source = null, paused = false, buffered = [];
  const caseLink = (ref) => ref ? el("a", { href: "#timeline", class: "case-link", "data-case": ref, onclick: () => showTimeline(ref) }, ref) : "";
  function tailRow(e) {
    const t = e.occurred_at ? e.occurred_at.slice(11, 19) : "";
    return el("tr", { class: "event", "data-type": e.type || "", "data-case": e.case_ref || "" },
      el("td", {}, t), el("td", {}, e.stream.split(":").slice(1).join(":")), el("td", {}, e.type),
      el("td", {}, e.channel || e.producer), el("td", {}, caseLink(e.case_ref)), el("td", { class: "what" }, e.summary));
  }
  function addEvents(events) {
    const body = $("tail-rows");
    for (const e of events) body.prepend(tailRow(e));
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  }
  function connect() {
    if (source) source.close();
    $("tail-rows").replaceChildren();
    const params = Object.fromEntries(new FormData($("tail-filters")).entries());
    source = live(params, (e) => {
      if (paused) { buffered.push(e); $("tail-buffered").textContent = `${buffered.length} new while paused`; }
      else addEvents([e]);
    }, (s) => status($("tail-state"), s, s === "live" ? "ok" : "warn"));
  }
  $("tail-filters").addEventListener("submit", (ev) => { ev.preventDefault(); connect(); });
  $("tail-pause").addEventListener("click", () => {
    paused = !paused;
    $("tail-pause").textContent = paused ? "Resume" : "Pause";
    $("tail-pause").setAttribute("aria-pressed", String(paused));
    if (!paused) { addEvents(buffered); buffered = []; $("tail-buffered").textContent = ""; }
  });

  // --- consumer groups ---------------------------------------------------------------------------
  async function loadGroups() {
    const data = await get("/v1/ops/groups");
    attention.stuck = data.groups.reduce((s, g) => s + g.stuck.length, 0);
    renderAttention();
    const stuck = data.groups.flatMap((g) => g.stuck.map((s) => ({ ...s, stream: g.stream, group: g.group })));
    replace($("groups-body"),
      table([
        { label: "stream", render: (g) => g.stream.split(":").slice(1).join(":") }, { label: "group", key: "group" },
        { label: "consumers", key: "consumers", cls: "num" }, { label: "lag", key: "lag", cls: "num" },
        { label: "pending", key: "pending", cls: "num" }, { label: "length", key: "length", cls: "num" },
      ], data.groups, { rowAttrs: (g) => ({ class: (g.pending || g.lag) ? "busy" : "" }) }),
      el("h3", {}, `Stuck entries (idle over ${data.stuck_after_ms / 1000} s)`),
      stuck.length ? table([
        { label: "stream", key: "stream" }, { label: "group", key: "group" }, { label: "entry", key: "id" },
        { label: "consumer", key: "consumer" }, { label: "idle", render: (s) => `${(s.idle_ms / 1000).toFixed(0)} s`, cls: "num" },
        { label: "deliveries", key: "deliveries", cls: "num" }], stuck) : el("p", { class: "muted" }, "none"));
    $("groups-updated").textContent = `updated ${new Date().toLocaleTimeString("sv-SE")}`;
  }

  // --- dead letters ------------------------------------------------------------------------------
  const selected = new Set();
  async function loadDeadLetters() {
    const data = await get("/v1/ops/dead-letters");
    attention.dead = data.items.length;
    renderAttention();
    $("dlq-count").textContent = `(${data.items.length})`;
    for (const id of [...selected]) if (!data.items.some((d) => d.id === id)) selected.delete(id);
    replace($("dlq-body"), data.items.length ? table([
      { label: "", render: (d) => el("input", { type: "checkbox", "aria-label": `select ${d.id}`, checked: selected.has(d.id),
        onchange: (ev) => ev.target.checked ? selected.add(d.id) : selected.delete(d.id) }) },
      { label: "id", key: "id" }, { label: "from", render: (d) => `${d.stream} (${d.group})` },
      { label: "event", render: (d) => d.type || "(unreadable)" }, { label: "deliveries", key: "deliveries", cls: "num" },
      { label: "reason", key: "reason", cls: "what" },
      { label: "", render: (d) => el("button", { type: "button", class: "resend-one", onclick: () => resend([d.id], false) }, "Resend") },
    ], data.items, { rowAttrs: (d) => ({ class: "dead-letter", "data-id": d.id }) }) : el("p", { class: "muted" }, "The dead-letter stream is empty."));
  }
  async function resend(ids, dryRun, all) {
    const node = $("dlq-status");
    if (!all && !ids.length) { status(node, "select dead letters first", "warn"); return; }
    try {
      const { data } = await call("POST", "/v1/ops/dead-letters/resend", { ids: all ? [] : ids, all: !!all, dry_run: dryRun },
        { "Idempotency-Key": NVF.uuid() });
      const list = data.dry_run ? data.would_resend : data.resent;
      const box = $("dlq-preview-box");
      if (dryRun) {
        box.hidden = false;
        replace(box, el("strong", {}, `Dry run: ${list.length} would be resent`),
          el("ul", {}, list.map((d) => el("li", {}, `${d.id} (${d.type || "?"}) → ${d.stream}`))),
          el("button", { type: "button", onclick: () => resend(list.map((d) => d.id), false) }, `Resend these ${list.length}`));
        status(node, "preview only: nothing was sent", "");
      } else {
        box.hidden = true;
        status(node, `resent ${list.length}${data.missing.length ? `; not found: ${data.missing.join(", ")}` : ""}`, data.missing.length ? "warn" : "ok");
        for (const d of list) selected.delete(d.id);
      }
      await loadDeadLetters();
    } catch (e) { status(node, errorText(e), "error"); }
  }
  $("dlq-preview").addEventListener("click", () => resend([...selected], true));
  $("dlq-resend").addEventListener("click", () => resend([...selected], false));
  $("dlq-all").addEventListener("click", () => resend([], true, true));

  // --- the book and worklists --------------------------------------------------------------------
  const caseColumns = [
    { label: "case", render: (c) => caseLink(c.case_ref) }, { label: "region", key: "region" },
    { label: "care area", key: "care_area" }, { label: "state", key: "state" },
  ];
  async function loadBook() {
    const data = await get("/v1/ops/book");
    attention.past = data.guarantee.filter((c) => c.days_left !== null && c.days_left < 0).length;
    attention.referrals = data.referrals.length;
    attention.holds = data.holds.length;
    renderAttention();
    replace($("book-body"), data.book.length ? table([
      { label: "care area", key: "care_area" }, { label: "open offers", key: "open_offers", cls: "num" },
      { label: "open capacity", key: "open_capacity", cls: "num" }, { label: "waiting patients", key: "waiting", cls: "num" },
      { label: "held", key: "held", cls: "num" }], data.book) : el("p", { class: "muted" }, "The book is empty."));
    const none = (rows, t) => rows.length ? t : el("p", { class: "muted" }, "none");
    replace($("holds-body"), none(data.holds, table([...caseColumns,
      { label: "waiting for", render: (c) => c.awaiting ? `${c.awaiting} ${c.awaiting_region}` : "–" },
      { label: "answer by", render: (c) => c.hold_due_at ? c.hold_due_at.replace("T", " ").slice(0, 16) : "–" }], data.holds)));
    replace($("guarantee-body"), none(data.guarantee, table([...caseColumns,
      { label: "guarantee date", key: "guarantee_date" },
      { label: "days left", render: (c) => c.days_left, cls: "num" }], data.guarantee,
      { rowAttrs: (c) => ({ class: c.days_left < 0 ? "past" : "near" }) })));
    replace($("referrals-body"), none(data.referrals, table([...caseColumns,
      { label: "referred at", render: (c) => c.updated_at.replace("T", " ").slice(0, 16) }], data.referrals)));
  }

  // --- a case's timeline -------------------------------------------------------------------------
  async function showTimeline(ref) {
    const form = $("timeline-form");
    form.elements.case_ref.value = ref;
    const body = $("timeline-body");
    try {
      const t = await get(`/v1/cases/${encodeURIComponent(ref)}/timeline`);
      replace(body,
        el("p", { class: t.verified ? "verified ok" : "verified error" },
          t.verified ? `✓ hash chain verified (${t.entries.length} entries: the case's events and its annotations)`
            : `✗ the hash chain of ${Object.entries(t.chains || {}).filter(([, ok]) => !ok).map(([c]) => c === "events" ? "the case's events" : "its annotations").join(" and ") || "the timeline"} does not verify: it was altered`),
        table([{ label: "kind", render: (e) => e.kind === "annotation" ? "annotation" : "event" },
          { label: "v", key: "version", cls: "num" }, { label: "when", render: (e) => e.occurred_at.replace("T", " ").slice(0, 19) },
          { label: "event", key: "event_type" },
          { label: "details", cls: "what", render: (e) => Object.entries(e.payload).filter(([, v]) => v !== null && typeof v !== "object").map(([k, v]) => `${k}=${v}`).join(" ") }],
        t.entries));
    } catch (e) { replace(body, el("p", { class: "status error" }, errorText(e))); }
  }
  $("timeline-form").addEventListener("submit", (ev) => { ev.preventDefault(); showTimeline(ev.target.elements.case_ref.value.trim()); });

  // --- market health -----------------------------------------------------------------------------
  async function loadHealth() {
    const h = await get("/v1/ops/market-health");
    // Fill rate and expired capacity have days of their own: publication, and the window's end.
    const daysOf = (series) => [...new Set(Object.values(series).flatMap(Object.keys))].sort();
    const pct = Object.fromEntries(Object.entries(h.fill_rate).map(([a, byDay]) => [a,
      Object.fromEntries(Object.entries(byDay).map(([d, v]) => [d, v === null ? null : v * 100]))]));
    replace($("charts"),
      chart("Placements per region", h.days, h.placements_by_region, "bar"),
      chart("Placements per care area", h.days, h.placements_by_care_area, "bar"),
      chart("Wait days of placed patients", h.days, h.wait_days, "bar"),
      chart("Time to match, days (median, p90)", Object.keys(h.time_to_match_days.median), h.time_to_match_days, "line"),
      chart("Unmatched demand", h.days, h.unmatched_demand, "bar"),
      chart("Ancillary costs per region, SEK", h.days, h.ancillary_cost_by_region, "bar"),
      chart("Fill rate per care area, %", daysOf(pct), pct, "line", { max: 100 }),
      chart("Capacity expired unused", daysOf(h.capacity_expired_unused), h.capacity_expired_unused, "bar"));
    $("health-updated").textContent = `as of ${h.today}`;
  }

  async function start() {
    const me = await get("/v1/whoami");
    $("who").textContent = `operator · ${me.client_id}`;
    $("logout").append(NVF.logoutButton());
    NVF.keepSession();
    renderAttention();
    connect();
    every(3000, loadGroups);
    every(5000, loadDeadLetters);
    every(10000, loadBook);
    every(10000, loadHealth);
    const ref = await BROKER.reference();
    BROKER.waitsPanel($("waits-panel"), ref,
      (area) => get(`/v1/waiting-times?${new URLSearchParams({ care_area: area, today: me.today })}`), null);
    every(10000, BROKER.capacityPanel($("capacity-panel"), ref, () => me.today));
  }
  start().catch((e) => status($("tail-state"), errorText(e), "error"));
  void fmt;
})();
