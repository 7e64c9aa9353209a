// Parts shared by several pages: list filtering, publish form, bindings, feature badges.

import {apiPath, del, get, post} from "../api.js";
import {h, kvTable, link, replace, showValue, table} from "../dom.js";
import {ArgumentsEditor, confirmAction, field, formValues, input, notify, perform, select} from "../ui.js";

/** Hash link to an exchange or queue page. */
export function objectHref(kind, vhost, name) {
  return `#/${kind}/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`;
}

/** A text box that filters a list by substring (case-insensitive), like RabbitMQ's "Filter". */
export function filterBox(onChange, placeholder = "Filter by name") {
  const box = h("input", {type: "search", class: "filter", placeholder, "aria-label": placeholder});
  box.addEventListener("input", () => onChange(box.value));
  return box;
}

/** Items of the vhost picked in the top bar (all when none) whose name contains `text`. */
export function visible(items, app, text, key = (x) => x.name) {
  const needle = (text || "").toLowerCase();
  return items.filter((item) => (!app.vhost || item.vhost === app.vhost)
    && (!needle || String(key(item)).toLowerCase().includes(needle)));
}

/** D / AD / Excl / I / Args badges as RabbitMQ's "Features" column. */
export function features(obj) {
  const out = [];
  const badge = (text, title) => h("abbr", {class: "badge", title}, text);
  if (obj.durable) out.push(badge("D", "durable"));
  if (obj.auto_delete) out.push(badge("AD", "auto-delete"));
  if (obj.exclusive) out.push(badge("Excl", "exclusive"));
  if (obj.internal) out.push(badge("I", "internal"));
  if (obj.arguments && Object.keys(obj.arguments).length) {
    out.push(badge("Args", Object.entries(obj.arguments).map(([k, v]) => `${k}: ${showValue(v)}`).join("\n")));
  }
  if (obj.policy) out.push(badge(`Pol: ${obj.policy}`, "policy"));
  return h("span", {class: "features"}, out);
}

export function rateOf(obj, name) {
  const r = obj && obj.message_stats && obj.message_stats[`${name}_details`];
  return r && typeof r.rate === "number" ? r.rate : null;
}

/** A "Delete" button asking first; `action` does the request, `after` runs on success. */
export function deleteButton(label, question, action, after, id) {
  const button = h("button", {type: "button", class: "danger", id}, label);
  button.addEventListener("click", async () => {
    if (!(await confirmAction(question, label))) return;
    const ok = await perform(button, async () => { await action(); return true; }, "Done.");
    if (ok && after) after();
  });
  return button;
}

/**
 * The publish-a-message form. Publishes through exchange `exchangeName` (the default
 * exchange is "amq.default" in API paths); `fixedKey` pre-fills and locks the routing key
 * (a queue page publishes to its own queue through the default exchange).
 */
export function publishForm(vhost, exchangeName, {fixedKey = null, onPublished} = {}) {
  const headers = new ArgumentsEditor();
  const properties = new ArgumentsEditor({shortcuts: [
    ["content_type", "String"], ["correlation_id", "String"], ["reply_to", "String"],
    ["expiration", "String"], ["message_id", "String"], ["priority", "Number"],
    ["type", "String"], ["app_id", "String"], ["timestamp", "Number"]]});
  const form = h("form", {class: "form publish-form", id: "publish-form"},
    field("Routing key", input("routing_key", {value: fixedKey ?? "", readonly: fixedKey !== null,
      id: "publish-routing-key"})),
    field("Delivery mode", select("delivery_mode",
      [["1", "1 - Non-persistent"], ["2", "2 - Persistent"]], "2")),
    field("Headers", headers.element, "AMQP headers of the message"),
    field("Properties", properties.element),
    field("Payload encoding", select("payload_encoding",
      [["string", "String (UTF-8)"], ["base64", "Base64"]], "string")),
    field("Payload", h("textarea", {name: "payload", rows: 5, id: "publish-payload", spellcheck: "false"})),
    h("div", {class: "form-buttons"}, h("button", {type: "submit", id: "publish-submit"}, "Publish message")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = formValues(form);
    let props;
    try {
      props = {...properties.value(), delivery_mode: Number(values.delivery_mode)};
      const hdrs = headers.value();
      if (Object.keys(hdrs).length) props.headers = hdrs;
    } catch (err) {
      notify(err.message, "error");
      return;
    }
    let payload = values.payload;
    if (values.payload_encoding === "base64") {
      payload = payload.replace(/\s+/g, "");
      try { atob(payload); } catch { notify("The payload is not valid base64.", "error"); return; }
    }
    const body = {properties: props, routing_key: values.routing_key, payload,
      payload_encoding: values.payload_encoding};
    const result = await perform(form.querySelector("button[type=submit]"),
      () => post(apiPath("exchanges", vhost, exchangeName || "amq.default", "publish"), body));
    if (result === undefined) return;
    if (result && result.routed === false) {
      notify("Message published, but not routed to any queue.", "warn");
    } else {
      notify("Message published.", "ok");
    }
    if (onPublished) onPublished();
  });
  return form;
}

