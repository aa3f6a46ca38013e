// The media-pipeline browser console. Plain DOM: text goes in with textContent, never as HTML.
import { uploadWithProgress } from "./upload.js";

const KEY_STORAGE = "media-pipeline.api-key";
const WAIT_SECONDS = 20; // each long-poll of a job
const RECENT_JOBS = 20;
const ENDED = new Set(["COMPLETED", "FAILED"]);
const REPROCESS_POLL_MS = 500;
// The API is where the page is: "/" locally, the stage's prefix ("/api/") on AWS.
const API_BASE = new URL(".", window.location.href);

const keyField = document.querySelector("input[name=api-key]");
const picker = document.querySelector("input[type=file]");
const dropZone = document.getElementById("drop-zone");
const uploads = document.getElementById("uploads");
const notice = document.getElementById("notice");
const recentRows = document.querySelector("#recent tbody");
const selected = document.getElementById("selected");

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// --- the key: this tab's sessionStorage only ------------------------------------------

keyField.value = sessionStorage.getItem(KEY_STORAGE) || "";
keyField.addEventListener("input", () => {
  sessionStorage.setItem(KEY_STORAGE, keyField.value.trim());
  showNotice("");
});
keyField.addEventListener("change", refreshRecentJobs);

function apiKey() {
  return keyField.value.trim();
}

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = text === "";
}

// --- the API ------------------------------------------------------------------------

