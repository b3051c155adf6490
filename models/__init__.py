"""The model room: the bundled packages, the registry of packages (stages, promotion gate, audit) and how a
package is measured on a snapshot. The package contract itself (``model.onnx`` + ``metadata.json``) is
``inspection.model_package``: stations read it without this package."""
