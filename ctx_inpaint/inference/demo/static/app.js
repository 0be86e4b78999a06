// ctx-inpaint demo page: load a photo, paint the hole on a canvas at the photo's own resolution, send photo + mask
// to POST /api/inpaint three times (the model, OpenCV Telea, OpenCV Navier-Stokes) and show each result.
// No library and nothing from elsewhere: this file, style.css and the server's API.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const HOLE = "rgb(255, 45, 85)";
  const STEPS = [
    ["model", null],
    ["telea", "OpenCV Telea"],
    ["ns", "OpenCV Navier-Stokes"],
  ];
  const photoCanvas = $("photo-canvas");
  const maskCanvas = $("mask-canvas");
  const photoCtx = photoCanvas.getContext("2d");
  const maskCtx = maskCanvas.getContext("2d", { willReadFrequently: true });
  const state = {
    photo: null, // {blob, name, width, height}
    ops: [], // what the hole is made of, in order: {type: "stroke", width, points} or {type: "mask", canvas}
    busy: false,
    loadSeq: 0, // the latest photo choice wins when loads overlap
    urls: [],
  };

  // ---- status ---------------------------------------------------------------------------------------------------
  function setStatus(text, kind = "", spinning = false) {
    $("status").className = kind;
    $("status-text").textContent = text;
    $("spinner").hidden = !spinning;
  }

  async function detail(resp) {
    try {
      const body = await resp.json();
      if (typeof body.detail === "string") return body.detail;
    } catch (_) {
      // not JSON: fall through
    }
    return `${resp.status} ${resp.statusText}`;
  }

  async function getJSON(path) {
    const resp = await fetch(path);
    if (!resp.ok) throw new Error(await detail(resp));
    return resp.json();
  }

  function setBusy(busy) {
    state.busy = busy;
    for (const id of ["run", "photo-file", "example-select", "mask-file", "undo", "clear", "model-select"]) {
      $(id).disabled = busy;
    }
    document.body.dataset.busy = busy ? "1" : "";
  }

  // ---- photo ----------------------------------------------------------------------------------------------------
  async function loadPhoto(blob, name, seq) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(blob, { imageOrientation: "from-image" });
    } catch (_) {
      if (seq === state.loadSeq) {
        setStatus(`${name}: not an image this browser can show; expected a PNG, JPEG, WebP, GIF or BMP file`, "error");
      }
      return;
    }
    if (seq !== state.loadSeq) {
      bitmap.close();
      return;
    }
    const { width, height } = bitmap;
    for (const canvas of [photoCanvas, maskCanvas]) {
      canvas.width = width;
      canvas.height = height;
    }
    photoCtx.drawImage(bitmap, 0, 0);
    bitmap.close();
    state.photo = { blob, name, width, height };
    state.ops = [];
    redrawMask();
    clearResults();
    $("photo-info").textContent =
      `${name}: ${width}×${height} px. Paint the hole in red (white pixels of an uploaded mask count as hole).`;
    document.body.dataset.photo = name;
    setStatus(`Loaded ${name} (${width}×${height}). Paint the hole, then press Inpaint.`);
  }

  async function loadExample(name) {
    if (!name) return;
    const seq = ++state.loadSeq;
    setStatus(`Loading example ${name}…`, "", true);
    try {
      const resp = await fetch(`/api/examples/${encodeURIComponent(name)}`);
      if (!resp.ok) throw new Error(await detail(resp));
      await loadPhoto(await resp.blob(), `${name}.png`, seq);
    } catch (err) {
      if (seq === state.loadSeq) setStatus(`Example ${name}: ${err.message}`, "error");
    }
  }

  // ---- the hole -------------------------------------------------------------------------------------------------
  function brushWidth() {
    // The slider is in screen pixels; the mask is at the photo's resolution.
    const rect = maskCanvas.getBoundingClientRect();
    return Number($("brush-size").value) * (rect.width ? maskCanvas.width / rect.width : 1);
  }

  function toImage(ev) {
    const rect = maskCanvas.getBoundingClientRect();
    return [
      ((ev.clientX - rect.left) * maskCanvas.width) / rect.width,
      ((ev.clientY - rect.top) * maskCanvas.height) / rect.height,
    ];
  }

  function drawSegment(stroke, from) {
    const pts = stroke.points;
    maskCtx.fillStyle = HOLE;
    maskCtx.strokeStyle = HOLE;
    maskCtx.lineWidth = stroke.width;
    maskCtx.lineCap = "round";
    maskCtx.lineJoin = "round";
    if (pts.length === 1 || from === 0) {
      maskCtx.beginPath();
      maskCtx.arc(pts[0][0], pts[0][1], stroke.width / 2, 0, 2 * Math.PI);
      maskCtx.fill();
    }
    if (pts.length > 1) {
      maskCtx.beginPath();
      maskCtx.moveTo(...pts[Math.max(from - 1, 0)]);
      for (let i = Math.max(from, 1); i < pts.length; i++) maskCtx.lineTo(...pts[i]);
      maskCtx.stroke();
    }
  }

  function redrawMask() {
    maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
    for (const op of state.ops) {
      if (op.type === "mask") maskCtx.drawImage(op.canvas, 0, 0);
      else drawSegment(op, 0);
    }
  }

  let stroke = null;
  maskCanvas.addEventListener("pointerdown", (ev) => {
    if (!state.photo || state.busy || ev.button !== 0) return;
    ev.preventDefault();
    maskCanvas.setPointerCapture(ev.pointerId);
    stroke = { type: "stroke", width: brushWidth(), points: [toImage(ev)] };
    state.ops.push(stroke);
    drawSegment(stroke, 0);
  });
  maskCanvas.addEventListener("pointermove", (ev) => {
    if (!stroke) return;
    stroke.points.push(toImage(ev));
    drawSegment(stroke, stroke.points.length - 1);
  });
  for (const type of ["pointerup", "pointercancel"]) {
    maskCanvas.addEventListener(type, () => {
      stroke = null;
    });
  }

  function undo() {
    if (state.busy || !state.ops.length) return;
    state.ops.pop();
    redrawMask();
  }

  function clearMask() {
    if (state.busy) return;
    state.ops = [];
    redrawMask();
  }

  async function loadMask(file) {
    if (!state.photo) {
      setStatus("Choose a photo before its mask.", "error");
      return;
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (_) {
      setStatus(`mask: ${file.name} is not an image this browser can show; expected a PNG or JPEG file`, "error");
      return;
    }
    const { width, height } = state.photo;
    if (bitmap.width !== width || bitmap.height !== height) {
      setStatus(
        `mask: ${bitmap.width}×${bitmap.height} differs from the photo's ${width}×${height}; expected a mask of the photo's size`,
        "error",
      );
      bitmap.close();
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const image = ctx.getImageData(0, 0, width, height);
    const d = image.data;
    let holes = 0;
    for (let i = 0; i < d.length; i += 4) {
      // The server's rule for mask files: grey level (ITU-R 601-2, as PIL's "L") > 127 is a hole.
      const hole = (d[i] * 299 + d[i + 1] * 587 + d[i + 2] * 114) / 1000 > 127;
      d[i] = 255;
      d[i + 1] = 45;
      d[i + 2] = 85;
      d[i + 3] = hole ? 255 : 0;
      holes += hole ? 1 : 0;
    }
    ctx.putImageData(image, 0, 0);
    state.ops.push({ type: "mask", canvas });
    redrawMask();
    setStatus(`Mask ${file.name}: ${holes} hole pixels. Paint more, or press Inpaint.`);
  }

  // The mask sent to the server: white hole (every painted pixel at least half covered), black elsewhere.
  function binaryMask() {
    const { width, height } = maskCanvas;
    const src = maskCtx.getImageData(0, 0, width, height).data;
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(width, height);
    const d = image.data;
    let holes = 0;
    for (let i = 0; i < d.length; i += 4) {
      const v = src[i + 3] > 127 ? 255 : 0;
      d[i] = d[i + 1] = d[i + 2] = v;
      d[i + 3] = 255;
      if (v) holes++;
    }
    ctx.putImageData(image, 0, 0);
    return { canvas, holes };
  }

  // ---- results --------------------------------------------------------------------------------------------------
  function clearResults() {
    for (const url of state.urls) URL.revokeObjectURL(url);
    state.urls = [];
    for (const fig of document.querySelectorAll(".result")) {
      const img = fig.querySelector("img");
      img.removeAttribute("src");
      delete img.dataset.ready;
      fig.querySelector(".download").hidden = true;
      fig.querySelector(".time").textContent = "";
    }
  }

  function showResult(method, blob, seconds, title, fileName) {
    const fig = $(`result-${method}`);
    const url = URL.createObjectURL(blob);
    state.urls.push(url);
    const img = fig.querySelector("img");
    img.onload = () => {
      img.dataset.ready = "1";
    };
    img.src = url;
    fig.querySelector(".title").textContent = title;
    fig.querySelector(".time").textContent = seconds ? `${Number(seconds).toFixed(2)} s` : "";
    const link = fig.querySelector(".download");
    link.href = url;
    link.download = fileName;
    link.hidden = false;
  }

  async function run() {
    if (state.busy) return;
    if (!state.photo) {
      setStatus("Choose a photo first: upload one or pick an example.", "error");
      return;
    }
    const { canvas, holes } = binaryMask();
    if (!holes) {
      setStatus("Paint the hole first: drag over the photo (or upload a mask image).", "error");
      return;
    }
    const maskBlob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const model = $("model-select").value;
    const stem = state.photo.name.replace(/\.[^.]*$/, "") || "photo";
    setBusy(true);
    clearResults();
    const start = performance.now();
    let label = "";
    const tick = () => setStatus(`${label} ${((performance.now() - start) / 1000).toFixed(1)} s`, "", true);
    const timer = setInterval(tick, 100);
    try {
      for (const [i, [method, title]] of STEPS.entries()) {
        const name = title || `Model: ${model}`;
        label = `Running ${name} (${i + 1}/${STEPS.length})…`;
        tick();
        const form = new FormData();
        form.append("image", state.photo.blob, state.photo.name);
        form.append("mask", maskBlob, "mask.png");
        form.append("model", model);
        form.append("method", method);
        let resp;
        try {
          resp = await fetch("/api/inpaint", { method: "POST", body: form });
        } catch (err) {
          throw new Error(`could not reach the server (${err.message})`);
        }
        if (!resp.ok) throw new Error(await detail(resp));
        const blob = await resp.blob();
        showResult(method, blob, resp.headers.get("X-Inpaint-Seconds"), name,
          `${stem}_${method === "model" ? model : method}.png`);
      }
      const share = ((100 * holes) / (state.photo.width * state.photo.height)).toFixed(1);
      setStatus(
        `Done in ${((performance.now() - start) / 1000).toFixed(1)} s: ${holes} hole pixels (${share}% of the photo).`,
        "done",
      );
      document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
    } catch (err) {
      setStatus(err.message, "error");
    } finally {
      clearInterval(timer);
      setBusy(false);
    }
  }

  // ---- wiring ---------------------------------------------------------------------------------------------------
  $("photo-file").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    $("example-select").value = "";
    loadPhoto(file, file.name, ++state.loadSeq);
  });
  $("example-select").addEventListener("change", (ev) => loadExample(ev.target.value));
  $("mask-file").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    if (file) loadMask(file);
    ev.target.value = "";
  });
  $("brush-size").addEventListener("input", (ev) => {
    $("brush-size-value").textContent = `${ev.target.value} px`;
  });
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clearMask);
  $("run").addEventListener("click", run);
  document.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "z") {
      ev.preventDefault();
      undo();
    }
  });

  async function init() {
    try {
      const [models, examples] = await Promise.all([getJSON("/api/models"), getJSON("/api/examples")]);
      const select = $("model-select");
      for (const m of models.models) {
        const option = new Option(m.name, m.name, m.default, m.default);
        option.title = m.description;
        select.add(option);
      }
      const picker = $("example-select");
      for (const e of examples.examples) picker.add(new Option(e.title, e.name));
      document.body.dataset.ready = "1";
      setStatus("Upload a photo or pick an example.");
      if (examples.examples.length && !state.loadSeq) {
        picker.value = examples.examples[0].name;
        loadExample(picker.value);
      }
    } catch (err) {
      setStatus(`Could not reach the server: ${err.message}`, "error");
    }
  }

  // For scripts and tests: the mask the next run sends, as a PNG data URL.
  window.ctxDemo = { binaryMaskURL: () => binaryMask().canvas.toDataURL("image/png"), state };
  init();
})();
