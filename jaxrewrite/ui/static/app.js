// jaxrewrite UI: paint masks on samples, build an edit request (the official JSON format:
// [image number, PNG data URL] pairs), and run it through the server's JSON API.
"use strict";

const D = 256;  // canvas pixels; masks are painted at this resolution, as the official UI's
const PAGE = 12;
const $ = (id) => document.getElementById(id);
const state = {
  info: null, numbers: [], slots: [], current: null, original: false, busy: false,
  request: { object: null, paste: null, key: [] },  // key: [[number, url], ...]
  images: new Map(),  // "number:original|edited" -> data URL
};

// -- talking to the server --------------------------------------------------------------------

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const out = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(out.error || r.statusText);
  return out;
}

function say(text, error = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

async function guard(what, work) {
  if (state.busy) { say("busy: wait for the edit to finish", true); return; }
  try { await work(); } catch (e) { say(`${what}: ${e.message}`, true); }
}

// -- image numbers ----------------------------------------------------------------------------

function parseNumbers(text) {
  const out = [];
  for (const part of text.split(",")) {
    const m = part.trim().match(/^(\d+)(?:-(\d+))?$/);
    if (!m) throw new Error(`image numbers look like 200-212,300; got ${JSON.stringify(text)}`);
    const a = +m[1], b = m[2] === undefined ? a : +m[2];
    if (b < a) throw new Error(`range ${part.trim()} runs backwards`);
    for (let i = a; i <= b && out.length < PAGE; i++) out.push(i);
  }
  return out;
}

function formatNumbers(list) {
  const parts = [];
  for (let i = 0; i < list.length; i++) {
    let j = i;
    while (j + 1 < list.length && list[j + 1] === list[j] + 1) j++;
    parts.push(j > i ? `${list[i]}-${list[j]}` : `${list[i]}`);
    i = j;
  }
  return parts.join(",");
}

function page(step) {
  const list = parseNumbers($("numbers").value);
  const n = Math.max(list.length, 1);
  const first = step > 0 ? Math.max(...list) + 1 : Math.max(Math.min(...list) - n, 0);
  $("numbers").value = formatNumbers(Array.from({ length: n }, (_, i) => first + i));
  return showImages();
}

// -- canvases ---------------------------------------------------------------------------------

function makeSlot(index) {
  const div = document.createElement("div");
  div.className = "slot";
  const img = document.createElement("img");
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = D;
  canvas.dataset.index = index;
  const num = document.createElement("span");
  num.className = "num";
  div.append(img, canvas, num);
  const slot = { div, img, canvas, num, number: null, painted: false };
  let last = null;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * D / r.width, (e.clientY - r.top) * D / r.height];
  };
  const stroke = (e, from) => {
    const ctx = canvas.getContext("2d");
    ctx.globalCompositeOperation = e.shiftKey ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = "#ff3b3b";
    ctx.lineWidth = +$("brush").value || 14;
    ctx.lineCap = ctx.lineJoin = "round";
    const to = at(e);
    ctx.beginPath();
    ctx.moveTo(...(from || to));
    ctx.lineTo(to[0] + (from ? 0 : 0.01), to[1]);
    ctx.stroke();
    return to;
  };
  canvas.addEventListener("pointerdown", (e) => {
    if (slot.number === null) return;
    canvas.setPointerCapture(e.pointerId);
    select(slot);
    last = stroke(e, null);
    slot.painted = true;
  });
  canvas.addEventListener("pointermove", (e) => { if (last) last = stroke(e, last); });
  const end = () => { last = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  return slot;
}

function select(slot) {
  state.current = slot;
  for (const s of state.slots) s.div.classList.toggle("current", s === slot);
}

function clearMask(slot) {
  slot.canvas.getContext("2d").clearRect(0, 0, D, D);
  slot.painted = false;
}

