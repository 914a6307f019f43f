"""The web view: Starlette routes over the store, pages rendered on the server (Jinja2).

Reads come from the read models (goal list, escalations) and from a goal's own events (its
page). The goal list is filtered, counted and paged in SQL; no page catches the read models up:
one behind says so, and the server's own catch-up thread (every `catch_up_s`, and at once when a
page finds them behind) brings them up to date off the request path, as `baton projections
follow` or a worker would. The forms call the same service as the CLI (`baton.runtime.service`)
and, like the CLI's writing commands, catch the read models up after they write; every POST
carries a per-server form key, so another site open in the same browser cannot post to it. With
a token (required when bound beyond loopback), each request needs it once (`?token=`, then a
cookie) or as `Authorization: Bearer`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from baton.domain.errors import BatonError
from baton.domain.replay import replay
from baton.readmodels.reading import CatchUpThread, KeptReadModels
from baton.runtime.loading import parse_json_value
from baton.runtime.runner import Driving
from baton.runtime.service import (
    answer_task,
    cancel_goal,
    catch_up_read_models,
    load_goal_plan,
    resolve_task,
    resume_goal,
)
from baton.store.eventstore import BatonStore, GoalNotFound, StoreError, UnknownEvent
from baton.web.events import EventCache
from baton.web.goal_view import goal_page, goal_url

__all__ = ["ESCALATIONS_SHOWN", "GOALS_PER_PAGE", "create_app", "goal_url"]

HERE = Path(__file__).parent
GOALS_PER_PAGE = 100
ESCALATIONS_SHOWN = 100  # longest waiting first; the page says how many more wait
SHUTDOWN_WAIT_S = 10.0  # for goals resumed from a form to reach a save they may leave at
_FORM_CATCH_UP = 2_000  # a form that wrote catches up this many events itself, at most
_GOAL_COLUMNS = ("goal_id", "plan", "status", "reason", "updated_at", "tasks", "tasks_succeeded",
                 "attempts")
_ACTIONS = ("retry", "abandon", "output", "approve", "reject")
# The choices the escalations page offers, by what the task waits for (baton.domain.gates); a
# question also gets an answer form (escalations.html).
_ACTIONS_FOR = {"approval": ("approve", "reject"), "clarification": ("abandon", "output")}
_STATIC = {"style.css": "text/css", "app.js": "text/javascript"}
# A goal's pages under /goals/<id>/…, and the methods each answers (GET answers HEAD too)
_GOAL_PAGES = {"": ("GET", "HEAD"), "version": ("GET", "HEAD"), "replay": ("GET", "HEAD"),
               "cancel": ("POST",), "answer": ("POST",)}


def _goal_route(scope: Any) -> tuple[str, str]:
    """(goal id, page) of a request under /goals/, read from the raw path: there an id's `/`
    is still %2F, so `/goals/a%2Freplay` is goal `a/replay`'s page, not goal `a`'s replay. An
    id typed with a bare `/` still works, unless its last part names one of a goal's pages."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    root = scope.get("root_path", "").encode()
    if root and raw.startswith(root):
        raw = raw[len(root):]
    parts = raw.split(b"/")[2:]  # b"", b"goals", then the id's part(s)
    page = ""
    if len(parts) > 1 and parts[-1] and parts[-1].decode("latin-1") in _GOAL_PAGES:
        page = parts.pop().decode("latin-1")
    text = unquote_to_bytes(b"/".join(parts)).decode("utf-8", errors="replace")
    return text, page


class _TokenGate(BaseHTTPMiddleware):
    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        presented = (given or request.cookies.get("baton_token")
                     or header.removeprefix("Bearer ").strip())
        if not presented or not _same(presented, self.token):
            return PlainTextResponse("baton serve: a token is required (?token=…)", 401)
        response = await call_next(request)
        if given:
            response.set_cookie("baton_token", given, httponly=True, samesite="strict")
        return response


