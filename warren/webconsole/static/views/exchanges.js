// Exchanges: the list with an "add" form, and one exchange's page (bindings, publish, delete).

import {apiPath, del, get, put} from "../api.js";
import {formatRate, h, kvTable, link, num, replace, table} from "../dom.js";
import {
  ArgumentsEditor, checkbox, field, formValues, input, notify, perform, section, select, vhostSelect,
} from "../ui.js";
import {bindingsPanel, deleteButton, features, filterBox, objectHref, publishForm, rateOf, visible} from "./common.js";
import {watchPanel} from "./watch.js";

const TYPES = ["direct", "fanout", "topic", "headers", "x-delayed-message"];

/** The broker's exchange types from /api/overview (RabbitMQ's exchange_types), else the usual ones. */
function exchangeTypes(app) {
  const listed = app.overview && app.overview.exchange_types;
  if (!Array.isArray(listed) || !listed.length) return TYPES;
  return listed.filter((t) => t.enabled !== false).map((t) => t.name);
}

/** The default exchange has the empty name; API paths and the UI call it amq.default. */
const displayName = (name) => name || "(AMQP default)";
const pathName = (name) => name || "amq.default";

export function exchangesPage(params, app) {
  let items = [];
  let filter = "";
  const list = h("div", {id: "exchanges-list"});
  const render = () => {
    const shown = visible(items, app, filter, (x) => displayName(x.name));
    replace(list, table(
      ["Virtual host", "Name", "Type", "Features", "Message rate in", "Message rate out"],
      visible(items, app, filter, (x) => displayName(x.name)).map((x) => [
        x.vhost, link(objectHref("exchanges", x.vhost, pathName(x.name)), displayName(x.name)), x.type,
        features(x), num(formatRate(rateOf(x, "publish_in"))), num(formatRate(rateOf(x, "publish_out"))),
      ]),
      {empty: "No exchanges.", keys: shown.map((x) => `${x.vhost}/${x.name}`)}));
  };

  const args = new ArgumentsEditor({shortcuts: [["alternate-exchange", "String"], ["x-delayed-type", "String"]]});
  const form = h("form", {class: "form", id: "add-exchange-form"},
    field("Virtual host", vhostSelect(app.vhosts, app.vhost || undefined)),
    field("Name", input("name", {required: true, id: "add-exchange-name"})),
    field("Type", select("type", exchangeTypes(app), "direct")),
    field("Durability", select("durable", [["true", "Durable"], ["false", "Transient"]], "true")),
    field("Auto delete", checkbox("auto_delete"), "deleted when its last binding goes"),
    field("Internal", checkbox("internal"), "clients cannot publish to it directly"),
    field("Arguments", args.element),
    h("div", {class: "form-buttons"}, h("button", {type: "submit"}, "Add exchange")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    let argsValue;
    try { argsValue = args.value(); } catch (err) { notify(err.message, "error"); return; }
    const ok = await perform(form.querySelector("button[type=submit]"), async () => {
      await put(apiPath("exchanges", v.vhost, v.name), {
        type: v.type, durable: v.durable === "true", auto_delete: v.auto_delete,
        internal: v.internal, arguments: argsValue});
      return true;
    }, `Exchange ${v.name} added.`);
    if (ok) { form.querySelector("[name=name]").value = ""; args.reset(); app.refresh(); }
  });

  const element = h("div", {class: "page", id: "page-exchanges"},
    h("div", {class: "page-head"}, h("h2", {}, "Exchanges"),
      filterBox((text) => { filter = text; render(); })),
    list,
    section("Add a new exchange", form));
  return {
    element,
    async refresh() {
      items = await get(apiPath("exchanges"));
      render();
    },
  };
}

export function exchangePage({vhost, name}, app) {
  const isDefault = name === "amq.default" || name === "";
  const details = h("div", {id: "exchange-details"});
  const bindings = isDefault ? null : bindingsPanel("exchange", vhost, name, app);
  const watch = isDefault ? null : watchPanel("exchange", vhost, name);
  const element = h("div", {class: "page", id: "page-exchange"},
    h("p", {class: "crumbs"}, link("#/exchanges", "Exchanges"), " › virtual host ", h("code", {}, vhost)),
    h("h2", {}, "Exchange ", h("span", {class: "object-name"}, isDefault ? "(AMQP default)" : name)),
    details,
    bindings ? section("Bindings", bindings.element, {open: true}) : null,
    section("Publish message", publishForm(vhost, name), {id: "publish-section"}),
    watch ? section("Watch messages", watch.element, {id: "watch-section"}) : null,
    isDefault ? null : section("Delete this exchange", h("div", {},
      h("p", {}, "Deleting an exchange removes its bindings too."),
      deleteButton("Delete", `Delete exchange ${name} in ${vhost}?`,
        () => del(apiPath("exchanges", vhost, name)),
        () => { location.hash = "#/exchanges"; }, "delete-exchange"))));
  return {
    element,
    dispose: watch ? watch.stop : undefined,
    async refresh() {
      const x = await get(apiPath("exchanges", vhost, name));
      replace(details, h("table", {class: "kv facts"}, h("tbody", {},
        h("tr", {}, h("th", {}, "Type"), h("td", {}, x.type)),
        h("tr", {}, h("th", {}, "Features"), h("td", {}, features(x))),
        h("tr", {}, h("th", {}, "Arguments"), h("td", {}, kvTable(x.arguments))),
        h("tr", {}, h("th", {}, "Rate in / out"),
          h("td", {}, `${formatRate(rateOf(x, "publish_in"))} / ${formatRate(rateOf(x, "publish_out"))}`)))));
      if (bindings) await bindings.refresh();
    },
  };
}
