"""``python -m twotower.cli …``: the ``twotower`` command as a module, for launchers that take
one (``torchrun --nproc_per_node 2 -m twotower.cli train RECIPE``). It lives in the command-line
package because nothing else may import the command line."""

from twotower.cli.main import app

app(prog_name="twotower")
