"""``python -m enf.cli``: the ``enf`` command (what Lightning's DDP launcher and torchrun re-run)."""

from enf.cli.main import main

if __name__ == "__main__":
    main()
