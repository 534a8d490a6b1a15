# syntax=docker/dockerfile:1
# Build stage: wheels of the service, of its client package (generated stubs) and their
# dependencies.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY server ./server
COPY clients/python ./clients/python
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels ./clients/python .

# Runtime stage: no compilers, no sources, a non-root user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /app smartstart
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER smartstart
ENV SMARTSTART_GRPC_ADDR=0.0.0.0:50051 \
    SMARTSTART_DATA_DIR=/app/data \
    SMARTSTART_METRICS_ADDR=0.0.0.0:9090 \
    PYTHONUNBUFFERED=1
EXPOSE 50051 9090
# The standard gRPC health service, asked through the CLI (no extra probe binary).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["smartstart", "health"]
ENTRYPOINT ["smartstart"]
CMD ["serve"]