def create_app(
    store: BatonStore, *, token: str | None = None, catch_up_s: float = 1.0
) -> Starlette:
    """The web view of `store`. `catch_up_s`: how often the server brings the read models up
    to date in a thread of its own (0: never; then `baton projections follow` or the workers
    must)."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["goal_url"] = goal_url
    templates.env.filters["q"] = lambda value: quote(str(value), safe="")  # a query value
    form_key = secrets.token_urlsafe(24)
    resumes: dict[str, threading.Thread] = {}
    driving = Driving()  # their runners, while they drive
    stopping = threading.Event()  # the server is shutting down: resumes leave at a safe point
    cache = EventCache(store)
    views = KeptReadModels(store)  # one pool for every page's reads, closed with the app
    catching_up: list[CatchUpThread] = []  # the thread, while the app runs (see `lifespan`)

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Any:
        return templates.TemplateResponse(
            request, name, {"form_key": form_key, **context}, status_code=status
        )

    def behind(models: Any) -> dict[str, Any]:
        """Where the read models stand, for a page: it says how far behind they are, and
        wakes the catch-up thread rather than catching up itself."""
        lag = models.behind()
        if lag.events:
            for thread in catching_up:
                thread.nudge()
        return {"position": lag.position, "lag": lag, "catching_up": catch_up_s > 0}

    def after_write() -> None:
        """After a form wrote events: catch the read models up, as `baton resolve` does, so the
        page it returns to shows the decision; when they are further behind than a form
        should wait for (a rebuild under way), leave it to the catch-up thread."""
        with views.read() as models:
            far = models.behind(_FORM_CATCH_UP).more
        if not far:
            catch_up_read_models(store, warn=_not_caught_up, kept=views)
        else:
            for thread in catching_up:
                thread.nudge()

    def goals(request: Request) -> Any:
        params = request.query_params
        status, plan = params.get("status") or None, params.get("plan") or None
        since_text = params.get("since") or None
        since, error = _since(since_text)
        with views.read() as models:
            where = behind(models)
            listed = models.goal_list(status=status, plan=plan, since=since,
                                      page=_int(params, "page", 1),
                                      per_page=GOALS_PER_PAGE, columns=_GOAL_COLUMNS)
        return render(request, "goals.html", {
            "goals": listed.rows, "counts": listed.counts, "total": listed.total,
            "plans": listed.plans, "matching": listed.matching,
            "status": status, "plan": plan, "since": since_text, "page": listed.page,
            "pages": listed.pages, "error": error, **where,
            "query": lambda **kw: "?" + urlencode({k: v for k, v in {
                "status": status, "plan": plan, "since": since_text, **kw}.items() if v}),
            "running": listed.counts.get("running", 0) > 0,
        }, 400 if error else 200)

    def head(request: Request) -> Any:
        return JSONResponse({"head": store.app.recorder.max_notification_id() or 0})

    def views_position(request: Request) -> Any:
        """The read models' position: what the goal list polls, to show what they show now."""
        with views.read() as models:
            return JSONResponse({"version": models.views.position(store.app.name)})

    def goal(request: Request, goal_id: str, refused: str | None = None) -> Any:
        """The goal's page; `refused`: why a form posted from it recorded nothing (a 400)."""
        try:
            events = cache.events(goal_id)
        except GoalNotFound:
            return render(request, "error.html", {"error": _one_line(f"no goal {goal_id!r}")},
                          404)
        params = request.query_params
        task = params.get("task") or None
        context = goal_page(
            events,
            at=_int(params, "at", None),
            page=_int(params, "page", None),
            task=task,
            tasks_page=_int(params, "tasks_page", 1),
            now=datetime.now(UTC),
        )
        context["error"] = None  # never from the query: a link cannot put words on the page
        context["done"] = _done_shown(params, form_key)
        context["resuming"] = goal_id in resumes and resumes[goal_id].is_alive()
        if refused is not None:
            context["error"], context["done"] = refused, None
            return render(request, "goal.html", context, 400)
        if task is not None and context["detail"] is None:  # the page, and why no task shows
            context["error"] = f"no task {task!r} at event {context['at']} of this goal"
            return render(request, "goal.html", context, 404)
        return render(request, "goal.html", context)

    def version(request: Request, goal_id: str) -> Any:
        found = [] if "\x00" in goal_id else store.app.recorder.select_events(
            goal_id, desc=True, limit=1)  # (a NUL: no goal's id, and PostgreSQL refuses it)
        if not found:
            return JSONResponse({"error": f"no goal {goal_id!r}"}, 404)
        return JSONResponse({"version": found[0].originator_version})

    def verify(request: Request, goal_id: str) -> Any:
        try:
            events = list(store.events(goal_id))
        except GoalNotFound:
            return render(request, "error.html", {"error": _one_line(f"no goal {goal_id!r}")},
                          404)
        try:
            loaded = load_goal_plan(store.get(goal_id), calls_models=False)
            result = replay(events, loaded.contracts).to_json()
            error = None
        except BatonError as exc:
            result, error = None, str(exc)
        return render(request, "replay.html",
                      {"goal_id": goal_id, "result": result, "error": error})

    async def cancel(request: Request, goal_id: str) -> Any:
        form = await request.form()
        error = _check_key(form, form_key)
        reason = _field(form, "reason").strip()
        if error is None:
            try:
                cancel_goal(store, goal_id, reason=reason, by=_by(form))
                after_write()
            except BatonError as exc:
                error = f"cancel: {exc}"
        if form.get("back") == "escalations":
            if error is not None:
                return escalations(request, f"{goal_id}: {_one_line(error)}", 400)
            done = _done_query(f"{goal_id}: cancelled", form_key)
            return RedirectResponse(f"/escalations?{done}", status_code=303)
        if error is not None:
            return goal(request, goal_id, refused=_one_line(error))
        return RedirectResponse(goal_url(goal_id), status_code=303)

    def escalations(request: Request, error: str | None = None, status: int = 200) -> Any:
        with views.read() as models:
            where = behind(models)
            shown = models.longest_waiting(ESCALATIONS_SHOWN)
        return render(request, "escalations.html", {
            "escalations": shown.rows, "waiting": shown.waiting, **where,
            "error": error,
            "done": _done_shown(request.query_params, form_key), "actions": _ACTIONS[:3],
            "actions_for": _ACTIONS_FOR,
        }, status)

    def resume_in_background(goal_id: str) -> None:
        thread = threading.Thread(target=_resume,
                                  args=(store, goal_id, views, stopping, resumes.get(goal_id),
                                        driving),
                                  daemon=True, name=f"baton-web-resume-{goal_id}")
        resumes[goal_id] = thread
        thread.start()

    def record(
        request: Request, form: Any, goal_id: str, task_id: str, error: str | None,
        what: str, command: Callable[[], Any],
    ) -> Any:
        """Run a human's decision (unless the form was refused), resume the goal if asked, and
        return to the page the form came from: its goal's (`back=goal`) or the escalations."""
        if error is None:
            try:
                command()
                after_write()
            except BatonError as exc:
                error = str(exc)
        if error is None and form.get("resume"):
            resume_in_background(goal_id)
        done = f"{goal_id} {task_id}: {what} recorded"
        if form.get("back") == "goal":
            if error is not None:
                return goal(request, goal_id, refused=_one_line(error))
            return RedirectResponse(f"{goal_url(goal_id)}?{_done_query(done, form_key)}",
                                    status_code=303)
        if error is not None:
            about = " ".join(name for name in (goal_id, task_id) if name)  # a form left empty
            line = f"{about}: {_one_line(error)}" if about else _one_line(error)
            return escalations(request, line, 400)
        return RedirectResponse(f"/escalations?{_done_query(done, form_key)}", status_code=303)

    async def answer(request: Request, goal_id: str) -> Any:
        """A clarification answered from the goal page or the escalations page."""
        form = await request.form()
        task_id, text = _field(form, "task"), _field(form, "answer").strip()
        error = _check_key(form, form_key)
        if error is None and not text:
            error = "an answer is required"
        return record(request, form, goal_id, task_id, error, "answer",
                      lambda: answer_task(store, goal_id, task_id, answer=text, by=_by(form)))

    async def resolve(request: Request) -> Any:
        form = await request.form()
        goal_id, task_id = _field(form, "goal"), _field(form, "task")
        action, reason = _field(form, "action"), _field(form, "reason").strip()
        error = _check_key(form, form_key)
        output: Any = None
        if error is None and action not in _ACTIONS:
            error = f"action must be one of {', '.join(_ACTIONS)}, not {action!r}"
        elif error is None and action == "output":
            try:  # as `resolve --output` reads it
                output = parse_json_value(_field(form, "output"))
            except ValueError as exc:
                error = f"output: {exc}"
        return record(request, form, goal_id, task_id, error, action,
                      lambda: resolve_task(store, goal_id, task_id, action=action, reason=reason,
                                           by=_by(form), output=output))

    def static(request: Request) -> Any:
        """The two bundled files (the package's own; nothing comes from the internet)."""
        name = request.path_params["name"]
        if name not in _STATIC:
            raise HTTPException(404)
        return Response((HERE / "static" / name).read_bytes(), media_type=_STATIC[name],
                        headers={"Cache-Control": "max-age=300"})

    goal_pages: dict[str, Callable[[Request, str], Any]] = {
        "": goal, "version": version, "replay": verify, "cancel": cancel, "answer": answer}

    async def a_goal(request: Request) -> Any:
        """/goals/<id> and the pages under it, by the raw path (see `_goal_route`)."""
        goal_id, page = _goal_route(request.scope)
        if request.method not in _GOAL_PAGES[page]:
            raise HTTPException(405, headers={"Allow": ", ".join(_GOAL_PAGES[page])})
        handler = goal_pages[page]
        if page in ("cancel", "answer"):
            return await handler(request, goal_id)
        return await run_in_threadpool(handler, request, goal_id)

    routes = [
        Route("/", goals),
        Route("/head", head),
        Route("/views", views_position),
        Route("/goals/{rest:path}", a_goal, methods=["GET", "POST"]),
        Route("/escalations", escalations),
        Route("/escalations/resolve", resolve, methods=["POST"]),
        Route("/static/{name}", static),
    ]
    middleware = [Middleware(_TokenGate, token=token)] if token else []

    def store_unavailable(request: Request, exc: Exception) -> Any:
        """A store that is down (or refused a read): a page that says so, 503, and one line in
        the server's log, not a traceback and a bare 500."""
        message = _one_line(str(exc))
        print(f"baton serve: {request.method} {request.url.path}: {message}", file=sys.stderr)
        return render(request, "error.html", {"title": "Store unavailable", "error": message},
                      503)

    def unreadable_goal(request: Request, exc: Exception) -> Any:
        """A goal holding an event this Baton does not know (a newer Baton's, on a shared
        store): a page that says so, 409, and one line in the log, not a traceback and a 500."""
        message = _one_line(str(exc))
        print(f"baton serve: {request.method} {request.url.path}: {message}", file=sys.stderr)
        return render(request, "error.html", {"title": "Written by a newer Baton",
                                              "error": message}, 409)

    def http_error(request: Request, exc: Exception) -> Any:
        """Starlette's own errors (no such page, a method a page does not take, a form too
        big to read) and the views' 400s: a page with the one-line reason, not bare text."""
        assert isinstance(exc, HTTPException)
        status, message = exc.status_code, exc.detail
        if status == 404 and message == "Not Found":  # no route
            message = f"no page {request.url.path}"
        elif status == 405 and message == "Method Not Allowed":
            message = f"{request.url.path} does not take {request.method}"
        response = render(request, "error.html", {
            "title": HTTPStatus(status).phrase, "error": _one_line(message)}, status)
        response.headers.update(exc.headers or {})  # a 405's Allow
        return response

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if catch_up_s > 0:
            catching_up.append(  # through the pages' own pool: no second one
                CatchUpThread(store, catch_up_s, _not_caught_up, kept=views).start())
        try:
            yield
        finally:
            # Goals resumed from a form leave at a safe point, as a stopping worker's do (no
            # new dispatch once stopping: Runner.should_stop); the store must outlive their saves.
            stopping.set()
            driving.wake_all()  # one waiting for an agent's outcome leaves now if it is safe to
            deadline = time.monotonic() + SHUTDOWN_WAIT_S
            for goal_id, thread in list(resumes.items()):
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    print(f"baton serve: {goal_id} is still resuming (an agent call in flight); "
                          "the next owner takes it up by the crash rules", file=sys.stderr)
            while catching_up:
                catching_up.pop().close(timeout=10)
            views.close()

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                     exception_handlers={StoreError: store_unavailable,
                                         UnknownEvent: unreadable_goal,
                                         HTTPException: http_error})


