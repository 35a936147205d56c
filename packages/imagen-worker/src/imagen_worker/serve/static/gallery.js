// The gallery page: sign in, generate, follow jobs live, browse, search, download, delete
// and replay images. Plain DOM and fetch; every text from the server goes in through
// textContent, never as HTML.

const $ = (selector, root = document) => root.querySelector(selector);
const PAGE = 24;

let search = ""; // what the gallery is filtered by (searched on the server)
let nextImages = imagesPath();
let loadingImages = false;
let listing = 0; // bumped when the gallery starts over: a page for an older listing is dropped
const following = new Map(); // job id -> EventSource
// Dates in the reader's own language and time zone, as their browser states them.
const dates = new Intl.DateTimeFormat(navigator.languages, { dateStyle: "medium", timeStyle: "short" });

function imagesPath() {
  return `/v1/images?limit=${PAGE}` + (search ? `&q=${encodeURIComponent(search)}` : "");
}

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
  return dates.format(new Date(text));
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
  listing += 1;
  $("#gallery").replaceChildren();
  $("#jobs").replaceChildren();
  showSignIn();
}

async function start(owner) {
  $("#sign-in").hidden = true;
  $("#owner").textContent = owner;
  $("#sign-out").hidden = false;
  $("#app").hidden = false;
  $("#jobs").replaceChildren();
  search = "";
  $("#search input").value = "";
  await loadModels();
  await restartImages();
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
  if (form.image.files.length) await submitEdit(form, request, $("#generate-error"));
  else await submit(request, $("#generate-error")); // the prompt stays, to try a variation
}

// An edit goes to the OpenAI-compatible edits route as multipart, asking not to wait: the
// answer names the job, followed live like any other.
async function submitEdit(form, request, errorTarget) {
  errorTarget.textContent = "";
  const body = new FormData();
  body.append("image", form.image.files[0]);
  body.append("prompt", request.prompt);
  body.append("n", String(request.count));
  body.append("wait", "0");
  if (request.backend) body.append("model", request.backend);
  else if (request.style) body.append("model", request.style);
  if (request.size) body.append("size", request.size);
  if (form.strength.value !== "") body.append("strength", form.strength.value);
  const response = await fetch("/v1/images/edits", { method: "POST", credentials: "same-origin", body });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    errorTarget.textContent = data.error?.message || `${response.status} ${response.statusText}`;
    if (response.status === 401) showSignIn();
    return false;
  }
  follow({ id: data.imagen.job, prompt: request.prompt });
  return true;
}

// -- the image to edit: chosen, dropped, or taken from the gallery --------------------------

function setInput(file) {
  const input = $("#generate").image;
  const files = new DataTransfer();
  if (file) files.items.add(file);
  input.files = files.files;
  inputChanged();
}

