"""The campaign service's REST API (``farm serve``): submit and follow campaigns, read
episodes and results, browse the catalogue.

``create_app`` (orchestrator/api/app.py) builds the whole app from the settings; the routes
are thin and call the stores (orchestrator/store/), so the API, the CLI and SQL read the
same numbers.
"""
