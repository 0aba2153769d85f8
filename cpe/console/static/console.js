// pacemaker-cloud console: live updates over the event stream.
// The pages work without this script; with it they follow events as they are
// stored. Every string from the server goes into the page as text
// (textContent), or as HTML the server rendered and escaped.
"use strict";

(function () {
  const body = document.body;
  const streamUrl = body.dataset.stream;
  if (!streamUrl || !window.EventSource) {
    return;
  }
  const parts = {
    overview: body.dataset.refreshOverview,
    status: body.dataset.refreshStatus,
    chart: body.dataset.refreshChart,
  };
  const live = document.getElementById("live");
  const timeline = document.getElementById("timeline");
  let pending = null;

  function levelOf(event) {
    if (event.resource) return "resource";
    return event.assembly ? "assembly" : "deployable";
  }

  function severityOf(state) {
    if (["failed", "unrecoverable", "fencing", "dpe-killed", "dpe-died"].includes(state)) return "error";
    if (["recovering", "stopping", "starting", "creating", "connecting"].includes(state)) return "warning";
    return "info";
  }

  function keeps(event) {
    const chosen = timeline.dataset;
    if (chosen.level && levelOf(event) !== chosen.level) return false;
    if (chosen.assembly && event.assembly !== chosen.assembly) return false;
    return !(chosen.resource && event.resource !== chosen.resource);
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);
  }

  function addRow(event) {
    if (!timeline || !keeps(event)) return;
    const tbody = timeline.tBodies[0];
    if (tbody.querySelector('tr[data-id="' + String(event.id) + '"]')) return;
    const row = document.createElement("tr");
    row.className = "sev-" + severityOf(event.state) + " fresh";
    row.dataset.id = String(event.id);
    const cells = [clock(event.time), levelOf(event), event.assembly || "", event.resource || "", event.state, event.reason];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    }
    tbody.insertBefore(row, tbody.firstChild);
  }

  async function refresh(id, url) {
    if (!url) return;
    const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!answer.ok) return;
    const target = document.getElementById(id);
    const parsed = new DOMParser().parseFromString(await answer.text(), "text/html");
    target.replaceChildren(...parsed.body.childNodes);
  }

  function refreshSoon() {
    if (pending !== null) return;
    pending = setTimeout(async function () {
      pending = null;
      await Promise.all([
        refresh("overview", parts.overview),
        refresh("status", parts.status),
        refresh("chart", parts.chart),
      ]);
    }, 250);
  }

  const source = new EventSource(streamUrl);
  source.addEventListener("open", function () {
    if (live) live.hidden = false;
  });
  source.addEventListener("error", function () {
    if (live) live.hidden = true;
  });
  source.addEventListener("event", function (message) {
    addRow(JSON.parse(message.data));
    refreshSoon();
  });
})();
