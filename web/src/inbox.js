// The Key Adult's inbox in the browser: set up this browser, sign in with its key, open
// sealed notices and sign acknowledgements. The private keys are WebCrypto keys made
// non-extractable and kept in IndexedDB: no script, ours included, can read them out.
// Formats: schemas/envelope.md (envelopes, acknowledgements, canonical JSON).
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from "@hpke/core";

const ENVELOPE_FORMAT = "encompass-envelope/1";
const X25519_ALGORITHM = "HPKE-X25519-SHA256-AES256GCM";
const DB_NAME = "encompass";
const STORE = "device";
const KEY = "current";

const suite = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes256Gcm(),
});

// --- bytes, base64, canonical JSON -----------------------------------------------------

const utf8 = new TextEncoder();

export function b64(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text);
}

export function unb64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function hex(bytes) {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// Keys sorted, no whitespace, non-ASCII as itself: Python's
// json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).
export function canonical(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// --- the device in IndexedDB -----------------------------------------------------------

function database() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function stored(mode, action) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const request = action(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = () => reject(tx.error);
  });
}

const loadDevice = () => stored("readonly", (s) => s.get(KEY));
const saveDevice = (device) => stored("readwrite", (s) => s.put(device, KEY));

// --- page helpers ----------------------------------------------------------------------

const main = document.getElementById("page");

function say(text, { error = false } = {}) {
  const status = document.getElementById("status");
  status.replaceChildren();
  const p = document.createElement("p");
  p.textContent = text;
  if (error) p.className = "error";
  status.append(p);
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

async function post(path, body, headers = {}) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data?.error?.message ?? `HTTP ${response.status}`);
    error.code = data?.error?.code;
    error.status = response.status;
    throw error;
  }
  return data;
}

// --- enrolment -------------------------------------------------------------------------

async function enrol(button) {
  button.disabled = true;
  say("Making this browser's keys…");
  try {
    const token = decodeURIComponent(location.pathname.split("/").pop());
    const opening = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
    const signing = await crypto.subtle.generateKey({ name: "Ed25519" }, false, [
      "sign",
      "verify",
    ]);
    const x25519 = b64(await crypto.subtle.exportKey("raw", opening.publicKey));
    const ed25519 = b64(await crypto.subtle.exportKey("raw", signing.publicKey));
    const invite = hex(await sha256(utf8.encode(token)));
    const payload = canonical({ ed25519, format: "encompass-enrol/1", invite, x25519 });
    const signature = b64(
      await crypto.subtle.sign("Ed25519", signing.privateKey, utf8.encode(payload)),
    );
    const label = (navigator.userAgentData?.platform || navigator.platform || "browser").slice(
      0,
      60,
    );
    const enrolled = await post(location.pathname, {
      x25519,
      ed25519,
      label: `browser on ${label}`,
      signature,
    });
    await saveDevice({
      device_id: enrolled.device_id,
      opening,
      signing,
      x25519,
      service_key: main.dataset.serviceKey,
    });
    say("This browser is set up. Opening your inbox…");
    await signIn();
    location.assign("/inbox");
  } catch (error) {
    button.disabled = false;
    say(`This browser could not be set up: ${error.message}`, { error: true });
  }
}

// --- signing in ------------------------------------------------------------------------

async function signIn() {
  const device = await loadDevice();
  if (!device) {
    const error = new Error(
      "This browser is not set up to receive notices. Ask your Encompass administrator " +
        "for a set-up link.",
    );
    error.code = "not_set_up";
    throw error;
  }
  const { challenge } = await post("/inbox/challenge", {});
  const payload = canonical({
    challenge,
    device_id: device.device_id,
    format: "encompass-sign-in/1",
  });
  const signature = b64(
    await crypto.subtle.sign("Ed25519", device.signing.privateKey, utf8.encode(payload)),
  );
  await post("/inbox/sign-in", { device_id: device.device_id, challenge, signature });
}

async function signInPage() {
  const button = main.querySelector('[data-action="sign-in"]');
  const attempt = async () => {
    try {
      await signIn();
      location.reload();
    } catch (error) {
      const text =
        error.code === "sign_in_refused"
          ? "This browser can no longer sign in: its access was withdrawn. Ask your " +
            "Encompass administrator for a new set-up link."
          : error.message;
      say(text, { error: true });
      if (error.code !== "not_set_up" && error.code !== "sign_in_refused") button.hidden = false;
    }
  };
  button.addEventListener("click", attempt);
  if (main.dataset.automatic === "yes") await attempt();
  else button.hidden = false;
}

