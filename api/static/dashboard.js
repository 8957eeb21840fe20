// The live dashboard: plain JS over the REST API (/api/v1), no build step, no external URLs.
// Data is inserted with textContent only, never as HTML.
"use strict";

(() => {
  const config = JSON.parse(document.body.dataset.config || "{}");
  const API = config.api || "/api/v1";
  const REFRESH_MS = (config.refresh_seconds || 30) * 1000;
  const SEVERITIES = ["low", "medium", "high", "critical"];
  const OPEN_STATES = new Set(["pending", "firing"]);
  const STORE = { token: "telemetry.apiToken", actor: "telemetry.actor" };
  const GRAIN_BY_HOURS = { 6: "5m", 24: "5m", 72: "15m", 168: "1h" };
  const PAGE = Math.min(1000, config.page_max || 1000); // the server's largest page may be smaller
  // Display units of the simulated metrics (the registry's units, spelled for people).
  const UNITS = { co2: "ppm", temperature: "°C", humidity: "% RH", occupancy: "people" };
  const REPORT_ORDER = ["alerts", "fleet", "quality", "drift", "drift-evidently", "evaluation"];

  const state = {
    devices: [],
    deviceById: new Map(),
    alerts: new Map(), // open alerts by id
    selection: { deviceId: null, metric: null },
    userPicked: false, // once someone picks a device, refreshes keep their choice
    chartKey: null,
    hasData: true, // until /stats says no reading was ever loaded
  };

  // ---------- small helpers ----------
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");

  function fmtTime(iso, withSeconds = false) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return `${day} ${time}${withSeconds ? ":" + pad(d.getUTCSeconds()) : ""}`;
  }

  function fmtAgo(iso) {
    if (!iso) return "";
    const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
    if (!Number.isFinite(seconds)) return "";
    if (seconds < 0) return "in the future";
    if (seconds < 90) return "just now";
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} days ago`;
  }

  // Plotly draws date strings as they are; strip the zone so the axis shows UTC.
  const plotTime = (iso) => new Date(iso).toISOString().slice(0, 23).replace("T", " ");

  function fmtCount(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
    if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
    if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
    return n.toLocaleString("en-US");
  }

  const fmtNum = (v, digits = 2) =>
    v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits);

  const severityRank = (s) => SEVERITIES.indexOf(s);

  // Simulated names repeat their place ("site-01/zone-02/dev-03"); where the place is shown
  // beside the name, the last part is enough.
  function shortName(name, site, zone) {
    const prefix = site && zone ? `${site}/${zone}/` : null;
    return prefix && name && name.startsWith(prefix) ? name.slice(prefix.length) : name;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function errorDetail(response) {
    try {
      const body = await response.json();
      const detail = body.detail ?? body.message ?? body;
      if (Array.isArray(detail)) {
        return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`)
          .join("; ");
      }
      return typeof detail === "string" ? detail : JSON.stringify(detail);
    } catch {
      return response.statusText || `HTTP ${response.status}`;
    }
  }

  function url(path, params = {}) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") query.set(key, value);
    }
    const qs = query.toString();
    return `${API}${path}${qs ? "?" + qs : ""}`;
  }

  async function getJSON(path, params) {
    const response = await fetch(url(path, params), { headers: { Accept: "application/json" } });
    if (!response.ok) throw new ApiError(response.status, await errorDetail(response));
    return response.json();
  }

  // Every page of a list endpoint, up to `cap` items; says whether it stopped early.
  async function getAll(path, params = {}, cap = 5000) {
    const items = [];
    let cursor = null;
    do {
      const page = await getJSON(path, { ...params, limit: PAGE, cursor });
      items.push(...(page.items || []));
      cursor = page.next_cursor;
    } while (cursor && items.length < cap);
    return { items: items.slice(0, cap), truncated: Boolean(cursor) || items.length > cap };
  }

  function showEmpty(id, message) {
    const node = $(id);
    node.textContent = message || "";
    node.hidden = !message;
  }

  function sectionError(id, what, error) {
    showEmpty(id, `${what} unavailable: ${error.message}${error.status ? ` (HTTP ${error.status})` : ""}`);
  }

  // ---------- stats ----------
  async function loadStats() {
    const box = $("stats");
    try {
      const stats = await getJSON("/stats");
      state.hasData = !(stats.readings === 0);
      const bySeverity = stats.alerts_by_severity || {};
      const cards = [
        ["Devices", fmtCount(stats.devices)],
        ["Readings", fmtCount(stats.readings)],
        ["Anomalies", fmtCount(stats.anomalies)],
        ["Open alerts", fmtCount(stats.open_alerts)],
      ].map(([label, value]) => el("div", { class: "card" },
        el("div", { class: "card-value", text: value }), el("div", { class: "card-label", text: label })));
      const pills = el("div", { class: "card severity-card" },
        el("div", { class: "pills" }, SEVERITIES.slice().reverse().map((s) =>
          el("span", { class: `pill sev-${s}${bySeverity[s] ? "" : " zero"}`, title: `open ${s} alerts` },
            el("b", { text: fmtCount(bySeverity[s] || 0) }), ` ${s}`))),
        el("div", { class: "card-label", text: "Open alerts by severity" }));
      box.replaceChildren(...cards, pills);
    } catch (error) {
      box.replaceChildren(el("div", { class: "card error", text: `Totals unavailable: ${error.message}` }));
    }
  }

  // ---------- alerts ----------
  function token() {
    return $("token").value.trim();
  }

  function showMessage(kind, text) {
    const box = $("alert-message");
    box.className = `message ${kind}`;
    box.textContent = text;
    box.hidden = false;
    clearTimeout(showMessage.timer);
    if (kind === "ok") showMessage.timer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  function deviceLabel(alert) {
    if (alert.device_id === null || alert.device_id === undefined) return "whole fleet (data)";
    const device = state.deviceById.get(alert.device_id);
    return alert.device_name || device?.device_name || `device ${alert.device_id}`;
  }

  function shortDeviceLabel(alert) {
    const device = state.deviceById.get(alert.device_id);
    return shortName(deviceLabel(alert), alert.site ?? device?.site, alert.zone ?? device?.zone);
  }

  function alertPlace(alert) {
    const device = state.deviceById.get(alert.device_id);
    const site = alert.site ?? device?.site;
    const zone = alert.zone ?? device?.zone;
    return site ? `${site}${zone ? " / " + zone : ""}` : "";
  }

  function sortedAlerts() {
    return [...state.alerts.values()].sort((a, b) =>
      severityRank(b.severity) - severityRank(a.severity)
      || (a.state === b.state ? 0 : a.state === "firing" ? -1 : 1)
      || String(b.last_seen_at).localeCompare(String(a.last_seen_at)));
  }

  async function act(alert, action, button) {
    const body = { by: $("actor").value.trim() || "dashboard", note: $("note").value.trim() || null };
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    button.disabled = true;
    try {
      const response = await fetch(`${API}/alerts/${alert.alert_id}/${action}`,
        { method: "POST", headers, body: JSON.stringify(body) });
      if (!response.ok) {
        const detail = (await errorDetail(response)).replace(/\.$/, "");
        const hint = response.status === 401 ? " Paste the API token above."
          : response.status === 409 ? " It is no longer open; the list is refreshed." : "";
        showMessage("error", `${action === "ack" ? "Acknowledge" : "Resolve"} #${alert.alert_id} failed (HTTP ${response.status}): ${detail}.${hint}`);
        if (response.status === 409 || response.status === 404) loadAlerts();
        return;
      }
      const updated = await response.json();
      applyAlert(updated);
      $("note").value = "";
      showMessage("ok", action === "ack"
        ? `Alert #${alert.alert_id} (${deviceLabel(alert)} ${alert.metric}) acknowledged.`
        : `Alert #${alert.alert_id} (${deviceLabel(alert)} ${alert.metric}) resolved.`);
      scheduleRefresh();
    } catch (error) {
      showMessage("error", `${action} #${alert.alert_id} failed: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  // Resolving closes the alert: the first click arms the button, the second sends.
  function resolveButton(alert) {
    const button = el("button", { type: "button", class: "btn resolve", text: "Resolve" });
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      if (button.dataset.armed) {
        delete button.dataset.armed;
        button.textContent = "Resolve";
        act(alert, "resolve", button);
        return;
      }
      button.dataset.armed = "1";
      button.textContent = "Confirm?";
      setTimeout(() => { delete button.dataset.armed; button.textContent = "Resolve"; }, 4000);
    });
    return button;
  }

  function renderAlerts(flashId = null) {
    const rows = sortedAlerts().map((alert) => {
      const acked = alert.acknowledged_at
        ? el("span", { title: alert.ack_note || "" }, alert.acknowledged_by || "someone",
          el("br"), el("small", { class: "muted", text: fmtTime(alert.acknowledged_at) }))
        : el("span", { class: "muted", text: "no" });
      const ack = el("button", { type: "button", class: "btn ack", text: "Ack",
        disabled: Boolean(alert.acknowledged_at), title: alert.acknowledged_at ? "already acknowledged" : "Acknowledge" });
      ack.addEventListener("click", (event) => { event.stopPropagation(); act(alert, "ack", ack); });
      const selectable = alert.device_id !== null && alert.device_id !== undefined;
      const row = el("tr", {
        class: `sev-row-${alert.severity}${flashId === alert.alert_id ? " flash" : ""}${selectable ? " clickable" : ""}`,
        "data-alert-id": alert.alert_id,
        title: selectable ? "Show this device and metric in the KPI chart" : null,
      },
      el("td", {}, el("span", { class: `badge sev-${alert.severity}`, text: alert.severity })),
      el("td", { class: "nowrap" }, el("div", { class: "device-name", text: shortDeviceLabel(alert) }),
        el("small", { class: "muted", text: alertPlace(alert) })),
      // Quality alerts name a check ("quality:suite:expect_..."): it may break after : and _.
      el("td", { class: "metric", title: alert.metric, text: String(alert.metric).replace(/([:_])/g, "$1\u200b") }),
      el("td", {}, el("span", { class: `state state-${alert.state}`, text: alert.state }),
        alert.drifted ? el("span", { class: "tag", title: "the metric drifted in this period", text: "drift" }) : null),
      el("td", { class: "nowrap" }, fmtTime(alert.opened_at), el("br"),
        el("small", { class: "muted", text: fmtAgo(alert.opened_at) })),
      el("td", { class: "nowrap", text: fmtTime(alert.last_seen_at) }),
      el("td", { class: "num", text: fmtNum(alert.peak_score, 1) }),
      el("td", { class: "reason", text: alert.reason || "" }),
      el("td", {}, acked),
      el("td", { class: "actions" }, ack, resolveButton(alert)));
      if (selectable) {
        row.addEventListener("click", () => selectDevice(alert.device_id, alert.metric, true));
      }
      return row;
    });
    $("alerts").querySelector("tbody").replaceChildren(...rows);
    $("alerts").hidden = rows.length === 0;
    $("alert-count").textContent = rows.length ? String(rows.length) : "";
    showEmpty("alerts-empty", rows.length ? "" : state.devices.length
      ? "No open alerts: every device is within its normal behaviour."
      : "No open alerts (no data has been loaded yet).");
  }

  function applyAlert(alert) {
    if (!alert || alert.alert_id === undefined) return;
    if (OPEN_STATES.has(alert.state)) state.alerts.set(alert.alert_id, alert);
    else state.alerts.delete(alert.alert_id);
    renderAlerts(alert.alert_id);
    renderFleet();
  }

  async function loadAlerts() {
    try {
      const { items } = await getAll("/alerts", { state: "open" }, 2000);
      state.alerts = new Map(items.map((a) => [a.alert_id, a]));
      renderAlerts();
      return true;
    } catch (error) {
      $("alerts").hidden = true;
      sectionError("alerts-empty", "Alerts", error);
      return false;
    }
  }

  // ---------- fleet ----------
  function worstByDevice() {
    const worst = new Map();
    for (const alert of state.alerts.values()) {
      if (alert.device_id === null || alert.device_id === undefined) continue;
      const entry = worst.get(alert.device_id) || { severity: null, metrics: [] };
      if (entry.severity === null || severityRank(alert.severity) > severityRank(entry.severity)) {
        entry.severity = alert.severity;
      }
      entry.metrics.push(alert.metric);
      worst.set(alert.device_id, entry);
    }
    return worst;
  }

  function renderFleet() {
    const box = $("fleet");
    document.querySelector("#fleet-panel .legend").hidden = !state.devices.length;
    document.querySelector("#kpi-panel .controls").hidden = !state.devices.length;
    if (!state.devices.length) {
      box.replaceChildren(el("p", { class: "empty",
        text: "No devices registered yet. Run `telemetry demo` (or a backfill) to load a fleet." }));
      $("fleet-summary").textContent = "";
      return;
    }
    const worst = worstByDevice();
    const sites = new Map();
    for (const device of state.devices) {
      if (!sites.has(device.site)) sites.set(device.site, new Map());
      const zones = sites.get(device.site);
      if (!zones.has(device.zone)) zones.set(device.zone, []);
      zones.get(device.zone).push(device);
    }
    const siteNodes = [...sites.entries()].map(([site, zones]) => el("div", { class: "site" },
      el("h3", { text: site }),
      [...zones.entries()].map(([zone, devices]) => el("div", { class: "zone" },
        el("span", { class: "zone-name", text: zone }),
        el("div", { class: "chips" }, devices.map((device) => {
          const alert = worst.get(device.device_id);
          const selected = state.selection.deviceId === device.device_id;
          const chip = el("button", {
            type: "button",
            class: `chip ${alert ? "sev-" + alert.severity : "ok"}${selected ? " selected" : ""}`,
            title: alert
              ? `${device.device_name}: open ${alert.severity} alert on ${alert.metrics.join(", ")}`
              : `${device.device_name}: no open alert`,
            text: shortName(device.device_name, device.site, device.zone),
          });
          chip.addEventListener("click", () => selectDevice(device.device_id, null, true));
          return chip;
        }))))));
    box.replaceChildren(...siteNodes);
    const alerting = state.devices.filter((d) => worst.has(d.device_id)).length;
    $("fleet-summary").textContent =
      `${state.devices.length} devices in ${sites.size} site${sites.size === 1 ? "" : "s"}` +
      (alerting ? ` · ${alerting} with open alerts` : " · all clear");
  }

  async function loadDevices() {
    try {
      const { items, truncated } = await getAll("/devices", {}, 10000);
      items.sort((a, b) => String(a.site).localeCompare(String(b.site))
        || String(a.zone).localeCompare(String(b.zone))
        || String(a.device_name).localeCompare(String(b.device_name), "en", { numeric: true }));
      state.devices = items;
      state.deviceById = new Map(items.map((d) => [d.device_id, d]));
      renderFleet();
      if (truncated) $("fleet-summary").textContent += " (first 10,000 shown)";
      fillDeviceSelect();
    } catch (error) {
      $("fleet").replaceChildren(el("p", { class: "empty", text: `Devices unavailable: ${error.message}` }));
    }
  }

  // ---------- KPI chart ----------
  function fillDeviceSelect() {
    const select = $("kpi-device");
    const current = state.selection.deviceId;
    select.replaceChildren(...state.devices.map((d) => el("option", {
      value: d.device_id,
      text: d.device_name.includes(d.site) ? d.device_name : `${d.device_name} · ${d.site} / ${d.zone}`,
      selected: d.device_id === current,
    })));
  }

  function fillMetricSelect(device, metric) {
    const metrics = device?.metrics?.length ? device.metrics : ["co2", "temperature", "humidity", "occupancy"];
    const chosen = metrics.includes(metric) ? metric : metrics[0];
    $("kpi-metric").replaceChildren(...metrics.map((m) => el("option", { value: m, text: m, selected: m === chosen })));
    return chosen;
  }

  function defaultSelection() {
    const alerts = sortedAlerts().filter((a) => state.deviceById.has(a.device_id));
    if (alerts.length) return { deviceId: alerts[0].device_id, metric: alerts[0].metric };
    return state.devices.length ? { deviceId: state.devices[0].device_id, metric: null } : null;
  }

  function selectDevice(deviceId, metric, byUser) {
    const device = state.deviceById.get(deviceId);
    if (!device) return;
    if (byUser) state.userPicked = true;
    state.selection.deviceId = deviceId;
    state.selection.metric = fillMetricSelect(device, metric ?? state.selection.metric);
    $("kpi-device").value = String(deviceId);
    renderFleet();
    if (byUser) $("kpi-panel").scrollIntoView({ behavior: "smooth", block: "nearest" });
    return loadChart();
  }

  // The newest reading of the device and metric: simulated history may end before now.
  async function rangeEnd(deviceId, metric) {
    try {
      const detail = await getJSON(`/devices/${deviceId}`);
      const latest = (detail.latest || []).filter((l) => !metric || l.metric === metric)
        .map((l) => new Date(l.ts).getTime()).filter(Number.isFinite);
      if (latest.length) return new Date(Math.max(...latest) + 60_000);
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    return new Date();
  }

  function chartLayout(extra = {}) {
    return {
      margin: { l: 56, r: 16, t: 8, b: 40 },
      height: 420,
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "#ffffff",
      font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#1f2937" },
      hovermode: "closest",
      legend: { orientation: "h", x: 0, y: 1.12, bgcolor: "rgba(0,0,0,0)", traceorder: "normal" },
      xaxis: { type: "date", gridcolor: "#eef0f3" },
      yaxis: { gridcolor: "#eef0f3", zeroline: false },
      ...extra,
    };
  }

  const PLOT_CONFIG = { displaylogo: false, responsive: true,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d", "toggleSpikelines"] };

  async function loadChart() {
    const { deviceId, metric } = state.selection;
    const chart = $("kpi-chart");
    if (deviceId === null || !metric) {
      Plotly.purge(chart);
      chart.hidden = true;
      $("kpi-caption").textContent = "";
      showEmpty("kpi-empty", state.devices.length ? "Pick a device." : "No devices yet.");
      return;
    }
    if (!state.hasData) {
      Plotly.purge(chart);
      chart.hidden = true;
      $("kpi-caption").textContent = "";
      showEmpty("kpi-empty", "No readings loaded yet.");
      return;
    }
    const hours = Number($("kpi-range").value);
    const grain = GRAIN_BY_HOURS[hours] || "5m";
    const key = `${deviceId}|${metric}|${hours}`;
    state.chartKey = key;
    try {
      const end = await rangeEnd(deviceId, metric);
      const start = new Date(end.getTime() - hours * 3600_000);
      const range = { device_id: deviceId, metric, from: start.toISOString(), to: end.toISOString() };
      const [kpis, anomalies] = await Promise.all([
        getAll("/kpis", { ...range, grain }, 20000),
        getAll("/anomalies", range, 5000),
      ]);
      if (state.chartKey !== key) return; // a newer selection is already loading
      drawChart(kpis.items, anomalies, { deviceId, metric, grain, start, end });
    } catch (error) {
      if (state.chartKey !== key) return;
      Plotly.purge(chart);
      chart.hidden = true;
      sectionError("kpi-empty", "KPIs", error);
    }
  }

  function drawChart(kpis, anomalies, { deviceId, metric, grain, start, end }) {
    const chart = $("kpi-chart");
    const device = state.deviceById.get(deviceId);
    const name = device ? device.device_name : `device ${deviceId}`;
    const rows = kpis.slice().sort((a, b) => String(a.window_start).localeCompare(String(b.window_start)));
    $("kpi-caption").textContent =
      `${name} · ${metric} · ${grain} windows from ${fmtTime(start)} to ${fmtTime(end)} UTC` +
      ` · ${anomalies.items.length}${anomalies.truncated ? "+" : ""} anomalous reading${anomalies.items.length === 1 ? "" : "s"}`;
    if (!rows.length) {
      Plotly.purge(chart);
      chart.hidden = true;
      showEmpty("kpi-empty", `No KPI windows for ${name} ${metric} in this range (dbt may not have built them yet).`);
      return;
    }
    showEmpty("kpi-empty", "");
    chart.hidden = false;
    const x = rows.map((r) => plotTime(r.window_start));
    const traces = [
      { x, y: rows.map((r) => r.max), type: "scatter", mode: "lines", line: { width: 0 },
        hoverinfo: "skip", showlegend: false, name: "max" },
      { x, y: rows.map((r) => r.min), type: "scatter", mode: "lines", line: { width: 0 },
        fill: "tonexty", fillcolor: "rgba(37, 99, 235, 0.14)", name: "min–max", hoverinfo: "skip" },
      { x, y: rows.map((r) => r.mean), type: "scatter", mode: "lines", name: `mean per ${grain}`,
        line: { color: "#2563eb", width: 1.8 },
        customdata: rows.map((r) => [r.min, r.max, r.reading_count, r.breach_count,
          r.completeness === null || r.completeness === undefined ? null : 100 * r.completeness]),
        hovertemplate: "%{x|%Y-%m-%d %H:%M} UTC<br>mean %{y:.2f} (min %{customdata[0]:.2f}, max %{customdata[1]:.2f})" +
          "<br>%{customdata[2]} readings, %{customdata[3]} breaches, %{customdata[4]:.0f}% complete<extra></extra>" },
    ];
    if (anomalies.items.length) {
      const points = anomalies.items;
      traces.push({
        x: points.map((a) => plotTime(a.ts)), y: points.map((a) => a.value),
        type: "scatter", mode: "markers", name: "anomaly",
        marker: { color: "#dc2626", size: points.map((a) => 5 + Math.max(0, severityRank(a.severity))),
          line: { color: "#7f1d1d", width: 0.5 }, opacity: 0.85 },
        customdata: points.map((a) => [a.score, a.severity, a.detector, a.baseline_mean]),
        hovertemplate: "%{x|%Y-%m-%d %H:%M:%S} UTC<br>value %{y:.2f} (baseline %{customdata[3]:.2f})" +
          "<br>score %{customdata[0]:.1f}, %{customdata[1]}<br>%{customdata[2]}<extra>anomaly</extra>",
      });
    }
    // Open alerts on this device and metric, shaded from when they opened.
    const shapes = [...state.alerts.values()]
      .filter((a) => a.device_id === deviceId && a.metric === metric)
      .map((a) => ({ type: "rect", xref: "x", yref: "paper", y0: 0, y1: 1,
        x0: plotTime(new Date(Math.max(new Date(a.opened_at).getTime(), start.getTime())).toISOString()),
        x1: plotTime(end.toISOString()), fillcolor: "rgba(220, 38, 38, 0.07)", line: { width: 0 }, layer: "below" }));
    const unit = UNITS[metric];
    Plotly.react(chart, traces, chartLayout({
      height: null, autosize: true, shapes,
      uirevision: `${deviceId}|${metric}|${start.getTime() - end.getTime()}`, // refreshes keep a zoom
      xaxis: { ...chartLayout().xaxis, range: [plotTime(start.toISOString()), plotTime(end.toISOString())] },
      yaxis: { ...chartLayout().yaxis, title: { text: unit ? `${metric} (${unit})` : metric } },
    }), PLOT_CONFIG);
  }

  // ---------- heatmap ----------
  const HOUR_MS = 3600_000;

  // Complete hours only: the API counts a whole hour's expected windows, so the hour still
  // being loaded would look like an outage.
  async function heatmapRange() {
    const newest = await getJSON("/kpis", { grain: "5m", order: "desc", limit: 1 });
    const last = newest.items?.[0];
    if (!last) return null;
    const end = Math.floor(new Date(last.window_end).getTime() / HOUR_MS) * HOUR_MS;
    return { start: new Date(end - 24 * HOUR_MS), end: new Date(end) };
  }

  function hideHeatmap(message) {
    const chart = $("heatmap-chart");
    Plotly.purge(chart);
    chart.hidden = true;
    $("heatmap-caption").textContent = "";
    showEmpty("heatmap-empty", message);
  }

  async function loadHeatmap() {
    if (!state.hasData) {
      hideHeatmap("No readings loaded yet: the heatmap fills in once data is loaded and dbt has run.");
      return;
    }
    try {
      const range = await heatmapRange();
      const { items } = range
        ? await getAll("/heatmap", { from: range.start.toISOString(), to: range.end.toISOString() }, 50000)
        : { items: [] };
      if (!items.length) {
        hideHeatmap(range ? "No complete hour of KPI windows yet." : "No KPI windows yet: dbt has not built them.");
        return;
      }
      showEmpty("heatmap-empty", "");
      const chart = $("heatmap-chart");
      chart.hidden = false;
      // At least a readable row per zone; more when the reports beside it make the row taller.
      chart.style.minHeight = `${Math.max(260, 70 + 18 * new Set(items.map((i) => `${i.site}/${i.zone}`)).size)}px`;
      const rowKey = (i) => `${i.site} / ${i.zone}`;
      const rows = [...new Set(items.map(rowKey))]
        .sort((a, b) => b.localeCompare(a, "en", { numeric: true })); // plotly draws bottom-up
      const hours = [...new Set(items.map((i) => plotTime(i.hour)))].sort();
      const cell = new Map(items.map((i) => [`${rowKey(i)}|${plotTime(i.hour)}`, i]));
      const z = rows.map((r) => hours.map((h) => cell.get(`${r}|${h}`)?.health ?? null));
      const text = rows.map((r) => hours.map((h) => {
        const c = cell.get(`${r}|${h}`);
        if (!c) return "no data";
        return `${c.alerts} alert${c.alerts === 1 ? "" : "s"} opened, ` +
          `${fmtCount(c.anomalies)} anomalous point${c.anomalies === 1 ? "" : "s"}`;
      }));
      Plotly.react(chart, [{
        type: "heatmap", x: hours, y: rows, z, text, zmin: 0, zmax: 1, xgap: 1, ygap: 1,
        colorscale: [[0, "#b91c1c"], [0.5, "#f59e0b"], [0.8, "#fde68a"], [1, "#16a34a"]],
        colorbar: { title: { text: "healthy", side: "right" }, thickness: 12, len: 0.9,
          tickformat: ".0%" },
        hovertemplate: "%{y}<br>%{x|%Y-%m-%d %H:00} UTC<br>%{z:.0%} of windows healthy" +
          "<br>%{text}<extra></extra>",
      }], chartLayout({
        height: null, autosize: true, uirevision: "heatmap",
        margin: { l: 16, r: 16, t: 8, b: 40 },
        xaxis: { type: "date", gridcolor: "rgba(0,0,0,0)" },
        yaxis: { type: "category", automargin: true },
      }), PLOT_CONFIG);
      const stamps = items.map((i) => new Date(i.hour).getTime());
      const first = new Date(Math.min(...stamps)), last = new Date(Math.max(...stamps) + HOUR_MS);
      $("heatmap-caption").textContent = `complete hours ${fmtTime(first.toISOString())} – ` +
        `${fmtTime(last.toISOString())} UTC · share of healthy 5-min windows`;
    } catch (error) {
      hideHeatmap("");
      sectionError("heatmap-empty", "Heatmap", error);
    }
  }

  // ---------- reports ----------
  async function loadReports() {
    const list = $("report-list");
    try {
      const { items } = await getAll("/reports", {}, 500);
      const rank = (r) => (REPORT_ORDER.includes(r.name) ? REPORT_ORDER.indexOf(r.name) : REPORT_ORDER.length);
      items.sort((a, b) => rank(a) - rank(b) || String(b.generated_at).localeCompare(String(a.generated_at)));
      list.replaceChildren(...items.map((r) => el("li", {},
        el("a", { href: r.url, target: "_blank", rel: "noopener", text: r.title || r.name }),
        el("div", { class: "muted report-time" }, `written ${fmtTime(r.generated_at)}`,
          r.range_start ? ` · covers ${fmtTime(r.range_start)} – ${fmtTime(r.range_end)}` : ""),
        r.summary ? el("div", { class: "summary", text: r.summary }) : null)));
      $("reports-index").hidden = !items.length;
      showEmpty("reports-empty", items.length ? "" : "No reports yet: `telemetry report` writes them.");
    } catch (error) {
      list.replaceChildren();
      sectionError("reports-empty", "Reports", error);
    }
  }

  // ---------- refresh and live stream ----------
  let refreshing = null;
  async function refreshAll() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      const [, alertsLoaded] = await Promise.all([loadDevices(), loadAlerts(), loadStats()]);
      if (alertsLoaded) renderAlerts(); // its names and empty message depend on the devices
      renderFleet();
      if (!state.userPicked || !state.deviceById.has(state.selection.deviceId)) {
        const pick = defaultSelection();
        if (pick) await selectDevice(pick.deviceId, pick.metric, false);
        else await loadChart();
      } else {
        await loadChart();
      }
      await Promise.all([loadHeatmap(), loadReports()]);
      $("updated").textContent = `updated ${fmtTime(new Date().toISOString(), true)} UTC`;
      document.body.dataset.loaded = "true"; // tests and scripts can wait for the first load
    })();
    try {
      await refreshing;
    } finally {
      refreshing = null;
    }
  }

  let refreshTimer = null;
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => { loadStats(); }, 800);
  }

  function setLive(on, text) {
    const live = $("live");
    live.className = `live ${on ? "on" : "off"}`;
    live.textContent = text || (on ? "live" : "reconnecting…");
  }

  let retryMs = 1000;
  function connectStream() {
    if (typeof EventSource === "undefined") {
      setLive(false, "no live updates (browser)");
      return;
    }
    const source = new EventSource(`${API}/alerts/stream`);
    source.addEventListener("open", () => { retryMs = 1000; setLive(true); });
    source.addEventListener("alert", (event) => {
      try {
        applyAlert(JSON.parse(event.data));
        scheduleRefresh();
      } catch {
        /* a malformed event is skipped; the periodic refresh catches up */
      }
    });
    source.addEventListener("error", () => {
      setLive(false);
      // The browser retries a dropped stream itself; a refused one (CLOSED) is retried here.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connectStream, retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      }
    });
  }

  // ---------- wiring ----------
  function init() {
    $("prefect-link").href = config.prefect_ui_url || "#";
    $("refresh-seconds").textContent = String(config.refresh_seconds || 30);
    $("token").value = localStorage.getItem(STORE.token) || "";
    $("actor").value = localStorage.getItem(STORE.actor) || "";
    if (config.writes_enabled === false) {
      $("token").placeholder = "writes are disabled on this server";
    }
    $("token").addEventListener("input", () => localStorage.setItem(STORE.token, token()));
    $("actor").addEventListener("input", () => localStorage.setItem(STORE.actor, $("actor").value.trim()));
    $("credentials").addEventListener("submit", (event) => event.preventDefault());
    $("kpi-device").addEventListener("change", (event) => selectDevice(Number(event.target.value), null, true));
    $("kpi-metric").addEventListener("change", (event) => {
      state.userPicked = true;
      state.selection.metric = event.target.value;
      loadChart();
    });
    $("kpi-range").addEventListener("change", () => loadChart());
    refreshAll();
    connectStream();
    setInterval(() => { if (!document.hidden) refreshAll(); }, REFRESH_MS);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshAll(); });
  }

  if (typeof Plotly === "undefined") {
    document.body.prepend(el("p", { class: "message error", text: "plotly.js did not load: charts are unavailable." }));
    window.Plotly = { react() {}, purge() {} };
  }
  init();
})();
