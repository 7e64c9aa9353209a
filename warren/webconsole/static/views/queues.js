// Queues: the list with an "add" form, and one queue's page: facts, consumers, bindings,
// publish, the message browser (get), move, purge and delete.

import {apiPath, base64ToUtf8, del, get, post, put, utf8ToBase64} from "../api.js";
import {formatBytes, formatCount, formatRate, h, kvTable, link, num, replace, table} from "../dom.js";
import {
  ArgumentsEditor, checkbox, confirmAction, field, formValues, input, notify, perform, section, select,
  vhostSelect,
} from "../ui.js";
import {bindingsPanel, deleteButton, features, filterBox, objectHref, publishForm, rateOf, visible} from "./common.js";
import {watchPanel} from "./watch.js";

const ARGUMENT_SHORTCUTS = [
  ["x-message-ttl", "Number"], ["x-expires", "Number"], ["x-max-length", "Number"],
  ["x-max-length-bytes", "Number"], ["x-overflow", "String"], ["x-dead-letter-exchange", "String"],
  ["x-dead-letter-routing-key", "String"], ["x-max-priority", "Number"], ["x-single-active-consumer", "Boolean"],
  ["x-delivery-limit", "Number"], ["x-redelivery-initial-delay", "Number"], ["x-redelivery-multiplier", "Number"],
  ["x-redelivery-max-delay", "Number"], ["x-queue-type", "String"], ["x-max-age", "String"],
  ["x-stream-max-segment-size-bytes", "Number"],
];

/** A stream's log: where it starts and ends, its size on disk, and where each consumer reads. */
function streamFacts(s, fact) {
  return h("table", {class: "kv facts", id: "queue-stream"}, h("tbody", {},
    fact("First offset", formatCount(s.first_offset), "stream-first-offset"),
    fact("Last offset", formatCount(s.last_offset), "stream-last-offset"),
    fact("Size", `${formatCount(s.size_bytes)} bytes`, "stream-size"),
    fact("Segments", formatCount(s.segments), "stream-segments"),
    fact("Consumer offsets", kvTable(s.consumer_offsets, {empty: "none"}), "stream-consumer-offsets")));
}

/** "1 s, x2, at most 1 min": a queue's redelivery back-off (``redelivery_back_off``). */
function backOffText(b) {
  const ms = (v) => (v >= 1000 ? `${v / 1000} s` : `${v} ms`);
  return [ms(b.initial_delay), b.multiplier !== 1 ? `x${b.multiplier}` : null,
    b.max_delay != null ? `at most ${ms(b.max_delay)}` : null].filter(Boolean).join(", ");
}

export function queuesPage(params, app) {
  let items = [];
  let subs = [];
  let filter = "";
  const list = h("div", {id: "queues-list"});
  const subsList = h("div", {id: "durable-subscriptions-list"});
  const renderSubs = () => replace(subsList, durableSubscriptionsTable(subs, app));
  const render = () => {
    const shown = visible(items, app, filter);
    replace(list, table(
      ["Virtual host", "Name", "Type", "Features", "State", "Ready", "Unacked", "Total",
        "Incoming", "Deliver / get", "Ack", "Consumers"],
      shown.map((q) => [
        q.vhost, link(objectHref("queues", q.vhost, q.name), q.name), q.type ?? "classic", features(q),
        h("span", {class: `state state-${q.state}`}, q.state ?? ""),
        num(formatCount(q.messages_ready)), num(formatCount(q.messages_unacknowledged)),
        num(formatCount(q.messages)), num(formatRate(rateOf(q, "publish"))),
        num(formatRate(rateOf(q, "deliver_get"))), num(formatRate(rateOf(q, "ack"))),
        num(formatCount(q.consumers)),
      ]),
      {empty: "No queues.", keys: shown.map((q) => `${q.vhost}/${q.name}`)}));
  };

  const args = new ArgumentsEditor({shortcuts: ARGUMENT_SHORTCUTS});
  const form = h("form", {class: "form", id: "add-queue-form"},
    field("Virtual host", vhostSelect(app.vhosts, app.vhost || undefined)),
    field("Name", input("name", {required: true, id: "add-queue-name"})),
    field("Durability", select("durable", [["true", "Durable"], ["false", "Transient"]], "true")),
    field("Auto delete", checkbox("auto_delete"), "deleted when its last consumer goes"),
    field("Arguments", args.element),
    h("div", {class: "form-buttons"}, h("button", {type: "submit", id: "add-queue-submit"}, "Add queue")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    let argsValue;
    try { argsValue = args.value(); } catch (err) { notify(err.message, "error"); return; }
    const ok = await perform(form.querySelector("button[type=submit]"), async () => {
      await put(apiPath("queues", v.vhost, v.name),
        {durable: v.durable === "true", auto_delete: v.auto_delete, arguments: argsValue});
      return true;
    }, `Queue ${v.name} added.`);
    if (ok) { form.querySelector("[name=name]").value = ""; args.reset(); app.refresh(); }
  });

  const element = h("div", {class: "page", id: "page-queues"},
    h("div", {class: "page-head"}, h("h2", {}, "Queues"),
      filterBox((text) => { filter = text; render(); })),
    list,
    section("Durable topic subscriptions", subsList, {open: true, id: "durable-subscriptions"}),
    section("Add a new queue", form, {id: "add-queue-section"}));
  return {
    element,
    async refresh() {
      [items, subs] = await Promise.all([get(apiPath("queues")), get(apiPath("durable-subscriptions"))]);
      render();
      renderSubs();
    },
  };
}

