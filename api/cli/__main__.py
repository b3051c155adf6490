"""``python -m api.cli``: the ``qcline`` command (what the service's training jobs and the tests run)."""

from api.cli.main import main

main()