async function callApi(path, options = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}`, ...(options.headers || {}) };
  let response;
  try {
    response = await fetch(new URL(path, API_BASE), { ...options, headers });
  } catch {
    throw new ApiError(0, "network_error", "The API did not answer.");
  }
  const body = await response.json().catch(() => null);
  if (response.ok) return body;
  const error = (body && body.error) || {};
  const apiError = new ApiError(
    response.status,
    error.code || `http_${response.status}`,
    error.message || (body && body.message) || response.statusText,
  );
  if (response.status === 401 || response.status === 403) {
    showNotice(`The API key was refused (${apiError.code}): paste a valid key.`);
  }
  throw apiError;
}

function createUpload(file) {
  return callApi("uploads", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ filename: file.name, contentType: file.type || "application/octet-stream" }),
  });
}

async function waitForEnd(jobId, onStatus) {
  for (;;) {
    const job = await callApi(`jobs/${encodeURIComponent(jobId)}?wait=${WAIT_SECONDS}`);
    onStatus(job.status);
    if (ENDED.has(job.status)) return job;
  }
}

// --- one upload's card ----------------------------------------------------------------

function element(tag, properties = {}, ...children) {
  const made = document.createElement(tag);
  Object.assign(made, properties);
  made.append(...children);
  return made;
}

function newCard(file) {
  const status = element("span", { className: "status", textContent: "requesting an upload" });
  const progress = element("progress", { max: 1, value: 0 });
  const result = element("div", { className: "result" });
  const card = element(
    "li",
    { className: "card" },
    element("strong", { className: "name", textContent: file.name }),
    status,
    progress,
    result,
  );
  card.dataset.filename = file.name;
  uploads.prepend(card);
  return { card, status, progress, result };
}

function showOutputs(container, job) {
  container.replaceChildren();
  for (const output of job.outputs) {
    const image = element("img", {
      src: output.url,
      width: output.width,
      height: output.height,
      alt: `${job.filename || job.jobId}: ${output.name}`,
      title: `${output.name}: ${output.width}×${output.height} ${output.format}, ${output.bytes} bytes, version ${output.version}`,
    });
    image.dataset.preset = output.preset;
    image.dataset.version = output.version;
    container.append(element("figure", {}, image, element("figcaption", { textContent: output.name })));
  }
}

function showError(container, code, message) {
  const shown = element(
    "p",
    { className: "error" },
    element("code", { textContent: code }),
    ` ${message}`,
  );
  shown.dataset.errorCode = code;
  container.replaceChildren(shown);
}

function showJob(container, job) {
  if (job.status === "COMPLETED") showOutputs(container, job);
  else if (job.status === "FAILED") showError(container, job.error.code, job.error.message);
  else container.replaceChildren(element("p", { textContent: `status: ${job.status}` }));
}

async function upload(file) {
  const { card, status, progress, result } = newCard(file);
  try {
    const created = await createUpload(file);
    card.dataset.jobId = created.jobId;
    status.textContent = "uploading";
    await uploadWithProgress(file, created.upload, (loaded, total) => {
      progress.value = loaded / total;
      status.textContent = `uploading ${Math.round((100 * loaded) / total)}%`;
    });
    progress.value = 1;
    status.textContent = "uploaded";
    const job = await waitForEnd(created.jobId, (jobStatus) => {
      status.textContent = jobStatus.toLowerCase();
    });
    card.dataset.status = job.status;
    showJob(result, job);
  } catch (error) {
    card.dataset.status = "FAILED";
    status.textContent = "failed";
    progress.hidden = progress.value === 0;
    showError(result, error.code || "error", error.message);
  }
  refreshRecentJobs();
}

function uploadAll(files) {
  if (!apiKey()) {
    showNotice("Paste an API key first.");
    return;
  }
  for (const file of files) upload(file);
}

picker.addEventListener("change", () => {
  uploadAll([...picker.files]);
  picker.value = "";
});
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("over");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("over");
  uploadAll([...event.dataTransfer.files]);
});

// --- recent jobs ------------------------------------------------------------------------

async function refreshRecentJobs() {
  if (!apiKey()) return;
  let listed;
  try {
    listed = await callApi(`jobs?limit=${RECENT_JOBS}`);
  } catch (error) {
    recentRows.replaceChildren(row(["", `${error.code}: ${error.message}`, ""]));
    return;
  }
  recentRows.replaceChildren(
    ...listed.jobs.map((job) => {
      const shown = row([job.createdAt, job.filename || job.jobId, job.status]);
      shown.tabIndex = 0;
      shown.dataset.jobId = job.jobId;
      shown.addEventListener("click", () => select(job));
      shown.addEventListener("keydown", (event) => {
        if (event.key === "Enter") select(job);
      });
      return shown;
    }),
  );
}

function row(cells) {
  return element("tr", {}, ...cells.map((text) => element("td", { textContent: text })));
}

function select(job) {
  selected.hidden = false;
  selected.dataset.jobId = job.jobId;
  const result = element("div", { className: "result" });
  const revision = job.revision ? ` · revision ${job.revision}` : "";
  selected.replaceChildren(
    element("strong", { textContent: job.filename || job.jobId }),
    element("span", { className: "status", textContent: ` ${job.status.toLowerCase()} · ${job.jobId}${revision}` }),
    result,
  );
  showJob(result, job);
  if (job.status === "COMPLETED") offerReprocess(job);
}

// --- making a job's outputs again (POST jobs/{id}/reprocess) ---------------------------

let stagePresets = null; // GET presets, once per key

keyField.addEventListener("input", () => {
  stagePresets = null;
});

async function presetsOfStage() {
  if (stagePresets === null) stagePresets = (await callApi("presets")).presets;
  return stagePresets;
}

// What the job has of a preset: "missing" (no output), "outdated" (not all at the preset's
// current version) or "current".
function presetState(job, preset) {
  const versions = new Set(job.outputs.filter((o) => o.preset === preset.name).map((o) => o.version));
  if (versions.size === 0) return "missing";
  return versions.size === 1 && versions.has(preset.version) ? "current" : "outdated";
}

async function offerReprocess(job) {
  const form = element("form", { className: "reprocess" });
  const said = element("p", { className: "status" });
  selected.append(form, said);
  let presets;
  try {
    presets = await presetsOfStage();
  } catch (error) {
    showError(said, error.code, error.message);
    return;
  }
  if (selected.dataset.jobId !== job.jobId) return; // another job was selected meanwhile
  const boxes = presets.map((preset) => {
    const box = element("input", { type: "checkbox", name: "preset", value: preset.name });
    const state = presetState(job, preset);
    box.checked = state !== "current";
    const note = box.checked ? ` (${state})` : "";
    return element("label", {}, box, ` ${preset.name} ${preset.version}${note}`);
  });
  const button = element("button", { type: "submit", textContent: "Make again" });
  form.append(element("span", { textContent: "From the original:" }), ...boxes, button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = [...form.querySelectorAll("input[name=preset]:checked")].map((box) => box.value);
    if (chosen.length === 0) {
      said.textContent = "Pick at least one preset.";
      return;
    }
    button.disabled = true;
    reprocess(job.jobId, chosen, said).finally(() => {
      button.disabled = false;
    });
  });
}

async function reprocess(jobId, presets, said) {
  try {
    await callApi(`jobs/${encodeURIComponent(jobId)}/reprocess`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ presets }),
    });
    said.textContent = "making the outputs again…";
    let job;
    do {
      await new Promise((resume) => setTimeout(resume, REPROCESS_POLL_MS));
      job = await callApi(`jobs/${encodeURIComponent(jobId)}`);
    } while (job.reprocessing);
    if (selected.dataset.jobId !== jobId) return;
    select(job);
    if (job.reprocessError) {
      const failed = selected.querySelector("form.reprocess + .status");
      showError(failed, job.reprocessError.code, job.reprocessError.message);
    }
  } catch (error) {
    showError(said, error.code, error.message);
  }
}

document.getElementById("refresh").addEventListener("click", refreshRecentJobs);
refreshRecentJobs();
