// Small DOM helpers. Text always goes in through textContent: device messages, event text and
// config errors come from devices and users, never to be parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function ago(ms) {
  if (!ms) return "never";
  const s = Math.round((Date.now() - ms) / 1000);
  return s < 0 ? `in ${span(-s)}` : `${span(s)} ago`;
}

export function until(ms) {
  const s = Math.round((ms - Date.now()) / 1000);
  return s >= 0 ? `in ${span(s)}` : `${span(-s)} ago`;
}

function span(s) {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

export function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

// What a device's state means for a person: asleep says when it will wake, offline since when.
export function stateText(d) {
  switch (d.state) {
    case "asleep":
      return d.next_wake_ms ? `asleep, wakes ${until(d.next_wake_ms)}` : "asleep";
    case "overdue":
      return d.next_wake_ms ? `overdue since ${until(d.next_wake_ms)}` : "overdue";
    case "offline":
      return `offline, last seen ${ago(d.last_seen_ms)}`;
    default:
      return d.state;
  }
}

export function badge(d) {
  return h("span", { class: `badge ${d.state}`, "data-state": d.state }, stateText(d));
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// Replace an element's children (arrays flattened, null/false skipped, text as text).
export function fill(el, ...children) {
  el.replaceChildren(
    ...children
      .flat(Infinity)
      .filter((c) => c !== null && c !== undefined && c !== false)
      .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))),
  );
}
