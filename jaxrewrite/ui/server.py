"""The UI's HTTP server: the page, its scripts, and a small JSON API over one `Session`.

The standard library's threading server is enough for one user on one machine, so the UI
adds no dependency. Every request body is size-limited JSON, checked before anything runs;
a bad one gets a 4xx with a one-line reason (never a traceback, never a changed model). Edits
run one at a time in a worker thread, so the page can poll their progress; the other calls
that change the model (undo, revert) wait for no one: they are refused while an edit runs.
"""

import ipaddress
import itertools
import json
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from ..rewrite.editfile import EditFileError
from .session import Session

MAX_BODY = 16 << 20  # bytes of one request: masks are PNG data URLs of a few kB each
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/app.css": ("app.css", "text/css; charset=utf-8")}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Refused(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Job:
    """The edit running in the background (or the last one): what the page polls."""

    _ids = itertools.count(1)

    def __init__(self, what):
        self.id, self.what, self.state = next(self._ids), what, "running"
        self.desc, self.done, self.total, self.started = "preparing (compiling)", 0, 0, time.time()
        self.result = self.error = None

    def report(self, desc, done, total):
        self.desc, self.done, self.total = desc, done, total

    def view(self):
        return {"id": self.id, "what": self.what, "state": self.state, "desc": self.desc, "done": self.done,
                "total": self.total, "elapsed": round(time.time() - self.started, 2), "result": self.result,
                "error": self.error}


def one_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def is_loopback(host):
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class App:
    """The API: (method, path) -> handler(body or query) -> JSON-able reply."""

    def __init__(self, session: Session):
        self.session, self.job = session, None

    def routes(self):
        s = self.session
        return {
            ("GET", "/api/info"): lambda q: s.info(),
            ("POST", "/api/images"): lambda b: s.images(field(b, "numbers", (str, list)),
                                                        bool(b.get("original")), bool(b.get("highlight"))),
            ("POST", "/api/paste"): lambda b: s.paste_view(field(b, "layer", str), field(b, "request", dict)),
            ("POST", "/api/search"): lambda b: s.search(field(b, "layer", str), field(b, "request", dict),
                                                        b.get("source", "context"), b.get("count", 12),
                                                        b.get("key_method", "zca")),
            ("POST", "/api/execute"): self.execute,
            ("GET", "/api/job"): lambda q: self.job.view() if self.job else {"state": "none"},
            ("POST", "/api/undo"): lambda b: self.mutate(s.undo),
            ("POST", "/api/revert"): lambda b: self.mutate(s.revert),
            ("POST", "/api/save"): lambda b: s.save(field(b, "name", str), field(b, "request", dict),
                                                    b.get("kind", "edit"), b.get("settings") or {}),
            ("POST", "/api/load"): lambda b: s.load(b.get("name"), b.get("content")),
            ("GET", "/api/download"): self.download,
        }

    def mutate(self, change):
        if not self.session.job_lock.acquire(blocking=False):
            raise Refused(HTTPStatus.CONFLICT, "an edit is running; wait for it to finish")
        try:
            return {"history": change()}
        finally:
            self.session.job_lock.release()

    def execute(self, body):
        """Check the edit now (a bad one is refused before any work), run it in the background."""
        s = self.session
        settings = body.get("settings") or {}
        if not isinstance(settings, dict):
            raise ValueError("settings must be an object")
        prepared = s.prepare(field(body, "kind", str), field(body, "layer", str), field(body, "request", dict),
                             settings)
        if not s.job_lock.acquire(blocking=False):
            raise Refused(HTTPStatus.CONFLICT, "an edit is running; wait for it to finish")
        job = self.job = Job(prepared[2].kind)

        def work():
            try:
                job.result = s.execute(*prepared, report=job.report)
                job.state = "done"
            except Exception as e:  # the model is unchanged: history grows only on success
                job.error, job.state = one_line(e), "error"
                if not isinstance(e, (ValueError, FloatingPointError)):
                    traceback.print_exc(file=sys.stderr)
            finally:
                s.job_lock.release()

        threading.Thread(target=work, daemon=True, name=f"edit-{job.id}").start()
        return HTTPStatus.ACCEPTED, {"job": job.id}

    def download(self, query):
        what = (query.get("what") or ["model"])[0]
        filename, data = self.session.download(what)
        return "file", filename, data


