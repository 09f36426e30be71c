// A 2-D map of up to a few million points drawn into a canvas's pixel buffer (no WebGL, no network beyond the app):
// wheel to zoom, drag to pan, Box or Lasso to select, hover for the image's thumbnail, click to query.
// Data arrives from ui/scatter_map.py: a small JSON description, and the points as two binary static files fetched
// once each (kept below for the page's life). Every text from the dataset is set with textContent, never as HTML.
//
// Why pixels and not WebGL: in a browser without a GPU (headless Chromium's SwiftShader) WebGL drew a million
// points in 400-970 ms a frame; this loop draws them in 23-32 ms on the same 2 cores (docs/maps.md).

const BLOBS = new Map(); // url -> Promise<ArrayBuffer>, shared by every map on the page

function decodeB64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

function fetchPart(part) {
  if (!part.url) return Promise.resolve(decodeB64(part.b64));
  if (!BLOBS.has(part.url)) {
    const pending = fetch(part.url).then((r) => {
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return r.arrayBuffer();
    }).then((buf) => {
      if (buf.byteLength !== part.bytes) throw new Error(`got ${buf.byteLength} bytes of ${part.bytes}`);
      return buf;
    });
    pending.catch(() => BLOBS.delete(part.url));
    BLOBS.set(part.url, pending);
  }
  return BLOBS.get(part.url);
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
  host.dataset.renderer = "2d-canvas";
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
  const density = button("Density", "Shade points darker where many overlap");
  const labels = button("Cluster labels", "Name each group of points by its majority class, with its purity");
  bar.append(reset, clear, density, labels);
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
  return { host, modes, reset, clear, density, labels, info, stage, base, overlay, tip, thumb, text, legend };
}

