# syntax=docker/dockerfile:1
# The app image of docker-compose.yml (prefect-server, worker, api): Python 3.11, the runtime
# dependencies at the versions pinned in constraints.txt (no dev extras), a non-root user.
#   docker build -t telemetry-pipeline .
FROM python:3.11-slim

# Writable state lives under /data (volumes in docker-compose.yml); /app stays root-owned.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TELEMETRY_DATA_DIR=/data \
    TELEMETRY_REPORTS_DIR=/data/reports \
    TELEMETRY_DBT_TARGET_DIR=/data/dbt-target \
    PREFECT_HOME=/data/prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false

WORKDIR /app

# Dependencies in a layer of their own, rebuilt only when the pins change: pyproject.toml's
# runtime requirements (not the dev extra) at constraints.txt's versions.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
# Editable on purpose: core/settings.py finds alembic.ini, dbt/ and prefect.yaml beside the
# code (PROJECT_ROOT), which a copy in site-packages would not have. Bytecode is compiled now
# because the app user cannot write to /app.
RUN pip install --no-deps -c constraints.txt -e . \
    && python -m compileall -q api cli core detectors expectations flows migrations reports simulator \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data/prefect /data/reports /data/dbt-target \
    && chown -R app:app /data

USER app
EXPOSE 4200 8000
CMD ["telemetry", "--help"]
