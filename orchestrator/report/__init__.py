"""Campaign reports (``farm report``, ``GET /campaigns/{id}/report``): the cells with their
intervals, the paper's RMS-normalised aggregate, sandbagging, persona effects and
provenance, as report.json, cells.csv, figures and one self-contained HTML page.

``stats`` is pure arithmetic, ``data`` reads the store, ``build`` assembles the report,
``figures``, ``html``, ``tables`` and ``write`` present it.
"""
