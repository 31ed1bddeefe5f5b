"""The ``twotower`` command."""

from __future__ import annotations

import typer

from twotower.cli.adapt_cmd import adapt_command
from twotower.cli.common import OneLineErrors, setup_logging
from twotower.cli.compare_cmd import compare_command
from twotower.cli.eval_cmd import eval_command
from twotower.cli.filter_cmd import filter_command
from twotower.cli.generate_cmd import generate_command
from twotower.cli.mine_cmd import mine_command
from twotower.cli.probe_cmd import probe_command
from twotower.cli.teach_cmd import teach_command
from twotower.cli.train_cmd import run_command, train_command

app = typer.Typer(
    name="twotower",
    cls=OneLineErrors,
    help="Train, evaluate and probe dense retrievers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    setup_logging(verbose)


app.command("eval")(eval_command)
app.command("probe")(probe_command)
app.command("train")(train_command)
app.command("mine")(mine_command)
app.command("teach")(teach_command)
app.command("generate")(generate_command)
app.command("run")(run_command)
app.command("filter")(filter_command)
app.command("adapt")(adapt_command)
app.command("compare")(compare_command)

if __name__ == "__main__":
    app()
