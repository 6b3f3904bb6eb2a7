// The page of tfcyclegan-serve: choose, drop or shoot a photo, POST it to /v1/translate, show the result.
// Plain JavaScript, no library: the page must work with no internet.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], limits: null, file: null, inputUrl: null, resultUrl: null, stream: null, busy: false };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(text, fraction) {
  $("progress").hidden = !text;
  $("status").textContent = text || "";
  const bar = $("bar");
  if (fraction === undefined || fraction === null) bar.removeAttribute("value");  // indeterminate
  else bar.value = fraction;
}

function domainLabel(m) {
  if (m.from_domain && m.to_domain) return `${m.from_domain} \u2192 ${m.to_domain}`;
  return m.direction || m.name;
}

function groups() {
  const out = new Map();
  for (const m of state.models) {
    if (!out.has(m.group)) out.set(m.group, []);
    out.get(m.group).push(m);
  }
  return out;
}

function fillDirections() {
  const list = groups().get($("model").value) || [];
  const select = $("direction");
  select.replaceChildren(...list.map((m) => {
    const option = new Option(domainLabel(m), m.name);
    option.title = `${m.name}${m.global_step != null ? `, trained ${m.global_step} steps` : ""}`;
    return option;
  }));
}

function chosenModel() { return $("direction").value; }

async function loadModels() {
  let info;
  try {
    const response = await fetch("/v1/models");
    info = await response.json();
    if (!response.ok) throw new Error(info.error || response.statusText);
  } catch (e) {
    showError(`Cannot list the models: ${e.message}. Is tfcyclegan-serve still running?`);
    return;
  }
  state.models = info.models;
  const modelSelect = $("model");
  modelSelect.replaceChildren(...[...groups().keys()].map((g) => {
    const first = groups().get(g)[0];
    return new Option(first.task && first.task !== g ? `${g} (${first.task})` : g, g);
  }));
  fillDirections();
  $("chain").append(...state.models.map((m) => new Option(`${m.name}: ${domainLabel(m)}`, m.name)));
  const faces = $("faces");
  faces.disabled = !info.faces.available;
  if (!info.faces.available) {
    $("faces-note").textContent = `unavailable: ${info.faces.reason}`;
  }
  const limits = state.limits = info.limits;
  $("footer").textContent = `${state.models.length} model(s) loaded. Uploads up to ${(limits.max_upload_bytes / 1048576).toFixed(0)} MB; ` +
    `photos longer than ${limits.max_side} px are translated as a ${limits.max_side} px copy.`;
  updateButton();
}

function updateButton() {
  $("go").disabled = state.busy || !state.file || !chosenModel();
}

function useFile(file) {
  showError("");
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`${file.name} is not an image (${file.type}). Choose a JPEG or PNG photo.`);
    return;
  }
  // Said here rather than after an upload the server would refuse (413) anyway.
  if (state.limits && file.size > state.limits.max_upload_bytes) {
    const mb = (n) => (n / 1048576).toFixed(1);
    showError(`${file.name} is ${mb(file.size)} MB, more than this server's limit of ${mb(state.limits.max_upload_bytes)} MB. ` +
      "Choose a smaller file (or start tfcyclegan-serve with a larger --max_upload_mb).");
    return;
  }
  state.file = file;
  if (state.inputUrl) URL.revokeObjectURL(state.inputUrl);
  state.inputUrl = URL.createObjectURL(file);
  const input = $("input");
  input.onload = () => { $("input-size").textContent = `${input.naturalWidth} \u00d7 ${input.naturalHeight}`; };
  input.onerror = () => { $("input-size").textContent = "(the browser cannot show this file)"; };
  input.src = state.inputUrl;
  input.hidden = false;
  $("input-empty").hidden = true;
  clearResult();
  updateButton();
}

function clearResult() {
  delete document.body.dataset.state;
  $("result").hidden = true;
  $("result-empty").hidden = false;
  $("result-size").textContent = "";
  $("compare-box").hidden = true;
  $("download").hidden = true;
  $("info").textContent = "";
}

// -- drop, choose, webcam ----------------------------------------------------------------------

function setUpInputs() {
  const drop = $("drop");
  drop.addEventListener("click", (e) => { if (e.target.tagName !== "LABEL") $("file").click(); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
  $("file").addEventListener("change", (e) => useFile(e.target.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => useFile(e.dataTransfer.files[0]));
  // A photo dropped anywhere else on the page is used too, rather than opened by the browser in place of the page.
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    if (!drop.contains(e.target) && e.dataTransfer.files.length) useFile(e.dataTransfer.files[0]);
  });
  $("model").addEventListener("change", () => { fillDirections(); updateButton(); });
  $("direction").addEventListener("change", updateButton);
  $("go").addEventListener("click", translate);
  $("slider").addEventListener("input", moveSlider);

  // The webcam needs a secure context (localhost counts) and a browser that offers getUserMedia.
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    $("camera-row").hidden = false;
    $("camera-open").addEventListener("click", openCamera);
    $("camera-shoot").addEventListener("click", shoot);
    $("camera-close").addEventListener("click", closeCamera);
  }
}

