// Admin: users, virtual hosts, permissions (and topic permissions), policies and limits,
// each a list with add and delete.

import {apiPath, del, get, put} from "../api.js";
import {formatCount, h, kvTable, num, replace, table} from "../dom.js";
import {
  ArgumentsEditor, field, formValues, input, notify, perform, select, section, vhostSelect,
} from "../ui.js";
import {deleteButton} from "./common.js";

const SUBTABS = [["users", "Users"], ["vhosts", "Virtual hosts"], ["permissions", "Permissions"],
  ["policies", "Policies"], ["limits", "Limits"]];

const TAG_CHOICES = ["administrator", "monitoring", "policymaker", "management", "impersonator"];

function tagList(tags) {
  if (Array.isArray(tags)) return tags;
  return String(tags || "").split(",").map((t) => t.trim()).filter(Boolean);
}

/** Submit handler: read the form, run `request(values)`, tidy up and refresh on success. */
function onSubmit(form, request, success, app, after) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = formValues(form);
    const ok = await perform(form.querySelector("button[type=submit]"), async () => {
      await request(values);
      return true;
    }, typeof success === "function" ? success(values) : success);
    if (ok) {
      if (after) await after();
      app.refresh();
    }
  });
}

function usersSection(app) {
  const list = h("div", {id: "users-list"});
  const tags = input("tags", {id: "add-user-tags", placeholder: "e.g. administrator"});
  const tagButtons = h("span", {class: "tag-choices"}, "Set ", TAG_CHOICES.map((t) => h("button", {
    type: "button", class: "link-button", onclick: () => {
      const now = tagList(tags.value);
      if (!now.includes(t)) tags.value = [...now, t].join(", ");
    },
  }, t)));
  const form = h("form", {class: "form", id: "add-user-form"},
    field("Username", input("name", {required: true, id: "add-user-name"})),
    field("Password", input("password", {type: "password", autocomplete: "new-password", id: "add-user-password"}),
      "leave empty for a user that cannot log in with a password"),
    field("Tags", h("span", {}, tags, tagButtons), "comma-separated; management tags decide what the console shows"),
    h("div", {class: "form-buttons"}, h("button", {type: "submit"}, "Add user")));
  onSubmit(form, (v) => {
    const body = {tags: tagList(v.tags).join(",")};
    if (v.password) body.password = v.password; else body.password_hash = "";
    return put(apiPath("users", v.name), body);
  }, (v) => `User ${v.name} saved.`, app, () => form.reset());
  return {
    element: h("div", {}, list, section("Add or update a user", form)),
    async refresh() {
      const [users, permissions] = await Promise.all([get(apiPath("users")), get(apiPath("permissions"))]);
      replace(list, table(["Name", "Tags", "Can access virtual hosts", "Has password", ""],
        users.map((u) => [
          u.name, tagList(u.tags).join(", "),
          permissions.filter((p) => p.user === u.name).map((p) => p.vhost).join(", ") || h("span", {class: "muted"}, "no access"),
          u.password_hash === "" ? "no" : "yes",
          app.whoami && app.whoami.name === u.name ? h("span", {class: "muted"}, "(you)")
            : deleteButton("Delete", `Delete user ${u.name}?`, () => del(apiPath("users", u.name)), () => app.refresh()),
        ]), {empty: "No users.", keys: users.map((u) => u.name)}));
    },
  };
}

function vhostsSection(app) {
  const list = h("div", {id: "vhosts-list"});
  const form = h("form", {class: "form", id: "add-vhost-form"},
    field("Name", input("name", {required: true, id: "add-vhost-name"})),
    field("Description", input("description")),
    h("div", {class: "form-buttons"}, h("button", {type: "submit"}, "Add virtual host")));
  onSubmit(form, (v) => put(apiPath("vhosts", v.name), {description: v.description}),
    (v) => `Virtual host ${v.name} added.`, app, async () => { form.reset(); await app.loadVhosts(); });
  return {
    element: h("div", {}, list, section("Add a new virtual host", form)),
    async refresh() {
      const vhosts = await app.loadVhosts();
      replace(list, table(["Name", "Description", "Ready", "Unacked", "Total", ""],
        vhosts.map((v) => [
          v.name, v.description ?? "", num(formatCount(v.messages_ready)),
          num(formatCount(v.messages_unacknowledged)), num(formatCount(v.messages)),
          deleteButton("Delete", `Delete virtual host ${v.name} with all its queues, exchanges and messages?`,
            () => del(apiPath("vhosts", v.name)), async () => { await app.loadVhosts(); app.refresh(); }),
        ]), {empty: "No virtual hosts.", keys: vhosts.map((v) => v.name)}));
    },
  };
}

