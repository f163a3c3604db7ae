"""ouvir: on-device streaming speech recognition.

This folder is the root package (setup.py maps it to ``ouvir``); the subpackages live in top-level folders
of the repository: ``ouvir.models`` (torch), ``ouvir.export`` (torch), ``ouvir.engine`` (numpy),
``ouvir.firmware_host`` (numpy).
"""

__version__ = "0.1.0"
