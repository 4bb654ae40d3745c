"""One module per resource; each exports ``router``. app.py mounts all of them but health
behind the bearer token."""