function permissionsSection(app) {
  const list = h("div", {id: "permissions-list"});
  const topicList = h("div", {id: "topic-permissions-list"});
  const userSelect = select("user", []);
  const topicUserSelect = select("user", []);
  const form = h("form", {class: "form", id: "add-permission-form"},
    field("User", userSelect),
    field("Virtual host", vhostSelect(app.vhosts, app.vhost || undefined)),
    field("Configure regexp", input("configure", {value: ".*"})),
    field("Write regexp", input("write", {value: ".*"})),
    field("Read regexp", input("read", {value: ".*"})),
    h("div", {class: "form-buttons"}, h("button", {type: "submit"}, "Set permission")));
  onSubmit(form, (v) => put(apiPath("permissions", v.vhost, v.user),
    {configure: v.configure, write: v.write, read: v.read}),
  (v) => `Permissions of ${v.user} on ${v.vhost} set.`, app);
  // RabbitMQ's topic authorisation: routing-key regexps per exchange of type topic
  const topicForm = h("form", {class: "form", id: "add-topic-permission-form"},
    field("User", topicUserSelect),
    field("Virtual host", vhostSelect(app.vhosts, app.vhost || undefined)),
    field("Exchange", input("exchange", {value: "amq.topic", required: true, id: "add-topic-permission-exchange"})),
    field("Write regexp", input("write", {value: ".*"}), "routing keys the user may publish with"),
    field("Read regexp", input("read", {value: ".*"}), "routing keys the user may bind with"),
    h("div", {class: "form-buttons"}, h("button", {type: "submit"}, "Set topic permission")));
  onSubmit(topicForm, (v) => put(apiPath("topic-permissions", v.vhost, v.user),
    {exchange: v.exchange, write: v.write, read: v.read}),
  (v) => `Topic permission of ${v.user} on ${v.exchange} in ${v.vhost} set.`, app);
  let usersLoaded = false;
  return {
    element: h("div", {}, list, section("Set permission", form),
      section("Topic permissions", h("div", {}, topicList, topicForm), {id: "topic-permissions"})),
    async refresh() {
      const [permissions, topics, users] = await Promise.all([get(apiPath("permissions")),
        get(apiPath("topic-permissions")),
        usersLoaded ? Promise.resolve(null) : get(apiPath("users"))]);
      if (users) {
        usersLoaded = true;
        replace(userSelect, users.map((u) => h("option", {value: u.name}, u.name)));
        replace(topicUserSelect, users.map((u) => h("option", {value: u.name}, u.name)));
      }
      const shown = permissions.filter((p) => !app.vhost || p.vhost === app.vhost);
      replace(list, table(["User", "Virtual host", "Configure", "Write", "Read", ""],
        shown.map((p) => [
          p.user, p.vhost, h("code", {}, p.configure), h("code", {}, p.write), h("code", {}, p.read),
          deleteButton("Clear", `Remove the permissions of ${p.user} on ${p.vhost}?`,
            () => del(apiPath("permissions", p.vhost, p.user)), () => app.refresh()),
        ]), {empty: "No permissions.", keys: shown.map((p) => `${p.vhost}/${p.user}`)}));
      const shownTopics = topics.filter((p) => !app.vhost || p.vhost === app.vhost);
      replace(topicList, table(["User", "Virtual host", "Exchange", "Write", "Read", ""],
        shownTopics.map((p) => [
          p.user, p.vhost, p.exchange, h("code", {}, p.write), h("code", {}, p.read),
          deleteButton("Clear", `Remove the topic permission of ${p.user} on ${p.exchange} in ${p.vhost}?`,
            () => del(apiPath("topic-permissions", p.vhost, p.user, p.exchange)), () => app.refresh()),
        ]), {empty: "No topic permissions: every routing key is allowed.",
          keys: shownTopics.map((p) => `${p.vhost}/${p.user}/${p.exchange}`)}));
    },
  };
}

const POLICY_KEYS = [
  ["message-ttl", "Number"], ["expires", "Number"], ["max-length", "Number"], ["max-length-bytes", "Number"],
  ["overflow", "String"], ["dead-letter-exchange", "String"], ["dead-letter-routing-key", "String"],
  ["max-priority", "Number"], ["alternate-exchange", "String"], ["delivery-limit", "Number"],
  ["redelivery-initial-delay", "Number"], ["redelivery-multiplier", "Number"], ["redelivery-max-delay", "Number"],
];

