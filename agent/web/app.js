// The live page: one EventSource on /api/v1/stream; "state" replaces what
// is shown, "event" adds to the timeline. No reloads, no build step.
"use strict";
const history = {}; // host → [{time, cpu_ratio, memory_ratio}]
let retainedMs = 30 * 60 * 1000;

const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
};
const pct = (r) => (100 * r).toFixed(0) + "%";
const bytes = (b) => {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return b.toFixed(i ? 1 : 0) + " " + u[i];
};
const clock = (t) => new Date(t).toLocaleTimeString();

function gauge(label, ratio, text) {
  const bar = el("div", { class: "bar" + (ratio > 0.8 ? " hot" : "") }, el("div", { style: `width:${Math.min(100, 100 * ratio)}%` }));
  return el("div", { class: "gauge" }, label, bar, text);
}

function chart(points) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 300 40");
  svg.setAttribute("preserveAspectRatio", "none");
  if (points.length > 1) {
    const t1 = Date.parse(points[points.length - 1].time), t0 = t1 - retainedMs;
    for (const [key, color] of [["memory_ratio", "#9fb7dc"], ["cpu_ratio", "#3b7dd8"]]) {
      const line = document.createElementNS(svg.namespaceURI, "polyline");
      line.setAttribute("stroke", color);
      line.setAttribute("points", points.map((p) =>
        `${(300 * (Date.parse(p.time) - t0) / retainedMs).toFixed(1)},${(40 - 38 * Math.min(1, p[key])).toFixed(1)}`).join(" "));
      svg.append(line);
    }
  }
  return svg;
}

function hostCard(h) {
  const card = el("div", { class: "card " + h.state, "data-host": h.name });
  card.append(el("h3", {}, h.name, el("span", { class: "badge " + h.state }, h.state + (h.fenced && h.state !== "off" ? ", fenced" : ""))));
  if (h.state === "off") {
    card.append(el("div", { class: "none" }, "powered off on standby: powered on again when a pool needs room"));
    return card;
  }
  if (h.state === "down") {
    card.append(el("div", { class: "error" }, h.fenced ? "fenced (powered off): its pools are restored on the other hosts" : h.error || "not answering"));
    return card;
  }
  card.append(gauge("CPU", h.cpu_ratio, pct(h.cpu_ratio) + " of " + h.capacity_cpus.toFixed(1)));
  card.append(gauge("memory", h.memory_ratio, pct(h.memory_ratio) + " of " + bytes(h.capacity_memory_bytes)));
  card.append(chart(history[h.name] || []));
  const rows = (h.guests || []).map((g) => el("tr", { "data-guest": g.name, "data-state": g.state },
    el("td", {}, g.name), el("td", {}, g.pool || ""), el("td", {}, g.state),
    el("td", { class: "num" }, g.cpu_cores.toFixed(2)), el("td", { class: "num" }, bytes(g.memory_bytes))));
  const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "guest"), el("th", {}, "pool"),
    el("th", {}, "state"), el("th", { class: "num" }, "cores"), el("th", { class: "num" }, "memory"))), el("tbody", {}, ...rows));
  card.append(rows.length ? table : el("p", { class: "none" }, "no guests"));
  return card;
}

function render(s) {
  for (const h of s.hosts || []) {
    if (h.state === "down" || h.state === "off") continue;
    const pts = (history[h.name] = history[h.name] || []);
    if (!pts.length || pts[pts.length - 1].time !== s.time) pts.push({ time: s.time, cpu_ratio: h.cpu_ratio, memory_ratio: h.memory_ratio });
    const cut = Date.parse(s.time) - retainedMs;
    while (pts.length && Date.parse(pts[0].time) < cut) pts.shift();
  }
  document.getElementById("hosts").replaceChildren(...(s.hosts || []).map(hostCard));
  const guests = (s.hosts || []).reduce((n, h) => n + (h.guests || []).length, 0);
  document.getElementById("summary").textContent =
    `${(s.hosts || []).length} hosts · ${guests} guests · ${(s.pools || []).length} pools · sampled ${clock(s.time)}`;
  const migs = (s.migrations || []).map((m) => {
    const done = m.data_total_bytes ? m.data_processed_bytes / m.data_total_bytes : 0;
    return el("div", { class: "migration", "data-guest": m.guest, "data-progress": done.toFixed(2) },
      el("div", {}, el("b", {}, m.guest), ` ${m.from} → ${m.to}, since ${clock(m.since)}`),
      el("div", { class: "bar" }, el("div", { style: `width:${Math.min(100, 100 * done)}%` })),
      el("div", { class: "detail" }, m.data_total_bytes
        ? `${bytes(m.data_processed_bytes)} of ${bytes(m.data_total_bytes)} sent, ${bytes(m.data_remaining_bytes)} left` +
          ` · expected downtime ${m.expected_downtime_ms} ms` + (m.dirty_bytes_per_second ? ` · dirtying ${bytes(m.dirty_bytes_per_second)}/s` : "")
        : "starting"));
  });
  document.getElementById("migrations").replaceChildren(...(migs.length ? migs : [el("p", { class: "none" }, "none in flight")]));
  document.querySelector("#finished tbody").replaceChildren(...(s.finished || []).map((f) => el("tr", { "data-guest": f.guest },
    el("td", {}, clock(f.time)), el("td", {}, f.guest), el("td", {}, `${f.from} → ${f.to}`),
    el("td", { class: "num" }, f.elapsed_ms ? (f.elapsed_ms / 1000).toFixed(1) + " s" : "?"),
    el("td", { class: "num" }, f.elapsed_ms ? f.downtime_ms + " ms" : "?"))));
  // The age is the sample's: how old the standby's image was then.
  document.querySelector("#protections tbody").replaceChildren(...(s.protections || []).map((p) => el("tr",
    { "data-guest": p.domain, "data-standby": p.standby, class: p.error ? "failing" : "" },
    el("td", {}, p.domain), el("td", {}, `${p.primary} → ${p.standby || "none"}`),
    el("td", { class: "num" }, p.checkpoints ? (p.age_ms / 1000).toFixed(1) + " s ago" : (p.error ? "failing" : "first image…")),
    el("td", { class: "num" }, p.checkpoints ? bytes(p.wire_bytes) : ""),
    el("td", { class: "num" }, p.checkpoints ? p.pause_ms + " ms" : ""))));
  document.querySelector("#pools tbody").replaceChildren(...(s.pools || []).map((p) => el("tr", { "data-pool": p.name },
    el("td", {}, p.name), el("td", { class: "num" }, String(p.size)), el("td", { class: "num" }, String(p.desired)),
    el("td", { class: "num" }, String(p.min)), el("td", { class: "num" }, String(p.max)), el("td", {}, (p.hosts || []).join(" ")))));
}

function addEvent(e) {
  const list = document.getElementById("events");
  list.prepend(el("li", { "data-kind": e.kind }, el("time", {}, clock(e.time)), e.message));
  while (list.children.length > 200) list.lastChild.remove();
}

async function start() {
  try {
    const h = await (await fetch("api/v1/history")).json();
    Object.assign(history, h || {});
  } catch (err) { /* the stream brings the state anyway */ }
  const src = new EventSource("api/v1/stream");
  const conn = document.getElementById("conn");
  src.onopen = () => { conn.textContent = "live"; conn.className = "badge"; };
  src.onerror = () => { conn.textContent = "reconnecting"; conn.className = "badge down"; };
  src.addEventListener("state", (m) => render(JSON.parse(m.data)));
  src.addEventListener("event", (m) => addEvent(JSON.parse(m.data)));
}
start();
