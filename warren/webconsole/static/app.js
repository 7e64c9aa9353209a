// The console shell: login, the top bar, tabs, hash routing and the refresh timer.
//
// Pages are small objects {element, refresh(), dispose()} made by the view modules. The shell
// mounts one at a time and calls its refresh() now and every REFRESH_MS while the tab is
// visible, so lists stay live without clobbering half-filled forms (forms are built once;
// refresh() only rewrites the data parts).

import {apiPath, ApiError, credentials, get, onUnauthorized, request} from "./api.js";
import {h, replace} from "./dom.js";
import {overviewPage} from "./views/overview.js";
import {channelsPage, connectionsPage} from "./views/connections.js";
import {exchangePage, exchangesPage} from "./views/exchanges.js";
import {queuePage, queuesPage} from "./views/queues.js";
import {adminPage} from "./views/admin.js";
import {bridgesPage} from "./views/bridges.js";

const REFRESH_MS = 5000;
const VHOST_KEY = "warren.vhost";

/** What every page may read: who is logged in, the vhosts, the vhost picked in the top bar. */
export const app = {
  whoami: null,
  vhosts: [],
  overview: null,
  /** "" means all vhosts. */
  get vhost() {
    return sessionStorage.getItem(VHOST_KEY) || "";
  },
  set vhost(name) {
    sessionStorage.setItem(VHOST_KEY, name);
  },
  /** Re-read the vhost list (after adding or deleting one). */
  async loadVhosts() {
    this.vhosts = await get(apiPath("vhosts"));
    fillVhostPicker();
    return this.vhosts;
  },
  /** Pages call this after a change so the data they show is current at once. */
  refresh: () => refreshNow(),
  showNode: (overview) => showNode(overview),
};

const routes = [
  [["overview"], overviewPage, "overview"],
  [["connections"], connectionsPage, "connections"],
  [["channels"], channelsPage, "channels"],
  [["exchanges"], exchangesPage, "exchanges"],
  [["exchanges", ":vhost", ":name"], exchangePage, "exchanges"],
  [["queues"], queuesPage, "queues"],
  [["queues", ":vhost", ":name"], queuePage, "queues"],
  [["users"], adminPage, "admin"],
  [["vhosts"], adminPage, "admin"],
  [["permissions"], adminPage, "admin"],
  [["policies"], adminPage, "admin"],
  [["limits"], adminPage, "admin"],
  [["bridges"], bridgesPage, "bridges"],
];

let current = null;      // the mounted page
let timer = null;
let refreshing = false;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const parts = raw ? raw.split("/").map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  }) : ["overview"];
  for (const [pattern, make, tab] of routes) {
    if (pattern.length !== parts.length) continue;
    const params = {};
    let ok = true;
    pattern.forEach((seg, i) => {
      if (seg.startsWith(":")) params[seg.slice(1)] = parts[i];
      else if (seg !== parts[i]) ok = false;
    });
    if (ok) return {make, tab, params: {...params, section: parts[0]}};
  }
  return null;
}

async function route() {
  if (!app.whoami) return;
  if (current && current.dispose) current.dispose();
  current = null;
  const main = document.getElementById("main");
  const match = parseHash();
  for (const a of document.querySelectorAll("#tabs a")) {
    a.classList.toggle("active", Boolean(match) && a.dataset.tab === match.tab);
  }
  if (!match) {
    replace(main, h("div", {class: "page"}, h("h2", {}, "Not found"),
      h("p", {}, "This page does not exist. "), h("a", {href: "#/"}, "Back to the overview")));
    return;
  }
  document.getElementById("refresh-status").textContent = "";
  const page = match.make(match.params, app);
  current = page;
  replace(main, page.element);
  window.scrollTo(0, 0);
  await refreshNow();
}

async function refreshNow() {
  const page = current;
  if (!page || !page.refresh || refreshing) return;
  refreshing = true;
  const status = document.getElementById("refresh-status");
  try {
    await page.refresh();
    status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    status.classList.remove("stale");
  } catch (err) {
    if (page === current) {
      status.textContent = `Refresh failed: ${err.reason || err.message}`;
      status.classList.add("stale");
    }
  } finally {
    refreshing = false;
  }
}

function startTimer() {
  stopTimer();
  timer = setInterval(() => {
    if (!document.hidden) refreshNow();
  }, REFRESH_MS);
}

function stopTimer() {
  if (timer) clearInterval(timer);
  timer = null;
}

function fillVhostPicker() {
  const picker = document.getElementById("vhost-filter");
  const chosen = app.vhost;
  replace(picker, h("option", {value: ""}, "All"),
    app.vhosts.map((v) => h("option", {value: v.name}, v.name)));
  picker.value = app.vhosts.some((v) => v.name === chosen) ? chosen : "";
}

function showLogin(message) {
  stopTimer();
  if (current && current.dispose) current.dispose();
  current = null;
  app.whoami = null;
  document.getElementById("shell").hidden = true;
  document.getElementById("login").hidden = false;
  const error = document.getElementById("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  document.getElementById("login-username").focus();
}

async function enter(whoami) {
  app.whoami = whoami;
  document.getElementById("login").hidden = true;
  document.getElementById("shell").hidden = false;
  const tags = Array.isArray(whoami.tags) ? whoami.tags.join(", ") : (whoami.tags || "");
  document.getElementById("user-name").textContent = tags ? `${whoami.name} (${tags})` : whoami.name;
  try {
    await app.loadVhosts();
  } catch {
    app.vhosts = [];
  }
  try {
    showNode(await get(apiPath("overview")));
  } catch {
    // the overview page reports its own errors
  }
  startTimer();
  await route();
}

/** The node name and HA role in the top bar; the overview page calls it on every refresh. */
function showNode(overview) {
  app.overview = overview;
  document.getElementById("node-name").textContent = overview.node || "";
  const role = document.getElementById("ha-role");
  role.hidden = !overview.ha_role || overview.ha_role === "standalone";  // no --ha: no badge
  role.textContent = overview.ha_role ? `HA: ${overview.ha_role}` : "";
  role.className = `ha-role role-${String(overview.ha_role || "").replace(/[^a-z]/gi, "")}`;
}

async function login(event) {
  event.preventDefault();
  const username = document.getElementById("login-username").value;
  const password = document.getElementById("login-password").value;
  const button = document.getElementById("login-submit");
  const error = document.getElementById("login-error");
  button.disabled = true;
  error.hidden = true;
  try {
    const whoami = await request("GET", apiPath("whoami"), undefined, {creds: {username, password}});
    credentials.set(username, password);
    document.getElementById("login-password").value = "";
    await enter(whoami);
  } catch (err) {
    error.textContent = err instanceof ApiError && err.status === 401
      ? "Login failed: wrong username or password, or this user may not log in from here."
      : `Login failed: ${err.reason || err.message}`;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

function logout() {
  credentials.clear();
  showLogin("");
}

async function start() {
  document.getElementById("login-form").addEventListener("submit", login);
  document.getElementById("logout").addEventListener("click", logout);
  document.getElementById("vhost-filter").addEventListener("change", (e) => {
    app.vhost = e.target.value;
    route();
  });
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshNow();
  });
  onUnauthorized(() => {
    credentials.clear();
    showLogin("Your session is no longer valid; log in again.");
  });
  if (credentials.get()) {
    try {
      await enter(await get(apiPath("whoami")));
      return;
    } catch (err) {
      credentials.clear();
      showLogin(err.status === 401 ? "" : `Cannot reach the broker: ${err.reason || err.message}`);
      return;
    }
  }
  showLogin("");
}

start();
