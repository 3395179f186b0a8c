"""Every ``enf`` entry point: the command itself (:func:`main`, dispatching the subcommands), the LightningCLI
wrapper of ``enf fit|validate|test`` (:mod:`~enf.cli.lightning`), ``enf encode``, ``enf forecast``,
``enf shape export``, ``enf edit``, ``enf data`` and ``enf bench``."""

from enf.cli.main import main
from enf.cli.text import plain_text

__all__ = ["main", "plain_text"]
