// Talking to the controller's API. The token lives in this tab's sessionStorage only: it goes
// in an Authorization header, never in a URL (URLs end up in logs and browser history).

const TOKEN_KEY = "camfleet-token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue === "save" && input.value.trim()) {
          sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        }
        resolve(token());
      },
      { once: true },
    );
  });
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

function detailOf(body, status) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  return `HTTP ${status}`;
}

export async function get(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, detailOf(body, response.status));
  return body;
}

// A write: asks for the token first when none is known, and again once if it was refused.
// ``as: "blob"`` returns the answer's bytes (a file) instead of JSON.
export async function send(method, path, payload, { as = "json" } = {}) {
  for (let attempt = 0; attempt < 2; attempt++) {
    if (!token() && !(await askToken())) throw new ApiError(401, "an API token is needed");
    const response = await fetch(path, {
      method,
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        Authorization: `Bearer ${token()}`,
      },
      body: payload === undefined ? undefined : JSON.stringify(payload),
    });
    if (response.ok && as === "blob") return response.blob();
    const body = await response.json().catch(() => null);
    if (response.status === 401 && attempt === 0) {
      sessionStorage.removeItem(TOKEN_KEY);
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, detailOf(body, response.status));
    return body;
  }
  throw new ApiError(401, "the token was refused");
}

// Server-sent events of what the controller commits; reconnects by itself (EventSource).
export function live(device, onEvent, onStatus) {
  const url = device ? `/api/v1/live?device=${encodeURIComponent(device)}` : "/api/v1/live";
  const source = new EventSource(url);
  for (const type of ["state", "telemetry", "event", "frame", "command", "resync"]) {
    source.addEventListener(type, (e) => onEvent(type, JSON.parse(e.data)));
  }
  source.onopen = () => onStatus(true);
  source.onerror = () => onStatus(false);
  return source;
}
