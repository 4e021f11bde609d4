"""Integrations with third-party servers; each module imports its optional package.

- `graceful_async.contrib.hypercorn`: serve an ASGI app with Hypercorn, on asyncio or trio
  (``pip install graceful-async[hypercorn]``).
- `graceful_async.contrib.uvicorn`: serve an ASGI app with Uvicorn, on asyncio
  (``pip install graceful-async[uvicorn]``).
- `graceful_async.contrib.asgi`: a readiness endpoint for any ASGI app; no dependencies.
"""