function inputChanged() {
  const file = $("#generate").image.files[0];
  const preview = $("#input-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  $("#input-none").hidden = Boolean(file);
  $("#input-chosen").hidden = !file;
  $("#generate button[type=submit]").textContent = file ? "Edit" : "Generate";
  if (file) {
    preview.src = URL.createObjectURL(file);
    $("#input-name").textContent = file.name;
  } else {
    preview.removeAttribute("src");
  }
}

function dropped(event) {
  event.preventDefault();
  $("#input-drop").classList.remove("over");
  const file = [...event.dataTransfer.files].find((f) => /^image\/(png|jpeg|webp)$/.test(f.type));
  if (file) setInput(file);
  else $("#generate-error").textContent = "Drop a PNG, JPEG or WebP image.";
}

async function editImage(image) {
  const response = await fetch(image.file, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  const blob = await response.blob();
  const extension = { "image/jpeg": "jpg", "image/webp": "webp" }[blob.type] || "png";
  setInput(new File([blob], `image-${image.id}.${extension}`, { type: blob.type }));
  const form = $("#generate");
  form.prompt.value = image.prompt;
  if (image.request?.backend) form.backend.value = image.request.backend;
  form.prompt.focus();
  form.scrollIntoView({ block: "start" });
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
  source.addEventListener("queued", (event) => {
    const { position, note } = data(event);
    const place = position ? ` · position ${position} in the queue` : "";
    setJobState(card, "queued", `queued${place}${note ? " · " + note : ""}`);
  });
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
    // The job's images, as the gallery is filtered now (the server applies the search).
    const filter = search ? `&q=${encodeURIComponent(search)}` : "";
    const images = await api(`/v1/images?job=${job.id}&limit=100${filter}`);
    for (const image of images.data.filter((i) => ids.includes(i.id)).reverse()) {
      if (!$(`[data-image="${image.id}"]`)) $("#gallery").prepend(imageCard(image));
    }
    if (!nextImages) showEnd(); // "No images yet." no longer holds
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
  const current = listing;
  try {
    const page = await api(nextImages);
    if (current === listing) { // else the gallery started over meanwhile: this page is stale
      for (const image of page.data) {
        if (!$(`[data-image="${image.id}"]`)) $("#gallery").append(imageCard(image));
      }
      nextImages = page.next;
      if (!nextImages) showEnd();
    }
  } finally {
    loadingImages = false;
  }
  if (current !== listing) return loadImages(); // the listing that replaced it
  // A tall window may show the sentinel still: keep filling it.
  const more = $("#more").getBoundingClientRect();
  if (nextImages && more.top < window.innerHeight) loadImages();
}

function showEnd() {
  const any = $("#gallery").children.length > 0;
  $("#gallery-end").textContent = any
    ? "That's all of them."
    : search ? `No images match “${search}”.` : "No images yet.";
}

async function restartImages() {
  listing += 1;
  nextImages = imagesPath();
  $("#gallery").replaceChildren();
  $("#gallery-end").textContent = "";
  await loadImages();
}

let searchTimer;
function searchChanged(event) {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    const wanted = event.target.value.trim();
    if (wanted === search) return;
    search = wanted;
    restartImages();
  }, 250);
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
  $("#details-download").href = `${image.file}?download=true`;
  $("#make-again").onclick = async () => {
    if (await submit(image.request, $("#details-error"))) dialog.close();
  };
  $("#edit-image").onclick = async () => {
    try {
      await editImage(image);
    } catch (error) {
      $("#details-error").textContent = error.message;
      return;
    }
    dialog.close();
  };
  $("#delete-image").onclick = async () => {
    if (!confirm("Delete this image? Its file goes too, and this cannot be undone.")) return;
    try {
      await api(`/v1/images/${id}`, { method: "DELETE" });
    } catch (error) {
      $("#details-error").textContent = error.message;
      return;
    }
    $(`[data-image="${id}"]`)?.remove();
    dialog.close();
    if (!nextImages) showEnd();
  };
  if (!dialog.open) dialog.showModal();
}

// -- start ----------------------------------------------------------------------------------

$("#sign-in-form").addEventListener("submit", signIn);
$("#sign-out").addEventListener("click", signOut);
$("#generate").addEventListener("submit", generate);
$("#generate").image.addEventListener("change", inputChanged);
$("#input-remove").addEventListener("click", () => setInput(null));
for (const target of [$("#generate"), $("#input-drop")]) {
  target.addEventListener("dragover", (event) => {
    event.preventDefault();
    $("#input-drop").classList.add("over");
  });
  target.addEventListener("dragleave", () => $("#input-drop").classList.remove("over"));
  target.addEventListener("drop", dropped);
}
$("#search input").addEventListener("input", searchChanged);
new IntersectionObserver((entries) => {
  if (entries.some((entry) => entry.isIntersecting)) loadImages();
}).observe($("#more"));

api("/v1/session").then(
  (session) => start(session.owner),
  () => showSignIn(),
);
