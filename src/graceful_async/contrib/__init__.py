"""Integrations with third-party servers; each module imports its optional package.

- `graceful_async.contrib.asgi`: a readiness endpoint for any ASGI app; no dependencies.
"""
