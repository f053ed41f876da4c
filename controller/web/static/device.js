// One device: its latest frame (live), actions, desired config editor with inline validation,
// commands (what waits for a sleeper, and history), a day's gallery, telemetry and events.

import { ApiError, askToken, get, send, token } from "./api.js";
import { ago, badge, debounce, fill, h, when } from "./dom.js";

const ACTIONS = [
  ["capture", "Capture", {}],
  ["reboot", "Reboot", {}],
  ["stay_awake", "Stay awake 10 min", { seconds: 600 }],
];

function dayBounds(value) {
  const start = new Date(`${value}T00:00:00`);
  return [start.getTime(), start.getTime() + 86400000];
}

function today() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function chart(points, label, unit) {
  const values = points.filter((p) => p.v != null);
  if (values.length < 2) return h("p", { class: "muted" }, `${label}: not enough data`);
  const xs = values.map((p) => p.t);
  const ys = values.map((p) => p.v);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const path = values
    .map((p) => {
      const x = ((p.t - x0) / (x1 - x0 || 1)) * 300;
      const y = 70 - ((p.v - y0) / (y1 - y0 || 1)) * 60;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 300 80");
  svg.setAttribute("class", "chart");
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", path);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#3b6fd1");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
  return h("div", {}, h("div", { class: "muted" }, `${label} ${y0}…${y1} ${unit} (latest ${ys[0]})`), svg);
}

export async function deviceView(root, deviceId) {
  const base = `/api/v1/devices/${deviceId}`;
  const galleryUrl = () => {
    const [since, until] = dayBounds(dayInput.value);
    return `/api/v1/gallery/${deviceId}?since_ms=${since}&until_ms=${until}`;
  };
  const dayInput = h("input", { type: "date", id: "gallery-day", value: today() });
  // Every request at once: on a slow controller the page costs one round trip, not six.
  const first = {
    detail: get(base),
    gallery: get(galleryUrl()),
    commands: get(`/api/v1/commands?device=${deviceId}&limit=50`),
    events: get(`${base}/events?limit=50`),
    telemetry: get(`${base}/telemetry?limit=200`),
  };
  for (const p of Object.values(first)) p.catch(() => {}); // awaited below; no unhandled rejection
  let detail;
  try {
    detail = await first.detail;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      fill(root, h("p", {}, `No device ${deviceId}.`), h("a", { href: "#/" }, "Back to the fleet"));
      return { onEvent() {} };
    }
    throw err;
  }

  const header = h("div", { class: "toolbar", id: "device-header" });
  const latest = h("img", { id: "latest-frame", alt: `latest frame of ${deviceId}` });
  const latestCaption = h("p", { class: "muted", id: "latest-caption" });
  const actionStatus = h("span", { class: "muted", id: "action-status", role: "status" });
  const actions = h(
    "div",
    { class: "actions" },
    ACTIONS.map(([action, label, params]) =>
      h(
        "button",
        {
          type: "button",
          id: `action-${action}`,
          onclick: async () => {
            actionStatus.textContent = `${label}: sending…`;
            try {
              const out = await send("POST", "/api/v1/commands", { action, device: deviceId, params });
              actionStatus.textContent = `${label}: command ${out.items[0].id} ${out.items[0].status}`;
              loadCommands();
            } catch (err) {
              actionStatus.textContent = `${label}: ${err.message}`;
            }
          },
        },
        label,
      ),
    ),
    actionStatus,
  );

  // --- desired config editor ---
  const editor = h("textarea", { id: "config-editor", spellcheck: "false", "aria-label": "device config overrides (JSON)" });
  const configError = h("div", { class: "error", id: "config-error", role: "alert" });
  const configStatus = h("div", { class: "muted", id: "config-status" });
  const saveButton = h("button", { type: "button", class: "primary", id: "config-save" }, "Save");

  function problemsOfText() {
    try {
      const value = JSON.parse(editor.value || "{}");
      if (value === null || typeof value !== "object" || Array.isArray(value)) return [null, ["the config must be a JSON object"]];
      return [value, []];
    } catch (err) {
      return [null, [`not valid JSON: ${err.message}`]];
    }
  }

  async function check() {
    const [value, problems] = problemsOfText();
    // The controller's own rules, as one types once a token is known (checking needs it, as
    // saving does); without one, Save asks for it and checks then.
    if (value !== null && token()) {
      const out = await send("POST", "/api/v1/config/validate", { config: value }).catch((err) => ({ problems: [err.message] }));
      problems.push(...out.problems);
    }
    configError.textContent = problems.join("\n");
    saveButton.disabled = problems.length > 0;
    return problems.length === 0 ? value : null;
  }

  // The version this page saved: it stays marked "saved" when a live update (the device
  // reporting it applied) redraws the status a moment later.
  let savedVersion = null;

  function showConfig(status) {
    editor.value = JSON.stringify(status.overrides, null, 2);
    configStatus.textContent =
      `desired version ${status.version}, reported ${status.reported_version}` +
      (status.reported_error ? ` (device refused: ${status.reported_error})` : "") +
      (status.drift ? " · not applied yet (drift)" : " · applied") +
      (status.version === savedVersion ? " · saved" : "");
    configError.textContent = "";
    saveButton.disabled = false;
  }

  editor.addEventListener("input", debounce(check, 300));
  saveButton.addEventListener("click", async () => {
    if (!token() && !(await askToken())) return;
    const value = await check();
    if (value === null) return;
    try {
      const status = await send("PUT", `${base}/config`, { config: value, replace: true });
      savedVersion = status.version;
      showConfig(status);
    } catch (err) {
      configError.textContent = err.message; // the controller's own validation, inline
    }
  });

  // --- commands, telemetry, events, gallery ---
  const commandsTable = h("table", { id: "commands" });
  async function loadCommands(pending) {
    const out = await (pending || get(`/api/v1/commands?device=${deviceId}&limit=50`));
    fill(commandsTable, 
      h("tr", {}, h("th", {}, "action"), h("th", {}, "status"), h("th", {}, "created"), h("th", {}, "detail")),
      out.items.map((c) =>
        h(
          "tr",
          { class: c.pending ? "pending" : "", dataset: { command: c.id, status: c.status } },
          h("td", {}, c.action),
          h("td", {}, c.pending ? `${c.status} (waits for the device)` : c.status),
          h("td", {}, ago(c.created_ms)),
          h("td", {}, c.detail || ""),
        ),
      ),
    );
  }

  const eventsTable = h("table", { id: "events" });
  async function loadEvents(pending) {
    const out = await (pending || get(`${base}/events?limit=50`));
    fill(eventsTable, 
      out.items.length ? null : h("tr", {}, h("td", { class: "muted" }, "no events")),
      out.items.map((e) =>
        h("tr", {}, h("td", {}, when(e.received_ms)), h("td", {}, e.severity), h("td", {}, e.type), h("td", {}, e.message)),
      ),
    );
  }

  const charts = h("div", { id: "charts" });
  async function loadTelemetry(pending) {
    const out = await (pending || get(`${base}/telemetry?limit=200`));
    const series = (key) => out.items.map((t) => ({ t: t.received_ms, v: t[key] ?? null }));
    fill(charts, chart(series("battery_pct"), "battery", "%"), chart(series("rssi_dbm"), "RSSI", "dBm"));
  }

  const gallery = h("div", { class: "gallery", id: "gallery" });
  const galleryCount = h("span", { class: "muted", id: "gallery-count" });
  async function loadGallery(pending) {
    const out = await (pending || get(galleryUrl()));
    galleryCount.textContent = `${out.count} frames`;
    fill(
      gallery,
      out.items.map(([id, captured]) =>
        h("img", {
          src: `/api/v1/frames/${deviceId}/${id}/thumb`,
          loading: "lazy",
          decoding: "async",
          alt: `frame ${id}`,
          title: when(captured),
          width: 96,
          height: 72,
          dataset: { frame: id },
          onclick: () => openViewer(id, captured),
        }),
      ),
    );
    return out;
  }
  dayInput.addEventListener("change", () => loadGallery());

  // The day as a timelapse, made by the controller (token needed: it costs its CPU).
  const timelapseStatus = h("span", { class: "muted", id: "timelapse-status", role: "status" });
  async function timelapse(format) {
    const [since, until] = dayBounds(dayInput.value);
    timelapseStatus.textContent = `making the ${format.toUpperCase()}…`;
    try {
      const blob = await send(
        "POST",
        "/api/v1/timelapse",
        { device: deviceId, since_ms: since, until_ms: until, format, fps: 12 },
        { as: "blob" },
      );
      const link = h("a", { href: URL.createObjectURL(blob), download: `${deviceId}-${dayInput.value}.${format}` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      timelapseStatus.textContent = `${format.toUpperCase()} ready (${Math.round(blob.size / 1024)} KiB)`;
    } catch (err) {
      timelapseStatus.textContent = `timelapse: ${err.message}`;
    }
  }
  const timelapseButtons = ["gif", "mp4"].map((format) =>
    h("button", { type: "button", id: `timelapse-${format}`, onclick: () => timelapse(format) }, `Timelapse ${format.toUpperCase()}`),
  );

  function openViewer(id, captured) {
    document.getElementById("viewer-img").src = `/api/v1/frames/${deviceId}/${id}/image`;
    document.getElementById("viewer-caption").textContent = `${deviceId} · ${id} · ${when(captured)}`;
    document.getElementById("viewer").showModal();
  }

  function showHeader(d) {
    fill(header, 
      h("h1", { style: "margin:0;font-size:1.3rem" }, d.device_id),
      badge(d),
      h("span", { class: "muted" }, `fw ${d.firmware || "?"} · ${d.platform || "?"} · seen ${ago(d.last_seen_ms)}`),
      d.groups.map((g) => h("span", { class: "chip" }, g)),
      d.pending_commands ? h("span", { class: "chip" }, `${d.pending_commands} commands waiting`) : null,
    );
  }

  function showLatest(frameId, capturedMs) {
    latest.src = `/api/v1/frames/${deviceId}/${frameId}/image`;
    latest.dataset.frame = frameId;
    latestCaption.textContent = `frame ${frameId} · ${when(capturedMs)}`;
  }

  showHeader(detail);
  latestCaption.textContent = "no frame yet";
  showConfig(detail.config);

  fill(root, 
    header,
    h(
      "div",
      { class: "device" },
      h(
        "div",
        {},
        h("section", { class: "panel" }, latest, latestCaption, actions),
        h("section", { class: "panel" }, h("h2", {}, "Gallery "), h("div", { class: "toolbar" }, dayInput, galleryCount, timelapseButtons, timelapseStatus), gallery),
      ),
      h(
        "div",
        {},
        h("section", { class: "panel" }, h("h2", {}, "Desired config (this device's overrides)"), editor, configError, configStatus, h("div", { class: "row" }, saveButton)),
        h("section", { class: "panel" }, h("h2", {}, "Commands"), commandsTable),
        h("section", { class: "panel" }, h("h2", {}, "Telemetry"), charts),
        h("section", { class: "panel" }, h("h2", {}, "Events"), eventsTable),
      ),
    ),
  );
  const [shown] = await Promise.all([
    loadGallery(first.gallery),
    loadCommands(first.commands),
    loadEvents(first.events),
    loadTelemetry(first.telemetry),
  ]);
  if (shown.latest) showLatest(shown.latest.id, shown.latest.captured_at_ms);

  const refreshDetail = debounce(async () => {
    const d = await get(base);
    showHeader(d);
    if (!editor.matches(":focus") && !configError.textContent) showConfig(d.config);
  }, 300);

  return {
    onEvent(type, event) {
      if (event.device_id !== deviceId && type !== "resync") return;
      if (type === "frame") {
        if (!event.historical) showLatest(event.frame_id, event.captured_at_ms);
        const [since, until] = dayBounds(dayInput.value);
        if (event.captured_at_ms >= since && event.captured_at_ms < until) loadGallery();
      } else if (type === "command") {
        loadCommands();
        refreshDetail();
      } else if (type === "event") {
        loadEvents();
      } else if (type === "telemetry") {
        loadTelemetry();
      } else {
        refreshDetail();
        loadCommands();
      }
    },
  };
}
