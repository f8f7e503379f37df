// sessiond console: passkeys (WebAuthn), the console's only script. Served
// by the binary from /console/static/passkeys.js; the pages that load it
// work without it, and their passkey parts ([data-passkey], hidden) show
// only once this finds WebAuthn in the browser. It talks to the console's
// own JSON endpoints (the cookie authenticates them; X-CSRF-Token carries
// the page's CSRF token) and writes text only, never HTML.
"use strict";
(() => {
  const parts = document.querySelectorAll("[data-passkey]");
  if (!parts.length || !window.PublicKeyCredential || !navigator.credentials) return;

  // base64url, for browsers without PublicKeyCredential's JSON methods.
  const toBytes = (s) => {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
    return Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
  };
  const toText = (buf) => {
    let bin = "";
    for (const b of new Uint8Array(buf)) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const withIDs = (list) => (list || []).map((d) => ({ ...d, id: toBytes(d.id) }));

  const creationOptions = (o) =>
    PublicKeyCredential.parseCreationOptionsFromJSON
      ? PublicKeyCredential.parseCreationOptionsFromJSON(o)
      : { ...o, challenge: toBytes(o.challenge), user: { ...o.user, id: toBytes(o.user.id) },
          excludeCredentials: withIDs(o.excludeCredentials) };
  const requestOptions = (o) =>
    PublicKeyCredential.parseRequestOptionsFromJSON
      ? PublicKeyCredential.parseRequestOptionsFromJSON(o)
      : { ...o, challenge: toBytes(o.challenge), allowCredentials: withIDs(o.allowCredentials) };

  // The credential as RegistrationResponseJSON or AuthenticationResponseJSON.
  const credentialJSON = (c) => {
    if (typeof c.toJSON === "function") return c.toJSON();
    const r = c.response;
    const response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      if (r.getTransports) response.transports = r.getTransports();
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) response.userHandle = toText(r.userHandle);
    }
    return { id: c.id, rawId: toText(c.rawId), type: c.type, response,
      authenticatorAttachment: c.authenticatorAttachment || undefined,
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {} };
  };

  // Moved: the console sent the browser to another page (sign in again,
  // confirm it's you), which the browser then opens.
  class Moved extends Error {}

  const csrf = () => {
    const f = document.querySelector('input[name="csrf"]');
    return f ? f.value : "";
  };
  const go = (path) => {
    // Only ever a page of the console itself.
    location.assign(/^\/console(\/|$)/.test(path) ? path : "/console/");
  };

  const post = async (path, body) => {
    const res = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    if (res.redirected) {
      const to = new URL(res.url);
      go(to.pathname + to.search);
      throw new Moved();
    }
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      // not JSON: said below
    }
    if (!res.ok || !data) {
      throw new Error((data && data.message) || "Something went wrong. Reload the page and try again.");
    }
    return data;
  };

  // What a refusal of the browser's WebAuthn call means to a person.
  const said = (e) => {
    switch (e && e.name) {
      case "NotAllowedError":
        return "No passkey was used: it was cancelled or took too long. Try again.";
      case "InvalidStateError":
        return "This device has a passkey for your account already.";
      case "SecurityError":
        return "Passkeys cannot be used on this address of the console.";
      case "Error":
        return e.message;
    }
    return "Your browser could not use a passkey here.";
  };

  const ceremonies = {
    async register(part) {
      const begun = await post("/console/passkeys/register/begin", {});
      const cred = await navigator.credentials.create({ publicKey: creationOptions(begun.options) });
      const name = part.querySelector('input[name="name"]');
      return post("/console/passkeys/register/finish", {
        challenge_id: begun.challenge_id, name: name ? name.value.trim() : "", credential: credentialJSON(cred),
      });
    },
    async login(part) {
      const begun = await post("/console/login/passkey/begin", {});
      const cred = await navigator.credentials.get({ publicKey: requestOptions(begun.options) });
      return post("/console/login/passkey/finish", {
        challenge_id: begun.challenge_id, credential: credentialJSON(cred), next: part.dataset.next || "",
      });
    },
    async reauth(part) {
      const begun = await post("/console/reauth/passkey/begin", {});
      const cred = await navigator.credentials.get({ publicKey: requestOptions(begun.options) });
      return post("/console/reauth/passkey/finish", {
        challenge_id: begun.challenge_id, credential: credentialJSON(cred), next: part.dataset.next || "",
      });
    },
  };

  const start = async (part, button) => {
    const alert = part.querySelector("[data-passkey-error]");
    if (alert) alert.replaceChildren();
    button.disabled = true;
    part.setAttribute("aria-busy", "true");
    try {
      const done = await ceremonies[part.dataset.passkey](part);
      go(done.redirect);
    } catch (e) {
      if (e instanceof Moved) return;
      const p = document.createElement("p");
      p.textContent = said(e);
      if (alert) alert.append(p);
      button.disabled = false;
    } finally {
      part.removeAttribute("aria-busy");
    }
  };

  for (const el of document.querySelectorAll("[data-passkey-fallback]")) el.hidden = true;
  for (const part of parts) {
    if (!ceremonies[part.dataset.passkey]) continue;
    const button = part.querySelector("button");
    if (part.tagName === "FORM") {
      part.addEventListener("submit", (ev) => {
        ev.preventDefault();
        start(part, button);
      });
    } else {
      button.addEventListener("click", () => start(part, button));
    }
    part.hidden = false;
  }
})();
