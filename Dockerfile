# The oidc-idle worker image (also runs the demo apps). Not built in our CI:
# this machine kind has no Docker engine; docker-compose.yml is for users.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY oidc_idle ./oidc_idle
RUN pip install --no-cache-dir . && useradd --system --uid 10001 oidcidle \
    && mkdir /data && chown oidcidle /data
USER oidcidle
ENV OIDC_IDLE_DB=/data/oidc-idle.db OIDC_IDLE_AUDIT_LOG=/data/oidc-idle-audit.jsonl \
    OIDC_IDLE_BIND=0.0.0.0:8780
EXPOSE 8780
CMD ["oidc-idle", "serve"]
