// The gallery page: sign in, generate, follow jobs live, browse and replay images.
// Plain DOM and fetch; every text from the server goes in through textContent, never as HTML.

const $ = (selector, root = document) => root.querySelector(selector);
const PAGE = 24;

let nextImages = "/v1/images?limit=" + PAGE;
let loadingImages = false;
const following = new Map(); // job id -> EventSource

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = data.error?.message || `${response.status} ${response.statusText}`;
    if (response.status === 401 && path !== "/v1/session") showSignIn();
    throw new ApiError(response.status, message);
  }
  return data;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function formatCost(cost) {
  return cost === null || cost === undefined ? "cost unknown" : `$${cost.toFixed(cost < 0.01 ? 4 : 2)}`;
}

function formatDate(text) {
  return new Date(text).toLocaleString();
}

// -- signing in and out ---------------------------------------------------------------------

function showSignIn() {
  for (const source of following.values()) source.close();
  following.clear();
  $("#app").hidden = true;
  $("#sign-out").hidden = true;
  $("#owner").textContent = "";
  $("#sign-in").hidden = false;
  $("#sign-in-form input[name=token]").focus();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  $("#sign-in-error").textContent = "";
  try {
    const session = await api("/v1/session", { method: "POST", body: { token: form.token.value } });
    form.reset();
    await start(session.owner);
  } catch (error) {
    $("#sign-in-error").textContent = error.message;
  }
}

async function signOut() {
  await api("/v1/session", { method: "DELETE" });
  $("#gallery").replaceChildren();
  $("#jobs").replaceChildren();
  showSignIn();
}

async function start(owner) {
  $("#sign-in").hidden = true;
  $("#owner").textContent = owner;
  $("#sign-out").hidden = false;
  $("#app").hidden = false;
  $("#gallery").replaceChildren();
  $("#jobs").replaceChildren();
  $("#gallery-end").textContent = "";
  nextImages = "/v1/images?limit=" + PAGE;
  await loadModels();
  await loadImages();
  const running = await api("/v1/jobs?status=pending&status=running&limit=100");
  for (const job of running.data.reverse()) follow(job);
}

async function loadModels() {
  const models = await api("/v1/models");
  const form = $("#generate");
  for (const [select, kind] of [[form.backend, "imagen backend"], [form.style, "imagen style"]]) {
    select.replaceChildren(select.options[0]);
    for (const model of models.data.filter((m) => m.owned_by === kind)) {
      select.append(element("option", { value: model.id, text: model.id }));
    }
  }
}

// -- generating and following jobs ----------------------------------------------------------

function parseOptions(text) {
  const options = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`Backend options: expected KEY=VALUE, got "${line}"`);
    const raw = line.slice(at + 1).trim();
    let value = raw;
    try { value = JSON.parse(raw); } catch { /* a plain string */ }
    options[line.slice(0, at).trim()] = value;
  }
  return options;
}

function requestFromForm(form) {
  const request = { prompt: form.prompt.value.trim(), count: Number(form.count.value) || 1 };
  for (const name of ["backend", "style", "size", "negative_prompt"]) {
    if (form[name].value.trim()) request[name] = form[name].value.trim();
  }
  for (const name of ["steps", "seed"]) {
    if (form[name].value !== "") request[name] = Number(form[name].value);
  }
  const options = parseOptions(form.options.value);
  if (Object.keys(options).length) request.options = options;
  return request;
}

async function submit(request, errorTarget) {
  errorTarget.textContent = "";
  try {
    follow(await api("/v1/jobs", { method: "POST", body: request }));
    return true;
  } catch (error) {
    errorTarget.textContent = error.message;
    return false;
  }
}

async function generate(event) {
  event.preventDefault();
  const form = event.target;
  let request;
  try {
    request = requestFromForm(form);
  } catch (error) {
    $("#generate-error").textContent = error.message;
    return;
  }
  if (await submit(request, $("#generate-error"))) form.prompt.value = "";
}

function jobCard(job) {
  const state = element("span", { class: "state", text: "queued" });
  const bar = element("progress", { max: "1" });
  bar.removeAttribute("value"); // indeterminate until the backend reports steps
  const cancel = element("button", {
    type: "button",
    class: "cancel",
    text: "Cancel",
    onclick: async () => {
      cancel.disabled = true;
      try {
        await api(`/v1/jobs/${job.id}`, { method: "DELETE" });
      } catch (error) {
        state.textContent = error.message;
      }
    },
  });
  return element(
    "article",
    { class: "job", "data-job": String(job.id), "data-state": "queued" },
    element("p", { class: "prompt", text: job.prompt }),
    element("div", { class: "row" }, state, bar, cancel),
  );
}

function setJobState(card, state, text) {
  card.dataset.state = state;
  $(".state", card).textContent = text;
}