/**
 * Bindings of a queue (kind "queue") or from an exchange (kind "exchange"), with an add form
 * and unbind buttons. Returns {element, refresh}.
 */
export function bindingsPanel(kind, vhost, name, app) {
  const list = h("div", {class: "bindings-list", id: "bindings-list"});
  const otherLabel = kind === "queue" ? "From exchange" : "To";
  const destType = select("destination_type", [["q", "Queue"], ["e", "Exchange"]], "q");
  const args = new ArgumentsEditor();
  const form = h("form", {class: "form", id: "binding-form"},
    kind === "exchange" ? field("Destination type", destType) : null,
    field(otherLabel, input("other", {required: true, id: "binding-other"})),
    field("Routing key", input("routing_key", {id: "binding-key"})),
    field("Arguments", args.element),
    h("div", {class: "form-buttons"}, h("button", {type: "submit"}, "Bind")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = formValues(form);
    let argsValue;
    try { argsValue = args.value(); } catch (err) { notify(err.message, "error"); return; }
    const body = {routing_key: values.routing_key, arguments: argsValue};
    const path = kind === "queue"
      ? apiPath("bindings", vhost, "e", values.other, "q", name)
      : apiPath("bindings", vhost, "e", name, values.destination_type || "q", values.other);
    const ok = await perform(form.querySelector("button[type=submit]"),
      async () => { await post(path, body); return true; }, "Binding added.");
    if (ok) { form.reset(); args.reset(); app.refresh(); }
  });

  async function refresh() {
    const bindings = kind === "queue"
      ? await get(apiPath("queues", vhost, name, "bindings"))
      : await get(apiPath("exchanges", vhost, name, "bindings", "source"));
    replace(list, table(
      kind === "queue" ? ["From", "Routing key", "Arguments", ""] : ["To", "Type", "Routing key", "Arguments", ""],
      bindings.map((b) => {
        const implicit = b.source === "";
        const other = kind === "queue"
          ? (implicit ? h("span", {class: "muted"}, "(default exchange binding)")
            : link(objectHref("exchanges", vhost, b.source), b.source))
          : link(objectHref(b.destination_type === "queue" ? "queues" : "exchanges", vhost, b.destination),
            b.destination);
        const unbind = implicit ? "" : deleteButton("Unbind",
          `Remove the binding ${b.source} → ${b.destination} (${b.routing_key})?`,
          () => del(apiPath("bindings", vhost, "e", b.source,
            b.destination_type === "queue" ? "q" : "e", b.destination,
            b.properties_key ?? (b.routing_key || "~"))),
          () => app.refresh());
        const cells = [other];
        if (kind === "exchange") cells.push(b.destination_type);
        cells.push(b.routing_key, kvTable(b.arguments, {empty: ""}), unbind);
        return cells;
      }),
      {empty: kind === "queue" ? "No bindings." : "No bindings from this exchange."}));
  }

  const element = h("div", {class: "bindings"}, list,
    h("h4", {}, kind === "queue" ? "Add binding to this queue" : "Add binding from this exchange"), form);
  return {element, refresh};
}
