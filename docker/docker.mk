# docker/docker.mk — the container image's targets; the Makefile includes it:
#
#   include docker/docker.mk
#
#   make docker-image   build the image `pyjobd` from docker/Dockerfile
#   make docker-test    build it (and docker/examples/numpy), run it, test it from the
#                       host with curl and the Python client, remove all it created
#
# Engine: $(CONTAINER_ENGINE) when set; else `docker` when a daemon answers; else
# what $(CONTAINER_ENGINE_TOOL) prints (it installs podman and builds a local
# debian:bookworm-slim base, for machines with no Docker daemon and no registry).

CONTAINER_ENGINE      ?=
CONTAINER_ENGINE_TOOL ?= ../shared/tools/container-engine.sh
DOCKER_IMAGE          ?= pyjobd
DOCKER_TEST_PYTHON    ?= /usr/bin/python3

# Shell snippet: sets $eng to the engine command, or fails with a clear message.
define docker_find_engine
eng="$(CONTAINER_ENGINE)"; \
if [ -z "$$eng" ]; then \
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then eng=docker; \
  elif [ -f "$(CONTAINER_ENGINE_TOOL)" ]; then eng=$$(bash "$(CONTAINER_ENGINE_TOOL)" | tail -n1) || exit 1; \
  else echo "no container engine: no working Docker daemon and no $(CONTAINER_ENGINE_TOOL) (it sets up podman);" \
            "install Docker or podman, or set CONTAINER_ENGINE=podman" >&2; exit 1; fi; \
fi
endef

.PHONY: docker-image docker-test

docker-image:
	@$(docker_find_engine); \
	extra=""; [ "$$eng" = docker ] || extra="--pull=never --format docker"; \
	echo "$$eng build $$extra -f docker/Dockerfile -t $(DOCKER_IMAGE) ."; \
	$$eng build $$extra -f docker/Dockerfile -t $(DOCKER_IMAGE) .

# deps: curl and python3-cloudpickle on the host (payloads are made by /usr/bin/python3).
docker-test: deps
	CONTAINER_ENGINE="$(CONTAINER_ENGINE)" CONTAINER_ENGINE_TOOL="$(CONTAINER_ENGINE_TOOL)" \
	  $(DOCKER_TEST_PYTHON) docker/test_image.py
