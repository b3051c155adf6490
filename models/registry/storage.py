"""The registry's own copies of model packages, one folder per content: ``<root>/<sha256>/``.

A station must run byte-for-byte the package that was evaluated, so the registry never serves the folder a
package was registered from (it may change or vanish); it copies it here, verified, and cites the copy.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from inspection.blobs import publish_folder, staging_folder
from inspection.errors import ModelPackageError
from inspection.model_package import ModelPackage

log = logging.getLogger(__name__)


class PackageStore:
    """Verified package copies under ``root``; a folder there is either absent or complete."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def copy_in(self, package: ModelPackage) -> Path:
        """The folder holding ``package``'s verified copy: written to a temporary folder inside ``root``,
        verified again (the source could change between the first check and the copy), then renamed into
        place; an earlier complete copy is reused, a damaged one replaced."""
        sha = package.metadata.sha256
        target = self.root / sha
        if target.is_dir():
            try:
                if ModelPackage.load(target, verify=True).metadata.sha256 == sha:
                    return target  # a copy from an earlier attempt that crashed before its database row
            except ModelPackageError:
                pass
            log.warning("registry copy %s is damaged; replacing it", target)
            shutil.rmtree(target)
        try:
            with staging_folder(self.root, f".tmp-{sha[:12]}-") as tmp:
                staged = tmp / "package"
                shutil.copytree(package.path, staged)
                copied = ModelPackage.load(staged, verify=True)
                if copied.metadata.sha256 != sha:
                    raise ModelPackageError(f"{package.path} changed while it was being registered")
                publish_folder(staged, target)  # False: someone else was faster with the same bytes
            ModelPackage.load(target, verify=True)
        except OSError as e:
            raise ModelPackageError(f"cannot copy {package.path} into the registry at {target}: {e}") from e
        return target
