"""The dashboard's files: ``index.html``, ES modules, one stylesheet and the vendored
chart library (``vendor/``). Nothing here runs in Python: `modelport.serving.routes.ui`
serves them at ``/ui/``, and the pages read the server's JSON API. See ``docs/ui.md``.
"""
