"""Maps the top-level folders onto the ``ouvir`` import names, subpackages included (pyproject has the rest)."""

from setuptools import find_packages, setup

FOLDERS = {"ouvir": "pkg", "ouvir.models": "models", "ouvir.engine": "engine", "ouvir.export": "export",
           "ouvir.firmware_host": "firmware_host"}

packages = [name for name in FOLDERS]
packages += [f"{name}.{sub}" for name, folder in FOLDERS.items() for sub in find_packages(folder)]
setup(packages=packages, package_dir=FOLDERS)