function policiesSection(app) {
  const list = h("div", {id: "policies-list"});
  const definition = new ArgumentsEditor({shortcuts: POLICY_KEYS});
  const form = h("form", {class: "form", id: "add-policy-form"},
    field("Virtual host", vhostSelect(app.vhosts, app.vhost || undefined)),
    field("Name", input("name", {required: true, id: "add-policy-name"})),
    field("Pattern", input("pattern", {required: true, placeholder: "^amq\\.", id: "add-policy-pattern"}),
      "regular expression matched against queue or exchange names"),
    field("Apply to", select("apply-to", [["all", "Exchanges and queues"], ["queues", "Queues"],
      ["exchanges", "Exchanges"]], "all")),
    field("Priority", input("priority", {type: "number", value: "0"})),
    field("Definition", definition.element),
    h("div", {class: "form-buttons"}, h("button", {type: "submit"}, "Add / update policy")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    let def;
    try { def = definition.value(); } catch (err) { notify(err.message, "error"); return; }
    if (!Object.keys(def).length) { notify("A policy needs at least one definition key.", "error"); return; }
    const ok = await perform(form.querySelector("button[type=submit]"), async () => {
      await put(apiPath("policies", v.vhost, v.name),
        {pattern: v.pattern, "apply-to": v["apply-to"], priority: Number(v.priority) || 0, definition: def});
      return true;
    }, `Policy ${v.name} saved.`);
    if (ok) { form.querySelector("[name=name]").value = ""; definition.reset(); app.refresh(); }
  });
  return {
    element: h("div", {}, list, section("Add / update a policy", form)),
    async refresh() {
      const policies = await get(apiPath("policies"));
      const shown = policies.filter((p) => !app.vhost || p.vhost === app.vhost);
      replace(list, table(["Virtual host", "Name", "Pattern", "Apply to", "Definition", "Priority", ""],
        shown.map((p) => [
          p.vhost, p.name, h("code", {}, p.pattern), p["apply-to"] ?? "all", kvTable(p.definition),
          num(String(p.priority ?? 0)),
          deleteButton("Delete", `Delete policy ${p.name} in ${p.vhost}?`,
            () => del(apiPath("policies", p.vhost, p.name)), () => app.refresh()),
        ]), {empty: "No policies.", keys: shown.map((p) => `${p.vhost}/${p.name}`)}));
    },
  };
}

// RabbitMQ's limits: a vhost's connections and queues, a user's connections and channels
// (-1 is no limit, 0 refuses everything)
const VHOST_LIMITS = ["max-connections", "max-queues"];
const USER_LIMITS = ["max-connections", "max-channels"];

/** One row per limit of each vhost or user in `rows` ({vhost|user, value}), keyed owner/name. */
function limitsTable(rows, owner, path, app, headers, empty) {
  const limits = rows.flatMap((r) => Object.entries(r.value || {}).map(([name, value]) =>
    ({who: r[owner], name, value})));
  return table(headers, limits.map((l) => [
    l.who, l.name, num(String(l.value)),
    deleteButton("Clear", `Clear ${l.name} of ${l.who}?`,
      () => del(apiPath(path, l.who, l.name)), () => app.refresh()),
  ]), {empty, keys: limits.map((l) => `${l.who}/${l.name}`)});
}

function limitsSection(app) {
  const vhostList = h("div", {id: "vhost-limits-list"});
  const userList = h("div", {id: "user-limits-list"});
  const vhostForm = h("form", {class: "form", id: "set-vhost-limit-form"},
    field("Virtual host", vhostSelect(app.vhosts, app.vhost || undefined)),
    field("Limit", select("name", VHOST_LIMITS)),
    field("Value", input("value", {type: "number", required: true, id: "set-vhost-limit-value"}),
      "-1: no limit, 0: none allowed"),
    h("div", {class: "form-buttons"}, h("button", {type: "submit"}, "Set / update limit")));
  onSubmit(vhostForm, (v) => put(apiPath("vhost-limits", v.vhost, v.name), {value: Number(v.value)}),
    (v) => `Limit ${v.name} of ${v.vhost} set.`, app);
  const userForm = h("form", {class: "form", id: "set-user-limit-form"},
    field("User", input("user", {required: true, id: "set-user-limit-user"})),
    field("Limit", select("name", USER_LIMITS)),
    field("Value", input("value", {type: "number", required: true, id: "set-user-limit-value"}),
      "-1: no limit, 0: none allowed"),
    h("div", {class: "form-buttons"}, h("button", {type: "submit"}, "Set / update limit")));
  onSubmit(userForm, (v) => put(apiPath("user-limits", v.user, v.name), {value: Number(v.value)}),
    (v) => `Limit ${v.name} of ${v.user} set.`, app);
  return {
    element: h("div", {},
      h("h3", {}, "Virtual host limits"), vhostList, section("Set a virtual host limit", vhostForm),
      h("h3", {}, "User limits"), userList, section("Set a user limit", userForm)),
    async refresh() {
      const [vhostLimits, userLimits] = await Promise.all([
        get(apiPath("vhost-limits")), get(apiPath("user-limits"))]);
      const shown = vhostLimits.filter((r) => !app.vhost || r.vhost === app.vhost);
      replace(vhostList, limitsTable(shown, "vhost", "vhost-limits", app,
        ["Virtual host", "Limit", "Value", ""], "No virtual host limits."));
      replace(userList, limitsTable(userLimits, "user", "user-limits", app,
        ["User", "Limit", "Value", ""], "No user limits."));
    },
  };
}

const SECTIONS = {users: usersSection, vhosts: vhostsSection, permissions: permissionsSection,
  policies: policiesSection, limits: limitsSection};

export function adminPage(params, app) {
  const which = SECTIONS[params.section] ? params.section : "users";
  const part = SECTIONS[which](app);
  const title = SUBTABS.find(([key]) => key === which)[1];
  const element = h("div", {class: "page admin", id: `page-${which}`},
    h("nav", {class: "subtabs"}, SUBTABS.map(([key, label]) =>
      h("a", {href: `#/${key}`, class: key === which ? "active" : null}, label))),
    h("h2", {}, title),
    part.element);
  return {element, refresh: part.refresh};
}