function load(st, data, xyBuf, attrBuf) {
  const n = data.n;
  const xy = new Float32Array(xyBuf);
  st.n = n;
  st.xs = xy.subarray(0, n);
  st.ys = xy.subarray(n, 2 * n);
  const attr = new Uint8Array(attrBuf);
  st.colour = attr.subarray(0, n);
  const priority = attr.subarray(n, 2 * n);
  st.label = attr.subarray(2 * n, 3 * n);
  st.pred = attr.subarray(3 * n, 4 * n);
  st.score = data.has_score ? attr.subarray(4 * n, 5 * n) : null;
  st.shown = attr.subarray(5 * n, 6 * n);
  st.palette = data.palette.map(hexToRgb);
  st.data = data;
  let shownCount = 0;
  for (let i = 0; i < n; i++) shownCount += st.shown[i];
  st.shownCount = shownCount;
  // Draw order: by priority (higher on top), then by where the point is on the map (a 256 x 256 grid, so a frame
  // writes pixels near each other in turn: twice as fast at a million points), shuffled within a cell so no class
  // hides another. One counting sort over (priority, cell), stable over a shuffled start.
  const [x0, x1, y0, y1] = data.bounds;
  const shuffled = new Uint32Array(n);
  for (let i = 0; i < n; i++) shuffled[i] = i;
  let seed = 12345;
  for (let i = n - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const j = seed % (i + 1);
    const t = shuffled[i];
    shuffled[i] = shuffled[j];
    shuffled[j] = t;
  }
  const rank = new Uint8Array(256);
  for (let i = 0; i < n; i++) rank[priority[i]] = 1;
  let ranks = 0;
  for (let p = 0; p < 256; p++) rank[p] = rank[p] ? ranks++ : 0;
  const S = 256, sw = x1 - x0 || 1, sh = y1 - y0 || 1;
  const bucket = new Uint32Array(n);
  const starts = new Uint32Array(ranks * S * S + 1);
  for (let i = 0; i < n; i++) {
    const gx = Math.min(S - 1, Math.max(0, Math.floor(((st.xs[i] - x0) / sw) * S)));
    const gy = Math.min(S - 1, Math.max(0, Math.floor(((y1 - st.ys[i]) / sh) * S)));
    bucket[i] = rank[priority[i]] * S * S + gy * S + gx;
    starts[bucket[i] + 1]++;
  }
  for (let b = 0; b < ranks * S * S; b++) starts[b + 1] += starts[b];
  const order = new Uint32Array(n);
  for (let k = 0; k < n; k++) {
    const i = shuffled[k];
    order[starts[bucket[i]]++] = i;
  }
  // The shown points copied out in draw order, so a frame reads memory front to back (a million random reads into
  // four arrays cost more than the drawing itself).
  let m = 0;
  for (let k = 0; k < n; k++) m += st.shown[order[k]];
  st.draw = { n: m, x: new Float32Array(m), y: new Float32Array(m), colour: new Uint8Array(m), index: new Uint32Array(m) };
  for (let k = 0, j = 0; k < n; k++) {
    const i = order[k];
    if (!st.shown[i]) continue;
    st.draw.x[j] = st.xs[i];
    st.draw.y[j] = st.ys[i];
    st.draw.colour[j] = st.colour[i];
    st.draw.index[j++] = i;
  }
  // A uniform grid over the data for hover lookups, as flat arrays (cell k holds items[first[k]..first[k+1])).
  const G = n > 200000 ? 1024 : 256;
  const grid = { G, x0, y0, w: x1 - x0 || 1, h: y1 - y0 || 1 };
  const cellOf = new Uint32Array(n);
  const first = new Uint32Array(G * G + 1);
  for (let i = 0; i < n; i++) {
    const gx = Math.min(G - 1, Math.max(0, Math.floor(((st.xs[i] - x0) / grid.w) * G)));
    const gy = Math.min(G - 1, Math.max(0, Math.floor(((st.ys[i] - y0) / grid.h) * G)));
    cellOf[i] = gy * G + gx;
    first[cellOf[i] + 1]++;
  }
  for (let k = 0; k < G * G; k++) first[k + 1] += first[k];
  const fill = first.slice(0, G * G);
  const items = new Uint32Array(n);
  for (let i = 0; i < n; i++) items[fill[cellOf[i]]++] = i;
  grid.first = first;
  grid.items = items;
  st.grid = grid;
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
    ui.st = { view: null, mode: "pan", selection: null, hover: -1, density: data.n > 100000, labels: true };
    parentElement.__tlx = ui;
  }
  const st = ui.st;
  let alive = true;
  const dpr = window.devicePixelRatio || 1;
  const height = data.height || 560;
  ui.stage.style.height = height + "px";

  function fit() {
    const W = ui.stage.clientWidth || 800;
    const [x0, x1, y0, y1] = data.bounds;
    const scale = 0.94 * Math.min(W / (x1 - x0 || 1), height / (y1 - y0 || 1));
    st.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, scale, scale0: scale };
  }
  const toScreen = (x, y, W) => [(x - st.view.cx) * st.view.scale + W / 2, height / 2 - (y - st.view.cy) * st.view.scale];
  const toData = (px, py, W) => [(px - W / 2) / st.view.scale + st.view.cx, st.view.cy - (py - height / 2) / st.view.scale];

  function selectedMask() {
    if (!st.selection) return null;
    const poly = st.selection.points;
    const m = poly.length;
    const px = new Float64Array(m), py = new Float64Array(m);
    let bx0 = Infinity, bx1 = -Infinity, by0 = Infinity, by1 = -Infinity;
    for (let k = 0; k < m; k++) {
      px[k] = poly[k][0];
      py[k] = poly[k][1];
      bx0 = Math.min(bx0, px[k]);
      bx1 = Math.max(bx1, px[k]);
      by0 = Math.min(by0, py[k]);
      by1 = Math.max(by1, py[k]);
    }
    const mask = new Uint8Array(st.n);
    let count = 0;
    for (let i = 0; i < st.n; i++) {
      const x = st.xs[i], y = st.ys[i];
      if (!st.shown[i] || x < bx0 || x > bx1 || y < by0 || y > by1) continue;
      let inside = false; // even-odd rule, as lib/analysis/map_view.points_in_polygon
      for (let a = 0, b = m - 1; a < m; b = a++) {
        if (py[a] > y !== py[b] > y && x < ((px[b] - px[a]) * (y - py[a])) / (py[b] - py[a]) + px[a]) inside = !inside;
      }
      if (inside) {
        mask[i] = 1;
        count++;
      }
    }
    st.selectedCount = count;
    return mask;
  }

  function select() {
    // The selection's mask by point (sent to the server) and in draw order (read by every frame).
    st.mask = selectedMask();
    st.drawMask = null;
    if (st.mask) {
      const { index, n } = st.draw;
      st.drawMask = new Uint8Array(n);
      for (let k = 0; k < n; k++) st.drawMask[k] = st.mask[index[k]];
    }
  }

  function drawBase() {
    if (!st.xs) return;
    const started = performance.now();
    const W = ui.stage.clientWidth || 800;
    if (!st.view) fit();
    const cw = Math.round(W * dpr), ch = Math.round(height * dpr);
    for (const c of [ui.base, ui.overlay]) {
      if (c.width !== cw || c.height !== ch) {
        c.width = cw;
        c.height = ch;
      }
      c.style.width = W + "px";
      c.style.height = height + "px";
    }
    const ctx = ui.base.getContext("2d");
    if (!st.img || st.img.width !== cw || st.img.height !== ch) {
      st.img = ctx.createImageData(cw, ch);
      st.count = new Uint16Array(cw * ch);
    }
    const px = new Uint32Array(st.img.data.buffer);
    const count = st.count;
    px.fill(0xffffffff);
    if (st.density) count.fill(0);
    const mask = st.drawMask;
    const zoom = st.view.scale / st.view.scale0;
    // Square points: smaller the more points there are, larger as one zooms in.
    const base = st.n > 400000 ? 1 : st.n > 120000 ? 2 : 3;
    const side = Math.max(1, Math.min(11, Math.round(dpr * (base + Math.log2(Math.max(zoom, 1)) * 1.2))));
    const lo = -(side >> 1);
    const packed = new Uint32Array(st.palette.map(([R, G, B]) => ((255 << 24) | (B << 16) | (G << 8) | R) >>> 0));
    const faded = new Uint32Array(
      st.palette.map(([R, G, B]) => ((255 << 24) | (((B + 3 * 255) >> 2) << 16) | (((G + 3 * 255) >> 2) << 8) | ((R + 3 * 255) >> 2)) >>> 0),
    );
    const sx = st.view.scale * dpr, ox = (W / 2) * dpr - st.view.cx * sx, oy = (height / 2) * dpr + st.view.cy * sx;
    const { x: xs, y: ys, colour, n } = st.draw;
    const density = st.density;
    if (side === 1) {
      for (let k = 0; k < n; k++) {
        const x = Math.round(xs[k] * sx + ox), y = Math.round(oy - ys[k] * sx);
        if (x < 0 || y < 0 || x >= cw || y >= ch) continue;
        const o = y * cw + x;
        px[o] = mask && !mask[k] ? faded[colour[k]] : packed[colour[k]];
        if (density) count[o]++;
      }
    } else {
      for (let k = 0; k < n; k++) {
        const x = Math.round(xs[k] * sx + ox) + lo, y = Math.round(oy - ys[k] * sx) + lo;
        if (x >= cw || y >= ch || x + side <= 0 || y + side <= 0) continue;
        const c = mask && !mask[k] ? faded[colour[k]] : packed[colour[k]];
        const xa = Math.max(0, x), xb = Math.min(cw, x + side), ya = Math.max(0, y), yb = Math.min(ch, y + side);
        for (let yy = ya; yy < yb; yy++) {
          const row = yy * cw;
          for (let xx = xa; xx < xb; xx++) px[row + xx] = c;
          if (density) for (let xx = xa; xx < xb; xx++) count[row + xx]++;
        }
      }
    }
    if (density) {
      // Darker where more points overlap: log of the count, up to 55% darker at 64 or more.
      const lut = new Float32Array(65);
      for (let c = 1; c <= 64; c++) lut[c] = 1 - 0.55 * (Math.log(c) / Math.log(64));
      for (let p = 0; p < px.length; p++) {
        const c = count[p];
        if (c < 2) continue;
        const f = lut[c > 64 ? 64 : c], v = px[p];
        px[p] = (0xff000000 | ((((v >> 16) & 255) * f) << 16) | ((((v >> 8) & 255) * f) << 8) | ((v & 255) * f)) >>> 0;
      }
    }
    ctx.putImageData(st.img, 0, 0);
    // Keep this frame and its view: while the map moves, frames are this one shifted and scaled (see moved()).
    if (!st.frame) st.frame = document.createElement("canvas");
    if (st.frame.width !== cw || st.frame.height !== ch) {
      st.frame.width = cw;
      st.frame.height = ch;
    }
    st.frame.getContext("2d").drawImage(ui.base, 0, 0);
    st.frameView = { ...st.view };
    drawOverlay();
    st.lastFullMs = performance.now() - started;
    ui.host.dataset.drawMs = st.lastFullMs.toFixed(1); // read by bench/map_view.py
    ui.host.dataset.frames = String(Number(ui.host.dataset.frames || 0) + 1);
    ui.host.dataset.fullFrames = String(Number(ui.host.dataset.fullFrames || 0) + 1);
  }

  function quickFrame() {
    // The last full frame moved to the current view (a translation while panning, a scaling while zooming): a
    // few milliseconds at any number of points. Edges it does not cover stay blank until the full frame.
    const started = performance.now();
    const W = ui.stage.clientWidth || 800;
    const f = st.frameView, v = st.view;
    const k = v.scale / f.scale;
    const ox = (W / 2 - (W / 2) * k + (f.cx - v.cx) * v.scale) * dpr;
    const oy = (height / 2 - (height / 2) * k + (v.cy - f.cy) * v.scale) * dpr;
    const ctx = ui.base.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, ui.base.width, ui.base.height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(st.frame, ox, oy, st.frame.width * k, st.frame.height * k);
    drawOverlay();
    ui.host.dataset.quickMs = (performance.now() - started).toFixed(1);
    ui.host.dataset.frames = String(Number(ui.host.dataset.frames || 0) + 1);
  }

  function moved(settled) {
    // After a pan or zoom step: redraw every point if that is quick (under 16 ms last time), else show the last
    // frame moved and redraw every point once the map has been still for 120 ms (or the drag ends: settled).
    clearTimeout(st.settle);
    if (settled || !st.frame || (st.lastFullMs || 0) < 16) {
      if (st.pending) cancelAnimationFrame(st.pending);
      st.pending = 0;
      if (settled) drawBase();
      else st.pending = requestAnimationFrame(() => ((st.pending = 0), alive && drawBase()));
      return;
    }
    if (!st.pending) st.pending = requestAnimationFrame(() => ((st.pending = 0), alive && quickFrame()));
    st.settle = setTimeout(() => alive && drawBase(), 120);
  }

  function drawLabels(ctx, W) {
    if (!st.labels || !data.clusters.length) return;
    ctx.font = "600 12px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.lineJoin = "round";
    const placed = [];
    for (const c of data.clusters) {
      const [sx, sy] = toScreen(c.x, c.y, W);
      if (sx < 0 || sy < 0 || sx > W || sy > height) continue;
      const label = `${c.name} ${Math.round(c.purity * 100)}%`;
      const w = ctx.measureText(label).width + 6;
      if (placed.some(([x, y, pw]) => Math.abs(x - sx) < (w + pw) / 2 && Math.abs(y - sy) < 15)) continue;
      placed.push([sx, sy, w]);
      ctx.strokeStyle = "rgba(255,255,255,0.9)";
      ctx.lineWidth = 4;
      ctx.strokeText(label, sx, sy);
      ctx.fillStyle = "#111";
      ctx.fillText(label, sx, sy);
    }
  }

  function drawOverlay(path) {
    if (!st.view) return;
    const W = ui.stage.clientWidth || 800;
    const ctx = ui.overlay.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, height);
    drawLabels(ctx, W);
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
    ui.info.textContent = `${st.shownCount.toLocaleString()} points` + (st.selection ? ` · ${st.selectedCount.toLocaleString()} selected` : "") + ` · zoom ${(st.view.scale / st.view.scale0).toFixed(1)}x`;
  }

  function nearest(px, py) {
    if (!st.grid) return -1;
    const W = ui.stage.clientWidth || 800;
    const [x, y] = toData(px, py, W);
    const g = st.grid;
    const radius = 8 / st.view.scale;
    const gx0 = Math.max(0, Math.floor(((x - radius - g.x0) / g.w) * g.G)), gx1 = Math.min(g.G - 1, Math.floor(((x + radius - g.x0) / g.w) * g.G));
    const gy0 = Math.max(0, Math.floor(((y - radius - g.y0) / g.h) * g.G)), gy1 = Math.min(g.G - 1, Math.floor(((y + radius - g.y0) / g.h) * g.G));
    let best = -1, bestD = radius * radius;
    for (let gy = gy0; gy <= gy1; gy++) {
      for (let gx = gx0; gx <= gx1; gx++) {
        const k = gy * g.G + gx;
        for (let j = g.first[k]; j < g.first[k + 1]; j++) {
          const i = g.items[j];
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
    ui.density.classList.toggle("active", st.density);
    ui.labels.classList.toggle("active", st.labels);
    ui.labels.disabled = !data.clusters.length;
    ui.overlay.style.cursor = mode === "pan" ? "grab" : "crosshair";
  }

  function refresh() {
    select();
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
  const ready = () => alive && st.key === data.key && st.view;
  const pos = (e) => {
    const r = ui.overlay.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };
  ui.overlay.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (!ready()) return;
    const W = ui.stage.clientWidth || 800;
    const [px, py] = pos(e);
    const [x, y] = toData(px, py, W);
    const f = Math.exp(-e.deltaY * 0.0015);
    st.view.scale = Math.min(st.view.scale0 * 2000, Math.max(st.view.scale0 * 0.5, st.view.scale * f));
    st.view.cx = x - (px - W / 2) / st.view.scale;
    st.view.cy = y + (py - height / 2) / st.view.scale;
    showTip(-1);
    moved(false);
  }, { ...opts, passive: false });
  ui.overlay.addEventListener("mousedown", (e) => {
    if (!ready()) return;
    const [px, py] = pos(e);
    drag = { x: px, y: py, moved: false, path: [[px, py]], view: { ...st.view } };
    showTip(-1);
  }, opts);
  window.addEventListener("mousemove", (e) => {
    if (!ready()) return;
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
      moved(false);
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
    if (!ready()) return;
    if (!d.moved) {
      const [px, py] = pos(e);
      const i = nearest(px, py);
      if (i >= 0) {
        const [split, index] = whereIs(st, i);
        setTriggerValue("clicked", { split, index });
      }
      return;
    }
    if (st.mode === "pan") {
      moved(true);
      return;
    }
    const W = ui.stage.clientWidth || 800;
    const points = d.path.map(([x, y]) => toData(x, y, W));
    if (points.length < 3) return;
    st.selection = { shape: st.mode, points };
    select();
    drawBase();
    setStateValue("selection", { ...st.selection, n: st.n, count: st.selectedCount, bits: encodeBits(st.mask) });
  }, opts);
  ui.overlay.addEventListener("mouseleave", () => ready() && showTip(-1), opts);
  ui.overlay.addEventListener("dblclick", () => {
    if (!ready()) return;
    fit();
    drawBase();
  }, opts);
  for (const [m, b] of Object.entries(ui.modes)) b.addEventListener("click", () => setMode(m), opts);
  ui.reset.addEventListener("click", () => {
    if (!ready()) return;
    fit();
    drawBase();
  }, opts);
  ui.clear.addEventListener("click", () => {
    if (!ready()) return;
    st.selection = null;
    select();
    drawBase();
    setStateValue("selection", null);
  }, opts);
  ui.density.addEventListener("click", () => {
    st.density = !st.density;
    setMode(st.mode);
    if (ready()) drawBase();
  }, opts);
  ui.labels.addEventListener("click", () => {
    st.labels = !st.labels;
    setMode(st.mode);
    if (ready()) drawOverlay();
  }, opts);
  const resize = new ResizeObserver(() => ready() && drawBase());
  resize.observe(ui.stage);
  setMode(st.mode);

  if (st.key === data.key) {
    refresh();
  } else {
    // New points or colours: fetch their bytes (each file once per page), then draw.
    const asked = performance.now();
    ui.info.textContent = `Loading ${data.n.toLocaleString()} points…`;
    Promise.all([fetchPart(data.parts.xy), fetchPart(data.parts.attr)]).then(([xy, attr]) => {
      if (!alive) return;
      const arrived = performance.now();
      load(st, data, xy, attr);
      st.key = data.key;
      if (st.viewKey !== data.view_key) {
        st.view = null;
        st.selection = null;
        st.viewKey = data.view_key;
      }
      refresh();
      ui.host.dataset.fetchMs = (arrived - asked).toFixed(0); // read by bench/map_view.py
      ui.host.dataset.firstFrameMs = (performance.now() - arrived).toFixed(0);
    }).catch((err) => {
      if (!alive) return;
      ui.info.textContent = `The map's data could not be loaded (${err.message}); asking the server again…`;
      if (!st.retried) {
        st.retried = true; // once: the server writes any missing file again on the rerun this asks for
        setTriggerValue("reload", data.key);
      }
    });
  }
  return () => {
    alive = false;
    clearTimeout(st.settle);
    if (st.pending) cancelAnimationFrame(st.pending);
    st.pending = 0;
    ctrl.abort();
    resize.disconnect();
  };
}
