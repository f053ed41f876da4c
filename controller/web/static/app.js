// The dashboard's entry: a hash router (#/, #/device/ID, #/events, #/schedules, #/ota) and one live event
// stream from the controller shared by whichever view is shown.

import { askToken, live } from "./api.js";
import { deviceView } from "./device.js";
import { fill, h } from "./dom.js";
import { fleetView } from "./fleet.js";
import { eventsView, otaView, schedulesView } from "./pages.js";

const root = document.getElementById("view");
let current = { onEvent() {} };
let generation = 0;

async function route() {
  const mine = ++generation;
  const hash = location.hash || "#/";
  const device = hash.match(/^#\/device\/([a-z0-9_-]{1,64})$/);
  let view;
  try {
    if (device) view = await deviceView(root, device[1]);
    else if (hash === "#/events") view = await eventsView(root);
    else if (hash === "#/ota") view = await otaView(root);
    else if (hash === "#/schedules") view = await schedulesView(root);
    else view = await fleetView(root);
  } catch (err) {
    fill(root, h("p", { class: "error" }, `Could not load: ${err.message}`));
    view = { onEvent() {} };
  }
  if (mine === generation) {
    current = view;
    performance.mark(`view-ready ${hash}`); // bench/dashboard.py reads it
    document.body.dataset.ready = hash; // tests wait for this
  }
}

const status = document.getElementById("live-status");
live(
  null,
  (type, event) => current.onEvent(type, event),
  (on) => {
    status.classList.toggle("on", on);
    document.body.dataset.live = on ? "on" : "off";
  },
);

document.getElementById("token-button").addEventListener("click", () => askToken());
window.addEventListener("hashchange", route);
route();