function follow(job) {
  if (following.has(job.id)) return;
  const card = jobCard(job);
  $("#jobs").prepend(card);
  const source = new EventSource(`/v1/jobs/${job.id}/events`);
  following.set(job.id, source);
  const ended = () => {
    source.close();
    following.delete(job.id);
    $(".cancel", card).remove();
    $("progress", card).remove();
  };
  const data = (event) => JSON.parse(event.data);
  source.addEventListener("queued", () => setJobState(card, "queued", "queued"));
  source.addEventListener("running", () => setJobState(card, "running", "running"));
  source.addEventListener("progress", (event) => {
    const progress = data(event);
    const bar = $("progress", card);
    if (progress.total) {
      bar.max = progress.total;
      bar.value = progress.current ?? 0;
    }
    const step = progress.total ? ` ${progress.current ?? 0}/${progress.total}` : "";
    setJobState(card, "running", `${progress.kind}${step}${progress.message ? " · " + progress.message : ""}`);
  });
  source.addEventListener("done", async (event) => {
    ended();
    setJobState(card, "done", "done");
    const { image_ids: ids } = data(event);
    const images = await api(`/v1/images?job=${job.id}&limit=100`);
    for (const image of images.data.filter((i) => ids.includes(i.id)).reverse()) {
      if (!$(`[data-image="${image.id}"]`)) $("#gallery").prepend(imageCard(image));
    }
    card.remove();
  });
  for (const kind of ["failed", "cancelled"]) {
    source.addEventListener(kind, (event) => {
      ended();
      const { error } = data(event);
      setJobState(card, kind, error ? `${kind}: ${error}` : kind);
      card.append(element("button", { type: "button", class: "dismiss", text: "Dismiss", onclick: () => card.remove() }));
    });
  }
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      ended();
      setJobState(card, "failed", "lost track of this job");
    }
  });
}

// -- the gallery ----------------------------------------------------------------------------

function imageCard(image) {
  const picture = element("img", {
    src: image.thumbnail,
    alt: image.prompt,
    loading: "lazy",
    width: String(image.width || 256),
    height: String(image.height || 256),
  });
  const facts = `${image.backend} · seed ${image.seed ?? "?"} · ${formatCost(image.cost_usd)}`;
  return element(
    "figure",
    { class: "image", "data-image": String(image.id), tabindex: "0", onclick: () => showDetails(image.id),
      onkeydown: (event) => { if (event.key === "Enter") showDetails(image.id); } },
    picture,
    element(
      "figcaption",
      {},
      element("span", { class: "prompt", text: image.prompt }),
      element("span", { class: "facts", text: facts }),
      element("time", { datetime: image.created_at, text: formatDate(image.created_at) }),
    ),
  );
}

async function loadImages() {
  if (loadingImages || !nextImages) return;
  loadingImages = true;
  try {
    const page = await api(nextImages);
    for (const image of page.data) {
      if (!$(`[data-image="${image.id}"]`)) $("#gallery").append(imageCard(image));
    }
    nextImages = page.next;
    if (!nextImages) {
      $("#gallery-end").textContent = $("#gallery").children.length ? "That's all of them." : "No images yet.";
    }
  } finally {
    loadingImages = false;
  }
  // A tall window may show the sentinel still: keep filling it.
  const more = $("#more").getBoundingClientRect();
  if (nextImages && more.top < window.innerHeight) loadImages();
}

async function showDetails(id) {
  const image = await api(`/v1/images/${id}`);
  const dialog = $("#details");
  dialog.dataset.image = String(id);
  $("#details-image").src = image.file;
  $("#details-image").alt = image.prompt;
  $("#details-open").href = image.file;
  $("#details-prompt").textContent = image.prompt;
  const facts = {
    backend: image.backend,
    seed: image.seed,
    size: image.width && image.height ? `${image.width}×${image.height}` : null,
    type: image.mime_type,
    cost: formatCost(image.cost_usd),
    made: formatDate(image.created_at),
    style: image.request?.style,
    job: image.job_id,
  };
  $("#details-facts").replaceChildren(
    ...Object.entries(facts)
      .filter(([, value]) => value !== null && value !== undefined)
      .flatMap(([name, value]) => [element("dt", { text: name }), element("dd", { text: String(value) })]),
  );
  $("#details-metadata").textContent = JSON.stringify(image.metadata, null, 2);
  $("#details-error").textContent = "";
  $("#make-again").onclick = async () => {
    if (await submit(image.request, $("#details-error"))) dialog.close();
  };
  if (!dialog.open) dialog.showModal();
}

// -- start ----------------------------------------------------------------------------------

$("#sign-in-form").addEventListener("submit", signIn);
$("#sign-out").addEventListener("click", signOut);
$("#generate").addEventListener("submit", generate);
new IntersectionObserver((entries) => {
  if (entries.some((entry) => entry.isIntersecting)) loadImages();
}).observe($("#more"));

api("/v1/session").then(
  (session) => start(session.owner),
  () => showSignIn(),
);
