// A 2-D map of up to a few hundred thousand points on a plain <canvas> (no WebGL, no network):
// wheel to zoom, drag to pan, Box or Lasso to select, hover for the image's thumbnail, click to query.
// Data arrives from ui/scatter_map.py; every text from the dataset is set with textContent, never as HTML.

function decode(b64, Type) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Type(bytes.buffer);
}

function encodeBits(mask) {
  // One bit per point (little-endian within a byte), base64: 60,000 points cross as 10 KB.
  const bits = new Uint8Array(Math.ceil(mask.length / 8));
  for (let i = 0; i < mask.length; i++) if (mask[i]) bits[i >> 3] |= 1 << (i & 7);
  let bin = "";
  for (let i = 0; i < bits.length; i += 8192) bin += String.fromCharCode.apply(null, bits.subarray(i, i + 8192));
  return btoa(bin);
}

function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function insidePolygon(x, y, poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function button(label, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.title = title;
  return b;
}

function build(root) {
  const host = document.createElement("div");
  host.className = "tlx-map";
  const bar = document.createElement("div");
  bar.className = "tlx-bar";
  const modes = {};
  for (const [mode, label, title] of [
    ["pan", "Pan", "Drag to move the map; the wheel zooms"],
    ["box", "Box select", "Drag a rectangle to select the images in it"],
    ["lasso", "Lasso select", "Draw around the images to select"],
  ]) {
    modes[mode] = button(label, title);
    modes[mode].dataset.mode = mode;
    bar.appendChild(modes[mode]);
  }
  const reset = button("Reset view", "Show every point");
  const clear = button("Clear selection", "Forget the selection");
  bar.append(reset, clear);
  const info = document.createElement("span");
  info.className = "tlx-info";
  bar.appendChild(info);
  const stage = document.createElement("div");
  stage.className = "tlx-stage";
  const base = document.createElement("canvas");
  const overlay = document.createElement("canvas");
  overlay.className = "tlx-overlay";
  const tip = document.createElement("div");
  tip.className = "tlx-tip";
  const thumb = document.createElement("div");
  thumb.className = "tlx-thumb";
  const text = document.createElement("div");
  text.className = "tlx-text";
  tip.append(thumb, text);
  stage.append(base, overlay, tip);
  const legend = document.createElement("div");
  legend.className = "tlx-legend";
  host.append(bar, stage, legend);
  root.appendChild(host);
  return { host, modes, reset, clear, info, stage, base, overlay, tip, thumb, text, legend };
}

function load(st, data) {
  const qx = decode(data.x, Uint16Array), qy = decode(data.y, Uint16Array);
  const [x0, x1, y0, y1] = data.bounds;
  const n = qx.length;
  const xs = new Float32Array(n), ys = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    xs[i] = x0 + (qx[i] / 65535) * (x1 - x0);
    ys[i] = y0 + (qy[i] / 65535) * (y1 - y0);
  }
  st.n = n;
  st.xs = xs;
  st.ys = ys;
  st.colour = decode(data.colour, Uint8Array);
  st.label = decode(data.label, Uint8Array);
  st.pred = decode(data.pred, Uint8Array);
  st.score = data.score ? decode(data.score, Uint8Array) : null;
  st.shown = decode(data.shown, Uint8Array);
  st.palette = data.palette.map(hexToRgb);
  st.data = data;
  // Draw order: by priority (higher on top), shuffled within a priority so no class hides another.
  const priority = decode(data.priority, Uint8Array);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let seed = 12345;
  for (let i = n - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const j = seed % (i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  st.order = Array.from(order).sort((a, b) => priority[a] - priority[b]);
  // A uniform grid over the data for hover lookups.
  const G = 256;
  st.grid = { G, x0, y0, w: (x1 - x0) || 1, h: (y1 - y0) || 1, cells: new Map() };
  for (let i = 0; i < n; i++) {
    const gx = Math.min(G - 1, Math.floor(((xs[i] - x0) / st.grid.w) * G));
    const gy = Math.min(G - 1, Math.floor(((ys[i] - y0) / st.grid.h) * G));
    const k = gy * G + gx;
    const cell = st.grid.cells.get(k);
    if (cell) cell.push(i);
    else st.grid.cells.set(k, [i]);
  }
}

function whereIs(st, i) {
  for (const s of st.data.splits) {
    if (i >= s.start && i < s.start + s.count) return [s.name, i - s.start];
  }
  return [null, -1];
}

export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  let ui = parentElement.__tlx;
  if (!ui) {
    ui = build(parentElement);
    ui.st = { view: null, mode: "pan", selection: null, hover: -1 };
    parentElement.__tlx = ui;
  }
  const st = ui.st;
  if (st.key !== data.key) {
    load(st, data);
    st.key = data.key;
    if (st.viewKey !== data.view_key) {
      st.view = null;
      st.selection = data.selection || null;
      st.viewKey = data.view_key;
    }
  }
  const dpr = window.devicePixelRatio || 1;
  const height = data.height || 560;

  function fit() {
    const W = ui.stage.clientWidth || 800;
    const [x0, x1, y0, y1] = data.bounds;
    const scale = 0.94 * Math.min(W / ((x1 - x0) || 1), height / ((y1 - y0) || 1));
    st.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, scale, scale0: scale };
  }
  const toScreen = (x, y, W) => [(x - st.view.cx) * st.view.scale + W / 2, height / 2 - (y - st.view.cy) * st.view.scale];
  const toData = (px, py, W) => [(px - W / 2) / st.view.scale + st.view.cx, st.view.cy - (py - height / 2) / st.view.scale];

  function selectedMask() {
    if (!st.selection) return null;
    const poly = st.selection.points;
    const mask = new Uint8Array(st.n);
    let count = 0;
    for (let i = 0; i < st.n; i++) {
      if (st.shown[i] && insidePolygon(st.xs[i], st.ys[i], poly)) {
        mask[i] = 1;
        count++;
      }
    }
    st.selectedCount = count;
    return mask;
  }

  function drawBase() {
    const started = performance.now();
    const W = ui.stage.clientWidth || 800;
    if (!st.view) fit();
    for (const c of [ui.base, ui.overlay]) {
      c.width = Math.round(W * dpr);
      c.height = Math.round(height * dpr);
      c.style.width = W + "px";
      c.style.height = height + "px";
    }
    const ctx = ui.base.getContext("2d");
    const img = ctx.createImageData(ui.base.width, ui.base.height);
    const px = new Uint32Array(img.data.buffer);
    px.fill(0xffffffff);
    const mask = st.mask;
    const zoom = st.view.scale / st.view.scale0;
    const r = Math.max(2, Math.min(6, Math.round(dpr * (1.6 + Math.log2(Math.max(zoom, 1)) * 0.6))));
    const cw = ui.base.width, ch = ui.base.height;
    const packed = st.palette.map(([R, G, B]) => (255 << 24) | (B << 16) | (G << 8) | R);
    const faded = st.palette.map(([R, G, B]) => (255 << 24) | ((B + 3 * 255) >> 2 << 16) | ((G + 3 * 255) >> 2 << 8) | ((R + 3 * 255) >> 2));
    for (const i of st.order) {
      if (!st.shown[i]) continue;
      const [sx, sy] = toScreen(st.xs[i], st.ys[i], W);
      const x = Math.round(sx * dpr), y = Math.round(sy * dpr);
      if (x < -r || y < -r || x >= cw + r || y >= ch + r) continue;
      const colour = mask && !mask[i] ? faded[st.colour[i]] : packed[st.colour[i]];
      for (let dy = -r + 1; dy < r; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= ch) continue;
        for (let dx = -r + 1; dx < r; dx++) {
          const xx = x + dx;
          if (xx >= 0 && xx < cw) px[yy * cw + xx] = colour;
        }
      }
    }
    ctx.putImageData(img, 0, 0);
    drawOverlay();
    ui.host.dataset.drawMs = (performance.now() - started).toFixed(1); // read by bench/map_view.py
  }

  function drawOverlay(path) {
    const W = ui.stage.clientWidth || 800;
    const ctx = ui.overlay.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, height);
    const poly = path || (st.selection && st.selection.points.map(([x, y]) => toScreen(x, y, W)));
    if (poly && poly.length > 1) {
      ctx.beginPath();
      ctx.moveTo(poly[0][0], poly[0][1]);
      for (const [x, y] of poly.slice(1)) ctx.lineTo(x, y);
      ctx.closePath();
      ctx.fillStyle = "rgba(255, 75, 75, 0.06)";
      ctx.fill();
      ctx.strokeStyle = "#ff4b4b";
      ctx.lineWidth = 1.5;
      ctx.setLineDash(path ? [4, 3] : []);
      ctx.stroke();
    }
    if (st.hover >= 0) {
      const [sx, sy] = toScreen(st.xs[st.hover], st.ys[st.hover], W);
      ctx.setLineDash([]);
      ctx.beginPath();
      ctx.arc(sx, sy, 6, 0, 2 * Math.PI);
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 2;
      ctx.stroke();
    }
    const shown = st.shownCount;
    ui.info.textContent = `${shown.toLocaleString()} points` + (st.selection ? ` · ${st.selectedCount.toLocaleString()} selected` : "") + ` · zoom ${(st.view.scale / st.view.scale0).toFixed(1)}x`;
  }

  function nearest(px, py) {
    const W = ui.stage.clientWidth || 800;
    const [x, y] = toData(px, py, W);
    const g = st.grid;
    const radius = 8 / st.view.scale;
    const gx0 = Math.max(0, Math.floor(((x - radius - g.x0) / g.w) * g.G)), gx1 = Math.min(g.G - 1, Math.floor(((x + radius - g.x0) / g.w) * g.G));
    const gy0 = Math.max(0, Math.floor(((y - radius - g.y0) / g.h) * g.G)), gy1 = Math.min(g.G - 1, Math.floor(((y + radius - g.y0) / g.h) * g.G));
    let best = -1, bestD = radius * radius;
    for (let gy = gy0; gy <= gy1; gy++) {
      for (let gx = gx0; gx <= gx1; gx++) {
        const cell = g.cells.get(gy * g.G + gx);
        if (!cell) continue;
        for (const i of cell) {
          if (!st.shown[i]) continue;
          const d = (st.xs[i] - x) ** 2 + (st.ys[i] - y) ** 2;
          if (d <= bestD) {
            bestD = d;
            best = i;
          }
        }
      }
    }
    return best;
  }

  function showTip(i, px, py) {
    st.hover = i;
    drawOverlay();
    if (i < 0) {
      ui.tip.style.display = "none";
      return;
    }
    const [split, index] = whereIs(st, i);
    const s = data.sprites;
    const classes = data.classes;
    let line = `${split} #${index} · ${classes[st.label[i]]}`;
    if (st.pred[i] !== 255) line += ` → ${classes[st.pred[i]]}`;
    if (st.score && st.score[i] !== 255) line += ` · issue score ${(st.score[i] / 254).toFixed(2)}`;
    ui.text.textContent = line;
    ui.tip.dataset.point = `${split}:${index}`;
    if (s) {
      const sheet = Math.floor(index / (s.per_row * s.per_row)), pos = index % (s.per_row * s.per_row);
      const url = `${s.base}/${split}-${String(sheet).padStart(4, "0")}.jpg`;
      const z = 96 / s.side;
      ui.thumb.style.display = "block";
      ui.tip.dataset.ready = "0";
      const token = (st.tipToken = (st.tipToken || 0) + 1);
      const pre = new Image();
      pre.onload = () => {
        if (st.tipToken !== token) return;
        ui.thumb.style.backgroundImage = `url("${url}")`;
        ui.thumb.style.backgroundSize = `${s.per_row * s.side * z}px ${s.per_row * s.side * z}px`;
        ui.thumb.style.backgroundPosition = `-${(pos % s.per_row) * s.side * z}px -${Math.floor(pos / s.per_row) * s.side * z}px`;
        ui.tip.dataset.ready = "1";
      };
      pre.src = url;
    } else {
      ui.thumb.style.display = "none";
      ui.tip.dataset.ready = "1";
    }
    const W = ui.stage.clientWidth || 800;
    ui.tip.style.display = "block";
    ui.tip.style.left = Math.min(px + 14, W - 190) + "px";
    ui.tip.style.top = Math.min(py + 14, height - 150) + "px";
  }

  function setMode(mode) {
    st.mode = mode;
    for (const [m, b] of Object.entries(ui.modes)) b.classList.toggle("active", m === mode);
    ui.overlay.style.cursor = mode === "pan" ? "grab" : "crosshair";
  }

  function refresh() {
    st.shownCount = st.shown.reduce((a, b) => a + b, 0);
    st.mask = selectedMask();
    drawBase();
    ui.legend.replaceChildren();
    for (const [name, idx] of data.legend) {
      const item = document.createElement("span");
      const dot = document.createElement("i");
      dot.style.background = data.palette[idx];
      item.append(dot, document.createTextNode(name));
      ui.legend.appendChild(item);
    }
  }

  const ctrl = new AbortController();
  const opts = { signal: ctrl.signal };
  let drag = null;
  const pos = (e) => {
    const r = ui.overlay.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };
  ui.overlay.addEventListener("wheel", (e) => {
    e.preventDefault();
    const W = ui.stage.clientWidth || 800;
    const [px, py] = pos(e);
    const [x, y] = toData(px, py, W);
    const f = Math.exp(-e.deltaY * 0.0015);
    st.view.scale = Math.min(st.view.scale0 * 400, Math.max(st.view.scale0 * 0.5, st.view.scale * f));
    st.view.cx = x - (px - W / 2) / st.view.scale;
    st.view.cy = y + (py - height / 2) / st.view.scale;
    showTip(-1);
    drawBase();
  }, { ...opts, passive: false });
  ui.overlay.addEventListener("mousedown", (e) => {
    const [px, py] = pos(e);
    drag = { x: px, y: py, moved: false, path: [[px, py]], view: { ...st.view } };
    showTip(-1);
  }, opts);
  window.addEventListener("mousemove", (e) => {
    const [px, py] = pos(e);
    if (!drag) {
      const W = ui.stage.clientWidth || 800;
      if (px < 0 || py < 0 || px > W || py > height) return;
      const i = nearest(px, py);
      if (i !== st.hover) showTip(i, px, py);
      return;
    }
    if (Math.abs(px - drag.x) + Math.abs(py - drag.y) > 3) drag.moved = true;
    if (st.mode === "pan") {
      st.view.cx = drag.view.cx - (px - drag.x) / st.view.scale;
      st.view.cy = drag.view.cy + (py - drag.y) / st.view.scale;
      if (!st.panFrame) {
        st.panFrame = requestAnimationFrame(() => {
          st.panFrame = 0;
          drawBase();
        });
      }
    } else if (st.mode === "box") {
      drag.path = [[drag.x, drag.y], [px, drag.y], [px, py], [drag.x, py]];
      drawOverlay(drag.path);
    } else {
      drag.path.push([px, py]);
      drawOverlay(drag.path);
    }
  }, opts);
  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (!d.moved) {
      const [px, py] = pos(e);
      const i = nearest(px, py);
      if (i >= 0) {
        const [split, index] = whereIs(st, i);
        setTriggerValue("clicked", { split, index });
      }
      return;
    }
    if (st.mode === "pan") return;
    const W = ui.stage.clientWidth || 800;
    const points = d.path.map(([x, y]) => toData(x, y, W));
    if (points.length < 3) return;
    st.selection = { shape: st.mode, points };
    st.mask = selectedMask();
    drawBase();
    setStateValue("selection", { ...st.selection, n: st.n, count: st.selectedCount, bits: encodeBits(st.mask) });
  }, opts);
  ui.overlay.addEventListener("mouseleave", () => showTip(-1), opts);
  ui.overlay.addEventListener("dblclick", () => {
    fit();
    drawBase();
  }, opts);
  for (const [m, b] of Object.entries(ui.modes)) b.addEventListener("click", () => setMode(m), opts);
  ui.reset.addEventListener("click", () => {
    fit();
    drawBase();
  }, opts);
  ui.clear.addEventListener("click", () => {
    st.selection = null;
    st.mask = null;
    drawBase();
    setStateValue("selection", null);
  }, opts);
  const resize = new ResizeObserver(() => drawBase());
  resize.observe(ui.stage);

  ui.stage.style.height = height + "px";
  setMode(st.mode);
  refresh();
  return () => {
    ctrl.abort();
    resize.disconnect();
  };
}