def _resume(
    store: BatonStore, goal_id: str, views: KeptReadModels, stopping: threading.Event,
    before: threading.Thread | None = None, driving: Driving | None = None,
) -> None:
    """Drive a resolved goal on, as `baton resume` would, then bring the read models up.
    `before`: this server's last resume of the goal; a second decision resumed while it
    still runs waits for it, rather than finding the goal owned (GoalOwned) and leaving
    the decision it was asked to act on undriven."""
    if before is not None:
        before.join()

    try:  # leaves at a safe point once the server stops (Runner.should_stop)
        resume_goal(store, goal_id, should_stop=stopping.is_set, driving=driving)
    except Exception as exc:  # shown by the goal page's state; the events say what happened
        print(f"baton serve: resuming {goal_id}: {exc}")
    finally:
        catch_up_read_models(store, warn=_not_caught_up, kept=views)


def _not_caught_up(exc: Exception) -> None:
    print(f"baton serve: read models not brought up to date: {exc}", file=sys.stderr)


def _since(text: str | None) -> tuple[datetime | None, str | None]:
    """The `since` filter: an ISO date or time (UTC unless it says otherwise)."""
    if text is None:
        return None, None
    try:
        return _when(text), None
    except ValueError:
        return None, f"since: {text[:40]!r} is not a date or time (e.g. 2026-12-01 or " \
                     "2026-12-01T09:30)"
    except OverflowError:  # 9999-12-31T23:59-01:00 is in year 10000 in UTC
        return None, f"since: {text[:40]!r} is out of range (years 1 to 9999 in UTC)"


