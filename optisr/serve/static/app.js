// optisr serve: the page's logic. Plain JavaScript, no libraries, nothing loaded from the network.
"use strict";

const $ = (id) => document.getElementById(id);
const maxUploadMb = Number(document.body.dataset.maxUploadMb || "0");

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function fileUrl(job, name, download = false) {
  return `/files/${encodeURIComponent(job)}/${encodeURIComponent(name)}` + (download ? "?download=1" : "");
}

// ---------------------------------------------------------------- tabs
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tab")) {
      const active = other === tab;
      other.classList.toggle("active", active);
      other.setAttribute("aria-selected", String(active));
      $(other.dataset.panel).hidden = !active;
    }
  });
}

// ---------------------------------------------------------------- options
function fillSelect(select, values, selected) {
  select.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
  if (selected !== undefined) select.value = selected;
}

async function loadOptions() {
  const answer = await fetch("/api/options");
  const opts = await answer.json();
  fillSelect($("guided-method"), opts.methods, "default");
  fillSelect($("guided-operator"), opts.operators, "area");
  fillSelect($("guided-mode"), opts.modes, "auto");
  const models = $("blind-model");
  models.replaceChildren();
  for (const m of opts.models) {
    const label = `${m.name} (×${m.scale}, ${m.arch})` + (m.installed ? "" : ` — pip install ${m.package}`);
    const option = el("option", { value: m.name, text: label, title: m.description });
    option.disabled = !m.installed;
    models.append(option);
  }
  const first = opts.models.find((m) => m.installed);
  if (first) models.value = first.name;
}

$("guided-operator").addEventListener("change", () => {
  $("guided-sigma-label").hidden = $("guided-operator").value !== "gaussian";
});
$("guided-mode").addEventListener("change", () => {
  $("guided-lam-label").hidden = !["soft", "robust"].includes($("guided-mode").value);
});

// ---------------------------------------------------------------- jobs
function showError(prefix, line) {
  const box = $(`${prefix}-error`);
  box.textContent = line;
  box.hidden = !line;
}

function setBusy(prefix, busy) {
  $(`${prefix}-run`).disabled = busy;
  $(`${prefix}-status`).hidden = !busy;
}

function showProgress(prefix, state) {
  const bar = $(`${prefix}-progress`);
  if (state.progress === null || state.progress === undefined) bar.removeAttribute("value");
  else bar.value = state.progress;
  $(`${prefix}-stage`).textContent = state.status === "queued" ? "queued: " + state.stage : state.stage;
}

async function submit(prefix, url, form, render) {
  showError(prefix, "");
  const data = new FormData(form);
  let bytes = 0;
  for (const value of data.values()) if (value instanceof File) bytes += value.size;
  if (maxUploadMb && bytes > maxUploadMb * 1024 * 1024) {
    showError(prefix, `upload too large: the limit is ${maxUploadMb} MB per run (optisr serve --max-upload-mb)`);
    return;
  }
  setBusy(prefix, true);
  showProgress(prefix, { status: "running", stage: "uploading", progress: null });
  try {
    const answer = await fetch(url, { method: "POST", body: data });
    const reply = await answer.json().catch(() => ({ error: `${answer.status} ${answer.statusText}` }));
    if (!answer.ok) throw new Error(reply.error || `${answer.status} ${answer.statusText}`);
    const state = await poll(prefix, reply.job);
    if (state.status === "error") throw new Error(state.error);
    render(state);
  } catch (err) {
    showError(prefix, err.message);
  } finally {
    setBusy(prefix, false);
  }
}

