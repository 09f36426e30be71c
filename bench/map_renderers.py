"""How fast a browser draws a million map points: WebGL (point sprites) against a 2-D canvas's pixel buffer.

    python bench/map_renderers.py [--points 1000000] [--frames 15]

Opens headless Chromium (Debian's, no GPU: whatever WebGL it offers is software), makes N points in ten clusters, and
times full frames of each way of drawing them at 1400 x 560 pixels, median of --frames frames:
- WebGL 2: one ``gl.POINTS`` draw call of every point (position and class as vertex attributes, the palette as a
  uniform), at point sizes 1, 2 and 3 px, read back one pixel so the frame is finished;
- 2-D canvas: a loop writing each point's square into an ``ImageData`` (what ui/scatter_map.js does), at 1 and 2 px,
  with the points in random order and sorted by where they fall (a 256 x 256 grid), with and without counting the
  points per pixel for density shading.
Prints the CPU model and core count, and the WebGL renderer the browser reports.
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (puts the project on sys.path)

PAGE = r"""
<canvas id=c width=1400 height=560></canvas>
<script>
const W = 1400, H = 560;
let X, Y, C, N;
window.make = function(n) {
  N = n; X = new Float32Array(n); Y = new Float32Array(n); C = new Uint8Array(n);
  let s = 1;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff), s / 0x7fffffff);
  for (let i = 0; i < n; i++) {
    const k = i % 10, a = (k / 10) * 6.28;
    X[i] = Math.cos(a) * 30 + (rnd() - 0.5) * 40; Y[i] = Math.sin(a) * 30 + (rnd() - 0.5) * 40; C[i] = k;
  }
};
function median(t) { t.sort((a, b) => a - b); return t[t.length >> 1]; }
window.webgl = function(frames, size) {
  const gl = document.getElementById('c').getContext('webgl2', {antialias: false});
  if (!gl) return null;
  const vs = `#version 300 es
  in vec2 p; in float ci; uniform vec4 v; uniform float ps; uniform vec3 pal[10]; out vec3 col;
  void main() {
    gl_Position = vec4((p.x - v.x) * v.z, (p.y - v.y) * v.w, 0., 1.); gl_PointSize = ps; col = pal[int(ci)];
  }`;
  const fs = `#version 300 es
  precision mediump float; in vec3 col; out vec4 o; void main() { o = vec4(col, 1.); }`;
  const sh = (t, src) => { const x = gl.createShader(t); gl.shaderSource(x, src); gl.compileShader(x); return x; };
  const pr = gl.createProgram();
  gl.attachShader(pr, sh(gl.VERTEX_SHADER, vs)); gl.attachShader(pr, sh(gl.FRAGMENT_SHADER, fs));
  gl.linkProgram(pr); gl.useProgram(pr);
  const xy = new Float32Array(2 * N);
  for (let i = 0; i < N; i++) { xy[2 * i] = X[i]; xy[2 * i + 1] = Y[i]; }
  gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer()); gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW);
  const lp = gl.getAttribLocation(pr, 'p');
  gl.enableVertexAttribArray(lp); gl.vertexAttribPointer(lp, 2, gl.FLOAT, false, 0, 0);
  gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer()); gl.bufferData(gl.ARRAY_BUFFER, C, gl.STATIC_DRAW);
  const lc = gl.getAttribLocation(pr, 'ci');
  gl.enableVertexAttribArray(lc); gl.vertexAttribPointer(lc, 1, gl.UNSIGNED_BYTE, false, 0, 0);
  const pal = []; for (let k = 0; k < 10; k++) pal.push(k / 10, 1 - k / 10, 0.5);
  gl.uniform3fv(gl.getUniformLocation(pr, 'pal'), pal); gl.uniform1f(gl.getUniformLocation(pr, 'ps'), size);
  const uv = gl.getUniformLocation(pr, 'v');
  gl.viewport(0, 0, W, H);
  const times = [], px = new Uint8Array(4);
  for (let f = 0; f < frames; f++) {
    const t = performance.now();
    gl.clearColor(1, 1, 1, 1); gl.clear(gl.COLOR_BUFFER_BIT);
    gl.uniform4f(uv, f * 0.1, 0, 1 / 65, 1 / 26); gl.drawArrays(gl.POINTS, 0, N);
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    times.push(performance.now() - t);
  }
  return median(times);
};
window.pixels = function(frames, side, sorted, density) {
  let xs = X, ys = Y, col = C;
  if (sorted) {
    const G = 256, key = new Uint32Array(N), first = new Uint32Array(G * G + 1), idx = new Uint32Array(N);
    for (let i = 0; i < N; i++) {
      const gx = Math.min(G - 1, Math.max(0, ((X[i] + 65) / 130 * G) | 0));
      const gy = Math.min(G - 1, Math.max(0, ((Y[i] + 65) / 130 * G) | 0));
      key[i] = gy * G + gx; first[key[i] + 1]++;
    }
    for (let k = 0; k < G * G; k++) first[k + 1] += first[k];
    for (let i = 0; i < N; i++) idx[first[key[i]]++] = i;
    xs = new Float32Array(N); ys = new Float32Array(N); col = new Uint8Array(N);
    for (let k = 0; k < N; k++) { xs[k] = X[idx[k]]; ys[k] = Y[idx[k]]; col[k] = C[idx[k]]; }
  }
  const c = document.createElement('canvas'); c.width = W; c.height = H;
  const ctx = c.getContext('2d'), img = ctx.createImageData(W, H);
  const px = new Uint32Array(img.data.buffer), count = new Uint16Array(W * H);
  const pal = new Uint32Array(10); for (let k = 0; k < 10; k++) pal[k] = (255 << 24) | ((k * 20) << 8) | (255 - k * 20);
  const times = [];
  for (let f = 0; f < frames; f++) {
    const t = performance.now();
    px.fill(0xffffffff); if (density) count.fill(0);
    const ox = 700 + f, oy = 280, s = 560 / 130;
    for (let k = 0; k < N; k++) {
      const x = Math.round(xs[k] * s + ox), y = Math.round(oy - ys[k] * s);
      if (x < 0 || y < 0 || x + side > W || y + side > H) continue;
      const v = pal[col[k]];
      for (let dy = 0; dy < side; dy++) {
        const row = (y + dy) * W + x;
        for (let dx = 0; dx < side; dx++) { px[row + dx] = v; if (density) count[row + dx]++; }
      }
    }
    ctx.putImageData(img, 0, 0);
    times.push(performance.now() - t);
  }
  return median(times);
};
window.renderer = function() {
  const gl = document.createElement('canvas').getContext('webgl2');
  if (!gl) return 'no WebGL 2';
  const d = gl.getExtension('WEBGL_debug_renderer_info');
  return d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
};
</script>
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--frames", type=int, default=15)
    args = p.parse_args()

    from lib.process import machine_info
    from tests.streamlit_server import chromium

    m = machine_info()
    print(f"machine: {m['cpu']}, {m['cores']} cores; {args.points:,} points, 1400 x 560 px, median of {args.frames}")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1500, "height": 700})
        page.set_content(PAGE)
        page.evaluate(f"make({args.points})")
        print(f"WebGL renderer: {page.evaluate('renderer()')}")
        for side in (1, 2):
            for sorted_, density in ((0, 0), (1, 0), (1, 1)):
                ms = page.evaluate(f"pixels({args.frames}, {side}, {sorted_}, {density})")
                order = "sorted by map cell" if sorted_ else "random order"
                print(f"2-D canvas pixels, {side} px, {order}{', density counts' if density else ''}: {ms:.1f} ms")
        for size in (1, 2, 3):
            ms = page.evaluate(f"webgl({args.frames}, {size})")
            print(f"WebGL 2 gl.POINTS, {size} px: " + (f"{ms:.1f} ms" if ms is not None else "no WebGL 2"))


if __name__ == "__main__":
    main()