def _when(text: str) -> datetime:
    """The instant, in UTC (as the read models compare it)."""
    value = datetime.fromisoformat(text)
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _done_query(done: str, key: str) -> str:
    """The query string that shows `done` after a redirect, signed with the server's form key:
    the page shows only what this server recorded, never words a link put there."""
    return urlencode({"done": done, "sig": _signature(done, key)})


def _done_shown(params: Any, key: str) -> str | None:
    """The `done` line a redirect carried, or None when its signature is not this server's."""
    done = params.get("done")
    if done is None or not _same(params.get("sig", ""), _signature(done, key)):
        return None
    return str(done)


def _same(given: str, expected: str) -> bool:
    """A constant-time comparison of what a request sent with what the server expects; as
    bytes: compare_digest refuses str with non-ASCII characters (TypeError: a 500)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _signature(text: str, key: str) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]


def _check_key(form: Any, key: str) -> str | None:
    given = _field(form, "form_key")
    if not _same(given, key):
        return "the form is out of date (reload the page)"
    return None


def _field(form: Any, name: str) -> str:
    """A form's text field; a file sent under its name (no page's form sends one) is none."""
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _by(form: Any) -> str:
    return _field(form, "by").strip() or "web"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _int(params: Any, name: str, default: Any) -> Any:
    """A whole-number query parameter (absent or empty: `default`); anything else is a 400
    that says so, not a page that quietly shows something else."""
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise HTTPException(400, f"{name}: {text[:40]!r} is not a whole number") from None