// --- opening a notice ------------------------------------------------------------------

async function verifyAndOpen(envelope, device) {
  if (envelope.format !== ENVELOPE_FORMAT) throw new Error("unknown envelope format");
  if (envelope.algorithm !== X25519_ALGORITHM)
    throw new Error("this envelope needs a key this browser does not have");
  // The service key pinned when this browser was set up; a changed one is refused.
  const pinned = device.service_key;
  if (main.dataset.serviceKey !== pinned)
    throw new Error("the service's key changed since this browser was set up; ask your administrator");
  const serviceRaw = unb64(pinned);
  if (envelope.signer_key_id !== `sha256:${hex(await sha256(serviceRaw))}`)
    throw new Error("signature does not verify: not signed by the service");
  const serviceKey = await crypto.subtle.importKey("raw", serviceRaw, { name: "Ed25519" }, false, [
    "verify",
  ]);
  const { signature, ...signed } = envelope;
  const good = await crypto.subtle.verify(
    "Ed25519",
    serviceKey,
    unb64(signature),
    utf8.encode(canonical(signed)),
  );
  if (!good) throw new Error("envelope altered: the service's signature does not match");
  if (envelope.recipient_key_id !== `sha256:${hex(await sha256(unb64(device.x25519)))}`)
    throw new Error("not for this browser's key");
  const info = utf8.encode(
    canonical({
      algorithm: envelope.algorithm,
      format: envelope.format,
      notice_id: envelope.notice_id,
      recipient: envelope.recipient,
      recipient_key_id: envelope.recipient_key_id,
    }),
  );
  const sealed = unb64(envelope.ciphertext);
  const plaintext = await suite.open(
    { recipientKey: device.opening, enc: sealed.slice(0, 32), info },
    sealed.slice(32),
  );
  const notice = JSON.parse(new TextDecoder().decode(plaintext));
  if (notice.notice_id !== envelope.notice_id) throw new Error("envelope altered");
  const hash = hex(await sha256(utf8.encode(canonical(envelope))));
  return { notice, hash };
}

function formatDate(text) {
  if (!text) return "Not known";
  const date = new Date(`${text}T00:00:00Z`);
  return date.toLocaleDateString("en-GB", {
    day: "numeric",
    month: "long",
    year: "numeric",
    timeZone: "UTC",
  });
}

function formatWhen(text) {
  return new Date(text).toLocaleString("en-GB", {
    dateStyle: "full",
    timeStyle: "short",
    timeZone: "Europe/London",
  });
}

function summary(rows) {
  const list = el("dl", null, "summary-list");
  for (const [label, value] of rows) {
    const row = el("div");
    row.append(el("dt", label), el("dd", value ?? "Not given"));
    list.append(row);
  }
  return list;
}

function renderNotice(notice, container) {
  const child = notice.child;
  const name = `${child.given_name} ${child.family_name}`;
  const heading = el("h3", notice.kind === "retraction" ? `Withdrawn: ${name}` : name);
  heading.tabIndex = -1;
  container.append(heading);
  if (notice.kind === "retraction") {
    container.append(
      el(
        "p",
        "The police withdrew this notice. No action is needed; keep it confidential.",
        "panel panel--warning",
      ),
    );
  }
  container.append(
    summary([
      ["Date of birth", formatDate(child.date_of_birth)],
      ["When it happened", formatWhen(notice.occurred_at)],
      ["Where it happened", notice.location],
      ["Was the child present", notice.present ? "Yes" : "No"],
      ["Where the child was", notice.where_during],
      ["The child's voice", notice.voice],
      ["What happened", notice.circumstances],
      ["What the police did", notice.police_actions],
      ["Who to contact", `${notice.officer.name}, ${notice.officer.contact}`],
      ["Police reference", notice.police_reference],
    ]),
  );
  container.append(el("h4", "Guidance"), el("p", notice.guidance, "panel guidance"));
  return heading;
}

let ackFormCount = 0;

