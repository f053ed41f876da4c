// The fleet grid: every device with its latest thumbnail, state, battery, RSSI, firmware,
// groups, spool depth; filtered by group and state, searched by name. Live events update it.

import { get } from "./api.js";
import { badge, debounce, fill, h } from "./dom.js";

const filters = { q: "", group: "", state: "" };

function thumbUrl(d) {
  // The frame id in the URL: a new frame is a new URL, a known one comes from the cache.
  return `/api/v1/frames/${d.device_id}/${d.latest_frame}/thumb`;
}

function card(d) {
  const facts = [
    d.battery_pct != null ? `battery ${Math.round(d.battery_pct)}%` : null,
    d.rssi_dbm != null ? `${d.rssi_dbm} dBm` : null,
    d.firmware ? `fw ${d.firmware}` : null,
    d.spool_depth != null ? `spool ${d.spool_depth}` : null,
    d.pending_commands ? `${d.pending_commands} waiting` : null,
  ].filter(Boolean);
  return h(
    "a",
    { class: "card", href: `#/device/${d.device_id}`, dataset: { device: d.device_id } },
    h(
      "div",
      { class: "thumb" },
      d.latest_frame
        ? h("img", { src: thumbUrl(d), alt: `latest frame of ${d.device_id}`, loading: "lazy" })
        : "no frame yet",
    ),
    h(
      "div",
      { class: "body" },
      h("div", { class: "name" }, h("span", {}, d.device_id), badge(d)),
      h("div", { class: "facts" }, facts.map((f) => h("span", {}, f))),
      d.groups.length
        ? h("div", { class: "facts" }, d.groups.map((g) => h("span", { class: "chip" }, g)))
        : null,
    ),
  );
}

function matches(d) {
  if (filters.state && d.state !== filters.state) return false;
  if (filters.group && !d.groups.includes(filters.group)) return false;
  return !filters.q || d.device_id.includes(filters.q.toLowerCase());
}

export async function fleetView(root) {
  let fleet = await get("/api/v1/fleet");
  const grid = h("div", { class: "grid", id: "fleet-grid" });
  const count = h("span", { class: "muted", id: "fleet-count" });
  const groupSelect = h("select", { id: "filter-group", "aria-label": "group" });
  const stateSelect = h(
    "select",
    { id: "filter-state", "aria-label": "state" },
    h("option", { value: "" }, "every state"),
    fleet.states.map((s) => h("option", { value: s }, s)),
  );
  stateSelect.value = filters.state;

  function fillGroups() {
    const groups = [...new Set(fleet.items.flatMap((d) => d.groups))].sort();
    fill(groupSelect, 
      h("option", { value: "" }, "every group"),
      groups.map((g) => h("option", { value: g }, g)),
    );
    groupSelect.value = groups.includes(filters.group) ? filters.group : "";
  }

  function render() {
    const shown = fleet.items.filter(matches);
    fill(grid, ...shown.map(card));
    const byState = {};
    for (const d of fleet.items) byState[d.state] = (byState[d.state] || 0) + 1;
    count.textContent = `${shown.length} of ${fleet.items.length} devices · ${Object.entries(byState)
      .map(([s, n]) => `${n} ${s}`)
      .join(", ")}`;
  }

  const search = h("input", {
    type: "search",
    id: "search",
    placeholder: "search devices",
    value: filters.q,
    oninput: (e) => {
      filters.q = e.target.value.trim();
      render();
    },
  });
  groupSelect.addEventListener("change", () => {
    filters.group = groupSelect.value;
    render();
  });
  stateSelect.addEventListener("change", () => {
    filters.state = stateSelect.value;
    render();
  });
  fill(root, h("div", { class: "toolbar" }, search, groupSelect, stateSelect, count), grid);
  fillGroups();
  render();

  const reload = debounce(async () => {
    fleet = await get("/api/v1/fleet");
    fillGroups();
    render();
  }, 300);

  return {
    onEvent(type, event) {
      if (type === "frame" && !event.historical) {
        const d = fleet.items.find((x) => x.device_id === event.device_id);
        if (d) {
          d.latest_frame = event.frame_id;
          d.last_frame_ms = event.captured_at_ms;
          render();
          return;
        }
      }
      reload(); // a state, telemetry or unknown device: the summary is one cheap request
    },
  };
}
