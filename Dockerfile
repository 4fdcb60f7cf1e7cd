# clv-assets: one image for the three Dagster roles (webserver, daemon, gRPC code server) and the `clv` CLI.
#
#   docker build -t clv-assets .
#   docker run --rm clv-assets clv --help
#
# See docs/deployment.md. The base only needs Debian bookworm with python3 (3.11+) and its venv module:
# the official python slim image (python in /usr/local/bin) or a plain Debian with python3-venv
# (python in /usr/bin), which is how scripts/test_docker_image.sh builds it offline.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG DAGSTER_POSTGRES_VERSION=0.29.27

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Java for local Spark (openjdk-17's post-install needs the man1 folder that slim images delete),
# tini as PID 1 (forwards signals, reaps the JVM and run-worker children).
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* \
 && java -version

# The project lives in its own virtual environment, whichever python3 the base provides.
RUN python3 -m venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Dependencies first (their own layer: it changes only with pyproject.toml), read from pyproject.toml so the
# pins stay in one place, plus dagster-postgres for the optional PostgreSQL instance (deploy/dagster.yaml).
WORKDIR /tmp/clv-src
COPY pyproject.toml ./
RUN python -m pip install --upgrade pip \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > requirements.txt \
 && python -m pip install -r requirements.txt "dagster-postgres==${DAGSTER_POSTGRES_VERSION}"

# Then the project itself: a regular (non-editable) install without the dev extras.
# clv_assets/definitions.py loads its defs folder with dg.load_from_defs_folder, which looks for the project's
# dg settings (pyproject.toml [tool.dg] or a dg.toml) in a folder above the package. An installed package has
# none, so a dg.toml with the same settings goes into /opt/venv, above site-packages.
COPY README.md ./
COPY clv_assets ./clv_assets
RUN python -m pip install --no-deps . \
 && python -m pip check \
 && printf '%s\n' 'directory_type = "project"' '' '[project]' 'root_module = "clv_assets"' \
      'code_location_name = "clv_assets"' > /opt/venv/dg.toml \
 && cd / && rm -rf /tmp/clv-src

# A non-root user owns the data and the Dagster instance; nothing else in the image is writable by it.
COPY deploy/entrypoint.sh deploy/dagster.yaml deploy/workspace.yaml deploy/workspace-local.yaml /opt/clv/deploy/
RUN groupadd --gid 10001 clv \
 && useradd --uid 10001 --gid clv --no-create-home --home-dir /opt/clv --shell /usr/sbin/nologin clv \
 && mkdir -p /opt/clv/data /opt/dagster/dagster_home/storage \
 && chown clv:clv /opt/clv /opt/clv/data /opt/dagster /opt/dagster/dagster_home /opt/dagster/dagster_home/storage \
 && chmod 0755 /opt/clv/deploy/entrypoint.sh

ENV DAGSTER_HOME=/opt/dagster/dagster_home \
    CLV_LANDING_PATH=/opt/clv/data/landing \
    CLV_WAREHOUSE_URI=/opt/clv/data/warehouse \
    CLV_CODE_SERVER_PORT=4000 \
    CLV_UI_PORT=3000

USER 10001:10001
WORKDIR /opt/clv
EXPOSE 3000 4000
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/clv/deploy/entrypoint.sh"]
CMD ["webserver"]
