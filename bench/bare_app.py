"""The baseline for the page benchmarks: the least a Flask app under the same gunicorn settings can do — a
fixed JSON body, no database, no templates, no session. GET /healthz is what the harness waits for."""
from flask import Flask

app = Flask(__name__)

GREETING = {"message": "Hello, World!"}


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.get("/json")
def fixed_json():
    return GREETING
