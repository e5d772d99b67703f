// tasker's web UI: one page, routed by the URL's fragment, that reads and drives the REST API
// served beside it (../v1/...). No framework, no build step, nothing fetched from elsewhere.
"use strict";

(() => {
  // The API lives next to /ui/, wherever the handler is mounted.
  const base = location.pathname.replace(/\/ui\/.*$/, "/").replace(/\/ui$/, "/");
  const POLL_MS = 1500;
  const main = document.getElementById("main");
  let timer = null;      // the current page's refresh
  let generation = 0;    // bumps on navigation, so a stale refresh does not draw

  // ---- helpers -------------------------------------------------------------------------------

  // h builds an element: h("div.cls#id", {attr: v, onclick: fn}, children...).
  function h(spec, attrs, ...kids) {
    const m = spec.match(/^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i);
    const el = document.createElement(m[1] || "div");
    for (const part of (m[2] || "").match(/[.#][\w-]+/g) || []) {
      if (part[0] === ".") el.classList.add(part.slice(1)); else el.id = part.slice(1);
    }
    if (attrs !== undefined && attrs !== null && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) { kids.unshift(attrs); attrs = null; }
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k === "value") el.value = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    append(el, kids);
    return el;
  }
  function append(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
  }
  // fill replaces an element's children, skipping null, undefined and false.
  function fill(el, ...kids) { el.replaceChildren(); append(el, kids); return el; }
  const SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null) el.setAttribute(k, v);
    }
    append(el, kids);
    return el;
  }
  function badge(state, big) {
    return h("span.badge" + (big ? ".big" : "") + ".s-" + state, { dataset: { state } }, state.replaceAll("_", " "));
  }
  function ago(t) {
    if (!t) return "—";
    const d = (Date.now() - new Date(t).getTime()) / 1000;
    if (d < 5) return "just now";
    if (d < 60) return Math.round(d) + "s ago";
    if (d < 3600) return Math.round(d / 60) + "m ago";
    if (d < 86400) return Math.round(d / 3600) + "h ago";
    return new Date(t).toLocaleString();
  }
  function dur(sec) {
    if (sec === null || sec === undefined || isNaN(sec)) return "—";
    if (sec < 1) return Math.round(sec * 1000) + " ms";
    if (sec < 60) return sec.toFixed(sec < 10 ? 2 : 1) + " s";
    if (sec < 3600) return Math.floor(sec / 60) + "m " + Math.round(sec % 60) + "s";
    return Math.floor(sec / 3600) + "h " + Math.round((sec % 3600) / 60) + "m";
  }
  function between(a, b) { return a && b ? (new Date(b) - new Date(a)) / 1000 : null; }
  function when(t) { return t ? h("span", { title: new Date(t).toLocaleString() }, ago(t)) : "—"; }
  function short(id) { return id ? id.slice(0, 8) + "…" + id.slice(-4) : ""; }
  function json(v) { try { return JSON.stringify(v, null, 2); } catch { return String(v); } }
  function toast(msg, bad) {
    const t = h("div.toast" + (bad ? ".bad" : ""), msg);
    document.getElementById("toasts").append(t);
    setTimeout(() => t.remove(), bad ? 7000 : 3500);
  }
  function setLive(ok) { document.getElementById("live").classList.toggle("stale", !ok); }

  // api calls the REST API; a problem response throws an Error carrying it.
  async function api(method, path, body) {
    const opt = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
    const res = await fetch(base + path.replace(/^\//, ""), opt);
    const text = await res.text();
    let doc = null;
    try { doc = text ? JSON.parse(text) : null; } catch { doc = { detail: text }; }
    if (!res.ok) {
      const p = doc || {};
      const err = new Error((p.title || res.statusText) + (p.detail ? ": " + p.detail : ""));
      err.problem = p; err.status = res.status;
      if (p.violations && p.violations.length) err.message += " — " + p.violations.join("; ");
      throw err;
    }
    return doc;
  }
  const get = (p) => api("GET", p);

  function operator() { return document.getElementById("operator").value.trim(); }

  // refresh runs fn now and every POLL_MS while the page stays; fn returns a promise.
  function refresh(fn) {
    const gen = generation;
    const tick = async () => {
      if (gen !== generation) return;
      try { await fn(gen); setLive(true); } catch (e) { setLive(false); if (e.status) showError(e); }
      if (gen === generation) timer = setTimeout(tick, POLL_MS);
    };
    tick();
  }
  let lastError = "";
  function showError(e) {
    if (e.message === lastError) return;
    lastError = e.message;
    toast(e.message, true);
    setTimeout(() => { lastError = ""; }, 5000);
  }
  // act runs an operator action, reports it, and refreshes the page.
  async function act(label, fn, after) {
    try { await fn(); toast(label + ": done"); if (after) after(); }
    catch (e) { toast(label + " refused — " + e.message, true); }
  }

  // ---- the DAG -------------------------------------------------------------------------------

  // layout places nodes in columns by depth (the longest path from a root), ordering each column
  // by the mean row of its parents so that edges cross little.
  function layout(nodes, edges) {
    const parents = new Map(nodes.map((n) => [n.key, []]));
    for (const e of edges) if (parents.has(e.to) && parents.has(e.from)) parents.get(e.to).push(e.from);
    const depth = new Map();
    const visit = (k, seen) => {
      if (depth.has(k)) return depth.get(k);
      if (seen.has(k)) return 0;
      seen.add(k);
      const d = Math.max(-1, ...parents.get(k).map((p) => visit(p, seen))) + 1;
      depth.set(k, d);
      return d;
    };
    nodes.forEach((n) => visit(n.key, new Set()));
    const cols = [];
    nodes.forEach((n) => { (cols[depth.get(n.key)] ||= []).push(n); });
    const row = new Map();
    cols.forEach((col, ci) => {
      if (ci > 0) {
        const score = (n) => { const ps = parents.get(n.key); return ps.length ? ps.reduce((a, p) => a + row.get(p), 0) / ps.length : 0; };
        col.sort((a, b) => score(a) - score(b));
      }
      col.forEach((n, i) => row.set(n.key, i));
    });
    const W = 184, H = 56, GX = 70, GY = 26, PAD = 20;
    const rows = Math.max(...cols.map((c) => c.length));
    const pos = new Map();
    cols.forEach((col, ci) => {
      const off = ((rows - col.length) * (H + GY)) / 2;
      col.forEach((n, i) => pos.set(n.key, { x: PAD + ci * (W + GX), y: PAD + off + i * (H + GY) }));
    });
    return { pos, W, H, width: PAD * 2 + cols.length * W + (cols.length - 1) * GX, height: PAD * 2 + rows * H + (rows - 1) * GY, parents };
  }

  // dag draws nodes ({key, label, sub, state, cls}) and edges ({from, to}) as an SVG.
  function dag(nodes, edges, onpick, selected) {
    if (!nodes.length) return h("div.empty", "No steps.");
    const L = layout(nodes, edges);
    const svg = s("svg", { class: "dag", width: "100%", viewBox: `0 0 ${L.width} ${L.height}`, role: "img" });
    svg.style.maxWidth = L.width + "px"; // scale down to fit, never up
    svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { d: "M0 0L10 5L0 10z", class: "arrow" }))));
    const byKey = new Map(nodes.map((n) => [n.key, n]));
    for (const e of edges) {
      const a = L.pos.get(e.from), b = L.pos.get(e.to);
      if (!a || !b) continue;
      const x1 = a.x + L.W, y1 = a.y + L.H / 2, x2 = b.x - 2, y2 = b.y + L.H / 2, mx = (x1 + x2) / 2;
      const done = ["complete", "resolved_manually"].includes(byKey.get(e.from).state);
      svg.append(s("path", { class: "edge" + (done ? " done" : ""), d: `M${x1} ${y1}C${mx} ${y1},${mx} ${y2},${x2} ${y2}`, "marker-end": "url(#arrow)" }));
    }
    for (const n of nodes) {
      const p = L.pos.get(n.key);
      const g = s("g", { class: `node st-${n.state || "none"} ${n.cls || ""} ${selected === n.key ? "sel" : ""}`, transform: `translate(${p.x},${p.y})`,
        "data-step": n.label, "data-state": n.state || "", tabindex: 0, onclick: () => onpick && onpick(n.key) });
      g.append(s("title", {}, `${n.label}: ${n.state || n.sub || ""}`));
      g.append(s("rect", { width: L.W, height: L.H, rx: 9 }));
      g.append(s("rect", { class: "bar", width: 5, height: L.H - 16, x: 8, y: 8, rx: 2.5 }));
      const name = n.label.length > 22 ? n.label.slice(0, 21) + "…" : n.label;
      g.append(s("text", { x: 22, y: 23 }, name));
      g.append(s("text", { x: 22, y: 41, class: "sub" }, n.sub || ""));
      svg.append(g);
    }
    return h("div.dag-wrap", svg);
  }
  function legend(states) {
    return h("div.legend", states.map((st) => badge(st)));
  }

  // ---- pages ---------------------------------------------------------------------------------

  const TASK_STATES = ["pending", "initializing", "enqueuing_steps", "steps_in_process", "evaluating_results", "waiting_for_dependencies",
    "waiting_for_retry", "blocked_by_failures", "complete", "error", "cancelled", "resolved_manually"];

  function tasksPage(params) {
    const q = new URLSearchParams(params);
    const f = { namespace: q.get("namespace") || "", name: q.get("name") || "", state: q.get("state") || "" };
    let cursor = q.get("cursor") || "";
    const cursors = [];
    const nsIn = h("input#f-namespace", { placeholder: "any", value: f.namespace, size: 12 });
    const nameIn = h("input#f-name", { placeholder: "any", value: f.name, size: 14 });
    const stateIn = h("select#f-state", h("option", { value: "" }, "any state"),
      h("option", { value: "running" }, "running (not finished)"), TASK_STATES.map((st) => h("option", { value: st }, st.replaceAll("_", " "))));
    stateIn.value = f.state;
    const apply = () => {
      const p = new URLSearchParams();
      if (nsIn.value.trim()) p.set("namespace", nsIn.value.trim());
      if (nameIn.value.trim()) p.set("name", nameIn.value.trim());
      if (stateIn.value) p.set("state", stateIn.value);
      location.hash = "#/tasks" + (p.toString() ? "?" + p : "");
    };
    for (const el of [nsIn, nameIn]) el.addEventListener("keydown", (e) => { if (e.key === "Enter") apply(); });
    stateIn.addEventListener("change", apply);
    const body = h("tbody");
    const pager = h("div.pager");
    const count = h("span.muted.small");
    fill(main, 
      h("div.page-head", h("h1", "Tasks"), count, h("div.spacer")),
      h("div.panel",
        h("div.filters", h("label", "Namespace", nsIn), h("label", "Template", nameIn), h("label", "State", stateIn),
          h("button.primary", { onclick: apply }, "Filter"), h("button", { onclick: () => { location.hash = "#/tasks"; } }, "Clear")),
        h("table#tasks", h("thead", h("tr", ["Task", "Template", "State", "Priority", "Correlation", "Created", "Updated"].map((t) => h("th", t)))), body),
        pager));
    const running = TASK_STATES.filter((st) => !["complete", "error", "cancelled", "resolved_manually"].includes(st));
    const page = (c) => { cursor = c; generation++; clearTimeout(timer); load(); };
    const load = () => refresh(async (gen) => {
      const p = new URLSearchParams({ limit: "25" });
      if (f.namespace) p.set("namespace", f.namespace);
      if (f.name) p.set("name", f.name);
      if (f.state) p.set("state", f.state === "running" ? running.join(",") : f.state);
      if (cursor) p.set("cursor", cursor);
      const doc = await get("v1/tasks?" + p);
      if (gen !== generation) return;
      count.textContent = doc.tasks.length + (doc.next_cursor ? "+" : "") + " shown · refreshed " + new Date().toLocaleTimeString();
      fill(body, ...(doc.tasks.length ? doc.tasks.map((t) => h("tr.click", { dataset: { taskId: t.id, state: t.state }, onclick: () => { location.hash = "#/tasks/" + t.id; } },
        h("td", h("a", { href: "#/tasks/" + t.id }, h("span.mono", short(t.id)))),
        h("td", h("b", t.name), h("span.muted", " · " + t.namespace + " · v" + t.version)),
        h("td", badge(t.state)), h("td", t.priority), h("td.mono", t.correlation_id || "—"),
        h("td", when(t.created_at)), h("td", when(t.updated_at)))) : [h("tr", h("td.empty", { colspan: 7 }, "No task matches."))]));
      fill(pager, 
        h("button", { disabled: !cursors.length, onclick: () => page(cursors.pop() || "") }, "← Newer"),
        h("button", { disabled: !doc.next_cursor, onclick: () => { cursors.push(cursor); page(doc.next_cursor); } }, "Older →"));
    });
    load();
  }

  // runTime is a step's last attempt's duration, or how long it has run so far.
  function runTime(st) {
    if (st.completed_at) return dur(between(st.started_at, st.completed_at));
    if (st.state === "in_progress" && st.started_at) return "running " + dur(between(st.started_at, new Date().toISOString()));
    return "—";
  }

  function stepSub(st) {
    let sub = st.state.replaceAll("_", " ");
    if (st.attempts) sub += ` · ${st.attempts}/${st.max_attempts}`;
    const d = between(st.started_at, st.completed_at);
    if (d !== null && st.state === "complete") sub += " · " + dur(d);
    return sub;
  }

  function taskPage(id) {
    let selected = null;      // the selected step's id
    let last = null;          // the last steps document
    const head = h("div");
    const dagBox = h("div");
    const stepsBody = h("tbody");
    const detail = h("div.panel#step-detail", h("p.muted", "Select a step in the graph or the table."));
    const actionsBox = h("div.panel#step-actions");
    const timeline = h("ul.timeline#timeline");
    fill(main, 
      h("div.crumb", h("a", { href: "#/tasks" }, "Tasks"), " / ", h("span.mono", id)), head,
      h("div.panel", h("h2", "Workflow"), dagBox, legend(["pending", "enqueued", "in_progress", "waiting_for_retry", "complete", "error", "resolved_manually", "cancelled"])),
      h("div.grid2",
        h("div",
          h("div.panel", h("h2", "Steps"), h("table#steps", h("thead", h("tr", ["Step", "State", "Attempts", "Started", "Duration", "Last error"].map((t) => h("th", t)))), stepsBody))),
        h("div", detail, actionsBox, h("div.panel", h("h2", "Timeline"), timeline))));

    const pick = (sid) => { selected = sid; if (last) draw(last.task, last.steps, true); };

    function drawActions(task, st) {
      if (!st) { fill(actionsBox, h("h2", "Operator actions"), h("p.muted", "Select a step in error to retry, resolve or complete it.")); return; }
      if (actionsBox.dataset.step === st.id && actionsBox.dataset.state === st.state) return; // keep what the operator types
      actionsBox.dataset.step = st.id; actionsBox.dataset.state = st.state;
      const inError = st.state === "error";
      const reason = h("input#action-reason", { placeholder: "why (kept in the audit trail)" });
      const result = h("textarea#action-result", { placeholder: '{"result": "as the handler would have returned it"}' });
      const path = `v1/tasks/${task.id}/workflow_steps/${st.id}`;
      const run = (action, label) => act(label + " " + st.name, async () => {
        const body = { action, operator: operator(), reason: reason.value };
        if (action === "complete") {
          try { body.result = result.value.trim() ? JSON.parse(result.value) : null; } catch (e) { throw new Error("the result is not JSON: " + e.message); }
        }
        await api("PATCH", path, body);
      }, () => { delete actionsBox.dataset.state; });
      fill(actionsBox, h("h2", "Operator actions: " + st.name),
        inError ? null : h("p.muted.small", "Only a step in error can be retried, resolved or completed; this one is " + st.state.replaceAll("_", " ") + "."),
        h("label.field", "Reason", reason),
        h("div.actions",
          h("button.primary#action-retry", { disabled: !inError, onclick: () => run("retry", "Retry") }, "Retry"),
          h("button#action-resolve", { disabled: !inError, onclick: () => run("resolve", "Resolve") }, "Resolve manually")),
        h("h3", "Complete with a result"), result,
        h("div.actions", h("button#action-complete", { disabled: !inError, onclick: () => run("complete", "Complete") }, "Complete")));
    }

    function drawDetail(st) {
      if (!st) return;
      const kids = [h("h2", st.name, " ", badge(st.state)),
        h("div.kv",
          h("div.k", "Step ID"), h("div.mono", st.id),
          h("div.k", "Handler"), h("div.mono", st.handler),
          h("div.k", "Type"), h("div", st.type || "standard"),
          h("div.k", "Attempts"), h("div", `${st.attempts} of ${st.max_attempts}`),
          h("div.k", "Created"), h("div", when(st.created_at)),
          h("div.k", "Started"), h("div", when(st.started_at)),
          h("div.k", "Completed"), h("div", when(st.completed_at)),
          h("div.k", "Duration"), h("div", runTime(st)),
          st.next_retry_at ? [h("div.k", "Next retry"), h("div", new Date(st.next_retry_at).toLocaleTimeString())] : null)];
      if (st.last_error) kids.push(h("h3", "Last error"), h("div.err", `attempt ${st.last_error.attempt} · ${st.last_error.kind}\n${st.last_error.message}`),
        st.last_error.stack ? h("pre", st.last_error.stack) : null);
      if (st.result !== undefined && st.result !== null) kids.push(h("h3", "Result"), h("pre#step-result", json(st.result)));
      const sig = JSON.stringify(st) + (st.state === "in_progress" ? Date.now() : ""); // a running step's time ticks
      if (detail.dataset.sig !== sig) { detail.dataset.sig = sig; fill(detail, ...kids); }
    }

    function draw(task, steps, force) {
      const byId = new Map(steps.steps.map((x) => [x.id, x]));
      const running = steps.steps.some((x) => x.state === "in_progress");
      const sig = JSON.stringify([task.state, task.updated_at, steps.steps.map((x) => [x.state, x.attempts]), selected, running && Date.now()]);
      if (force || dagBox.dataset.sig !== sig) {
        dagBox.dataset.sig = sig;
        fill(dagBox, dag(steps.steps.map((x) => ({ key: x.id, label: x.name, state: x.state, sub: stepSub(x) })),
          steps.edges, pick, selected));
        fill(stepsBody, ...steps.steps.map((x) => h("tr.click" + (x.id === selected ? ".sel" : ""), { dataset: { step: x.name, state: x.state }, onclick: () => pick(x.id) },
          h("td", h("b", x.name), h("div.muted.small.mono", x.handler)), h("td", badge(x.state)), h("td", `${x.attempts}/${x.max_attempts}`),
          h("td", when(x.started_at)), h("td", runTime(x)),
          h("td.small", x.last_error ? h("span", { title: x.last_error.message }, x.last_error.kind + ": " + x.last_error.message.slice(0, 60)) : "—"))));
      }
      const st = byId.get(selected);
      drawDetail(st);
      drawActions(task, st);
    }

    function drawHead(task) {
      const sig = JSON.stringify([task.state, task.updated_at]);
      if (head.dataset.sig === sig) return;
      head.dataset.sig = sig;
      const finished = ["complete", "error", "cancelled", "resolved_manually"].includes(task.state);
      fill(head, h("div.page-head",
        h("h1", task.name), h("span#task-state", { dataset: { state: task.state } }, badge(task.state, true)),
        h("span.muted", task.namespace + " · v" + task.version),
        h("div.spacer"),
        h("a", { href: `#/templates/${encodeURIComponent(task.namespace)}/${encodeURIComponent(task.name)}/${encodeURIComponent(task.version)}` }, "Template"),
        h("a", { href: "#/dlq?task=" + task.id }, "Dead letter"),
        h("button.danger#action-cancel", { disabled: finished, onclick: () => {
          if (!confirm("Cancel this task? Its unfinished steps are cancelled.")) return;
          act("Cancel task", () => api("DELETE", `v1/tasks/${task.id}?reason=` + encodeURIComponent("cancelled from the UI by " + (operator() || "an operator"))));
        } }, "Cancel task")),
        h("div.cards",
          h("div.card", h("div.k", "Created"), h("div.v.small", new Date(task.created_at).toLocaleString())),
          h("div.card", h("div.k", "Duration"), h("div.v.small", dur(between(task.created_at, task.completed_at || (finished ? task.updated_at : new Date().toISOString()))))),
          h("div.card", h("div.k", "Priority"), h("div.v.small", String(task.priority))),
          h("div.card", h("div.k", "Correlation"), h("div.v.small.mono", task.correlation_id || "—")),
          h("div.card", h("div.k", "Initiator"), h("div.v.small", [task.initiator, task.source_system].filter(Boolean).join(" · ") || "—"))),
        h("details.panel", h("summary", "Context"), h("pre", json(task.context))));
    }

    function drawTimeline(trs) {
      const sig = String(trs.length);
      if (timeline.dataset.sig === sig) return;
      timeline.dataset.sig = sig;
      fill(timeline, ...trs.slice().reverse().map((tr) => {
        let meta = "";
        const m = tr.metadata || {};
        if (m.error) meta = (m.error.kind || "") + ": " + (m.error.message || "");
        else if (m.operator || m.reason) meta = [m.operator && "by " + m.operator, m.reason].filter(Boolean).join(" — ");
        else if (m.worker_id) meta = "worker " + m.worker_id;
        return h("li", h("span.dot.s-" + tr.to),
          h("div.what", h("b", tr.step_name || "task"), " ", tr.from ? tr.from.replaceAll("_", " ") + " → " : "", h("b", tr.to.replaceAll("_", " ")),
            h("span.pill", { title: "event" }, tr.event)),
          meta ? h("div.small.muted", meta) : null,
          h("div.when", new Date(tr.at).toLocaleTimeString() + " · " + ago(tr.at)));
      }));
    }

    refresh(async (gen) => {
      const [task, steps, trs] = await Promise.all([get("v1/tasks/" + id), get(`v1/tasks/${id}/workflow_steps`), get(`v1/tasks/${id}/transitions`)]);
      if (gen !== generation) return;
      if (!selected) {
        const failedStep = steps.steps.find((x) => x.state === "error");
        if (failedStep) selected = failedStep.id;
      }
      last = { task, steps };
      drawHead(task);
      draw(task, steps);
      drawTimeline(trs.transitions);
    });
  }

  function templatesPage() {
    const body = h("div");
    fill(main, h("div.page-head", h("h1", "Templates")), body);
    get("v1/templates").then((doc) => {
      if (!doc.templates.length) { fill(body, h("div.panel.empty", "No template is registered with this engine.")); return; }
      fill(body, ...doc.templates.map((t) => {
        const href = `#/templates/${encodeURIComponent(t.namespace)}/${encodeURIComponent(t.name)}/${encodeURIComponent(t.version)}`;
        return h("div.panel",
          h("div.page-head", h("h2", h("a", { href }, t.name)), h("span.muted", t.namespace + " · v" + t.version + " · " + t.steps.length + " steps"),
            h("div.spacer"), h("a", { href: "#/tasks?namespace=" + encodeURIComponent(t.namespace) + "&name=" + encodeURIComponent(t.name) }, "Tasks →")),
          t.description ? h("p.muted", t.description) : null,
          templateDag(t));
      }));
    }).catch(showError);
  }
  function templateDag(t) {
    return dag(t.steps.map((st) => ({ key: st.name, label: st.name, sub: st.type + " · " + st.handler, cls: "tmpl" })),
      t.steps.flatMap((st) => st.dependencies.map((d) => ({ from: d, to: st.name }))));
  }
  function templatePage(ns, name, version) {
    fill(main, h("p.muted", "Loading…"));
    get(`v1/templates/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${encodeURIComponent(version)}`).then((t) => {
      fill(main, 
        h("div.crumb", h("a", { href: "#/templates" }, "Templates"), " / ", t.namespace, " / ", t.name),
        h("div.page-head", h("h1", t.name), h("span.muted", t.namespace + " · v" + t.version), h("div.spacer"),
          h("a", { href: "#/tasks?namespace=" + encodeURIComponent(t.namespace) + "&name=" + encodeURIComponent(t.name) }, "Its tasks →")),
        t.description ? h("p.muted", t.description) : null,
        h("div.panel", h("h2", "DAG"), templateDag(t)),
        h("div.panel", h("h2", "Steps"), h("table", h("thead", h("tr", ["Step", "Type", "Handler", "Depends on", "Attempts", "Retryable"].map((x) => h("th", x)))),
          h("tbody", t.steps.map((st) => h("tr", h("td", h("b", st.name), st.description ? h("div.small.muted", st.description) : null), h("td", st.type), h("td.mono", st.handler),
            h("td", st.dependencies.join(", ") || "—"), h("td", st.max_attempts), h("td", st.retryable ? "yes" : "no")))))),
        h("div.grid2", h("div.panel", h("h2", "Mermaid"), h("pre", t.mermaid)), h("div.panel", h("h2", "Definition"), h("pre", json(t.definition)))));
    }).catch(showError);
  }

  function dlqPage(params) {
    const q = new URLSearchParams(params);
    const status = q.get("status") ?? "pending";
    const task = q.get("task");
    const statusIn = h("select#dlq-status", ["", "pending", "manually_resolved", "permanently_failed", "cancelled"].map((x) => h("option", { value: x }, x ? x.replaceAll("_", " ") : "any status")));
    statusIn.value = status;
    statusIn.addEventListener("change", () => { location.hash = "#/dlq?status=" + statusIn.value; });
    const stats = h("div.cards");
    const inv = h("tbody");
    const list = h("tbody");
    fill(main, h("div.page-head", h("h1", "Dead letters"), h("div.spacer"), h("label.small.muted", "Status ", statusIn)), stats,
      h("div.panel", h("h2", "Investigation queue"), h("p.muted.small", "Pending entries, ranked: the one to look at first comes first."),
        h("table", h("thead", h("tr", ["Score", "Task", "Reason", "Task state", "Written"].map((x) => h("th", x)))), inv)),
      h("div.panel", h("h2", task ? "Entry of task " + short(task) : "Entries"),
        h("table#dlq", h("thead", h("tr", ["Entry", "Task", "Reason", "Status", "Task state", "Written", "Resolution"].map((x) => h("th", x)))), list)));
    const resolveForm = (e) => {
      if (e.status !== "pending") return h("span.small", e.resolved_by ? `by ${e.resolved_by} ${ago(e.resolved_at)}` : "—", e.notes ? h("div.muted.small", e.notes) : null);
      const sel = h("select", ["manually_resolved", "permanently_failed", "cancelled"].map((x) => h("option", { value: x }, x.replaceAll("_", " "))));
      const notes = h("input", { placeholder: "notes", size: 14 });
      return h("div.actions", sel, notes, h("button.primary", { onclick: () => act("Resolve entry", () => api("PATCH", "v1/dlq/entry/" + e.id,
        { status: sel.value, notes: notes.value, resolved_by: operator() }), () => { list.dataset.sig = ""; }) }, "Resolve"));
    };
    refresh(async (gen) => {
      const p = new URLSearchParams({ limit: "50" });
      if (status) p.set("status", status);
      const [st, iq, page] = await Promise.all([get("v1/dlq/stats"), get("v1/dlq/investigation?limit=10"),
        task ? get("v1/dlq/task/" + task).then((e) => ({ entries: [e] })).catch((e) => { if (e.status === 404) return { entries: [] }; throw e; }) : get("v1/dlq?" + p)]);
      if (gen !== generation) return;
      const total = st.stats.reduce((a, x) => a + x.total, 0);
      const pending = st.stats.reduce((a, x) => a + (x.by_status.pending || 0), 0);
      fill(stats, h("div.card", h("div.k", "Entries"), h("div.v", total)), h("div.card", h("div.k", "Pending"), h("div.v", pending)),
        ...st.stats.map((x) => h("div.card", h("div.k", x.reason.replaceAll("_", " ")), h("div.v", x.total),
          h("div.small.muted", x.mean_time_to_resolution_seconds ? "mean time to resolution " + dur(x.mean_time_to_resolution_seconds) : "none resolved yet"))));
      fill(inv, ...(iq.entries.length ? iq.entries.map((e) => h("tr", h("td", e.score.toFixed(1)), h("td", h("a", { href: "#/tasks/" + e.task_id }, e.task_name), h("span.muted.small", " " + e.namespace)),
        h("td", e.reason.replaceAll("_", " ")), h("td", badge(e.task_state)), h("td", when(e.created_at)))) : [h("tr", h("td.empty", { colspan: 5 }, "Nothing to investigate."))]));
      const sig = JSON.stringify(page.entries.map((e) => [e.id, e.status, e.task_state]));
      if (list.dataset.sig === sig) return;
      list.dataset.sig = sig;
      fill(list, ...(page.entries.length ? page.entries.map((e) => h("tr", { dataset: { entry: e.id, status: e.status } },
        h("td.mono", short(e.id)), h("td", h("a", { href: "#/tasks/" + e.task_id }, e.task_name), h("span.muted.small", " " + e.namespace)),
        h("td", e.reason.replaceAll("_", " ")), h("td", badge(e.status === "pending" ? "pending_dlq" : e.status)), h("td", badge(e.task_state)),
        h("td", when(e.created_at)), h("td", resolveForm(e)))) : [h("tr", h("td.empty", { colspan: 7 }, "No entry."))]));
    });
  }

  function analyticsPage() {
    const sinceIn = h("select#an-window", [["3600", "last hour"], ["86400", "last 24 hours"], ["604800", "last 7 days"], ["", "all time"]].map(([v, l]) => h("option", { value: v }, l)));
    sinceIn.value = sessionStorage.getItem("tasker.window") ?? "86400";
    const tmpl = h("tbody"), steps = h("tbody"), slow = h("tbody"), retried = h("tbody");
    const load = () => refresh(async (gen) => {
      const p = new URLSearchParams();
      if (sinceIn.value) p.set("since", new Date(Date.now() - Number(sinceIn.value) * 1000).toISOString());
      const [perf, bn] = await Promise.all([get("v1/analytics/performance?" + p), get("v1/analytics/bottlenecks?" + p)]);
      if (gen !== generation) return;
      const rateCell = (x) => {
        const fill = h("span");
        fill.style.width = (x * 100).toFixed(0) + "%";
        return h("td", { title: (x * 100).toFixed(1) + "%" }, h("div.bar-h", fill), h("span.small", (x * 100).toFixed(0) + "%"));
      };
      fill(tmpl, ...(perf.templates.length ? perf.templates.map((t) => h("tr", h("td", h("b", t.name), h("span.muted.small", " " + t.namespace + " · v" + t.version)),
        h("td", t.tasks), h("td", t.completed), h("td", t.failed), h("td", t.cancelled), rateCell(t.success_rate), h("td", dur(t.duration_p50_seconds)), h("td", dur(t.duration_p95_seconds)))) :
        [h("tr", h("td.empty", { colspan: 8 }, "No task in this window."))]));
      const stepRow = (x) => h("tr", h("td", h("b", x.step), h("span.muted.small", " " + x.namespace + "/" + x.task_name)), h("td", x.steps), h("td", x.attempts), h("td", x.retries),
        rateCell(x.success_rate), h("td", dur(x.duration_p50_seconds)), h("td", dur(x.duration_p95_seconds)));
      fill(steps, ...perf.steps.map(stepRow));
      fill(slow, ...(bn.slowest.length ? bn.slowest.map((x) => h("tr", h("td", h("b", x.step), h("span.muted.small", " " + x.task_name)), h("td", dur(x.duration_p95_seconds)))) : [h("tr", h("td.empty", { colspan: 2 }, "—"))]));
      fill(retried, ...(bn.most_retried.length ? bn.most_retried.map((x) => h("tr", h("td", h("b", x.step), h("span.muted.small", " " + x.task_name)), h("td", x.retries))) : [h("tr", h("td.empty", { colspan: 2 }, "No retries."))]));
    });
    sinceIn.addEventListener("change", () => { sessionStorage.setItem("tasker.window", sinceIn.value); generation++; clearTimeout(timer); load(); });
    const th = (...xs) => h("thead", h("tr", xs.map((x) => h("th", x))));
    fill(main, h("div.page-head", h("h1", "Analytics"), h("div.spacer"), h("label.small.muted", "Window ", sinceIn)),
      h("div.panel", h("h2", "Templates"), h("table#perf-templates", th("Template", "Tasks", "Complete", "Error", "Cancelled", "Success", "p50", "p95"), tmpl)),
      h("div.grid2", h("div.panel", h("h2", "Steps"), h("table", th("Step", "Steps", "Attempts", "Retries", "Success", "p50", "p95"), steps)),
        h("div", h("div.panel", h("h2", "Slowest steps (p95)"), h("table", th("Step", "p95"), slow)),
          h("div.panel", h("h2", "Most retried"), h("table", th("Step", "Retries"), retried)))));
    load();
  }

  function healthPage() {
    const body = h("div");
    fill(main, h("div.page-head", h("h1", "Health")), body);
    refresh(async (gen) => {
      const res = await fetch(base + "v1/health", { headers: { Accept: "application/json" }, credentials: "same-origin" });
      const r = await res.json();
      if (gen !== generation) return;
      if (!r.status) throw Object.assign(new Error(r.detail || "health unavailable"), { status: res.status });
      const st = r.status === "ok" ? "complete" : r.status === "degraded" ? "waiting_for_retry" : "error";
      const kids = [
        h("div.cards",
          h("div.card", h("div.k", "Status"), h("div.v", h("span#health-status.badge.big.s-" + st, r.status))),
          h("div.card", h("div.k", "Database"), h("div.v.small", r.database.ok ? "answers in " + dur(r.database.latency_seconds) : "down: " + (r.database.error || ""))),
          h("div.card", h("div.k", "Workers"), h("div.v.small", r.workers.running ? `${r.workers.busy} busy of ${r.workers.concurrency}` : "not running")),
          h("div.card", h("div.k", "Leader"), h("div.v.small.mono", r.leader.held ? r.leader.leader_id + (r.leader.this_engine ? " (this engine)" : "") : "none")),
          h("div.card", h("div.k", "Engine"), h("div.v.small.mono", r.worker_id)),
          r.pool ? h("div.card", h("div.k", "Pool"), h("div.v.small", `${r.pool.acquired_conns} in use · ${r.pool.idle_conns} idle · max ${r.pool.max_conns}`)) : null),
        r.reasons && r.reasons.length ? h("div.panel", h("h2", "Why"), r.reasons.map((x) => h("div.err", x))) : null,
        h("div.grid2",
          h("div.panel", h("h2", "Queues"), r.queue.namespaces && r.queue.namespaces.length ? h("table", h("thead", h("tr", ["Namespace", "Ready", "Oldest"].map((x) => h("th", x)))),
            h("tbody", r.queue.namespaces.map((n) => h("tr", h("td", n.namespace), h("td", n.ready), h("td", n.age_known ? dur(n.oldest_age_seconds) : "—"))))) : h("p.muted", r.queue.inspected ? "No backlog." : "The queue does not report its backlog.")),
          h("div.panel", h("h2", "Maintenance services"), r.services && r.services.length ? h("table", h("thead", h("tr", ["Service", "Runs", "Last run", "Last error"].map((x) => h("th", x)))),
            h("tbody", r.services.map((x) => h("tr", h("td", x.name), h("td", x.runs), h("td", when(x.last_run)), h("td.small", x.last_error || "—"))))) : h("p.muted", "This engine has not led the maintenance services."))),
        r.waiting_for_handler && r.waiting_for_handler.length ? h("div.panel", h("h2", "Waiting for a handler"), h("table", h("thead", h("tr", ["Namespace", "Handler", "Steps"].map((x) => h("th", x)))),
          h("tbody", r.waiting_for_handler.map((x) => h("tr", h("td", x.namespace), h("td.mono", x.callable), h("td", x.steps)))))) : null,
      ];
      fill(body, ...kids.filter(Boolean));
    });
  }

  // ---- routing -------------------------------------------------------------------------------

  function route() {
    generation++;
    clearTimeout(timer);
    const hash = location.hash.replace(/^#\/?/, "") || "tasks";
    const [path, query] = hash.split("?");
    const parts = path.split("/").map(decodeURIComponent);
    document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === parts[0]));
    switch (parts[0]) {
      case "tasks": return parts[1] ? taskPage(parts[1]) : tasksPage(query || "");
      case "templates": return parts.length >= 4 ? templatePage(parts[1], parts[2], parts[3]) : templatesPage();
      case "dlq": return dlqPage(query || "");
      case "analytics": return analyticsPage();
      case "health": return healthPage();
      default: fill(main, h("div.panel.empty", "No such page. ", h("a", { href: "#/tasks" }, "Tasks")));
    }
  }

  const opIn = document.getElementById("operator");
  opIn.value = localStorage.getItem("tasker.operator") || "";
  opIn.addEventListener("change", () => localStorage.setItem("tasker.operator", opIn.value.trim()));
  window.addEventListener("hashchange", route);
  route();
})();
