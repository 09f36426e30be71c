# The hosted demo: read-only (TLX_DEMO=1), on $PORT, with a demo bundle fetched at start (never baked into git).
#   docker build -t tlx-demo . && docker run -p 8501:8501 -e TLX_BUNDLE=https://host/demo.tar tlx-demo
# Conventions of Docker-based Spaces and similar hosts: slim Python 3.11, a non-root user with uid 1000,
# the port from the environment, a health check on Streamlit's own endpoint. See deploy/README.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TLX_DEMO=1 \
    TLX_CACHE_DIR=/data/cache \
    PORT=8501

RUN useradd --create-home --uid 1000 user \
    && mkdir -p /data/cache \
    && chown -R user:user /data
WORKDIR /home/user/app

COPY --chown=user:user requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=user:user . .
USER user

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/_stcore/health' % os.environ.get('PORT', '8501'), timeout=4)"

CMD ["bash", "deploy/entrypoint.sh"]
