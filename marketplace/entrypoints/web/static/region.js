// A region's start page: what its care navigators and its providers must act on first.
"use strict";
(() => {
  const { el, get, caseCommand, table, replace, every, status, errorText, live } = NVF;
  const $ = (id) => document.getElementById(id);
  let me = null;

  async function act(caseRef, action, body, label) {
    const node = $("act-status");
    status(node, `${label} ${caseRef}…`, "");
    try {
      await caseCommand(caseRef, action, body);
      status(node, `${label}: ${caseRef} done`, "ok");
    } catch (e) { status(node, `${label} ${caseRef}: ${errorText(e)}`, "error"); }
    await load();
  }
  const button = (label, c, action, body, cls) => el("button", { type: "button", class: cls || "",
    "data-case": c.case_ref, "data-action": action, onclick: () => act(c.case_ref, action, body, label) }, label);

  // What the home region's care navigator does next on a held match.
  function navigatorButtons(c) {
    if (c.state === "provider_accepted") return [button("Offered to patient", c, "offer-to-patient", {})];
    if (c.state === "offered_to_patient") return [
      button("Patient accepts", c, "patient-answer", { accepted: true }, "primary"),
      button("Patient declines", c, "patient-answer", { accepted: false, reason_code: "other" }, "secondary")];
    return [];
  }
  function providerButtons(c) {
    if (c.state === "match_proposed") return [button("Accept", c, "accept", {}, "primary"),
      button("Decline (no capacity)", c, "decline", { reason_code: "no_capacity" }, "secondary")];
    if (c.state === "referred") return [button("Acknowledge referral", c, "referral-acknowledgement", {}, "primary")];
    return [];
  }
  const when = (iso) => iso ? iso.replace("T", " ").slice(0, 16) : "–";
  const cols = [{ label: "case", key: "case_ref" }, { label: "care area", key: "care_area" }, { label: "state", key: "state" },
    { label: "guarantee", render: (c) => c.guarantee_date ? `${c.guarantee_date} (${c.days_left} d)` : "–" }];
  const dueCol = { label: "answer by", render: (c) => when(c.hold_due_at), cls: "due" };
  const none = (rows, text, t) => rows.length ? t : el("p", { class: "muted" }, text);
  const todo = { rowAttrs: (c) => ({ class: "todo", "data-case": c.case_ref }) };

  async function load() {
    const [work, cases, offers] = await Promise.all([get("/v1/worklist"), get("/v1/cases?limit=500"), get("/v1/offers?limit=500")]);
    const navigator = work.to_answer.filter((c) => c.awaiting === "home region");
    const provider = work.to_answer.filter((c) => c.awaiting === "provider");
    replace($("navigator-actions"), none(navigator, "Nothing waits for you.", table([...cols, dueCol,
      { label: "act", render: (c) => el("span", { class: "actions" }, navigatorButtons(c)) }], navigator, todo)));
    replace($("provider-actions"), none(provider, "Nothing waits for you.", table([...cols, dueCol,
      { label: "act", render: (c) => el("span", { class: "actions" }, providerButtons(c)) }], provider, todo)));
    replace($("guarantee-body"), none(work.near_guarantee, "No patient is near the guarantee.", table(cols, work.near_guarantee,
      { rowAttrs: (c) => ({ class: c.days_left < 0 ? "past" : "near", "data-case": c.case_ref }) })));
    replace($("waiting-body"), none(work.waiting_for_provider, "none", table([...cols, dueCol,
      { label: "provider", key: "providing_region" }], work.waiting_for_provider)));
    replace($("offers-body"), none(offers.items, "No offers.", table([
      { label: "offer", key: "offer_id" }, { label: "care area", key: "care_area" },
      { label: "window", render: (o) => `${o.window_start} – ${o.window_end}` },
      { label: "capacity", key: "capacity", cls: "num" }, { label: "left", key: "remaining", cls: "num" },
      { label: "fill", render: (o) => o.capacity ? el("span", {}, el("meter", { min: 0, max: o.capacity, value: o.capacity - o.remaining }),
        ` ${Math.round(100 * (o.capacity - o.remaining) / o.capacity)} %`) : "–" },
      { label: "status", key: "status" }], offers.items)));
    replace($("cases-body"), none(cases.items, "No cases.", table([{ label: "case", key: "case_ref" },
      { label: "care area", key: "care_area" }, { label: "state", key: "state" }, { label: "home region", key: "region" },
      { label: "guarantee", render: (c) => c.guarantee_date || "–" }],
    cases.items, { rowAttrs: (c) => ({ class: "case", "data-case": c.case_ref }) })));
  }

  function addEvent(e) {
    const body = $("stream-rows");
    body.prepend(el("tr", { class: "event", "data-case": e.case_ref || "", "data-type": e.type || "" },
      el("td", {}, e.occurred_at ? e.occurred_at.slice(11, 19) : ""), el("td", {}, e.type),
      el("td", {}, e.case_ref || ""), el("td", { class: "what" }, e.summary)));
    while (body.rows.length > 300) body.deleteRow(body.rows.length - 1);
  }

  async function start() {
    me = await get("/v1/whoami");
    $("title").textContent = `NVF · region ${me.region}`;
    $("who").textContent = `region ${me.region} · ${me.client_id}`;
    $("logout").append(NVF.logoutButton());
    NVF.keepSession();
    live({}, addEvent, (s) => status($("stream-state"), s, s === "live" ? "ok" : "warn"));
    every(4000, load);
    brokering().catch((e) => replace($("find-panel"), el("p", { class: "status error" }, errorText(e))));
  }

  // Find a provider, the waiting times per region and the free-capacity feed, as of the marketplace's day.
  async function brokering() {
    const ref = await BROKER.reference();
    const today = () => me.today;
    BROKER.searchPanel($("find-panel"), ref, today, me.region);
    BROKER.waitsPanel($("waits-panel"), ref,
      (area) => get(`/v1/waiting-times?${new URLSearchParams({ care_area: area, today: today() })}`), me.region);
    every(5000, BROKER.capacityPanel($("capacity-panel"), ref, today));
  }
  start().catch((e) => status($("act-status"), errorText(e), "error"));
})();
