// The ranking page. Plain JavaScript, no build step, nothing loaded from elsewhere.
// Every piece of model output or observation is inserted as text (textContent / text
// nodes), never as HTML: a trajectory that contains markup shows the markup.
"use strict";

const TOKEN_KEY = "rankact-token";
const LONG_TEXT = 280; // observations longer than this start folded

const $ = (id) => document.getElementById(id);
let current = null; // {question, trajectories}

// Build an element. Children that are strings become text nodes.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function show(id, visible) { $(id).hidden = !visible; }
function say(text, kind) {
  const m = $("message");
  m.textContent = text || "";
  m.className = kind || "";
}
function announce(text) { $("announce").textContent = text; }

// --- API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return JSON.stringify(detail);
}

async function api(path, options = {}) {
  const token = localStorage.getItem(TOKEN_KEY) || "";
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  let payload = null;
  try { payload = await response.json(); } catch (_) { payload = null; }
  if (!response.ok) {
    const message = payload && payload.detail !== undefined ? detailText(payload.detail) : response.statusText;
    throw new ApiError(response.status, message);
  }
  return payload;
}

// --- sign in -------------------------------------------------------------------------

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  show("who", false);
  show("task", false);
  show("done", false);
  show("login", true);
  say(message || "", message ? "error" : "");
  $("token-input").focus();
}

async function start() {
  if (!localStorage.getItem(TOKEN_KEY)) { signOut(); return; }
  try {
    const me = await api("/api/me");
    if (me.role !== "annotator") {
      signOut(`Sign-in failed: ${me.name} has an ${me.role} token; ranking needs an annotator token ` +
        "(rankact admin create NAME --role annotator)");
      return;
    }
    $("who-name").textContent = me.name;
    show("who", true);
    show("login", false);
    await loadNext();
  } catch (err) {
    // 403: a valid token of another role (an admin or ingest token): the page needs an annotator's.
    if (err.status === 401 || err.status === 403) signOut(`Sign-in failed: ${err.message}`);
    else say(`Could not reach the server: ${err.message}`, "error");
  }
}

// --- rendering -----------------------------------------------------------------------

function foldable(label, text, className) {
  if (text.length <= LONG_TEXT) {
    return el("div", { class: className }, el("span", { class: "field" }, label), el("pre", {}, text));
  }
  const preview = text.slice(0, 90).replace(/\s+/g, " ");
  return el("details", { class: className },
    el("summary", {}, el("span", { class: "field" }, label), `${preview}… `,
      el("span", { class: "muted" }, `(${text.length} characters)`)),
    el("pre", {}, text));
}

