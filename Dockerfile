# Runbook Manager runner: gunicorn-served API, configured only through RUNBOOK_MANAGER_* variables.
# Roles: `serve` (API; add --no-worker --no-scheduler when workers run elsewhere), `worker`, `scheduler`,
# `db upgrade` (run once before starting replicas on PostgreSQL).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY runner runner
COPY connector connector
COPY webhooks webhooks
COPY manifest manifest
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RUNBOOK_MANAGER_VAR_DIR=/var/lib/runbook-manager \
    RUNBOOK_MANAGER_DATABASE_URL=sqlite:////var/lib/runbook-manager/runbook-manager.db
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/runbook-manager --create-home runbook
USER 10001
WORKDIR /var/lib/runbook-manager
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["runbook-manager"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
