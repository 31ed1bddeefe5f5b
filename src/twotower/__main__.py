"""``python -m twotower``: the ``twotower`` command (``python -m twotower --help``)."""

from twotower.cli.main import app

app(prog_name="twotower")