// JMS durable subscriptions (STOMP activemq.subscriptionName), as ActiveMQ's console lists
// its durable topic subscribers: each is a queue, linked to its page.
function durableSubscriptionsTable(subs, app) {
  const shown = subs.filter((s) => !app.vhost || s.vhost === app.vhost);
  return table(
    ["Virtual host", "Client id", "Subscription", "Destination", "Selector", "State", "Pending", "Queue"],
    shown.map((s) => [
      s.vhost, s.client_id, s.subscription_name, s.destination, s.selector ?? "",
      h("span", {class: `state state-${s.active ? "running" : "idle"}`}, s.active ? "active" : "inactive"),
      num(formatCount(s.messages)), link(objectHref("queues", s.vhost, s.queue), s.queue),
    ]),
    {empty: "No durable subscriptions.", keys: shown.map((s) => `${s.vhost}/${s.queue}`)});
}

/** One message from /get: routing facts, properties, headers, and the body with a base64 toggle. */
function messageCard(m, index) {
  const props = {...(m.properties || {})};
  const headers = props.headers || {};
  delete props.headers;
  const isBase64 = m.payload_encoding === "base64";
  const text = isBase64 ? base64ToUtf8(m.payload) : m.payload;
  const encoded = isBase64 ? m.payload : utf8ToBase64(m.payload);
  let showingBase64 = isBase64;
  const body = h("pre", {class: "payload", dataset: {encoding: isBase64 ? "base64" : "string"}}, m.payload);
  const encodingNote = h("span", {class: "muted payload-encoding"});
  const toggle = h("button", {type: "button", class: "secondary small payload-toggle"});
  const show = () => {
    body.textContent = showingBase64 ? encoded : (text ?? "(not valid base64)");
    body.dataset.shown = showingBase64 ? "base64" : "text";
    toggle.textContent = showingBase64 ? "Show as text" : "Show as base64";
    encodingNote.textContent = showingBase64 ? "base64" : (isBase64 ? "decoded as UTF-8" : "string");
  };
  toggle.addEventListener("click", () => { showingBase64 = !showingBase64; show(); });
  show();
  return h("article", {class: "message", dataset: {index: String(index)}},
    h("h4", {}, `Message ${index + 1}`),
    h("table", {class: "kv facts"}, h("tbody", {},
      h("tr", {}, h("th", {}, "Exchange"), h("td", {}, m.exchange === "" ? "(AMQP default)" : m.exchange)),
      h("tr", {}, h("th", {}, "Routing key"), h("td", {}, m.routing_key)),
      h("tr", {}, h("th", {}, "Redelivered"), h("td", {}, m.redelivered ? "yes" : "no")),
      h("tr", {}, h("th", {}, "Properties"), h("td", {class: "message-properties"}, kvTable(props))),
      h("tr", {}, h("th", {}, "Headers"), h("td", {class: "message-headers"}, kvTable(headers))),
      h("tr", {}, h("th", {}, "Payload"), h("td", {},
        h("div", {class: "payload-head"}, `${formatCount(m.payload_bytes)} bytes, `, encodingNote, " ", toggle),
        body)))));
}

