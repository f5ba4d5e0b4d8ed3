"use strict";
(() => {
  const reasons = { credentials: "Wrong client id or secret.", expired: "Your session ended: log in again.",
    rate: "Too many attempts: wait a moment and try again.",
    external: "People log in through the configured identity provider, not here." };
  const code = new URLSearchParams(window.location.search).get("error");
  const node = document.getElementById("login-error");
  if (code && reasons[code]) { node.textContent = reasons[code]; node.hidden = false; }
})();