function maskLevels(canvas) {
  // The painted alpha as 8-bit grey levels on black: what the official decoder reads (red channel).
  const src = canvas.getContext("2d").getImageData(0, 0, D, D).data;
  let any = false;
  const out = document.createElement("canvas");
  out.width = out.height = D;
  const ctx = out.getContext("2d");
  const img = ctx.createImageData(D, D);
  for (let i = 0; i < src.length; i += 4) {
    const a = src[i + 3];
    if (a) any = true;
    img.data[i] = img.data[i + 1] = img.data[i + 2] = a;
    img.data[i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return any ? out.toDataURL("image/png") : null;
}

function selection(what) {
  const slot = state.current;
  if (!slot || slot.number === null) throw new Error(`paint on an image first (the ${what})`);
  const url = maskLevels(slot.canvas);
  if (!url) throw new Error(`the mask of image ${slot.number} is empty: paint the ${what}`);
  return [slot.number, url];
}

async function imagesFor(numbers, original, highlight) {
  return api("/api/images", { numbers, original, highlight });
}

async function showImages() {
  const numbers = parseNumbers($("numbers").value);
  const highlight = $("highlight").checked;
  const out = await imagesFor(numbers, state.original, highlight);
  if (highlight && !out.highlight) say("show matches: Search or Match selection first (no key yet)", true);
  state.numbers = out.numbers;
  const canvases = $("canvases");
  while (state.slots.length < PAGE) {
    const slot = makeSlot(state.slots.length);
    state.slots.push(slot);
    canvases.append(slot.div);
  }
  state.slots.forEach((slot, i) => {
    const number = i < out.numbers.length ? out.numbers[i] : null;
    if (slot.number !== number) clearMask(slot);
    slot.number = number;
    slot.div.hidden = number === null;
    slot.img.src = number === null ? "" : out.images[i];
    slot.num.textContent = number === null ? "" : `#${number}`;
    slot.div.dataset.number = number === null ? "" : number;
    if (number !== null && !highlight) state.images.set(`${number}:${state.original}`, out.images[i]);
  });
  if (state.current && state.current.number === null) state.current = null;
  say(`${state.original ? "original" : "edited"} model, images ${formatNumbers(out.numbers)}`);
}

async function imageOf(number) {
  const k = `${number}:false`;
  if (!state.images.has(k)) {
    const out = await imagesFor([number], false, false);
    state.images.set(k, out.images[0]);
  }
  return state.images.get(k);
}

function loaded(url) {
  return new Promise((ok, fail) => {
    const img = new Image();
    img.onload = () => ok(img);
    img.onerror = () => fail(new Error("cannot read an image"));
    img.src = url;
  });
}

async function maskedThumb(number, maskUrl, dim = 0.3) {
  // The image, dimmed where the mask is not painted.
  const [img, mask] = await Promise.all([loaded(await imageOf(number)), loaded(maskUrl)]);
  const c = document.createElement("canvas");
  c.width = c.height = D;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0, D, D);
  const px = ctx.getImageData(0, 0, D, D);
  const m = document.createElement("canvas");
  m.width = m.height = D;
  m.getContext("2d").drawImage(mask, 0, 0, D, D);
  const levels = m.getContext("2d").getImageData(0, 0, D, D).data;
  for (let i = 0; i < px.data.length; i += 4) {
    const w = dim + (1 - dim) * levels[i] / 255;
    for (let j = 0; j < 3; j++) px.data[i + j] *= w;
  }
  ctx.putImageData(px, 0, 0);
  return c.toDataURL("image/png");
}

// -- the request ------------------------------------------------------------------------------

function requestJSON() {
  const r = {};
  if (state.request.object) r.object = state.request.object;
  if (state.request.paste) r.paste = state.request.paste;
  if (state.request.key.length) r.key = state.request.key;
  if (state.request.query) r.query = state.request.query;
  return r;
}

function settings() {
  return { rank: +$("rank").value, niter: +$("niter").value, piter: +$("piter").value, lr: +$("lr").value,
           method: $("method").value, key_method: $("keymethod").value };
}

let repaints = 0;

async function repaintRequest() {
  // Views of the request (built first, shown together: a later repaint supersedes this one).
  const mine = ++repaints;
  const { object, paste, key } = state.request;
  const copy = object ? await maskedThumb(...object) : "";
  let pasted = { image: paste ? await maskedThumb(...paste) : "", title: "" };
  if (object && paste) {
    const out = await api("/api/paste", { layer: $("layer").value, request: { object, paste } });
    pasted = { image: out.image, title: `pasted box ${out.box.join(", ")} (top, left, bottom, right)` };
  }
  const thumbs = [];
  for (const [number, url] of key) {
    const img = document.createElement("img");
    img.src = await maskedThumb(number, url);
    img.title = `#${number}: click to remove`;
    img.dataset.number = number;
    img.addEventListener("click", () => guard("context", async () => {
      state.request.key = state.request.key.filter(([n]) => n !== number);
      await repaintRequest();
      say(`removed image ${number} from the context`);
    }));
    thumbs.push(img);
  }
  if (mine !== repaints) return;
  $("copyview").src = copy;
  Object.assign($("pasteview"), { src: pasted.image, title: pasted.title });
  $("ctxtray").replaceChildren(...thumbs);
}

async function search(source) {
  const body = { layer: $("layer").value, source, count: PAGE, key_method: $("keymethod").value };
  if (source === "selection") {
    state.request.query = selection("selection to match");
    body.request = { query: state.request.query };
  } else {
    const key = state.request.key.length ? state.request.key : state.request.paste ? [state.request.paste] : null;
    if (!key) throw new Error("add context regions first (or paste)");
    body.request = { key };
  }
  say(source === "context" ? "searching samples for the context…" : "matching the selection…");
  const out = await api("/api/search", body);
  $("numbers").value = out.numbers.join(",");
  await showImages();
  say(`top matches ${out.numbers.join(", ")}; strongest units ${out.units.join(", ")}`);
}

// -- edits ------------------------------------------------------------------------------------

async function run(kind) {
  const request = requestJSON();
  const extra = kind === "erase" ? { drank: +$("drank").value } : {};
  let s = { ...settings(), ...extra };
  if (kind === "zero") s = { rank: s.rank, key_method: s.key_method };
  const { job } = await api("/api/execute", { kind, layer: $("layer").value, request, settings: s });
  state.busy = true;
  const bar = $("progress");
  bar.hidden = false;
  try {
    for (;;) {
      await new Promise((ok) => setTimeout(ok, 200));
      const j = await api("/api/job");
      if (j.id !== job) continue;
      bar.max = Math.max(j.total, 1);
      bar.value = j.done;
      say(`${kind}: ${j.desc} ${j.total ? `${j.done}/${j.total}` : ""} (${j.elapsed.toFixed(1)} s)`);
      if (j.state === "error") throw new Error(j.error);
      if (j.state === "done") return finished(j.result);
    }
  } finally {
    state.busy = false;
    bar.hidden = true;
  }
}

async function finished(result) {
  state.original = false;
  $("toggle").textContent = "Toggle original";
  await showHistory();
  await showImages();
  const g = result.grid;
  $("result").hidden = false;
  $("gridbefore").src = g.before;
  $("gridafter").src = g.after;
  $("gridinfo").textContent = `(images ${formatNumbers(g.numbers)})`;
  const loss = result.loss ? `, loss ${result.loss[0].toFixed(4)} → ${result.loss[1].toFixed(4)}` : "";
  say(`${result.kind} applied at ${result.layer} in ${result.seconds} s${loss}`);
  document.body.dataset.edits = (+(document.body.dataset.edits || 0) + 1).toString();
}

async function showHistory(history) {
  history = history || (await api("/api/info")).history;
  const ol = $("history");
  ol.replaceChildren(...history.map((h) => {
    const li = document.createElement("li");
    const loss = h.loss ? ` loss ${h.loss[0].toFixed(3)}→${h.loss[1].toFixed(3)}` : "";
    li.textContent = `${h.kind} ${h.layer} rank ${h.rank} ${h.kind === "zero" ? "" : h.method}${loss}`;
    return li;
  }));
  document.body.dataset.history = history.length;
}

// -- files ------------------------------------------------------------------------------------

function fileSettings() {
  return { layer: $("layer").value, rank: +$("rank").value, lr: +$("lr").value };
}

function kindOf(request) {
  return request.object ? "edit" : request.paste ? "erase" : "zero";
}

async function refreshFiles(info) {
  info = info || await api("/api/info");
  const sel = $("loadname");
  sel.replaceChildren(...[...info.saved.map((n) => [n, n]), ...info.shipped.map((n) => [`shipped:${n}`, `${n} (shipped)`])]
    .map(([value, text]) => Object.assign(document.createElement("option"), { value, textContent: text })));
}

async function applyLoaded(out, where) {
  const r = out.request;
  state.request = { object: r.object || null, paste: r.paste || null, key: r.key || [], query: r.query || null };
  const s = out.settings || {};
  if (s.layer) $("layer").value = s.layer;
  if (s.rank) $("rank").value = s.rank;
  if (s.lr) $("lr").value = s.lr;
  const shown = [r.object, r.paste, ...(r.key || [])].filter(Boolean).map(([n]) => n);
  if (shown.length) $("numbers").value = formatNumbers([...new Set(shown)].sort((a, b) => a - b));
  await showImages();
  await repaintRequest();
  say(`loaded ${where}; Execute to apply it`);
}

function download(name, text) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// -- wiring -----------------------------------------------------------------------------------

function on(id, what, work) {
  $(id).addEventListener("click", () => guard(what, work));
}

async function init() {
  const info = state.info = await api("/api/info");
  $("model").textContent = `${info.name} (${info.arch}, ${info.size}px)`;
  $("layer").replaceChildren(...info.layers.map((l) => Object.assign(document.createElement("option"), {
    value: l.name, textContent: `${l.name} (keys ${l.keys.join("x")}, values ${l.values.join("x")})` })));
  // a middle layer (keys at a quarter of the image) until an edit file names one
  const gap = (l) => Math.abs(Math.log2(l.keys[0] * 4 / info.size));
  $("layer").value = info.layers.reduce((a, b) => (gap(b) <= gap(a) ? b : a)).name;
  $("method").replaceChildren(...info.methods.map((m) => Object.assign(document.createElement("option"), {
    value: m.name, textContent: m.name + (m.linear_only ? " (linear)" : "") })));
  $("keymethod").replaceChildren(...info.key_methods.map((m) => Object.assign(document.createElement("option"), {
    value: m, textContent: m })));
  const d = info.defaults;
  Object.assign($("rank"), { value: d.rank }); Object.assign($("niter"), { value: d.niter });
  Object.assign($("piter"), { value: d.piter }); Object.assign($("lr"), { value: d.lr });
  Object.assign($("drank"), { value: d.drank });
  $("method").value = d.method; $("keymethod").value = d.key_method;
  $("dlckpt").textContent = `↓ checkpoint (${info.checkpoint.split(".").pop()})`;
  await refreshFiles(info);
  await showHistory(info.history);

  on("show", "images", showImages);
  on("prev", "images", () => page(-1));
  on("next", "images", () => page(1));
  $("numbers").addEventListener("keydown", (e) => { if (e.key === "Enter") guard("images", showImages); });
  on("clear", "clear", async () => { if (state.current) clearMask(state.current); });
  on("toggle", "toggle", async () => {
    state.original = !state.original;
    $("toggle").textContent = state.original ? "Toggle edited" : "Toggle original";
    await showImages();
  });
  $("highlight").addEventListener("change", () => guard("show matches", showImages));
  on("copy", "copy", async () => {
    state.request.object = selection("object to copy");
    await repaintRequest();
    say(`copied the object of image ${state.request.object[0]}`);
  });
  on("paste", "paste", async () => {
    if (!state.request.object) throw new Error("Copy an object first");
    state.request.paste = selection("place to paste");
    await repaintRequest();
    say(`pasted into image ${state.request.paste[0]}`);
  });
  on("addctx", "context", async () => {
    const [number, url] = selection("context region");
    state.request.key = [...state.request.key.filter(([n]) => n !== number), [number, url]];
    await repaintRequest();
    say(`context: ${state.request.key.length} region(s)`);
  });
  on("search", "search", () => search("context"));
  on("match", "match", () => search("selection"));
  on("zero", "zero", () => run("zero"));
  on("execute", "execute", () => run("edit"));
  on("erase", "erase", () => run("erase"));
  $("layer").addEventListener("change", () => guard("paste", repaintRequest));
  on("undo", "undo", async () => {
    const out = await api("/api/undo", {});
    await showHistory(out.history);
    await showImages();
    say("undid the last edit");
  });
  on("revert", "revert", async () => {
    const out = await api("/api/revert", {});
    await showHistory(out.history);
    await showImages();
    say("reverted to the original model");
  });
  on("save", "save", async () => {
    const name = $("savename").value.trim();
    if (!name) throw new Error("give a name to save as");
    const request = requestJSON();
    const out = await api("/api/save", { name, request, kind: kindOf(request), settings: fileSettings() });
    await refreshFiles();
    $("loadname").value = out.saved;
    say(`saved ${out.saved}.json in the work folder`);
  });
  on("downloadjson", "download", async () => {
    const request = requestJSON();
    if (!Object.keys(request).length) throw new Error("nothing to download: paint a request first");
    download(`${$("savename").value.trim() || "edit"}.json`,
             JSON.stringify({ ...request, jaxrewrite: fileSettings() }, null, 1));
  });
  on("load", "load", async () => {
    const name = $("loadname").value;
    if (!name) throw new Error("no saved edits yet");
    await applyLoaded(await api("/api/load", { name }), name);
  });
  $("upload").addEventListener("change", () => guard("open file", async () => {
    const file = $("upload").files[0];
    if (!file) return;
    let content;
    try { content = JSON.parse(await file.text()); } catch (e) { throw new Error(`${file.name} is not JSON`); }
    await applyLoaded(await api("/api/load", { content }), file.name);
    $("upload").value = "";
  }));
  await showImages();
  say(`ready: paint an object, Copy, paint where it goes, Paste, add context regions, Execute`);
  document.body.dataset.ready = "1";
}

init().catch((e) => say(`cannot start: ${e.message}`, true));
