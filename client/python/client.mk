# client/python/client.mk — the Python client's targets (included from the Makefile).
#
#   make client-wheel   builds dist/pyjobd-<version>-py3-none-any.whl with Debian's
#                       python3-build and python3-setuptools, without the network (no
#                       build isolation: nothing is fetched from PyPI). Install it on
#                       any machine with Python 3 and cloudpickle:
#                         pip install dist/pyjobd-*.whl
#
# The sources are copied to $(CLIENT_BUILD) first: setuptools writes build/ and
# pyjobd.egg-info/ next to pyproject.toml, and those stay out of the checkout.

CLIENT_DIR        := client/python
CLIENT_DIST       ?= dist
CLIENT_BUILD      ?= $(BUILD)/client-wheel
CLIENT_WHEEL_DEBS := python3-build python3-setuptools python3-wheel python3-pip python3-venv

.PHONY: client-wheel client-wheel-deps

client-wheel-deps:
	$(call install_missing,$(CLIENT_WHEEL_DEBS))

client-wheel: client-wheel-deps
	@rm -rf $(CLIENT_BUILD) && mkdir -p $(CLIENT_BUILD) $(CLIENT_DIST)
	@cp -R $(CLIENT_DIR)/pyproject.toml $(CLIENT_DIR)/README.md $(CLIENT_DIR)/pyjobd $(CLIENT_BUILD)/
	@find $(CLIENT_BUILD) -name __pycache__ -prune -exec rm -rf {} +
	cd $(CLIENT_BUILD) && $(PYTHON) -m build --wheel --no-isolation --outdir $(abspath $(CLIENT_DIST)) .
	@ls -l $(CLIENT_DIST)/pyjobd-*.whl
