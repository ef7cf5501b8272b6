# The CRM API image (production: see docker-compose.yml). Local development runs
# without Docker: scripts/setup.sh.
FROM python:3.11-slim

# PYTHONPATH: api/config.py finds db/ (schema, migrations) next to the api/ package it
# runs from, so /app/api must win over the copy `pip install .` puts in site-packages.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/crm crm

WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY api/ api/
COPY whatsapp/ whatsapp/
COPY metabase/ metabase/
COPY nocodb/*.py nocodb/
RUN pip install --no-deps .
COPY db/ db/
COPY scripts/ scripts/

# Backups (CRM_DATA_DIR/backups) are written by the non-root user; mount a volume there.
RUN mkdir -p /app/.data/backups && chown -R crm:crm /app/.data

USER crm
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/api/health' % (os.environ.get('CRM_API_PORT') or '8000'), timeout=4)" || exit 1

CMD ["crm", "serve", "--host", "0.0.0.0"]