function formatInput(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

function renderStep(trajectory, step) {
  const item = el("li", { class: step.error ? "step has-error" : "step" });
  const flagId = `flag-${trajectory.id}-${step.index}`;
  item.append(el("div", { class: "step-head" },
    el("span", { class: "step-no" }, `Step ${step.index + 1}`),
    el("label", { class: "flag", for: flagId },
      el("input", { type: "checkbox", id: flagId, class: "flag-box",
        "data-trajectory": trajectory.id, "data-step": String(step.index) }),
      " flag bad step")));
  if (step.thought) item.append(el("div", { class: "thought" }, el("span", { class: "field" }, "Thought"), step.thought));
  if (step.action) {
    const input = formatInput(step.action_input);
    item.append(el("div", { class: "action" }, el("span", { class: "field" }, "Action"),
      el("code", { class: "tool" }, step.action), input ? el("pre", { class: "input" }, input) : null));
  }
  if (step.error) {
    item.append(el("div", { class: "error" }, el("span", { class: "field" }, `${step.error.kind} error`),
      step.error.message));
  }
  if (step.observation !== null && step.observation !== undefined) {
    item.append(foldable("Observation", step.observation, "observation"));
  }
  if (step.final_answer !== null && step.final_answer !== undefined) {
    item.append(el("div", { class: "step-final" }, el("span", { class: "field" }, "Final Answer"), step.final_answer));
  }
  return item;
}

function renderCard(trajectory, letter) {
  const card = el("li", { class: "card", tabindex: "0", "data-id": trajectory.id, "data-letter": letter,
    "aria-roledescription": "rankable trajectory" });
  const handle = el("span", { class: "handle", draggable: "true", title: "Drag to reorder", "aria-hidden": "true" }, "⠿");
  const tieId = `tie-${trajectory.id}`;
  card.append(el("div", { class: "card-head" },
    handle,
    el("span", { class: "rank", "aria-label": "rank" }, "?"),
    el("span", { class: "letter" }, `Answer ${letter}`),
    el("span", { class: "spacer" }),
    el("button", { type: "button", class: "move", "data-dir": "-1", "aria-label": `Move answer ${letter} earlier`,
      title: "Move earlier (Alt+←)" }, "◀"),
    el("button", { type: "button", class: "move", "data-dir": "1", "aria-label": `Move answer ${letter} later`,
      title: "Move later (Alt+→)" }, "▶")));
  card.append(el("label", { class: "tie", for: tieId },
    el("input", { type: "checkbox", id: tieId, class: "tie-box" }), " tie with previous"));

  const answer = trajectory.final_answer;
  card.append(el("div", { class: answer === null || answer === undefined ? "final none" : "final" },
    el("div", { class: "field" }, "Final answer"),
    answer === null || answer === undefined ? "(no final answer)" : answer));

  if (trajectory.citations && trajectory.citations.length) {
    card.append(el("div", { class: "citations" }, el("div", { class: "field" }, "Citations"),
      el("ul", {}, ...trajectory.citations.map((c) =>
        el("li", {}, c.title || c.source || c.chunk_id, el("span", { class: "muted" }, ` ${c.source || ""} #${c.chunk_id}`))))));
  }

  // Steps and errors only: the model, status and timings are not sent (they could unblind a ranking).
  const errors = trajectory.steps.filter((s) => s.error).length;
  card.append(el("div", { class: "meta muted" },
    `${trajectory.steps.length} step${trajectory.steps.length === 1 ? "" : "s"} · ${errors} error${errors === 1 ? "" : "s"}`));
  card.append(el("ol", { class: "steps" }, ...trajectory.steps.map((s) => renderStep(trajectory, s))));
  return card;
}

function cards() { return Array.from($("cards").children); }

// Rank numbers as people read them: ties share a number ("2=") and the next rank skips.
function refreshRanks() {
  let rank = 0;
  const list = cards();
  list.forEach((card, position) => {
    const tieBox = card.querySelector(".tie-box");
    tieBox.disabled = position === 0;
    const tied = position > 0 && tieBox.checked;
    if (!tied) rank = position + 1;
    const next = list[position + 1];
    const tiedWithNext = next && next.querySelector(".tie-box").checked;
    card.querySelector(".rank").textContent = tied || tiedWithNext ? `${rank}=` : String(rank);
    card.dataset.rank = String(rank);
    card.setAttribute("aria-label", `Answer ${card.dataset.letter}, rank ${rank}${tied || tiedWithNext ? " (tied)" : ""}` +
      `, position ${position + 1} of ${list.length}. Alt+arrow keys move it.`);
    card.classList.toggle("tied", tied);
    card.querySelector('.move[data-dir="-1"]').disabled = position === 0;
    card.querySelector('.move[data-dir="1"]').disabled = position === list.length - 1;
  });
  $("order-summary").textContent = "Order: " + orderGroups()
    .map((group) => group.map((id) => $("cards").querySelector(`[data-id="${CSS.escape(id)}"]`).dataset.letter).join(" = "))
    .join("  >  ");
}

function orderGroups() {
  const groups = [];
  cards().forEach((card, position) => {
    const tied = position > 0 && card.querySelector(".tie-box").checked;
    if (tied) groups[groups.length - 1].push(card.dataset.id);
    else groups.push([card.dataset.id]);
  });
  return groups;
}

function move(card, delta) {
  const list = cards();
  const from = list.indexOf(card);
  const to = from + delta;
  if (to < 0 || to >= list.length) return;
  const container = $("cards");
  if (delta < 0) container.insertBefore(card, list[to]);
  else container.insertBefore(card, list[to].nextSibling);
  refreshRanks();
  card.focus();
  announce(`Answer ${card.dataset.letter} is now at position ${to + 1} of ${list.length}`);
}

function render(next) {
  current = next;
  $("question-text").textContent = next.question.text;
  $("question-id").textContent = `· ${next.question.id}`;
  $("comment").value = "";
  const container = $("cards");
  container.replaceChildren(...next.trajectories.map((t, i) => renderCard(t, String.fromCharCode(65 + (i % 26)))));
  refreshRanks();
  show("done", false);
  show("task", true);
}

async function loadNext() {
  const next = await api("/api/next");
  if (!next.question) {
    show("task", false);
    $("done-title").textContent = next.waiting ? "Others are ranking the rest" : "Nothing left to rank";
    $("done-text").textContent = next.waiting
      ? `${next.waiting} question${next.waiting === 1 ? " is" : "s are"} being ranked by someone else right now. ` +
        "Check again in a few minutes; a question comes back if its annotator leaves it."
      : "You have ranked every question with two or more trajectories. Thank you!";
    show("done", true);
    current = null;
    return;
  }
  render(next);
}

// --- interaction ---------------------------------------------------------------------

function cardOf(node) { return node && node.closest ? node.closest(".card") : null; }

function onKeyDown(event) {
  const card = cardOf(event.target);
  if (!card || event.target !== card) return; // keys inside a checkbox or details keep their meaning
  if (!(event.altKey || event.shiftKey)) return;
  if (event.key === "ArrowLeft" || event.key === "ArrowUp") { event.preventDefault(); move(card, -1); }
  else if (event.key === "ArrowRight" || event.key === "ArrowDown") { event.preventDefault(); move(card, 1); }
}

let dragged = null;
function clearDropMarks() { cards().forEach((c) => c.classList.remove("drop-before", "drop-after")); }
function dropAfter(card, event) {
  const box = card.getBoundingClientRect();
  return event.clientX > box.left + box.width / 2;
}

function wireCards() {
  const container = $("cards");
  container.addEventListener("keydown", onKeyDown);
  container.addEventListener("click", (event) => {
    const button = event.target.closest("button.move");
    if (button) move(cardOf(button), Number(button.dataset.dir));
  });
  container.addEventListener("change", (event) => {
    if (event.target.classList.contains("tie-box")) refreshRanks();
    if (event.target.classList.contains("flag-box")) {
      event.target.closest(".step").classList.toggle("flagged", event.target.checked);
    }
  });
  container.addEventListener("dragstart", (event) => {
    dragged = cardOf(event.target);
    if (!dragged) return;
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", dragged.dataset.id);
    event.dataTransfer.setDragImage(dragged, 20, 20);
    dragged.classList.add("dragging");
  });
  container.addEventListener("dragover", (event) => {
    const card = cardOf(event.target);
    if (!dragged || !card || card === dragged) return;
    event.preventDefault();
    clearDropMarks();
    card.classList.add(dropAfter(card, event) ? "drop-after" : "drop-before");
  });
  container.addEventListener("drop", (event) => {
    const card = cardOf(event.target);
    if (!dragged || !card || card === dragged) return;
    event.preventDefault();
    container.insertBefore(dragged, dropAfter(card, event) ? card.nextSibling : card);
    clearDropMarks();
    refreshRanks();
    announce(`Answer ${dragged.dataset.letter} is now at position ${cards().indexOf(dragged) + 1}`);
  });
  container.addEventListener("dragend", () => {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
    clearDropMarks();
  });
}

async function submit() {
  if (!current) return;
  const button = $("submit");
  button.disabled = true;
  const flags = Array.from($("cards").querySelectorAll(".flag-box:checked")).map((box) => ({
    trajectory_id: box.dataset.trajectory, step_index: Number(box.dataset.step), reason: "",
  }));
  try {
    await api("/api/rankings", {
      method: "POST",
      body: { question_id: current.question.id, order: orderGroups(), flags, comment: $("comment").value },
    });
    say(`Saved your ranking of “${current.question.text}”.`, "ok");
    await loadNext();
    window.scrollTo(0, 0);
  } catch (err) {
    if (err.status === 401) signOut(`Sign-in failed: ${err.message}`);
    else say(`Not saved: ${err.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    say("");
    start();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("submit").addEventListener("click", submit);
  $("check-again").addEventListener("click", () => loadNext().catch((err) => say(err.message, "error")));
  wireCards();
  start();
});
