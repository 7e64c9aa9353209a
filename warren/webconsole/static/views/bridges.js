// Network: the shovels this broker runs (RabbitMQ's "Shovel Status" and "Shovel Management"
// pages in one), each with its state, ends, rate and last error, and the form to add one;
// then the federation links (RabbitMQ's "Federation Status" page): /api/federation-links,
// and the network connectors of the config file ([[network]]): /api/network-connectors.

import {apiPath, del, get, put} from "../api.js";
import {formatCount, formatRate, h, num, replace, table} from "../dom.js";
import {field, formValues, input, perform, section, select, vhostSelect} from "../ui.js";
import {deleteButton} from "./common.js";
import {networkPicture, peerOf} from "./network_picture.js";

/** "queue q" or "exchange x (key k)" for one end of a shovel status entry. */
function endpoint(s, side) {
  const q = s[`${side}_queue`];
  if (q !== undefined) return `queue ${q}`;
  const x = s[`${side}_exchange`];
  if (x === undefined) return "";
  const key = s[`${side}_exchange_key`];
  return key ? `exchange ${x} (key ${key})` : `exchange ${x}`;
}

function restartButton(s, app) {
  const button = h("button", {type: "button"}, "Restart");
  button.addEventListener("click", () => perform(button, async () => {
    await del(apiPath("shovels", "vhost", s.vhost, s.name, "restart"));
    app.refresh();
    return true;
  }, `Shovel ${s.name} restarted.`));
  return button;
}

function addForm(app) {
  const form = h("form", {class: "form", id: "add-shovel-form"},
    field("Virtual host", vhostSelect(app.vhosts, app.vhost || undefined)),
    field("Name", input("name", {required: true, id: "add-shovel-name"})),
    field("Source URI", input("src-uri", {required: true, value: "amqp://", id: "add-shovel-src-uri"}),
      "amqp:// is this broker; amqp://user:password@host:port/vhost another one"),
    field("Source", h("span", {},
      select("src-kind", [["queue", "Queue"], ["exchange", "Exchange"]], "queue"),
      input("src-name", {required: true, id: "add-shovel-src-name", placeholder: "name"}),
      input("src-exchange-key", {placeholder: "routing key (exchange only)"}))),
    field("Destination URI", input("dest-uri", {required: true, value: "amqp://", id: "add-shovel-dest-uri"})),
    field("Destination", h("span", {},
      select("dest-kind", [["queue", "Queue"], ["exchange", "Exchange"]], "queue"),
      input("dest-name", {required: true, id: "add-shovel-dest-name", placeholder: "name"}),
      input("dest-exchange-key", {placeholder: "routing key (exchange only)"}))),
    field("Acknowledgement mode", select("ack-mode", [["on-confirm", "On confirm"],
      ["on-publish", "On publish"], ["no-ack", "No ack"]], "on-confirm")),
    field("Prefetch count", input("src-prefetch-count", {type: "number", value: "1000"})),
    field("Reconnect delay (s)", input("reconnect-delay", {type: "number", value: "5"})),
    field("Delete after", select("src-delete-after", [["never", "Never"],
      ["queue-length", "Queue length"]], "never")),
    h("div", {class: "form-buttons"}, h("button", {type: "submit"}, "Add shovel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    const value = {"src-uri": v["src-uri"], "dest-uri": v["dest-uri"], "ack-mode": v["ack-mode"],
      "src-delete-after": v["src-delete-after"]};
    if (v["src-kind"] === "queue") value["src-queue"] = v["src-name"];
    else { value["src-exchange"] = v["src-name"]; value["src-exchange-key"] = v["src-exchange-key"] || ""; }
    if (v["dest-kind"] === "queue") value["dest-queue"] = v["dest-name"];
    else {
      value["dest-exchange"] = v["dest-name"];
      if (v["dest-exchange-key"]) value["dest-exchange-key"] = v["dest-exchange-key"];
    }
    if (v["src-prefetch-count"]) value["src-prefetch-count"] = Number(v["src-prefetch-count"]);
    if (v["reconnect-delay"]) value["reconnect-delay"] = Number(v["reconnect-delay"]);
    const ok = await perform(form.querySelector("button[type=submit]"), async () => {
      await put(apiPath("parameters", "shovel", v.vhost, v.name), {value});
      return true;
    }, `Shovel ${v.name} added.`);
    if (ok) app.refresh();
  });
  return form;
}

/** The federation links table (read-only: links follow upstreams and policies). */
function federationTable(links) {
  if (!links.length) {
    return h("div", {class: "empty-state"},
      h("p", {class: "empty-title"}, "No federation links"),
      h("p", {class: "muted"},
        "Define a federation-upstream parameter and a policy with federation-upstream or "
        + "federation-upstream-set: each matching exchange or queue gets a link per upstream."));
  }
  const rows = links.map((l) => [
    l.type, h("span", {class: "wrap"}, l.exchange ?? l.queue), l.vhost,
    h("span", {class: "wrap"}, l.upstream, h("br"), l.uri),
    h("span", {class: "wrap"}, l.upstream_exchange ?? l.upstream_queue),
    h("span", {class: `state state-${l.status}`}, l.status),
    l.error ? h("span", {class: "wrap error-text"}, l.error) : "",
  ]);
  return table(["Type", "Name", "Virtual host", "Upstream", "Upstream object", "State",
    "Last error"], rows, {keys: links.map((l) => l.id)});
}

