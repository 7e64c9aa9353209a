// Network of brokers: the bridges this broker runs. Until the network feature reports any,
// the page says so instead of showing an empty table.

import {apiPath, get} from "../api.js";
import {h, replace, showValue, table} from "../dom.js";

export function bridgesPage(params, app) {
  const body = h("div", {id: "bridges-list"});
  const element = h("div", {class: "page", id: "page-bridges"}, h("h2", {}, "Network bridges"), body);
  return {
    element,
    async refresh() {
      const overview = await get(apiPath("overview"));
      app.showNode(overview);
      const bridges = Array.isArray(overview.bridges) ? overview.bridges : [];
      if (!bridges.length) {
        replace(body, h("div", {class: "empty-state"},
          h("p", {class: "empty-title"}, "No bridges configured"),
          h("p", {class: "muted"},
            "This broker is not linked to other brokers. Bridges forward messages between brokers "
            + "of a network; once configured they are listed here with their state.")));
        return;
      }
      const columns = [...new Set(bridges.flatMap((b) => Object.keys(b)))];
      replace(body, table(columns, bridges.map((b) => columns.map((c) => showValue(b[c])))));
    },
  };
}
