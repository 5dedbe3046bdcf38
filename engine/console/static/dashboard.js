// The dashboard's rows, refreshed every 2 s from /api/dashboard (a file of its own: the console's
// Content-Security-Policy runs no inline script). Statuses and the "all good" text come from the page.
const CH = JSON.parse(document.getElementById("channels").dataset.statuses);
const DE = JSON.parse(document.getElementById("destinations").dataset.statuses);
const OK = JSON.parse(document.getElementById("channels").dataset.allGood);
function spark(values) {  // an inline SVG polyline of messages per interval, newest on the inline end
  const td = document.createElement("td"), ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg"); svg.setAttribute("width", "120"); svg.setAttribute("height", "24");
  svg.setAttribute("class", "spark");
  const max = Math.max(1, ...values), step = values.length > 1 ? 118 / (values.length - 1) : 0;
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", values.map((v, i) => `${1 + i * step},${23 - 22 * v / max}`).join(" "));
  svg.append(line); td.append(svg); return td;
}
function cell(text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; }
async function refresh() {
  const r = await fetch("/api/dashboard", {credentials: "same-origin"});
  if (!r.ok) return;
  const d = await r.json();
  const ch = document.getElementById("channel-rows"); ch.replaceChildren();
  for (const c of d.channels) {
    const tr = document.createElement("tr"); tr.id = "channel-" + c.id; if (c.alert) tr.className = "alert";
    const a = document.createElement("a"); a.href = "/channels/" + c.id; a.textContent = c.id;
    const first = document.createElement("td"); first.append(a); tr.append(first);
    for (const s of CH) tr.append(cell(c.counts[s] || 0, "n " + s));
    tr.append(spark(c.trend));
    tr.append(cell(c.last_error || OK));
    ch.append(tr);
  }
  const de = document.getElementById("destination-rows"); de.replaceChildren();
  for (const x of d.destinations) {
    const tr = document.createElement("tr"); tr.id = "destination-" + x.id; if (x.alert) tr.className = "alert";
    tr.append(cell(x.id));
    for (const s of DE) tr.append(cell(x.counts[s] || 0, "n " + s));
    tr.append(cell(x.queued));
    de.append(tr);
  }
}
refresh(); setInterval(refresh, 2000);