/** The network connectors table (read-only: connectors come from the config file). */
function connectorsTable(connectors) {
  if (!connectors.length) {
    return h("div", {class: "empty-state"},
      h("p", {class: "empty-title"}, "No network connectors"),
      h("p", {class: "muted"},
        "ActiveMQ-style network connectors are [[network]] tables of the config file."));
  }
  const rows = connectors.map((c) => [
    h("span", {class: "wrap"}, c.name),
    h("span", {class: "wrap"}, c.uri, c.peer ? h("br") : "", c.peer || ""),
    c.duplex ? "duplex" : "one way", num(String(c.network_ttl)),
    h("span", {class: "wrap"}, (c.include.length ? c.include : ["everything"]).join(" "),
      c.exclude.length ? h("br") : "", c.exclude.length ? "except " + c.exclude.join(" ") : ""),
    h("span", {class: `state state-${c.status}`}, c.status),
    num(formatCount(c.forwarded_out)), num(formatCount(c.forwarded_in)),
    c.error ? h("span", {class: "wrap error-text"}, c.error) : "",
  ]);
  return table(["Name", "Peer", "Direction", "TTL", "Destinations", "State", "Sent",
    "Received", "Last error"], rows, {keys: connectors.map((c) => c.name)});
}

export function bridgesPage(params, app) {
  const body = h("div", {id: "bridges-list"});
  const federation = h("div", {id: "federation-list"});
  const connectors = h("div", {id: "connectors-list"});
  const picture = h("div", {id: "network-picture-box", class: "network-picture-box"});
  const element = h("div", {class: "page", id: "page-bridges"}, picture,
    h("h2", {}, "Shovels"), body,
    section("Add a shovel", addForm(app), {id: "add-shovel"}),
    h("h2", {}, "Federation links"), federation,
    h("h2", {}, "Network connectors"), connectors);
  const last = new Map();   // key -> [time, count] of the previous refresh
  /** Messages per second since the previous refresh, or null (first sight, no count). */
  const rateOf = (key, count, now) => {
    const before = last.get(key);
    let rate = null;
    if (before && typeof count === "number" && now > before[0]) {
      rate = Math.max(0, (count - before[1]) * 1000 / (now - before[0]));
    }
    if (typeof count === "number") last.set(key, [now, count]);
    return rate;
  };
  return {
    element,
    async refresh() {
      const overview = await get(apiPath("overview"));
      app.showNode(overview);
      const links = (await get(apiPath("federation-links")))
        .filter((l) => !app.vhost || l.vhost === app.vhost);
      const conns = await get(apiPath("network-connectors"));
      const shovels = (await get(apiPath("shovels")))
        .filter((s) => !app.vhost || s.vhost === app.vhost);
      const now = Date.now();
      const rates = new Map(shovels.map((s) =>
        [`${s.vhost}/${s.name}`, rateOf(`${s.vhost}/${s.name}`, s.forwarded, now)]));
      const drawn = [
        ...shovels.map((s) => {
          const rate = rates.get(`${s.vhost}/${s.name}`);
          return {key: `shovel:${s.vhost}/${s.name}`, kind: "shovel", name: s.name,
            from: peerOf(s.src_uri), to: peerOf(s.dest_uri), state: s.state,
            rateText: rate === null ? "" : formatRate(rate), error: s.reason || ""};
        }),
        ...links.map((l) => ({key: `federation:${l.id}`, kind: `federation ${l.type}`,
          name: `${l.upstream} → ${l.exchange ?? l.queue}`, from: peerOf(l.uri), to: "",
          state: l.status, error: l.error || ""})),
        ...conns.map((c) => {
          const out = rateOf(`connector-out:${c.name}`, c.forwarded_out, now);
          const inRate = rateOf(`connector-in:${c.name}`, c.forwarded_in, now);
          const rateText = out === null ? "" : c.duplex
            ? `out ${formatRate(out)}, in ${formatRate(inRate)}` : formatRate(out);
          return {key: `connector:${c.name}`, kind: "network connector", name: c.name, from: "",
            to: peerOf(c.uri), state: c.status, duplex: c.duplex, rateText,
            error: c.error || "", peerName: c.peer || ""};
        }),
      ];
      replace(picture, networkPicture(overview.node, drawn));
      replace(federation, federationTable(links));
      replace(connectors, connectorsTable(conns));
      if (!shovels.length) {
        replace(body, h("div", {class: "empty-state"},
          h("p", {class: "empty-title"}, "No shovels"),
          h("p", {class: "muted"},
            "A shovel moves messages from a queue or exchange to another, in this broker or "
            + "between brokers (RabbitMQ's too). Add one below, through /api/parameters/shovel, "
            + "or with warren ctl set_parameter shovel NAME JSON.")));
        return;
      }
      const rows = shovels.map((s) => {
        const rate = rates.get(`${s.vhost}/${s.name}`);
        return [
          h("span", {class: "wrap"}, s.name), s.vhost,
          h("span", {class: `state state-${s.state}`}, s.state),
          h("span", {class: "wrap"}, s.src_uri || "", h("br"), endpoint(s, "src")),
          h("span", {class: "wrap"}, s.dest_uri || "", h("br"), endpoint(s, "dest")),
          num(formatCount(s.forwarded)), num(rate === null ? "" : formatRate(rate)),
          s.reason ? h("span", {class: "wrap error-text"}, s.reason) : "",
          h("span", {}, restartButton(s, app), " ",
            deleteButton("Delete", `Delete shovel ${s.name}?`,
              () => del(apiPath("parameters", "shovel", s.vhost, s.name)), () => app.refresh())),
        ];
      });
      replace(body, table(["Name", "Virtual host", "State", "Source", "Destination", "Forwarded",
        "Rate /s", "Last error", ""], rows, {keys: shovels.map((s) => `${s.vhost}/${s.name}`)}));
    },
  };
}
