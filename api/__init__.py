"""The front doors: the ``qcline`` CLI now, the FastAPI service and review page later."""
