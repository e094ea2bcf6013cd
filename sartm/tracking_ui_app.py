"""The MLflow UI that `sartm tracking ui` serves: MLflow's own server, opening in "Model training"
mode in a browser that has not picked a mode yet.

Why: MLflow 3.17's UI opens an experiment in GenAI mode unless the URL says
`?workflowType=machine_learning` or the browser's localStorage holds the choice made with the
sidebar's GenAI / Model training switch (key `mlflow.workflowType_v1`, a JSON string: "genai" or
"machine_learning"); it reads neither the experiment tag `mlflow.experimentKind` nor any server
setting. So the bare address, or an experiment clicked on its home page, showed GenAI pages
instead of the runs.

How: MLflow's extension point for its server, the `mlflow.app` entry-point group. `mlflow server
--app-name sartm` (and `mlflow ui`, the same command) finds `sartm = "sartm.tracking_ui_app:
create_app"` in that group (pyproject.toml) and serves the app this factory returns, as it does for
its own "basic-auth" app. The factory takes MLflow's Flask app, `mlflow.server.app`, and changes
one page: the UI's index.html gets a tiny inline script, ahead of the JavaScript bundle, that
writes "machine_learning" under that key when the key is absent. A mode picked with the switch
is stored under the same key, so the user's own choice wins from then on; every other response
is MLflow's, unchanged. The script depends on that key name only: if MLflow renames the key, it
writes a key nobody reads and the UI behaves as plain `mlflow ui` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODE_KEY = "mlflow.workflowType_v1"  # MLflow 3.17 UI: useLocalStorage key "mlflow.workflowType" v1
DEFAULT_MODE = "machine_learning"  # "Model training" in the UI; MLflow's own default is "genai"
_KEY, _VALUE = json.dumps(MODE_KEY), json.dumps(json.dumps(DEFAULT_MODE))  # JS string literals
SCRIPT = (  # localStorage as the UI writes it (JSON), only where nothing is stored yet
    f"<script>try{{if(localStorage.getItem({_KEY})===null)"
    f"localStorage.setItem({_KEY},{_VALUE})}}catch(e){{}}</script>"
)
INDEX_VIEW = "serve"  # the endpoint of MLflow's index.html route (mlflow/server/__init__.py)


def with_default_mode(html: str) -> str:
    """index.html with `SCRIPT` before its first script tag (the bundle), else before </head>;
    unchanged when it already holds the script or has neither tag."""
    if SCRIPT in html:
        return html
    for tag in ("<script", "</head>"):
        at = html.find(tag)
        if at >= 0:
            return html[:at] + SCRIPT + html[at:]
    return html


def create_app(app: Any = None) -> Any:
    """The `mlflow.app` factory: MLflow's Flask app (or `app`) with the index page's default mode,
    wrapped in MLflow's FastAPI app when the server runs under uvicorn (`mlflow ui`'s default),
    as MLflow's own `mlflow.server.auth:create_app` does."""
    from flask import Response

    if app is None:
        from mlflow.server import app

    index_page = app.view_functions[INDEX_VIEW]
    if not getattr(index_page, "sartm_default_mode", False):  # once, however often it is called
        index = Path(app.static_folder) / "index.html"

        def serve_index():
            if not index.is_file():  # a source install without the built UI: MLflow's own text
                return index_page()
            html = with_default_mode(index.read_text(encoding="utf-8"))
            response = Response(html, mimetype="text/html")
            response.headers["Cache-Control"] = "no-cache"  # not a cached plain index.html
            return response

        serve_index.sartm_default_mode = True
        app.view_functions[INDEX_VIEW] = serve_index

    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app
