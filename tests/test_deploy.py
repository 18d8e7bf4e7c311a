"""The single deployable: gunicorn with the committed config serves the app built by wsgi.py."""
import os
import signal
import subprocess
import sys
import urllib.request

from tests.conftest import wait_for
from tests.gunicorn_server import ROOT, free_port


def test_gunicorn_serves_wsgi_app_with_the_committed_config(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DINGQIAO_DEMO": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
    }
    for name in ("WECHAT_APP_SECRET", "WECHAT_MCH_KEY", "SECRET_KEY"):
        env.pop(name, None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def healthz() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return response.read().decode()
            except OSError:
                return None

        body = wait_for(healthz, "gunicorn answering /healthz", 30, step=0.2)
        assert '"status":"ok"' in body and '"dialect":"sqlite"' in body
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=30)[0].decode(errors="replace")
    assert "Booting worker" in output
