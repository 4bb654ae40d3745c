"""The researcher's pages under ``/ui/``, served by ``farm serve`` beside the REST API.

Server-rendered (Jinja2, plain CSS, one small vendored script that only enhances): every page
reads fine with JavaScript off. ``router`` is what the API app mounts.
"""

from orchestrator.web.routes import router

__all__ = ["router"]
