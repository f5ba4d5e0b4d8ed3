"use strict";
(() => {
  // The waiting times per region: the public aggregates, suppressed cells kept suppressed.
  const json = (url) => fetch(url).then(async (r) => {
    const body = await r.json();
    if (!r.ok) throw new NVF.ApiError(r.status, body);
    return body;
  });
  json("/public/reference.json").then((ref) => BROKER.waitsPanel(document.getElementById("waits-panel"), ref,
    (area) => json(`/public/waiting-times.json?${new URLSearchParams({ care_area: area })}`), null))
    .catch((e) => NVF.status(document.getElementById("public-status"), NVF.errorText(e), "error"));

  const { el, table, replace, status, errorText } = NVF;
  const cell = (v) => (v === null || v === undefined) ? el("span", { class: "suppressed", title: "not shown: a small number" }, "–") : String(v);
  fetch("/public/data.json").then((r) => r.json()).then((data) => {
    document.getElementById("threshold").textContent = data.threshold;
    const months = [...new Set(data.rows.map((r) => r.month))].sort().reverse();
    replace(document.getElementById("public-body"), months.flatMap((m) => [
      el("h2", {}, m),
      table([{ label: "region", render: (r) => r.region === "all" ? "All regions" : r.region },
        { label: "care area", key: "care_area" },
        { label: "open capacity", render: (r) => cell(r.open_capacity), cls: "num count" },
        { label: "requests", render: (r) => cell(r.requests), cls: "num count" },
        { label: "matches", render: (r) => cell(r.matches), cls: "num count" },
        { label: "moved between regions", render: (r) => cell(r.moved), cls: "num count" },
        { label: "median days to match", render: (r) => cell(r.median_days_to_match), cls: "num days" }],
      data.rows.filter((r) => r.month === m), { rowAttrs: (r) => ({ class: r.region === "all" ? "total" : "" }) })]));
    status(document.getElementById("public-status"), `${data.rows.length} rows`, "ok");
  }).catch((e) => status(document.getElementById("public-status"), errorText(e), "error"));
})();
