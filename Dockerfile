# RSPP runtime / control-plane image (docs/deploy.md).
#
#   docker build -t rspp:0.1.0 .
#   docker run -p 8800:8800 rspp:0.1.0                       # embedded: runtime + SQLite CP
#   docker run rspp:0.1.0 cp serve --host 0.0.0.0 --db postgresql://...   # control plane
#   docker run -e RSPP_CONTROL_PLANE=http://cp:8700 -e RSPP_API_KEY=... \
#       -e RSPP_ADVERTISE_URL=ws://runtime-0:8800 rspp:0.1.0  # stateless runtime
#
# Stage 1 builds the wheel from the source; stage 2 installs it with the `speech` extra
# (offline pocketsphinx + espeak-ng ship inside their wheels) and runs as a non-root user.
# tests/e2e/test_deploy.py builds the same wheel and runs the same entry command in a
# fresh virtual environment (no container engine runs in the test environment).

FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir "hatchling>=1.25"
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /dist .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RSPP_HOST=0.0.0.0 \
    RSPP_PORT=8800
COPY --from=build /dist /dist
RUN WHEEL="$(ls /dist/rspp-*.whl)" \
    && pip install --no-cache-dir "${WHEEL}[speech]" \
    && rm -rf /dist \
    && groupadd --system --gid 10001 rspp \
    && useradd --system --uid 10001 --gid rspp --create-home --home-dir /home/rspp rspp
USER 10001:10001
WORKDIR /home/rspp
EXPOSE 8800
# liveness of the runtime (/healthz); the control plane (`cp serve`, port 8700) is probed
# by its Kubernetes probes instead
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RSPP_PORT', '8800') + '/healthz', timeout=2)"]
ENTRYPOINT ["rspp"]
CMD ["serve"]
