// Connections (with "close") and channels.

import {apiPath, del, get} from "../api.js";
import {formatBytes, formatCount, formatRate, h, num, replace, table} from "../dom.js";
import {deleteButton, filterBox, rateOf, visible} from "./common.js";

function clientName(c) {
  const p = c.client_properties || {};
  const parts = [p.product, p.version].filter(Boolean);
  return parts.join(" ");
}

export function connectionsPage(params, app) {
  let items = [];
  let filter = "";
  const list = h("div", {id: "connections-list"});
  const render = () => {
    const shown = visible(items, app, filter);
    replace(list, table(
      ["Name", "User", "Virtual host", "Protocol", "Client", "State", "Channels", "From client",
        "To client", ""],
      shown.map((c) => [
        h("span", {class: "mono"}, c.name), c.user ?? "", c.vhost ?? "", c.protocol ?? "",
        clientName(c), h("span", {class: `state state-${c.state}`}, c.state ?? ""),
        num(formatCount(c.channels)),
        num(c.recv_oct_details ? `${formatBytes(c.recv_oct_details.rate)}/s` : formatBytes(c.recv_oct)),
        num(c.send_oct_details ? `${formatBytes(c.send_oct_details.rate)}/s` : formatBytes(c.send_oct)),
        deleteButton("Close", `Close connection ${c.name}? Its clients will see it closed by the broker.`,
          () => del(apiPath("connections", c.name), {"X-Reason": "Closed via the warren web console"}),
          () => app.refresh()),
      ]),
      {empty: "No connections.", keys: shown.map((c) => c.name)}));
  };
  const element = h("div", {class: "page", id: "page-connections"},
    h("div", {class: "page-head"}, h("h2", {}, "Connections"),
      filterBox((text) => { filter = text; render(); })),
    list);
  return {
    element,
    async refresh() {
      items = await get(apiPath("connections"));
      render();
    },
  };
}

function mode(ch) {
  const out = [];
  if (ch.confirm) out.push(h("abbr", {class: "badge", title: "publisher confirms"}, "C"));
  if (ch.transactional) out.push(h("abbr", {class: "badge", title: "transactional"}, "T"));
  return out;
}

export function channelsPage(params, app) {
  let items = [];
  let filter = "";
  const list = h("div", {id: "channels-list"});
  const render = () => replace(list, table(
    ["Channel", "User", "Virtual host", "Mode", "State", "Consumers", "Prefetch", "Unacked",
      "Unconfirmed", "Publish", "Deliver", "Ack"],
    visible(items, app, filter).map((ch) => [
      h("span", {class: "mono"}, ch.name), ch.user ?? "", ch.vhost ?? "", h("span", {}, mode(ch)),
      ch.state ?? "", num(formatCount(ch.consumer_count)), num(formatCount(ch.prefetch_count)),
      num(formatCount(ch.messages_unacknowledged)), num(formatCount(ch.messages_unconfirmed)),
      num(formatRate(rateOf(ch, "publish"))), num(formatRate(rateOf(ch, "deliver_get"))),
      num(formatRate(rateOf(ch, "ack"))),
    ]),
    {empty: "No channels."}));
  const element = h("div", {class: "page", id: "page-channels"},
    h("div", {class: "page-head"}, h("h2", {}, "Channels"),
      filterBox((text) => { filter = text; render(); })),
    list);
  return {
    element,
    async refresh() {
      items = await get(apiPath("channels"));
      render();
    },
  };
}