def field(body, name, kind):
    if name not in body:
        raise ValueError(f"missing {name!r}")
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or isinstance(value, bool):
        want = " or ".join({str: "a string", list: "a list", dict: "an object"}[k] for k in kinds)
        raise ValueError(f"{name!r} must be {want}")
    return value


def handler(app, allowed_hosts):
    routes = app.routes()

    class Handler(BaseHTTPRequestHandler):
        server_version = "jaxrewrite-ui"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: the page shows what happens
            pass

        def send_error(self, code, message=None, explain=None):  # malformed request lines: one line, no page
            self.reply(code, {"error": message or HTTPStatus(code).phrase})

        def reply(self, status, obj):
            data = (json.dumps(obj) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def send_bytes(self, data, kind, filename=None):
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if filename:
                self.send_header("Content-Disposition", f'attachment; filename="{filename}"')
            self.end_headers()
            self.wfile.write(data)

        def check_host(self):
            """A page of another site cannot reach this server through a name pointed at
            127.0.0.1 (DNS rebinding): the Host header must name this server."""
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            if allowed_hosts is not None and host not in allowed_hosts:
                raise Refused(HTTPStatus.FORBIDDEN, f"unexpected Host {host!r}")

        def body(self):
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (Content-Type: application/json)")
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length required") from None
            if length < 0 or length > MAX_BODY:
                self.close_connection = True  # the unread body must not be taken for the next request
                raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY >> 20} MiB")
            try:
                body = json.loads(self.rfile.read(length))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise Refused(HTTPStatus.BAD_REQUEST, f"body is not JSON ({getattr(e, 'msg', e)})") from None
            if not isinstance(body, dict):
                raise Refused(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
            return body

        def handle_any(self, method):
            url = urlsplit(self.path)
            try:
                self.check_host()
                if method == "GET" and url.path in STATIC:
                    name, kind = STATIC[url.path]
                    return self.send_bytes((resources.files(__package__) / "static" / name).read_bytes(), kind)
                route = routes.get((method, url.path))
                if route is None:
                    if any(p == url.path for _, p in routes) or url.path in STATIC:
                        raise Refused(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {url.path}")
                    raise Refused(HTTPStatus.NOT_FOUND, f"no such page {url.path}")
                out = route(self.body() if method == "POST" else parse_qs(url.query))
                if isinstance(out, tuple) and out[0] == "file":
                    return self.send_bytes(out[2], "application/octet-stream", out[1])
                status, out = out if isinstance(out, tuple) else (HTTPStatus.OK, out)
                self.reply(status, out)
            except Refused as e:
                self.close_connection = True  # a refused body may be unread
                self.reply(e.status, {"error": str(e)})
            except (ValueError, TypeError, KeyError, EditFileError, FloatingPointError) as e:
                self.reply(HTTPStatus.BAD_REQUEST, {"error": one_line(e)})
            except OSError as e:
                self.reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": one_line(e)})
            except Exception as e:  # a bug: one line to the page, the traceback to the terminal
                traceback.print_exc(file=sys.stderr)
                self.reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {one_line(e)}"})

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

        def do_PUT(self):
            self.handle_any("PUT")

        def do_DELETE(self):
            self.handle_any("DELETE")

    return Handler


class Server:
    """A UI server bound to (host, port); `serve_forever()` in this thread or `start()` in one
    of its own."""

    def __init__(self, session, host="127.0.0.1", port=8080):
        self.session, self.app = session, App(session)
        allowed = LOOPBACK | {host} if is_loopback(host) else None  # bound elsewhere: any name the user gives
        self.httpd = ThreadingHTTPServer((host, port), handler(self.app, allowed))
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self.thread = None

    def serve_forever(self):
        self.httpd.serve_forever()

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="jaxrewrite-ui")
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
