// The fleet's events, capture schedules, and firmware rollouts (phase, per-device progress, pause/resume/abort).

import { get, send } from "./api.js";
import { debounce, fill, h, when } from "./dom.js";

export async function eventsView(root) {
  const table = h("table", { id: "fleet-events" });
  async function load() {
    const out = await get("/api/v1/events?limit=200");
    fill(table, 
      h("tr", {}, ["time", "device", "severity", "type", "message"].map((t) => h("th", {}, t))),
      out.items.map((e) =>
        h(
          "tr",
          {},
          h("td", {}, when(e.received_ms)),
          h("td", {}, h("a", { href: `#/device/${e.device_id}` }, e.device_id)),
          h("td", {}, e.severity),
          h("td", {}, e.type),
          h("td", {}, e.message),
        ),
      ),
    );
  }
  await load();
  fill(root, h("section", { class: "panel" }, h("h2", {}, "Events across the fleet"), table));
  const reload = debounce(load, 300);
  return {
    onEvent(type) {
      if (type === "event" || type === "resync") reload();
    },
  };
}

function progress(done, total) {
  const pct = total ? Math.round((100 * done) / total) : 0;
  return h("div", { class: "progress", title: `${done}/${total} blocks` }, h("div", { style: `width:${pct}%` }));
}

export async function otaView(root) {
  const list = h("div", { id: "rollouts" });
  const artifacts = h("table", { id: "artifacts" });
  const status = h("span", { class: "muted", role: "status" });

  async function load() {
    const [rollouts, arts] = await Promise.all([get("/api/v1/ota/rollouts"), get("/api/v1/ota/artifacts")]);
    fill(artifacts, 
      h("tr", {}, ["artifact", "version", "size", "uploaded"].map((t) => h("th", {}, t))),
      arts.items.map((a) =>
        h("tr", {}, h("td", {}, a.id), h("td", {}, a.version), h("td", {}, `${a.size} B`), h("td", {}, when(a.created_ms))),
      ),
    );
    const details = await Promise.all(rollouts.items.map((r) => get(`/api/v1/ota/rollouts/${r.id}`)));
    fill(list, 
      details.length ? null : h("p", { class: "muted" }, "no rollouts"),
      details.map((r) =>
        h(
          "section",
          { class: "panel", dataset: { rollout: r.id, state: r.state } },
          h("h2", {}, `${r.id} → ${r.version} (${r.target})`),
          h(
            "div",
            { class: "toolbar" },
            h("span", { class: "chip" }, r.state),
            h("span", {}, `phase ${r.phase}`),
            h("span", { class: "muted" }, Object.entries(r.counts).map(([s, n]) => `${n} ${s}`).join(", ")),
            r.reason ? h("span", { class: "error" }, r.reason) : null,
            ["pause", "resume", "abort"].map((action) =>
              h(
                "button",
                {
                  type: "button",
                  onclick: async () => {
                    try {
                      await send("POST", `/api/v1/ota/rollouts/${r.id}/${action}`);
                      status.textContent = `${action}: done`;
                      load();
                    } catch (err) {
                      status.textContent = `${action}: ${err.message}`;
                    }
                  },
                },
                action,
              ),
            ),
          ),
          h(
            "table",
            {},
            h("tr", {}, ["device", "phase", "status", "progress", "detail"].map((t) => h("th", {}, t))),
            r.devices.map((d) =>
              h(
                "tr",
                { dataset: { device: d.device_id } },
                h("td", {}, h("a", { href: `#/device/${d.device_id}` }, d.device_id)),
                h("td", {}, d.phase),
                h("td", {}, d.shown),
                h("td", {}, progress(d.blocks_done || 0, d.blocks_total || 0)),
                h("td", {}, d.detail || ""),
              ),
            ),
          ),
        ),
      ),
    );
  }
  await load();
  fill(root, h("h1", { style: "font-size:1.2rem" }, "Firmware rollouts"), status, list,
    h("section", { class: "panel" }, h("h2", {}, "Artifacts"), artifacts));
  const reload = debounce(load, 500);
  return {
    onEvent(type) {
      if (type === "event" || type === "command" || type === "state" || type === "resync") reload();
    },
  };
}

export async function schedulesView(root) {
  const table = h("table", { id: "schedules" });
  const status = h("span", { class: "muted", role: "status" });
  async function load() {
    const out = await get("/api/v1/schedules");
    fill(
      table,
      h("tr", {}, ["id", "target", "rule", "frames", "next slot", "last slot", "fired", "missed", ""].map((t) => h("th", {}, t))),
      out.items.length ? null : h("tr", {}, h("td", { class: "muted" }, "no schedules")),
      out.items.map((s) =>
        h(
          "tr",
          { dataset: { schedule: s.id } },
          h("td", {}, s.id),
          h("td", {}, s.target_kind === "all" ? "all devices" : `${s.target_kind} ${s.target}`),
          h("td", {}, `${s.kind} ${s.spec}`),
          h("td", {}, s.capture_count),
          h("td", {}, s.enabled ? when(s.next_slot_ms) : "disabled"),
          h("td", {}, when(s.last_slot_ms)),
          h("td", {}, s.fired),
          h("td", {}, s.missed),
          h(
            "td",
            {},
            h(
              "button",
              {
                type: "button",
                onclick: async () => {
                  try {
                    await send("PATCH", `/api/v1/schedules/${s.id}`, { enabled: !s.enabled });
                    load();
                  } catch (err) {
                    status.textContent = err.message;
                  }
                },
              },
              s.enabled ? "disable" : "enable",
            ),
          ),
        ),
      ),
    );
  }
  await load();
  fill(root, h("section", { class: "panel" }, h("h2", {}, "Capture schedules"), status, table,
    h("p", { class: "muted" }, "Add schedules with camfleet schedule add (docs/controller.md).")));
  const reload = debounce(load, 500);
  return {
    onEvent(type) {
      if (type === "command" || type === "resync") reload(); // a slot fired: its counts moved
    },
  };
}
