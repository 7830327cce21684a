// The confirmation asked before any action that changes what an endpoint serves.
// A native modal <dialog>: focus moves into it and stays there, Escape cancels, and
// focus returns to the button that opened it.

import { h } from "./dom.js";

/**
 * Ask before acting. Resolves to {reason} when confirmed, null when cancelled.
 * `body` is text or nodes saying exactly what will happen; `reason` asks for a reason
 * to keep with the change.
 */
export function confirmAction({ title, body, confirmLabel, reason: askReason = false }) {
  const dialog = document.getElementById("confirm");
  const opener = document.activeElement;
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-body").replaceChildren(...[body].flat().map((b) => (typeof b === "string" ? h("p", {}, b) : b)));
  document.getElementById("confirm-ok").textContent = confirmLabel;
  const reason = document.getElementById("confirm-reason");
  reason.value = "";
  document.getElementById("confirm-reason-row").hidden = !askReason;
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (opener && opener.isConnected) opener.focus();
        resolve(dialog.returnValue === "confirm" ? { reason: reason.value.trim() || null } : null);
      },
      { once: true },
    );
    dialog.returnValue = "cancel";
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}