function ackForm(item, envelopeHash, device) {
  const id = `ack-${++ackFormCount}`;
  const form = el("form", null, "ack");
  const fieldset = el("fieldset", null, "radios");
  fieldset.append(el("legend", "Acknowledge this notice"));
  const choices = [
    ["received", "Received"],
    ["not_our_pupil", "Not our pupil"],
    ["child_absent", "Child absent"],
  ];
  const names = Object.fromEntries(choices);
  for (const [value, label] of choices) {
    const input = document.createElement("input");
    Object.assign(input, { type: "radio", name: `${id}-kind`, value, id: `${id}-${value}` });
    const labelEl = el("label");
    labelEl.append(input, document.createTextNode(label));
    fieldset.append(labelEl);
  }
  const replyLabel = el("label", "Reply to the police (optional)");
  replyLabel.htmlFor = `${id}-reply`;
  const reply = document.createElement("textarea");
  Object.assign(reply, { id: `${id}-reply`, rows: 3, maxLength: 500, name: "reply" });
  const submit = el("button", "Acknowledge", "button");
  submit.type = "submit";
  form.append(fieldset, replyLabel, reply, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = form.querySelector("input[type=radio]:checked");
    if (!chosen) {
      say("Choose Received, Not our pupil or Child absent.", { error: true });
      return;
    }
    submit.disabled = true;
    const text = reply.value.trim() || null;
    const notice_id = item.dataset.notice;
    const payload = canonical({
      envelope_hash: envelopeHash,
      format: "encompass-ack/1",
      kind: chosen.value,
      notice_id,
      reply: text,
    });
    try {
      const signature = b64(
        await crypto.subtle.sign("Ed25519", device.signing.privateKey, utf8.encode(payload)),
      );
      await post(
        `/inbox/api/notices/${encodeURIComponent(notice_id)}/ack`,
        { kind: chosen.value, reply: text, envelope_hash: envelopeHash, signature },
        { "X-CSRF-Token": main.dataset.csrf },
      );
      const done = el("p", `Acknowledged: ${names[chosen.value]}. Thank you.`, "panel");
      done.tabIndex = -1;
      form.replaceWith(done);
      done.focus();
      say(`Acknowledgement sent: ${names[chosen.value]}.`);
    } catch (error) {
      submit.disabled = false;
      say(`The acknowledgement was not sent: ${error.message}`, { error: true });
    }
  });
  return form;
}

async function openItem(item, button, device) {
  const box = item.querySelector(".opened");
  if (!box.hidden) {
    box.hidden = true;
    button.setAttribute("aria-expanded", "false");
    button.textContent = button.textContent.replace("Close", "Open");
    return;
  }
  button.disabled = true;
  say("Opening the notice…");
  try {
    const kind = item.dataset.kind;
    const response = await fetch(
      `/inbox/api/notices/${encodeURIComponent(item.dataset.notice)}?kind=${kind}`,
      { credentials: "same-origin" },
    );
    const served = await response.json();
    if (!response.ok) throw new Error(served?.error?.message ?? `HTTP ${response.status}`);
    const { notice, hash } = await verifyAndOpen(served.envelope, device);
    box.replaceChildren();
    const heading = renderNotice(notice, box);
    if (notice.kind === "notice" && !item.dataset.answer) box.append(ackForm(item, hash, device));
    box.hidden = false;
    item.classList.remove("unread");
    item.querySelector(".tag")?.replaceWith(el("span", "Opened", "tag tag--grey"));
    button.setAttribute("aria-expanded", "true");
    button.textContent = button.textContent.replace("Open", "Close");
    say("Notice opened and verified.");
    heading.focus();
  } catch (error) {
    say(`This notice could not be opened: ${error.message}`, { error: true });
  } finally {
    button.disabled = false;
  }
}

async function inboxPage() {
  const device = await loadDevice();
  if (!device) {
    say("This browser holds no keys. Ask your Encompass administrator for a set-up link.", {
      error: true,
    });
    return;
  }
  for (const item of main.querySelectorAll("li.notice")) {
    const button = item.querySelector('[data-action="open"]');
    button.addEventListener("click", () => openItem(item, button, device));
  }
  const focused = main.querySelector("li.notice[data-focus]");
  if (focused) await openItem(focused, focused.querySelector('[data-action="open"]'), device);
}

// --- start -----------------------------------------------------------------------------

const pages = {
  enrol: () => {
    const button = document.getElementById("enrol");
    button.addEventListener("click", () => enrol(button));
  },
  "sign-in": signInPage,
  inbox: inboxPage,
};

pages[main?.dataset.page]?.();
