"""Production gunicorn settings; every value can be overridden by GUNICORN_* environment variables.

Read by ``dingqiao serve`` (dingqiao/main.py) and, through the top-level gunicorn.conf.py, by
``gunicorn -c gunicorn.conf.py wsgi:app``: one set of settings for the single file and a checkout."""
import os

from gunicorn.glogging import Logger

from dingqiao.access_log import ROUTE_ENVIRON_KEY, loggable_referer, loggable_target, loggable_uri

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
accesslog = "-"
errorlog = "-"
# Behind a reverse proxy that sets X-Forwarded-*; see README "Production".
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


class RouteAccessLogger(Logger):
    """gunicorn's logger, but a request is logged by its route with the query's values hidden, and a Referer
    by its origin: pickup codes and WeChat's OAuth codes travel in URLs (dingqiao/access_log.py)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        path, query = environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
        target = loggable_target(path, query, environ.get(ROUTE_ENVIRON_KEY))
        shown_path, _, shown_query = target.partition("?")
        referer = loggable_referer(environ.get("HTTP_REFERER", ""))
        # Every atom that carries the URL or the Referer, also those a custom access_log_format could name.
        atoms.update({"r": f"{environ['REQUEST_METHOD']} {target} {environ['SERVER_PROTOCOL']}",
                      "U": shown_path, "q": shown_query, "f": referer, "{referer}i": referer,
                      "{raw_uri}e": target, "{path_info}e": shown_path, "{query_string}e": shown_query,
                      "{request_uri}e": target})
        return atoms

    def exception(self, msg, *args, **kwargs):
        if msg.startswith("Error handling request"):  # gunicorn names the raw URI of a request the app failed
            args = tuple(loggable_uri(arg) if isinstance(arg, str) and arg.startswith("/") else arg for arg in args)
        super().exception(msg, *args, **kwargs)


logger_class = RouteAccessLogger


def on_starting(server):
    """Rate limits must count across workers: memory:// keeps one counter per worker, so with N workers each
    limit would let N times its number through. The default (database://) and redis://… are shared."""
    storage = os.environ.get("RATELIMIT_STORAGE_URI", "")
    if storage.startswith("memory://") and server.cfg.workers > 1:
        raise RuntimeError(
            f"RATELIMIT_STORAGE_URI={storage} keeps separate rate-limit counters in each of the "
            f"{server.cfg.workers} workers, so every limit would let {server.cfg.workers} times its number "
            "through. Unset it (the counters then live in the app's database) or set it to redis://…, "
            "or run one worker (GUNICORN_WORKERS=1)."
        )


def post_worker_init(worker):
    """Every worker runs the scheduled jobs (expiry, settlement, outbox, nightly checks and backup); a lease in the
    database lets exactly one of them run each due job, however many workers, processes or hosts there are."""
    from dingqiao.jobs import start_in_worker

    start_in_worker(worker.wsgi)


def worker_exit(server, worker):
    """A worker leaving (max_requests, a restart, SIGTERM) lets its job at hand finish within the graceful timeout."""
    from dingqiao.jobs import stop_in_worker

    stop_in_worker(timeout=server.cfg.graceful_timeout)
