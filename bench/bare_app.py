"""The baseline for bench/webhooks.py: the least a Flask webhook can do under the same gunicorn.

``POST /bare`` parses the form (as every real webhook must) and answers a fixed, tiny TwiML document;
``GET /healthz`` answers ``ok``. No signature check, no database, no rendering: what is left is the cost of
gunicorn, werkzeug and Flask per request, which the IVR's throughput is compared with.

Served as ``gunicorn --pythonpath bench 'bare_app:create_app()'``.
"""

from __future__ import annotations

from flask import Flask, Response, request

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Say>ok</Say></Response>'


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/bare")
    def bare() -> Response:
        # Touch the form like the real webhooks do, so both servers parse the same bytes.
        if not request.form.get("CallSid"):
            return Response("missing CallSid\n", status=400, mimetype="text/plain")
        return Response(TWIML, status=200, mimetype="text/xml")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    return app
