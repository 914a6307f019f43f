"""The web view: Starlette routes over the store, pages rendered on the server (Jinja2).

Reads come from the read models (goal list, escalations) and from a goal's own events (its
page). The forms call the same service as the CLI (`baton.runtime.service`); every POST carries
a per-server form key, so another site open in the same browser cannot post to it. With a token
(required when bound beyond loopback), each request needs it once (`?token=`, then a cookie) or
as `Authorization: Bearer`.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from baton.domain.errors import BatonError
from baton.domain.replay import replay
from baton.readmodels.reading import read, refresh
from baton.runtime.service import (
    answer_task,
    cancel_goal,
    load_goal_plan,
    resolve_task,
    resume_goal,
)
from baton.store.eventstore import BatonStore, GoalNotFound
from baton.web.events import EventCache
from baton.web.goal_view import goal_page

__all__ = ["GOALS_PER_PAGE", "create_app"]

HERE = Path(__file__).parent
GOALS_PER_PAGE = 100
_ACTIONS = ("retry", "abandon", "output", "approve", "reject")
# The choices the escalations page offers, by what the task waits for (baton.domain.gates); a
# question also gets an answer form.
_ACTIONS_FOR = {"approval": ("approve", "reject"), "clarification": ("abandon", "output")}
_STATIC = {"style.css": "text/css", "app.js": "text/javascript"}


class _TokenGate(BaseHTTPMiddleware):
    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        presented = (given or request.cookies.get("baton_token")
                     or header.removeprefix("Bearer ").strip())
        if not presented or not secrets.compare_digest(presented, self.token):
            return PlainTextResponse("baton serve: a token is required (?token=…)", 401)
        response = await call_next(request)
        if given:
            response.set_cookie("baton_token", given, httponly=True, samesite="strict")
        return response


def create_app(store: BatonStore, *, token: str | None = None) -> Starlette:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    form_key = secrets.token_urlsafe(24)
    resumes: dict[str, threading.Thread] = {}
    cache = EventCache(store)

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Any:
        return templates.TemplateResponse(
            request, name, {"form_key": form_key, **context}, status_code=status
        )

    def goals(request: Request) -> Any:
        params = request.query_params
        status, plan = params.get("status") or None, params.get("plan") or None
        since_text = params.get("since") or None
        page = _int(params.get("page"), 1)
        since, error = _since(since_text)
        with read(store) as models:
            lag = models.state().lag
            if lag:
                refresh(store)
            rows = models.goals()
        counts = Counter(row["status"] for row in rows)
        plans = sorted({row["plan"] for row in rows})
        chosen = [r for r in rows if (status is None or r["status"] == status)
                  and (plan is None or r["plan"] == plan)
                  and (since is None or _when(r["updated_at"]) >= since)]
        pages = max(1, -(-len(chosen) // GOALS_PER_PAGE))
        page = min(max(page, 1), pages)
        return render(request, "goals.html", {
            "goals": chosen[(page - 1) * GOALS_PER_PAGE: page * GOALS_PER_PAGE],
            "counts": dict(sorted(counts.items())), "total": len(rows), "plans": plans,
            "status": status, "plan": plan, "since": since_text, "page": page, "pages": pages,
            "lag": lag, "error": error,
            "query": lambda **kw: "?" + urlencode({k: v for k, v in {
                "status": status, "plan": plan, "since": since_text, **kw}.items() if v}),
            "running": counts.get("running", 0) > 0,
        }, 400 if error else 200)

    def head(request: Request) -> Any:
        return JSONResponse({"head": store.app.recorder.max_notification_id() or 0})

    def goal(request: Request) -> Any:
        goal_id = request.path_params["goal_id"]
        try:
            events = cache.events(goal_id)
        except GoalNotFound:
            return render(request, "error.html", {"error": f"no goal {goal_id!r}"}, 404)
        params = request.query_params
        context = goal_page(
            events,
            at=_int(params.get("at"), None),
            page=_int(params.get("page"), None),
            task=params.get("task") or None,
            tasks_page=_int(params.get("tasks_page"), 1),
            now=datetime.now(UTC),
        )
        context["error"] = params.get("error")
        context["done"] = params.get("done")
        context["resuming"] = goal_id in resumes and resumes[goal_id].is_alive()
        return render(request, "goal.html", context)

    def version(request: Request) -> Any:
        goal_id = request.path_params["goal_id"]
        found = store.app.recorder.select_events(goal_id, desc=True, limit=1)
        return JSONResponse({"version": found[0].originator_version if found else 0})

    def verify(request: Request) -> Any:
        goal_id = request.path_params["goal_id"]
        try:
            events = list(store.events(goal_id))
            loaded = load_goal_plan(store.get(goal_id))
            result = replay(events, loaded.contracts).to_json()
            error = None
        except BatonError as exc:
            result, error = None, str(exc)
        return render(request, "replay.html",
                      {"goal_id": goal_id, "result": result, "error": error})

    async def cancel(request: Request) -> Any:
        goal_id = request.path_params["goal_id"]
        form = await request.form()
        error = _check_key(form, form_key)
        reason = str(form.get("reason", "")).strip()
        if error is None and not reason:
            error = "cancel: a reason is required"
        if error is None:
            try:
                cancel_goal(store, goal_id, reason=reason, by=_by(form))
                refresh(store)
            except BatonError as exc:
                error = f"cancel: {exc}"
        if form.get("back") == "escalations":
            if error is not None:
                return escalations(request, f"{goal_id}: {_one_line(error)}", 400)
            done = urlencode({"done": f"{goal_id}: cancelled"})
            return RedirectResponse(f"/escalations?{done}", status_code=303)
        suffix = "" if error is None else "?" + urlencode({"error": _one_line(error)})
        return RedirectResponse(f"/goals/{goal_id}{suffix}", status_code=303)

    def escalations(request: Request, error: str | None = None, status: int = 200) -> Any:
        with read(store) as models:
            if models.state().lag:
                refresh(store)
            rows = models.escalations()
        return render(request, "escalations.html", {
            "escalations": rows, "error": error or request.query_params.get("error"),
            "done": request.query_params.get("done"), "actions": _ACTIONS[:3],
            "actions_for": _ACTIONS_FOR,
        }, status)

    def resume_in_background(goal_id: str) -> None:
        thread = threading.Thread(target=_resume, args=(store, goal_id), daemon=True,
                                  name=f"baton-web-resume-{goal_id}")
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
                refresh(store)
            except BatonError as exc:
                error = str(exc)
        if error is None and form.get("resume"):
            resume_in_background(goal_id)
        done = f"{goal_id} {task_id}: {what} recorded"
        if form.get("back") == "goal":
            query = {"error": _one_line(error)} if error is not None else {"done": done}
            return RedirectResponse(f"/goals/{goal_id}?{urlencode(query)}", status_code=303)
        if error is not None:
            return escalations(request, f"{goal_id} {task_id}: {_one_line(error)}", 400)
        return RedirectResponse("/escalations?" + urlencode({"done": done}), status_code=303)

    async def answer(request: Request) -> Any:
        """A clarification answered from the goal page or the escalations page."""
        goal_id = request.path_params["goal_id"]
        form = await request.form()
        task_id, text = str(form.get("task", "")), str(form.get("answer", "")).strip()
        error = _check_key(form, form_key)
        if error is None and not text:
            error = "an answer is required"
        return record(request, form, goal_id, task_id, error, "answer",
                      lambda: answer_task(store, goal_id, task_id, answer=text, by=_by(form)))

    async def resolve(request: Request) -> Any:
        form = await request.form()
        goal_id, task_id = str(form.get("goal", "")), str(form.get("task", ""))
        action, reason = str(form.get("action", "")), str(form.get("reason", "")).strip()
        error = _check_key(form, form_key)
        output: Any = None
        if error is None and action not in _ACTIONS:
            error = f"action must be one of {', '.join(_ACTIONS)}, not {action!r}"
        elif error is None and not reason:
            error = "a reason is required"
        elif error is None and action == "output":
            try:
                output = json.loads(str(form.get("output", "")))
            except json.JSONDecodeError as exc:
                error = f"output is not valid JSON: {exc.msg} at line {exc.lineno}"
        return record(request, form, goal_id, task_id, error, action,
                      lambda: resolve_task(store, goal_id, task_id, action=action, reason=reason,
                                           by=_by(form), output=output))

    def static(request: Request) -> Any:
        """The two bundled files (the package's own; nothing comes from the internet)."""
        name = request.path_params["name"]
        if name not in _STATIC:
            return PlainTextResponse("not found", 404)
        return Response((HERE / "static" / name).read_bytes(), media_type=_STATIC[name],
                        headers={"Cache-Control": "max-age=300"})

    routes = [
        Route("/", goals),
        Route("/head", head),
        Route("/goals/{goal_id:path}/version", version),
        Route("/goals/{goal_id:path}/replay", verify),
        Route("/goals/{goal_id:path}/cancel", cancel, methods=["POST"]),
        Route("/goals/{goal_id:path}/answer", answer, methods=["POST"]),
        Route("/goals/{goal_id:path}", goal),
        Route("/escalations", escalations),
        Route("/escalations/resolve", resolve, methods=["POST"]),
        Route("/static/{name}", static),
    ]
    middleware = [Middleware(_TokenGate, token=token)] if token else []
    return Starlette(routes=routes, middleware=middleware)


def _resume(store: BatonStore, goal_id: str) -> None:
    """Drive a resolved goal on, as `baton resume` would, then bring the read models up."""
    try:
        resume_goal(store, goal_id)
    except Exception as exc:  # shown by the goal page's state; the events say what happened
        print(f"baton serve: resuming {goal_id}: {exc}")
    finally:
        try:
            refresh(store)
        except Exception as exc:
            print(f"baton serve: read models not brought up to date: {exc}")


def _since(text: str | None) -> tuple[datetime | None, str | None]:
    """The `since` filter: an ISO date or time (UTC unless it says otherwise)."""
    if text is None:
        return None, None
    try:
        return _when(text), None
    except ValueError:
        return None, f"since: {text[:40]!r} is not a date or time (e.g. 2026-12-01 or " \
                     "2026-12-01T09:30)"


def _when(text: Any) -> datetime:
    value = text if isinstance(text, datetime) else datetime.fromisoformat(str(text))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _check_key(form: Any, key: str) -> str | None:
    given = str(form.get("form_key", ""))
    if not secrets.compare_digest(given, key):
        return "the form is out of date (reload the page)"
    return None


def _by(form: Any) -> str:
    return str(form.get("by", "")).strip() or "web"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _int(text: str | None, default: Any) -> Any:
    try:
        return int(text) if text is not None and text != "" else default
    except ValueError:
        return default