async function openCamera() {
  showError("");
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    showError(`The webcam cannot be used (${e.name}: ${e.message}). Allow the camera for this page, or choose a file.`);
    return;
  }
  const video = $("camera");
  video.srcObject = state.stream;
  video.hidden = false;
  await video.play();
  $("camera-open").hidden = true;
  $("camera-shoot").hidden = false;
  $("camera-close").hidden = false;
}

function closeCamera() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("camera").hidden = true;
  $("camera-open").hidden = false;
  $("camera-shoot").hidden = true;
  $("camera-close").hidden = true;
}

function shoot() {
  const video = $("camera");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    if (!blob) { showError("The webcam gave no picture; try again."); return; }
    useFile(new File([blob], "webcam.png", { type: "image/png" }));
    closeCamera();
  }, "image/png");
}

// -- translating -------------------------------------------------------------------------------

function moveSlider() {
  const value = $("slider").value;
  $("compare-after").style.clipPath = `inset(0 0 0 ${value}%)`;
  $("compare-line").style.left = `${value}%`;
}

function errorText(xhr) {
  // The API answers every error with {"error": "..."}; anything else is shown as it came.
  try {
    const body = JSON.parse(xhr.responseText);
    if (body && body.error) return body.error;
  } catch (e) { /* not JSON */ }
  return xhr.responseText || xhr.statusText || "no answer";
}

function translate() {
  if (!state.file || state.busy) return;
  showError("");
  clearResult();
  const form = new FormData();
  form.append("image", state.file, state.file.name || "photo");
  form.append("model", chosenModel());
  if ($("chain").value) form.append("chain", $("chain").value);
  form.append("faces", $("faces").checked ? "on" : "off");
  form.append("format", "png");

  // XMLHttpRequest, not fetch: only it reports the upload's progress.
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/translate");
  xhr.responseType = "blob";
  const started = performance.now();
  let timer = null;
  const finish = () => { state.busy = false; clearInterval(timer); setStatus(""); updateButton(); };
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setStatus(`Uploading\u2026 ${Math.round(100 * e.loaded / e.total)} %`, e.loaded / e.total);
  };
  xhr.upload.onload = () => {
    setStatus("Translating\u2026");
    timer = setInterval(() => setStatus(`Translating\u2026 ${((performance.now() - started) / 1000).toFixed(0)} s`), 500);
  };
  xhr.onerror = () => { finish(); showError("The server did not answer: is tfcyclegan-serve still running?"); };
  xhr.ontimeout = xhr.onerror;
  xhr.onload = async () => {
    finish();
    if (xhr.status !== 200) {
      const text = await xhr.response.text();
      const fake = { responseText: text, statusText: xhr.statusText };
      let message = `${xhr.status}: ${errorText(fake)}`;
      const retry = xhr.getResponseHeader("Retry-After");
      if (xhr.status === 503 && retry) message += ` (the server suggests ${retry} s)`;
      showError(message);
      return;
    }
    showResult(xhr);
  };
  state.busy = true;
  updateButton();
  setStatus("Uploading\u2026", 0);
  xhr.send(form);
}

function showResult(xhr) {
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = URL.createObjectURL(xhr.response);
  const result = $("result");
  result.onload = () => {
    $("result-size").textContent = `${result.naturalWidth} \u00d7 ${result.naturalHeight}`;
    document.body.dataset.state = "done";  // for tests and screen readers' scripts: the result is shown
  };
  result.src = state.resultUrl;
  result.hidden = false;
  $("result-empty").hidden = true;
  $("compare-before").src = state.inputUrl;
  $("compare-after").src = state.resultUrl;
  $("compare-box").hidden = false;
  moveSlider();
  const download = $("download");
  const models = xhr.getResponseHeader("X-Models") || "translated";
  const stem = (state.file.name || "photo").replace(/\.[^.]*$/, "");
  download.href = state.resultUrl;
  download.download = `${stem}_${models.replace(/,/g, "+")}.png`;
  download.hidden = false;
  const parts = [`${models.replace(/,/g, " \u2192 ")} in ${Number(xhr.getResponseHeader("X-Seconds")).toFixed(2)} s`];
  if (xhr.getResponseHeader("X-Resized") === "true") {
    parts.push(`the photo (${xhr.getResponseHeader("X-Input-Size")}) was translated as a ${xhr.getResponseHeader("X-Output-Size")} copy`);
  }
  if (xhr.getResponseHeader("X-Faces")) parts.push(`${xhr.getResponseHeader("X-Faces")} face(s) translated`);
  $("info").textContent = parts.join("; ") + ".";
}

document.addEventListener("DOMContentLoaded", () => {
  setUpInputs();
  loadModels();
});
