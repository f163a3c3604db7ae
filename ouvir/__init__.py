"""ouvir: on-device streaming speech recognition.

The subpackages live in top-level folders of the repository and are mapped here by pyproject.toml:
``ouvir.models`` (torch), ``ouvir.export`` (torch), ``ouvir.engine`` (numpy), ``ouvir.firmware_host`` (numpy).
"""

__version__ = "0.1.0"
