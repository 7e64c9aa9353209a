// Pieces every page uses: notices, the confirm dialog, form fields, the arguments editor.

import {h, replace} from "./dom.js";

/** Show a short message in the notice area; errors stay until dismissed, others fade. */
export function notify(message, kind = "ok") {
  const area = document.getElementById("notices");
  const close = h("button", {type: "button", class: "notice-close", "aria-label": "Dismiss"}, "×");
  const note = h("div", {class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status"},
    h("span", {class: "notice-text"}, message), close);
  close.addEventListener("click", () => note.remove());
  area.appendChild(note);
  if (kind !== "error") setTimeout(() => note.remove(), 4000);
  return note;
}

/** Ask before something that cannot be undone; resolves true when the operator confirms. */
export function confirmAction(question, confirmLabel = "Delete") {
  return new Promise((resolve) => {
    const dialog = h("dialog", {class: "confirm", id: "confirm-dialog"});
    const finish = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    replace(dialog,
      h("p", {}, question),
      h("div", {class: "dialog-buttons"},
        h("button", {type: "button", class: "secondary", onclick: () => finish(false)}, "Cancel"),
        h("button", {type: "button", class: "danger", id: "confirm-yes", onclick: () => finish(true)},
          confirmLabel)));
    dialog.addEventListener("cancel", () => finish(false));
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}

/**
 * Run `action` for a button or form, disabling it meanwhile; report success or the API's
 * reason. Returns the action's result, or undefined when it failed.
 */
export async function perform(control, action, success) {
  if (control) control.disabled = true;
  try {
    const result = await action();
    if (success) notify(typeof success === "function" ? success(result) : success, "ok");
    return result;
  } catch (err) {
    notify(err.reason || err.message || String(err), "error");
    return undefined;
  } finally {
    if (control) control.disabled = false;
  }
}

/** <label>Text <input></label> as one grid row of a form. */
export function field(label, control, hint) {
  return h("label", {class: "field"},
    h("span", {class: "field-label"}, label),
    h("span", {class: "field-control"}, control, hint ? h("small", {class: "hint"}, hint) : null));
}

export function input(name, attrs = {}) {
  return h("input", {name, type: "text", autocomplete: "off", spellcheck: "false", ...attrs});
}

export function select(name, options, selected) {
  return h("select", {name}, options.map((opt) => {
    const [value, label] = Array.isArray(opt) ? opt : [opt, opt];
    return h("option", {value, selected: value === selected}, label);
  }));
}

export function checkbox(name, checked = false) {
  return h("input", {name, type: "checkbox", checked});
}

/** A collapsible form section, closed by default like RabbitMQ's "Add a new queue". */
export function section(title, body, {open = false, id} = {}) {
  return h("details", {class: "section", open, id}, h("summary", {}, title), h("div", {class: "section-body"}, body));
}

/**
 * Key/value rows with a type per value, as RabbitMQ's argument editor: a new empty row
 * appears when the last one is used. `.value()` gives the object to send; values typed
 * "Number" or "Boolean" are converted, "List"/"Object" parse as JSON.
 */
export class ArgumentsEditor {
  constructor({shortcuts = []} = {}) {
    this.rows = h("div", {class: "args-rows"});
    this.element = h("div", {class: "args-editor"}, this.rows,
      shortcuts.length ? h("div", {class: "args-shortcuts"}, "Add ",
        shortcuts.map(([key, type]) => h("button", {
          type: "button", class: "link-button", onclick: () => this.add(key, "", type),
        }, key))) : null);
    this.addEmpty();
  }

  addEmpty() {
    return this.add("", "", "String");
  }

  add(key, value, type) {
    const last = this.rows.lastElementChild;
    let row = last && !last.querySelector(".arg-key").value ? last : null;
    if (!row) {
      row = h("div", {class: "args-row"},
        h("input", {class: "arg-key", placeholder: "key", autocomplete: "off", spellcheck: "false"}),
        h("span", {}, "="),
        h("input", {class: "arg-value", placeholder: "value", autocomplete: "off", spellcheck: "false"}),
        select("arg-type", ["String", "Number", "Boolean", "List"], "String"));
      row.querySelector(".arg-key").addEventListener("input", () => {
        if (this.rows.lastElementChild === row && row.querySelector(".arg-key").value) this.addEmpty();
      });
      this.rows.appendChild(row);
    }
    row.querySelector(".arg-key").value = key;
    row.querySelector(".arg-value").value = value;
    row.querySelector("select").value = type;
    if (key && this.rows.lastElementChild === row) this.addEmpty();
    row.querySelector(key ? ".arg-value" : ".arg-key").focus();
    return row;
  }

  /** The arguments as an object; throws Error naming the bad row on a malformed value. */
  value() {
    const out = {};
    for (const row of this.rows.children) {
      const key = row.querySelector(".arg-key").value.trim();
      if (!key) continue;
      const raw = row.querySelector(".arg-value").value;
      const type = row.querySelector("select").value;
      out[key] = convert(key, raw, type);
    }
    return out;
  }

  reset() {
    this.rows.replaceChildren();
    this.addEmpty();
  }
}

function convert(key, raw, type) {
  if (type === "Number") {
    const n = Number(raw);
    if (raw.trim() === "" || Number.isNaN(n)) throw new Error(`${key}: "${raw}" is not a number`);
    return n;
  }
  if (type === "Boolean") {
    if (!["true", "false"].includes(raw.trim().toLowerCase())) {
      throw new Error(`${key}: write true or false`);
    }
    return raw.trim().toLowerCase() === "true";
  }
  if (type === "List") {
    try {
      const v = JSON.parse(raw);
      if (!Array.isArray(v)) throw new Error();
      return v;
    } catch {
      throw new Error(`${key}: write a JSON list, e.g. ["a", "b"]`);
    }
  }
  return raw;
}

/** A <select> of vhost names, filled from the cached list the app keeps. */
export function vhostSelect(vhosts, selected) {
  return select("vhost", vhosts.map((v) => v.name), selected ?? (vhosts[0] && vhosts[0].name));
}

/** Read a form's named controls into an object (checkboxes as booleans). */
export function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    out[el.name] = el.type === "checkbox" ? el.checked : el.value;
  }
  return out;
}
