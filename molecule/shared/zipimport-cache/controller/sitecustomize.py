"""Loaded at start-up by the Python that controller-python runs (its
PYTHONPATH names this directory first): the compile cache hook, for module
runs on the controller itself. (It shadows a sitecustomize of the
distribution's Python, which Debian's only uses to install Ubuntu's apport
hook where that is present.)"""

import flaskops_testbed_zipcache  # noqa: F401  pylint: disable=unused-import
