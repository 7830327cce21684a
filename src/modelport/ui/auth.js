// API keys in the dashboard. A server with auth on answers 401 without a key: the
// prompt here asks for one, keeps it in sessionStorage (this tab only, gone when it
// closes) and reloads; api.js sends it with every call. /v1/auth/whoami says what the
// key may do: without admin, <html data-admin="no"> hides every element marked
// data-scope="admin" (the buttons that change what endpoints serve), by one CSS rule.

import { h } from "./dom.js";

const STORAGE = "modelport.key";

/** The header that carries the tab's key, if it has one. */
export function keyHeaders() {
  const key = sessionStorage.getItem(STORAGE);
  return key ? { authorization: `Bearer ${key}` } : {};
}

function forget() {
  sessionStorage.removeItem(STORAGE);
  location.reload();
}

function promptDialog() {
  let dialog = document.getElementById("key-prompt");
  if (dialog) return dialog;
  const input = h("input", { id: "key-input", name: "key", type: "password", autocomplete: "off", spellcheck: "false", required: true });
  dialog = h(
    "dialog",
    { id: "key-prompt", "aria-labelledby": "key-prompt-title", "aria-describedby": "key-prompt-body" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "key-prompt-title" }, "API key"),
      h("div", { id: "key-prompt-body" }),
      h("label", { for: "key-input" }, "Key (mp_…)"),
      input,
      h("p", { class: "muted" }, "Kept in this browser tab only, and sent with each request. ", h("code", {}, "modelport keys create NAME --scope read"), " makes one."),
      h(
        "div",
        { class: "dialog-buttons" },
        h("button", { type: "button", id: "key-cancel", onclick: () => dialog.close("cancel") }, "Cancel"),
        h("button", { type: "submit", value: "use", id: "key-use", class: "primary" }, "Use key"),
      ),
    ),
  );
  dialog.addEventListener("close", () => {
    if (dialog.returnValue !== "use" || !input.value.trim()) return;
    sessionStorage.setItem(STORAGE, input.value.trim());
    location.reload();
  });
  document.body.append(dialog);
  return dialog;
}

/** Ask for a key after a 401 (once, however many calls failed); `body` is the answer's. */
export function askForKey(body) {
  const dialog = promptDialog();
  if (dialog.open || document.getElementById("confirm").open) return;
  const refused = sessionStorage.getItem(STORAGE) !== null;
  const why = refused
    ? "The server refused this tab's key (unknown or revoked). Enter another."
    : "This server asks for an API key: a read key shows every page, an admin key also allows the actions.";
  document.getElementById("key-prompt-body").replaceChildren(
    h("p", {}, why),
    body && body.error ? h("p", { class: "muted" }, body.error) : null,
  );
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("key-input").focus();
}

/** Mark what the key may do (the answer of /v1/auth/whoami) and name it in the top bar. */
export function applyScopes(me) {
  const admin = !me.auth || me.scopes.includes("admin");
  document.documentElement.dataset.admin = admin ? "yes" : "no";
  if (!me.auth) return;
  const tools = document.querySelector(".topbar-tools");
  const title = admin ? "This key may use every action." : "Actions that change what an endpoint serves need a key with the admin scope; they are hidden.";
  tools.prepend(
    h("span", { id: "key-name", class: "muted", title }, `key ${me.name} (${me.scopes.join(", ")})`),
    h("button", { type: "button", id: "key-forget", onclick: forget }, "Forget key"),
  );
}
