# client/python/client.mk — the Python client's targets (included from the Makefile).
