"""The container recipe, checked where no image can be built: the Dockerfile installs and starts what the README
says."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_follows_the_hosts_conventions() -> None:
    text = dockerfile()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"useradd .*--uid 1000", text) and re.search(r"^USER user$", text, re.M)  # non-root, uid 1000
    assert re.search(r"^HEALTHCHECK .*\n?.*/_stcore/health", text, re.M)
    assert "TLX_DEMO=1" in text and "PORT=8501" in text
    assert re.search(r'^CMD \["bash", "deploy/entrypoint.sh"\]$', text, re.M)
    assert "TLX_BUNDLE=" not in text.split("CMD")[0].replace(
        "-e TLX_BUNDLE=", ""
    )  # the bundle comes at start, not baked in
    assert not re.search(r"^(COPY|ADD) .*\.(tar|npz|npy)\b", text, re.M)


def test_dockerfile_installs_and_starts_what_the_readme_says() -> None:
    readme = (ROOT / "README.md").read_text()
    install = re.search(
        r"```bash\n(pip install -r requirements\.txt) && (streamlit run app\.py)  .*\nbash \.ci/run ", readme
    )
    assert install, "the README opens with the two commands: install and run the app, install and run the tests"
    assert f"RUN {install.group(1)}" in dockerfile()
    entry = (ROOT / "deploy" / "entrypoint.sh").read_text()
    assert re.search(r'^exec streamlit run app\.py --server\.port "\$PORT" .* -- --demo$', entry, re.M)
    assert 'python -m lib install-bundle "$TLX_BUNDLE"' in entry and "set -euo pipefail" in entry


def test_streamlit_config_hides_deploy_and_telemetry() -> None:
    import tomllib

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["client"]["toolbarMode"] == "minimal" and cfg["browser"]["gatherUsageStats"] is False
    assert cfg["server"]["enableStaticServing"] is True and cfg["server"]["maxUploadSize"] <= 10
    # No forced full garbage collection after every rerun: with TensorFlow loaded it was most of a server's CPU while
    # jobs polled (a hosted demo's visitors share that CPU).
    assert cfg["runner"]["postScriptGC"] is False and cfg["runner"]["magicEnabled"] is False
