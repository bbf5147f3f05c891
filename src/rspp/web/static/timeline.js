// The per-turn timeline: one row per turn, markers on a shared session-time axis.
// Used live by the page (rows arrive as `turn_row` events) and by the timeline viewer
// (rows from a recorded timeline). A row is rspp.observability.TurnRow as JSON.

const MARKS = [
  ["speech_end", "speech end"],
  ["turn_open_proposed", "open proposed"],
  ["turn_open", "turn open"],
  ["first_audio", "first audio"],
  ["commit", "commit"],
  ["abort", "abort"],
  ["close", "close"],
];
const LATENCIES = [
  ["speech_end_to_first_audio", "speech end \u2192 first audio"],
  ["speech_end_to_open", "speech end \u2192 open"],
  ["open_to_first_audio", "open \u2192 first audio"],
  ["decision", "turn-open decision"],
];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function ms(value) {
  return value === null || value === undefined ? "\u2013" : `${value} ms`;
}

export class Timeline {
  constructor(root) {
    this.root = root;
    this.rows = new Map();
    this.order = [];
  }

  clear() {
    this.rows.clear();
    this.order = [];
    this.render();
  }

  update(row) {
    if (!this.rows.has(row.turn_id)) this.order.push(row.turn_id);
    this.rows.set(row.turn_id, row);
    this.render();
  }

  span() {
    let lo = Infinity;
    let hi = -Infinity;
    for (const row of this.rows.values()) {
      const times = [...Object.values(row.marks), ...row.fences.map((f) => f.t_ms)];
      for (const t of times) {
        lo = Math.min(lo, t);
        hi = Math.max(hi, t);
      }
    }
    if (!isFinite(lo)) return [0, 1];
    return [lo, Math.max(hi, lo + 1)];
  }

  render() {
    const [lo, hi] = this.span();
    const x = (t) => `${(((t - lo) / (hi - lo)) * 96 + 2).toFixed(2)}%`;
    const rows = this.order.map((tid, i) => this.renderRow(this.rows.get(tid), i + 1, x));
    const axis = el("div", { class: "axis-legend" },
      el("span", {}, `${lo} ms`), el("span", {}, "session time"), el("span", {}, `${hi} ms`));
    this.root.replaceChildren(...(rows.length ? [axis, ...rows] : [
      el("p", { class: "empty" }, "No turns yet: talk, and each turn appears here."),
    ]));
  }

  renderRow(row, n, x) {
    const classes = ["turn", `outcome-${row.outcome}`];
    if (row.closed) classes.push("closed");
    if (row.diverged && row.diverged.length) classes.push("diverged");
    const track = el("div", { class: "track" });
    const times = Object.values(row.marks);
    if (times.length > 1) {
      const a = Math.min(...times);
      const b = Math.max(...times);
      track.append(el("span", { class: "bar", style: `left:${x(a)};width:calc(${x(b)} - ${x(a)})` }));
    }
    for (const [key, label] of MARKS) {
      const t = row.marks[key];
      if (t === undefined) continue;
      track.append(el("span", {
        class: `mark mark-${key}`, "data-mark": key, style: `left:${x(t)}`,
        title: `${label} at ${t} ms`,
      }));
    }
    for (const f of row.fences) {
      track.append(el("span", {
        class: `fence fence-${f.name}`, "data-fence": f.name, style: `left:${x(f.t_ms)}`,
        title: `${f.name} at ${f.t_ms} ms${f.reason ? ` (${f.reason})` : ""}`,
      }));
    }
    const outcome = row.outcome === "abort" ? `abort${row.reason ? ` (${row.reason})` : ""}` : row.outcome;
    const head = el("div", { class: "head" },
      el("span", { class: "n" }, `turn ${n}`),
      el("span", { class: "outcome", "data-outcome": row.outcome }, outcome),
      el("span", { class: "plan", title: row.plan_hash || "" },
        `${row.pipeline_version || "?"} \u00b7 plan ${row.plan_hash ? row.plan_hash.slice(0, 12) : "\u2013"}`));
    const lat = el("dl", { class: "latencies" });
    for (const [key, label] of LATENCIES) {
      lat.append(el("dt", {}, label), el("dd", { "data-latency": key }, ms(row.latencies[key])));
    }
    const legend = el("ul", { class: "legend" });
    for (const [key, label] of MARKS) {
      if (row.marks[key] !== undefined) legend.append(el("li", { "data-mark": key }, `${label} ${row.marks[key]} ms`));
    }
    for (const f of row.fences) {
      legend.append(el("li", { class: "fence-item", "data-fence": f.name },
        `${f.name} ${f.t_ms} ms${f.reason ? ` (${f.reason})` : ""}`));
    }
    const parts = [head, track, lat, legend];
    if (row.transcript) parts.push(el("p", { class: "said" }, `\u201c${row.transcript}\u201d`));
    if (row.diverged && row.diverged.length) {
      parts.push(el("ul", { class: "findings" }, ...row.diverged.map((d) => el("li", {}, d))));
    }
    return el("article", { class: classes.join(" "), "data-turn": row.turn_id }, ...parts);
  }
}
