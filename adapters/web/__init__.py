"""`baton serve`: a web view over the store (read models plus a goal's events).

Importing this package needs nothing beyond Baton itself: the timeline and the drawings are plain
Python; only `baton.web.app` needs the `web` extra (Starlette, uvicorn, Jinja2).
"""

__all__: list[str] = []