function messageBrowser(vhost, name, app) {
  const results = h("div", {class: "messages", id: "get-results"});
  const form = h("form", {class: "form", id: "get-form"},
    field("Ack mode", select("ackmode", [
      ["ack_requeue_true", "Nack message requeue true (browse)"],
      ["reject_requeue_true", "Reject requeue true"],
      ["ack_requeue_false", "Automatic ack (removes the messages)"],
      ["reject_requeue_false", "Reject requeue false (dead-letters or drops)"]], "ack_requeue_true")),
    field("Encoding", select("encoding", [["auto", "Automatic string/base64"], ["base64", "base64"]], "auto")),
    field("Messages", input("count", {type: "number", min: "1", value: "1", id: "get-count"})),
    h("div", {class: "form-buttons"}, h("button", {type: "submit", id: "get-submit"}, "Get message(s)")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    if (!v.ackmode.endsWith("requeue_true")
        && !(await confirmAction("These messages will be removed from the queue. Continue?", "Get"))) {
      return;
    }
    const messages = await perform(form.querySelector("button[type=submit]"),
      () => post(apiPath("queues", vhost, name, "get"),
        {count: Number(v.count) || 1, ackmode: v.ackmode, encoding: v.encoding, truncate: 50000}));
    if (messages === undefined) return;
    if (!messages.length) {
      replace(results, h("p", {class: "empty", id: "get-empty"}, "Queue is empty."));
    } else {
      const left = messages[messages.length - 1].message_count;
      replace(results,
        left !== undefined ? h("p", {class: "muted"}, `The server reported ${formatCount(left)} messages remaining.`) : null,
        messages.map(messageCard));
    }
    app.refresh();
  });
  return h("div", {}, form, results);
}