async function poll(prefix, job) {
  for (;;) {
    const answer = await fetch(`/api/jobs/${encodeURIComponent(job)}`);
    const state = await answer.json();
    if (!answer.ok) throw new Error(state.error || `${answer.status}`);
    showProgress(prefix, state);
    if (state.status === "done" || state.status === "error") return state;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function notesList(notes) {
  return el("ul", { class: "notes" }, notes.map((n) => el("li", { text: n })));
}

function downloadLink(job, name) {
  return el("a", { class: "download", href: fileUrl(job, name, true), download: name, text: `Download ${name}` });
}

// ---------------------------------------------------------------- guided
function renderGuided(state) {
  const out = $("guided-results");
  const cards = state.results.map((r) => {
    const figures = r.figures.map((f) =>
      el("figure", {}, [
        el("img", { src: fileUrl(state.id, f.file), alt: f.title, class: f.pixelated ? "pixelated" : "" }),
        el("figcaption", { text: f.title }),
      ]),
    );
    const n = r.numbers;
    const facts = [`colour range ${n.range[0].toPrecision(4)} … ${n.range[1].toPrecision(4)}`,
      `max |D x − s| ${n.max_lr_error.toPrecision(3)}`, `run ${n.seconds} s`];
    if (n.mae !== undefined) facts.push(`MAE ${n.mae.toPrecision(4)}`, `RMSE ${n.rmse.toPrecision(4)}`);
    if (n.outliers_left_out !== undefined) facts.push(`${n.outliers_left_out} outliers left out`);
    return el("div", { class: "card" }, [
      el("h2", { text: r.name }),
      el("div", { class: "figures" }, figures),
      el("p", { class: "numbers", text: facts.join(" · ") }),
      downloadLink(state.id, r.download),
      notesList(state.notes),
    ]);
  });
  out.replaceChildren(...cards);
}

$("guided-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submit("guided", "/api/guided", $("guided-form"), renderGuided);
});

// ---------------------------------------------------------------- blind
function compareView(state, r) {
  const after = el("img", { class: "after", src: fileUrl(state.id, r.after), alt: `${r.name} after` });
  const before = el("img", { class: "before", src: fileUrl(state.id, r.before), alt: `${r.name} before` });
  const divider = el("div", { class: "divider" });
  const compare = el("div", { class: "compare" }, [after, before, divider,
    el("span", { class: "tag left", text: "before" }), el("span", { class: "tag right", text: "after" })]);
  const viewer = el("div", { class: "viewer" }, [compare]);
  const slider = el("input", { type: "range", min: "0", max: "100", value: "50", "aria-label": "before/after" });
  const zoom = el("select", { "aria-label": "zoom" },
    ["fit", "1", "2", "4", "8"].map((z) => el("option", { value: z, text: z === "fit" ? "fit" : `${z}×` })));
  const place = () => {
    const p = Number(slider.value);
    before.style.clipPath = `inset(0 ${100 - p}% 0 0)`;
    divider.style.left = `${p}%`;
  };
  const scale = () => {
    compare.style.width = zoom.value === "fit" ? "100%" : `${after.naturalWidth * Number(zoom.value)}px`;
  };
  slider.addEventListener("input", place);
  zoom.addEventListener("change", scale);
  after.addEventListener("load", scale);
  place();
  return [viewer, el("div", { class: "tools" }, [el("span", { text: "before" }), slider, el("span", { text: "after" }),
    el("label", {}, ["zoom ", zoom])])];
}

function renderBlind(state) {
  const cards = state.results.map((r) => {
    if (r.error) return el("div", { class: "card" }, [el("h2", { text: r.name }), el("p", { class: "error", text: r.error })]);
    const size = `${r.size_in[1]}×${r.size_in[0]} → ${r.size_out[1]}×${r.size_out[0]}`;
    return el("div", { class: "card" }, [el("h2", { text: `${r.name} (${size})` }), ...compareView(state, r),
      downloadLink(state.id, r.download)]);
  });
  if (state.notes.length) cards.push(notesList(state.notes));
  $("blind-results").replaceChildren(...cards);
}

$("blind-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submit("blind", "/api/blind", $("blind-form"), renderBlind);
});

loadOptions().catch((err) => showError("guided", `cannot load the options: ${err.message}`));
