// Live events: rows from the server's event stream, newest first, at most data-kept of them; each
// event's outcomes filled in as they come. Text only (textContent): nothing from an event is markup.
(function () {
  "use strict";
  const table = document.getElementById("live");
  if (!table) { return; }
  const rows = document.getElementById("live-rows");
  const state = document.getElementById("live-state");
  const stats = document.getElementById("live-stats");
  const pause = document.getElementById("live-pause");
  const kept = parseInt(table.dataset.kept, 10) || 500;
  const byId = new Map();
  let source = null;

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function addEvent(e) {
    const tr = document.createElement("tr");
    tr.dataset.id = e.id;
    cell(tr, new Date(e.at).toLocaleTimeString());
    cell(tr, e.pipeline);
    cell(tr, e.type);
    const what = cell(tr, "");
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = e.name || "(" + e.type + ")";
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(e.payload, null, 2);
    details.append(summary, pre);
    what.appendChild(details);
    cell(tr, e.user);
    const outcome = cell(tr, "");
    outcome.className = "outcomes";
    rows.insertBefore(tr, rows.firstChild);
    byId.set(e.id, outcome);
    while (rows.rows.length > kept) {
      const last = rows.rows[rows.rows.length - 1];
      byId.delete(last.dataset.id);
      last.remove();
    }
  }

  function addOutcome(o) {
    const place = byId.get(o.id);
    if (!place) { return; }
    const line = document.createElement("div");
    line.className = "outcome " + o.state;
    let text = o.integration + ": " + ({delivered: "delivered", dead: "dead-lettered", later: "retrying"}[o.state] || o.state);
    if (o.status) { text += " (" + o.status + ")"; }
    if (o.state !== "delivered" && o.reason) { text += " " + o.reason; }
    if (o.attempts > 1) { text += ", attempt " + o.attempts; }
    line.textContent = text;
    if (o.answer) {
      const answer = document.createElement("code");
      answer.textContent = o.answer;
      line.appendChild(document.createElement("br"));
      line.appendChild(answer);
    }
    place.appendChild(line);
  }

  function connect() {
    source = new EventSource(table.dataset.stream);
    state.textContent = "Connecting…";
    source.addEventListener("ready", function () { state.textContent = "Listening"; });
    source.addEventListener("event", function (m) { addEvent(JSON.parse(m.data)); });
    source.addEventListener("outcome", function (m) { addOutcome(JSON.parse(m.data)); });
    source.addEventListener("stats", function (m) {
      const s = JSON.parse(m.data);
      stats.textContent = s.read + " read since this view opened" + (s.notShown ? ", " + s.notShown + " not shown (over the sample's rate)" : "");
    });
    source.addEventListener("problem", function (m) { state.textContent = JSON.parse(m.data).message; });
    source.onerror = function () { if (source.readyState !== EventSource.OPEN) { state.textContent = "Reconnecting…"; } };
  }

  pause.addEventListener("click", function () {
    if (source) {
      source.close();
      source = null;
      pause.textContent = "Resume";
      state.textContent = "Paused";
    } else {
      pause.textContent = "Pause";
      connect();
    }
  });
  connect();
})();