function moveForm(vhost, name, app) {
  const destinations = h("datalist", {id: "move-destinations"});
  const form = h("form", {class: "form", id: "move-form"},
    field("Destination queue", h("span", {},
      input("destination", {required: true, list: "move-destinations", id: "move-destination"}), destinations),
      `a queue in ${vhost}`),
    field("Messages", input("count", {type: "number", min: "1", placeholder: "all", id: "move-count"}),
      "leave empty to move every ready message"),
    h("div", {class: "form-buttons"}, h("button", {type: "submit", id: "move-submit"}, "Move messages")));
  form.addEventListener("focusin", async () => {
    if (destinations.childElementCount) return;
    try {
      const queues = await get(apiPath("queues", vhost));
      replace(destinations, queues.filter((q) => q.name !== name).map((q) => h("option", {value: q.name})));
    } catch {
      // suggestions are optional
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    const body = {destination: v.destination};
    if (v.count) body.count = Number(v.count);
    const result = await perform(form.querySelector("button[type=submit]"),
      () => post(apiPath("queues", vhost, name, "actions", "move"), body));
    if (result === undefined) return;
    const moved = result && (result.moved ?? result.count);
    notify(moved !== undefined ? `Moved ${formatCount(moved)} messages to ${v.destination}.`
      : `Messages moved to ${v.destination}.`, "ok");
    app.refresh();
  });
  return form;
}

export function queuePage({vhost, name}, app) {
  const details = h("div", {id: "queue-details"});
  const consumers = h("div", {id: "queue-consumers"});
  const bindings = bindingsPanel("queue", vhost, name, app);
  const watch = watchPanel("queue", vhost, name);
  const purge = deleteButton("Purge messages", `Remove every ready message from ${name}?`,
    () => del(apiPath("queues", vhost, name, "contents")), () => app.refresh(), "purge-queue");
  const remove = deleteButton("Delete queue", `Delete queue ${name} and its messages?`,
    () => del(apiPath("queues", vhost, name)), () => { location.hash = "#/queues"; }, "delete-queue");
  const element = h("div", {class: "page", id: "page-queue"},
    h("p", {class: "crumbs"}, link("#/queues", "Queues"), " › virtual host ", h("code", {}, vhost)),
    h("h2", {}, "Queue ", h("span", {class: "object-name", id: "queue-name"}, name)),
    details,
    section("Consumers", consumers),
    section("Bindings", bindings.element),
    section("Publish message", publishForm(vhost, "amq.default",
      {fixedKey: name, onPublished: () => app.refresh()}), {id: "publish-section"}),
    section("Get messages", messageBrowser(vhost, name, app), {id: "get-section", open: true}),
    section("Watch messages", watch.element, {id: "watch-section"}),
    section("Move messages", moveForm(vhost, name, app), {id: "move-section"}),
    section("Purge", h("div", {}, h("p", {}, "Removes ready messages; unacknowledged ones stay."), purge),
      {id: "purge-section"}),
    section("Delete", h("div", {}, remove), {id: "delete-section"}));
  return {
    element,
    dispose: watch.stop,
    async refresh() {
      const q = await get(apiPath("queues", vhost, name));
      const fact = (label, value, id) => h("tr", {}, h("th", {}, label), h("td", {id}, value));
      replace(details, h("div", {class: "facts-row"},
        h("table", {class: "kv facts"}, h("tbody", {},
          fact("Type", q.type ?? "classic"),
          fact("Features", features(q)),
          fact("State", q.state ?? ""),
          fact("Consumers", formatCount(q.consumers)),
          q.exclusive_consumer_tag ? fact("Exclusive consumer", q.exclusive_consumer_tag) : null,
          q.policy ? fact("Policy", q.policy) : null,
          q.policy ? fact("Effective policy definition", kvTable(q.effective_policy_definition ?? {})) : null,
          q.delivery_limit != null ? fact("Delivery limit", formatCount(q.delivery_limit), "queue-delivery-limit") : null,
          q.redelivery_back_off ? fact("Redelivery back-off", backOffText(q.redelivery_back_off), "queue-back-off") : null,
          fact("Arguments", kvTable(q.arguments)))),
        h("table", {class: "kv facts counts"}, h("tbody", {},
          fact("Ready", formatCount(q.messages_ready), "queue-ready"),
          fact("Unacked", formatCount(q.messages_unacknowledged), "queue-unacked"),
          fact("Total", formatCount(q.messages), "queue-total"),
          // as RabbitMQ's page: messages (and their bytes) in memory, and paged out to disk
          fact("In memory", `${formatCount(q.messages_ram ?? 0)} (${formatBytes(q.message_bytes_ram ?? 0)})`, "queue-ram"),
          fact("Paged out", `${formatCount(q.messages_paged_out ?? 0)} (${formatBytes(q.message_bytes_paged_out ?? 0)})`, "queue-paged-out"),
          q.redelivery_back_off || q.messages_redelivery_held
            ? fact("Held for redelivery", formatCount(q.messages_redelivery_held ?? 0), "queue-redelivery-held") : null,
          fact("Incoming", formatRate(rateOf(q, "publish"))),
          fact("Deliver / get", formatRate(rateOf(q, "deliver_get"))),
          fact("Ack", formatRate(rateOf(q, "ack"))))),
        q.stream ? streamFacts(q.stream, fact) : null));
      // RabbitMQ puts consumer_details in the queue; otherwise pick them out of /api/consumers
      const consumerList = q.consumer_details ?? (q.consumers
        ? (await get(apiPath("consumers"))).filter((c) => c.queue && c.queue.name === name && c.queue.vhost === vhost)
        : []);
      replace(consumers, table(["Channel", "Consumer tag", "Ack required", "Exclusive", "Prefetch", "Arguments"],
        consumerList.map((c) => [
          (c.channel_details && c.channel_details.name) || "", c.consumer_tag,
          c.ack_required ? "yes" : "no", c.exclusive ? "yes" : "no",
          num(formatCount(c.prefetch_count)), kvTable(c.arguments, {empty: ""}),
        ]), {empty: "No consumers."}));
      await bindings.refresh();
    },
  };
}
