// The console's one script (the CSP allows no inline script): copy buttons.
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
});

// The live tail: each delivery the server sends goes on top of the table; the server's status
// events (Redis up or down) and reconnects are said above it. Built with DOM calls, never HTML.
const live = document.getElementById("live");
if (live) {
  const status = document.getElementById("live-status");
  const body = live.querySelector("tbody");
  const cell = (text, className) => {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  };
  const stream = new EventSource(`/console/live/stream?after=${encodeURIComponent(live.dataset.after)}`);
  stream.addEventListener("delivery", (event) => {
    const d = JSON.parse(event.data);
    const row = document.createElement("tr");
    row.dataset.id = d.id;
    const id = document.createElement("td");
    const link = document.createElement("a");
    link.href = `/console/deliveries/${d.id}`;
    link.textContent = d.id;
    id.appendChild(link);
    const outcome = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = `outcome ${["applied", "accepted"].includes(d.outcome) ? "ok" : d.outcome === "ignored" ? "quiet" : "bad"}`;
    badge.textContent = d.outcome;
    outcome.appendChild(badge);
    row.append(id, cell(d.received_at.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC"), "time"),
      cell(d.source), cell(d.event), outcome, cell(d.delivery_id || d.fal_request_id || "", "mono"));
    body.prepend(row);
    while (body.rows.length > 200) body.deleteRow(-1);
  });
  stream.addEventListener("status", (event) => {
    status.textContent = JSON.parse(event.data).message;
  });
  // The session ended (signed out, expired, its token removed): no more reconnects.
  stream.addEventListener("ended", (event) => {
    stream.close();
    status.textContent = JSON.parse(event.data).message;
  });
  stream.onerror = () => {
    // A browser gives up on an answer that is not a stream: a refused tail or no session.
    status.textContent = stream.readyState === EventSource.CLOSED
      ? "The live tail was refused: too many are open (close another live tab), or your session ended (reload to sign in)."
      : "Disconnected: reconnecting…";
  };
}

// A bulk replay's page follows its progress while it runs.
const refreshing = document.querySelector("[data-refresh]");
if (refreshing) {
  setTimeout(() => window.location.reload(), Number(refreshing.dataset.refresh) * 1000);
}
