"""The real app on a real HTTP server, for tests that drive a browser.

werkzeug's threaded development server on 127.0.0.1 and a free port (the OS picks it: port 0), serving in
a background thread; ``live_server`` yields the base URL and shuts the server down on exit.
"""
import threading
from contextlib import contextmanager
from typing import Iterator

from flask import Flask
from werkzeug.serving import make_server


@contextmanager
def live_server(app: Flask, host: str = "127.0.0.1") -> Iterator[str]:
    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"live-server-{server.server_port}", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()  # stops serve_forever; request threads are daemons and end with their connection
        server.server_close()
        thread.join(timeout=5)
