# One image for both roles: `swarmbot bot` (the default command) and `swarmbot worker`.
#
#   docker build -t swarmbot:0.1.0 .                  # official images and PyPI reachable
#   scripts/build-image.sh swarmbot:0.1.0             # same Dockerfile, works offline too
#
# Build arguments:
#   BASE              a Debian bookworm image with python3 (>= 3.11) and its venv module.
#                     Default: the official Python slim image. Offline builds pass a base
#                     made with debootstrap (scripts/build-image.sh).
#   DOCKER_CLI_IMAGE  where the pinned docker CLI comes from: any image that has it at
#                     /usr/local/bin/docker. Default: the official docker CLI image, pinned.
#                     The worker needs the CLI itself because `docker stack deploy` exists
#                     only there (the Engine API has no stacks); the bot never calls it.
# Wheels: if build/wheels/ holds wheels (scripts/build-image.sh puts them there, of the
# versions in requirements.lock), they are installed with --no-index and nothing is
# fetched; otherwise pip installs from PyPI, held to requirements.lock.
ARG BASE=python:3.11-slim-bookworm
ARG DOCKER_CLI_IMAGE=docker:28.2.2-cli

FROM ${DOCKER_CLI_IMAGE} AS docker-cli

FROM ${BASE} AS build
WORKDIR /src
COPY . .
RUN python3 -m venv /opt/swarmbot \
 && if ls build/wheels/swarmbot-*.whl >/dev/null 2>&1; then \
      /opt/swarmbot/bin/pip install --no-cache-dir --disable-pip-version-check \
        --no-index --find-links build/wheels 'swarmbot[matrix,slack]'; \
    else \
      /opt/swarmbot/bin/pip install --no-cache-dir --disable-pip-version-check \
        -c requirements.lock '.[matrix,slack]'; \
    fi \
 && /opt/swarmbot/bin/pip uninstall --yes --quiet pip setuptools \
 && find /opt/swarmbot -name __pycache__ -prune -exec rm -rf {} + \
 && /opt/swarmbot/bin/python -m compileall -q /opt/swarmbot/lib

FROM ${BASE}
# git and ssh: the worker's clone of a [git] stacks repository (the git CLI, see
# bot/swarm/gitsource.py for why not a library).
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      git openssh-client ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=build /opt/swarmbot /opt/swarmbot
# The bot runs as an unprivileged user. The worker is started as root by its stack file:
# it holds the Docker socket, which is root on the host whoever opens it.
RUN install -d -o 10001 -g 10001 /var/lib/swarmbot
ENV PATH=/opt/swarmbot/bin:$PATH \
    HOME=/var/lib/swarmbot \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SWARMBOT_CONFIG=/etc/swarmbot/config.toml
USER 10001:10001
WORKDIR /var/lib/swarmbot
# Asks the process's own /healthz: the bot reaches Redis and its chat platforms, the worker
# Redis and Docker. Needs [health] bot_port / worker_port set (the stack file's config does).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["swarmbot", "healthcheck"]
ENTRYPOINT ["swarmbot"]
CMD ["bot"]
