#!/usr/bin/env bash
# Start the hosted demo: install the demo bundle named by $TLX_BUNDLE (an http(s) URL or a path; checksums
# verified, optional $TLX_BUNDLE_SHA256 for the whole file), then serve the app read-only on $PORT.
# The same steps as deploy/README.md; the Dockerfile runs this. Exits non-zero on a bad bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PORT:=8501}"
: "${TLX_CACHE_DIR:=$PWD/cache}"
export TLX_CACHE_DIR TLX_DEMO=1

if [ -n "${TLX_BUNDLE:-}" ]; then
  python -m lib install-bundle "$TLX_BUNDLE" --cache-dir "$TLX_CACHE_DIR" --thumbs static/thumbs ${TLX_BUNDLE_SHA256:+--sha256 "$TLX_BUNDLE_SHA256"}
fi
exec streamlit run app.py --server.port "$PORT" --server.address 0.0.0.0 --server.headless true -- --demo
