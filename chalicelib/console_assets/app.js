// The media-pipeline browser console. Plain DOM: text goes in with textContent, never as HTML.
import { uploadWithProgress } from "./upload.js";

const KEY_STORAGE = "media-pipeline.api-key";
const WAIT_SECONDS = 20; // each long-poll of a job
const RECENT_JOBS = 20;
const ENDED = new Set(["COMPLETED", "FAILED"]);
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
      alt: `${job.filename || job.jobId}: ${output.preset}`,
      title: `${output.preset}: ${output.width}×${output.height} ${output.format}, ${output.bytes} bytes`,
    });
    image.dataset.preset = output.preset;
    container.append(element("figure", {}, image, element("figcaption", { textContent: output.preset })));
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
  const result = element("div", { className: "result" });
  selected.replaceChildren(
    element("strong", { textContent: job.filename || job.jobId }),
    element("span", { className: "status", textContent: ` ${job.status.toLowerCase()} · ${job.jobId}` }),
    result,
  );
  showJob(result, job);
}

document.getElementById("refresh").addEventListener("click", refreshRecentJobs);
refreshRecentJobs();
