"""``python -m imagen``: the same as the ``imagen`` command."""

from imagen.cli import main

if __name__ == "__main__":
    main()
